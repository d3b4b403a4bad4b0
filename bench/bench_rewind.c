/*
 * bench_rewind.c -- what rewinds cost. A strategy that undoes the last R tokens after
 * every P kept ones (deterministic, so both runs keep the same number of tokens) against
 * the same generation without rewinds; the logits window (rewinds inside it cost no
 * model evaluation) against re-decoding one token. Reports model evaluations per kept
 * token, discarded tokens, prompt positions evaluated twice, time per kept token and the
 * process's peak resident memory (run each configuration in its own process).
 *
 *   bench_rewind MODEL MODE TOKENS WINDOW [PERIOD] [REWIND]
 *   MODE: plain | rewind
 */
#include "backtrack.h"
#include "bench_common.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

typedef struct periodic {
    int32_t period, depth;
    int32_t since;    /* tokens accepted since the last rewind */
    int32_t hold;     /* keep index: never release what might be undone */
} periodic;

static int32_t pd_backtrack(bt_strategy *s, const bt_view *v) {
    periodic *p = s->ctx;
    if (++p->since < p->period || v->n_tokens < p->depth) return 0;
    p->since = 0;
    return p->depth;
}
static int32_t pd_keep(bt_strategy *s, const bt_view *v) {
    periodic *p = s->ctx;
    return v->n_tokens - p->depth;
}
static void pd_reset(bt_strategy *s) { ((periodic *)s->ctx)->since = 0; }
static const bt_strategy_i periodic_iface = {.name = "periodic", .backtrack = pd_backtrack,
                                             .keep_index = pd_keep, .reset = pd_reset};

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_rewind MODEL plain|rewind TOKENS WINDOW [PERIOD] [REWIND]\n");
        return 2;
    }
    const char *path = argv[1];
    bool rewind = strcmp(argv[2], "rewind") == 0;
    int tokens = atoi(argv[3]), window = atoi(argv[4]);
    int period = argc > 5 ? atoi(argv[5]) : 8, depth = argc > 6 ? atoi(argv[6]) : 3;

    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = path;
    lp.n_ctx = tokens + 64;
    lp.logits_window = window;
    bt_provider *prov = bt_llama_provider_init(&lp);
    if (!prov) {
        fprintf(stderr, "bench_rewind: %s\n", bt_last_error());
        return 1;
    }
    periodic pd = {period, depth, 0, 0};
    bt_strategy *strat = rewind ? bt_strategy_init(&periodic_iface, &pd) : bt_noop_strategy_init();
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 3;
    sp.max_new_tokens = tokens;
    sp.max_steps = 100LL * tokens;
    bt_sampler *s = bt_sampler_init(prov, strat, &sp);
    bt_stats st;
    double best = 1e30;
    for (int run = 0; run < 3; run++) { /* best of 3: the machine's noise only adds */
        bt_generate(s, "Once upon a time", 16, NULL, NULL, &st);
        double t = st.t_total_ms - st.t_prompt_ms;
        if (t < best) best = t;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char what[64];
    if (rewind) snprintf(what, sizeof what, "undo %d every %d", depth, period);
    else snprintf(what, sizeof what, "no rewinds");
    printf("| %s | %s | %d | %lld | %lld | %lld | %.3f | %lld | %.3f | %.1f |\n", base, what, window,
           (long long)st.n_released, (long long)st.n_rewinds, (long long)st.n_discarded,
           (double)(st.n_evaluated - st.n_prompt) / (double)st.n_released,
           (long long)st.n_prompt_reevaluated, best / (double)st.n_released,
           ru.ru_maxrss / 1024.0);
    bt_sampler_free(s);
    bt_strategy_free(strat);
    bt_provider_free(prov);
    return 0;
}
