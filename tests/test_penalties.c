/* test_penalties.c -- repetition penalties and logit bias in the sampler: hand-computed
 * values on the scripted provider, llama.cpp's own penalty and logit-bias samplers on the
 * same logits and token history (every parameter combination that changes the arithmetic),
 * the patched filter against a patched copy, rewinds restoring the distribution exactly,
 * the provider's logits never written, bad values refused, and greedy text on the real
 * model against a plain llama.h loop with llama.cpp's chain (llama-server's semantics:
 * the prompt's tokens fill the penalty window). */
#include "check.h"
#include "internal.h"
#include "llama.h"

#include <float.h>

/* ==== A scripted model ==================================================================
 * Token strings "t0".."tN"; no end token. The logits at each step come from logits_at():
 * a fixed vector (`fixed`), or pseudo-random values that depend on the position only, with
 * a small favoured set (so tokens repeat) and a -inf and a NaN among them. */

enum { NV_MAX = 600, MAX_STEPS = 64 };

typedef struct model {
    int32_t      nv;
    const float *fixed; /* NULL: pseudo-random by position */
} model;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}
static double unit(uint64_t a, uint64_t b) { return (double)(mix(a * 1000003u + b) >> 11) * 0x1.0p-53; }

static void logits_at(const model *m, int32_t n, float *out) {
    if (m->fixed) {
        memcpy(out, m->fixed, (size_t)m->nv * sizeof *out);
        return;
    }
    for (int32_t i = 0; i < m->nv; i++) {
        float v = (float)(unit((uint64_t)n, (uint64_t)i) * 8.0 - 5.0); /* [-5, 3) */
        if (i >= 10 && i < 22) v += 4.0f; /* the favoured set: repeats are common */
        out[i] = v;
    }
    out[m->nv - 2] = -INFINITY;
    out[m->nv - 3] = NAN;
    out[12] = -INFINITY; /* a favoured id that is never drawn, but may be in the prompt */
}

static void model_logits(void *user, const bt_token *seq, int32_t n, float *logits, int32_t nv) {
    (void)seq, (void)nv;
    logits_at(user, n, logits);
}

static char  NAMES[NV_MAX][8];
static const char *NAME_PTRS[NV_MAX];

static bt_provider *make_provider(model *m) {
    for (int i = 0; i < NV_MAX; i++) {
        snprintf(NAMES[i], sizeof NAMES[i], "t%d ", i);
        NAME_PTRS[i] = NAMES[i];
    }
    bt_scripted_params p = bt_scripted_default_params();
    p.n_vocab = m->nv;
    p.tokens = NAME_PTRS;
    p.eos = -1;
    p.n_ctx = 256;
    p.logits = model_logits;
    p.user = m;
    return bt_scripted_provider_init(&p);
}

/* ==== An observer strategy ===============================================================
 * Records, per step, the sequence (prompt + continuation), what on_logits was given (when
 * it has one) and every token's probability from on_probs. Optionally rewinds once. */

typedef struct obs {
    int      n_steps;
    int32_t  n_seq[MAX_STEPS];
    bt_token seq[MAX_STEPS][256];
    float    logits[MAX_STEPS][NV_MAX];
    float    probs[MAX_STEPS][NV_MAX];
    int32_t  rewind_at, rewind_n; /* rewind rewind_n tokens when n_tokens == rewind_at  */
    int      rewound;
    int      n_rewinds;           /* survives the reset at the end of the generation  */
    int      in_step;             /* on_logits ran for the current step               */
} obs;

static void ob_record_seq(obs *o, const bt_view *v) {
    int k = o->n_steps;
    memcpy(o->seq[k], v->prompt, (size_t)v->n_prompt * sizeof(bt_token));
    memcpy(o->seq[k] + v->n_prompt, v->tokens, (size_t)v->n_tokens * sizeof(bt_token));
    o->n_seq[k] = v->n_prompt + v->n_tokens;
}
static void ob_logits(bt_strategy *s, const bt_view *v, float *logits) {
    obs *o = s->ctx;
    if (o->n_steps >= MAX_STEPS) return;
    ob_record_seq(o, v);
    memcpy(o->logits[o->n_steps], logits, (size_t)v->n_vocab * sizeof *logits);
    o->in_step = 1;
}
static void ob_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    obs *o = s->ctx;
    if (o->n_steps >= MAX_STEPS) return;
    if (!o->in_step) ob_record_seq(o, v);
    for (int32_t i = 0; i < v->n_vocab; i++) o->probs[o->n_steps][i] = bt_candidates_get_p(c, i);
    o->n_steps++;
    o->in_step = 0;
}
static int32_t ob_backtrack(bt_strategy *s, const bt_view *v) {
    obs *o = s->ctx;
    if (!o->rewound && o->rewind_at > 0 && v->n_tokens == o->rewind_at) {
        o->rewound = 1;
        o->n_rewinds++;
        return o->rewind_n;
    }
    return 0;
}
static int32_t ob_keep(bt_strategy *s, const bt_view *v) { (void)s, (void)v; return 0; }
static void ob_reset(bt_strategy *s) { ((obs *)s->ctx)->rewound = 0; }

static const bt_strategy_i OB_WITH_LOGITS = {.name = "observer", .on_logits = ob_logits,
                                             .on_probs = ob_probs, .backtrack = ob_backtrack,
                                             .keep_index = ob_keep, .reset = ob_reset};
/* without on_logits: the sampler takes the patched-filter path (no copy) */
static const bt_strategy_i OB_PROBS_ONLY = {.name = "observer", .on_probs = ob_probs,
                                            .backtrack = ob_backtrack, .keep_index = ob_keep,
                                            .reset = ob_reset};

static bt_sampler_params plain_params(void) {
    bt_sampler_params sp = bt_sampler_default_params();
    sp.top_k = 0;
    sp.seed = 11;
    sp.add_special = false;
    return sp;
}

/* Generate max_new tokens from `prompt` with an observer; returns the observer (heap). */
static obs *observe(model *m, const bt_strategy_i *iface, const bt_sampler_params *sp,
                    const bt_token *prompt, int32_t n_prompt, int32_t rewind_at,
                    int32_t rewind_n) {
    obs *o = calloc(1, sizeof *o);
    o->rewind_at = rewind_at;
    o->rewind_n = rewind_n;
    bt_provider *p = make_provider(m);
    bt_strategy *st = bt_strategy_init(iface, o);
    bt_sampler *s = bt_sampler_init(p, st, sp);
    CHECK(s != NULL);
    if (!s) fprintf(stderr, "init: %s\n", bt_last_error());
    bt_stats stats;
    if (s) CHECK_EQ_INT(bt_generate_tokens(s, prompt, n_prompt, NULL, NULL, &stats), BT_OK);
    bt_sampler_free(s);
    st->ctx = NULL; /* the observer is returned, not freed with the strategy */
    bt_strategy_free(st);
    bt_provider_free(p);
    return o;
}

/* ==== Hand-computed values ============================================================ */

/*  id:            0     1     2     3     4     5     6     7 */
static const float L8[8] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, 0.0f, -2.0f, 1.5f};
static const bt_token P8[4] = {1, 2, 2, 4}; /* the prompt: 1 once, 2 twice, 4 once */

static void check_vec(const float *got, const float *want, int n, float scale) {
    for (int i = 0; i < n; i++) {
        float w = want[i] * scale;
        if (isinf(w)) CHECK(got[i] == w);
        else CHECK_NEAR(got[i], w, 1e-6);
    }
}

static void softmax_ref(const float *l, int n, float scale, double *p) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(l[i]) && (double)l[i] * scale > mx) mx = (double)l[i] * scale;
    for (int i = 0; i < n; i++) {
        p[i] = isnan(l[i]) || l[i] == -INFINITY ? 0.0 : exp((double)(l[i] * scale) - mx);
        sum += p[i];
    }
    for (int i = 0; i < n; i++) p[i] /= sum;
}

static void test_hand_computed(void) {
    model m = {8, L8};
    bt_sampler_params sp = plain_params();
    sp.max_new_tokens = 1;
    sp.repeat_penalty = 2.0f;
    sp.frequency_penalty = 0.5f;
    sp.presence_penalty = 0.25f;
    const bt_logit_bias lb[2] = {{5, 1.0f}, {6, -INFINITY}};
    sp.logit_bias = lb;
    sp.n_logit_bias = 2;
    /* t1: 2/2 - (1*0.5 + 0.25) = 0.25; t2 (twice, negative): -1*2 - (2*0.5 + 0.25) = -3.25;
     * t4: 3/2 - 0.75 = 0.75; t5: 0 + 1 (bias); t6: banned; others as the model gave them.
     * The prompt's tokens count: nothing has been generated yet. */
    const float want[8] = {1.0f, 0.25f, -3.25f, 0.5f, 0.75f, 1.0f, -INFINITY, 1.5f};
    obs *o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    CHECK_EQ_INT(o->n_steps, 1);
    check_vec(o->logits[0], want, 8, 1.0f);
    double p[8];
    softmax_ref(want, 8, 1.0f, p);
    for (int i = 0; i < 8; i++) CHECK_NEAR(o->probs[0][i], p[i], 1e-6);
    CHECK(o->probs[0][6] == 0.0f);
    free(o);

    /* the same on the patched-filter path (no on_logits): the same probabilities */
    o = observe(&m, &OB_PROBS_ONLY, &sp, P8, 4, 0, 0);
    for (int i = 0; i < 8; i++) CHECK_NEAR(o->probs[0][i], p[i], 1e-6);
    free(o);

    /* temperature comes after: on_logits sees the changed logits divided by it */
    sp.temperature = 2.0f;
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], want, 8, 0.5f);
    softmax_ref(want, 8, 0.5f, p);
    for (int i = 0; i < 8; i++) CHECK_NEAR(o->probs[0][i], p[i], 1e-6);
    free(o);
    sp.temperature = 1.0f;

    /* repeat_last_n 2: only the last two tokens (2, 4) count */
    sp.repeat_last_n = 2;
    const float want2[8] = {1.0f, 2.0f, -2.75f, 0.5f, 0.75f, 1.0f, -INFINITY, 1.5f};
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], want2, 8, 1.0f);
    free(o);

    /* -1: the whole context, here the same as 64 */
    sp.repeat_last_n = -1;
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], want, 8, 1.0f);
    free(o);

    /* 0: penalties off, the bias stays */
    sp.repeat_last_n = 0;
    const float want0[8] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, 1.0f, -INFINITY, 1.5f};
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], want0, 8, 1.0f);
    free(o);

    /* greedy over two steps: t7 (1.5) wins the first; at the second it counts too:
     * 1.5 / 2 - 0.75 = 0 */
    sp.repeat_last_n = 64;
    sp.top_k = 1;
    sp.max_new_tokens = 2;
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    CHECK_EQ_INT(o->n_steps, 2);
    CHECK_EQ_INT(o->seq[1][4], 7);
    CHECK(o->logits[0][7] == 1.5f);
    CHECK(o->logits[1][7] == 0.0f);
    CHECK(o->logits[1][1] == 0.25f); /* unchanged: the window still holds the prompt */
    free(o);

    /* presence and frequency alone (repeat_penalty 1), negative values favour repeats */
    sp = plain_params();
    sp.max_new_tokens = 1;
    sp.frequency_penalty = -1.0f;
    sp.presence_penalty = 0.5f;
    const float wantf[8] = {1.0f, 2.0f + 0.5f, -1.0f + 1.5f, 0.5f, 3.0f + 0.5f, 0.0f, -2.0f, 1.5f};
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], wantf, 8, 1.0f);
    free(o);

    /* entries for one token add up; +inf forces it */
    sp = plain_params();
    sp.max_new_tokens = 1;
    const bt_logit_bias lb2[3] = {{0, 1.0f}, {3, 0.25f}, {0, 0.5f}};
    sp.logit_bias = lb2;
    sp.n_logit_bias = 3;
    const float wantb[8] = {2.5f, 2.0f, -1.0f, 0.75f, 3.0f, 0.0f, -2.0f, 1.5f};
    o = observe(&m, &OB_WITH_LOGITS, &sp, P8, 4, 0, 0);
    check_vec(o->logits[0], wantb, 8, 1.0f);
    free(o);
    const bt_logit_bias force[1] = {{6, INFINITY}};
    sp.logit_bias = force;
    sp.n_logit_bias = 1;
    o = observe(&m, &OB_PROBS_ONLY, &sp, P8, 4, 0, 0);
    CHECK_NEAR(o->probs[0][6], 1.0, 1e-9);
    free(o);
}

/* ==== Against llama.cpp's samplers =======================================================
 * For each step of a generation: llama_sampler_init_logit_bias then
 * llama_sampler_init_penalties (accepting the whole sequence so far, prompt first, as
 * llama-server does) applied with llama_sampler_apply to the step's raw logits. */

static void llama_ref(const float *raw, int32_t nv, const bt_token *seq, int32_t n,
                      const bt_sampler_params *P, int32_t n_ctx, float *out) {
    llama_token_data *cur = malloc((size_t)nv * sizeof *cur);
    for (int32_t i = 0; i < nv; i++) cur[i] = (llama_token_data){i, raw[i], 0.0f};
    llama_token_data_array arr = {cur, (size_t)nv, -1, false};
    if (P->n_logit_bias > 0) {
        llama_logit_bias *lb = malloc((size_t)P->n_logit_bias * sizeof *lb);
        for (int32_t j = 0; j < P->n_logit_bias; j++)
            lb[j] = (llama_logit_bias){P->logit_bias[j].token, P->logit_bias[j].bias};
        struct llama_sampler *b = llama_sampler_init_logit_bias(nv, P->n_logit_bias, lb);
        llama_sampler_apply(b, &arr);
        llama_sampler_free(b);
        free(lb);
    }
    struct llama_sampler *pen = llama_sampler_init_penalties(
        nv, P->repeat_last_n < 0 ? n_ctx : P->repeat_last_n, P->repeat_penalty,
        P->frequency_penalty, P->presence_penalty);
    for (int32_t k = 0; k < n; k++) llama_sampler_accept(pen, seq[k]);
    llama_sampler_apply(pen, &arr);
    llama_sampler_free(pen);
    for (int32_t i = 0; i < nv; i++) {
        CHECK_EQ_INT(arr.data[i].id, i); /* neither sampler reorders */
        out[i] = arr.data[i].logit;
    }
    free(cur);
}

static int same_logit(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    return fabsf(a - b) <= 1e-6f * fmaxf(1.0f, fabsf(b));
}

static void test_against_llama(void) {
    enum { NV = 300 };
    model m = {NV, NULL};
    /* a prompt with repeats, the -inf token among them (-inf * penalty stays -inf) */
    bt_token prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = (bt_token)(10 + (int)(unit(99, (uint64_t)i) * 14));
    prompt[3] = 12;
    prompt[7] = NV - 2;
    const bt_logit_bias bias_set[6] = {
        {11, 2.5f}, {NV - 4, -INFINITY}, {11, -1.0f}, {250, 0.5f}, {NV - 1, 3.0f}, {15, -0.75f}};
    const float rps[] = {1.0f, 1.3f, 0.7f};
    const int32_t lasts[] = {0, 1, 7, 64, -1};
    const float fps[] = {0.0f, 0.4f, -0.3f};
    const float pps[] = {0.0f, 0.6f, -0.5f};
    const float temps[] = {1.0f, 0.7f};
    float *ref = malloc(NV * sizeof *ref), *raw = malloc(NV * sizeof *raw);
    double *p = malloc(NV * sizeof *p);
    int combos = 0, steps = 0, bad_logits = 0, bad_probs = 0, changed = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 3; c++)
                for (int d = 0; d < 3; d++)
                    for (int e = 0; e < 2; e++)
                        for (int t = 0; t < 2; t++) {
                            bt_sampler_params sp = plain_params();
                            sp.max_new_tokens = 12;
                            sp.repeat_penalty = rps[a];
                            sp.repeat_last_n = lasts[b];
                            sp.frequency_penalty = fps[c];
                            sp.presence_penalty = pps[d];
                            sp.logit_bias = e ? bias_set : NULL;
                            sp.n_logit_bias = e ? 6 : 0;
                            sp.temperature = temps[t];
                            sp.seed = (uint64_t)(combos + 1);
                            float inv_t = 1.0f / sp.temperature;
                            /* the copy path (on_logits) and the patched-filter path */
                            obs *ol = observe(&m, &OB_WITH_LOGITS, &sp, prompt, 40, 0, 0);
                            obs *op = observe(&m, &OB_PROBS_ONLY, &sp, prompt, 40, 0, 0);
                            CHECK_EQ_INT(ol->n_steps, 12);
                            CHECK_EQ_INT(op->n_steps, 12);
                            for (int k = 0; k < ol->n_steps; k++) {
                                logits_at(&m, ol->n_seq[k], raw);
                                llama_ref(raw, NV, ol->seq[k], ol->n_seq[k], &sp, 256, ref);
                                for (int i = 0; i < NV; i++) {
                                    if (!same_logit(ol->logits[k][i], ref[i] * inv_t)) bad_logits++;
                                    if (!same_logit(ref[i], raw[i])) changed++;
                                }
                                /* the two paths draw alike: same sequences, same probs */
                                CHECK_EQ_INT(op->n_seq[k], ol->n_seq[k]);
                                CHECK(memcmp(op->seq[k], ol->seq[k],
                                             (size_t)ol->n_seq[k] * sizeof(bt_token)) == 0);
                                softmax_ref(ref, NV, inv_t, p);
                                for (int i = 0; i < NV; i++)
                                    if (fabs(op->probs[k][i] - p[i]) > 1e-6 ||
                                        op->probs[k][i] != ol->probs[k][i])
                                        bad_probs++;
                                steps++;
                            }
                            free(ol);
                            free(op);
                            combos++;
                        }
    CHECK_EQ_INT(bad_logits, 0);
    CHECK_EQ_INT(bad_probs, 0);
    CHECK(changed > 0); /* the test is not vacuous */
    fprintf(stderr, "  %d parameter combinations, %d steps compared with llama.cpp\n", combos,
            steps);
    free(ref);
    free(raw);
    free(p);
}

/* ==== The patched filter equals the filter on a patched copy ============================ */

static uint64_t rs = 12345;
static double rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) * 0x1.0p-53;
}

static void test_patched_filter(void) {
    const int32_t nvs[] = {5, 16, 37, 1000, 5000};
    const int32_t ks[] = {0, 1, 5, 50};
    const float tps[] = {1.0f, 0.9f, 0.5f};
    const float mps[] = {0.0f, 0.05f};
    const float scales[] = {1.0f, 1.0f / 0.7f};
    int cases = 0, bad = 0;
    for (int a = 0; a < 5; a++) {
        int32_t nv = nvs[a];
        float *raw = malloc((size_t)nv * sizeof *raw), *copy = malloc((size_t)nv * sizeof *copy);
        int32_t *pos = malloc((size_t)nv * sizeof *pos);
        uint8_t *blk = calloc((size_t)nv / 16 + 1, 1);
        float val[64];
        bt_token ids[64];
        bt_candidates c1, c2;
        bt__candidates_alloc(&c1, nv);
        bt__candidates_alloc(&c2, nv);
        for (int rep = 0; rep < 20; rep++) {
            for (int32_t i = 0; i < nv; i++) {
                raw[i] = (float)(rnd() * 10.0 - 6.0);
                pos[i] = -1;
            }
            /* NaN only where the block max's `a > b ? a : b` drops it (an index below 8 in
             * its block): a NaN elsewhere can hide its block from the unpatched filter
             * (noted in the report), which the patched path, reading patched blocks token by
             * token, would not copy */
            if (nv > 20) raw[3] = NAN, raw[nv - 1] = -INFINITY;
            memcpy(copy, raw, (size_t)nv * sizeof *raw);
            int m = 0, want = 1 + (int)(rnd() * (nv < 40 ? nv / 2 + 1 : 40));
            for (int j = 0; j < want; j++) {
                bt_token t = (bt_token)(rnd() * nv);
                if (j == 0) t = nv - 1; /* the tail block, when nv is not a multiple of 16 */
                if (pos[t] >= 0) continue;
                double r = rnd();
                float v = r < 0.3 ? raw[t] + 6.0f        /* raised above its block's max */
                        : r < 0.7 ? raw[t] - 3.0f        /* lowered */
                        : r < 0.85 ? -INFINITY
                        : r < 0.95 ? INFINITY : raw[t];
                ids[m] = t;
                val[m] = v;
                pos[t] = m++;
                blk[t >> 4] = 1;
                copy[t] = v;
            }
            bt__logit_patch pt = {pos, val, blk};
            for (int k = 0; k < 4; k++)
                for (int tp = 0; tp < 3; tp++)
                    for (int mp = 0; mp < 2; mp++)
                        for (int sc = 0; sc < 2; sc++) {
                            int32_t n1 = bt__candidates_filter(&c1, copy, scales[sc], ks[k], tps[tp], mps[mp]);
                            int32_t n2 = bt__candidates_filter_patched(&c2, raw, &pt, scales[sc], ks[k],
                                                                       tps[tp], mps[mp]);
                            cases++;
                            if (n1 != n2 || c1.n_sorted != c2.n_sorted ||
                                memcmp(c1.data, c2.data, (size_t)n1 * sizeof *c1.data) != 0) {
                                if (bad < 5) {
                                    fprintf(stderr, "nv %d k %d tp %g mp %g sc %g: n %d/%d sorted %d/%d\n", nv, ks[k], tps[tp], mps[mp], scales[sc], n1, n2, c1.n_sorted, c2.n_sorted);
                                    for (int q = 0; q < n1 && q < n2 && q < 8; q++) fprintf(stderr, "  %d %g %g | %d %g %g\n", c1.data[q].id, c1.data[q].logit, c1.data[q].p, c2.data[q].id, c2.data[q].logit, c2.data[q].p);
                                }
                                bad++;
                            }
                        }
            for (int j = 0; j < m; j++) pos[ids[j]] = -1, blk[ids[j] >> 4] = 0;
        }
        bt__candidates_release(&c1);
        bt__candidates_release(&c2);
        free(raw);
        free(copy);
        free(pos);
        free(blk);
    }
    CHECK_EQ_INT(bad, 0);
    fprintf(stderr, "  %d filter cases identical to a patched copy\n", cases);
}

/* ==== Rewinds ============================================================================
 * Constant logits: only the penalty window changes the distribution from step to step.
 * The strategy rewinds 4 tokens when the text is 8 long; the draw that follows is at
 * position 4 again, and its distribution must be bit for bit the one of the first draw at
 * position 4 (the discarded tokens no longer count), and differ from the one at position
 * 8 (where they did). */
static void rewind_case(const bt_strategy_i *iface, int32_t last_n) {
    static float flat[NV_MAX];
    for (int i = 0; i < 40; i++) flat[i] = (float)(unit(7, (uint64_t)i) * 3.0);
    model m = {40, flat};
    bt_sampler_params sp = plain_params();
    sp.max_new_tokens = 10;
    sp.repeat_penalty = 1.8f;
    sp.frequency_penalty = 0.7f;
    sp.presence_penalty = 0.4f;
    sp.repeat_last_n = last_n;
    const bt_logit_bias lb[1] = {{3, 1.5f}};
    sp.logit_bias = lb;
    sp.n_logit_bias = 1;
    const bt_token prompt[3] = {1, 2, 1};
    obs *o = observe(&m, iface, &sp, prompt, 3, 8, 4);
    /* steps: positions 0..7 (8 draws), the rewind at 8 tokens, then 4..9 */
    CHECK_EQ_INT(o->n_rewinds, 1);
    CHECK_EQ_INT(o->n_steps, 8 + 6);
    CHECK_EQ_INT(o->n_seq[4], 3 + 4);
    CHECK_EQ_INT(o->n_seq[8], 3 + 4);
    CHECK(memcmp(o->seq[8], o->seq[4], (size_t)o->n_seq[4] * sizeof(bt_token)) == 0);
    CHECK(memcmp(o->probs[8], o->probs[4], 40 * sizeof(float)) == 0);
    CHECK(memcmp(o->probs[7], o->probs[4], 40 * sizeof(float)) != 0);
    if (iface->on_logits) CHECK(memcmp(o->logits[8], o->logits[4], 40 * sizeof(float)) == 0);
    free(o);
}

static void test_rewind_restores(void) {
    rewind_case(&OB_WITH_LOGITS, 64);
    rewind_case(&OB_PROBS_ONLY, 64);
    rewind_case(&OB_PROBS_ONLY, 5);  /* a window that slides past the prompt */
    rewind_case(&OB_PROBS_ONLY, -1);
}

/* ==== The provider's logits are never written ============================================ */

enum { RNV = 500 };
static float *REPLAY;
static int32_t rp_nv(void *c) { (void)c; return RNV; }
static int32_t rp_ctx(void *c) { (void)c; return 512; }
static int rp_tok(void *c, const char *t, size_t l, bool a, bool b, bt_token *o, int32_t cap,
                  int32_t *n) {
    (void)c, (void)t, (void)l, (void)a, (void)b, (void)o, (void)cap;
    *n = 0;
    return BT_OK;
}
static int rp_text(void *c, bt_token id, const char **b, size_t *l) {
    (void)c, (void)id;
    *b = "x";
    *l = 1;
    return BT_OK;
}
static bool rp_eog(void *c, bt_token id) { (void)c, (void)id; return false; }
static int rp_eval(void *c, const bt_token *seq, int32_t n, const float **lg, bt_eval_info *info) {
    (void)c, (void)seq, (void)n, (void)info;
    *lg = REPLAY;
    return BT_OK;
}
static int rp_rewind(void *c, int32_t n) { (void)c, (void)n; return BT_OK; }
static const bt_provider_i REPLAY_IFACE = {"replay", rp_nv, rp_ctx, rp_tok, rp_text, rp_eog,
                                           rp_eval, rp_rewind, NULL, NULL, NULL, NULL, NULL};

static void test_provider_logits_untouched(void) {
    REPLAY = malloc(RNV * sizeof *REPLAY);
    float *backup = malloc(RNV * sizeof *backup);
    for (int i = 0; i < RNV; i++) REPLAY[i] = (float)(unit(5, (uint64_t)i) * 6.0 - 2.0);
    memcpy(backup, REPLAY, RNV * sizeof *backup);
    static int dummy;
    bt_provider *p = bt_provider_init(&REPLAY_IFACE, &dummy);
    for (int with_logits = 0; with_logits < 2; with_logits++) {
        obs *o = calloc(1, sizeof *o);
        bt_strategy *st = bt_strategy_init(with_logits ? &OB_WITH_LOGITS : &OB_PROBS_ONLY, o);
        bt_sampler_params sp = plain_params();
        sp.max_new_tokens = 30;
        sp.repeat_penalty = 1.5f;
        sp.frequency_penalty = 0.5f;
        sp.presence_penalty = 0.5f;
        bt_logit_bias lb[2] = {{17, -INFINITY}, {400, 2.0f}};
        sp.logit_bias = lb;
        sp.n_logit_bias = 2;
        bt_sampler *s = bt_sampler_init(p, st, &sp);
        lb[0].token = 18; /* the sampler keeps its own copy: this changes nothing */
        const bt_token prompt[4] = {17, 17, 400, 5};
        CHECK_EQ_INT(bt_generate_tokens(s, prompt, 4, NULL, NULL, NULL), BT_OK);
        CHECK(memcmp(REPLAY, backup, RNV * sizeof *backup) == 0);
        for (int k = 0; k < o->n_steps; k++) {
            CHECK(o->probs[k][17] == 0.0f); /* banned through the copy of the bias */
            for (int32_t j = 4; j < o->n_seq[k]; j++) CHECK(o->seq[k][j] != 17);
        }
        bt_sampler_free(s);
        st->ctx = NULL;
        bt_strategy_free(st);
        free(o);
    }
    bt_provider_free(p);
    free(REPLAY);
    free(backup);
}

/* ==== Defaults and bad values ============================================================ */

static void expect_refused(const bt_sampler_params *sp, bt_provider *p, const char *words) {
    bt_sampler *s = bt_sampler_init(p, NULL, sp);
    CHECK(s == NULL);
    CHECK(strstr(bt_last_error(), words) != NULL);
    if (s || !strstr(bt_last_error(), words))
        fprintf(stderr, "  want '%s', got '%s'\n", words, bt_last_error());
    bt_sampler_free(s);
}

static void test_defaults_and_bad_values(void) {
    bt_sampler_params d = bt_sampler_default_params();
    CHECK(d.repeat_penalty == 1.0f);
    CHECK_EQ_INT(d.repeat_last_n, 64);
    CHECK(d.frequency_penalty == 0.0f);
    CHECK(d.presence_penalty == 0.0f);
    CHECK(d.logit_bias == NULL);
    CHECK_EQ_INT(d.n_logit_bias, 0);

    model m = {8, L8};
    bt_provider *p = make_provider(&m);
    bt_sampler_params sp;
#define BAD(field, value, words)                                                          \
    do {                                                                                  \
        sp = plain_params();                                                              \
        sp.field = value;                                                                 \
        expect_refused(&sp, p, words);                                                    \
    } while (0)
    BAD(repeat_penalty, NAN, "repeat_penalty");
    BAD(repeat_penalty, -1.0f, "repeat_penalty must be a finite number > 0");
    BAD(repeat_penalty, 0.0f, "repeat_penalty");
    BAD(repeat_penalty, INFINITY, "repeat_penalty");
    BAD(repeat_penalty, 1e-39f, "repeat_penalty"); /* its inverse is not finite */
    BAD(repeat_last_n, -2, "repeat_last_n must be >= -1");
    BAD(frequency_penalty, NAN, "frequency_penalty must be a finite number");
    BAD(frequency_penalty, -INFINITY, "frequency_penalty");
    BAD(presence_penalty, NAN, "presence_penalty must be a finite number");
    BAD(presence_penalty, INFINITY, "presence_penalty");
    BAD(n_logit_bias, -1, "n_logit_bias must be >= 0");
    BAD(n_logit_bias, 2, "logit_bias is NULL"); /* logit_bias NULL with a count */
    const bt_logit_bias out_lo[1] = {{-1, 1.0f}}, out_hi[2] = {{0, 1.0f}, {8, 1.0f}},
                        nan_b[1] = {{2, NAN}};
    sp = plain_params();
    sp.logit_bias = out_lo;
    sp.n_logit_bias = 1;
    expect_refused(&sp, p, "logit_bias[0]: token -1 is outside the vocabulary (8 tokens)");
    sp.logit_bias = out_hi;
    sp.n_logit_bias = 2;
    expect_refused(&sp, p, "logit_bias[1]: token 8 is outside the vocabulary");
    sp.logit_bias = nan_b;
    sp.n_logit_bias = 1;
    expect_refused(&sp, p, "logit_bias[0]: the bias of token 2 is NaN");
#undef BAD

    /* accepted: -1 (whole context), negative frequency/presence, +-inf biases, and a
     * count of 0 with a NULL array */
    const bt_logit_bias ok_b[2] = {{0, -INFINITY}, {7, INFINITY}};
    sp = plain_params();
    sp.repeat_last_n = -1;
    sp.repeat_penalty = 0.5f;
    sp.frequency_penalty = -2.0f;
    sp.presence_penalty = -1.0f;
    sp.logit_bias = ok_b;
    sp.n_logit_bias = 2;
    bt_sampler *s = bt_sampler_init(p, NULL, &sp);
    CHECK(s != NULL);
    bt_sampler_free(s);
    bt_provider_free(p);
}

/* ==== The real model against llama.cpp's own chain =======================================
 * Greedy text with logit bias and penalties from backtrack, and from a plain llama.h loop
 * whose chain is logit_bias, penalties, greedy, fed the prompt's tokens first (as
 * llama-server's init_sampler does): the same tokens. */

static const char *MODEL = BT_TEST_MODEL;
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l, (void)t, (void)u; }

static int llama_greedy(struct llama_model *model, const bt_token *prompt, int32_t np,
                        const bt_sampler_params *P, int32_t n_ctx, bt_token *out, int n) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return -1;
    struct llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    int32_t nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    if (P->n_logit_bias > 0) {
        llama_logit_bias lb[8];
        for (int32_t j = 0; j < P->n_logit_bias && j < 8; j++)
            lb[j] = (llama_logit_bias){P->logit_bias[j].token, P->logit_bias[j].bias};
        llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(nv, P->n_logit_bias, lb));
    }
    llama_sampler_chain_add(chain, llama_sampler_init_penalties(
                                       nv, P->repeat_last_n < 0 ? n_ctx : P->repeat_last_n,
                                       P->repeat_penalty, P->frequency_penalty, P->presence_penalty));
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    for (int32_t i = 0; i < np; i++) llama_sampler_accept(chain, prompt[i]);
    llama_token buf[64];
    memcpy(buf, prompt, (size_t)np * sizeof *buf);
    llama_decode(ctx, llama_batch_get_one(buf, np));
    for (int i = 0; i < n; i++) {
        llama_token t = llama_sampler_sample(chain, ctx, -1); /* accepts t */
        out[i] = t;
        if (i == n - 1) break;
        llama_decode(ctx, llama_batch_get_one(&t, 1));
    }
    llama_sampler_free(chain);
    llama_free(ctx);
    return 0;
}

typedef struct tok_sink { bt_token t[256]; int n; } tok_sink;
static int collect_tok(void *user, bt_token id, const char *text, size_t len) {
    (void)text, (void)len;
    tok_sink *k = user;
    if (id >= 0 && k->n < 256) k->t[k->n++] = id;
    return 0;
}

static void test_real_model_against_llama(void) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = MODEL;
    lp.n_ctx = 256;
    bt_provider *p = bt_llama_provider_init(&lp);
    CHECK(p != NULL);
    if (!p) {
        fprintf(stderr, "cannot load %s: %s\n", MODEL, bt_last_error());
        return;
    }
    llama_log_set(quiet, NULL);
    struct llama_model *model = llama_model_load_from_file(MODEL, llama_model_default_params());
    CHECK(model != NULL);
    bt_token *prompt = NULL;
    int32_t np = 0;
    const char *text = "Once upon a time, there was a little girl named Lily. Lily";
    CHECK_EQ_INT(bt_provider_tokenize(p, text, strlen(text), true, true, &prompt, &np), BT_OK);
    enum { N = 60 };
    const bt_logit_bias lb[2] = {{317, -2.0f}, {265, 0.5f}}; /* " Lily", " the" */
    struct { float rp, fp, pp; int32_t last_n; int bias; } cases[] = {
        {1.0f, 0.0f, 0.0f, 64, 0}, /* nothing: the plain greedy text */
        {1.3f, 0.0f, 0.0f, 64, 0},
        {1.0f, 0.4f, 0.3f, 16, 0},
        {1.5f, 0.2f, 0.2f, -1, 1},
        {1.2f, 0.0f, 0.0f, 3, 1},
        {1.0f, 0.0f, 0.0f, 0, 1},
    };
    tok_sink first = {0};
    int differ = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bt_sampler_params sp = bt_sampler_default_params();
        sp.top_k = 1;
        sp.seed = 1;
        sp.max_new_tokens = N;
        sp.repeat_penalty = cases[c].rp;
        sp.frequency_penalty = cases[c].fp;
        sp.presence_penalty = cases[c].pp;
        sp.repeat_last_n = cases[c].last_n;
        sp.logit_bias = cases[c].bias ? lb : NULL;
        sp.n_logit_bias = cases[c].bias ? 2 : 0;
        sp.cache_prompt = false;
        bt_sampler *s = bt_sampler_init(p, NULL, &sp);
        tok_sink k = {0};
        CHECK_EQ_INT(bt_generate_tokens(s, prompt, np, collect_tok, &k, NULL), BT_OK);
        bt_sampler_free(s);
        bt_token ref[N];
        CHECK_EQ_INT(llama_greedy(model, prompt, np, &sp, 256, ref, N), 0);
        CHECK_EQ_INT(k.n, N);
        int same = k.n == N && memcmp(k.t, ref, N * sizeof *ref) == 0;
        CHECK(same);
        if (!same) fprintf(stderr, "  case %zu: backtrack and llama.cpp differ\n", c);
        if (c == 0) first = k;
        else differ += memcmp(first.t, k.t, N * sizeof *ref) != 0;
    }
    CHECK(differ >= 4); /* the options do change the text */
    free(prompt);
    llama_model_free(model);
    bt_provider_free(p);
}

int main(void) {
    RUN(test_hand_computed);
    RUN(test_against_llama);
    RUN(test_patched_filter);
    RUN(test_rewind_restores);
    RUN(test_provider_logits_untouched);
    RUN(test_defaults_and_bad_values);
    RUN(test_real_model_against_llama);
    TEST_MAIN_END();
}
