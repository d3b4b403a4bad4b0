/* test_pool.c -- several generations at once on one llama.cpp context (batched decoding):
 * each gives the text it gives alone, rewinds included, and the prompt is never evaluated
 * twice. */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *MODEL = BT_TEST_MODEL;
enum { N = 4, TOKENS = 120 };

/* rewinds 3 tokens each time the text first reaches a multiple of 10 tokens */
typedef struct every { int32_t next; } every;
static int32_t ev_bt(bt_strategy *s, const bt_view *v) {
    every *e = s->ctx;
    if (v->n_tokens < e->next) return 0;
    e->next += 10;
    return 3;
}
static int32_t ev_keep(bt_strategy *s, const bt_view *v) { (void)s; return v->n_tokens - 4; }
static int ev_begin(bt_strategy *s, const bt_view *v) {
    (void)v;
    ((every *)s->ctx)->next = 10;
    return BT_OK;
}
static const bt_strategy_i every_iface = {.name = "every", .begin = ev_begin, .backtrack = ev_bt,
                                          .keep_index = ev_keep};

typedef struct job {
    bt_provider *p;
    const char  *prompt;
    uint64_t     seed;
    bool         rewind;
    int          delay_ms; /* start this much later than the others */
    text_sink    out;
    bt_stats     st;
    int          rc;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    if (j->delay_ms) nanosleep(&(struct timespec){0, j->delay_ms * 1000000L}, NULL);
    every e = {0};
    bt_strategy *s = j->rewind ? bt_strategy_init(&every_iface, &e) : NULL;
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = j->seed;
    sp.max_new_tokens = TOKENS;
    /* Greedy: a rewind then regenerates the same tokens, and the text does not depend on
     * llama.cpp's numbers being identical in a batch of several sequences and alone, which
     * they are not (logits differ by up to 0.01 on stories260K; sampled 120-token texts
     * differed in 19 of 100 runs). Distinct prompts keep the sequences apart. */
    sp.top_k = 1;
    bt_sampler *smp = bt_sampler_init(j->p, s, &sp);
    j->rc = bt_generate(smp, j->prompt, strlen(j->prompt), text_sink_collect, &j->out, &j->st);
    bt_sampler_free(smp);
    bt_strategy_free(s);
    return NULL;
}

/* N generations at once on a pool give what each gives alone. With logits_window 0 every
 * rewind re-decodes through the batcher, and the logits a sequence samples from must be
 * its own copy: llama.cpp's output buffer is overwritten by the next batch while it
 * samples (run under ASan too). */
static const char *const PROMPTS[N] = {"Once upon a time", "The cat", "Tom and Sue went",
                                        "One day, a big dog"};

static int64_t g_evaluated[2][N]; /* per window (32, 0) and job: positions evaluated */

static int64_t gen_evaluated(const bt_stats *st) {
    return st->n_evaluated - (st->n_prompt - st->n_prompt_cached);
}

/* n_batch 4 splits every prompt into chunks, decoded (with staggered starts) in the same
 * llama_decode as other members' single tokens: requests end in earlier chunks (kept by
 * the batcher) and in the last one (copied by the member itself). threads 2: ggml's own
 * workers (the pool's threadpool), which stories260K alone never gets. */
static void pool_matches_isolation_with(int32_t window, int32_t n_batch, int32_t threads) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 256;
    lp.logits_window = window;
    lp.n_batch = n_batch;
    lp.n_threads = threads;
    /* alone: one provider, one after the other */
    bt_provider *single = bt_llama_provider_init(&lp);
    CHECK(single != NULL);
    if (!single) return;
    job alone[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (job){.p = single, .prompt = PROMPTS[i], .seed = 100 + (uint64_t)i, .rewind = i > 0};
        run_job(&alone[i]);
        CHECK_EQ_INT(alone[i].rc, BT_OK);
    }
    bt_provider_free(single);

    /* together: a pool of N, N threads at once */
    bt_llama_pool *pool = bt_llama_pool_init(&lp, N);
    CHECK(pool != NULL);
    if (!pool) return;
    CHECK_EQ_INT(bt_llama_pool_size(pool), N);
    CHECK_EQ_INT(bt_provider_n_ctx(bt_llama_pool_provider(pool, 0)), 256);
    for (int round = 0; round < 2; round++) { /* twice: members are reused */
        job together[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            together[i] = (job){.p = bt_llama_pool_provider(pool, i), .prompt = PROMPTS[i],
                                .seed = 100 + (uint64_t)i, .rewind = i > 0,
                                .delay_ms = n_batch < 8 ? 3 * i : 0};
            pthread_create(&th[i], NULL, run_job, &together[i]);
        }
        for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < N; i++) {
            CHECK_EQ_INT(together[i].rc, BT_OK);
            CHECK_STR(together[i].out.text, alone[i].out.text);
            CHECK_EQ_INT(together[i].st.n_prompt_reevaluated, 0);
            CHECK_EQ_INT(together[i].st.n_released, TOKENS);
            CHECK_EQ_INT(together[i].st.n_rewinds, alone[i].st.n_rewinds);
            CHECK(i == 0 || together[i].st.n_rewinds >= 10);
            /* what the generation evaluated after its prompt (the prompt itself depends
             * on what each provider had cached) */
            CHECK_EQ_INT(gen_evaluated(&together[i].st), gen_evaluated(&alone[i].st));
            g_evaluated[window == 0][i] = gen_evaluated(&together[i].st);
        }
    }
    CHECK(bt_llama_pool_provider(pool, N) == NULL);
    char *chat = NULL;
    CHECK_EQ_INT(bt_llama_chat_prompt(bt_llama_pool_provider(pool, 0), "hi", &chat), BT_ERR_UNSUPPORTED);
    bt_llama_pool_free(pool);
    CHECK(bt_llama_pool_init(&lp, 0) == NULL);
}

static void pool_matches_isolation(int32_t window) { pool_matches_isolation_with(window, 512, 0); }

/* The contract of eval: the logits stay valid until the same provider's next eval,
 * rewind or reset, whatever the other members of the pool do meanwhile. Member 0 keeps
 * its logits while member 1 decodes 20 steps through the batcher. */
typedef struct stepper {
    bt_provider *p;
    int          steps;
} stepper;
static void *step_member(void *arg) {
    stepper *st = arg;
    bt_token seq[32];
    for (int i = 0; i < 32; i++) seq[i] = 10 + i;
    for (int n = 1; n <= st->steps; n++) {
        const float *l;
        if (st->p->iface->eval(st->p->ctx, seq, n, &l, NULL) != BT_OK) return NULL;
    }
    return NULL;
}
static void logits_stay_owned(int32_t window) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 64;
    lp.logits_window = window;
    bt_llama_pool *pool = bt_llama_pool_init(&lp, 2);
    CHECK(pool != NULL);
    if (!pool) return;
    bt_provider *a = bt_llama_pool_provider(pool, 0);
    int32_t nv = bt_provider_n_vocab(a);
    const bt_token seq[5] = {1, 400, 401, 402, 403};
    const float *la = NULL;
    /* the prompt's logits are kept apart anyway: test those of the tokens after it */
    CHECK_EQ_INT(a->iface->eval(a->ctx, seq, 2, &la, NULL), BT_OK);
    CHECK_EQ_INT(a->iface->eval(a->ctx, seq, 4, &la, NULL), BT_OK);
    float *copy = malloc((size_t)nv * sizeof *copy);
    memcpy(copy, la, (size_t)nv * sizeof *copy);
    stepper other = {bt_llama_pool_provider(pool, 1), 20};
    pthread_t th;
    pthread_create(&th, NULL, step_member, &other);
    pthread_join(th, NULL);
    CHECK(memcmp(copy, la, (size_t)nv * sizeof *copy) == 0);
    /* after a rewind, a re-decoded position's logits are the member's own too */
    CHECK_EQ_INT(a->iface->eval(a->ctx, seq, 5, &la, NULL), BT_OK);
    CHECK_EQ_INT(a->iface->rewind(a->ctx, 2), BT_OK);
    CHECK_EQ_INT(a->iface->eval(a->ctx, seq, 3, &la, NULL), BT_OK);
    memcpy(copy, la, (size_t)nv * sizeof *copy);
    other.p->iface->reset(other.p->ctx);
    pthread_create(&th, NULL, step_member, &other);
    pthread_join(th, NULL);
    CHECK(memcmp(copy, la, (size_t)nv * sizeof *copy) == 0);
    a->iface->reset(a->ctx);
    other.p->iface->reset(other.p->ctx);
    free(copy);
    bt_llama_pool_free(pool);
}

static void test_logits_stay_owned(void) {
    logits_stay_owned(32);
    logits_stay_owned(0);
}

static void test_pool_matches_isolation(void) { pool_matches_isolation(32); }
static void test_pool_window_0(void) {
    pool_matches_isolation(0);
    /* without the window each rewind re-decoded exactly one token more */
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(g_evaluated[1][i], g_evaluated[0][i] + (i > 0 ? TOKENS / 10 : 0));
}

static void test_pool_chunks_and_threads(void) {
    pool_matches_isolation_with(32, 4, 1);
    pool_matches_isolation_with(0, 4, 1);
    pool_matches_isolation_with(32, 4, 2);
    pool_matches_isolation_with(0, 512, 2);
}

/* ---- Holes between busy members ---- */

/* Run jobs a and b at once, each on a thread of its own. */
static void run_two(job *a, job *b) {
    pthread_t th[2];
    pthread_create(&th[0], NULL, run_job, a);
    pthread_create(&th[1], NULL, run_job, b);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
}

/* A pool of N members of n_ctx positions each on the test model (NULL: CHECK failed). */
static bt_llama_pool *pool_of(int32_t n_ctx) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = n_ctx;
    bt_llama_pool *pool = bt_llama_pool_init(&lp, N);
    CHECK(pool != NULL);
    return pool;
}

/* A long prompt: the same sentence `reps` times, in buf (cap bytes). */
static const char *long_prompt(char *buf, size_t cap, int reps) {
    buf[0] = '\0';
    for (int i = 0; i < reps && strlen(buf) + 40 < cap; i++)
        strcat(buf, "Once upon a time there was a cat. ");
    return buf;
}

/* llama.cpp decodes members with non-consecutive ids in separate passes over the weights;
 * the batcher closes such a hole with a throwaway token on each idle member in it, and
 * removes it after the decode. Members 0 and 3 generate at once while member 1 holds a
 * finished generation's cache and member 2 has never been used: both get fillers. Then
 * member 1 continues its conversation on its cache, and member 2 generates: each gives
 * what a fresh provider gives, so no filler was left behind in either cache. */
static void test_pool_fills_holes(void) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 256;
    bt_provider *single = bt_llama_provider_init(&lp);
    bt_llama_pool *pool = bt_llama_pool_init(&lp, N);
    CHECK(single != NULL && pool != NULL);
    if (!single || !pool) {
        bt_provider_free(single);
        bt_llama_pool_free(pool);
        return;
    }
    static job alone[5], pooled[5];
    static char cont[65536 + 64];
    /* 0, 3: at once; 1: before them, then 4 (its continuation) after; 2: last */
    const char *prompts[4] = {PROMPTS[0], PROMPTS[1], PROMPTS[2], PROMPTS[3]};
    for (int i = 0; i < 4; i++) {
        alone[i] = (job){.p = single, .prompt = prompts[i], .seed = 200 + (uint64_t)i, .rewind = i == 3};
        bt_provider_reset(single);
        run_job(&alone[i]);
        CHECK_EQ_INT(alone[i].rc, BT_OK);
    }
    snprintf(cont, sizeof cont, "%s%s Then", PROMPTS[1], alone[1].out.text);
    alone[4] = (job){.p = single, .prompt = cont, .seed = 204};
    bt_provider_reset(single);
    run_job(&alone[4]);
    CHECK_EQ_INT(alone[4].rc, BT_OK);
    bt_provider_free(single);

    pooled[1] = (job){.p = bt_llama_pool_provider(pool, 1), .prompt = prompts[1], .seed = 201};
    run_job(&pooled[1]);
    CHECK_EQ_INT(bt__llama_pool_filled(pool, NULL), 0); /* one member alone: no hole */
    for (int i = 0; i < 4; i += 3)
        pooled[i] = (job){.p = bt_llama_pool_provider(pool, i), .prompt = prompts[i],
                          .seed = 200 + (uint64_t)i, .rewind = i == 3};
    run_two(&pooled[0], &pooled[3]);
    /* the steps that had both (how many depends on the threads' timing) */
    CHECK(bt__llama_pool_filled(pool, NULL) > 0);
    pooled[4] = (job){.p = bt_llama_pool_provider(pool, 1), .prompt = cont, .seed = 204};
    run_job(&pooled[4]);
    pooled[2] = (job){.p = bt_llama_pool_provider(pool, 2), .prompt = prompts[2], .seed = 202};
    run_job(&pooled[2]);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(pooled[i].rc, BT_OK);
        CHECK_STR(pooled[i].out.text, alone[i].out.text);
        CHECK_EQ_INT(pooled[i].st.n_prompt_reevaluated, 0);
    }
    /* the continuation ran on member 1's cache: at least its first prompt was kept */
    CHECK(pooled[4].st.n_prompt_cached >= pooled[1].st.n_prompt);
    CHECK_EQ_INT(pooled[2].st.n_prompt_cached, 0);
    bt_llama_pool_free(pool);
}

/* An idle member whose cache is longer than the busy ones' is not a filler: llama.cpp
 * would stretch every sequence's attention in the step to its length (rounded to 256
 * cells). Member 1 keeps a conversation of about 370 positions; members 0 and 3 generate
 * about 125 each around it. */
static void test_pool_skips_long_idle(void) {
    bt_llama_pool *pool = pool_of(512);
    if (!pool) return;
    static char longp[4096];
    static job j[4];
    j[1] = (job){.p = bt_llama_pool_provider(pool, 1), .prompt = long_prompt(longp, sizeof longp, 25),
                 .seed = 1};
    run_job(&j[1]);
    CHECK_EQ_INT(j[1].rc, BT_OK);
    CHECK(j[1].st.n_prompt + j[1].st.n_released > 256); /* its cache spans 512 cells */
    for (int i = 0; i < 4; i += 3)
        j[i] = (job){.p = bt_llama_pool_provider(pool, i), .prompt = PROMPTS[i], .seed = 2};
    run_two(&j[0], &j[3]);
    CHECK_EQ_INT(j[0].rc, BT_OK);
    CHECK_EQ_INT(j[3].rc, BT_OK);
    int64_t skipped = 0;
    CHECK_EQ_INT(bt__llama_pool_filled(pool, &skipped), 0);
    CHECK(skipped > 0); /* members 0 and 3 did decode together, around the hole */
    bt_llama_pool_free(pool);
}

/* Nor is a hole between runs of busy members whose caches span different numbers of
 * cells: one ubatch attends over the widest cache in it, so merging would stretch the
 * shorter run. Member 0 generates after a prompt of more than 256 tokens (512 cells),
 * member 2 after a short one (256); member 1, never used, lies between them. */
static void test_pool_skips_unequal_runs(void) {
    bt_llama_pool *pool = pool_of(512);
    if (!pool) return;
    static char longp[4096];
    static job j[3];
    j[0] = (job){.p = bt_llama_pool_provider(pool, 0), .prompt = long_prompt(longp, sizeof longp, 30),
                 .seed = 3};
    j[2] = (job){.p = bt_llama_pool_provider(pool, 2), .prompt = PROMPTS[2], .seed = 3};
    run_two(&j[0], &j[2]);
    CHECK_EQ_INT(j[0].rc, BT_OK);
    CHECK_EQ_INT(j[2].rc, BT_OK);
    CHECK(j[0].st.n_prompt > 256);
    int64_t skipped = 0;
    CHECK_EQ_INT(bt__llama_pool_filled(pool, &skipped), 0);
    CHECK(skipped > 0); /* they did decode together, around the hole */
    bt_llama_pool_free(pool);
}

/* ---- A forked child (Python's multiprocessing forks by default on Linux) ----
 * The threads a provider made (ggml's workers kept between decodes, a pool's batching
 * thread) stay in the parent. A single provider goes on in the child (ggml starts
 * workers per decode there); a pool says it cannot, rather than waiting for a batcher
 * that is not there; freeing either in the child returns. The child has 10 s. */
static int child_status(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) fprintf(stderr, "  child killed by signal %d\n", WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static void test_fork_child(void) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 64;
    lp.n_threads = 2;
    bt_provider *p = bt_llama_provider_init(&lp);
    bt_llama_pool *pool = bt_llama_pool_init(&lp, 2);
    CHECK(p != NULL && pool != NULL);
    if (!p || !pool) return;
    const bt_token seq[4] = {1, 400, 401, 402};
    const float *l = NULL;
    bt_provider *m = bt_llama_pool_provider(pool, 0);
    CHECK_EQ_INT(p->iface->eval(p->ctx, seq, 2, &l, NULL), BT_OK);
    CHECK_EQ_INT(m->iface->eval(m->ctx, seq, 2, &l, NULL), BT_OK);
    for (int what = 0; what < 2; what++) { /* 0: use, then free; 1: free at once */
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            int code = 0;
            if (what == 0) {
                if (p->iface->eval(p->ctx, seq, 4, &l, NULL) != BT_OK) code = 1;
                if (m->iface->eval(m->ctx, seq, 4, &l, NULL) != BT_ERR_UNSUPPORTED) code = 2;
            }
            bt_provider_free(p);
            bt_llama_pool_free(pool);
            _exit(code);
        }
        CHECK_EQ_INT(child_status(pid), 0);
    }
    /* the parent's are intact */
    CHECK_EQ_INT(p->iface->eval(p->ctx, seq, 4, &l, NULL), BT_OK);
    CHECK_EQ_INT(m->iface->eval(m->ctx, seq, 4, &l, NULL), BT_OK);
    m->iface->reset(m->ctx);
    bt_provider_free(p);
    bt_llama_pool_free(pool);
}

int main(void) {
    if (access(MODEL, R_OK) != 0) {
        fprintf(stderr, "model %s missing: run scripts/get-model.sh\n", MODEL);
        return 1;
    }
    RUN(test_pool_matches_isolation);
    RUN(test_pool_window_0);
    RUN(test_logits_stay_owned);
    RUN(test_pool_chunks_and_threads);
    RUN(test_pool_fills_holes);
    RUN(test_pool_skips_long_idle);
    RUN(test_pool_skips_unequal_runs);
    RUN(test_fork_child);
    TEST_MAIN_END();
}
