/*
 * common.c -- status names, the last-error message, the log callback, and the thin
 * wrappers that turn a vtable plus context into a bt_provider or bt_strategy.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ==== Errors ============================================================= */

static _Thread_local char bt__errbuf[512];

int bt__fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bt__errbuf, sizeof bt__errbuf, fmt, ap);
    va_end(ap);
    return status;
}

const char *bt_last_error(void) { return bt__errbuf; }

const char *bt_status_name(int status) {
    switch (status) {
    case BT_OK: return "BT_OK";
    case BT_ERR_INVALID_ARG: return "BT_ERR_INVALID_ARG";
    case BT_ERR_NOMEM: return "BT_ERR_NOMEM";
    case BT_ERR_IO: return "BT_ERR_IO";
    case BT_ERR_MODEL: return "BT_ERR_MODEL";
    case BT_ERR_PROVIDER: return "BT_ERR_PROVIDER";
    case BT_ERR_CONTEXT_FULL: return "BT_ERR_CONTEXT_FULL";
    case BT_ERR_UTF8: return "BT_ERR_UTF8";
    case BT_ERR_STRATEGY: return "BT_ERR_STRATEGY";
    case BT_ERR_UNSUPPORTED: return "BT_ERR_UNSUPPORTED";
    case BT_ERR_PARSE: return "BT_ERR_PARSE";
    default: return "BT_ERR_UNKNOWN";
    }
}

const char *bt_stop_reason_name(int reason) {
    switch (reason) {
    case BT_STOP_NONE: return "none";
    case BT_STOP_EOG: return "eog";
    case BT_STOP_MAX_NEW_TOKENS: return "max_new_tokens";
    case BT_STOP_MAX_LENGTH: return "max_length";
    case BT_STOP_STEP_CAP: return "step_cap";
    case BT_STOP_CALLER: return "caller";
    case BT_STOP_ERROR: return "error";
    default: return "unknown";
    }
}

/* ==== Logging ============================================================ */

static bt_log_fn bt__log_fn;
static void     *bt__log_user;

void bt_log_set(bt_log_fn fn, void *user) {
    bt__log_fn = fn;
    bt__log_user = user;
}

bool bt__log_enabled(void) { return bt__log_fn != NULL; }

void bt__log(int level, const char *fmt, ...) {
    if (!bt__log_fn) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    bt__log_fn(bt__log_user, level, line);
}

double bt__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ==== Providers ========================================================== */

bt_provider *bt_provider_init(const bt_provider_i *iface, void *ctx) {
    if (!iface || !iface->name || !iface->n_vocab || !iface->n_ctx || !iface->tokenize ||
        !iface->token_text || !iface->is_eog || !iface->eval || !iface->rewind) {
        bt__fail(BT_ERR_INVALID_ARG, "provider vtable lacks a required slot");
        return NULL;
    }
    bt_provider *p = malloc(sizeof *p);
    if (!p) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    static _Atomic uint64_t serials;
    p->iface = iface;
    p->ctx = ctx;
    p->serial_ = ++serials;
    p->max_token_len_ = 0;
    return p;
}

void bt_provider_free(bt_provider *p) {
    if (!p) return;
    if (p->iface->free) p->iface->free(p->ctx);
    free(p);
}

void bt_provider_reset(bt_provider *p) {
    if (p && p->iface->reset) p->iface->reset(p->ctx);
}

/* A provider reuses its cache only with all three slots: what it holds, how to start on a
 * prefix of it, how to end a generation without forgetting. */
static bool can_reuse(const bt_provider *p) {
    return p->iface->held && p->iface->begin && p->iface->end;
}

int32_t bt_provider_cached_prefix(const bt_provider *p, const bt_token *toks, int32_t n) {
    if (!p || !toks || n <= 1 || !can_reuse(p)) return 0;
    const bt_token *held = NULL;
    int32_t nh = p->iface->held(p->ctx, &held), k = 0, lim = nh < n - 1 ? nh : n - 1;
    while (k < lim && held[k] == toks[k]) k++;
    return k;
}

int32_t bt_provider_n_vocab(const bt_provider *p) { return p->iface->n_vocab(p->ctx); }
int32_t bt_provider_n_ctx(const bt_provider *p) { return p->iface->n_ctx(p->ctx); }
bool bt_provider_is_eog(const bt_provider *p, bt_token id) {
    return p->iface->is_eog(p->ctx, id);
}
int bt_provider_token_text(const bt_provider *p, bt_token id, const char **bytes,
                           size_t *len) {
    *bytes = "";
    *len = 0;
    if (id < 0 || id >= p->iface->n_vocab(p->ctx))
        return bt__fail(BT_ERR_INVALID_ARG, "token id %d outside the vocabulary", id);
    int rc = p->iface->token_text(p->ctx, id, bytes, len);
    if (rc != BT_OK || !*bytes) { /* whatever the provider left there: an empty text */
        *bytes = "";
        *len = 0;
    }
    return rc;
}

int bt_provider_tokenize(bt_provider *p, const char *text, size_t len, bool add_special,
                         bool parse_special, bt_token **out, int32_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!bt__utf8_valid(text, len))
        return bt__fail(BT_ERR_UTF8, "text is not valid UTF-8");
    if (len > (size_t)INT32_MAX / 2)
        return bt__fail(BT_ERR_INVALID_ARG, "text too long to tokenize (%zu bytes)", len);
    /* A token covers at least one byte, plus a few special tokens. */
    int32_t cap = (int32_t)len + 8, n = 0;
    bt_token *buf = malloc((size_t)cap * sizeof *buf);
    if (!buf) return bt__fail(BT_ERR_NOMEM, "out of memory");
    int rc = p->iface->tokenize(p->ctx, text, len, add_special, parse_special, buf, cap, &n);
    if (rc == BT_ERR_INVALID_ARG && n > cap) { /* the provider needs more room */
        bt_token *bigger = realloc(buf, (size_t)n * sizeof *buf);
        if (!bigger) {
            free(buf);
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        buf = bigger;
        cap = n;
        rc = p->iface->tokenize(p->ctx, text, len, add_special, parse_special, buf, cap, &n);
    }
    if (rc != BT_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *n_out = n;
    return BT_OK;
}

/* Do the texts of toks[0..n) concatenate to exactly text[0..len)? */
static bool spells(const bt_provider *p, const bt_token *toks, int32_t n, const char *text,
                   size_t len) {
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *b;
        size_t l;
        if (bt_provider_token_text(p, toks[i], &b, &l) != BT_OK) return false;
        if (at + l > len || memcmp(text + at, b, l) != 0) return false;
        at += l;
    }
    return at == len;
}

/* The smallest k <= max_skip such that toks[k..n) spell text exactly, or -1. */
static int32_t exact_suffix(const bt_provider *p, const bt_token *toks, int32_t n, int32_t min_skip,
                            int32_t max_skip, const char *text, size_t len) {
    for (int32_t k = min_skip; k <= max_skip && k < n; k++)
        if (spells(p, toks + k, n - k, text, len)) return k;
    return -1;
}

int bt__tokenize_exact(bt_provider *p, const char *text, bt_token **out, int32_t *n_out) {
    size_t len = strlen(text);
    int rc = bt_provider_tokenize(p, text, len, false, true, out, n_out);
    if (rc != BT_OK) return rc;
    /* A tokenizer may put a space token (or more) in front: drop up to two tokens. */
    int32_t k = exact_suffix(p, *out, *n_out, 0, 2, text, len);
    bt_token *toks = *out;
    int32_t n = *n_out;
    if (k < 0) { /* or merge that space into the first token: tokenize after a sentinel */
        char *prefixed = malloc(len + 2);
        bt_token *t2 = NULL;
        int32_t n2 = 0;
        if (prefixed) {
            prefixed[0] = 'x';
            memcpy(prefixed + 1, text, len + 1);
            if (bt_provider_tokenize(p, prefixed, len + 1, false, true, &t2, &n2) == BT_OK &&
                (k = exact_suffix(p, t2, n2, 1, 3, text, len)) > 0) {
                free(toks);
                toks = t2;
                n = n2;
            } else {
                free(t2);
                k = -1;
            }
            free(prefixed);
        }
    }
    if (k < 0) {
        bt__log(BT_LOG_WARN, "the tokens of \"%s\" do not spell it exactly", text);
        return BT_OK;
    }
    memmove(toks, toks + k, (size_t)(n - k) * sizeof *toks);
    *out = toks;
    *n_out = n - k;
    return BT_OK;
}

/* ==== Strategies ========================================================= */

bt_strategy *bt_strategy_init(const bt_strategy_i *iface, void *ctx) {
    if (!iface || !iface->name) {
        bt__fail(BT_ERR_INVALID_ARG, "strategy vtable lacks a name");
        return NULL;
    }
    bt_strategy *s = malloc(sizeof *s);
    if (!s) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->iface = iface;
    s->ctx = ctx;
    s->ext_ = NULL;
    return s;
}

void bt_strategy_free(bt_strategy *s) {
    if (!s) return;
    if (s->iface->free) s->iface->free(s);
    free(s);
}
