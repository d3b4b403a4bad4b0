/* test_strategies.c -- every strategy rule on the scripted provider, exactly. */
#include "check.h"
#include "internal.h"

#include <float.h>
#include <unistd.h>

/* ---- vocabulary and model ---------------------------------------------------------- */
static const char *const VOCAB[] = {
    "",      "a",     " ",   "Li", "ly", "L", "i", " the", "x", " ball", "oon", "not", " very",
    " but",  "</think>", "\n", "Wait", ",", "b", "y", "q", "r", "s", "t", "u", "v", "w", "z",
};
enum { NV = 28, EOS = 0, A = 1, SP = 2, LI = 3, LY = 4, L_ = 5, I_ = 6, THE = 7, X = 8,
       BALL = 9, OON = 10, NOT = 11, VERY = 12, BUT = 13, THINK = 14, NL = 15, WAIT = 16,
       COMMA = 17, B = 18 };

/* Per position, a preference list (-1 ends it): logits 10, 8, 6, ...; others 0. Past the
 * script <eos> gets 10. `fixed`, when set, gives the same logits at every position. */
#define MAXP 8
typedef struct model {
    bt_token     prefs[64][MAXP];
    int32_t      n_pos;
    int32_t      n_prompt;
    const float *fixed;
} model;

static void model_logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)seq;
    model *m = user;
    if (m->fixed) {
        memcpy(l, m->fixed, (size_t)nv * sizeof *l);
        return;
    }
    for (int32_t i = 0; i < nv; i++) l[i] = 0.0f;
    int32_t k = n - m->n_prompt;
    if (k >= m->n_pos) {
        l[EOS] = 10.0f;
        return;
    }
    for (int j = 0; j < MAXP && m->prefs[k][j] >= 0; j++) l[m->prefs[k][j]] = 10.0f - 2.0f * j;
}

/* script(m, "Li ly -1", ...) is awkward in C; set rows directly with this helper. */
static void row(model *m, int32_t pos, bt_token a, bt_token b, bt_token c, bt_token d) {
    bt_token r[4] = {a, b, c, d};
    for (int j = 0; j < MAXP; j++) m->prefs[pos][j] = j < 4 ? r[j] : -1;
    if (pos + 1 > m->n_pos) m->n_pos = pos + 1;
}

static void init_model(model *m) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < MAXP; j++) m->prefs[i][j] = -1;
    m->n_prompt = 1;
}

static bt_provider *provider(model *m) {
    bt_scripted_params p = bt_scripted_default_params();
    p.n_vocab = NV;
    p.tokens = VOCAB;
    p.eos = EOS;
    p.n_ctx = 256;
    p.logits = model_logits;
    p.user = m;
    return bt_scripted_provider_init(&p);
}

typedef struct sink {
    bt_token toks[256];
    int      n;
    char     text[1024];
    size_t   len;
} sink;

static int collect(void *user, bt_token id, const char *text, size_t len) {
    sink *s = user;
    if (id >= 0 && s->n < 256) s->toks[s->n++] = id;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    return 0;
}

static const bt_token PROMPT[] = {A};

/* Run one generation; returns the status. */
static int run(model *m, bt_strategy *st, int32_t top_k, int32_t max_new, sink *out, bt_stats *stats) {
    bt_provider *p = provider(m);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = top_k;
    sp.seed = 5;
    sp.max_new_tokens = max_new;
    bt_sampler *s = bt_sampler_init(p, st, &sp);
    int rc = bt_generate_tokens(s, PROMPT, 1, collect, out, stats);
    bt_sampler_free(s);
    bt_provider_free(p);
    return rc;
}

static bt_strategy *antislop(const char *const *phr, const float *adj, int n, void (*tweak)(bt_antislop_params *)) {
    bt_phrase_list *l = bt_phrase_list_new();
    for (int i = 0; i < n; i++) bt_phrase_list_add(l, phr[i], strlen(phr[i]), adj ? adj[i] : 0.0f);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = l;
    ap.keep_index_buffer = 0;
    if (tweak) tweak(&ap);
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    return s;
}

/* ---- AntiSlop ------------------------------------------------------------------------ */

static void test_antislop_split_two(void) {
    model m;
    init_model(&m);
    row(&m, 0, LI, THE, -1, -1);
    row(&m, 1, LY, X, -1, -1);
    row(&m, 2, SP, -1, -1, -1);
    const char *ph[] = {"Lily"};
    bt_strategy *s = antislop(ph, NULL, 1, NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    CHECK_STR(k.text, " thely ");
    CHECK_EQ_INT(st.n_rewinds, 1);
    CHECK_EQ_INT(st.n_discarded, 2);
    bt_antislop_stats as;
    CHECK_EQ_INT(bt_antislop_get_stats(s, &as), BT_OK);
    CHECK_EQ_INT(as.hard_bans, 1);
    CHECK_EQ_INT(as.matches, 1);
    bt_strategy_free(s);
}

static void test_antislop_split_three_and_variants(void) {
    model m;
    init_model(&m);
    row(&m, 0, L_, THE, -1, -1);
    row(&m, 1, I_, X, -1, -1);
    row(&m, 2, LY, X, -1, -1);
    const char *ph[] = {"lily"}; /* lower case: matches "Lily" with variants on */
    bt_strategy *s = antislop(ph, NULL, 1, NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    CHECK(!contains_ci(k.text, "lily"));
    CHECK_STR(k.text, " theily");
    CHECK_EQ_INT(st.n_discarded, 3);
    bt_strategy_free(s);
    /* variants off: "lily" does not match "Lily" */
    sink k2 = {0};
    bt_strategy *s2 = antislop(ph, NULL, 1, NULL);
    bt_antislop_params ap = bt_antislop_default_params();
    (void)ap;
    bt_strategy_free(s2);
    bt_phrase_list *l = bt_phrase_list_new();
    bt_phrase_list_add(l, "lily", 4, 0.0f);
    ap = bt_antislop_default_params();
    ap.phrases = l;
    ap.with_variants = false;
    s2 = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    CHECK_EQ_INT(run(&m, s2, 1, 10, &k2, &st), BT_OK);
    CHECK_STR(k2.text, "Lily");
    CHECK_EQ_INT(st.n_rewinds, 0);
    bt_strategy_free(s2);
}

static void whole_word(bt_antislop_params *p) { p->whole_word = true; }

static void test_antislop_whole_word(void) {
    model m;
    init_model(&m);
    row(&m, 0, BALL, THE, -1, -1);
    row(&m, 1, OON, X, -1, -1);
    row(&m, 2, BALL, THE, -1, -1);
    row(&m, 3, SP, -1, -1, -1);
    const char *ph[] = {"ball"};
    /* whole word: " balloon" passes, the second " ball" (followed by " ") is banned */
    bt_strategy *s = antislop(ph, NULL, 1, whole_word);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    CHECK_STR(k.text, " balloon the ");
    bt_strategy_free(s);
    /* without it both go */
    s = antislop(ph, NULL, 1, NULL);
    sink k2 = {0};
    CHECK_EQ_INT(run(&m, s, 1, 10, &k2, &st), BT_OK);
    CHECK(!contains_ci(k2.text, "ball"));
    bt_strategy_free(s);
    /* a whole-word match at the very end of the text (end of generation) is caught */
    model m2;
    init_model(&m2);
    row(&m2, 0, BALL, THE, -1, -1);
    s = antislop(ph, NULL, 1, whole_word);
    sink k3 = {0};
    CHECK_EQ_INT(run(&m2, s, 1, 10, &k3, &st), BT_OK);
    CHECK_STR(k3.text, " the");
    bt_strategy_free(s);
    /* ... and so is one that max_new_tokens ends (found by fuzz_loop) */
    model m3;
    init_model(&m3);
    row(&m3, 0, X, -1, -1, -1);
    row(&m3, 1, BALL, THE, -1, -1);
    row(&m3, 2, OON, -1, -1, -1);
    s = antislop(ph, NULL, 1, whole_word);
    sink k4 = {0};
    CHECK_EQ_INT(run(&m3, s, 1, 2, &k4, &st), BT_OK);
    CHECK_STR(k4.text, "x the");
    bt_strategy_free(s);
}

static void test_antislop_one_position_only(void) {
    model m;
    init_model(&m);
    row(&m, 0, LI, THE, -1, -1);
    row(&m, 1, LY, X, -1, -1);
    row(&m, 2, SP, -1, -1, -1);
    row(&m, 3, LI, THE, -1, -1);
    row(&m, 4, X, -1, -1, -1);
    const char *ph[] = {"Lily"};
    bt_strategy *s = antislop(ph, NULL, 1, NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    /* "Li" was banned at position 0 only: at position 3 it is allowed again */
    CHECK_STR(k.text, " thely Lix");
    bt_strategy_free(s);
}

static void retries2(bt_antislop_params *p) { p->max_retries_per_position = 2; }
static void retries2_buf1(bt_antislop_params *p) {
    p->max_retries_per_position = 2;
    p->keep_index_buffer = 1;
}
static void retries_total1(bt_antislop_params *p) { p->max_retries_total = 1; }

static void test_antislop_dead_ends(void) {
    /* Every choice at position 0 is banned: after 2 bans there is no earlier token to go
     * back to, so the third is let through and counted. */
    model m;
    init_model(&m);
    row(&m, 0, LI, THE, X, B);
    const char *ph[] = {"Li", " the", "x"};
    bt_strategy *s = antislop(ph, NULL, 3, retries2);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    bt_antislop_stats as;
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.hard_bans, 2);
    CHECK_EQ_INT(as.let_through, 1);
    CHECK_STR(k.text, "x");
    bt_strategy_free(s);

    /* With a held token before it (keep_index_buffer 1), the strategy rewinds one token
     * further instead: b -> a at position 0, then again; position 0 then has nothing
     * left but <eos> (every other logit equal: the lowest id wins), so the text ends. */
    model m2;
    init_model(&m2);
    row(&m2, 0, B, A, -1, -1);
    row(&m2, 1, LI, THE, X, -1);
    s = antislop(ph, NULL, 3, retries2_buf1);
    sink k2 = {0};
    CHECK_EQ_INT(run(&m2, s, 1, 10, &k2, &st), BT_OK);
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.rewound_further, 2);
    CHECK_EQ_INT(as.hard_bans, 4);
    CHECK_EQ_INT(as.let_through, 0);
    CHECK_STR(k2.text, "");
    CHECK_EQ_INT(st.stop_reason, BT_STOP_EOG);
    bt_strategy_free(s);

    /* The total limit: after one ban, phrases are let through. */
    model m3;
    init_model(&m3);
    row(&m3, 0, LI, THE, -1, -1);
    row(&m3, 1, LY, -1, -1, -1);
    row(&m3, 2, SP, -1, -1, -1);
    row(&m3, 3, LI, -1, -1, -1);
    row(&m3, 4, LY, -1, -1, -1);
    const char *lily[] = {"Lily"};
    s = antislop(lily, NULL, 1, retries_total1);
    sink k3 = {0};
    CHECK_EQ_INT(run(&m3, s, 1, 10, &k3, &st), BT_OK);
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.hard_bans, 1);
    CHECK_EQ_INT(as.let_through, 1);
    CHECK_STR(k3.text, " thely Lily");
    bt_strategy_free(s);
}

/* ---- an observer strategy: records probabilities and counts steps ---------------------- */
static int g_steps;
typedef struct observer {
    bt_token watch[3];
    float    seen[32][3]; /* per on_probs call */
    int32_t  at[32];      /* n_tokens at that call */
    int      n;
} observer;
static void ob_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    observer *o = s->ctx;
    if (o->n >= 32) return;
    double total = 0;
    for (int32_t i = 0; i < c->n; i++) total += c->data[i].p;
    for (int j = 0; j < 3; j++) o->seen[o->n][j] = (float)(bt_candidates_get_p(c, o->watch[j]) / total);
    o->at[o->n++] = v->n_tokens;
}
static void ob_next(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    (void)s, (void)v, (void)c;
    g_steps++;
}
static const bt_strategy_i observer_iface = {.name = "observer", .on_probs = ob_on_probs,
                                             .on_next_token = ob_next};

static bt_strategy *chain2(bt_strategy *a, observer *o) {
    bt_strategy *list[2] = {a, bt_strategy_init(&observer_iface, o)};
    return bt_chain_strategy_init(list, 2);
}

/* ---- a meddler: another chain member that rewinds or empties the candidates ----------- */
typedef struct meddler {
    int      rewind_every;  /* rewind one token at every Nth backtrack call (0: never)   */
    int      calls;
    bool     rewound_last;  /* its backtrack asked for a rewind at the last step        */
    int32_t  zero_at;       /* on_probs at this n_tokens (once): every p = 0 (-1: never) */
    bool     zeroed;
    int      forces;        /* steps whose candidates held a forced (FLT_MAX) logit       */
    int      forces_after_my_rewind;
} meddler;
static int32_t md_backtrack(bt_strategy *s, const bt_view *v) {
    meddler *m = s->ctx;
    m->rewound_last = m->rewind_every > 0 && ++m->calls % m->rewind_every == 0 &&
                      v->n_tokens > v->n_released;
    return m->rewound_last ? 1 : 0;
}
static void md_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    meddler *m = s->ctx;
    if (!m->zeroed && v->n_tokens == m->zero_at) {
        m->zeroed = true;
        for (int32_t i = 0; i < c->n; i++) bt_candidates_set_p(c, c->data[i].id, 0.0f);
    }
}
static const bt_strategy_i meddler_iface = {.name = "meddler", .backtrack = md_backtrack,
                                            .on_probs = md_on_probs};
/* the same meddler seen last in a chain: it counts forced tokens */
static void spy_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    (void)v;
    meddler *m = s->ctx;
    for (int32_t i = 0; i < c->n; i++)
        if (c->data[i].logit == FLT_MAX) {
            m->forces++;
            m->forces_after_my_rewind += m->rewound_last;
            break;
        }
}
static const bt_strategy_i spy_iface = {.name = "spy", .on_probs = spy_on_probs};

static void test_antislop_soft_ban(void) {
    model m;
    init_model(&m);
    row(&m, 0, LI, THE, -1, -1);
    row(&m, 1, LY, -1, -1, -1);
    const char *ph[] = {"Lily"};
    const float adj[] = {0.25f};
    bt_strategy *as = antislop(ph, adj, 1, NULL);
    observer o = {.watch = {LI, THE, X}};
    bt_strategy *c = chain2(as, &o);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, c, 0, 4, &k, &st), BT_OK);
    /* visit 1 at position 0: the model's p; visit 3 (position 0 again): p * 0.25 before
     * renormalisation, so the ratio to " the" is exactly 0.25 of what it was */
    CHECK_EQ_INT(o.at[0], 0);
    CHECK_EQ_INT(o.at[2], 0);
    double r0 = o.seen[0][0] / o.seen[0][1], r1 = o.seen[2][0] / o.seen[2][1];
    CHECK_NEAR(r1 / r0, 0.25, 1e-5);
    bt_antislop_stats s;
    bt_antislop_get_stats(as, &s);
    CHECK_EQ_INT(s.soft_bans, 1);
    /* the soft ban never loops: if "Lily" comes again it is let through */
    CHECK(s.let_through + (contains_ci(k.text, "lily") ? 0 : 1) >= 1);
    bt_strategy_free(c);
}

static void test_antislop_regex(void) {
    model m;
    init_model(&m);
    row(&m, 0, NOT, THE, -1, -1);
    row(&m, 1, VERY, -1, -1, -1);
    row(&m, 2, BUT, -1, -1, -1);
    row(&m, 3, SP, -1, -1, -1);
    bt_antislop_params ap = bt_antislop_default_params();
    const char *re[] = {"(?i)not [^.!?]{3,60} but"};
    ap.regexes = re;
    ap.n_regexes = 1;
    ap.keep_index_buffer = 0;
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    CHECK(s != NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k, &st), BT_OK);
    /* rewound to the match's first token ("not"), held back until then by the partial
     * match, and "not" banned there */
    CHECK_STR(k.text, " the very but ");
    CHECK_EQ_INT(st.n_discarded, 3);
    bt_strategy_free(s);
    /* bad regexes are refused with a message */
    const char *bad[] = {"(unclosed"};
    ap.regexes = bad;
    CHECK(bt_antislop_strategy_init(&ap) == NULL);
    CHECK(strstr(bt_last_error(), "unclosed") != NULL);
    const char *empty[] = {"x*"};
    ap.regexes = empty;
    CHECK(bt_antislop_strategy_init(&ap) == NULL);
}

/* Released text never contains a token that could still be rewound, and is released as
 * soon as no match can reach it. */
typedef struct timed_sink {
    sink s;
    int  step_at_release[64];
} timed_sink;
static int timed_collect(void *user, bt_token id, const char *text, size_t len) {
    timed_sink *t = user;
    if (t->s.n < 64) t->step_at_release[t->s.n] = g_steps;
    return collect(&t->s, id, text, len);
}

static void test_antislop_hold_back(void) {
    model m;
    init_model(&m);
    row(&m, 0, X, -1, -1, -1);
    row(&m, 1, LI, -1, -1, -1);
    row(&m, 2, X, -1, -1, -1);
    row(&m, 3, X, -1, -1, -1);
    const char *ph[] = {"Lily"};
    observer o = {.watch = {X, X, X}};
    bt_strategy *c = chain2(antislop(ph, NULL, 1, NULL), &o);
    bt_provider *p = provider(&m);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 1;
    sp.max_new_tokens = 4;
    bt_sampler *smp = bt_sampler_init(p, c, &sp);
    timed_sink t = {0};
    g_steps = 0;
    CHECK_EQ_INT(bt_generate_tokens(smp, PROMPT, 1, timed_collect, &t, NULL), BT_OK);
    CHECK_STR(t.s.text, "xLixx");
    CHECK_EQ_INT(t.step_at_release[0], 1); /* "x": nothing can start there: at once */
    CHECK_EQ_INT(t.step_at_release[1], 3); /* "Li" could start "Lily": held until "x" */
    CHECK_EQ_INT(t.step_at_release[2], 3);
    bt_sampler_free(smp);
    bt_provider_free(p);
    bt_strategy_free(c);
}

static void test_phrase_lists(void) {
    char path[] = "/tmp/bt_phr_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("[[\"a\\u00e9b\", 0.5], [\"x\", 1]]", f);
    fclose(f);
    bt_phrase_list *l = NULL;
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_OK);
    CHECK_EQ_INT(bt_phrase_list_size(l), 2);
    CHECK_STR(bt_phrase_list_phrase(l, 0), "a\xc3\xa9" "b");
    CHECK_NEAR(bt_phrase_list_adjustment(l, 0), 0.5, 0);
    bt_phrase_list_free(l);
    CHECK_EQ_INT(bt_phrase_list_load(path, true, &l), BT_OK); /* hard: adjustments dropped */
    CHECK_NEAR(bt_phrase_list_adjustment(l, 0), 0.0, 0);
    bt_phrase_list_free(l);
    f = fopen(path, "w");
    fputs("[[\"counted\", 28671], [\"other\", 3]]", f);
    fclose(f);
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_OK); /* counts: hard bans */
    CHECK_NEAR(bt_phrase_list_adjustment(l, 1), 0.0, 0);
    bt_phrase_list_free(l);
    f = fopen(path, "w");
    fputs("one phrase\r\n\nanother one\n", f);
    fclose(f);
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_OK);
    CHECK_EQ_INT(bt_phrase_list_size(l), 2);
    CHECK_STR(bt_phrase_list_phrase(l, 0), "one phrase");
    bt_phrase_list_free(l);
    f = fopen(path, "w");
    fputs("[\"unterminated", f);
    fclose(f);
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_ERR_PARSE);
    f = fopen(path, "w");
    fputs("bad \xff utf8\n", f);
    fclose(f);
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_ERR_UTF8);
    f = fopen(path, "w");
    fputs("\n\n", f);
    fclose(f);
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_ERR_PARSE); /* empty list */
    f = fopen(path, "w");
    fputs("\"(?i)not [^.!?]{3,60} but\",\n# comment\n\"a\\\"b\"\n", f);
    fclose(f);
    char **re;
    int32_t n;
    CHECK_EQ_INT(bt_regex_list_load(path, &re, &n), BT_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_STR(re[0], "(?i)not [^.!?]{3,60} but");
    CHECK_STR(re[1], "a\"b");
    bt_strings_free(re, n);
    CHECK_EQ_INT(bt_phrase_list_load("/nonexistent", false, &l), BT_ERR_IO);
    remove(path);
    bt_phrase_list *e = bt_phrase_list_new();
    CHECK(bt_phrase_list_add(e, "", 0, 0) != BT_OK);
    CHECK(bt_phrase_list_add(e, "x", 1, 1.5f) != BT_OK);
    CHECK(bt_phrase_list_add(e, "x", 1, NAN) != BT_OK);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = e;
    CHECK(bt_antislop_strategy_init(&ap) == NULL); /* empty list */
    bt_phrase_list_free(e);
}

/* One AntiSlop used on two providers in turn, the second made where the first was freed:
 * an "arena" provider (its token texts in one block, like a provider that maps a file)
 * whose blocks glibc hands back, so the second has the first's address and its token
 * texts the same addresses and lengths, with other bytes. The folded vocabulary the
 * strategy caches must not be the first provider's: the ban of "ann" must catch "Ann". */
typedef struct arena_prov {
    char    pad[200];  /* a size class of its own: its block comes back on reuse */
    char   *texts;     /* "\0Bob\0 " or "\0Ann\0 ": token t at off[t] */
    float   logits[3];
    int32_t n_held;
} arena_prov;
static const int32_t ARENA_OFF[4] = {0, 1, 4, 5};
static int32_t ar_nv(void *c) { (void)c; return 3; }
static int32_t ar_ctx(void *c) { (void)c; return 64; }
static int ar_tok(void *c, const char *t, size_t l, bool a, bool b, bt_token *o, int32_t cap, int32_t *n) {
    (void)c, (void)t, (void)l, (void)a, (void)b, (void)o, (void)cap, (void)n;
    return BT_ERR_UNSUPPORTED;
}
static int ar_text(void *c, bt_token id, const char **b, size_t *l) {
    *b = ((arena_prov *)c)->texts + ARENA_OFF[id];
    *l = (size_t)(ARENA_OFF[id + 1] - ARENA_OFF[id]);
    return BT_OK;
}
static bool ar_eog(void *c, bt_token id) { (void)c; return id == 0; }
static int ar_eval(void *c, const bt_token *seq, int32_t n, const float **l, bt_eval_info *i) {
    (void)seq;
    arena_prov *a = c;
    a->n_held = n;
    a->logits[0] = n >= 3 ? 10.0f : 0.0f; /* the name, then the end */
    a->logits[1] = n >= 3 ? 0.0f : 10.0f;
    a->logits[2] = 0.0f;
    *l = a->logits;
    if (i) *i = (bt_eval_info){0, 0};
    return BT_OK;
}
static int ar_rewind(void *c, int32_t n) { ((arena_prov *)c)->n_held -= n; return BT_OK; }
static void ar_free(void *c) {
    free(((arena_prov *)c)->texts);
    free(c);
}
static const bt_provider_i arena_iface = {.name = "arena", .n_vocab = ar_nv, .n_ctx = ar_ctx,
                                          .tokenize = ar_tok, .token_text = ar_text,
                                          .is_eog = ar_eog, .eval = ar_eval, .rewind = ar_rewind,
                                          .free = ar_free};
static bt_provider *arena_provider(const char *name) {
    arena_prov *a = calloc(1, sizeof *a);
    a->texts = malloc(1000); /* another size class of its own */
    memcpy(a->texts, "\0", 1);
    memcpy(a->texts + 1, name, 3);
    memcpy(a->texts + 4, " ", 1);
    return bt_provider_init(&arena_iface, a);
}
static void test_antislop_across_providers(void) {
    const char *ph[] = {"ann"};
    bt_strategy *as = antislop(ph, NULL, 1, NULL);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 0;
    sp.seed = 2;
    sp.max_new_tokens = 2;
    const bt_token prompt[] = {2};
    const void *addr[2] = {NULL, NULL};
    for (int round = 0; round < 2; round++) {
        bt_provider *p = arena_provider(round == 0 ? "Bob" : "Ann");
        addr[round] = p;
        bt_sampler *s = bt_sampler_init(p, as, &sp);
        sink k = {0};
        bt_stats st;
        CHECK_EQ_INT(bt_generate_tokens(s, prompt, 1, collect, &k, &st), BT_OK);
        if (round == 0) CHECK(strstr(k.text, "Bob") != NULL);
        else CHECK(strstr(k.text, "Ann") == NULL && st.n_rewinds > 0);
        bt_sampler_free(s);
        bt_provider_free(p);
    }
    if (addr[0] != addr[1]) fprintf(stderr, "  (the second provider got another address)\n");
    bt_strategy_free(as);
}

/* ---- Replace ----------------------------------------------------------------------- */

static model think_model(int32_t n_pos) {
    model m;
    init_model(&m);
    row(&m, 0, A, -1, -1, -1);
    for (int i = 1; i < n_pos; i++) row(&m, i, THINK, -1, -1, -1);
    return m;
}

static bt_strategy *replacer(int32_t max, int32_t max_new, int32_t skip, float max_prob) {
    const char *find[] = {"</think>"};
    bt_replace_params rp = bt_replace_default_params();
    rp.find = find;
    rp.n_find = 1;
    rp.replace = "\nWait, but";
    rp.max_replacements = max;
    rp.max_new_tokens_for_replace = max_new;
    rp.skip_tokens = skip;
    rp.max_prob = max_prob;
    return bt_replace_strategy_init(&rp);
}

static void test_replace(void) {
    model m = think_model(14);
    bt_strategy *s = replacer(3, -1, 0, 1.0f);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 40, &k, &st), BT_OK);
    CHECK_STR(k.text, "a\nWait, but\nWait, but\nWait, but</think>");
    const bt_token want[] = {A, NL, WAIT, COMMA, BUT, NL, WAIT, COMMA, BUT, NL, WAIT, COMMA, BUT, THINK, EOS};
    CHECK_EQ_INT(k.n, 15);
    CHECK(memcmp(k.toks, want, sizeof want) == 0);
    CHECK_EQ_INT(bt_replace_count(s), 3);
    bt_strategy_free(s);

    /* max_new_tokens_for_replace: only while the text is at most 4 tokens long */
    m = think_model(8);
    s = replacer(-1, 4, 0, 1.0f);
    sink k2 = {0};
    CHECK_EQ_INT(run(&m, s, 1, 40, &k2, &st), BT_OK);
    CHECK_STR(k2.text, "a\nWait, but</think></think></think>");
    CHECK_EQ_INT(bt_replace_count(s), 1);
    bt_strategy_free(s);

    /* skip_tokens: the match in token 1 is inside the skipped part; the one in token 2 is
     * replaced (once); past the script the model ends the text */
    m = think_model(4);
    s = replacer(1, -1, 2, 1.0f);
    sink k3 = {0};
    CHECK_EQ_INT(run(&m, s, 1, 40, &k3, &st), BT_OK);
    CHECK_STR(k3.text, "a</think>\nWait, but");
    bt_strategy_free(s);

    /* max_prob: the model gives </think> p ~ 0.999 (top_k off): above 0.5, left alone */
    m = think_model(3);
    s = replacer(-1, -1, 0, 0.5f);
    sink k4 = {0};
    CHECK_EQ_INT(run(&m, s, 0, 40, &k4, &st), BT_OK);
    CHECK_EQ_INT(bt_replace_count(s), 0);
    CHECK_EQ_INT(st.n_rewinds, 0);
    bt_strategy_free(s);

    /* max_new_tokens_for_replace N: only while the continuation is shorter than N (the
     * original's rule); the match completes when the text is 2 tokens long */
    m = think_model(4);
    s = replacer(-1, 2, 0, 1.0f);
    sink k5 = {0};
    CHECK_EQ_INT(run(&m, s, 1, 40, &k5, &st), BT_OK);
    CHECK_EQ_INT(bt_replace_count(s), 0);
    CHECK_STR(k5.text, "a</think></think></think>");
    bt_strategy_free(s);
    m = think_model(4);
    s = replacer(-1, 3, 0, 1.0f);
    sink k6 = {0};
    CHECK_EQ_INT(run(&m, s, 1, 40, &k6, &st), BT_OK);
    CHECK_EQ_INT(bt_replace_count(s), 1);
    CHECK_STR(k6.text, "a\nWait, but");
    bt_strategy_free(s);

    /* bad parameters */
    bt_replace_params rp = bt_replace_default_params();
    CHECK(bt_replace_strategy_init(&rp) == NULL);
    const char *find[] = {"x"};
    rp.find = find;
    rp.n_find = 1;
    rp.replace = "";
    CHECK(bt_replace_strategy_init(&rp) == NULL);
    rp.replace = "\xff";
    CHECK(bt_replace_strategy_init(&rp) == NULL);
}

/* A forced replacement token that is not drawn (here: a later chain member leaves no
 * candidate at the last forced position, and the dead end falls back to the model, which
 * says "</think>") ends the forcing: the text is released again and later matches are
 * replaced, the model's own "</think>" included. */
static void test_replace_broken_forcing(void) {
    model m = think_model(12);
    meddler z = {.zero_at = 4};
    bt_strategy *list[2] = {replacer(-1, -1, 0, 1.0f), bt_strategy_init(&meddler_iface, &z)};
    bt_strategy *c = bt_chain_strategy_init(list, 2);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, c, 1, 12, &k, &st), BT_OK);
    CHECK(z.zeroed);
    CHECK_EQ_INT(st.n_dead_ends, 1);
    CHECK(strncmp(k.text, "a\nWait,\nWait, but\nWait, but", 29) == 0);
    CHECK(bt_replace_count(list[0]) >= 3);
    CHECK(strstr(k.text, "</think>") == NULL);
    bt_strategy_free(c);
}

/* ---- CreativeWriting ------------------------------------------------------------------- */

static float FIXED[NV];

static void test_creative_not_flat(void) {
    model m;
    init_model(&m);
    memset(FIXED, 0, sizeof FIXED);
    FIXED[B] = 10.0f; /* argmax: banned every step */
    FIXED[X] = 8.0f;  /* then x has p ~ 0.99: peaked, never flat */
    m.fixed = FIXED;
    bt_strategy *s = bt_creative_writing_strategy_init(NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 0, 12, &k, &st), BT_OK);
    CHECK(strchr(k.text, 'b') == NULL);
    CHECK_EQ_INT(st.n_rewinds, 0);
    CHECK(strstr(k.text, "xxxx") != NULL);
    bt_strategy_free(s);
}

static void test_creative_flat(void) {
    model m;
    init_model(&m);
    memset(FIXED, 0, sizeof FIXED);
    FIXED[B] = 10.0f; /* banned; the rest is uniform: flat */
    m.fixed = FIXED;
    bt_strategy *s = bt_creative_writing_strategy_init(NULL);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 0, 10, &k, &st), BT_OK);
    /* every off-argmax pick at a flat step is rewound and replaced by the argmax of the
     * adjusted distribution: "a" (the first of the equal ones once <eos> is penalised) */
    CHECK_STR(k.text, "aaaaaaaaaa");
    CHECK(st.n_rewinds >= 1);
    CHECK_EQ_INT(st.n_discarded, st.n_rewinds); /* one token back each time */
    CHECK_EQ_INT(st.n_steps, 10 + st.n_discarded);
    bt_strategy_free(s);
}

static void test_creative_eos(void) {
    model m;
    init_model(&m);
    memset(FIXED, 0, sizeof FIXED);
    FIXED[B] = 10.0f;
    FIXED[EOS] = 1.0f;
    m.fixed = FIXED;
    observer o = {.watch = {EOS, X, B}};
    bt_strategy *c = chain2(bt_creative_writing_strategy_init(NULL), &o);
    sink k = {0};
    CHECK_EQ_INT(run(&m, c, 0, 1, &k, NULL), BT_OK);
    /* b banned; p(eos) / p(x) = 0.8 * e^1 / e^0 exactly */
    CHECK_NEAR(o.seen[0][0] / o.seen[0][1], 0.8 * exp(1.0), 1e-4);
    CHECK_EQ_INT(o.seen[0][2], 0);
    bt_strategy_free(c);
    /* the end token is never the one banned */
    memset(FIXED, 0, sizeof FIXED);
    FIXED[EOS] = 10.0f;
    bt_strategy *s = bt_creative_writing_strategy_init(NULL);
    sink k2 = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 1, 10, &k2, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_EOG);
    CHECK_EQ_INT(k2.n, 1);
    bt_strategy_free(s);
    bt_creative_writing_params bad = bt_creative_writing_default_params();
    bad.top_p_flat = 0;
    CHECK(bt_creative_writing_strategy_init(&bad) == NULL);
}

/* In a chain, a rewind asked by an earlier member at a flat step must not make
 * CreativeWriting force its remembered token at the position the rewind lands on: that
 * token was the argmax of another position. Forced tokens still happen after its own
 * rewinds. Many seeds, so both cases occur. */
static void test_creative_in_chain(void) {
    model m;
    init_model(&m);
    memset(FIXED, 0, sizeof FIXED);
    FIXED[B] = 10.0f; /* banned; the rest uniform: flat at every step */
    m.fixed = FIXED;
    int forces = 0, wrong = 0, rewinds = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        meddler md = {.rewind_every = 3, .zero_at = -1};
        bt_strategy *list[3] = {bt_strategy_init(&meddler_iface, &md),
                                bt_creative_writing_strategy_init(NULL),
                                bt_strategy_init(&spy_iface, &md)};
        bt_strategy *c = bt_chain_strategy_init(list, 3);
        bt_provider *p = provider(&m);
        bt_sampler_params sp = bt_sampler_default_params();
        sp.top_k = 0;
        sp.seed = seed;
        sp.max_new_tokens = 30;
        bt_sampler *smp = bt_sampler_init(p, c, &sp);
        bt_stats st;
        CHECK_EQ_INT(bt_generate_tokens(smp, PROMPT, 1, NULL, NULL, &st), BT_OK);
        forces += md.forces;
        wrong += md.forces_after_my_rewind;
        rewinds += (int)st.n_rewinds;
        bt_sampler_free(smp);
        bt_provider_free(p);
        bt_strategy_free(c);
    }
    CHECK(forces > 20);
    CHECK(rewinds > 40);
    CHECK_EQ_INT(wrong, 0);
}

/* ---- AdaptiveTemperature ---------------------------------------------------------------- */

static void test_adaptive_beta(void) {
    bt_adaptive_temperature_params p = bt_adaptive_temperature_default_params();
    CHECK_NEAR(bt_adaptive_temperature_beta(p.coeffs, 0.3), 1.0, 0);      /* H <= 0.5 */
    CHECK_NEAR(bt_adaptive_temperature_beta(p.coeffs, 0.6), 1.0, 0);      /* poly 0.43 < 1 */
    CHECK_NEAR(bt_adaptive_temperature_beta(p.coeffs, 1.0), 1.27, 1e-6);  /* sum of coeffs */
    CHECK_NEAR(bt_adaptive_temperature_beta(p.coeffs, 2.0), 2.099, 1e-5);
    /* end to end: the probabilities the sampler draws from are softmax(beta(H) * l) */
    model m;
    init_model(&m);
    memset(FIXED, 0, sizeof FIXED);
    FIXED[A] = 2.0f;
    FIXED[B] = 1.0f;
    m.fixed = FIXED;
    double z = 0, ex = 0;
    for (int i = 0; i < NV; i++) z += exp(FIXED[i] - 2.0);
    for (int i = 0; i < NV; i++) ex += exp(FIXED[i] - 2.0) * (FIXED[i] - 2.0);
    double h = log(z) - ex / z, beta = bt_adaptive_temperature_beta(p.coeffs, h);
    CHECK(beta > 1.0);
    double z2 = 0;
    for (int i = 0; i < NV; i++) z2 += exp(beta * FIXED[i]);
    observer o = {.watch = {A, B, X}};
    bt_strategy *c = chain2(bt_adaptive_temperature_strategy_init(NULL), &o);
    CHECK_EQ_INT(run(&m, c, 0, 1, &(sink){0}, NULL), BT_OK);
    CHECK_NEAR(o.seen[0][0], exp(beta * 2.0) / z2, 1e-5);
    CHECK_NEAR(o.seen[0][2], 1.0 / z2, 1e-6);
    bt_strategy_free(c);
}

/* ---- HumanGuidance ---------------------------------------------------------------------- */

typedef struct script_user {
    int      choices[8];
    int      n, i;
    bool     could_go_back[8];
    char     first_labels[3][16];
} script_user;

static int scripted_choice(void *user, const bt_guidance_menu *m) {
    script_user *u = user;
    if (u->i == 0)
        for (int j = 0; j < 3 && j < m->n; j++) snprintf(u->first_labels[j], 16, "%s", m->labels[j]);
    u->could_go_back[u->i] = m->can_go_back;
    return u->i < u->n ? u->choices[u->i++] : BT_GUIDE_STOP;
}

static void test_human_guidance(void) {
    model m;
    init_model(&m);
    for (int i = 0; i < 6; i++) row(&m, i, X, B, THE, -1);
    script_user u = {.choices = {1, BT_GUIDE_GO_BACK, 0, BT_GUIDE_STOP}, .n = 4};
    bt_human_guidance_params hp = bt_human_guidance_default_params();
    hp.choose = scripted_choice;
    hp.user = &u;
    bt_strategy *s = bt_human_guidance_strategy_init(&hp);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, 0, 6, &k, &st), BT_OK);
    /* menu 1 at position 0 lists x, b, " the"; the user picks "b" (the 2nd); menu 2 at
     * position 1: "Go back" undoes the token drawn there and the "b"; menu 3 at position
     * 0: "x"; then the user stops guiding. */
    CHECK_STR(u.first_labels[0], "x");
    CHECK_STR(u.first_labels[1], "b");
    CHECK_STR(u.first_labels[2], " the");
    CHECK(!u.could_go_back[0]);
    CHECK(u.could_go_back[1]);
    CHECK_EQ_INT(st.n_rewinds, 1);
    CHECK_EQ_INT(st.n_discarded, 2);
    CHECK_EQ_INT(k.toks[0], X);
    CHECK_EQ_INT(u.i, 4);
    bt_strategy_free(s);
    /* without a terminal and without a callback it refuses */
    bt_strategy *t = bt_human_guidance_strategy_init(NULL);
    sink k2 = {0};
    if (!isatty(0) || !isatty(1)) {
        CHECK_EQ_INT(run(&m, t, 0, 6, &k2, &st), BT_ERR_UNSUPPORTED);
        CHECK(strstr(bt_last_error(), "terminal") != NULL);
    }
    bt_strategy_free(t);
}

int main(void) {
    RUN(test_antislop_split_two);
    RUN(test_antislop_split_three_and_variants);
    RUN(test_antislop_whole_word);
    RUN(test_antislop_one_position_only);
    RUN(test_antislop_dead_ends);
    RUN(test_antislop_soft_ban);
    RUN(test_antislop_regex);
    RUN(test_antislop_hold_back);
    RUN(test_phrase_lists);
    RUN(test_antislop_across_providers);
    RUN(test_replace);
    RUN(test_replace_broken_forcing);
    RUN(test_creative_not_flat);
    RUN(test_creative_flat);
    RUN(test_creative_eos);
    RUN(test_creative_in_chain);
    RUN(test_adaptive_beta);
    RUN(test_human_guidance);
    TEST_MAIN_END();
}
