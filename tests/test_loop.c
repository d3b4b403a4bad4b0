/* test_loop.c -- the generation loop on the scripted provider: release order, keep
 * index, rewinds and their cost, stops, the step cap, forced tokens, seeds, UTF-8. */
#include "check.h"
#include "internal.h"

/* ---- a scripted model --------------------------------------------------------------
 * Vocabulary: 0 "<eos>", 1 "a", 2 "b", 3 "c", 4 "d", 5 "\xe2\x82" (half a euro sign),
 * 6 "\xac" (its last byte), 7 " ".
 * Logits: the token script[len - n_prompt] gets 10, 'c' 5, the others 0 (past the end of
 * the script <eos> gets 10). Uniform mode: all 0 except <eos> (-inf). */
static const char *const VOCAB[] = {"", "a", "b", "c", "d", "\xe2\x82", "\xac", " "};
enum { NV = 8, EOS = 0 };

typedef struct model {
    const bt_token *script;
    int32_t         n_script;
    int32_t         n_prompt;
    int             uniform;
} model;

static void model_logits(void *user, const bt_token *seq, int32_t n, float *logits, int32_t nv) {
    (void)seq;
    model *m = user;
    for (int32_t i = 0; i < nv; i++) logits[i] = 0.0f;
    if (m->uniform) { /* every token but <eos> equally likely */
        logits[EOS] = -INFINITY;
        return;
    }
    int32_t k = n - m->n_prompt;
    bt_token want = k < m->n_script ? m->script[k] : EOS;
    logits[3] = 5.0f; /* 'c' is always the second choice */
    logits[want] = 10.0f;
}

static bt_provider *make_provider(model *m, int32_t n_ctx) {
    bt_scripted_params p = bt_scripted_default_params();
    p.n_vocab = NV;
    p.tokens = VOCAB;
    p.eos = EOS;
    p.n_ctx = n_ctx;
    p.logits = model_logits;
    p.user = m;
    return bt_scripted_provider_init(&p);
}

/* ---- a collector for released tokens ---- */
typedef struct sink {
    bt_token toks[512];
    int      n;
    char     text[2048];
    size_t   len;
    int      calls_with_empty_text;
    int      stop_after; /* 0: never */
} sink;

static int collect(void *user, bt_token id, const char *text, size_t len) {
    sink *s = user;
    if (id >= 0) s->toks[s->n++] = id;
    if (len == 0) s->calls_with_empty_text++;
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
    return s->stop_after && s->n >= s->stop_after;
}

static bt_sampler_params greedy(void) {
    bt_sampler_params p = bt_sampler_default_params();
    p.top_k = 1;
    p.seed = 1;
    p.add_special = false;
    return p;
}

/* ---- a configurable test strategy ---------------------------------------------------- */
typedef struct tstrat {
    int32_t  hold;          /* keep_index = n_tokens - hold                           */
    int32_t  rewind_at;     /* when n_tokens reaches this (once), rewind ...          */
    int32_t  rewind_n;      /* ... this many tokens                                  */
    int      rewound;
    int      always_rewind; /* rewind 1 at every step                                 */
    bt_token ban_at_pos_token; int32_t ban_pos; /* on_logits, after the rewind: ban
                                                   this token at this position           */
    int      calls;         /* backtrack calls                                       */
    bt_token force;         /* on_probs: set p of this token to 1e9 (-1: none)         */
    int      ban_all;       /* on_logits: every token -inf                            */
    int      resets, begins;
    int32_t  max_seen_unreleased_at_release;
    float    probs_seen[NV]; /* what on_probs saw at the first step */
    int      probs_recorded;
    int      at_end_seen;   /* keep_index calls with v->at_end set                    */
    int      note;          /* explain rewinds, bans and forces to the observer        */
} tstrat;

static int ts_begin(bt_strategy *s, const bt_view *v) {
    (void)v;
    ((tstrat *)s->ctx)->begins++;
    return BT_OK;
}
static void ts_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    tstrat *t = s->ctx;
    if (t->ban_all)
        for (int i = 0; i < v->n_vocab; i++) logits[i] = -INFINITY;
    if (t->ban_pos >= 0 && v->n_tokens == t->ban_pos && t->rewound)
        logits[t->ban_at_pos_token] = -INFINITY;
}
static void ts_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    (void)v;
    tstrat *t = s->ctx;
    if (!t->probs_recorded) {
        for (int i = 0; i < NV; i++) t->probs_seen[i] = bt_candidates_get_p(c, i);
        t->probs_recorded = 1;
    }
    if (t->force >= 0) {
        bt_candidates_set_p(c, t->force, 1e9f);
        if (t->note) bt_view_note_force(v, s, v->n_tokens, t->force, "forced %d", t->force);
    }
}
static int32_t ts_backtrack(bt_strategy *s, const bt_view *v) {
    tstrat *t = s->ctx;
    t->calls++;
    if (t->always_rewind) return 1;
    if (!t->rewound && t->rewind_at > 0 && v->n_tokens == t->rewind_at) {
        t->rewound = 1;
        if (t->note && t->ban_pos >= 0)
            bt_view_note_ban(v, s, t->ban_pos, t->ban_at_pos_token, 0.0f, "no %d there",
                             t->ban_at_pos_token);
        if (t->note) bt_view_note_rewind(v, s, "undo %d", t->rewind_n);
        return t->rewind_n;
    }
    return 0;
}
static int32_t ts_keep(bt_strategy *s, const bt_view *v) {
    tstrat *t = s->ctx;
    t->at_end_seen += v->at_end;
    return v->n_tokens - t->hold;
}
static void ts_reset(bt_strategy *s) {
    tstrat *t = s->ctx;
    t->resets++;
    t->rewound = 0;
}
static const bt_strategy_i ts_iface = {
    .name = "test", .begin = ts_begin, .on_logits = ts_on_logits, .on_probs = ts_on_probs,
    .backtrack = ts_backtrack, .keep_index = ts_keep, .reset = ts_reset,
};

static tstrat ts_defaults(void) {
    return (tstrat){.ban_pos = -1, .force = -1};
}

/* ---- tests ------------------------------------------------------------------------ */

static const bt_token PROMPT[] = {1, 7};

static void test_greedy_and_eos(void) {
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    bt_sampler_params sp = greedy();
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_STR(k.text, "abcd");
    CHECK_EQ_INT(k.n, 5); /* a b c d <eos> */
    CHECK_EQ_INT(k.toks[4], EOS);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_EOG);
    CHECK_EQ_INT(st.n_released, 5);
    CHECK_EQ_INT(st.n_prompt, 2);
    CHECK_EQ_INT(st.n_evaluated, 2 + 4); /* prompt once, then one position per token */
    CHECK_EQ_INT(st.n_prompt_reevaluated, 0);
    bt_sampler_free(s);
    bt_provider_free(p);
}

static void test_keep_index_holds_and_flushes(void) {
    const bt_token script[] = {1, 2, 3, 4, 1, 2};
    model m = {script, 6, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.hold = 3;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 5;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    /* max_new_tokens flushes the 3 held tokens, in order */
    CHECK_STR(k.text, "abcda");
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_NEW_TOKENS);
    CHECK_EQ_INT(t.begins, 1);
    CHECK_EQ_INT(t.resets, 1);
    /* a second generation starts clean (reset) and gives the same text */
    sink k2 = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k2, &st), BT_OK);
    CHECK_STR(k2.text, "abcda");
    CHECK_EQ_INT(t.resets, 2);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_rewind_and_ban(void) {
    /* the model wants a b c d; the strategy rewinds 2 when 3 tokens exist (a b c -> a)
     * and bans 'b' at position 1, so the text continues a <next best> ... */
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.hold = 3;
    t.rewind_at = 3;
    t.rewind_n = 2;
    t.ban_pos = 1;
    t.ban_at_pos_token = 2;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 4;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    /* a b c -> a; 'b' is banned at position 1, so the second choice 'c' comes, then the
     * script goes on by position: a c c d */
    CHECK_STR(k.text, "accd");
    CHECK_EQ_INT(st.n_rewinds, 1);
    CHECK_EQ_INT(st.n_discarded, 2);
    CHECK_EQ_INT(st.n_prompt_reevaluated, 0);
    CHECK(k.n >= 1 && k.toks[0] == 1);
    CHECK(k.n < 2 || k.toks[1] != 2); /* the ban held at position 1 */
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_step_cap(void) {
    model m = {NULL, 0, 2, 1};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.always_rewind = 1;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    t.hold = 1; /* nothing ever becomes final */
    bt_sampler_params sp = greedy();
    sp.max_steps = 50;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_STEP_CAP);
    CHECK_EQ_INT(st.n_steps, 50);
    CHECK_EQ_INT(st.n_released, 0);
    CHECK_EQ_INT(st.n_rewinds, 50);
    /* default cap: 8 * max_new_tokens + 64 */
    bt_sampler_free(s);
    sp.max_steps = 0;
    sp.max_new_tokens = 10;
    s = bt_sampler_init(p, str, &sp);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_STEP_CAP);
    CHECK_EQ_INT(st.n_steps, 8 * 10 + 64);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_forced_token_outside_top_k(void) {
    const bt_token script[] = {1, 1, 1};
    model m = {script, 3, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.force = 4; /* 'd' never survives top_k = 1 */
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 3;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, NULL), BT_OK);
    CHECK_STR(k.text, "ddd");
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_temperature(void) {
    /* logits 10 for 'a', 5 for 'c', 0 for the 6 others; temperature 4 divides them:
     * p(a) = e^2.5 / (e^2.5 + e^1.25 + 6) */
    const bt_token script[] = {1};
    model m = {script, 1, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.top_k = 0;
    sp.temperature = 4.0f;
    sp.max_new_tokens = 1;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, NULL), BT_OK);
    double e = exp(2.5), ec = exp(1.25);
    CHECK_NEAR(t.probs_seen[1], e / (e + ec + 6), 1e-6);
    CHECK_NEAR(t.probs_seen[0], 1 / (e + ec + 6), 1e-6);
    bt_sampler_free(s);
    /* min_p 0.1 keeps logits >= 2.5 + ln 0.1 = 0.197: 'a' and 'c' */
    t.probs_recorded = 0;
    sp.min_p = 0.1f;
    s = bt_sampler_init(p, str, &sp);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, NULL), BT_OK);
    CHECK_NEAR(t.probs_seen[1], e / (e + ec), 1e-6);
    CHECK_NEAR(t.probs_seen[0], 0.0, 0.0);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_dead_end(void) {
    const bt_token script[] = {1, 2};
    model m = {script, 2, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.ban_all = 1;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 2;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.n_dead_ends, 2);
    CHECK_STR(k.text, "ab"); /* the model's own choice */
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_seed(void) {
    model m = {NULL, 0, 2, 1}; /* uniform over 8 tokens */
    bt_provider *p = make_provider(&m, 256);
    bt_sampler_params sp = greedy();
    sp.top_k = 0;
    sp.max_new_tokens = 40;
    sp.seed = 1234;
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    sink a = {0}, b = {0}, c = {0};
    bt_generate_tokens(s, PROMPT, 2, collect, &a, NULL);
    bt_generate_tokens(s, PROMPT, 2, collect, &b, NULL);
    CHECK_EQ_INT(a.n, b.n);
    CHECK(memcmp(a.toks, b.toks, sizeof(bt_token) * (size_t)a.n) == 0);
    bt_sampler_free(s);
    sp.seed = 99;
    s = bt_sampler_init(p, NULL, &sp);
    bt_generate_tokens(s, PROMPT, 2, collect, &c, NULL);
    CHECK(c.n != a.n || memcmp(a.toks, c.toks, sizeof(bt_token) * (size_t)a.n) != 0);
    bt_sampler_free(s);
    bt_provider_free(p);
}

static void test_utf8_release(void) {
    /* "a" then a euro sign split over two tokens: the text of the first half is held */
    const bt_token script[] = {1, 5, 6, 5};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    bt_sampler_params sp = greedy();
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    sink k = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, NULL), BT_OK);
    /* a, euro, then a dangling half at the end becomes one U+FFFD (as Python's
     * errors="replace" decodes it) */
    CHECK_STR(k.text, "a\xe2\x82\xac\xef\xbf\xbd");
    CHECK(k.calls_with_empty_text >= 1);
    bt_sampler_free(s);
    bt_provider_free(p);
}

static void test_context_and_args(void) {
    model m = {NULL, 0, 2, 1};
    bt_provider *p = make_provider(&m, 8);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 0; /* until the context is full */
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    sink k = {0};
    bt_stats st;
    /* the end of the context is a normal stop (max_length), never an error */
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_LENGTH);
    CHECK_EQ_INT(k.n, 6);
    CHECK_EQ_INT(st.n_released, 6);
    bt_sampler_free(s);
    /* ... also when a strategy holds text back: all of it is released at the end, and the
     * strategy saw the last token as the end of the text */
    tstrat t = ts_defaults();
    t.hold = 100;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    s = bt_sampler_init(p, str, &sp);
    sink held = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &held, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_LENGTH);
    CHECK_EQ_INT(held.n, 6);
    CHECK_EQ_INT(t.at_end_seen, 1);
    /* a max_length shorter than the context still wins */
    bt_sampler_free(s);
    sp.max_length = 5;
    s = bt_sampler_init(p, str, &sp);
    sink shorter = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &shorter, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_LENGTH);
    CHECK_EQ_INT(shorter.n, 3);
    bt_sampler_free(s);
    bt_strategy_free(str);
    sp.max_length = 0;
    s = bt_sampler_init(p, NULL, &sp);
    const bt_token long_prompt[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_EQ_INT(bt_generate_tokens(s, long_prompt, 8, collect, &k, &st), BT_ERR_CONTEXT_FULL);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 0, collect, &k, &st), BT_ERR_INVALID_ARG);
    const bt_token bad[] = {1, 99};
    CHECK_EQ_INT(bt_generate_tokens(s, bad, 2, collect, &k, &st), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_generate(s, "a\xff", 2, collect, &k, &st), BT_ERR_UTF8);
    CHECK_EQ_INT(bt_generate(s, "", 0, collect, &k, &st), BT_ERR_INVALID_ARG);
    bt_sampler_free(s);
    /* parameter validation */
    bt_sampler_params bad_p = greedy();
    bad_p.top_p = 0.0f;
    CHECK(bt_sampler_init(p, NULL, &bad_p) == NULL);
    CHECK(strstr(bt_last_error(), "top_p") != NULL);
    bad_p = greedy();
    bad_p.top_k = -1;
    CHECK(bt_sampler_init(p, NULL, &bad_p) == NULL);
    bad_p = greedy();
    bad_p.temperature = -1.0f;
    CHECK(bt_sampler_init(p, NULL, &bad_p) == NULL);
    bad_p = greedy();
    bad_p.temperature = NAN;
    CHECK(bt_sampler_init(p, NULL, &bad_p) == NULL);
    bad_p = greedy();
    bad_p.min_p = 1.5f;
    CHECK(bt_sampler_init(p, NULL, &bad_p) == NULL);
    CHECK(bt_sampler_init(NULL, NULL, NULL) == NULL);
    bt_provider_free(p);
}

/* ---- prompt reuse across generations ---------------------------------------------- */

/* Logits from the content alone: after token t, token t % 4 + 1 is likely; <eos> never. */
static void cycle_logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)user;
    for (int32_t i = 0; i < nv; i++) l[i] = 0.0f;
    l[EOS] = -INFINITY;
    l[seq[n - 1] % 4 + 1] = 3.0f;
}

static bt_provider *cycle_provider(void) {
    bt_scripted_params p = bt_scripted_default_params();
    p.n_vocab = NV;
    p.tokens = VOCAB;
    p.eos = EOS;
    p.n_ctx = 64;
    p.logits = cycle_logits;
    return bt_scripted_provider_init(&p);
}

typedef struct turn_out {
    sink     k;
    bt_stats st;
} turn_out;

static int fail_begin(bt_strategy *s, const bt_view *v) {
    (void)s, (void)v;
    return BT_ERR_STRATEGY;
}
static const bt_strategy_i fail_iface = {.name = "fails", .begin = fail_begin};

/* A provider that forwards to another and fails its eval after `fail_after` calls. */
typedef struct flaky {
    bt_provider *inner;
    int          fail_after, calls;
} flaky;
#define FWD(f) (((flaky *)ctx)->inner->iface->f)
#define IN(ctx) (((flaky *)ctx)->inner->ctx)
static int32_t fk_nv(void *ctx) { return FWD(n_vocab)(IN(ctx)); }
static int32_t fk_ctx(void *ctx) { return FWD(n_ctx)(IN(ctx)); }
static int fk_tok(void *ctx, const char *t, size_t l, bool a, bool b, bt_token *o, int32_t c, int32_t *n) {
    return FWD(tokenize)(IN(ctx), t, l, a, b, o, c, n);
}
static int fk_text(void *ctx, bt_token id, const char **b, size_t *l) { return FWD(token_text)(IN(ctx), id, b, l); }
static bool fk_eog(void *ctx, bt_token id) { return FWD(is_eog)(IN(ctx), id); }
static int fk_eval(void *ctx, const bt_token *seq, int32_t n, const float **l, bt_eval_info *i) {
    if (++((flaky *)ctx)->calls > ((flaky *)ctx)->fail_after) return BT_ERR_PROVIDER;
    return FWD(eval)(IN(ctx), seq, n, l, i);
}
static int fk_rewind(void *ctx, int32_t n) { return FWD(rewind)(IN(ctx), n); }
static void fk_reset(void *ctx) { FWD(reset)(IN(ctx)); }
static int32_t fk_held(void *ctx, const bt_token **t) { return FWD(held)(IN(ctx), t); }
static int32_t fk_begin(void *ctx, int32_t keep) { return FWD(begin)(IN(ctx), keep); }
static void fk_end(void *ctx) { FWD(end)(IN(ctx)); }
static const bt_provider_i flaky_iface = {
    .name = "flaky", .n_vocab = fk_nv, .n_ctx = fk_ctx, .tokenize = fk_tok, .token_text = fk_text,
    .is_eog = fk_eog, .eval = fk_eval, .rewind = fk_rewind, .reset = fk_reset, .held = fk_held,
    .begin = fk_begin, .end = fk_end,
};

/* Three turns of a growing conversation on one sampler: each turn's prompt is the last
 * prompt, the text released for it and a new message. Only the tokens after what the
 * provider still holds are evaluated, and the text equals a cold run's. */
static void test_prompt_reuse(void) {
    bt_provider *warm_p = cycle_provider(), *cold_p = cycle_provider();
    bt_sampler_params sp = greedy();
    sp.top_k = 0; /* sampled: the draws must see the same logits */
    sp.seed = 11;
    sp.max_new_tokens = 5;
    bt_sampler *warm = bt_sampler_init(warm_p, NULL, &sp);
    sp.cache_prompt = false;
    bt_sampler *cold = bt_sampler_init(cold_p, NULL, &sp);
    bt_token conv[64] = {1, 7};
    int32_t n = 2, held = 0;
    for (int turn = 0; turn < 3; turn++) {
        turn_out w = {0}, c = {0};
        CHECK_EQ_INT(bt_generate_tokens(warm, conv, n, collect, &w.k, &w.st), BT_OK);
        CHECK_EQ_INT(bt_generate_tokens(cold, conv, n, collect, &c.k, &c.st), BT_OK);
        CHECK_STR(w.k.text, c.k.text);
        CHECK_EQ_INT(w.k.n, 5);
        /* what the provider held from the last turn: that prompt and all its text but
         * the last token (drawn, never evaluated) */
        CHECK_EQ_INT(w.st.n_prompt_cached, held);
        CHECK_EQ_INT(c.st.n_prompt_cached, 0);
        CHECK_EQ_INT(w.st.n_evaluated, (n - held) + (w.st.n_steps - 1));
        CHECK_EQ_INT(c.st.n_evaluated, n + (c.st.n_steps - 1));
        CHECK_EQ_INT(w.st.n_prompt_reevaluated, 0);
        held = n + w.k.n - 1;
        memcpy(conv + n, w.k.toks, (size_t)w.k.n * sizeof *conv);
        n += w.k.n;
        conv[n++] = 7; /* the next message */
        conv[n++] = (bt_token)(2 + turn);
    }
    CHECK(held > 12);

    /* the same prompt again: all but its last token from the cache */
    turn_out again = {0};
    CHECK_EQ_INT(bt_generate_tokens(warm, conv, n, collect, &again.k, &again.st), BT_OK);
    turn_out again2 = {0};
    CHECK_EQ_INT(bt_generate_tokens(warm, conv, n, collect, &again2.k, &again2.st), BT_OK);
    CHECK_EQ_INT(again2.st.n_prompt_cached, n - 1);
    CHECK_STR(again.k.text, again2.k.text);

    /* a caller's stop leaves the cache consistent: the next turn reuses it */
    sink stop = {0};
    stop.stop_after = 2;
    CHECK_EQ_INT(bt_generate_tokens(warm, conv, n, collect, &stop, NULL), BT_OK);
    memcpy(conv + n, stop.toks, 2 * sizeof *conv);
    turn_out after = {0}, after_cold = {0};
    CHECK_EQ_INT(bt_generate_tokens(warm, conv, n + 2, collect, &after.k, &after.st), BT_OK);
    CHECK_EQ_INT(bt_generate_tokens(cold, conv, n + 2, collect, &after_cold.k, &after_cold.st), BT_OK);
    CHECK_EQ_INT(after.st.n_prompt_cached, n + 1);
    CHECK_STR(after.k.text, after_cold.k.text);

    /* a strategy that cannot start leaves the provider and its cache untouched */
    bt_strategy *bad = bt_strategy_init(&fail_iface, NULL);
    sp.cache_prompt = true;
    bt_sampler *failing = bt_sampler_init(warm_p, bad, &sp);
    CHECK_EQ_INT(bt_generate_tokens(failing, conv, n, collect, &(sink){0}, NULL), BT_ERR_STRATEGY);
    CHECK(bt_provider_cached_prefix(warm_p, conv, n) > 0);

    /* a generation that fails mid-way leaves nothing behind: the next one starts cold and
     * gives the cold text */
    flaky fl = {.inner = warm_p, .fail_after = 2};
    bt_provider *fp = bt_provider_init(&flaky_iface, &fl);
    bt_sampler *mid = bt_sampler_init(fp, NULL, &sp);
    CHECK_EQ_INT(bt_generate_tokens(mid, conv, n, collect, &(sink){0}, NULL), BT_ERR_PROVIDER);
    CHECK_EQ_INT(bt_provider_cached_prefix(warm_p, conv, n), 0);
    turn_out fresh = {0};
    CHECK_EQ_INT(bt_generate_tokens(warm, conv, n, collect, &fresh.k, &fresh.st), BT_OK);
    CHECK_EQ_INT(fresh.st.n_prompt_cached, 0);
    CHECK_STR(fresh.k.text, again.k.text);
    bt_sampler_free(mid);
    bt_provider_free(fp);

    /* bt_provider_reset drops the cache explicitly; cache_prompt false leaves none */
    bt_provider_reset(warm_p);
    CHECK_EQ_INT(bt_provider_cached_prefix(warm_p, conv, n), 0);
    CHECK_EQ_INT(bt_generate_tokens(cold, conv, n, collect, &(sink){0}, NULL), BT_OK);
    CHECK_EQ_INT(bt_provider_cached_prefix(cold_p, conv, n), 0);
    bt_sampler_free(failing);
    bt_strategy_free(bad);
    bt_sampler_free(warm);
    bt_sampler_free(cold);
    bt_provider_free(warm_p);
    bt_provider_free(cold_p);
}

/* bt_sampler_cancel: the generation ends at its next step even though the strategy holds
 * every token back (no release callback comes); a cancel with nothing running stops the
 * next generation at once; the flag is consumed. */
static bt_sampler *g_cancel_target;
static int32_t g_cancel_at;
static void cancel_on_next(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    (void)s, (void)c;
    if (v->n_tokens == g_cancel_at) bt_sampler_cancel(g_cancel_target);
}
static int32_t hold_all(bt_strategy *s, const bt_view *v) {
    (void)s, (void)v;
    return 0;
}
static const bt_strategy_i canceller_iface = {.name = "canceller", .on_next_token = cancel_on_next,
                                              .keep_index = hold_all};

static void test_cancel(void) {
    const bt_token script[] = {1, 2, 3, 4, 1, 2, 3, 4};
    model m = {script, 8, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    bt_strategy *str = bt_strategy_init(&canceller_iface, NULL);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 8;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    g_cancel_target = s;
    g_cancel_at = 3;
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_CALLER);
    CHECK_EQ_INT(st.n_steps, 3);
    CHECK_EQ_INT(k.n, 0);
    CHECK_EQ_INT(st.n_released, 0);
    g_cancel_at = -1; /* consumed: the next generation runs to its end */
    sink k2 = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k2, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_NEW_TOKENS);
    CHECK_EQ_INT(k2.n, 8);
    bt_sampler_cancel(s); /* nothing runs: the next generation stops before its first draw */
    sink k3 = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k3, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_CALLER);
    CHECK_EQ_INT(st.n_steps, 0);
    bt_sampler_cancel(NULL); /* NULL-safe */
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_caller_stop_and_clamp(void) {
    const bt_token script[] = {1, 2, 3, 4, 1, 2, 3, 4};
    model m = {script, 8, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.rewind_at = 6;
    t.rewind_n = 100; /* more than is unreleased: clamped */
    t.hold = 2;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 8;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.n_discarded, 3); /* only the three unreleased tokens could go */
    CHECK_STR(k.text, "abcdabcd");
    sink stop = {0};
    stop.stop_after = 3;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &stop, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_CALLER);
    CHECK_EQ_INT(stop.n, 3);
    CHECK_EQ_INT(st.n_released, 3);
    /* everything held back to the end, then released at once: what the caller refused
     * after its stop is neither delivered nor counted */
    t = ts_defaults();
    t.hold = 100;
    sink stop2 = {0};
    stop2.stop_after = 3;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &stop2, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_CALLER);
    CHECK_EQ_INT(stop2.n, 3);
    CHECK_EQ_INT(st.n_released, 3);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_chain_precedence(void) {
    const bt_token script[] = {1, 2, 3, 4, 1, 2};
    model m = {script, 6, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t1 = ts_defaults(), t2 = ts_defaults();
    t1.rewind_at = 4, t1.rewind_n = 1, t1.hold = 4;
    t2.rewind_at = 4, t2.rewind_n = 3, t2.hold = 1;
    bt_strategy *list[2] = {bt_strategy_init(&ts_iface, &t1), bt_strategy_init(&ts_iface, &t2)};
    bt_strategy *chain = bt_chain_strategy_init(list, 2);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 6;
    bt_sampler *s = bt_sampler_init(p, chain, &sp);
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, &st), BT_OK);
    /* at token 4 both want to rewind: only the first (1 token) counts and the second is
     * not asked; when token 4 comes again the second fires (3 tokens) */
    CHECK_EQ_INT(st.n_rewinds, 2);
    CHECK_EQ_INT(st.n_discarded, 1 + 3);
    CHECK_EQ_INT(t2.calls, t1.calls - 1);
    CHECK_EQ_INT(t1.resets, 1);
    CHECK_EQ_INT(t2.resets, 1);
    bt_sampler_free(s);
    bt_strategy_free(chain);
    bt_provider_free(p);
    CHECK(bt_chain_strategy_init(NULL, 0) == NULL);
}


/* ---- the observer ---- */
typedef struct evlog {
    int      types[256];
    bt_event ev[256];
    char     reason[256][64];
    char     strategy[256][16];
    int      n;
    char     released[256];
    size_t   rlen;
    bt_token cont[64]; /* the continuation rebuilt from draws and rewinds */
    int32_t  n_cont;
    float    top_sum;  /* the last draw's top probabilities, summed */
    int32_t  n_top_max;
    bool     draw_p_in_top;
} evlog;

static void record(void *user, const bt_event *ev) {
    evlog *l = user;
    if (l->n < 256) {
        l->types[l->n] = ev->type;
        l->ev[l->n] = *ev;
        snprintf(l->reason[l->n], sizeof l->reason[0], "%s", ev->reason ? ev->reason : "(null)");
        snprintf(l->strategy[l->n], sizeof l->strategy[0], "%s", ev->strategy ? ev->strategy : "");
        l->n++;
    }
    switch (ev->type) {
    case BT_EVENT_DRAW:
        l->n_cont = ev->pos;
        l->cont[l->n_cont++] = ev->token;
        l->top_sum = 0;
        l->draw_p_in_top = false;
        for (int32_t i = 0; i < ev->n_top; i++) {
            l->top_sum += ev->top[i].p;
            if (ev->top[i].id == ev->token && fabsf(ev->top[i].p - ev->p) < 1e-6f)
                l->draw_p_in_top = true;
            if (i > 0 && ev->top[i].p > ev->top[i - 1].p) l->draw_p_in_top = false;
        }
        if (ev->n_top > l->n_top_max) l->n_top_max = ev->n_top;
        break;
    case BT_EVENT_REWIND: l->n_cont = ev->pos; break;
    case BT_EVENT_RELEASE:
        memcpy(l->released + l->rlen, ev->text, ev->text_len);
        l->rlen += ev->text_len;
        break;
    default: break;
    }
}

static int count_type(const evlog *l, int type) {
    int c = 0;
    for (int i = 0; i < l->n; i++) c += l->types[i] == type;
    return c;
}

static void test_observer(void) {
    /* the rewind-and-ban generation of test_rewind_and_ban, observed */
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.hold = 3, t.rewind_at = 3, t.rewind_n = 2, t.ban_pos = 1, t.ban_at_pos_token = 2;
    t.note = 1;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.top_k = 3;
    sp.temperature = 0.0f;
    sp.max_new_tokens = 4;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    CHECK_EQ_INT(bt_sampler_set_observer(s, record, NULL, 65), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_sampler_set_observer(s, record, NULL, -1), BT_ERR_INVALID_ARG);
    evlog l = {0};
    CHECK_EQ_INT(bt_sampler_set_observer(s, record, &l, 2), BT_OK);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_STR(k.text, "accd");
    /* BEGIN first, END last, with the stats */
    CHECK(l.n > 2 && l.types[0] == BT_EVENT_BEGIN && l.types[l.n - 1] == BT_EVENT_END);
    CHECK_EQ_INT(l.ev[0].n, 2);
    /* the END's stats (valid only during the call): test_review_end_stats */
    /* one draw per step, one rewind with the strategy's own reason, one ban before it */
    CHECK_EQ_INT(count_type(&l, BT_EVENT_DRAW), (int)st.n_steps);
    CHECK_EQ_INT(count_type(&l, BT_EVENT_REWIND), 1);
    CHECK_EQ_INT(count_type(&l, BT_EVENT_BAN), 1);
    for (int i = 0; i < l.n; i++) {
        if (l.types[i] == BT_EVENT_REWIND) {
            CHECK_EQ_INT(l.ev[i].n, 2);
            CHECK_EQ_INT(l.ev[i].pos, 1);
            CHECK_STR(l.reason[i], "undo 2");
            CHECK_STR(l.strategy[i], "test");
            CHECK(i > 0 && l.types[i - 1] == BT_EVENT_BAN); /* the ban comes first */
            CHECK_EQ_INT(l.ev[i].step, 3);
        }
        if (l.types[i] == BT_EVENT_BAN) {
            CHECK_EQ_INT(l.ev[i].pos, 1);
            CHECK_EQ_INT(l.ev[i].token, 2);
            CHECK_NEAR(l.ev[i].p, 0.0, 0.0);
            CHECK_STR(l.reason[i], "no 2 there");
        }
        if (l.types[i] == BT_EVENT_DRAW) CHECK(l.ev[i].step >= 1 && l.ev[i].n_top == 2);
    }
    /* the released text, and the continuation rebuilt from the events, are the output */
    l.released[l.rlen] = 0;
    CHECK_STR(l.released, "accd");
    CHECK_EQ_INT(l.n_cont, k.n);
    for (int i = 0; i < k.n && i < l.n_cont; i++) CHECK_EQ_INT(l.cont[i], k.toks[i]);
    /* near-greedy: the drawn token has p ~ 1 and heads its top list */
    CHECK(l.draw_p_in_top);
    CHECK_NEAR(l.top_sum, 1.0, 1e-3);

    /* sampled, a rewind without a note is attributed to the strategy, reason "" */
    t = ts_defaults();
    t.hold = 0, t.rewind_at = 2, t.rewind_n = 1;
    t.force = 4, t.note = 1;
    sp = greedy();
    sp.top_k = 0;
    sp.max_new_tokens = 3;
    bt_sampler_free(s);
    s = bt_sampler_init(p, str, &sp);
    t.note = 0;
    memset(&l, 0, sizeof l);
    bt_sampler_set_observer(s, record, &l, 8);
    memset(&k, 0, sizeof k);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_EQ_INT(count_type(&l, BT_EVENT_REWIND), 1);
    CHECK_EQ_INT(count_type(&l, BT_EVENT_FORCE), 0);
    for (int i = 0; i < l.n; i++)
        if (l.types[i] == BT_EVENT_REWIND) {
            CHECK_STR(l.strategy[i], "test");
            CHECK_STR(l.reason[i], "");
        }
    CHECK_EQ_INT(l.n_top_max, NV); /* top_k 0: every token is a candidate */
    /* forces are reported before the draw they force */
    t = ts_defaults();
    t.force = 4, t.note = 1;
    memset(&l, 0, sizeof l);
    memset(&k, 0, sizeof k);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_STR(k.text, "ddd");
    CHECK(l.n > 3 && l.types[1] == BT_EVENT_FORCE && l.types[2] == BT_EVENT_DRAW);
    CHECK_EQ_INT(l.ev[1].token, 4);
    CHECK_STR(l.reason[1], "forced 4");

    /* removed: nothing is reported, and the output is the same */
    CHECK_EQ_INT(bt_sampler_set_observer(s, NULL, NULL, 0), BT_OK);
    int before = l.n;
    sink k2 = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k2, &st), BT_OK);
    CHECK_EQ_INT(l.n, before);
    CHECK_STR(k2.text, "ddd");
    bt_sampler_free(s);
    bt_strategy_free(str);

    /* an incomplete character at the end is released as U+FFFD, also to the observer,
     * which gets texts even when the caller has no release callback */
    const bt_token half[] = {5};
    model m2 = {half, 1, 2, 0};
    bt_provider *p2 = make_provider(&m2, 64);
    sp = greedy();
    sp.max_new_tokens = 1;
    s = bt_sampler_init(p2, NULL, &sp);
    memset(&l, 0, sizeof l);
    bt_sampler_set_observer(s, record, &l, 0);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, &st), BT_OK);
    l.released[l.rlen] = 0;
    evlog l2 = {0};
    bt_sampler_set_observer(s, record, &l2, 0);
    memset(&k, 0, sizeof k);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_OK);
    CHECK_STR(l.released, k.text);     /* what the caller would have got */
    CHECK(strstr(k.text, "\xef\xbf\xbd") == k.text);
    l2.released[l2.rlen] = 0;
    CHECK_STR(l2.released, k.text);
    CHECK_EQ_INT(count_type(&l, BT_EVENT_RELEASE), 2); /* the token, then the flush */
    bt_sampler_free(s);
    bt_provider_free(p2);
    bt_provider_free(p);
}

/* ==== Review of the observer (3a2436e..62cb5c5): defects found, one test each ==== */

/* A recorder that keeps what the review's checks need: the continuation rebuilt from
 * DRAW and REWIND events, the released tokens, full reasons, the END's stats. */
typedef struct rvlog {
    bt_token cont[128];
    int32_t  n_cont;
    bt_token rel[128];
    int32_t  n_rel;
    int      n_draw, n_rewind, n_end;
    float    draw_p[128];
    bool     top_finite;    /* every top entry's p finite and in [0, 1]            */
    float    top_sum_max;   /* the largest sum of a DRAW's top probabilities         */
    char     rw_strategy[64], rw_reason[512]; /* the last REWIND's                  */
    bool     reasons_valid; /* every reason is valid UTF-8 and at most 255 bytes     */
    int      end_stop;      /* the END's stats, copied during the call               */
    int64_t  end_released, end_rewinds;
} rvlog;

static void rv_record(void *user, const bt_event *ev) {
    rvlog *l = user;
    if (ev->reason && (!bt__utf8_valid(ev->reason, strlen(ev->reason)) || strlen(ev->reason) > 255))
        l->reasons_valid = false;
    switch (ev->type) {
    case BT_EVENT_DRAW: {
        l->n_cont = ev->pos;
        l->cont[l->n_cont++] = ev->token;
        if (l->n_draw < 128) l->draw_p[l->n_draw] = ev->p;
        l->n_draw++;
        float sum = 0;
        for (int32_t i = 0; i < ev->n_top; i++) {
            if (!(ev->top[i].p >= 0.0f && ev->top[i].p <= 1.0f)) l->top_finite = false;
            sum += ev->top[i].p;
        }
        if (sum > l->top_sum_max) l->top_sum_max = sum;
        break;
    }
    case BT_EVENT_REWIND:
        l->n_rewind++;
        l->n_cont = ev->pos;
        snprintf(l->rw_strategy, sizeof l->rw_strategy, "%s", ev->strategy ? ev->strategy : "(null)");
        snprintf(l->rw_reason, sizeof l->rw_reason, "%s", ev->reason ? ev->reason : "(null)");
        break;
    case BT_EVENT_RELEASE:
        if (ev->n == 1) l->rel[l->n_rel++] = ev->token;
        break;
    case BT_EVENT_END:
        l->n_end++;
        l->end_stop = ev->stats ? ev->stats->stop_reason : -1;
        l->end_released = ev->stats ? ev->stats->n_released : -1;
        l->end_rewinds = ev->stats ? ev->stats->n_rewinds : -1;
        break;
    default: break;
    }
}

static rvlog rv_new(void) { return (rvlog){.top_finite = true, .reasons_valid = true}; }

/* Defect: a strategy may force a token with p = +INFINITY (bt_candidates_set_p takes it
 * and the draw picks that token for certain), but the DRAW event then said p = NaN
 * (inf * 1/inf) and its top list held NaN: a NaN logprob for issue 11. The token was
 * drawn with certainty: p must be 1, the others 0. Negative or NaN p written by a
 * strategy count as 0, as the draw counts them. */
static void inf_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    (void)s, (void)v;
    if (c->n > 1) c->data[c->n - 1].p = -1.0f; /* a strategy's bad write: no mass */
    bt_candidates_set_p(c, 4, INFINITY);
}
static const bt_strategy_i inf_iface = {.name = "inf", .on_probs = inf_on_probs};

static void test_review_draw_p_infinite(void) {
    model m = {NULL, 0, 2, 1}; /* uniform */
    bt_provider *p = make_provider(&m, 64);
    bt_strategy *str = bt_strategy_init(&inf_iface, NULL);
    bt_sampler_params sp = greedy();
    sp.top_k = 0;
    sp.max_new_tokens = 3;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    rvlog l = rv_new();
    CHECK_EQ_INT(bt_sampler_set_observer(s, rv_record, &l, 8), BT_OK);
    sink k = {0};
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, NULL), BT_OK);
    CHECK_STR(k.text, "ddd");
    CHECK_EQ_INT(l.n_draw, 3);
    for (int i = 0; i < l.n_draw && i < 3; i++) CHECK_NEAR(l.draw_p[i], 1.0, 1e-6);
    CHECK(l.top_finite);
    CHECK(l.top_sum_max <= 1.0f + 1e-5f);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

/* Defect: when the provider's rewind failed, the continuation was already shortened and
 * release_all released the shortened one, but no REWIND event was sent: re-applying the
 * events gave a continuation longer than what was released. */
typedef struct norewind {
    flaky f; /* forwards everything (fail_after huge) */
} norewind;
static int nr_rewind(void *ctx, int32_t n) {
    (void)ctx, (void)n;
    return bt__fail(BT_ERR_PROVIDER, "review: this provider cannot rewind");
}
static const bt_provider_i norewind_iface = {
    .name = "norewind", .n_vocab = fk_nv, .n_ctx = fk_ctx, .tokenize = fk_tok,
    .token_text = fk_text, .is_eog = fk_eog, .eval = fk_eval, .rewind = nr_rewind,
    .reset = fk_reset,
};

static void test_review_rewind_error_events(void) {
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *inner = make_provider(&m, 64);
    norewind nr = {{.inner = inner, .fail_after = 1 << 30}};
    bt_provider *p = bt_provider_init(&norewind_iface, &nr);
    tstrat t = ts_defaults();
    t.hold = 3, t.rewind_at = 3, t.rewind_n = 2, t.note = 1;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 4;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    rvlog l = rv_new();
    bt_sampler_set_observer(s, rv_record, &l, 2);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, collect, &k, &st), BT_ERR_PROVIDER);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_ERROR);
    /* what was released is what the events rebuild */
    CHECK_EQ_INT(l.n_rel, k.n);
    CHECK_EQ_INT(l.n_cont, k.n);
    for (int i = 0; i < k.n && i < l.n_cont; i++) CHECK_EQ_INT(l.cont[i], k.toks[i]);
    CHECK_EQ_INT(l.n_rewind, 1);
    CHECK_EQ_INT(l.end_rewinds, l.n_rewind);
    CHECK_EQ_INT(l.n_end, 1);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
    bt_provider_free(inner);
}

/* Defect: in a chain, the REWIND was attributed to whichever member noted last, even one
 * that then returned 0, and a member that rewound without a note was reported as
 * "chain". The member that asked must be named, with its own reason ("" if none). */
static int32_t noter_backtrack(bt_strategy *s, const bt_view *v) {
    bt_view_note_rewind(v, s, "not me");
    return 0;
}
static int32_t silent_backtrack(bt_strategy *s, const bt_view *v) {
    int *done = s->ctx;
    if (*done || v->n_tokens != 3) return 0;
    *done = 1;
    return 2;
}
static const bt_strategy_i noter_iface = {.name = "noter", .backtrack = noter_backtrack};
static const bt_strategy_i silent_iface = {.name = "silent", .backtrack = silent_backtrack};

static void chain_attribution(bool with_noter, const char *want_strategy, const char *want_reason) {
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    int done = 0;
    bt_strategy *members[2];
    int32_t n = 0;
    if (with_noter) members[n++] = bt_strategy_init(&noter_iface, NULL);
    members[n++] = bt_strategy_init(&silent_iface, &done);
    bt_strategy *ch = bt_chain_strategy_init(members, n);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 4;
    bt_sampler *s = bt_sampler_init(p, ch, &sp);
    rvlog l = rv_new();
    bt_sampler_set_observer(s, rv_record, &l, 1);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, NULL), BT_OK);
    CHECK_EQ_INT(l.n_rewind, 1);
    CHECK_STR(l.rw_strategy, want_strategy);
    CHECK_STR(l.rw_reason, want_reason);
    bt_sampler_free(s);
    bt_strategy_free(ch);
    bt_provider_free(p);
}

static void test_review_chain_attribution(void) {
    chain_attribution(true, "silent", "");
    chain_attribution(false, "silent", "");
}

/* Defect: a reason longer than 255 bytes was cut by vsnprintf in the middle of a UTF-8
 * character, so observers got invalid UTF-8 (the trace then showed U+FFFD for it). */
static void longnote_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    (void)c;
    char e[401];
    for (int i = 0; i < 200; i++) e[2 * i] = (char)0xc3, e[2 * i + 1] = (char)0xa9; /* é */
    e[400] = 0;
    bt_view_note_force(v, s, v->n_tokens, 1, "%s", e);
    bt_view_note_ban(v, s, v->n_tokens, 2, 0.5f, "%s", e);
}
static int32_t longnote_backtrack(bt_strategy *s, const bt_view *v) {
    int *done = s->ctx;
    if (*done || v->n_tokens != 2) return 0;
    *done = 1;
    char e[401];
    for (int i = 0; i < 200; i++) e[2 * i] = (char)0xc3, e[2 * i + 1] = (char)0xa9;
    e[400] = 0;
    bt_view_note_rewind(v, s, "%s", e);
    return 1;
}
static const bt_strategy_i longnote_iface = {.name = "longnote", .on_probs = longnote_on_probs,
                                             .backtrack = longnote_backtrack};

static void test_review_reason_truncation(void) {
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    int done = 0;
    bt_strategy *str = bt_strategy_init(&longnote_iface, &done);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 3;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    rvlog l = rv_new();
    bt_sampler_set_observer(s, rv_record, &l, 1);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, NULL), BT_OK);
    CHECK_EQ_INT(l.n_rewind, 1);
    CHECK(l.reasons_valid);
    CHECK_EQ_INT(strlen(l.rw_reason), 254); /* 127 whole characters */
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

/* Defect: AntiSlop's regex reason quotes at most 60 bytes of the match, cut in the middle
 * of a character ("a" and 21 euro signs, each split over two tokens, is 64 bytes). */
static void test_review_antislop_regex_reason(void) {
    bt_token script[43];
    script[0] = 1;
    for (int i = 0; i < 21; i++) script[1 + 2 * i] = 5, script[2 + 2 * i] = 6;
    model m = {script, 43, 2, 0};
    bt_provider *p = make_provider(&m, 128);
    const char *re[] = {"a(?:\xe2\x82\xac){21}"};
    bt_antislop_params ap = bt_antislop_default_params();
    ap.regexes = re;
    ap.n_regexes = 1;
    bt_strategy *str = bt_antislop_strategy_init(&ap);
    CHECK(str != NULL);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 50;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    rvlog l = rv_new();
    bt_sampler_set_observer(s, rv_record, &l, 1);
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, NULL), BT_OK);
    CHECK(l.n_rewind >= 1);
    CHECK_STR(l.rw_strategy, "antislop");
    CHECK(strncmp(l.rw_reason, "regex matched \"a\xe2\x82\xac", 19) == 0);
    CHECK(l.reasons_valid);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}

/* Test weakness fixed: test_observer's "CHECK(stats == NULL || 1)" could not fail. The END
 * event carries the final stats (valid during the call): the same as the caller's. */
static void test_review_end_stats(void) {
    const bt_token script[] = {1, 2, 3, 4};
    model m = {script, 4, 2, 0};
    bt_provider *p = make_provider(&m, 64);
    tstrat t = ts_defaults();
    t.hold = 3, t.rewind_at = 3, t.rewind_n = 2;
    bt_strategy *str = bt_strategy_init(&ts_iface, &t);
    bt_sampler_params sp = greedy();
    sp.max_new_tokens = 4;
    bt_sampler *s = bt_sampler_init(p, str, &sp);
    rvlog l = rv_new();
    bt_sampler_set_observer(s, rv_record, &l, 2);
    bt_stats st;
    CHECK_EQ_INT(bt_generate_tokens(s, PROMPT, 2, NULL, NULL, &st), BT_OK);
    CHECK_EQ_INT(l.n_end, 1);
    CHECK_EQ_INT(l.end_stop, BT_STOP_MAX_NEW_TOKENS);
    CHECK_EQ_INT(l.end_stop, st.stop_reason);
    CHECK_EQ_INT(l.end_released, st.n_released);
    CHECK_EQ_INT(l.end_rewinds, 1);
    CHECK_EQ_INT(l.n_rel, 4);
    bt_sampler_free(s);
    bt_strategy_free(str);
    bt_provider_free(p);
}
/* ==== end of the review section ==== */

/* ---- Review (issue 10, cold review of 8710291): the longest token's length ----
 * The release buffer is sized from the longest token text a sampler finds when it is
 * made, and a provider caches that length. A token_text that fails then (a Python
 * provider whose token_bytes raised, a transient error) must not shrink the buffer for
 * later samplers (before: 300 bytes written into 28, ASan heap-buffer-overflow), nor for
 * the sampler itself when the token works later. */
enum { FL_NV = 3, FL_LONG = 300 };
static char fl_long[FL_LONG];
typedef struct fl_prov { int broken, n_held; float logits[FL_NV]; } fl_prov;
static int32_t fl_n_vocab(void *c) { (void)c; return FL_NV; }
static int32_t fl_n_ctx(void *c) { (void)c; return 64; }
static int fl_tokenize(void *c, const char *t, size_t len, bool as, bool ps, bt_token *out,
                       int32_t cap, int32_t *n) {
    (void)c, (void)t, (void)as, (void)ps;
    *n = (int32_t)len; /* every byte is token 0 */
    for (int32_t i = 0; i < (int32_t)len && i < cap; i++) out[i] = 0;
    return *n > cap ? BT_ERR_INVALID_ARG : BT_OK;
}
static int fl_token_text(void *c, bt_token id, const char **b, size_t *len) {
    fl_prov *p = c;
    if (id < 0 || id >= FL_NV || (id == 1 && p->broken)) return BT_ERR_PROVIDER;
    *b = id == 0 ? "a" : id == 1 ? fl_long : "";
    *len = id == 0 ? 1 : id == 1 ? FL_LONG : 0;
    return BT_OK;
}
static bool fl_is_eog(void *c, bt_token id) { (void)c; return id == 2; }
static int fl_eval(void *c, const bt_token *seq, int32_t n, const float **lg, bt_eval_info *info) {
    (void)seq;
    fl_prov *p = c;
    if (info) *info = (bt_eval_info){n - p->n_held, p->n_held};
    p->n_held = n;
    p->logits[0] = -10, p->logits[1] = 10, p->logits[2] = -10; /* the long token */
    *lg = p->logits;
    return BT_OK;
}
static int fl_rewind(void *c, int32_t n) { ((fl_prov *)c)->n_held -= n; return BT_OK; }
static void fl_reset(void *c) { ((fl_prov *)c)->n_held = 0; }
static const bt_provider_i fl_iface = {.name = "flaky", .n_vocab = fl_n_vocab, .n_ctx = fl_n_ctx,
    .tokenize = fl_tokenize, .token_text = fl_token_text, .is_eog = fl_is_eog, .eval = fl_eval,
    .rewind = fl_rewind, .reset = fl_reset};

static void test_review_longest_token_after_failure(void) {
    memset(fl_long, 'x', sizeof fl_long);
    for (int later = 0; later < 2; later++) { /* 1: a later sampler; 0: the same one */
        fl_prov ctx = {.broken = 1};
        bt_provider *p = bt_provider_init(&fl_iface, &ctx);
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = 1;
        sp.max_new_tokens = 2;
        bt_sampler *s = bt_sampler_init(p, NULL, &sp); /* token_text fails meanwhile */
        if (later) {
            bt_sampler_free(s);
            ctx.broken = 0;
            s = bt_sampler_init(p, NULL, &sp);
        }
        ctx.broken = 0;
        text_sink k = {0};
        CHECK_EQ_INT(bt_generate(s, "a", 1, text_sink_collect, &k, NULL), BT_OK);
        CHECK_EQ_INT((int)k.len, 2 * FL_LONG);
        CHECK(k.len > 0 && k.text[0] == 'x' && k.text[k.len - 1] == 'x');
        bt_sampler_free(s);
        bt_provider_free(p);
    }
}

/* bt_provider_token_text on failure: "" and 0, whatever the provider left in them (a
 * caller that only shows the text, such as human-guidance's menu, ignores the status). */
static void test_token_text_failure_is_empty(void) {
    fl_prov ctx = {.broken = 1};
    bt_provider *p = bt_provider_init(&fl_iface, &ctx);
    const char *b = "garbage";
    size_t len = 12345;
    CHECK(bt_provider_token_text(p, 1, &b, &len) != BT_OK); /* the provider fails */
    CHECK(b != NULL && b[0] == '\0' && len == 0);
    b = "garbage", len = 12345;
    CHECK(bt_provider_token_text(p, FL_NV, &b, &len) != BT_OK); /* outside the vocabulary */
    CHECK(b != NULL && b[0] == '\0' && len == 0);
    CHECK_EQ_INT(bt_provider_token_text(p, 0, &b, &len), BT_OK);
    CHECK(len == 1 && b[0] == 'a');
    bt_provider_free(p);
}

int main(void) {
    RUN(test_greedy_and_eos);
    RUN(test_keep_index_holds_and_flushes);
    RUN(test_rewind_and_ban);
    RUN(test_step_cap);
    RUN(test_forced_token_outside_top_k);
    RUN(test_temperature);
    RUN(test_dead_end);
    RUN(test_seed);
    RUN(test_utf8_release);
    RUN(test_context_and_args);
    RUN(test_caller_stop_and_clamp);
    RUN(test_chain_precedence);
    RUN(test_observer);
    RUN(test_prompt_reuse);
    RUN(test_cancel);
    /* review of the observer */
    RUN(test_review_draw_p_infinite);
    RUN(test_review_rewind_error_events);
    RUN(test_review_chain_attribution);
    RUN(test_review_reason_truncation);
    RUN(test_review_antislop_regex_reason);
    RUN(test_review_end_stats);
    RUN(test_review_longest_token_after_failure);
    RUN(test_token_text_failure_is_empty);
    TEST_MAIN_END();
}
