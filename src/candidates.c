/*
 * candidates.c -- the candidate list and the filters (min_p, top_k, top_p, softmax).
 *
 * Cost model: one pass over the vocabulary per token, plus work on the survivors only.
 * top_k uses a size-k heap during that pass; top_p without top_k uses a selection by
 * probability mass (quickselect), so the whole vocabulary is never sorted.
 */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== Allocation ========================================================= */

int bt__candidates_alloc(bt_candidates *c, int32_t n_vocab) {
    memset(c, 0, sizeof *c);
    c->data = malloc((size_t)n_vocab * sizeof *c->data);
    c->pos_ = malloc((size_t)n_vocab * sizeof *c->pos_);
    if (!c->data || !c->pos_) {
        bt__candidates_release(c);
        return bt__fail(BT_ERR_NOMEM, "out of memory for %d candidates", n_vocab);
    }
    memset(c->pos_, 0xff, (size_t)n_vocab * sizeof *c->pos_); /* all -1 */
    c->n_vocab = n_vocab;
    return BT_OK;
}

void bt__candidates_release(bt_candidates *c) {
    free(c->data);
    free(c->pos_);
    memset(c, 0, sizeof *c);
}

void bt__candidates_clear(bt_candidates *c) {
    if (c->indexed_)
        for (int32_t i = 0; i < c->n; i++) c->pos_[c->data[i].id] = -1;
    c->indexed_ = 0;
    c->n = 0;
    c->n_sorted = 0;
}

/* Keep pos_ right for data[lo..hi) after entries moved (if it is built at all). */
static void reindex(bt_candidates *c, int32_t lo, int32_t hi) {
    if (!c->indexed_) return;
    for (int32_t i = lo; i < hi; i++) c->pos_[c->data[i].id] = i;
}

/* Build pos_ on first lookup: the per-token path of a strategy-free step never pays it. */
static void ensure_index(bt_candidates *c) {
    if (c->indexed_) return;
    for (int32_t i = 0; i < c->n; i++) c->pos_[c->data[i].id] = i;
    c->indexed_ = 1;
}

/* ==== Lookup and update ================================================== */

float bt_candidates_get_p(const bt_candidates *c, bt_token id) {
    if (id < 0 || id >= c->n_vocab) return 0.0f;
    ensure_index((bt_candidates *)c); /* a cache: logically const */
    int32_t i = c->pos_[id];
    return i < 0 ? 0.0f : c->data[i].p;
}

int bt_candidates_set_p(bt_candidates *c, bt_token id, float p) {
    if (id < 0 || id >= c->n_vocab)
        return bt__fail(BT_ERR_INVALID_ARG, "token id %d outside the vocabulary", id);
    if (!(p >= 0.0f)) return bt__fail(BT_ERR_INVALID_ARG, "probability must be >= 0");
    ensure_index(c);
    int32_t i = c->pos_[id];
    if (i < 0) {
        i = c->n++;
        c->data[i] = (bt_candidate){.id = id, .logit = -INFINITY, .p = p};
        c->pos_[id] = i;
    } else {
        c->data[i].p = p;
    }
    /* The sorted prefix stays valid only if this entry lies past it and ranks below it. */
    if (i < c->n_sorted || (c->n_sorted > 0 && p > c->data[c->n_sorted - 1].p))
        c->n_sorted = 0;
    return BT_OK;
}

/* ==== Ordering helpers =================================================== */

/* Valid probability mass of one entry: NaN and negatives count as nothing. */
static inline double mass_of(float p) { return p > 0.0f ? (double)p : 0.0; }

/* a ranks before b: higher p, ties broken by lower id (so every order is deterministic). */
static inline bool before(const bt_candidate *a, const bt_candidate *b) {
    float pa = a->p > 0.0f ? a->p : 0.0f, pb = b->p > 0.0f ? b->p : 0.0f;
    return pa > pb || (pa == pb && a->id < b->id);
}

static int cmp_desc(const void *x, const void *y) {
    const bt_candidate *a = x, *b = y;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void sort_desc(bt_candidate *d, int32_t n) {
    if (n > 1) qsort(d, (size_t)n, sizeof *d, cmp_desc);
}

static inline void swap(bt_candidate *a, bt_candidate *b) {
    bt_candidate t = *a;
    *a = *b;
    *b = t;
}

/* Partition d[lo..hi) around the median-of-three pivot so that entries ranking before it
 * come first; returns the pivot's final index. The order relation is total (ids are
 * unique), so there are no equal keys to worry about. */
static int32_t partition(bt_candidate *d, int32_t lo, int32_t hi) {
    int32_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (before(&d[mid], &d[lo])) swap(&d[mid], &d[lo]);
    if (before(&d[last], &d[lo])) swap(&d[last], &d[lo]);
    if (before(&d[last], &d[mid])) swap(&d[last], &d[mid]);
    swap(&d[mid], &d[last]); /* pivot (the median) to the end */
    int32_t store = lo;
    for (int32_t i = lo; i < last; i++)
        if (before(&d[i], &d[last])) swap(&d[i], &d[store++]);
    swap(&d[store], &d[last]);
    return store;
}

int32_t bt_candidates_sort_top(bt_candidates *c, int32_t k) {
    if (k > c->n) k = c->n;
    if (k <= 0 || k <= c->n_sorted) return k < 0 ? 0 : k;
    /* Quickselect: afterwards d[0..k) holds the k best, in any order. */
    int32_t lo = 0, hi = c->n;
    while (hi - lo > 1) {
        int32_t p = partition(c->data, lo, hi);
        if (p == k || p == k - 1) break;
        if (p < k) lo = p + 1;
        else hi = p;
    }
    sort_desc(c->data, k);
    reindex(c, 0, c->n);
    c->n_sorted = k;
    return k;
}

int32_t bt_candidates_top_mass(bt_candidates *c, float mass) {
    int32_t n = c->n;
    if (n == 0) return 0;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += mass_of(c->data[i].p);
    double target = (double)mass * total;

    /* Fast path: the sorted prefix already reaches the target. */
    double acc = 0.0;
    for (int32_t i = 0; i < c->n_sorted; i++) {
        acc += mass_of(c->data[i].p);
        if (acc >= target) return i + 1;
    }

    /* Invariant: d[0..lo) ranks before d[lo..hi), which ranks before d[hi..n); acc is the
     * mass of d[0..lo) and stays below the target. */
    bt_candidate *d = c->data;
    int32_t lo = 0, hi = n;
    acc = 0.0;
    while (hi - lo > 16) {
        int32_t p = partition(d, lo, hi);
        double upper = 0.0; /* mass of d[lo..p], the pivot included */
        for (int32_t i = lo; i <= p; i++) upper += mass_of(d[i].p);
        if (acc + upper >= target) {
            hi = p + 1;
            if (hi - lo <= 16) break;
            /* The pivot alone might be what reaches the target: keep it in range. */
        } else {
            acc += upper;
            lo = p + 1;
        }
        if (lo >= hi) break;
    }
    sort_desc(d + lo, hi - lo);
    int32_t m = hi;
    for (int32_t i = lo; i < hi; i++) {
        acc += mass_of(d[i].p);
        if (acc >= target) {
            m = i + 1;
            break;
        }
    }
    if (m < 1) m = 1;
    sort_desc(d, lo); /* d[0..lo) ranks before d[lo..), so [0, m) ends up sorted */
    reindex(c, 0, n);
    c->n_sorted = m;
    return m;
}

/* ==== Filters ============================================================ */

/* Min-heap of candidates by logit (ties: the higher id is "smaller"), for top_k. */
static inline bool heap_less(const bt_candidate *a, const bt_candidate *b) {
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void heap_sift_down(bt_candidate *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(&h[l], &h[m])) m = l;
        if (r < n && heap_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        swap(&h[i], &h[m]);
        i = m;
    }
}

static void heap_sift_up(bt_candidate *h, int32_t i) {
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!heap_less(&h[i], &h[parent])) return;
        swap(&h[i], &h[parent]);
        i = parent;
    }
}

/* A logit as the filters see it: NaN is dropped (-inf), +inf becomes FLT_MAX so that a
 * strategy "forcing" a token with +inf still gives a finite softmax. */
static inline float clean_logit(float v) {
    if (isnan(v)) return -INFINITY;
    if (v == INFINITY) return FLT_MAX;
    return v;
}

/* exp(x) for x <= 0 in float, to about 1e-7 relative error: 2^(x/ln2) split into an
 * integer power (built in the exponent bits) and a degree-6 polynomial on [-0.5, 0.5].
 * Branch-free so the softmax loops vectorize; libm's exp was most of the softmax time. */
static inline float exp_neg(float x) {
    float t = x * 1.44269504088896341f;
    t = t < -126.0f ? -126.0f : t;
    int32_t i = (int32_t)(t - 0.5f); /* round to nearest (t <= 0) */
    float f = (t - (float)i) * 0.69314718055994531f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (0.16666667f + f * (0.041666668f +
              f * (0.0083333338f + f * 0.0013888889f)))));
    union { uint32_t u; float f; } sc = {.u = (uint32_t)(i + 127) << 23};
    float r = p * sc.f;
    return x < -87.0f ? 0.0f : r;
}

/* Softmax over d[0..n) relative to max: p = exp(logit - max) / sum. */
static void softmax(bt_candidate *d, int32_t n, float max) {
    for (int32_t i = 0; i < n; i++) d[i].p = exp_neg(d[i].logit - max);
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0; /* four chains: no serial dependency */
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += d[i].p;
        s1 += d[i + 1].p;
        s2 += d[i + 2].p;
        s3 += d[i + 3].p;
    }
    for (; i < n; i++) s0 += d[i].p;
    float inv = (float)(1.0 / ((s0 + s1) + (s2 + s3)));
    for (i = 0; i < n; i++) d[i].p *= inv;
}

/* top_p over a long unsorted list whose p falls with the logit (the filters' output):
 * bucket the candidates by logit below the max, add up each bucket's mass, find the
 * bucket where the running mass from the top reaches `mass`, and keep only what lies in
 * or above it, sorted. Two passes plus a sort of the kept set (what llama.cpp's top_p
 * also sorts); never the whole vocabulary. Returns the kept count. */
#define N_BUCKETS 1024
#define BUCKET_RANGE 40.0f /* nats below the max; anything lower has p < 5e-18 */
static int32_t top_p_buckets(bt_candidates *c, float max, float mass) {
    bt_candidate *d = c->data;
    int32_t n = c->n;
    const float scale = (float)N_BUCKETS / BUCKET_RANGE;
    double bucket_mass[N_BUCKETS] = {0};
    for (int32_t i = 0; i < n; i++) {
        float b = (max - d[i].logit) * scale;
        bucket_mass[b < (float)(N_BUCKETS - 1) ? (int32_t)b : N_BUCKETS - 1] += d[i].p;
    }
    double total = 0.0;
    for (int b = 0; b < N_BUCKETS; b++) total += bucket_mass[b];
    double target = (double)mass * total, acc = 0.0;
    int32_t last = N_BUCKETS - 1;
    for (int b = 0; b < N_BUCKETS; b++) {
        acc += bucket_mass[b];
        if (acc >= target) {
            last = b;
            break;
        }
    }
    /* move the candidates of buckets 0..last (logit above the bucket's lower edge) to the
     * front */
    float edge = last == N_BUCKETS - 1 ? -INFINITY : max - (float)(last + 1) / scale;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (d[i].logit >= edge) {
            bt_candidate t = d[m];
            d[m++] = d[i];
            d[i] = t;
        }
    sort_desc(d, m);
    reindex(c, 0, n);
    c->n_sorted = m;
    /* the exact cut inside the sorted kept set */
    acc = 0.0;
    for (int32_t i = 0; i < m; i++) {
        acc += d[i].p;
        if (acc >= target) return i + 1;
    }
    return m;
}

/* The largest of l[0..16): `a > b ? a : b` is exactly what MAXPS computes, so this
 * vectorizes without fast-math. A NaN in an `a` slot is dropped; a NaN in a `b` slot
 * (index 8..15, then the upper half at each level) wins its node, and the value it beat
 * is lost if that NaN is dropped at the next level: a NaN logit can make a block look
 * lower than it is (and be skipped), or NaN (also skipped). A NaN-proof max (a second
 * select per node) measured 2-3x this scan; models do not emit NaN in practice. */
static inline float block_max16(const float *l) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = l[j] > l[j + 8] ? l[j] : l[j + 8];
    for (int j = 0; j < 4; j++) m[j] = m[j] > m[j + 4] ? m[j] : m[j + 4];
    m[0] = m[0] > m[2] ? m[0] : m[2];
    m[1] = m[1] > m[3] ? m[1] : m[3];
    return m[0] > m[1] ? m[0] : m[1];
}

/* The filter itself. `pt` (NULL, or a few tokens whose logit is val[pos[id]] instead of
 * logits[id]) is a compile-time NULL in bt__candidates_filter: always inlined, so the
 * plain path carries no trace of the patch. A patched block is never skipped whole (its
 * raw max says nothing about the patched values); inside it each token's value comes from
 * the patch when it has one. The candidates come out exactly as from a patched copy of
 * the logits, in the same order (unless a NaN hides a block of that copy, see
 * block_max16: a patched block is read token by token, so the patch is not fooled). */
static inline __attribute__((always_inline)) int32_t
filter_impl(bt_candidates *c, const float *logits, const bt__logit_patch *pt, float scale,
            int32_t top_k, float top_p, float min_p) {
    bt__candidates_clear(c);
    const int32_t nv = c->n_vocab;
    bt_candidate *d = c->data;
    int32_t n = 0;
    const bool use_heap = top_k > 0 && top_k < nv;
    /* min_p in raw units: logit * scale >= max * scale + log(min_p). */
    const float min_p_gap = min_p > 0.0f ? logf(min_p) / scale : -INFINITY;

    /* One pass over the raw logits. The gate only rises: the running max gives a
     * conservative min_p cut, the heap's smallest a conservative top_k cut; a block of 16
     * whose max is below the gate is skipped whole (the common case). Entries the final
     * max rules out are dropped after the pass. */
    float run_max = -INFINITY, gate = -FLT_MAX; /* -inf never gets in */
    int32_t i = 0;
    for (;;) {
        int32_t end;
        const bool patched = pt && pt->block[i >> 4]; /* i is a multiple of 16 here */
        if (i + 16 <= nv) {
            if (!patched && !(block_max16(logits + i) >= gate)) {
                i += 16;
                continue;
            }
            end = i + 16;
        } else if (i < nv) {
            end = nv;
        } else {
            break;
        }
        for (; i < end; i++) {
            float v = logits[i];
            if (patched && pt->pos[i] >= 0) v = pt->val[pt->pos[i]];
            if (!(v >= gate)) continue; /* also drops NaN */
            if (v > run_max) {
                run_max = v;
                float g = run_max + min_p_gap;
                if (g > gate) gate = g;
            }
            bt_candidate cand = {.id = i, .logit = v, .p = 0.0f};
            if (!use_heap) {
                d[n++] = cand;
            } else if (n < top_k) {
                d[n] = cand;
                heap_sift_up(d, n++);
                if (n == top_k && d[0].logit > gate) gate = d[0].logit;
            } else if (heap_less(&d[0], &cand)) {
                d[0] = cand;
                heap_sift_down(d, n, 0);
                if (d[0].logit > gate) gate = d[0].logit;
            }
        }
    }
    if (run_max == -INFINITY) return 0;

    /* final min_p cut, then raw -> scaled logits (+inf and overflow become FLT_MAX) */
    float max = clean_logit(run_max * scale);
    if (min_p > 0.0f) {
        float cut = max + logf(min_p);
        int32_t kept = 0;
        for (int32_t k = 0; k < n; k++) {
            float v = clean_logit(d[k].logit * scale);
            if (!(v >= cut)) continue;
            d[kept] = d[k];
            d[kept++].logit = v;
        }
        n = kept;
    } else {
        for (int32_t k = 0; k < n; k++) d[k].logit = clean_logit(d[k].logit * scale);
    }
    c->n = n;
    if (n == 0) return 0;
    softmax(d, n, max);

    if (use_heap) {
        sort_desc(d, n);
        c->n_sorted = n;
    } else if (top_p >= 1.0f || n == 1) {
        /* Put the single most probable first, so the top token is always at data[0]
         * (with top_p the selection below sorts the kept set anyway). */
        int32_t best = 0;
        for (int32_t k = 1; k < n; k++)
            if (before(&d[k], &d[best])) best = k;
        swap(&d[0], &d[best]);
        c->n_sorted = 1;
    }
    reindex(c, 0, n);

    if (top_p < 1.0f && n > 1) {
        int32_t m = (c->n_sorted < n && n > 4096) ? top_p_buckets(c, max, top_p)
                                                   : bt_candidates_top_mass(c, top_p);
        if (c->indexed_)
            for (int32_t k = m; k < n; k++) c->pos_[d[k].id] = -1;
        c->n = m;
        if (c->n_sorted > m) c->n_sorted = m;
        /* renormalise over the kept set */
        double total = 0.0;
        for (int32_t k = 0; k < m; k++) total += d[k].p;
        float inv = (float)(1.0 / total);
        for (int32_t k = 0; k < m; k++) d[k].p *= inv;
    }
    return c->n;
}

int32_t bt__candidates_filter(bt_candidates *c, const float *logits, float scale,
                              int32_t top_k, float top_p, float min_p) {
    return filter_impl(c, logits, NULL, scale, top_k, top_p, min_p);
}

int32_t bt__candidates_filter_patched(bt_candidates *c, const float *logits,
                                      const bt__logit_patch *patch, float scale,
                                      int32_t top_k, float top_p, float min_p) {
    return filter_impl(c, logits, patch, scale, top_k, top_p, min_p);
}

/* ==== Drawing ============================================================ */

int32_t bt__candidates_draw(const bt_candidates *c, double u) {
    double total = 0.0;
    for (int32_t i = 0; i < c->n; i++) {
        float p = c->data[i].p;
        if (p == INFINITY) return i;
        total += mass_of(p);
    }
    if (!(total > 0.0) || !isfinite(total)) return -1;
    double target = u * total, acc = 0.0;
    int32_t last = -1;
    for (int32_t i = 0; i < c->n; i++) {
        double m = mass_of(c->data[i].p);
        if (m == 0.0) continue;
        acc += m;
        last = i;
        if (target < acc) return i;
    }
    return last; /* rounding: u*total reached the very end */
}
