/* test_llama.c -- real llama.cpp on the real stories260K model: the greedy continuation,
 * rewinds that cost no prompt evaluation, seeds, and bad inputs to the provider. */
#include "check.h"
#include "internal.h"

#include <unistd.h>

static const char *MODEL = BT_TEST_MODEL;

/* From ../shared/models/README.md: greedy continuation of BOS + "Once upon a time". */
static const char *GREEDY =
    ", there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

static bt_provider *load(int32_t n_ctx, int32_t window) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = n_ctx;
    lp.logits_window = window;
    bt_provider *p = bt_llama_provider_init(&lp);
    if (!p) fprintf(stderr, "cannot load %s: %s\n", MODEL, bt_last_error());
    return p;
}

static bt_sampler_params greedy(int32_t n) {
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 1;
    sp.seed = 7;
    sp.max_new_tokens = n;
    return sp;
}

static void test_greedy_continuation(void) {
    bt_provider *p = load(0, 32);
    CHECK(p != NULL);
    if (!p) return;
    CHECK_EQ_INT(bt_provider_n_vocab(p), 512);
    bt_sampler_params sp = greedy(200);
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    text_sink k = {0};
    bt_stats st;
    CHECK_EQ_INT(bt_generate(s, "Once upon a time", 16, text_sink_collect, &k, &st), BT_OK);
    CHECK(strncmp(k.text, GREEDY, strlen(GREEDY)) == 0);
    if (strncmp(k.text, GREEDY, strlen(GREEDY)) != 0) fprintf(stderr, "got: %s\n", k.text);
    CHECK_EQ_INT(st.n_prompt, 5); /* BOS + 4 tokens: BOS added as the metadata asks */
    bt_sampler_free(s);
    bt_provider_free(p);
}

/* A strategy that holds everything back and, once, rewinds `n` tokens when the text is
 * `at` tokens long. With greedy decoding the text must come out the same. */
typedef struct rewind_once {
    int32_t at, n;
    int     done;
} rewind_once;

static int32_t ro_backtrack(bt_strategy *s, const bt_view *v) {
    rewind_once *r = s->ctx;
    if (!r->done && v->n_tokens == r->at) {
        r->done = 1;
        return r->n;
    }
    return 0;
}
static int32_t ro_keep(bt_strategy *s, const bt_view *v) {
    rewind_once *r = s->ctx;
    return r->done ? v->n_tokens : 0;
}
static void ro_reset(bt_strategy *s) { ((rewind_once *)s->ctx)->done = 0; }
static const bt_strategy_i ro_iface = {.name = "rewind-once", .backtrack = ro_backtrack,
                                       .keep_index = ro_keep, .reset = ro_reset};

static void rewind_case(int32_t window, int32_t at, int32_t n, int64_t extra_evals) {
    bt_provider *p = load(0, window);
    if (!p) return;
    bt_sampler_params sp = greedy(60);
    rewind_once r = {at, n, 0};
    bt_strategy *str = bt_strategy_init(&ro_iface, &r);
    bt_sampler *plain = bt_sampler_init(p, NULL, &sp);
    bt_sampler *rw = bt_sampler_init(p, str, &sp);
    text_sink a = {0}, b = {0};
    bt_stats sa, sb;
    CHECK_EQ_INT(bt_generate(plain, "Once upon a time", 16, text_sink_collect, &a, &sa), BT_OK);
    CHECK_EQ_INT(bt_generate(rw, "Once upon a time", 16, text_sink_collect, &b, &sb), BT_OK);
    CHECK_STR(b.text, a.text);
    CHECK_EQ_INT(sb.n_rewinds, 1);
    CHECK_EQ_INT(sb.n_discarded, n);
    CHECK_EQ_INT(sb.n_steps, sa.n_steps + n);
    /* the second generation on the provider takes the prompt from the cache but its last
     * token (evaluated again for its logits); the prompt is evaluated once; every drawn
     * token is evaluated once, except the last one and the one drawn when the rewind
     * happened; a rewind past the logits window re-decodes one token, and one back to
     * the prompt's end finds the new prompt's logits kept */
    CHECK_EQ_INT(sa.n_prompt_cached, 0);
    CHECK_EQ_INT(sb.n_prompt_cached, sb.n_prompt - 1);
    CHECK_EQ_INT(sb.n_prompt_reevaluated, 0);
    CHECK_EQ_INT(sb.n_evaluated, 1 + (sb.n_steps - 2) + extra_evals);
    CHECK_EQ_INT(sa.n_evaluated, sa.n_prompt + (sa.n_steps - 1));
    bt_sampler_free(plain);
    bt_sampler_free(rw);
    bt_strategy_free(str);
    bt_provider_free(p);
}

static void test_rewind_within_window(void) { rewind_case(32, 20, 8, 0); }
static void test_rewind_past_window(void) { rewind_case(4, 20, 8, 1); }
static void test_rewind_no_window(void) { rewind_case(0, 20, 8, 1); }
static void test_rewind_everything(void) { rewind_case(0, 12, 12, 0); } /* back to the prompt */

static void test_same_seed_same_bytes(void) {
    bt_provider *p = load(0, 32);
    if (!p) return;
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 42;
    sp.max_new_tokens = 120;
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    text_sink a = {0}, b = {0}, c = {0};
    bt_generate(s, "Once upon a time", 16, text_sink_collect, &a, NULL);
    bt_generate(s, "Once upon a time", 16, text_sink_collect, &b, NULL);
    CHECK(a.len > 20);
    CHECK_STR(a.text, b.text);
    bt_sampler_free(s);
    sp.seed = 43;
    s = bt_sampler_init(p, NULL, &sp);
    bt_generate(s, "Once upon a time", 16, text_sink_collect, &c, NULL);
    CHECK(strcmp(a.text, c.text) != 0);
    bt_sampler_free(s);
    bt_provider_free(p);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_load_error(const char *path, int status, const char *words) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = path;
    bt_provider *p = bt_llama_provider_init(&lp);
    CHECK(p == NULL);
    bt_provider_free(p);
    CHECK(strstr(bt_last_error(), words) != NULL);
    if (!strstr(bt_last_error(), words)) fprintf(stderr, "message was: %s\n", bt_last_error());
    (void)status;
}

static void test_bad_models(void) {
    char dir[] = "/tmp/bt_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    expect_load_error("/nonexistent/model.gguf", BT_ERR_IO, "cannot open");
    expect_load_error(dir, BT_ERR_IO, "directory");
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    write_file(path, "", 0);
    expect_load_error(path, BT_ERR_MODEL, "empty");
    snprintf(path, sizeof path, "%s/text.gguf", dir);
    write_file(path, "hello, not a model\n", 19);
    expect_load_error(path, BT_ERR_MODEL, "not a GGUF");
    /* the first 100 KB of the real model: a valid header, missing tensor data */
    FILE *f = fopen(MODEL, "rb");
    static char buf[100000];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/truncated.gguf", dir);
    write_file(path, buf, n);
    expect_load_error(path, BT_ERR_MODEL, "cannot load");
    /* only the header's first 64 bytes */
    write_file(path, buf, 64);
    expect_load_error(path, BT_ERR_MODEL, "cannot load");
    bt_llama_params lp = bt_llama_default_params();
    CHECK(bt_llama_provider_init(&lp) == NULL); /* no path */
    lp.model_path = MODEL;
    lp.n_batch = 0;
    CHECK(bt_llama_provider_init(&lp) == NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_context_limits(void) {
    bt_provider *p = load(64, 32);
    if (!p) return;
    CHECK_EQ_INT(bt_provider_n_ctx(p), 64);
    bt_sampler_params sp = greedy(0); /* until the context is full */
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    text_sink k = {0};
    bt_stats st;
    /* the end of the context is a normal stop, the whole text delivered */
    CHECK_EQ_INT(bt_generate(s, "Once upon a time", 16, text_sink_collect, &k, &st), BT_OK);
    CHECK_EQ_INT(st.stop_reason, BT_STOP_MAX_LENGTH);
    CHECK_EQ_INT(st.n_released, 64 - 5);
    CHECK(k.len > 100);
    /* a prompt longer than the context */
    char longp[2000] = "";
    for (int i = 0; i < 60; i++) strcat(longp, "Once upon a time ");
    CHECK_EQ_INT(bt_generate(s, longp, strlen(longp), text_sink_collect, &k, &st), BT_ERR_CONTEXT_FULL);
    CHECK(strstr(bt_last_error(), "prompt") != NULL);
    /* invalid UTF-8 in the prompt */
    CHECK_EQ_INT(bt_generate(s, "Once \xc3(", 7, text_sink_collect, &k, &st), BT_ERR_UTF8);
    /* stories260K has no chat template */
    char *chat = NULL;
    CHECK_EQ_INT(bt_llama_chat_prompt(p, "hi", &chat), BT_ERR_UNSUPPORTED);
    CHECK(chat == NULL);
    bt_sampler_free(s);
    bt_provider_free(p);
}

int main(void) {
    if (access(MODEL, R_OK) != 0) {
        fprintf(stderr, "model %s missing: run scripts/get-model.sh\n", MODEL);
        return 1;
    }
    bt_log_set(NULL, NULL);
    RUN(test_greedy_continuation);
    RUN(test_rewind_within_window);
    RUN(test_rewind_past_window);
    RUN(test_rewind_no_window);
    RUN(test_rewind_everything);
    RUN(test_same_seed_same_bytes);
    RUN(test_bad_models);
    RUN(test_context_limits);
    TEST_MAIN_END();
}
