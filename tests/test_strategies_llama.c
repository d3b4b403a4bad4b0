/* test_strategies_llama.c -- the strategies on real llama.cpp and stories260K. */
#include "check.h"
#include "internal.h"

#include <math.h>
#include <unistd.h>

static const char *MODEL = BT_TEST_MODEL;
static const char *SLOP_DIR = BT_SOURCE_DIR "/../shared/slop";

static bt_provider *load(void) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    return bt_llama_provider_init(&lp);
}

/* The model's favourite words, banned over 20 seeds: never one in the output. */
static void test_ban_favourites(void) {
    bt_provider *p = load();
    CHECK(p != NULL);
    if (!p) return;
    const char *fav[] = {"Lily", "little girl", "park", "ball"};
    bt_phrase_list *l = bt_phrase_list_new();
    for (int i = 0; i < 4; i++) bt_phrase_list_add(l, fav[i], strlen(fav[i]), 0.0f);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = l;
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    int64_t rewinds = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = seed;
        sp.max_new_tokens = 200;
        bt_sampler *smp = bt_sampler_init(p, s, &sp);
        text_sink k = {0};
        bt_stats st;
        CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k, &st), BT_OK);
        CHECK(k.len > 100);
        for (int i = 0; i < 4; i++) {
            CHECK(!contains_ci(k.text, fav[i]));
            if (contains_ci(k.text, fav[i])) fprintf(stderr, "seed %d let '%s' through:\n%s\n", (int)seed, fav[i], k.text);
        }
        CHECK_EQ_INT(st.n_prompt_reevaluated, 0);
        rewinds += st.n_rewinds;
        bt_sampler_free(smp);
    }
    CHECK(rewinds > 0);
    fprintf(stderr, "  20 seeds: %lld rewinds\n", (long long)rewinds);
    /* and the test is not vacuous: without the strategy most seeds use them */
    int with = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = seed;
        sp.max_new_tokens = 200;
        bt_sampler *smp = bt_sampler_init(p, NULL, &sp);
        text_sink k = {0};
        bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k, NULL);
        bool any = false;
        for (int i = 0; i < 4; i++) any |= contains_ci(k.text, fav[i]);
        with += any;
        bt_sampler_free(smp);
    }
    fprintf(stderr, "  without the ban, %d of 20 seeds use one of them\n", with);
    CHECK(with >= 10);
    bt_strategy_free(s);
    bt_provider_free(p);
}

/* The full 50,046-phrase list loads in well under a second and generates. */
static void test_full_slop_list(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/slop_phrase_prob_adjustments_full_list.json", SLOP_DIR);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "  (skipped: %s not present)\n", path);
        return;
    }
    double t0 = bt__now_ms();
    bt_phrase_list *l = NULL;
    CHECK_EQ_INT(bt_phrase_list_load(path, false, &l), BT_OK);
    CHECK_EQ_INT(bt_phrase_list_size(l), 50046);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = l;
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    double load_ms = bt__now_ms() - t0;
    bt_phrase_list_free(l);
    CHECK(s != NULL);
    /* timing is the benchmark's business (bench_antislop): under sanitizers and a loaded
     * machine a bound here only flakes */
    fprintf(stderr, "  50,046 phrases loaded and compiled in %.0f ms\n", load_ms);
    bt_provider *p = load();
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 11;
    sp.max_new_tokens = 200;
    bt_sampler *smp = bt_sampler_init(p, s, &sp);
    text_sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k, &st), BT_OK);
    CHECK(k.len > 100);
    CHECK_EQ_INT(st.n_released, 200);
    bt_antislop_stats as;
    bt_antislop_get_stats(s, &as);
    CHECK(as.matches > 0);
    fprintf(stderr, "  200 tokens: %lld matches, %lld soft bans, %lld let through\n",
            (long long)as.matches, (long long)as.soft_bans, (long long)as.let_through);
    bt_sampler_free(smp);
    bt_strategy_free(s);
    bt_provider_free(p);
}

/* Replace on the real model: every "Lily" becomes " Zed" (the find text includes the
 * space the model puts before names). */
static void test_replace_real(void) {
    bt_provider *p = load();
    if (!p) return;
    const char *find[] = {" Lily"};
    bt_replace_params rp = bt_replace_default_params();
    rp.find = find;
    rp.n_find = 1;
    rp.replace = " Zed";
    bt_strategy *s = bt_replace_strategy_init(&rp);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 1;
    sp.max_new_tokens = 60;
    bt_sampler *smp = bt_sampler_init(p, s, &sp);
    text_sink k = {0};
    CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k, NULL), BT_OK);
    CHECK(strstr(k.text, "Lily") == NULL);
    CHECK(strstr(k.text, "named Zed") != NULL);
    CHECK(strstr(k.text, "  Zed") == NULL); /* exactly the replacement: no extra space */
    CHECK(bt_replace_count(s) >= 1);
    bt_sampler_free(smp);
    bt_strategy_free(s);
    bt_provider_free(p);
}


/* ---- AntiSlop's bans as a patch (no copy of the logits) give exactly the copy path ----
 * A chain of AntiSlop and a strategy whose on_logits is opaque (it changes nothing, but
 * the sampler cannot know) takes the copy path; AntiSlop alone, or chained with a
 * strategy that has no on_logits, takes the patch. Same seeds: same text, same stats,
 * with the penalties and a logit bias patched in too, and through many bans. */
static void opaque_logits(bt_strategy *s, const bt_view *v, float *logits) {
    (void)s, (void)v, (void)logits;
}
static const bt_strategy_i opaque_iface = {.name = "opaque", .on_logits = opaque_logits};

static bt_strategy *favourites(void) {
    const char *fav[] = {"Lily", "little", "park", "ball", "girl", "happy", "play", "mom", "he", "she"};
    bt_phrase_list *l = bt_phrase_list_new();
    for (int i = 0; i < 10; i++) bt_phrase_list_add(l, fav[i], strlen(fav[i]), 0.0f);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = l;
    ap.whole_word = false; /* "he" inside words too: many bans, some dead ends */
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    return s;
}

static void test_bans_patch_equals_copy(void) {
    bt_provider *p = load();
    CHECK(p != NULL);
    if (!p) return;
    bt_strategy *alone = favourites();
    bt_strategy *parts[2] = {favourites(), bt_strategy_init(&opaque_iface, NULL)};
    bt_strategy *copying = bt_chain_strategy_init(parts, 2);
    bt_strategy *parts2[2] = {favourites(), bt_noop_strategy_init()};
    bt_strategy *chained = bt_chain_strategy_init(parts2, 2);
    CHECK(alone->ext_ != NULL && chained->ext_ != NULL && copying->ext_ == NULL);
    bt_logit_bias lb[2] = {{.token = 317, .bias = 2.0f}, {.token = 432, .bias = -1.0f}};
    int64_t rewinds = 0, dead = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = seed;
        sp.max_new_tokens = 120;
        if (seed % 2 == 0) { /* half of them with the penalties and a bias in the patch */
            sp.repeat_penalty = 1.3f;
            sp.presence_penalty = 0.2f;
            sp.logit_bias = lb;
            sp.n_logit_bias = 2;
        }
        text_sink k[3] = {{{0}, 0}, {{0}, 0}, {{0}, 0}};
        bt_stats st[3];
        bt_strategy *which[3] = {alone, chained, copying};
        for (int w = 0; w < 3; w++) {
            bt_sampler *smp = bt_sampler_init(p, which[w], &sp);
            CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k[w], &st[w]), BT_OK);
            bt_sampler_free(smp);
        }
        for (int w = 1; w < 3; w++) {
            CHECK_STR(k[w].text, k[0].text);
            CHECK_EQ_INT(st[w].n_rewinds, st[0].n_rewinds);
            CHECK_EQ_INT(st[w].n_steps, st[0].n_steps);
            CHECK_EQ_INT(st[w].n_dead_ends, st[0].n_dead_ends);
        }
        rewinds += st[0].n_rewinds;
        dead += st[0].n_dead_ends;
    }
    CHECK(rewinds > 50); /* many bans went through both paths */
    fprintf(stderr, "  dead ends: %lld\n", (long long)dead);
    fprintf(stderr, "  12 seeds: %lld rewinds, identical texts\n", (long long)rewinds);
    bt_strategy_free(alone);
    bt_strategy_free(copying);
    bt_strategy_free(chained);
    bt_provider_free(p);
}


/* ---- A draw again at the same position reuses the filters' output ----
 * After a rewind of only the token just drawn (AntiSlop's soft bans, its retries), the
 * sampler copies back the candidates the filters gave at that position instead of
 * filtering the vocabulary again. Same seeds with and without: same text, same stats;
 * soft bans (the saved draw serves them), hard bans (the patch changes: filter again), the
 * penalties and a bias in the patch, top_k off (top_p over many candidates), and a
 * provider that hands out every position's logits at one address. */
static bt_strategy *favourites_adj(float adj, bool whole_word) {
    const char *fav[] = {"Lily", "little", "park", "ball", "girl", "happy", "play", "mom", "he", "she"};
    bt_phrase_list *l = bt_phrase_list_new();
    for (int i = 0; i < 10; i++) bt_phrase_list_add(l, fav[i], strlen(fav[i]), i % 3 ? adj : 0.0f);
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = l;
    ap.whole_word = whole_word;
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    bt_phrase_list_free(l);
    return s;
}

static void test_redraw_equals_filtering_again(void) {
    bt_provider *p = load();
    /* logits_window 0: one slot, so every position's logits come at the same address
     * (the position must be part of the key, not only the pointer) */
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.logits_window = 0;
    bt_provider *p0 = bt_llama_provider_init(&lp);
    CHECK(p != NULL && p0 != NULL);
    if (!p || !p0) return;
    bt_logit_bias lb[2] = {{.token = 317, .bias = 2.0f}, {.token = 432, .bias = -1.0f}};
    int64_t hits = 0, rewinds = 0;
    for (uint64_t seed = 1; seed <= 16; seed++) {
        bt_strategy *s = favourites_adj(seed % 4 == 3 ? 0.9f : 0.3f, seed % 2 == 0);
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = seed;
        sp.max_new_tokens = 100;
        if (seed % 4 == 1) { /* the penalties and a bias in the patch */
            sp.repeat_penalty = 1.3f;
            sp.presence_penalty = 0.2f;
            sp.logit_bias = lb;
            sp.n_logit_bias = 2;
        }
        if (seed % 8 == 2) sp.top_k = 0, sp.top_p = 0.9f;
        text_sink k[2] = {{{0}, 0}, {{0}, 0}};
        bt_stats st[2];
        for (int w = 0; w < 2; w++) {
            bt_sampler *smp = bt_sampler_init(seed % 3 == 0 ? p0 : p, s, &sp);
            if (w == 1) bt__sampler_redraw_off(smp);
            CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k[w], &st[w]), BT_OK);
            if (w == 0) hits += bt__sampler_redraw_hits(smp);
            else CHECK_EQ_INT(bt__sampler_redraw_hits(smp), 0);
            bt_sampler_free(smp);
        }
        CHECK_STR(k[1].text, k[0].text);
        CHECK_EQ_INT(st[1].n_rewinds, st[0].n_rewinds);
        CHECK_EQ_INT(st[1].n_steps, st[0].n_steps);
        CHECK_EQ_INT(st[1].n_dead_ends, st[0].n_dead_ends);
        rewinds += st[0].n_rewinds;
        bt_strategy_free(s);
    }
    fprintf(stderr, "  16 seeds: %lld rewinds, %lld draws served again, identical texts\n",
            (long long)rewinds, (long long)hits);
    CHECK(hits > 20); /* the saved draw did serve */
    bt_provider_free(p);
    bt_provider_free(p0);
}

/* A strategy that bans every token of the vocabulary at position 3 (a dead end: the
 * sampler falls back to the model's own distribution there) and `extra` tokens at every
 * other position; with the fast path (bans_here) or without (on_logits only). 512 bans
 * do not fit in the sampler's list: that step takes the copy path after all. */
static int32_t g_extra;
static void all_bans_here(bt_strategy *s, const bt_view *v, void (*ban)(void *, bt_token),
                          void *sink) {
    (void)s;
    int32_t n = v->n_tokens == 3 ? v->n_vocab : g_extra;
    for (int32_t t = 0; t < n; t++) ban(sink, (t * 7) % v->n_vocab);
}
static void all_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    (void)s;
    int32_t n = v->n_tokens == 3 ? v->n_vocab : g_extra;
    for (int32_t t = 0; t < n; t++) logits[(t * 7) % v->n_vocab] = -INFINITY;
}
static const bt_strategy_i all_iface = {.name = "all", .on_logits = all_on_logits};
static const bt__strategy_ext all_ext = {.bans_here = all_bans_here};

static void test_bans_patch_dead_end_and_overflow(void) {
    bt_provider *p = load();
    CHECK(p != NULL);
    if (!p) return;
    bt_strategy *fast = bt_strategy_init(&all_iface, NULL);
    fast->ext_ = &all_ext;
    bt_strategy *slow = bt_strategy_init(&all_iface, NULL);
    for (int variant = 0; variant < 4; variant++) {
        g_extra = variant < 2 ? 5 : 300; /* 300: more than the list holds, every step */
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = 7 + (uint64_t)variant;
        sp.max_new_tokens = 40;
        if (variant % 2) sp.repeat_penalty = 1.5f, sp.frequency_penalty = 0.3f;
        text_sink k[2] = {{{0}, 0}, {{0}, 0}};
        bt_stats st[2];
        bt_strategy *which[2] = {fast, slow};
        for (int w = 0; w < 2; w++) {
            bt_sampler *smp = bt_sampler_init(p, which[w], &sp);
            CHECK_EQ_INT(bt_generate(smp, "Once upon a time", 16, text_sink_collect, &k[w], &st[w]), BT_OK);
            bt_sampler_free(smp);
        }
        CHECK_STR(k[0].text, k[1].text);
        CHECK_EQ_INT(st[0].n_dead_ends, 1);
        CHECK_EQ_INT(st[1].n_dead_ends, 1);
    }
    bt_strategy_free(fast);
    bt_strategy_free(slow);
    bt_provider_free(p);
}

int main(void) {
    if (access(MODEL, R_OK) != 0) {
        fprintf(stderr, "model %s missing: run scripts/get-model.sh\n", MODEL);
        return 1;
    }
    RUN(test_ban_favourites);
    RUN(test_full_slop_list);
    RUN(test_replace_real);
    RUN(test_bans_patch_equals_copy);
    RUN(test_bans_patch_dead_end_and_overflow);
    RUN(test_redraw_equals_filtering_again);
    TEST_MAIN_END();
}
