/*
 * antislop.c -- ban phrases (and regular expressions) without leaving slop behind.
 *
 * After every token: feed its text to the phrase scan (matcher.c: Unicode case folding
 * with variants on, Unicode word boundaries with whole_word) and run the regexes (PCRE2,
 * on the original text, never the folded one) on the unreleased text. On a match, rewind
 * to the token holding the match's first byte and ban that token at that position only
 * (hard), or scale its probability there (soft). A match that has to be let through
 * (limits, a soft ban re-chosen) hides nothing: the next match found at the same step is
 * handled in turn (until the ban pool is used up: then none could be banned), and a regex
 * match let through is remembered so that it is neither found again nor holds text back.
 * Every regex match runs under PCRE2 match, depth and heap limits: one that hits them
 * counts as no match (logged once per generation). Bans live in a pool sized by
 * max_retries_total, so the loop allocates nothing. A rewind, whoever asked for it, drops
 * what belonged to the removed text (on_rewind).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "catalog.h"
#include "matcher.h"

#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

typedef struct ban {
    bt_token tok;
    float    factor; /* 0: hard ban; in (0,1): soft */
    int32_t  next;   /* next ban at the same position, -1 at the end */
} ban;

/* A regex match that was let through: found again at every step until released, it is
 * skipped (and the regex searched again after it). */
typedef struct let_through {
    int32_t re, start, end; /* regex index, range in the original text */
} let_through;

typedef struct antislop {
    bt_antislop_params p;
    bt__automaton *aut;
    float         *pat_factor; /* per pattern */
    char         **pat_text;   /* per pattern, for logs */
    int32_t        n_pat;
    pcre2_code   **re;
    char         **re_src;     /* per regex, for logs */
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* the match, depth and heap limits of every match */
    int32_t        n_re;
    bool           re_limit_logged; /* a regex hit a limit in this generation (logged) */
    bt__scan       scan;
    /* per position */
    int32_t       *ban_head;
    int32_t       *tries;
    int32_t        max_pos;   /* positions allocated */
    int32_t        top_ban;   /* highest position holding bans, -1 if none */
    ban           *bans;
    int32_t        n_bans, cap_bans;
    bool           exhausted;
    /* regex hold-back, valid for the scan length it was computed at */
    int32_t        re_hold, re_hold_len, re_hold_tokens;
    let_through   *lt;        /* regex matches let through, in the unreleased text */
    int32_t        n_lt, cap_lt;
    bt_antislop_stats stats;
} antislop;

bt_antislop_params bt_antislop_default_params(void) {
    return (bt_antislop_params){.phrases = NULL, .regexes = NULL, .n_regexes = 0,
                                .keep_index_buffer = 5, .with_variants = true,
                                .whole_word = false, .skip_tokens = 0,
                                .max_retries_per_position = 20, .max_retries_total = 1000};
}

/* ==== Bans ============================================================== */

static bool has_ban(const antislop *a, int32_t pos, bt_token tok) {
    for (int32_t i = a->ban_head[pos]; i >= 0; i = a->bans[i].next)
        if (a->bans[i].tok == tok) return true;
    return false;
}

/* Record a ban; false when the pool (max_retries_total) is used up. */
static bool add_ban(antislop *a, int32_t pos, bt_token tok, float factor) {
    if (a->n_bans >= a->cap_bans) return false;
    ban *b = &a->bans[a->n_bans];
    *b = (ban){tok, factor, a->ban_head[pos]};
    a->ban_head[pos] = a->n_bans++;
    a->tries[pos]++;
    if (pos > a->top_ban) a->top_ban = pos;
    return true;
}

/* The text after `pos` is gone; bans made for it no longer apply. */
static void clear_after(antislop *a, int32_t pos) {
    for (int32_t q = pos + 1; q <= a->top_ban; q++) {
        a->ban_head[q] = -1;
        a->tries[q] = 0;
    }
    if (a->top_ban > pos) a->top_ban = pos;
}

/* ==== Regexes ============================================================ */

/* Forget let-through matches that can no longer be found: starting before `from`
 * (released) or ending past `len` (a rewind cut into them: what comes there is new text). */
static void lt_prune(antislop *a, int32_t from, int32_t len) {
    int32_t k = 0;
    for (int32_t i = 0; i < a->n_lt; i++)
        if (a->lt[i].start >= from && a->lt[i].end <= len) a->lt[k++] = a->lt[i];
    a->n_lt = k;
}

static bool lt_has(const antislop *a, int32_t re, int32_t start) {
    for (int32_t i = 0; i < a->n_lt; i++)
        if (a->lt[i].re == re && a->lt[i].start == start) return true;
    return false;
}

/* Every regex match runs under these limits (a pattern's own (*LIMIT_...) can only lower
 * them): a pattern with catastrophic backtracking costs a few milliseconds per step
 * (PCRE2's defaults: a fraction of a second per step, minutes per generation). Ordinary
 * patterns on the unreleased text stay far below them. */
#define RE_MATCH_LIMIT 100000   /* calls of PCRE2's internal match() per pcre2_match */
#define RE_DEPTH_LIMIT 20000    /* nested backtracking depth */
#define RE_HEAP_LIMIT_KIB 32768 /* backtracking memory */

/* A match that hit a limit counts as no match (nothing banned, nothing held back); the
 * first one of a generation is logged. */
static void regex_limit_hit(antislop *a, int32_t i, int rc) {
    if (a->re_limit_logged) return;
    a->re_limit_logged = true;
    bt__log(BT_LOG_WARN, "antislop: regex \"%.80s\" hit PCRE2's %s limit; counted as no match "
                         "(logged once per generation)", a->re_src[i],
            rc == PCRE2_ERROR_MATCHLIMIT ? "match" : rc == PCRE2_ERROR_DEPTHLIMIT ? "depth" : "heap");
}

/* Run the regexes on the text from byte `from`: the earliest full match (start, end) that
 * was not let through, and the earliest start of a partial match (text that may still
 * become one). After a let-through match a regex is searched again from its end. */
static void regex_scan(antislop *a, int32_t from, bt__match *m, int32_t *hold) {
    const char *text = bt__scan_text(&a->scan);
    *hold = a->scan.len;
    lt_prune(a, from, a->scan.len);
    for (int32_t i = 0; i < a->n_re; i++) {
        PCRE2_SIZE at = (PCRE2_SIZE)from;
        for (;;) {
            int rc = pcre2_match(a->re[i], (PCRE2_SPTR)text, (PCRE2_SIZE)a->scan.len,
                                 at, PCRE2_PARTIAL_SOFT, a->md, a->mctx);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(a->md);
            if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                rc == PCRE2_ERROR_HEAPLIMIT) {
                regex_limit_hit(a, i, rc);
                break;
            }
            if (rc >= 0 && ov[1] > ov[0]) {
                int32_t st = (int32_t)ov[0], en = (int32_t)ov[1];
                if (lt_has(a, i, st) && ov[1] > at) {
                    at = ov[1];
                    continue;
                }
                if (m->pattern < 0 || st < m->start)
                    *m = (bt__match){a->n_pat + i, st, en, st, en};
            } else if (rc == PCRE2_ERROR_PARTIAL) {
                if ((int32_t)ov[0] < *hold) *hold = (int32_t)ov[0];
            }
            break;
        }
    }
}

/* Byte where regex matches may start: the first unreleased token, past skipped ones. */
static int32_t regex_from(const antislop *a, const bt_view *v) {
    int32_t t = v->n_released > a->p.skip_tokens ? v->n_released : a->p.skip_tokens;
    if (t > a->scan.n_tokens) t = a->scan.n_tokens;
    return bt__scan_token_start(&a->scan, t);
}

/* ==== vtable ============================================================= */

static int as_begin(bt_strategy *s, const bt_view *v) {
    antislop *a = s->ctx;
    int rc = bt__scan_begin(&a->scan, a->aut, a->p.whole_word, v->max_tokens, v->provider);
    if (rc != BT_OK) return rc;
    a->scan.skip_tokens = a->p.skip_tokens;
    if (a->max_pos < v->max_tokens + 1) {
        free(a->ban_head);
        free(a->tries);
        a->max_pos = v->max_tokens + 1;
        a->ban_head = malloc((size_t)a->max_pos * sizeof *a->ban_head);
        a->tries = malloc((size_t)a->max_pos * sizeof *a->tries);
        if (!a->ban_head || !a->tries) {
            a->max_pos = 0;
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
    }
    if (a->n_re > 0 && a->cap_lt < v->max_tokens + 1) {
        free(a->lt);
        a->cap_lt = v->max_tokens + 1;
        if (!(a->lt = malloc((size_t)a->cap_lt * sizeof *a->lt))) {
            a->cap_lt = 0;
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
    }
    a->n_lt = 0;
    for (int32_t i = 0; i < a->max_pos; i++) a->ban_head[i] = -1, a->tries[i] = 0;
    a->top_ban = -1;
    a->n_bans = 0;
    a->exhausted = false;
    a->re_hold_len = -1;
    a->re_limit_logged = false;
    memset(&a->stats, 0, sizeof a->stats);
    return BT_OK;
}

static void as_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    antislop *a = s->ctx;
    if (v->n_tokens >= a->max_pos) return;
    for (int32_t i = a->ban_head[v->n_tokens]; i >= 0; i = a->bans[i].next)
        if (a->bans[i].factor == 0.0f) logits[a->bans[i].tok] = -INFINITY;
}

/* as_on_logits as a list of bans (the sampler's fast path: no copy of the logits). */
static void as_bans_here(bt_strategy *s, const bt_view *v, void (*ban)(void *, bt_token),
                         void *sink) {
    antislop *a = s->ctx;
    if (v->n_tokens >= a->max_pos) return;
    for (int32_t i = a->ban_head[v->n_tokens]; i >= 0; i = a->bans[i].next)
        if (a->bans[i].factor == 0.0f) ban(sink, a->bans[i].tok);
}

static const bt__strategy_ext antislop_ext = {.bans_here = as_bans_here};

static void as_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    antislop *a = s->ctx;
    if (v->n_tokens >= a->max_pos) return;
    for (int32_t i = a->ban_head[v->n_tokens]; i >= 0; i = a->bans[i].next) {
        const ban *b = &a->bans[i];
        float p = bt_candidates_get_p(c, b->tok);
        if (b->factor > 0.0f && p > 0.0f) bt_candidates_set_p(c, b->tok, p * b->factor);
    }
}

static const char *match_name(const antislop *a, int32_t pattern) {
    if (pattern < a->n_pat) return a->pat_text[pattern];
    return "(regex)";
}

/* Tell the observer (if any) about a ban at t and the rewind it causes: the matched
 * phrase, or the regex's matched text (at most 60 bytes of it). */
static void explain(bt_strategy *s, const bt_view *v, const bt__match *m, int32_t t,
                    float factor, const char *how) {
    antislop *a = s->ctx;
    if (!bt_view_observed(v)) return;
    if (m->pattern < a->n_pat) {
        bt_view_note_ban(v, s, t, v->tokens[t], factor, "phrase \"%s\"%s", a->pat_text[m->pattern], how);
        bt_view_note_rewind(v, s, "phrase \"%s\"%s", a->pat_text[m->pattern], how);
    } else {
        const char *text = bt__scan_text(&a->scan);
        int len = m->end - m->start > 60 ? 60 : m->end - m->start;
        /* cut before the character the 60th byte falls into, never inside it */
        while (len > 0 && len < m->end - m->start &&
               ((unsigned char)text[m->start + len] & 0xC0) == 0x80)
            len--;
        bt_view_note_ban(v, s, t, v->tokens[t], factor, "regex matched \"%.*s\"%s", len,
                         text + m->start, how);
        bt_view_note_rewind(v, s, "regex matched \"%.*s\"%s", len, text + m->start, how);
    }
}

/* Act on match m: the number of tokens to rewind, or 0 when it is let through. */
static int32_t act(bt_strategy *s, const bt_view *v, const bt__match *mp) {
    antislop *a = s->ctx;
    bt__match m = *mp;
    int32_t n = v->n_tokens;
    a->stats.matches++;
    int32_t t = bt__scan_token_at(&a->scan, m.start);
    float factor = m.pattern < a->n_pat ? a->pat_factor[m.pattern] : 0.0f;
    if (t < v->n_released || t >= n || a->exhausted) {
        a->stats.let_through++;
        return 0;
    }
    if (factor > 0.0f) { /* soft: scale once; if the model insists, let it through */
        if (has_ban(a, t, v->tokens[t]) || !add_ban(a, t, v->tokens[t], factor)) {
            a->stats.let_through++;
            return 0;
        }
        a->stats.soft_bans++;
        explain(s, v, &m, t, factor, " (soft)");
        clear_after(a, t);
        return n - t;
    }
    if (a->tries[t] >= a->p.max_retries_per_position) {
        /* Dead end at t: go one token further back if that is still possible. */
        int32_t t2 = t - 1;
        if (t2 < v->n_released || t2 < a->p.skip_tokens || t2 < 0 ||
            !add_ban(a, t2, v->tokens[t2], 0.0f)) {
            a->stats.let_through++;
            bt__log(BT_LOG_INFO, "antislop: letting \"%s\" through at token %d (retry limit)",
                    match_name(a, m.pattern), t);
            return 0;
        }
        a->stats.rewound_further++;
        explain(s, v, &m, t2, 0.0f, ": retry limit, one token further back");
        clear_after(a, t2);
        return n - t2;
    }
    if (!add_ban(a, t, v->tokens[t], 0.0f)) {
        a->exhausted = true;
        a->stats.let_through++;
        bt__log(BT_LOG_WARN, "antislop: %d retries used up; letting phrases through",
                a->p.max_retries_total);
        return 0;
    }
    a->stats.hard_bans++;
    explain(s, v, &m, t, 0.0f, "");
    clear_after(a, t);
    return n - t;
}

/* Run the regexes and remember their hold-back for keep_index. */
static void regex_step(antislop *a, int32_t from, bt__match *m) {
    regex_scan(a, from, m, &a->re_hold);
    a->re_hold_len = a->scan.len;
    a->re_hold_tokens = a->scan.n_tokens;
}

static int32_t as_backtrack(bt_strategy *s, const bt_view *v) {
    antislop *a = s->ctx;
    bt__match ph = bt__scan_sync(&a->scan, v, v->at_end); /* phrases completed now */
    bt__match re = {-1, 0, 0, 0, 0};                      /* the earliest regex match */
    int32_t from = 0;
    if (a->n_re > 0) {
        from = regex_from(a, v);
        regex_step(a, from, &re);
    }
    /* Earliest first (a phrase before a regex at the same byte); a match let through
     * must not hide a later, different one, so go on with the next. */
    while (ph.pattern >= 0 || re.pattern >= 0) {
        bool use_re = re.pattern >= 0 && (ph.pattern < 0 || re.start < ph.start);
        int32_t r = act(s, v, use_re ? &re : &ph);
        if (r > 0) return r;
        if (a->n_bans >= a->cap_bans) break; /* no ban is possible any more: nothing to do */
        if (!use_re) {
            ph = bt__scan_next(&a->scan, &ph);
        } else if (a->n_lt < a->cap_lt) {
            a->lt[a->n_lt++] = (let_through){re.pattern - a->n_pat, re.start, re.end};
            re = (bt__match){-1, 0, 0, 0, 0};
            regex_step(a, from, &re); /* the next one, and a hold-back without it */
        } else {
            re.pattern = -1; /* cannot remember more: it is found again next step */
        }
    }
    return 0;
}

static int32_t as_keep_index(bt_strategy *s, const bt_view *v) {
    antislop *a = s->ctx;
    bt__scan_sync(&a->scan, v, false); /* no-op unless another strategy rewound */
    int32_t hold = bt__scan_hold_from(&a->scan);
    if (a->n_re > 0) {
        if (a->re_hold_len != a->scan.len || a->re_hold_tokens != a->scan.n_tokens) {
            bt__match m = {-1, 0, 0, 0, 0}; /* one not handled yet (never a let-through one) */
            regex_scan(a, regex_from(a, v), &m, &a->re_hold);
            if (m.pattern >= 0 && m.start < a->re_hold) a->re_hold = m.start;
            a->re_hold_len = a->scan.len;
            a->re_hold_tokens = a->scan.n_tokens;
        }
        if (a->re_hold < hold) hold = a->re_hold;
    }
    int32_t k = bt__scan_token_at(&a->scan, hold) - a->p.keep_index_buffer;
    return k > 0 ? k : 0;
}

/* A rewind (asked by this strategy or another one of a chain): bans for positions after
 * the next draw, the scan's text and the let-through regex matches the rewind cut into
 * belong to removed text. */
static void as_on_rewind(bt_strategy *s, const bt_view *v, int32_t n) {
    (void)n;
    antislop *a = s->ctx;
    clear_after(a, v->n_tokens);
    bt__scan_truncate(&a->scan, v->n_tokens);
    lt_prune(a, 0, a->scan.len);
    a->re_hold_len = -1;
}

static void as_reset(bt_strategy *s) {
    antislop *a = s->ctx;
    bt__scan_truncate(&a->scan, 0);
    a->n_lt = 0;
}

static void as_free(bt_strategy *s) {
    antislop *a = s->ctx;
    if (!a) return;
    bt__automaton_free(a->aut);
    free(a->pat_factor);
    if (a->pat_text)
        for (int32_t i = 0; i < a->n_pat; i++) free(a->pat_text[i]);
    free(a->pat_text);
    for (int32_t i = 0; i < a->n_re; i++) pcre2_code_free(a->re[i]);
    free(a->re);
    if (a->re_src)
        for (int32_t i = 0; i < a->n_re; i++) free(a->re_src[i]);
    free(a->re_src);
    pcre2_match_data_free(a->md);
    pcre2_match_context_free(a->mctx);
    bt__scan_release(&a->scan);
    free(a->ban_head);
    free(a->tries);
    free(a->bans);
    free(a->lt);
    free(a);
}

static const bt_strategy_i antislop_iface = {
    .name = "antislop",
    .begin = as_begin,
    .on_logits = as_on_logits,
    .on_probs = as_on_probs,
    .backtrack = as_backtrack,
    .on_rewind = as_on_rewind,
    .keep_index = as_keep_index,
    .reset = as_reset,
    .free = as_free,
};

/* ==== Construction ======================================================= */

static int compile_regexes(antislop *a, const char *const *res, int32_t n) {
    a->re = calloc((size_t)n, sizeof *a->re);
    a->re_src = calloc((size_t)n, sizeof *a->re_src);
    a->mctx = pcre2_match_context_create(NULL);
    if (!a->re || !a->re_src || !a->mctx) return bt__fail(BT_ERR_NOMEM, "out of memory");
    pcre2_set_match_limit(a->mctx, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(a->mctx, RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(a->mctx, RE_HEAP_LIMIT_KIB);
    for (int32_t i = 0; i < n; i++) {
        if (!res[i]) return bt__fail(BT_ERR_INVALID_ARG, "regex %d is NULL", i);
        int err;
        PCRE2_SIZE off;
        a->re[i] = pcre2_compile((PCRE2_SPTR)res[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
        if (a->re[i] && !(a->re_src[i] = strdup(res[i]))) {
            pcre2_code_free(a->re[i]);
            a->re[i] = NULL;
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        if (!a->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return bt__fail(BT_ERR_PARSE, "regex \"%s\" at offset %zu: %s", res[i], (size_t)off,
                            (char *)msg);
        }
        a->n_re = i + 1;
        uint32_t minlen = 0;
        pcre2_pattern_info(a->re[i], PCRE2_INFO_MINLENGTH, &minlen);
        if (minlen == 0)
            return bt__fail(BT_ERR_INVALID_ARG, "regex \"%s\" can match empty text", res[i]);
    }
    a->md = pcre2_match_data_create(4, NULL);
    return a->md ? BT_OK : bt__fail(BT_ERR_NOMEM, "out of memory");
}

bt_strategy *bt_antislop_strategy_init(const bt_antislop_params *params) {
    bt_antislop_params p = params ? *params : bt_antislop_default_params();
    if (p.keep_index_buffer < 0 || p.skip_tokens < 0 || p.max_retries_per_position < 1 ||
        p.max_retries_total < 1 || p.n_regexes < 0 || (p.n_regexes > 0 && !p.regexes)) {
        bt__fail(BT_ERR_INVALID_ARG, "antislop: keep_index_buffer and skip_tokens must be >= 0, "
                                     "retry limits >= 1");
        return NULL;
    }
    int32_t n_phr = bt_phrase_list_size(p.phrases);
    if (n_phr == 0 && p.n_regexes == 0) {
        bt__fail(BT_ERR_INVALID_ARG, "antislop needs at least one phrase or regex");
        return NULL;
    }
    antislop *a = calloc(1, sizeof *a);
    if (!a) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    a->p = p;
    a->p.phrases = NULL; /* borrowed only during init */
    a->p.regexes = NULL;
    /* Phrases with adjustment 1 change nothing: leave them out of the automaton. */
    const char **texts = malloc((size_t)(n_phr > 0 ? n_phr : 1) * sizeof *texts);
    a->pat_factor = malloc((size_t)(n_phr > 0 ? n_phr : 1) * sizeof *a->pat_factor);
    a->pat_text = calloc((size_t)(n_phr > 0 ? n_phr : 1), sizeof *a->pat_text);
    a->cap_bans = p.max_retries_total;
    a->bans = malloc((size_t)a->cap_bans * sizeof *a->bans);
    if (!texts || !a->pat_factor || !a->pat_text || !a->bans) {
        free(texts);
        bt__fail(BT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n_phr; i++) {
        float f = bt_phrase_list_adjustment(params->phrases, i);
        if (f >= 1.0f) continue;
        texts[a->n_pat] = bt_phrase_list_phrase(params->phrases, i);
        a->pat_factor[a->n_pat] = f;
        if (!(a->pat_text[a->n_pat] = strdup(texts[a->n_pat]))) {
            free(texts);
            bt__fail(BT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        a->n_pat++;
    }
    int rc = bt__automaton_build(texts, a->n_pat, p.with_variants, &a->aut);
    free(texts);
    if (rc != BT_OK) goto fail;
    if (p.n_regexes > 0 && compile_regexes(a, params->regexes, p.n_regexes) != BT_OK) goto fail;

    bt_strategy *s = bt_strategy_init(&antislop_iface, a);
    if (s) {
        s->ext_ = &antislop_ext;
        return s;
    }
fail:;
    bt_strategy tmp = {&antislop_iface, a, NULL};
    as_free(&tmp);
    return NULL;
}

int bt_antislop_get_stats(const bt_strategy *s, bt_antislop_stats *out) {
    if (!s || s->iface != &antislop_iface || !out)
        return bt__fail(BT_ERR_INVALID_ARG, "not an antislop strategy");
    *out = ((const antislop *)s->ctx)->stats;
    return BT_OK;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

enum { AS_SLOPS, AS_SLOP_FILES, AS_REGEXES, AS_REGEX_FILES, AS_HARD, AS_BUFFER, AS_VARIANTS,
       AS_WHOLE_WORD, AS_SKIP, AS_RETRIES, AS_RETRIES_TOTAL, AS_N };

static const bt_option_info antislop_options[AS_N] = {
    [AS_SLOPS] = {"slops", "--slop", BT_OPTION_PHRASE_LIST, 0, 0, 0, "TEXT",
                  "a phrase to ban (repeatable; JSON: strings, or [phrase, adjustment] pairs "
                  "for soft bans)", false},
    [AS_SLOP_FILES] = {"slop_files", "--slop-file", BT_OPTION_PATH_LIST, 0, 0, 0, "FILE",
                       "phrases, one per line or JSON ([\"a\", ...] or [[\"a\", adj], ...])",
                       false},
    [AS_REGEXES] = {"regexes", "--slop-regex", BT_OPTION_TEXT_LIST, 0, 0, 0, "PCRE",
                    "a regular expression to ban (repeatable)", false},
    [AS_REGEX_FILES] = {"regex_files", "--slop-regex-file", BT_OPTION_PATH_LIST, 0, 0, 0, "FILE",
                        "regular expressions, one per line", false},
    [AS_HARD] = {"slop_hard", "--slop-hard", BT_OPTION_BOOL, 0, 1, 0, NULL,
                 "ban outright even where a file gives adjustments", false},
    [AS_BUFFER] = {"keep_index_buffer", "--keep-index-buffer", BT_OPTION_INT, 0, 1e6, 5, "N",
                   "extra tokens held back (5)", false},
    [AS_VARIANTS] = {"with_variants", "--no-variants", BT_OPTION_BOOL, 0, 1, 1, NULL,
                     "case-insensitive, with the original's variants (on; --no-variants: exact case)", false},
    [AS_WHOLE_WORD] = {"whole_word", "--whole-word", BT_OPTION_BOOL, 0, 1, 0, NULL,
                       "a phrase must not match inside a longer word", false},
    [AS_SKIP] = {"skip_tokens", "--skip-tokens", BT_OPTION_INT, 0, 1e9, 0, "N",
                 "ignore matches starting in the first N tokens", false},
    [AS_RETRIES] = {"max_retries", "--max-retries", BT_OPTION_INT, 1, 1e6, 20, "N",
                    "bans at one position before rewinding further (20)", false},
    [AS_RETRIES_TOTAL] = {"max_retries_total", "--max-retries-total", BT_OPTION_INT, 1, 1e8, 1000,
                          "N", "bans per generation before letting phrases through (1000)", false},
};

/* Append the regexes of o's files and list to *res (grown with realloc). */
static int gather_regexes(const bt_strategy_options *o, char ***res, int32_t *n_res) {
    for (int32_t i = 0; i < bt__opt_count(o, AS_REGEX_FILES); i++) {
        char **more = NULL;
        int32_t n_more = 0;
        int rc = bt_regex_list_load(bt__opt_str(o, AS_REGEX_FILES, i), &more, &n_more);
        if (rc != BT_OK) return rc;
        char **grown = realloc(*res, (size_t)(*n_res + n_more + 1) * sizeof *grown);
        if (!grown) {
            bt_strings_free(more, n_more);
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        *res = grown;
        memcpy(grown + *n_res, more, (size_t)n_more * sizeof *more);
        *n_res += n_more;
        free(more);
    }
    for (int32_t i = 0; i < bt__opt_count(o, AS_REGEXES); i++) {
        char **grown = realloc(*res, (size_t)(*n_res + 1) * sizeof *grown);
        if (!grown) return bt__fail(BT_ERR_NOMEM, "out of memory");
        *res = grown;
        if (!(grown[*n_res] = strdup(bt__opt_str(o, AS_REGEXES, i))))
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        (*n_res)++;
    }
    return BT_OK;
}

/* The phrases of o's list and files into l. */
static int gather_phrases(const bt_strategy_options *o, bt_phrase_list *l) {
    bool hard = bt__opt_num(o, AS_HARD) != 0;
    for (int32_t i = 0; i < bt__opt_count(o, AS_SLOPS); i++) {
        const char *ph = bt__opt_str(o, AS_SLOPS, i);
        int rc = bt_phrase_list_add(l, ph, strlen(ph), hard ? 0.0f : bt__opt_adj(o, AS_SLOPS, i));
        if (rc != BT_OK) return rc;
    }
    for (int32_t i = 0; i < bt__opt_count(o, AS_SLOP_FILES); i++) {
        bt_phrase_list *f = NULL;
        int rc = bt_phrase_list_load(bt__opt_str(o, AS_SLOP_FILES, i), hard, &f);
        for (int32_t k = 0; rc == BT_OK && k < bt_phrase_list_size(f); k++) {
            const char *ph = bt_phrase_list_phrase(f, k);
            rc = bt_phrase_list_add(l, ph, strlen(ph), bt_phrase_list_adjustment(f, k));
        }
        bt_phrase_list_free(f);
        if (rc != BT_OK) return rc;
    }
    return BT_OK;
}

static bt_strategy *antislop_create(const bt_strategy_options *o, bt_provider *p) {
    (void)p;
    bt_strategy *s = NULL;
    char **res = NULL;
    int32_t n_res = 0;
    bt_phrase_list *l = bt_phrase_list_new();
    if (!l) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (gather_phrases(o, l) == BT_OK && gather_regexes(o, &res, &n_res) == BT_OK) {
        bt_antislop_params ap = bt_antislop_default_params();
        ap.phrases = l;
        ap.regexes = (const char *const *)res;
        ap.n_regexes = n_res;
        ap.keep_index_buffer = (int32_t)bt__opt_num(o, AS_BUFFER);
        ap.with_variants = bt__opt_num(o, AS_VARIANTS) != 0;
        ap.whole_word = bt__opt_num(o, AS_WHOLE_WORD) != 0;
        ap.skip_tokens = (int32_t)bt__opt_num(o, AS_SKIP);
        ap.max_retries_per_position = (int32_t)bt__opt_num(o, AS_RETRIES);
        ap.max_retries_total = (int32_t)bt__opt_num(o, AS_RETRIES_TOTAL);
        s = bt_antislop_strategy_init(&ap);
    }
    bt_phrase_list_free(l);
    bt_strings_free(res, n_res);
    return s;
}

const bt__strategy_def bt__antislop_def = {
    {"antislop", "ban phrases: rewind when one appears and ban its first token there",
     antislop_options, AS_N, false},
    antislop_create,
};
