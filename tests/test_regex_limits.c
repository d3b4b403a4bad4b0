/* test_regex_limits.c -- AntiSlop's regexes run under PCRE2 match, depth and heap limits:
 * a pattern with catastrophic backtracking on a long run of "a"s (every step searches the
 * whole unreleased text) ends its generation quickly, counts as no match, and is logged
 * once per generation at WARN; an ordinary regex in the same strategy still bans. */
#include "check.h"

#include "backtrack.h"

#include <time.h>

static const char *const VOCAB[] = {"", "a", "b", "c", " x"};
enum { EOS, A, B, C, X };

/* "a" always, except that " x" comes first at the positions listed in user (-1 ends). */
static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)seq;
    const int32_t *x_at = user;
    for (int32_t i = 0; i < nv; i++) l[i] = -10.0f;
    l[A] = 10.0f;
    for (int k = 0; x_at && x_at[k] >= 0; k++)
        if (n == x_at[k]) l[X] = 20.0f;
}

static int g_limit_logs, g_other_warns;
static void on_log(void *user, int level, const char *msg) {
    (void)user;
    if (level != BT_LOG_WARN) return;
    if (strstr(msg, "hit PCRE2's") && strstr(msg, "(a+)+b")) g_limit_logs++;
    else g_other_warns++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_catastrophic_regex(void) {
    const int32_t x_at[] = {200, -1}; /* " x" once, at position 200 */
    bt_scripted_params pp = bt_scripted_default_params();
    pp.n_vocab = 5;
    pp.tokens = VOCAB;
    pp.eos = EOS;
    pp.logits = logits;
    pp.user = (void *)x_at;
    bt_provider *p = bt_scripted_provider_init(&pp);
    CHECK(p != NULL);
    bt_antislop_params ap = bt_antislop_default_params();
    /* (a+)+b on "aaa...a": every split of the run is tried before giving up (2^n), and a
     * soft partial match keeps PCRE2 searching; " x" is banned by the second regex */
    const char *re[] = {"(a+)+b", " x"};
    ap.regexes = re;
    ap.n_regexes = 2;
    ap.keep_index_buffer = 100000; /* nothing released early: the whole text is searched */
    bt_strategy *s = bt_antislop_strategy_init(&ap);
    CHECK(s != NULL);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 1;
    sp.seed = 1;
    sp.max_new_tokens = 300;
    bt_sampler *smp = bt_sampler_init(p, s, &sp);
    CHECK(smp != NULL);
    const bt_token prompt[] = {A};
    for (int run = 1; run <= 2; run++) {
        text_sink out = {0};
        bt_stats st;
        double t0 = now_s();
        CHECK_EQ_INT(bt_generate_tokens(smp, prompt, 1, text_sink_collect, &out, &st), BT_OK);
        double secs = now_s() - t0;
        /* without the limits one step alone would take PCRE2's default 10,000,000 calls
         * (seconds) and 300 of them minutes; with them the whole run takes well under a
         * second (the bound leaves room for sanitizers and a busy machine) */
        fprintf(stderr, "  run %d: 300 steps in %.3f s\n", run, secs);
        CHECK(secs < 15.0);
        CHECK_EQ_INT(st.n_released, 300);
        /* the pathological regex never matched (nothing banned for it), the other did */
        CHECK_EQ_INT(st.n_rewinds, 1);
        CHECK(strstr(out.text, " x") == NULL);
        CHECK(strspn(out.text, "a") == strlen(out.text));
        CHECK_EQ_INT(g_limit_logs, run); /* once per generation */
    }
    CHECK_EQ_INT(g_other_warns, 0);
    bt_sampler_free(smp);
    bt_strategy_free(s);
    bt_provider_free(p);
}

int main(void) {
    bt_log_set(on_log, NULL);
    RUN(test_catastrophic_regex);
    TEST_MAIN_END();
}
