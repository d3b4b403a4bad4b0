/*
 * replace.c -- find and replace while generating (the original's ReplaceStrategy).
 *
 * Detection is AntiSlop's, on exact text (no variants). On a match it rewinds to the
 * token holding the match's first byte and forces the replacement's tokens there, one per
 * step, by giving each a probability of 1e9 in on_probs. Text inside a forced replacement
 * is never matched again.
 */
#include "catalog.h"
#include "matcher.h"

#include <stdlib.h>
#include <string.h>

typedef struct replace {
    bt_replace_params p;
    bt__automaton *aut;
    char         **find;      /* owned copies */
    char          *repl;
    bt__scan       scan;
    bt_token      *repl_toks; /* the replacement, tokenized at begin */
    int32_t        n_repl;
    float         *p_drawn;   /* per position: probability the drawn token had */
    int32_t        max_pos;
    int32_t        force_pos; /* -1: not forcing; else where the replacement starts */
    int32_t        done;      /* replacements made */
} replace;

bt_replace_params bt_replace_default_params(void) {
    return (bt_replace_params){.find = NULL, .n_find = 0, .replace = NULL,
                               .max_replacements = -1, .max_new_tokens_for_replace = -1,
                               .skip_tokens = 0, .max_prob = 1.0f};
}

/* May another replacement happen now? */
static bool allowed(const replace *r, const bt_view *v) {
    if (r->p.max_replacements >= 0 && r->done >= r->p.max_replacements) return false;
    /* the original's rule: only while the continuation is shorter than the limit */
    if (r->p.max_new_tokens_for_replace >= 0 && v->n_tokens >= r->p.max_new_tokens_for_replace)
        return false;
    return true;
}

static int rp_begin(bt_strategy *s, const bt_view *v) {
    replace *r = s->ctx;
    int rc = bt__scan_begin(&r->scan, r->aut, false, v->max_tokens, v->provider);
    if (rc != BT_OK) return rc;
    r->scan.skip_tokens = r->p.skip_tokens;
    free(r->repl_toks);
    r->repl_toks = NULL;
    rc = bt__tokenize_exact(v->provider, r->repl, &r->repl_toks, &r->n_repl);
    if (rc != BT_OK) return rc;
    if (r->n_repl == 0) return bt__fail(BT_ERR_INVALID_ARG, "replace: the replacement has no tokens");
    if (r->max_pos < v->max_tokens + 1) {
        free(r->p_drawn);
        r->max_pos = v->max_tokens + 1;
        if (!(r->p_drawn = malloc((size_t)r->max_pos * sizeof *r->p_drawn))) {
            r->max_pos = 0;
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
    }
    r->force_pos = -1;
    r->done = 0;
    return BT_OK;
}

/* The replacement token due at this position, or -1. */
static bt_token due(const replace *r, const bt_view *v) {
    if (r->force_pos < 0) return -1;
    int32_t i = v->n_tokens - r->force_pos;
    return (i >= 0 && i < r->n_repl) ? r->repl_toks[i] : -1;
}

static void rp_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    replace *r = s->ctx;
    bt_token t = due(r, v);
    if (t < 0) return;
    bt_candidates_set_p(c, t, 1e9f);
    bt_view_note_force(v, s, v->n_tokens, t, "replacement token %d of %d",
                       v->n_tokens - r->force_pos + 1, r->n_repl);
}

static void rp_on_next_token(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    replace *r = s->ctx;
    int32_t pos = v->n_tokens - 1;
    bt_token tok = v->tokens[pos];
    if (pos < r->max_pos) {
        double total = 0;
        for (int32_t i = 0; i < c->n; i++) total += c->data[i].p > 0 ? c->data[i].p : 0;
        r->p_drawn[pos] = total > 0 ? (float)(bt_candidates_get_p(c, tok) / total) : 0.0f;
    }
    int32_t i = pos - r->force_pos;
    if (r->force_pos < 0 || i < 0) return;
    bool drawn = i < r->n_repl && tok == r->repl_toks[i];
    if (drawn && i < r->n_repl - 1) return; /* more to force */
    /* The forcing is over: complete, or broken because another strategy (or a dead end's
     * fallback to the model's own distribution) put another token here. Either way stop
     * forcing and holding text back. What was forced may not match again (feeding it
     * here swallows its matches); a token the model chose instead still may. */
    r->force_pos = -1;
    bt_view forced = *v;
    forced.n_tokens = drawn ? pos + 1 : pos;
    bt__scan_sync(&r->scan, &forced, false);
    r->scan.min_start = r->scan.len;
}

/* Forget what the rewind removed: a replacement whose start is gone is no longer forced,
 * and a replacement that was cut into may be matched again. */
static void rp_on_rewind(bt_strategy *s, const bt_view *v, int32_t n) {
    (void)n;
    replace *r = s->ctx;
    if (r->force_pos > v->n_tokens) r->force_pos = -1;
    bt__scan_sync(&r->scan, v, false); /* truncates */
    if (r->scan.min_start > r->scan.len) r->scan.min_start = 0;
}

static int32_t rp_backtrack(bt_strategy *s, const bt_view *v) {
    replace *r = s->ctx;
    bt__match m = bt__scan_sync(&r->scan, v, false);
    if (r->force_pos >= 0 || m.pattern < 0 || !allowed(r, v)) return 0;
    int32_t t = bt__scan_token_at(&r->scan, m.start);
    if (t < v->n_released || t >= v->n_tokens) return 0;
    if (r->p_drawn[t] > r->p.max_prob) return 0; /* the model is sure: leave it */
    r->force_pos = t;
    r->done++;
    bt__log(BT_LOG_DEBUG, "replace: \"%s\" at token %d (replacement %d)", r->find[m.pattern], t, r->done);
    bt_view_note_rewind(v, s, "found \"%s\": replacing it", r->find[m.pattern]);
    return v->n_tokens - t;
}

static int32_t rp_keep_index(bt_strategy *s, const bt_view *v) {
    replace *r = s->ctx;
    if (r->force_pos >= 0) return r->force_pos;
    if (!allowed(r, v)) return v->n_tokens;
    bt__scan_sync(&r->scan, v, false);
    return bt__scan_token_at(&r->scan, bt__scan_hold_from(&r->scan));
}

static void rp_reset(bt_strategy *s) {
    replace *r = s->ctx;
    r->scan.n_tokens = 0;
    r->scan.len = 0;
    r->force_pos = -1;
}

static void rp_free(bt_strategy *s) {
    replace *r = s->ctx;
    if (!r) return;
    bt__automaton_free(r->aut);
    if (r->find)
        for (int32_t i = 0; i < r->p.n_find; i++) free(r->find[i]);
    free(r->find);
    free(r->repl);
    bt__scan_release(&r->scan);
    free(r->repl_toks);
    free(r->p_drawn);
    free(r);
}

static const bt_strategy_i replace_iface = {
    .name = "replace",
    .begin = rp_begin,
    .on_probs = rp_on_probs,
    .on_next_token = rp_on_next_token,
    .backtrack = rp_backtrack,
    .on_rewind = rp_on_rewind,
    .keep_index = rp_keep_index,
    .reset = rp_reset,
    .free = rp_free,
};

bt_strategy *bt_replace_strategy_init(const bt_replace_params *params) {
    if (!params || !params->find || params->n_find <= 0 || !params->replace) {
        bt__fail(BT_ERR_INVALID_ARG, "replace needs at least one find string and a replacement");
        return NULL;
    }
    const bt_replace_params *P = params;
    if (P->max_replacements < -1 || P->max_new_tokens_for_replace < -1 || P->skip_tokens < 0 ||
        !(P->max_prob >= 0.0f && P->max_prob <= 1.0f)) {
        bt__fail(BT_ERR_INVALID_ARG, "replace: limits must be >= 0 (-1: none), max_prob in [0, 1]");
        return NULL;
    }
    size_t rl = strlen(P->replace);
    if (rl == 0 || !bt__utf8_valid(P->replace, rl)) {
        bt__fail(rl ? BT_ERR_UTF8 : BT_ERR_INVALID_ARG,
                 rl ? "replacement is not valid UTF-8" : "the replacement is empty");
        return NULL;
    }
    for (int32_t i = 0; i < P->n_find; i++) {
        size_t fl = P->find[i] ? strlen(P->find[i]) : 0;
        if (fl == 0 || !bt__utf8_valid(P->find[i], fl)) {
            bt__fail(fl ? BT_ERR_UTF8 : BT_ERR_INVALID_ARG,
                     fl ? "find string %d is not valid UTF-8" : "find string %d is empty", i);
            return NULL;
        }
    }
    replace *r = calloc(1, sizeof *r);
    if (!r) goto nomem;
    r->p = *P;
    r->force_pos = -1;
    if (!(r->find = calloc((size_t)P->n_find, sizeof *r->find)) || !(r->repl = strdup(P->replace)))
        goto nomem;
    for (int32_t i = 0; i < P->n_find; i++)
        if (!(r->find[i] = strdup(P->find[i]))) goto nomem;
    r->p.find = NULL;
    r->p.replace = NULL;
    if (bt__automaton_build((const char *const *)r->find, P->n_find, false, &r->aut) != BT_OK)
        goto fail;
    bt_strategy *s = bt_strategy_init(&replace_iface, r);
    if (s) return s;
    goto fail;
nomem:
    bt__fail(BT_ERR_NOMEM, "out of memory");
fail:;
    bt_strategy tmp = {&replace_iface, r, NULL};
    if (r) rp_free(&tmp);
    return NULL;
}

int32_t bt_replace_count(const bt_strategy *s) {
    if (!s || s->iface != &replace_iface) return -1;
    return ((const replace *)s->ctx)->done;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

enum { RP_FIND, RP_REPLACE, RP_MAX, RP_MAX_NEW, RP_SKIP, RP_MAX_PROB, RP_N };

static const bt_option_info replace_options[RP_N] = {
    [RP_FIND] = {"find", "--find", BT_OPTION_TEXT_LIST, 0, 0, 0, "TEXT",
                 "text to find (repeatable)", true},
    [RP_REPLACE] = {"replace", "--replace", BT_OPTION_TEXT, 0, 0, 0, "TEXT",
                    "what to put in its place", true},
    [RP_MAX] = {"max_replacements", "--max-replacements", BT_OPTION_INT, -1, 1e9, -1, "N",
                "at most N replacements (-1: no limit, the default)", false},
    [RP_MAX_NEW] = {"max_new_tokens_for_replace", "--max-new-tokens-for-replace", BT_OPTION_INT,
                    -1, 1e9, -1, "N",
                    "replace only while the text is at most N tokens (-1: no limit, the default)",
                    false},
    [RP_SKIP] = {"skip_tokens", "--skip-tokens", BT_OPTION_INT, 0, 1e9, 0, "N",
                 "ignore matches starting in the first N tokens", false},
    [RP_MAX_PROB] = {"max_prob", "--max-prob", BT_OPTION_FLOAT, 0, 1, 1, "P",
                     "replace only if the model gave the found text's first token p <= P (1)",
                     false},
};

static bt_strategy *replace_create(const bt_strategy_options *o, bt_provider *p) {
    (void)p;
    bt_replace_params rp = bt_replace_default_params();
    rp.find = bt__opt_strs(o, RP_FIND);
    rp.n_find = bt__opt_count(o, RP_FIND);
    rp.replace = bt__opt_str(o, RP_REPLACE, 0);
    rp.max_replacements = (int32_t)bt__opt_num(o, RP_MAX);
    rp.max_new_tokens_for_replace = (int32_t)bt__opt_num(o, RP_MAX_NEW);
    rp.skip_tokens = (int32_t)bt__opt_num(o, RP_SKIP);
    rp.max_prob = (float)bt__opt_num(o, RP_MAX_PROB);
    return bt_replace_strategy_init(&rp);
}

const bt__strategy_def bt__replace_def = {
    {"replace", "find and replace while generating (e.g. </think> -> \"\\nWait, but\")",
     replace_options, RP_N, false},
    replace_create,
};
