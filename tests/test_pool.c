/* test_pool.c -- several generations at once on one llama.cpp context (batched decoding):
 * each gives the text it gives alone, rewinds included, and the prompt is never evaluated
 * twice. */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <unistd.h>

static const char *MODEL = BT_TEST_MODEL;
enum { N = 4, TOKENS = 120 };

/* rewinds 5 tokens once, at 30 */
typedef struct once { int done; } once;
static int32_t on_bt(bt_strategy *s, const bt_view *v) {
    once *o = s->ctx;
    if (!o->done && v->n_tokens == 30) {
        o->done = 1;
        return 5;
    }
    return 0;
}
static int32_t on_keep(bt_strategy *s, const bt_view *v) { return ((once *)s->ctx)->done ? v->n_tokens : 0; }
static void on_reset(bt_strategy *s) { ((once *)s->ctx)->done = 0; }
static const bt_strategy_i once_iface = {.name = "once", .backtrack = on_bt, .keep_index = on_keep,
                                         .reset = on_reset};

typedef struct job {
    bt_provider *p;
    uint64_t     seed;
    bool         rewind;
    text_sink    out;
    bt_stats     st;
    int          rc;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    once o = {0};
    bt_strategy *s = j->rewind ? bt_strategy_init(&once_iface, &o) : NULL;
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = j->seed;
    sp.max_new_tokens = TOKENS;
    bt_sampler *smp = bt_sampler_init(j->p, s, &sp);
    j->rc = bt_generate(smp, "Once upon a time", 16, text_sink_collect, &j->out, &j->st);
    bt_sampler_free(smp);
    bt_strategy_free(s);
    return NULL;
}

static void test_pool_matches_isolation(void) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 256;
    /* alone: one provider, one after the other */
    bt_provider *single = bt_llama_provider_init(&lp);
    CHECK(single != NULL);
    if (!single) return;
    job alone[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (job){.p = single, .seed = 100 + (uint64_t)i, .rewind = i % 2};
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
            together[i] = (job){.p = bt_llama_pool_provider(pool, i), .seed = 100 + (uint64_t)i,
                                .rewind = i % 2};
            pthread_create(&th[i], NULL, run_job, &together[i]);
        }
        for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < N; i++) {
            CHECK_EQ_INT(together[i].rc, BT_OK);
            CHECK_STR(together[i].out.text, alone[i].out.text);
            CHECK_EQ_INT(together[i].st.n_prompt_reevaluated, 0);
            CHECK_EQ_INT(together[i].st.n_released, TOKENS);
            CHECK_EQ_INT(together[i].st.n_rewinds, i % 2);
        }
    }
    CHECK(bt_llama_pool_provider(pool, N) == NULL);
    char *chat = NULL;
    CHECK_EQ_INT(bt_llama_chat_prompt(bt_llama_pool_provider(pool, 0), "hi", &chat), BT_ERR_UNSUPPORTED);
    bt_llama_pool_free(pool);
    CHECK(bt_llama_pool_init(&lp, 0) == NULL);
}

int main(void) {
    if (access(MODEL, R_OK) != 0) {
        fprintf(stderr, "model %s missing: run scripts/get-model.sh\n", MODEL);
        return 1;
    }
    RUN(test_pool_matches_isolation);
    TEST_MAIN_END();
}
