/* fuzz_loop.c -- the generation loop on the scripted provider with hostile logits (NaN,
 * +-inf, huge, denormal) and random strategy chains. Invariants: generation ends within
 * the step cap; released tokens are never changed by a rewind; with AntiSlop alone and
 * nothing let through, the released text never contains a banned phrase. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const VOCAB[] = {"", "a", "b", "c", "d", "e", " ", "ab", "ba", "cd", "x",
                                    "\xc3", "\xa9", "Wait", ",", "\n"};
enum { NV = 16 };
static const char *const BANNED[] = {"ab", "ba", "cde"};

typedef struct fuzz_model {
    const uint8_t *d;
    size_t         n;
} fuzz_model;

static float to_logit(uint8_t b) {
    switch (b) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return FLT_MAX;
    case 4: return -FLT_MAX;
    case 5: return 1e-40f;
    default: return ((float)b - 128.0f) / 8.0f;
    }
}

static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    fuzz_model *m = user;
    uint32_t h = 2166136261u;
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)seq[i]) * 16777619u;
    for (int32_t i = 0; i < nv; i++) l[i] = m->n ? to_logit(m->d[(h + (uint32_t)i * 7u) % m->n]) : 0.0f;
}

/* ---- the invariant checker: a strategy placed first in the chain ---- */
typedef struct checker {
    bt_token released[4096];
    int32_t  n_released;
} checker;
static checker CK;

static void check_view(const bt_view *v) {
    if (v->n_released != CK.n_released || v->n_tokens < v->n_released) abort();
    for (int32_t i = 0; i < v->n_released; i++)
        if (v->tokens[i] != CK.released[i]) abort(); /* a released token changed */
}
static void ck_logits(bt_strategy *s, const bt_view *v, float *l) {
    (void)s, (void)l;
    check_view(v);
}
static void ck_next(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    (void)s, (void)c;
    check_view(v);
}
static const bt_strategy_i checker_iface = {.name = "checker", .on_logits = ck_logits,
                                            .on_next_token = ck_next};

typedef struct text_sink {
    char   text[65536];
    size_t len;
} text_sink;
static text_sink SINK;

static int on_release(void *user, bt_token id, const char *text, size_t len) {
    (void)user;
    if (id >= 0 && CK.n_released < 4096) CK.released[CK.n_released++] = id;
    if (SINK.len + len < sizeof SINK.text) {
        memcpy(SINK.text + SINK.len, text, len);
        SINK.len += len;
        SINK.text[SINK.len] = '\0';
    }
    return 0;
}

static void quiet(void *u, const char *line) { (void)u, (void)line; }

static bool is_word(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

/* Does hay contain needle (ASCII case-insensitive), as a whole word when `whole`? */
static bool contains_ci(const char *hay, const char *needle, bool whole) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && ((p[i] | 32) == (needle[i] | 32))) i++;
        if (i < n) continue;
        if (whole && p > hay && is_word((unsigned char)p[-1]) && is_word((unsigned char)p[0])) continue;
        if (whole && is_word((unsigned char)p[n]) && is_word((unsigned char)p[n - 1])) continue;
        return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    fuzz_model m = {data + 8, size - 8};
    bt_scripted_params sp = bt_scripted_default_params();
    sp.n_vocab = NV;
    sp.tokens = VOCAB;
    sp.eos = 0;
    sp.n_ctx = 256;
    sp.logits = logits;
    sp.user = &m;
    bt_provider *p = bt_scripted_provider_init(&sp);

    /* a chain: the checker, then up to 3 strategies picked by data[0..2] */
    bt_strategy *list[4];
    int n = 0, n_antislop = 0, n_other = 0;
    list[n++] = bt_strategy_init(&checker_iface, NULL);
    bt_strategy *as = NULL;
    for (int k = 0; k < 3; k++) {
        bt_strategy *s = NULL;
        switch (data[k] % 8) {
        case 0: break;
        case 1: {
            bt_phrase_list *l = bt_phrase_list_new();
            for (int i = 0; i < 3; i++) bt_phrase_list_add(l, BANNED[i], strlen(BANNED[i]), 0.0f);
            bt_antislop_params ap = bt_antislop_default_params();
            ap.phrases = l;
            ap.keep_index_buffer = data[3] % 4;
            ap.whole_word = data[3] & 4;
            ap.max_retries_per_position = 1 + data[3] % 5;
            ap.max_retries_total = 1 + data[4] % 64;
            s = bt_antislop_strategy_init(&ap);
            bt_phrase_list_free(l);
            if (!as) as = s;
            n_antislop++;
            break;
        }
        case 2: {
            const char *find[] = {"ab", "\n"};
            bt_replace_params rp = bt_replace_default_params();
            rp.find = find;
            rp.n_find = 2;
            rp.replace = "Wait,";
            rp.max_replacements = data[4] % 4 - 1;
            s = bt_replace_strategy_init(&rp);
            n_other++;
            break;
        }
        case 3: s = bt_creative_writing_strategy_init(NULL), n_other++; break;
        case 4: s = bt_adaptive_temperature_strategy_init(NULL), n_other++; break;
        case 5: {
            bt_debug_params dp = {quiet, NULL};
            s = bt_debug_strategy_init(&dp);
            break;
        }
        case 6: {
            const char *re[] = {"c[a-e]{1,3}d"};
            bt_antislop_params ap = bt_antislop_default_params();
            ap.regexes = re;
            ap.n_regexes = 1;
            s = bt_antislop_strategy_init(&ap);
            n_other++;
            break;
        }
        default: s = bt_noop_strategy_init(); break;
        }
        if (s) list[n++] = s;
    }
    bt_strategy *chain = bt_chain_strategy_init(list, n);

    bt_sampler_params P = bt_sampler_default_params();
    P.top_k = data[5] % 20;
    P.top_p = 0.05f + (float)(data[6] % 20) / 20.0f;
    if (P.top_p > 1.0f) P.top_p = 1.0f;
    P.min_p = (float)(data[7] % 10) / 10.0f;
    P.temperature = (float)(data[5] / 20) / 4.0f;
    P.seed = data[6];
    P.max_new_tokens = 1 + data[7] % 100;
    P.add_special = false;
    bt_sampler *smp = bt_sampler_init(p, chain, &P);
    memset(&CK, 0, sizeof CK);
    SINK.len = 0;
    SINK.text[0] = '\0';
    const bt_token prompt[] = {1, 2};
    bt_stats st;
    int rc = bt_generate_tokens(smp, prompt, 2, on_release, NULL, &st);
    if (rc != BT_OK && rc != BT_ERR_PROVIDER) abort(); /* PROVIDER: all logits NaN/-inf */
    if (st.n_steps > 8 * (int64_t)P.max_new_tokens + 64) abort();
    if (rc == BT_OK && st.stop_reason != BT_STOP_CALLER && st.n_released != CK.n_released) abort();
    if (as && n_antislop == 1 && n_other == 0 && rc == BT_OK) {
        bt_antislop_stats a;
        bt_antislop_get_stats(as, &a);
        if (a.let_through == 0)
            for (int i = 0; i < 3; i++)
                if (contains_ci(SINK.text, BANNED[i], data[3] & 4)) abort();
    }
    bt_sampler_free(smp);
    bt_strategy_free(chain);
    bt_provider_free(p);
    return 0;
}
