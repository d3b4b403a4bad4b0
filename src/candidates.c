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
    for (int32_t i = 0; i < c->n; i++) c->pos_[c->data[i].id] = -1;
    c->n = 0;
    c->n_sorted = 0;
}

/* Rebuild pos_ for data[lo..hi) after entries moved. */
static void reindex(bt_candidates *c, int32_t lo, int32_t hi) {
    for (int32_t i = lo; i < hi; i++) c->pos_[c->data[i].id] = i;
}

/* ==== Lookup and update ================================================== */

float bt_candidates_get_p(const bt_candidates *c, bt_token id) {
    if (id < 0 || id >= c->n_vocab) return 0.0f;
    int32_t i = c->pos_[id];
    return i < 0 ? 0.0f : c->data[i].p;
}

int bt_candidates_set_p(bt_candidates *c, bt_token id, float p) {
    if (id < 0 || id >= c->n_vocab)
        return bt__fail(BT_ERR_INVALID_ARG, "token id %d outside the vocabulary", id);
    if (!(p >= 0.0f)) return bt__fail(BT_ERR_INVALID_ARG, "probability must be >= 0");
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

int32_t bt__candidates_filter(bt_candidates *c, const float *logits, int32_t top_k,
                              float top_p, float min_p) {
    bt__candidates_clear(c);
    const int32_t nv = c->n_vocab;

    float max = -INFINITY;
    for (int32_t i = 0; i < nv; i++) {
        float v = clean_logit(logits[i]);
        if (v > max) max = v;
    }
    if (max == -INFINITY) return 0;

    /* min_p: p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p). */
    float cut = min_p > 0.0f ? max + logf(min_p) : -FLT_MAX;
    bt_candidate *d = c->data;
    int32_t n = 0;
    bool use_heap = top_k > 0 && top_k < nv;

    for (int32_t i = 0; i < nv; i++) {
        float v = clean_logit(logits[i]);
        if (!(v >= cut) || v == -INFINITY) continue;
        bt_candidate cand = {.id = i, .logit = v, .p = 0.0f};
        if (!use_heap) {
            d[n++] = cand;
        } else if (n < top_k) {
            d[n] = cand;
            heap_sift_up(d, n++);
        } else if (heap_less(&d[0], &cand)) {
            d[0] = cand;
            heap_sift_down(d, n, 0);
        }
    }

    /* softmax over the survivors, relative to the max (no overflow) */
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double e = exp((double)d[i].logit - (double)max);
        d[i].p = (float)e;
        sum += e;
    }
    for (int32_t i = 0; i < n; i++) d[i].p = (float)((double)d[i].p / sum);
    c->n = n;
    reindex(c, 0, n);

    if (use_heap) {
        sort_desc(d, n);
        reindex(c, 0, n);
        c->n_sorted = n;
    } else if (n > 0) {
        /* Put the single most probable first, so the top token is always at data[0]. */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (before(&d[i], &d[best])) best = i;
        swap(&d[0], &d[best]);
        c->pos_[d[0].id] = 0;
        c->pos_[d[best].id] = best;
        c->n_sorted = 1;
    }

    if (top_p < 1.0f && n > 1) {
        int32_t m = bt_candidates_top_mass(c, top_p);
        for (int32_t i = m; i < n; i++) c->pos_[d[i].id] = -1;
        c->n = m;
        if (c->n_sorted > m) c->n_sorted = m;
        /* renormalise over the kept set */
        double kept = 0.0;
        for (int32_t i = 0; i < m; i++) kept += d[i].p;
        for (int32_t i = 0; i < m; i++) d[i].p = (float)((double)d[i].p / kept);
    }
    return c->n;
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
