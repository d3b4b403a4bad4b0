/*
 * bench_holes.c -- what a hole between busy sequences costs a step, and what the pool's
 * filler tokens (src/providers/llama.c, "Filling holes") give back.
 *
 *   bench_holes MODEL [THREADS] [ROUNDS]
 *
 * One llama.cpp context set up as the server's pool is (8 sequences, a cache per sequence,
 * 2,048 positions each), each sequence holding 64 positions. One step decodes one token
 * for each busy sequence, the way the batcher does, for several sets of busy sequences:
 * side by side, with holes, and with the holes filled by one token each on the idle
 * sequences (removed after the decode, as the batcher does). llama.cpp decodes one pass
 * over the weights per run of consecutive sequence ids, so a hole costs a pass. Rounds
 * alternate the sets; medians of ROUNDS steps each.
 */
#include "backtrack.h"
#include "bench_common.h"
#include "ggml-backend.h"
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N_SEQ = 8, N_CTX = 2048, HELD = 64 };

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level, (void)text, (void)user;
}

typedef struct shape {
    const char *name;
    const char *busy;   /* sequence ids with a real token, as digits */
    const char *filler; /* idle ones given a throwaway token */
} shape;

static const shape SHAPES[] = {
    {"8 side by side (0-7)", "01234567", ""},
    {"7, a hole at 3", "0124567", ""},
    {"7, the hole filled", "0124567", "3"},
    {"3 apart (0, 4, 7)", "047", ""},
    {"3 apart, holes filled", "047", "12356"},
    {"4 side by side (0-3)", "0123", ""},
    {"4 apart (0, 2, 4, 6)", "0246", ""},
    {"4 apart, holes filled", "0246", "135"},
};
enum { N_SHAPES = sizeof SHAPES / sizeof SHAPES[0] };

static llama_pos next_pos[N_SEQ];

/* One step of `sh`: decode, then drop the fillers and the busy tokens again (so every
 * step sees the same cache). Returns its time in ms, or -1. */
static double step(struct llama_context *ctx, struct llama_batch *b, const shape *sh) {
    b->n_tokens = 0;
    for (int id = 0; id < N_SEQ; id++) {
        char c = (char)('0' + id);
        bool busy = strchr(sh->busy, c) != NULL, fill = strchr(sh->filler, c) != NULL;
        if (!busy && !fill) continue;
        int i = b->n_tokens++;
        b->token[i] = 100 + id;
        b->pos[i] = next_pos[id];
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = id;
        b->logits[i] = busy;
    }
    double t0 = now_ms();
    if (llama_decode(ctx, *b) != 0) return -1;
    for (int i = 0; i < b->n_tokens; i++)
        if (b->logits[i]) llama_get_logits_ith(ctx, i);
    double t = now_ms() - t0;
    struct llama_memory_i *mem = llama_get_memory(ctx);
    for (int i = 0; i < b->n_tokens; i++) llama_memory_seq_rm(mem, b->seq_id[i][0], b->pos[i], -1);
    return t;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_holes MODEL [THREADS] [ROUNDS]\n");
        return 2;
    }
    const char *path = argv[1];
    int threads = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    int rounds = argc > 3 ? atoi(argv[3]) : 40;
    if (threads < 1 || rounds < 1) {
        fprintf(stderr, "bench_holes: THREADS and ROUNDS must be positive\n");
        return 2;
    }
    /* the library loads llama.cpp's backends the way the server does */
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = path;
    lp.n_ctx = 64;
    bt_provider *prov = bt_llama_provider_init(&lp);
    if (!prov) {
        fprintf(stderr, "bench_holes: %s\n", bt_last_error());
        return 1;
    }
    bt_provider_free(prov);
    llama_log_set(quiet, NULL);
    struct llama_model *model = llama_model_load_from_file(path, llama_model_default_params());
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = N_SEQ * N_CTX;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_seq_max = N_SEQ;
    cp.kv_unified = false; /* as the pool: a cache per sequence */
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    struct llama_context *ctx = model ? llama_init_from_model(model, cp) : NULL;
    if (!ctx) {
        fprintf(stderr, "bench_holes: cannot load %s\n", path);
        return 1;
    }
    /* ggml's workers kept between decodes, as the pool keeps them (without, ggml starts
     * them for every ubatch, which would add to the cost of each extra pass) */
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = cpu ? ggml_backend_dev_backend_reg(cpu) : NULL;
    struct ggml_threadpool *(*tp_new)(struct ggml_threadpool_params *) =
        reg ? (struct ggml_threadpool *(*)(struct ggml_threadpool_params *))
                  ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new")
            : NULL;
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    tpp.poll = 0;
    struct ggml_threadpool *tp = tp_new && threads > 1 ? tp_new(&tpp) : NULL;
    if (tp) llama_attach_threadpool(ctx, tp, NULL);
    struct llama_batch b = llama_batch_init(512, 0, 1);
    for (int id = 0; id < N_SEQ; id++) { /* each sequence holds HELD positions */
        b.n_tokens = HELD;
        for (int i = 0; i < HELD; i++) {
            b.token[i] = 200 + i;
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = id;
            b.logits[i] = i == HELD - 1;
        }
        if (llama_decode(ctx, b) != 0) {
            fprintf(stderr, "bench_holes: prefill failed\n");
            return 1;
        }
        next_pos[id] = HELD;
    }
    double *t = malloc((size_t)N_SHAPES * (size_t)rounds * sizeof *t);
    if (!t) {
        fprintf(stderr, "bench_holes: out of memory\n");
        return 1;
    }
    for (int s = 0; s < N_SHAPES; s++) step(ctx, &b, &SHAPES[s]); /* warm-up */
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < N_SHAPES; s++)
            if ((t[s * rounds + r] = step(ctx, &b, &SHAPES[s])) < 0) {
                fprintf(stderr, "bench_holes: decode failed\n");
                return 1;
            }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("| busy sequences (%s, %d threads) | tokens decoded | ms per step (median of %d) |\n",
           base, threads, rounds);
    printf("| --- | ---: | ---: |\n");
    for (int s = 0; s < N_SHAPES; s++)
        printf("| %s | %zu | %.2f |\n", SHAPES[s].name,
               strlen(SHAPES[s].busy) + strlen(SHAPES[s].filler), median(t + s * rounds, rounds));
    free(t);
    llama_batch_free(b);
    llama_free(ctx);
    if (tp) {
        void (*tp_free)(struct ggml_threadpool *) = (void (*)(struct ggml_threadpool *))
            ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
        if (tp_free) tp_free(tp);
    }
    llama_model_free(model);
    return 0;
}
