/*
 * bench_reuse.c -- prompt reuse through the C API: three bt_generate turns of a growing
 * conversation on one sampler (each turn: the last prompt, its released text and a new
 * message), with cache_prompt on and off. Prints one Markdown row per turn: prompt
 * tokens, tokens taken from the cache, positions evaluated, prompt time.
 *
 *   bench_reuse MODEL.gguf HISTORY_WORDS NEW_TOKENS THREADS
 */
#include "backtrack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
    char  *s;
    size_t len, cap;
} text;

static void add(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        if (!t->s) exit(1);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static int collect(void *user, bt_token id, const char *s, size_t n) {
    (void)id;
    add(user, s, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_reuse MODEL.gguf HISTORY_WORDS NEW_TOKENS THREADS\n");
        return 2;
    }
    static const char *const WORDS[] = {"the", "quiet", "harbour", "town", "woke", "slowly",
                                        "as", "boats", "returned", "with", "silver", "fish"};
    int words = atoi(argv[2]), new_tokens = atoi(argv[3]);
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = argv[1];
    lp.n_ctx = 4096;
    lp.n_threads = atoi(argv[4]);
    bt_provider *p = bt_llama_provider_init(&lp);
    if (!p) {
        fprintf(stderr, "bench_reuse: %s\n", bt_last_error());
        return 1;
    }
    for (int cache = 1; cache >= 0; cache--) {
        bt_sampler_params sp = bt_sampler_default_params();
        sp.seed = 1;
        sp.max_new_tokens = new_tokens;
        sp.cache_prompt = cache;
        sp.add_special = false;
        bt_sampler *s = bt_sampler_init(p, NULL, &sp);
        bt_provider_reset(p);
        text conv = {0};
        for (int i = 0; i < words; i++) {
            add(&conv, " ", 1);
            add(&conv, WORDS[(i * 7) % 12], strlen(WORDS[(i * 7) % 12]));
        }
        for (int turn = 1; turn <= 3; turn++) {
            bt_stats st;
            if (bt_generate(s, conv.s, conv.len, collect, &conv, &st) != BT_OK) {
                fprintf(stderr, "bench_reuse: %s\n", bt_last_error());
                return 1;
            }
            printf("| %s | %d | %d | %d | %lld | %.1f |\n", cache ? "on" : "off", turn, st.n_prompt,
                   st.n_prompt_cached, (long long)(st.n_prompt - st.n_prompt_cached), st.t_prompt_ms);
            add(&conv, "\nAnd then?\n", 11); /* the next message */
        }
        free(conv.s);
        bt_sampler_free(s);
    }
    bt_provider_free(p);
    return 0;
}
