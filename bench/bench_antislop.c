/*
 * bench_antislop.c -- AntiSlop's cost as the phrase list grows: load time (parse the file
 * and compile the automaton) and the per-token cost of its callbacks (backtrack and
 * keep_index: feeding the new text to the automaton, finding matches, the hold-back
 * point) over a real token stream, with 10, 517, 2,500 and 50,046 phrases.
 *
 * The stream: TOKENS tokens that stories260K writes from "Once upon a time" (seed 1).
 * The strategy sees it token by token, as in a generation; its rewinds are counted but
 * not applied, so every list size sees the same text.
 *
 * A second timing isolates the phrase scan itself (feed the new bytes, the hold-back
 * point), without AntiSlop's handling of the matches it finds: the part that must not
 * grow with the list.
 *
 *   bench_antislop MODEL SLOP_DIR [TOKENS] [RUNS]
 */
#include "backtrack.h"
#include "bench_common.h"
#include "strategies/matcher.h"

#include <stdio.h>
#include <string.h>

typedef struct rec {
    bt_token *t;
    int32_t   n, cap;
} rec;

static int record(void *user, bt_token id, const char *text, size_t len) {
    (void)text, (void)len;
    rec *r = user;
    if (id >= 0 && r->n < r->cap) r->t[r->n++] = id;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_antislop MODEL SLOP_DIR [TOKENS] [RUNS]\n");
        return 2;
    }
    int tokens = argc > 3 ? atoi(argv[3]) : 4000, runs = argc > 4 ? atoi(argv[4]) : 7;
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = argv[1];
    lp.n_ctx = tokens + 64;
    bt_provider *prov = bt_llama_provider_init(&lp);
    if (!prov) {
        fprintf(stderr, "bench_antislop: %s\n", bt_last_error());
        return 1;
    }
    /* the token stream */
    rec r = {malloc((size_t)tokens * sizeof(bt_token)), 0, tokens};
    bt_sampler_params sp = bt_sampler_default_params();
    sp.seed = 1;
    sp.max_new_tokens = tokens;
    bt_sampler *smp = bt_sampler_init(prov, NULL, &sp);
    bt_generate(smp, "Once upon a time", 16, record, &r, NULL);
    bt_sampler_free(smp);

    struct { const char *file; int take; } lists[] = {
        {"slop_phrase_prob_adjustments.json", 10},
        {"slop_phrase_prob_adjustments.json", 0},
        {"slop_phrases_2025-04-07.json", 0},
        {"slop_phrase_prob_adjustments_full_list.json", 0},
        {NULL, 50046}, /* synthetic: random lowercase words, as many as the full list */
    };
    printf("| phrases | list file | load + compile ms | AntiSlop ns/token | vs 10 phrases | "
           "scan only ns/token | vs 10 phrases | matches per 1,000 tokens |\n");
    printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    double base_ns = 0, base_scan = 0;
    for (int li = 0; li < 5; li++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", argv[2], lists[li].file ? lists[li].file : "");
        double t0 = now_ms();
        bt_phrase_list *all = NULL;
        if (!lists[li].file) { /* 6 to 12 random letters each: the text walks deep into the
                                  automaton as with real lists, but nothing matches */
            all = bt_phrase_list_new();
            uint64_t x = 12345;
            for (int i = 0; i < lists[li].take; i++) {
                char w[16];
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                int len = 6 + (int)((x >> 33) % 7);
                for (int k = 0; k < len; k++) {
                    x = x * 6364136223846793005ull + 1442695040888963407ull;
                    w[k] = (char)('a' + (x >> 33) % 26);
                }
                bt_phrase_list_add(all, w, (size_t)len, 0.0f);
            }
        } else if (bt_phrase_list_load(path, false, &all) != BT_OK) {
            fprintf(stderr, "bench_antislop: %s\n", bt_last_error());
            return 1;
        }
        bt_phrase_list *l = all;
        if (lists[li].take && lists[li].file) {
            l = bt_phrase_list_new();
            for (int i = 0; i < lists[li].take; i++) {
                const char *p = bt_phrase_list_phrase(all, i);
                bt_phrase_list_add(l, p, strlen(p), bt_phrase_list_adjustment(all, i));
            }
        }
        bt_antislop_params ap = bt_antislop_default_params();
        ap.phrases = l;
        bt_strategy *s = bt_antislop_strategy_init(&ap);
        double load_ms = now_ms() - t0;
        int32_t n_phrases = bt_phrase_list_size(l);
        /* the scan alone, on the same phrases */
        const char **texts = malloc((size_t)n_phrases * sizeof *texts);
        for (int32_t i = 0; i < n_phrases; i++) texts[i] = bt_phrase_list_phrase(l, i);
        bt__automaton *aut = NULL;
        bt__automaton_build(texts, n_phrases, true, &aut);
        bt__scan scan = {0};
        double *scan_ns = malloc((size_t)runs * sizeof *scan_ns);
        volatile int32_t sink = 0;
        for (int run = 0; run < runs; run++) {
            bt_view v = {.tokens = r.t, .max_tokens = r.n, .provider = prov,
                         .n_vocab = bt_provider_n_vocab(prov)};
            bt__scan_begin(&scan, aut, false, r.n, prov);
            double t1 = now_ms();
            for (int32_t i = 1; i <= r.n; i++) {
                v.n_tokens = i;
                bt__match m = bt__scan_sync(&scan, &v, false);
                sink += m.pattern + bt__scan_token_at(&scan, bt__scan_hold_from(&scan));
            }
            scan_ns[run] = (now_ms() - t1) * 1e6 / r.n;
        }
        (void)sink; /* read once: the results fed it, so the loop cannot be optimized away */
        double scan_med = median(scan_ns, runs);
        if (li == 0) base_scan = scan_med;
        bt__scan_release(&scan);
        bt__automaton_free(aut);
        free(texts);
        free(scan_ns);
        if (l != all) bt_phrase_list_free(l);
        bt_phrase_list_free(all);

        double *ns = malloc((size_t)runs * sizeof *ns);
        int64_t matches = 0;
        for (int run = 0; run < runs; run++) {
            bt_view v = {.tokens = r.t, .n_tokens = 0, .max_tokens = r.n, .provider = prov,
                         .n_vocab = bt_provider_n_vocab(prov)};
            s->iface->begin(s, &v);
            double t1 = now_ms();
            for (int32_t i = 1; i <= r.n; i++) {
                v.n_tokens = i;
                if (s->iface->backtrack(s, &v) > 0) matches++;
                int32_t k = s->iface->keep_index(s, &v);
                if (k > v.n_released) v.n_released = k;
            }
            ns[run] = (now_ms() - t1) * 1e6 / r.n;
            s->iface->reset(s);
        }
        double med = median(ns, runs);
        if (li == 0) base_ns = med;
        printf("| %d | %s%s | %.1f | %.0f | %.2f | %.0f | %.2f | %.1f |\n", n_phrases,
               lists[li].file ? lists[li].file : "random words of 6-12 letters (synthetic)",
               lists[li].take && lists[li].file ? " (first 10)" : "", load_ms, med, med / base_ns,
               scan_med, scan_med / base_scan, matches * 1000.0 / runs / r.n);
        free(ns);
        bt_strategy_free(s);
    }
    free(r.t);
    bt_provider_free(prov);
    return 0;
}
