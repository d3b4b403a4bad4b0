/*
 * bench_e2e.c -- end-to-end decoding throughput: backtrack's generation path (llama.cpp
 * provider, no-op strategy, bt_generate) against a plain loop written against llama.h
 * (llama_decode one token at a time, llama.cpp's own sampler chain), same model, same
 * threads, same context, same prompt and token count, alternating in one process.
 * Medians over the runs; one Markdown row per sampling mode.
 *
 *   bench_e2e MODEL [TOKENS] [RUNS] [THREADS]
 */
#include "backtrack.h"
#include "bench_common.h"
#include "llama.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *PROMPT = "Once upon a time";

static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l, (void)t, (void)u; }

/* The plain loop: tokens/s over `tokens` new tokens (prompt decode included in time). */
static double plain_run(struct llama_model *model, int tokens, int threads, bool greedy) {
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(tokens + 64);
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    struct llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (greedy) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        llama_sampler_chain_add(chain, llama_sampler_init_top_k(50));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(1.0f));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(1));
    }
    llama_token prompt[64];
    int np = llama_tokenize(vocab, PROMPT, (int32_t)strlen(PROMPT), prompt, 64,
                            llama_vocab_get_add_bos(vocab), true);
    double t0 = now_ms();
    llama_decode(ctx, llama_batch_get_one(prompt, np));
    for (int i = 0; i < tokens; i++) {
        llama_token t = llama_sampler_sample(chain, ctx, -1);
        if (i == tokens - 1) break; /* the last token is drawn, not evaluated (as bt_generate) */
        llama_decode(ctx, llama_batch_get_one(&t, 1));
    }
    double ms = now_ms() - t0;
    llama_sampler_free(chain);
    llama_free(ctx);
    return tokens * 1000.0 / ms;
}

static double bt_run(bt_sampler *s) {
    bt_stats st;
    bt_generate(s, PROMPT, strlen(PROMPT), NULL, NULL, &st);
    return (double)st.n_released * 1000.0 / st.t_total_ms;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_e2e MODEL [TOKENS] [RUNS] [THREADS]\n");
        return 2;
    }
    const char *path = argv[1];
    int tokens = argc > 2 ? atoi(argv[2]) : 128, runs = argc > 3 ? atoi(argv[3]) : 5;
    int threads = argc > 4 ? atoi(argv[4]) : (int)sysconf(_SC_NPROCESSORS_ONLN);

    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = path;
    lp.n_ctx = tokens + 64;
    lp.n_threads = threads;
    bt_provider *prov = bt_llama_provider_init(&lp);
    if (!prov) {
        fprintf(stderr, "bench_e2e: %s\n", bt_last_error());
        return 1;
    }
    llama_log_set(quiet, NULL);
    struct llama_model *model = llama_model_load_from_file(path, llama_model_default_params());
    bt_strategy *noop = bt_noop_strategy_init();

    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (int mode = 0; mode < 2; mode++) {
        bool greedy = mode == 0;
        bt_sampler_params sp = bt_sampler_default_params();
        sp.top_k = greedy ? 1 : 50;
        sp.seed = 1;
        sp.max_new_tokens = tokens;
        bt_sampler *s = bt_sampler_init(prov, noop, &sp);
        double *a = malloc((size_t)runs * sizeof *a), *b = malloc((size_t)runs * sizeof *b);
        bt_run(s); /* warm-up both */
        plain_run(model, tokens, threads, greedy);
        for (int i = 0; i < runs; i++) {
            a[i] = bt_run(s);
            b[i] = plain_run(model, tokens, threads, greedy);
        }
        double ma = median(a, runs), mb = median(b, runs);
        printf("| %s | %s | %d | %d | %.1f | %.1f | %.3f |\n", base,
               greedy ? "greedy" : "top_k 50, temp 1, dist", threads, tokens, ma, mb, ma / mb);
        free(a);
        free(b);
        bt_sampler_free(s);
    }
    bt_strategy_free(noop);
    llama_model_free(model);
    bt_provider_free(prov);
    return 0;
}
