/* minimal.c -- the smallest program on libbacktrack: stream a story (README, "The library").
 *   minimal MODEL */
#include <backtrack.h>
#include <stdio.h>
#include <string.h>

static int print(void *user, bt_token id, const char *text, size_t len) {
    (void)user, (void)id;
    fwrite(text, 1, len, stdout);
    return 0; /* non-zero stops the generation */
}

int main(int argc, char **argv) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = argc > 1 ? argv[1] : "models/stories260K.gguf";
    bt_provider *model = bt_llama_provider_init(&lp);
    if (!model) {
        fprintf(stderr, "%s\n", bt_last_error());
        return 1;
    }
    bt_strategy *strategy = bt_noop_strategy_init();
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 42;
    bt_sampler *s = bt_sampler_init(model, strategy, &sp);
    bt_stats st;
    const char *prompt = "Once upon a time";
    int rc = bt_generate(s, prompt, strlen(prompt), print, NULL, &st);
    if (rc != BT_OK) fprintf(stderr, "%s\n", bt_last_error());
    printf("\n");
    bt_sampler_free(s);
    bt_strategy_free(strategy);
    bt_provider_free(model);
    return rc == BT_OK ? 0 : 1;
}
