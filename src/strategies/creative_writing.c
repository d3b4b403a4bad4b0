/*
 * creative_writing.c -- the original's CreativeWritingStrategy, rule for rule.
 *
 *   on_logits:     ban the most probable token (unless it ends the text); but right after
 *                  a rewind at a flat step, force the remembered token instead.
 *   on_probs:      flat = the top tokens needed to reach top_p_flat number at least
 *                  top_k_threshold_flat; end-of-generation probability *= eos_penalty.
 *   on_next_token: a pick other than the argmax is remembered (position, argmax) and the
 *                  keep index stops there; an argmax pick advances it when nothing is
 *                  remembered.
 *   backtrack:     at a flat step with something remembered, rewind to it.
 *   on_rewind:     a rewind by another strategy of a chain voids what it removed.
 * Net effect: off-argmax picks survive where the model is sure; where it is not, the
 * sampler returns to the last such pick and takes the best non-banned token there.
 */
#include "catalog.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

typedef struct creative {
    bt_creative_writing_params p;
    bool     is_flat;
    bool     has_memory;
    bool     rewinding;  /* its own backtrack asked for the rewind being applied */
    int32_t  mem_pos;
    bt_token mem_tok;
    int32_t  keep;
} creative;

bt_creative_writing_params bt_creative_writing_default_params(void) {
    return (bt_creative_writing_params){.top_p_flat = 0.65f, .top_k_threshold_flat = 9,
                                        .eos_penalty = 0.8f};
}

static void cw_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    creative *c = s->ctx;
    if (c->is_flat && c->has_memory && v->n_tokens == c->mem_pos) {
        logits[c->mem_tok] = FLT_MAX;
        bt_view_note_force(v, s, v->n_tokens, c->mem_tok, "the remembered argmax");
        c->has_memory = false;
        c->is_flat = false;
        return;
    }
    int32_t best = -1;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    if (best >= 0 && !bt_provider_is_eog(v->provider, best)) logits[best] = -INFINITY;
}

static void cw_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *cands) {
    creative *c = s->ctx;
    c->is_flat = bt_candidates_top_mass(cands, c->p.top_p_flat) >= c->p.top_k_threshold_flat;
    for (int32_t i = 0; i < cands->n; i++)
        if (bt_provider_is_eog(v->provider, cands->data[i].id))
            bt_candidates_set_p(cands, cands->data[i].id, cands->data[i].p * c->p.eos_penalty);
}

static void cw_on_next_token(bt_strategy *s, const bt_view *v, const bt_candidates *cands) {
    creative *c = s->ctx;
    bt_token latest = v->tokens[v->n_tokens - 1];
    int32_t best = -1;
    for (int32_t i = 0; i < cands->n; i++)
        if (best < 0 || cands->data[i].p > cands->data[best].p) best = i;
    if (best >= 0 && cands->data[best].id != latest) {
        c->has_memory = true;
        c->mem_pos = v->n_tokens - 1;
        c->mem_tok = cands->data[best].id;
        c->keep = v->n_tokens - 1;
    } else if (!c->has_memory) {
        c->keep++;
    }
}

static int32_t cw_backtrack(bt_strategy *s, const bt_view *v) {
    creative *c = s->ctx;
    c->rewinding = c->is_flat && c->has_memory && c->mem_pos < v->n_tokens;
    if (!c->rewinding) return 0;
    bt_view_note_rewind(v, s, "flat distribution: back to token %d for the argmax", c->mem_pos);
    return v->n_tokens - c->mem_pos;
}

/* Its own rewind lands on the remembered position, where on_logits then forces the
 * remembered token. A rewind asked by another strategy of a chain voids the flat verdict
 * (it was about a removed token) and, if it removed the off-argmax pick, the memory. */
static void cw_on_rewind(bt_strategy *s, const bt_view *v, int32_t n) {
    (void)n;
    creative *c = s->ctx;
    if (!c->rewinding) {
        c->is_flat = false;
        if (c->has_memory && c->mem_pos >= v->n_tokens) c->has_memory = false;
    }
    c->rewinding = false;
    if (c->keep > v->n_tokens) c->keep = v->n_tokens;
}

static int32_t cw_keep_index(bt_strategy *s, const bt_view *v) {
    creative *c = s->ctx;
    return c->keep < v->n_tokens ? c->keep : v->n_tokens;
}

static void cw_reset(bt_strategy *s) {
    creative *c = s->ctx;
    c->is_flat = c->has_memory = c->rewinding = false;
    c->keep = 0;
}

static void cw_free(bt_strategy *s) { free(s->ctx); }

static const bt_strategy_i creative_iface = {
    .name = "creative-writing",
    .on_logits = cw_on_logits,
    .on_probs = cw_on_probs,
    .on_next_token = cw_on_next_token,
    .backtrack = cw_backtrack,
    .on_rewind = cw_on_rewind,
    .keep_index = cw_keep_index,
    .reset = cw_reset,
    .free = cw_free,
};

bt_strategy *bt_creative_writing_strategy_init(const bt_creative_writing_params *params) {
    bt_creative_writing_params p = params ? *params : bt_creative_writing_default_params();
    if (!(p.top_p_flat > 0.0f && p.top_p_flat <= 1.0f) || p.top_k_threshold_flat < 1 ||
        !(p.eos_penalty >= 0.0f) || isinf(p.eos_penalty)) {
        bt__fail(BT_ERR_INVALID_ARG, "creative-writing: top_p_flat in (0, 1], "
                                     "top_k_threshold_flat >= 1, eos_penalty >= 0");
        return NULL;
    }
    creative *c = calloc(1, sizeof *c);
    if (!c) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->p = p;
    bt_strategy *s = bt_strategy_init(&creative_iface, c);
    if (!s) free(c);
    return s;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

enum { CW_TOP_P_FLAT, CW_THRESHOLD, CW_EOS, CW_N };

static const bt_option_info creative_options[CW_N] = {
    [CW_TOP_P_FLAT] = {"top_p_flat", "--top-p-flat", BT_OPTION_FLOAT, 1e-6, 1, 0.65, "P",
                       "mass that defines flatness (0.65)", false},
    [CW_THRESHOLD] = {"top_k_threshold_flat", "--top-k-threshold-flat", BT_OPTION_INT, 1, 1e9, 9,
                      "K", "flat when K or more tokens are needed to reach it (9)", false},
    [CW_EOS] = {"eos_penalty", "--eos-penalty", BT_OPTION_FLOAT, 0, 1e6, 0.8, "F",
                "end-of-text probability times F (0.8)", false},
};

static bt_strategy *creative_create(const bt_strategy_options *o, bt_provider *p) {
    (void)p;
    bt_creative_writing_params cp = bt_creative_writing_default_params();
    cp.top_p_flat = (float)bt__opt_num(o, CW_TOP_P_FLAT);
    cp.top_k_threshold_flat = (int32_t)bt__opt_num(o, CW_THRESHOLD);
    cp.eos_penalty = (float)bt__opt_num(o, CW_EOS);
    return bt_creative_writing_strategy_init(&cp);
}

const bt__strategy_def bt__creative_writing_def = {
    {"creative-writing", "avoid the most probable token; rewind where the distribution is flat",
     creative_options, CW_N, false},
    creative_create,
};
