/* test_unicode.c -- AntiSlop's matching on real-world text: Unicode case folding and word
 * boundaries (issue 9, item 2), characters split across tokens, folding that changes
 * lengths, invalid bytes; a match let through never hides a later one (item 4); a rewind
 * by another strategy of a chain drops AntiSlop's state about the removed text. On the
 * scripted provider, exactly; and the phrase scan's offsets directly. */
#include "check.h"
#include "internal.h"
#include "strategies/matcher.h"

/* ---- vocabulary and model (as in test_strategies.c) --------------------------------- */
static const char *const VOCAB[] = {
    "",                        /*  0 EOS */
    "a",                       /*  1 */
    " ",                       /*  2 */
    "x",                       /*  3 */
    "\xE2\x80\x9C",            /*  4 “ */
    "\xE2\x80\x9D",            /*  5 ” */
    "\xC3\x89lodie",           /*  6 Élodie */
    "\xC3\x89LODIE",           /*  7 ÉLODIE */
    "\xC3\xA9lodie",           /*  8 élodie */
    "\xE2\x80\x94",            /*  9 — */
    "\xE2\x80\xA6",            /* 10 … */
    "\xC3\x89lodies",          /* 11 Élodies */
    "\xC2\xA0",                /* 12 no-break space */
    "\xC3",                    /* 13 first byte of É */
    "\x89LODIE",               /* 14 the rest of ÉLODIE */
    "Stra",                    /* 15 */
    "\xC3\x9F" "e",            /* 16 ße */
    "\xCE\xA3\xCE\x9F\xCE\xA6\xCE\x9F\xCE\xA3", /* 17 ΣΟΦΟΣ */
    "\xFF",                    /* 18 invalid */
    "\xE0\x80",                /* 19 invalid (overlong) */
    "Li",                      /* 20 */
    "ly",                      /* 21 */
    "A",                       /* 22 */
    "b",                       /* 23 */
    "\xD0\x9F\xD0\xA0\xD0\x98\xD0\x92\xD0\x95\xD0\xA2", /* 24 ПРИВЕТ */
    "\xC3\xA9lodie_",          /* 25 élodie_ */
    "\xC3\x89LODIE2",          /* 26 ÉLODIE2 */
    "e\xCC\x81",               /* 27 e + combining acute */
    "\xE2\x80",                /* 28 first two bytes of “ */
    "\x9C\xC3",                /* 29 last byte of “, first byte of É */
    "\x89lodie\xE2\x80",       /* 30 rest of Élodie, first two bytes of ” */
    "\x9D",                    /* 31 last byte of ” */
    "\xC3\x89lodie\xE2\x80",   /* 32 Élodie, first two bytes of — */
    "\x94",                    /* 33 last byte of — */
};
enum { NV = sizeof VOCAB / sizeof VOCAB[0], EOS = 0, A = 1, SP = 2, X = 3, LQ = 4, RQ = 5,
       ELODIE = 6, ELODIE_UP = 7, ELODIE_LO = 8, DASH = 9, ELLIPSIS = 10, ELODIES = 11,
       NBSP = 12, E_HEAD = 13, E_TAIL_UP = 14, STRA = 15, SSE = 16, SOFOS = 17, FF = 18,
       OVERLONG = 19, LI = 20, LY = 21, CAP_A = 22, B = 23, PRIVET = 24, ELODIE_US = 25,
       ELODIE_2 = 26, E_ACUTE = 27, LQ_HEAD = 28, LQ_TAIL_E = 29, LODIE_RQ = 30, RQ_TAIL = 31,
       ELODIE_DASH = 32, DASH_TAIL = 33 };

#define MAXP 8
typedef struct model {
    bt_token prefs[64][MAXP];
    int32_t  n_pos;
} model;

/* Per position a preference list: logits 10, 8, 6, ...; others 0. Past the script <eos>. */
static void model_logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)seq;
    model *m = user;
    for (int32_t i = 0; i < nv; i++) l[i] = 0.0f;
    int32_t k = n - 1; /* one prompt token */
    if (k >= m->n_pos) {
        l[EOS] = 10.0f;
        return;
    }
    for (int j = 0; j < MAXP && m->prefs[k][j] >= 0; j++) l[m->prefs[k][j]] = 10.0f - 2.0f * j;
}

static void init_model(model *m) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < MAXP; j++) m->prefs[i][j] = -1;
}

static void row(model *m, int32_t pos, bt_token a, bt_token b) {
    m->prefs[pos][0] = a;
    m->prefs[pos][1] = b;
    if (pos + 1 > m->n_pos) m->n_pos = pos + 1;
}

/* A script: the first choice at each position (the second is "x" everywhere). */
static void script(model *m, const bt_token *toks, int n) {
    init_model(m);
    for (int i = 0; i < n; i++) row(m, i, toks[i], X);
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
} sink;

static int collect(void *user, bt_token id, const char *text, size_t len) {
    (void)text, (void)len;
    sink *s = user;
    if (id >= 0 && id != EOS && s->n < 256) s->toks[s->n++] = id;
    return 0;
}

static int run(model *m, bt_strategy *st, sink *out, bt_stats *stats) {
    bt_provider *p = provider(m);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 1;
    sp.seed = 5;
    sp.max_new_tokens = 40;
    bt_sampler *s = bt_sampler_init(p, st, &sp);
    static const bt_token prompt[] = {A};
    int rc = bt_generate_tokens(s, prompt, 1, collect, out, stats);
    bt_sampler_free(s);
    bt_provider_free(p);
    return rc;
}

typedef struct opts {
    bool    variants, whole_word;
    int32_t retries, buffer;
    const char *const *regexes;
    int32_t n_regexes;
} opts;

static bt_strategy *antislop(const char *const *phr, const float *adj, int n, opts o) {
    bt_phrase_list *l = bt_phrase_list_new();
    for (int i = 0; i < n; i++) bt_phrase_list_add(l, phr[i], strlen(phr[i]), adj ? adj[i] : 0.0f);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = n ? l : NULL;
    ap.keep_index_buffer = o.buffer;
    ap.with_variants = o.variants;
    ap.whole_word = o.whole_word;
    if (o.retries) ap.max_retries_per_position = o.retries;
    ap.regexes = o.regexes;
    ap.n_regexes = o.n_regexes;
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    return s;
}

/* Generate `toks` (each position's first choice; "x" second) under a ban of `phrase`;
 * returns the released tokens in *out and the rewinds. */
static int32_t banned(const char *phrase, opts o, const bt_token *toks, int n, sink *out) {
    model m;
    script(&m, toks, n);
    const char *ph[] = {phrase};
    bt_strategy *s = antislop(ph, NULL, 1, o);
    memset(out, 0, sizeof *out);
    bt_stats st;
    int rc = run(&m, s, out, &st);
    CHECK_EQ_INT(rc, BT_OK);
    bt_strategy_free(s);
    return (int32_t)st.n_rewinds;
}

#define TOKS(...) (const bt_token[]){__VA_ARGS__}, (int)(sizeof((const bt_token[]){__VA_ARGS__}) / sizeof(bt_token))

static bool same(const sink *k, const bt_token *want, int n) {
    if (k->n != n) return false;
    for (int i = 0; i < n; i++)
        if (k->toks[i] != want[i]) return false;
    return true;
}
#define CHECK_TOKS(k, ...) CHECK(same(&(k), TOKS(__VA_ARGS__)))

static const opts WHOLE = {.variants = true, .whole_word = true};
static const opts EXACT_WHOLE = {.variants = false, .whole_word = true};
static const opts EXACT = {.variants = false};
static const opts VARIANTS = {.variants = true};

/* ---- item 2: the "done when" ------------------------------------------------- */

static void test_whole_word_unicode_punctuation(void) {
    sink k;
    /* “Élodie” -> “x” */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(LQ, ELODIE, RQ), &k), 1);
    CHECK_TOKS(k, LQ, X, RQ);
    /* ÉLODIE— (case folded) -> x— */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(ELODIE_UP, DASH), &k), 1);
    CHECK_TOKS(k, X, DASH);
    /* élodie… -> x… */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(ELODIE_LO, ELLIPSIS), &k), 1);
    CHECK_TOKS(k, X, ELLIPSIS);
    /* between no-break spaces */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(NBSP, ELODIE, NBSP), &k), 1);
    CHECK_TOKS(k, NBSP, X, NBSP);
    /* at the very end of the text (end of generation decides) */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(LQ, ELODIE_UP), &k), 1);
    CHECK_TOKS(k, LQ, X);
    /* not inside a longer word: Élodies, élodie_ (underscore is a word character),
     * ÉLODIE2 (a digit), Élodie followed by a combining mark */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(ELODIES, SP), &k), 0);
    CHECK_TOKS(k, ELODIES, SP);
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(LQ, ELODIE_US, RQ), &k), 0);
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(SP, ELODIE_2, SP), &k), 0);
    CHECK_EQ_INT(banned("\xC3\x89lodi", WHOLE, TOKS(SP, ELODIE, SP), &k), 0);
    CHECK_EQ_INT(banned("lodie", WHOLE, TOKS(SP, ELODIE, SP), &k), 0);
    CHECK_EQ_INT(banned("\xC3\xA9lodie", WHOLE, TOKS(SP, ELODIE_LO, E_ACUTE), &k), 0);
    /* without whole words the longer word is caught too */
    CHECK_EQ_INT(banned("\xC3\x89lodie", VARIANTS, TOKS(ELODIES, SP), &k), 1);
    CHECK_TOKS(k, X, SP);
}

static void test_case_folding_beyond_ascii(void) {
    sink k;
    /* Cyrillic: "привет" catches ПРИВЕТ */
    CHECK_EQ_INT(banned("\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", WHOLE, TOKS(SP, PRIVET, SP), &k), 1);
    CHECK_TOKS(k, SP, X, SP);
    /* Greek with final sigma: "σοφος" (final ς) catches ΣΟΦΟΣ */
    CHECK_EQ_INT(banned("\xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x82", WHOLE, TOKS(SP, SOFOS, SP), &k), 1);
    CHECK_TOKS(k, SP, X, SP);
    /* ß folds to "ss" (a length change inside the match): "strasse" catches Straße,
     * which rewinds to "Stra", the token holding the first byte */
    CHECK_EQ_INT(banned("STRASSE", WHOLE, TOKS(SP, STRA, SSE, SP), &k), 1);
    CHECK_TOKS(k, SP, X, SSE, SP);
}

static void test_variants_off(void) {
    sink k;
    /* byte-exact: ÉLODIE is not Élodie; whole words still Unicode-aware */
    CHECK_EQ_INT(banned("\xC3\x89lodie", EXACT_WHOLE, TOKS(LQ, ELODIE_UP, RQ), &k), 0);
    CHECK_EQ_INT(banned("\xC3\x89lodie", EXACT_WHOLE, TOKS(LQ, ELODIE, RQ), &k), 1);
    CHECK_TOKS(k, LQ, X, RQ);
    CHECK_EQ_INT(banned("\xC3\x89lodie", EXACT_WHOLE, TOKS(ELODIES, SP), &k), 0);
    CHECK_EQ_INT(banned("STRASSE", EXACT, TOKS(STRA, SSE), &k), 0);
    CHECK_EQ_INT(banned("Stra\xC3\x9F" "e", EXACT, TOKS(STRA, SSE), &k), 1);
}

/* ---- characters split across tokens -------------------------------------------------- */

static void test_split_characters(void) {
    sink k;
    /* É split as C3 | 89 "LODIE": the match starts in the first token: that one is
     * banned (the rewind takes both), then the text ends at the dash */
    CHECK_EQ_INT(banned("\xC3\xA9lodie", WHOLE, TOKS(SP, E_HEAD, E_TAIL_UP, DASH), &k), 1);
    CHECK_TOKS(k, SP, X, E_TAIL_UP, DASH);
    /* “ and ” and É all split: “ | ”É | lodie” ... the boundaries are found across tokens */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(LQ_HEAD, LQ_TAIL_E, LODIE_RQ, RQ_TAIL), &k), 1);
    CHECK_EQ_INT(k.n, 4);
    CHECK_EQ_INT(k.toks[1], X); /* the token holding É's first byte */
    /* Élodie then the first two bytes of — in one token: the match waits for the dash's
     * last byte (it could be a letter) and is then caught */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(SP, ELODIE_DASH, DASH_TAIL), &k), 1);
    CHECK_TOKS(k, SP, X, DASH_TAIL);
}

static void test_invalid_bytes(void) {
    sink k;
    /* invalid bytes are boundaries, never letters; nothing crashes on them */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(FF, ELODIE, OVERLONG), &k), 1);
    CHECK_TOKS(k, FF, X, OVERLONG);
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(E_HEAD, ELODIE_LO, FF), &k), 1);
    CHECK_TOKS(k, E_HEAD, X, FF);
    /* a lone first byte at the end of the text */
    CHECK_EQ_INT(banned("\xC3\x89lodie", WHOLE, TOKS(SP, E_HEAD), &k), 0);
    CHECK_TOKS(k, SP, E_HEAD);
}

/* ---- the scan's offsets -------------------------------------------------------------- */

static void noop_logits(void *u, const bt_token *s, int32_t n, float *l, int32_t nv) {
    (void)u, (void)s, (void)n, (void)l, (void)nv;
}

/* Feed `text` cut into the given pieces; returns the matches after each piece. */
typedef struct scanned {
    bt__match m[16];
    int32_t   hold[16];
    int32_t   token_of_start[16];
} scanned;

static void scan_pieces(const char *phrase, bool fold, bool whole, const char *const *pieces,
                        int n, scanned *out) {
    bt_scripted_params sp = bt_scripted_default_params();
    sp.n_vocab = n;
    sp.tokens = pieces;
    sp.logits = noop_logits;
    bt_provider *p = bt_scripted_provider_init(&sp);
    bt__automaton *a = NULL;
    CHECK_EQ_INT(bt__automaton_build(&phrase, 1, fold, &a), BT_OK);
    bt__scan sc = {0};
    CHECK_EQ_INT(bt__scan_begin(&sc, a, whole, 16, p), BT_OK);
    bt_token toks[16];
    for (int i = 0; i < n; i++) toks[i] = i;
    bt_view v = {.tokens = toks, .provider = p, .n_vocab = n, .max_tokens = 16};
    for (int i = 0; i < n; i++) {
        v.n_tokens = i + 1;
        out->m[i] = bt__scan_sync(&sc, &v, false);
        out->hold[i] = bt__scan_hold_from(&sc);
        out->token_of_start[i] = out->m[i].pattern >= 0 ? bt__scan_token_at(&sc, out->m[i].start) : -1;
    }
    bt__scan_release(&sc);
    bt__automaton_free(a);
    bt_provider_free(p);
}

static void test_scan_offsets(void) {
    scanned r;
    /* "İx ﬁne": İ folds to 3 bytes (i + U+0307), ﬁ to "fi": the match "fine" starts at
     * ﬁ's first byte (4) and ends after "e" (9) in the original text */
    const char *p1[] = {"\xC4\xB0x \xEF\xAC\x81ne "};
    scan_pieces("fine", true, false, p1, 1, &r);
    CHECK_EQ_INT(r.m[0].pattern, 0);
    CHECK_EQ_INT(r.m[0].start, 4);
    CHECK_EQ_INT(r.m[0].end, 9);
    /* a match starting inside a folding: "sse" in "Straße" starts at ß */
    const char *p2[] = {"Stra", "\xC3\x9F", "e!"};
    scan_pieces("sse", true, false, p2, 3, &r);
    CHECK_EQ_INT(r.m[2].pattern, 0);
    CHECK_EQ_INT(r.m[2].start, 4);
    CHECK_EQ_INT(r.m[2].end, 7);
    CHECK_EQ_INT(r.token_of_start[2], 1);
    /* ... and split across tokens: C3 | 9F: held, then matched from the first piece */
    const char *p3[] = {"Stra\xC3", "\x9F", "e!"};
    scan_pieces("sse", true, false, p3, 3, &r);
    CHECK_EQ_INT(r.hold[0], 4);  /* "ß"'s first byte could begin "sse": held */
    CHECK_EQ_INT(r.m[2].start, 4);
    CHECK_EQ_INT(r.token_of_start[2], 0);
    /* a 4-byte character over four tokens, then a match right after it */
    const char *p4[] = {"\xF0", "\x9F", "\x98", "\x80" "Ab"};
    scan_pieces("ab", true, true, p4, 4, &r);
    CHECK_EQ_INT(r.hold[0], 0);
    CHECK_EQ_INT(r.hold[2], 0);
    CHECK_EQ_INT(r.m[3].pattern, -1); /* whole word: waits for what follows "Ab" */
    CHECK_EQ_INT(r.hold[3], 4);
    /* an invalid lead byte followed by ASCII is a unit of its own */
    const char *p5[] = {"\xC3", "Ab "};
    scan_pieces("ab", true, true, p5, 2, &r);
    CHECK_EQ_INT(r.m[1].pattern, 0);
    CHECK_EQ_INT(r.m[1].start, 1);
    CHECK_EQ_INT(r.token_of_start[1], 1);
    /* phrases must be valid UTF-8 */
    bt__automaton *a = NULL;
    const char *bad = "\xC3";
    CHECK_EQ_INT(bt__automaton_build(&bad, 1, true, &a), BT_ERR_UTF8);
}

/* Regexes run on the original text, not on the folded one. */
static void test_regex_original_text(void) {
    sink k = {0};
    const char *re[] = {"Stra\xC3\x9F" "e"};
    opts o = {.variants = true, .regexes = re, .n_regexes = 1};
    model m;
    script(&m, TOKS(SP, STRA, SSE, SP));
    bt_strategy *s = antislop(NULL, NULL, 0, o);
    CHECK(s != NULL);
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, &k, &st), BT_OK);
    CHECK_TOKS(k, SP, X, SSE, SP);
    bt_strategy_free(s);
}

/* ---- item 4: a match let through hides no later match --------------------------------- */

static void test_let_through_regex_does_not_hide_phrase(void) {
    /* "(?i)ab" at position 0 is banned once ("a"), then comes back as "Ab": one retry per
     * position and nothing before it: let through. "Lily" completes later, while "Ab" is
     * still unreleased (keep_index_buffer 5): it must be banned all the same. */
    model m;
    init_model(&m);
    row(&m, 0, A, CAP_A);
    row(&m, 1, B, -1);
    row(&m, 2, LI, X);
    row(&m, 3, LY, -1);
    row(&m, 4, SP, -1);
    const char *re[] = {"(?i)ab"};
    const char *ph[] = {"Lily"};
    opts o = {.variants = true, .retries = 1, .buffer = 5, .regexes = re, .n_regexes = 1};
    bt_strategy *s = antislop(ph, NULL, 1, o);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, &k, &st), BT_OK);
    CHECK_TOKS(k, CAP_A, B, X, LY, SP);
    bt_antislop_stats as;
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.hard_bans, 2);
    CHECK_EQ_INT(as.let_through, 1); /* counted once, not at every step */
    bt_strategy_free(s);
}

static void test_let_through_regex_does_not_hide_itself(void) {
    /* the same regex later in the text is a different match: banned at once, even though
     * the first one, let through, is still unreleased (here the text ends right after it:
     * before, the first match hid it until the end and it stayed) */
    model m;
    init_model(&m);
    row(&m, 0, A, CAP_A);
    row(&m, 1, B, -1);
    row(&m, 2, SP, -1);
    row(&m, 3, A, X);
    row(&m, 4, B, -1);
    const char *re[] = {"(?i)ab"};
    opts o = {.variants = true, .retries = 1, .buffer = 5, .regexes = re, .n_regexes = 1};
    bt_strategy *s = antislop(NULL, NULL, 0, o);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, &k, &st), BT_OK);
    CHECK_TOKS(k, CAP_A, B, SP, X, B);
    CHECK_EQ_INT(st.n_discarded, 4); /* "ab" twice, each at once */
    bt_antislop_stats as;
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.hard_bans, 2);
    CHECK_EQ_INT(as.let_through, 1);
    bt_strategy_free(s);
}

static void test_let_through_phrase_does_not_hide_phrase(void) {
    /* "Lily" (soft ban, 0.5) and "ly" (hard) complete with the same token. The soft ban
     * scales "Li" once; the model takes "Li" again, so "Lily" is let through; "ly" must
     * still be banned at its own token. */
    model m;
    init_model(&m);
    row(&m, 0, LI, X);
    row(&m, 1, LY, X);
    row(&m, 2, SP, -1);
    const char *ph[] = {"Lily", "ly"};
    const float adj[] = {0.5f, 0.0f};
    opts o = {.variants = true};
    bt_strategy *s = antislop(ph, adj, 2, o);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, s, &k, &st), BT_OK);
    CHECK_TOKS(k, LI, X, SP);
    bt_antislop_stats as;
    bt_antislop_get_stats(s, &as);
    CHECK_EQ_INT(as.soft_bans, 1);
    CHECK_EQ_INT(as.hard_bans, 1);
    bt_strategy_free(s);
}

/* ---- on_rewind: a rewind by another strategy of a chain ------------------------------- */

typedef struct rewinder {
    bool    done;
    bt_token drawn_at_1[8];
    int     n_drawn_at_1;
} rewinder;

static void rw_next(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    (void)c;
    rewinder *r = s->ctx;
    if (v->n_tokens == 2 && r->n_drawn_at_1 < 8) r->drawn_at_1[r->n_drawn_at_1++] = v->tokens[1];
}
static int32_t rw_backtrack(bt_strategy *s, const bt_view *v) {
    rewinder *r = s->ctx;
    if (!r->done && v->n_tokens == 4) { /* once, back to the start */
        r->done = true;
        return 4;
    }
    return 0;
}
static int32_t rw_keep(bt_strategy *s, const bt_view *v) {
    return ((rewinder *)s->ctx)->done ? v->n_tokens : 0;
}
static const bt_strategy_i rewinder_iface = {.name = "rewinder", .on_next_token = rw_next,
                                             .backtrack = rw_backtrack, .keep_index = rw_keep};

static void test_rewind_by_another_strategy(void) {
    /* AntiSlop bans "Li" at position 1 ("Lily"); later another strategy of the chain
     * rewinds to the start. The ban belonged to text that is gone (what came before
     * position 1 is drawn again): "Li" may be drawn there again (and is banned again when
     * "Lily" comes back). A ban at the position of the next draw stays: what it depends
     * on, the text before it, is still there. */
    model m;
    init_model(&m);
    row(&m, 0, A, -1);
    row(&m, 1, LI, X);
    row(&m, 2, LY, -1);
    row(&m, 3, B, -1);
    const char *ph[] = {"Lily"};
    opts o = {.variants = true};
    rewinder rw = {0};
    bt_strategy *as = antislop(ph, NULL, 1, o);
    bt_strategy *list[2] = {bt_strategy_init(&rewinder_iface, &rw), as};
    bt_strategy *c = bt_chain_strategy_init(list, 2);
    sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(run(&m, c, &k, &st), BT_OK);
    CHECK_TOKS(k, A, X, LY, B);
    CHECK_EQ_INT(rw.n_drawn_at_1, 4);
    CHECK_EQ_INT(rw.drawn_at_1[0], LI);
    CHECK_EQ_INT(rw.drawn_at_1[1], X);
    CHECK_EQ_INT(rw.drawn_at_1[2], LI); /* the ban was dropped with the text */
    CHECK_EQ_INT(rw.drawn_at_1[3], X);
    bt_antislop_stats s;
    bt_antislop_get_stats(as, &s);
    CHECK_EQ_INT(s.hard_bans, 2);
    bt_strategy_free(c);
}

int main(void) {
    RUN(test_whole_word_unicode_punctuation);
    RUN(test_case_folding_beyond_ascii);
    RUN(test_variants_off);
    RUN(test_split_characters);
    RUN(test_invalid_bytes);
    RUN(test_scan_offsets);
    RUN(test_regex_original_text);
    RUN(test_let_through_regex_does_not_hide_phrase);
    RUN(test_let_through_regex_does_not_hide_itself);
    RUN(test_let_through_phrase_does_not_hide_phrase);
    RUN(test_rewind_by_another_strategy);
    TEST_MAIN_END();
}
