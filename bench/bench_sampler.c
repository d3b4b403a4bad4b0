/*
 * bench_sampler.c -- the per-token sampling cost on a 128,256-token vocabulary:
 * backtrack's whole per-token path (bt_generate with the no-op strategy on a provider that
 * hands out precomputed logits at no cost) against llama.cpp's own sampler chain on the
 * same logits (the token-data array built from the logits, as llama.cpp's common sampler
 * does, then top_k, top_p, min_p, temp, dist). Both sides alternate in one process;
 * medians over the runs and the ratio are printed as a Markdown table row. The rows with
 * penalties (repeat 1.1, frequency 0.1, presence 0.1 over the last 64 tokens) and logit
 * bias put llama.cpp's logit_bias and penalties samplers at the head of its chain, where
 * its common sampler puts them; its penalties sampler is fed every drawn token.
 *
 *   bench_sampler [N_VOCAB] [TOKENS] [RUNS]
 */
#include "backtrack.h"
#include "bench_common.h"
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { N_LOGIT_SETS = 16 };
static int32_t NV = 128256;
static float  *LOGITS[N_LOGIT_SETS];

/* Realistic logits: a Zipf-like head (logit falls with log rank) plus noise, ranks
 * shuffled over the vocabulary; 16 different vectors, used in turn. */
static uint64_t rs = 42;
static double rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) * 0x1.0p-53;
}
static void make_logits(void) {
    int32_t *perm = malloc((size_t)NV * sizeof *perm);
    for (int s = 0; s < N_LOGIT_SETS; s++) {
        for (int32_t i = 0; i < NV; i++) perm[i] = i;
        for (int32_t i = NV - 1; i > 0; i--) {
            int32_t j = (int32_t)(rnd() * (i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        LOGITS[s] = malloc((size_t)NV * sizeof(float));
        double slope = 1.5 + rnd() * 2.0; /* from flat to peaked */
        for (int32_t r = 0; r < NV; r++)
            LOGITS[s][perm[r]] = (float)(15.0 - slope * log(1.0 + r) + 0.3 * (rnd() - 0.5));
    }
    free(perm);
}

/* ---- a provider with free evaluations: the logits are precomputed ---- */
typedef struct replay { int32_t n; } replay;
static int32_t rp_nv(void *c) { (void)c; return NV; }
static int32_t rp_ctx(void *c) { (void)c; return 1 << 20; }
static int rp_tok(void *c, const char *t, size_t l, bool a, bool b, bt_token *o, int32_t cap, int32_t *n) {
    (void)c, (void)t, (void)l, (void)a, (void)b, (void)o, (void)cap;
    *n = 0;
    return BT_OK;
}
static int rp_text(void *c, bt_token id, const char **b, size_t *l) {
    (void)c, (void)id;
    *b = "";
    *l = 0;
    return BT_OK;
}
static bool rp_eog(void *c, bt_token id) { (void)c, (void)id; return false; }
static int rp_eval(void *c, const bt_token *seq, int32_t n, const float **lg, bt_eval_info *info) {
    (void)seq;
    replay *r = c;
    *lg = LOGITS[n % N_LOGIT_SETS];
    if (info) *info = (bt_eval_info){n > r->n ? n - r->n : 0, r->n};
    r->n = n;
    return BT_OK;
}
static int rp_rewind(void *c, int32_t n) { ((replay *)c)->n -= n; return BT_OK; }
static void rp_reset(void *c) { ((replay *)c)->n = 0; }
static const bt_provider_i replay_iface = {"replay", rp_nv, rp_ctx, rp_tok, rp_text, rp_eog,
                                           rp_eval, rp_rewind, rp_reset, NULL, NULL, NULL, NULL};

/* backtrack: ms per token for `tokens` tokens */
static double run_backtrack(bt_sampler *s, int tokens) {
    bt_token prompt[1] = {1};
    bt_stats st;
    double t0 = now_ms();
    bt_generate_tokens(s, prompt, 1, NULL, NULL, &st);
    return (now_ms() - t0) / tokens;
}

/* llama.cpp: the same number of tokens through its chain */
static double run_llama(struct llama_sampler *chain, int tokens, llama_token_data *cur) {
    double t0 = now_ms();
    for (int k = 0; k < tokens; k++) {
        const float *lg = LOGITS[(k + 1) % N_LOGIT_SETS];
        for (int32_t i = 0; i < NV; i++) cur[i] = (llama_token_data){i, lg[i], 0.0f};
        llama_token_data_array arr = {cur, (size_t)NV, -1, false};
        llama_sampler_apply(chain, &arr);
        llama_sampler_accept(chain, arr.data[arr.selected].id);
    }
    return (now_ms() - t0) / tokens;
}

enum { N_BIAS = 10 };

static void bench_case(const char *label, int32_t top_k, float top_p, float min_p,
                       bool penalties, bool bias, int tokens, int runs) {
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.min_p = min_p;
    sp.seed = 1;
    sp.max_new_tokens = tokens;
    sp.add_special = false;
    if (penalties) {
        sp.repeat_penalty = 1.1f;
        sp.frequency_penalty = 0.1f;
        sp.presence_penalty = 0.1f;
        sp.repeat_last_n = 64;
    }
    bt_logit_bias lb[N_BIAS];
    for (int i = 0; i < N_BIAS; i++) lb[i] = (bt_logit_bias){(bt_token)(i * 997 % NV), i % 2 ? 1.5f : -INFINITY};
    if (bias) {
        sp.logit_bias = lb;
        sp.n_logit_bias = N_BIAS;
    }
    replay r = {0};
    bt_provider *prov = bt_provider_init(&replay_iface, &r);
    bt_strategy *noop = bt_noop_strategy_init();
    bt_sampler *s = bt_sampler_init(prov, noop, &sp);

    struct llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (bias) {
        llama_logit_bias llb[N_BIAS];
        for (int i = 0; i < N_BIAS; i++) llb[i] = (llama_logit_bias){lb[i].token, lb[i].bias};
        llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(NV, N_BIAS, llb));
    }
    if (penalties)
        llama_sampler_chain_add(chain, llama_sampler_init_penalties(NV, 64, 1.1f, 0.1f, 0.1f));
    if (top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(top_k));
    if (top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(top_p, 1));
    if (min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(min_p, 1));
    llama_sampler_chain_add(chain, llama_sampler_init_temp(1.0f));
    llama_sampler_chain_add(chain, llama_sampler_init_dist(1));
    llama_token_data *cur = malloc((size_t)NV * sizeof *cur);

    double *a = malloc((size_t)runs * sizeof *a), *b = malloc((size_t)runs * sizeof *b);
    run_backtrack(s, tokens); /* warm-up */
    run_llama(chain, tokens, cur);
    for (int i = 0; i < runs; i++) {
        a[i] = run_backtrack(s, tokens);
        b[i] = run_llama(chain, tokens, cur);
    }
    double ma = median(a, runs), mb = median(b, runs);
    printf("| %s | %d | %.1f | %.1f | %.2f |\n", label, NV, ma * 1000.0, mb * 1000.0, ma / mb);
    free(a);
    free(b);
    free(cur);
    llama_sampler_free(chain);
    bt_sampler_free(s);
    bt_strategy_free(noop);
    bt_provider_free(prov);
}

int main(int argc, char **argv) {
    if (argc > 1) NV = atoi(argv[1]);
    int tokens = argc > 2 ? atoi(argv[2]) : 2000, runs = argc > 3 ? atoi(argv[3]) : 9;
    if (NV < 100 || tokens < 1 || runs < 1) {
        fprintf(stderr, "usage: bench_sampler [N_VOCAB>=100] [TOKENS] [RUNS]\n");
        return 2;
    }
    make_logits();
    printf("| filters | vocabulary | backtrack µs/token | llama.cpp µs/token | ratio |\n");
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    bench_case("top_k 50, top_p 0.95, min_p 0.05, temp 1", 50, 0.95f, 0.05f, false, false, tokens, runs);
    bench_case("top_k 0 (off), top_p 0.95", 0, 0.95f, 0.0f, false, false, tokens, runs);
    bench_case("top_k 50 only", 50, 1.0f, 0.0f, false, false, tokens, runs);
    bench_case("top_k 50, top_p 0.95, min_p 0.05, temp 1 + penalties (last 64)", 50, 0.95f,
               0.05f, true, false, tokens, runs);
    bench_case("the same + logit bias (10 tokens)", 50, 0.95f, 0.05f, true, true, tokens, runs);
    for (int s = 0; s < N_LOGIT_SETS; s++) free(LOGITS[s]);
    return 0;
}
