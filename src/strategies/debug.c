/*
 * debug.c -- the original's Debug strategy, and the skeleton for a new one.
 *
 * Before each draw it shows the two most probable candidates and their probabilities.
 * It never rewinds, so it needs only on_probs; every other slot stays NULL.
 */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct debug_state {
    bt_debug_params p;
} debug_state;

/* Append a token's text to buf, escaping control characters, so one line stays one line. */
static int show_token(char *buf, size_t cap, const bt_view *v, bt_token id) {
    const char *bytes = "";
    size_t len = 0;
    bt_provider_token_text(v->provider, id, &bytes, &len);
    size_t w = 0;
    for (size_t i = 0; i < len && w + 5 < cap; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c == '\n') w += (size_t)snprintf(buf + w, cap - w, "\\n");
        else if (c < 0x20 || c == 0x7f) w += (size_t)snprintf(buf + w, cap - w, "\\x%02x", c);
        else buf[w++] = (char)c;
    }
    buf[w] = '\0';
    return (int)w;
}

static void debug_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    debug_state *d = s->ctx;
    if (!d->p.emit && !bt__log_enabled()) return;
    int32_t k = bt_candidates_sort_top(c, 2);
    char a[128] = "", b[128] = "", line[400];
    if (k > 0) show_token(a, sizeof a, v, c->data[0].id);
    if (k > 1) show_token(b, sizeof b, v, c->data[1].id);
    snprintf(line, sizeof line, "[debug] step %d: '%s' %.4f | '%s' %.4f", v->n_tokens, a,
             k > 0 ? c->data[0].p : 0.0f, b, k > 1 ? c->data[1].p : 0.0f);
    if (d->p.emit) d->p.emit(d->p.user, line);
    else bt__log(BT_LOG_INFO, "%s", line);
}

static void debug_free(bt_strategy *s) { free(s->ctx); }

static const bt_strategy_i debug_iface = {
    .name = "debug",
    .on_probs = debug_on_probs,
    .free = debug_free,
};

bt_debug_params bt_debug_default_params(void) { return (bt_debug_params){NULL, NULL}; }

bt_strategy *bt_debug_strategy_init(const bt_debug_params *params) {
    debug_state *d = malloc(sizeof *d);
    if (!d) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->p = params ? *params : bt_debug_default_params();
    bt_strategy *s = bt_strategy_init(&debug_iface, d);
    if (!s) free(d);
    return s;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

static bt_strategy *debug_create(const bt_strategy_options *o, bt_provider *p) {
    (void)o, (void)p;
    return bt_debug_strategy_init(NULL);
}

const bt__strategy_def bt__debug_def = {
    {"debug", "show the two most probable tokens and their probabilities before each pick",
     NULL, 0, false},
    debug_create,
};
