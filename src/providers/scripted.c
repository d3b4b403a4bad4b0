/*
 * scripted.c -- a deterministic provider for tests: a tiny vocabulary of strings and a
 * callback that computes logits from the sequence. It counts evaluations like a real
 * backend (one per position), so tests can check what a rewind costs.
 */
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct scripted {
    bt_scripted_params p;
    char   **tokens;   /* owned copies */
    size_t  *lens;
    float   *logits;   /* n_vocab */
    int32_t  n_held;   /* positions "in the cache" */
    bt_token *held;    /* n_ctx */
    bool     have_logits; /* logits match held[0..n_held) */
} scripted;

bt_scripted_params bt_scripted_default_params(void) {
    return (bt_scripted_params){.n_vocab = 0, .tokens = NULL, .eos = -1, .n_ctx = 4096,
                                .logits = NULL, .user = NULL};
}

static int32_t sc_n_vocab(void *ctx) { return ((scripted *)ctx)->p.n_vocab; }
static int32_t sc_n_ctx(void *ctx) { return ((scripted *)ctx)->p.n_ctx; }

/* Greedy longest match of token strings; a byte no token starts with is an error. */
static int sc_tokenize(void *ctx, const char *text, size_t len, bool add_special,
                       bool parse_special, bt_token *out, int32_t cap, int32_t *n_out) {
    (void)add_special, (void)parse_special;
    scripted *s = ctx;
    int32_t n = 0;
    size_t i = 0;
    while (i < len) {
        bt_token best = -1;
        size_t best_len = 0;
        for (bt_token t = 0; t < s->p.n_vocab; t++) {
            size_t l = s->lens[t];
            if (l > best_len && l <= len - i && memcmp(text + i, s->tokens[t], l) == 0) {
                best = t;
                best_len = l;
            }
        }
        if (best < 0)
            return bt__fail(BT_ERR_INVALID_ARG, "scripted vocabulary cannot spell byte %zu", i);
        if (n < cap) out[n] = best;
        n++;
        i += best_len;
    }
    *n_out = n;
    return n > cap ? bt__fail(BT_ERR_INVALID_ARG, "token buffer too small") : BT_OK;
}

static int sc_token_text(void *ctx, bt_token id, const char **bytes, size_t *len) {
    scripted *s = ctx;
    if (id < 0 || id >= s->p.n_vocab) return bt__fail(BT_ERR_INVALID_ARG, "bad token %d", id);
    *bytes = s->tokens[id];
    *len = s->lens[id];
    return BT_OK;
}

static bool sc_is_eog(void *ctx, bt_token id) { return id == ((scripted *)ctx)->p.eos; }

static int sc_eval(void *ctx, const bt_token *seq, int32_t n, const float **logits,
                   bt_eval_info *info) {
    scripted *s = ctx;
    if (n > s->p.n_ctx) return bt__fail(BT_ERR_CONTEXT_FULL, "scripted context full");
    if (n < s->n_held || n <= 0) return bt__fail(BT_ERR_INVALID_ARG, "eval: sequence shorter than held");
    bt_eval_info local = {0, 0};
    if (n > s->n_held) {
        /* A real model evaluates every new position, one forward pass each. */
        int32_t from = s->n_held;
        memcpy(s->held + from, seq + from, (size_t)(n - from) * sizeof *seq);
        local.first_pos = from;
        local.n_evaluated = n - from;
        s->n_held = n;
        s->have_logits = false;
    }
    if (!s->have_logits) {
        /* From what is held, as a KV cache would: a cache that disagrees with the caller's
         * sequence shows in the logits. */
        s->p.logits(s->p.user, s->held, n, s->logits, s->p.n_vocab);
        s->have_logits = true;
    }
    if (info) *info = local;
    *logits = s->logits;
    return BT_OK;
}

/* The scripted model recomputes logits from the sequence, so a rewind is free: it keeps
 * "logits for every position", like a provider with an unbounded window. */
static int sc_rewind(void *ctx, int32_t n) {
    scripted *s = ctx;
    if (n < 0 || n > s->n_held) return bt__fail(BT_ERR_INVALID_ARG, "rewind %d of %d", n, s->n_held);
    s->n_held -= n;
    if (n > 0 && s->n_held > 0)
        s->p.logits(s->p.user, s->held, s->n_held, s->logits, s->p.n_vocab);
    s->have_logits = s->n_held > 0;
    return BT_OK;
}

static void sc_reset(void *ctx) {
    scripted *s = ctx;
    s->n_held = 0;
    s->have_logits = false;
}

/* Reuse across generations, like a real cache: what is held stays held. */
static int32_t sc_held(void *ctx, const bt_token **tokens) {
    scripted *s = ctx;
    *tokens = s->held;
    return s->n_held;
}

static int32_t sc_begin(void *ctx, int32_t keep) {
    scripted *s = ctx;
    if (keep < 0 || keep > s->n_held) return bt__fail(BT_ERR_INVALID_ARG, "begin: keep %d", keep);
    s->n_held = keep;
    s->have_logits = false;
    return keep;
}

static void sc_end(void *ctx) { (void)ctx; }

static void sc_free(void *ctx) {
    scripted *s = ctx;
    if (!s) return;
    if (s->tokens)
        for (int32_t i = 0; i < s->p.n_vocab; i++) free(s->tokens[i]);
    free(s->tokens);
    free(s->lens);
    free(s->logits);
    free(s->held);
    free(s);
}

static const bt_provider_i scripted_iface = {
    .name = "scripted",
    .n_vocab = sc_n_vocab,
    .n_ctx = sc_n_ctx,
    .tokenize = sc_tokenize,
    .token_text = sc_token_text,
    .is_eog = sc_is_eog,
    .eval = sc_eval,
    .rewind = sc_rewind,
    .reset = sc_reset,
    .held = sc_held,
    .begin = sc_begin,
    .end = sc_end,
    .free = sc_free,
};

bt_provider *bt_scripted_provider_init(const bt_scripted_params *params) {
    if (!params || params->n_vocab <= 0 || !params->tokens || !params->logits ||
        params->n_ctx <= 1 || params->eos >= params->n_vocab) {
        bt__fail(BT_ERR_INVALID_ARG, "scripted provider: invalid parameters");
        return NULL;
    }
    scripted *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *params;
    s->tokens = calloc((size_t)params->n_vocab, sizeof *s->tokens);
    s->lens = calloc((size_t)params->n_vocab, sizeof *s->lens);
    s->logits = calloc((size_t)params->n_vocab, sizeof *s->logits);
    s->held = calloc((size_t)params->n_ctx, sizeof *s->held);
    if (!s->tokens || !s->lens || !s->logits || !s->held) goto nomem;
    for (int32_t i = 0; i < params->n_vocab; i++) {
        const char *t = params->tokens[i] ? params->tokens[i] : "";
        s->lens[i] = strlen(t);
        if (!(s->tokens[i] = strdup(t))) goto nomem;
    }
    bt_provider *p = bt_provider_init(&scripted_iface, s);
    if (p) return p;
    sc_free(s);
    return NULL;
nomem:
    sc_free(s);
    bt__fail(BT_ERR_NOMEM, "out of memory");
    return NULL;
}
