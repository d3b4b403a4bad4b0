/* test_strategies_llama.c -- the strategies on real llama.cpp and stories260K. */
#include "check.h"
#include "internal.h"

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

int main(void) {
    if (access(MODEL, R_OK) != 0) {
        fprintf(stderr, "model %s missing: run scripts/get-model.sh\n", MODEL);
        return 1;
    }
    RUN(test_ban_favourites);
    RUN(test_full_slop_list);
    RUN(test_replace_real);
    TEST_MAIN_END();
}
