/* nocaps.c -- a new strategy in one small file (README, "Writing a strategy"): undo any
 * token that starts a word with a capital letter, banning it at that position only.
 *   nocaps MODEL */
#include <backtrack.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct nocaps {
    int32_t  banned_at[64]; /* a few bans per position is plenty for a demo */
    bt_token banned[64];
    int      n;
} nocaps;

/* Ban, at this position, every token undone here before. */
static void nc_logits(bt_strategy *s, const bt_view *v, float *logits) {
    nocaps *n = s->ctx;
    for (int i = 0; i < n->n; i++)
        if (n->banned_at[i] == v->n_tokens) logits[n->banned[i]] = -INFINITY;
}

/* Undo the token just drawn if it starts with a capital. */
static int32_t nc_backtrack(bt_strategy *s, const bt_view *v) {
    nocaps *n = s->ctx;
    const char *t;
    size_t len;
    bt_token last = v->tokens[v->n_tokens - 1];
    bt_provider_token_text(v->provider, last, &t, &len);
    size_t i = (len && t[0] == ' ') ? 1 : 0;
    if (i < len && t[i] >= 'A' && t[i] <= 'Z' && n->n < 64) {
        n->banned_at[n->n] = v->n_tokens - 1;
        n->banned[n->n++] = last;
        return 1;
    }
    return 0;
}

/* Hold back the last token: it may still be undone. */
static int32_t nc_keep(bt_strategy *s, const bt_view *v) {
    (void)s;
    return v->n_tokens - 1;
}

static void nc_reset(bt_strategy *s) { ((nocaps *)s->ctx)->n = 0; }

static const bt_strategy_i nocaps_iface = {
    .name = "nocaps", .on_logits = nc_logits, .backtrack = nc_backtrack,
    .keep_index = nc_keep, .reset = nc_reset,
};

static int print(void *user, bt_token id, const char *text, size_t len) {
    (void)user, (void)id;
    fwrite(text, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = argc > 1 ? argv[1] : "models/stories260K.gguf";
    bt_provider *model = bt_llama_provider_init(&lp);
    if (!model) {
        fprintf(stderr, "%s\n", bt_last_error());
        return 1;
    }
    nocaps state = {.n = 0};
    bt_strategy *st = bt_strategy_init(&nocaps_iface, &state);
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 1;
    sp.max_new_tokens = 60;
    bt_sampler *s = bt_sampler_init(model, st, &sp);
    bt_stats stats;
    int rc = bt_generate(s, "Once upon a time", 16, print, NULL, &stats);
    printf("\n");
    fprintf(stderr, "rewinds: %lld\n", (long long)stats.n_rewinds);
    bt_sampler_free(s);
    bt_strategy_free(st);
    bt_provider_free(model);
    return rc == BT_OK ? 0 : 1;
}
