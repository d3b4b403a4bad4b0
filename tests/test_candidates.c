/* test_candidates.c -- the filters and the draw against hand-computed values and a naive
 * sort-everything reference. */
#include "check.h"
#include "internal.h"

#include <float.h>

static bt_candidates C;

/* p = {0.5, 0.25, 0.15, 0.1} as logits (log p), token i has p[i]. */
static float L4[4];

static void setup4(void) {
    const float p[4] = {0.5f, 0.25f, 0.15f, 0.1f};
    for (int i = 0; i < 4; i++) L4[i] = logf(p[i]);
    bt__candidates_release(&C);
    bt__candidates_alloc(&C, 4);
}

static void test_softmax_only(void) {
    setup4();
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 0, 1.0f, 0.0f), 4);
    CHECK_NEAR(bt_candidates_get_p(&C, 0), 0.5, 1e-6);
    CHECK_NEAR(bt_candidates_get_p(&C, 3), 0.1, 1e-6);
    CHECK_EQ_INT(C.data[0].id, 0); /* the top token always comes first */
}

static void test_min_p(void) {
    setup4();
    /* keep p >= 0.3 * 0.5 = 0.15: tokens 0, 1, 2; renormalised over 0.9 */
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 0, 1.0f, 0.3f), 3);
    CHECK_NEAR(bt_candidates_get_p(&C, 0), 0.5 / 0.9, 1e-6);
    CHECK_NEAR(bt_candidates_get_p(&C, 2), 0.15 / 0.9, 1e-6);
    CHECK_EQ_INT(bt_candidates_get_p(&C, 3), 0);
}

static void test_top_k(void) {
    setup4();
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 2, 1.0f, 0.0f), 2);
    CHECK_EQ_INT(C.data[0].id, 0);
    CHECK_EQ_INT(C.data[1].id, 1);
    CHECK_NEAR(C.data[0].p, 0.5 / 0.75, 1e-6);
    CHECK_NEAR(C.data[1].p, 0.25 / 0.75, 1e-6);
    CHECK_EQ_INT(C.n_sorted, 2);
}

static void test_top_p(void) {
    setup4();
    /* 0.5 < 0.7, 0.75 >= 0.7: keep two */
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 0, 0.7f, 0.0f), 2);
    CHECK_NEAR(bt_candidates_get_p(&C, 1), 0.25 / 0.75, 1e-6);
    /* the first token alone reaches 0.49: one kept */
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 0, 0.49f, 0.0f), 1);
    CHECK_NEAR(bt_candidates_get_p(&C, 0), 1.0, 1e-6);
    /* 0.9 needs three (0.5 + 0.25 + 0.15) */
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 0, 0.9f, 0.0f), 3);
    /* all three filters in the reference order: min_p 0.25 keeps {0,1,2}, top_k 2 keeps
     * {0,1} (p 2/3, 1/3), top_p 0.6 keeps {0} */
    CHECK_EQ_INT(bt__candidates_filter(&C, L4, 1.0f, 2, 0.6f, 0.25f), 1);
}

static void test_bad_logits(void) {
    setup4();
    float all_neg[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    CHECK_EQ_INT(bt__candidates_filter(&C, all_neg, 1.0f, 50, 1.0f, 0.0f), 0);
    float nan_mix[4] = {NAN, 1.0f, NAN, 1.0f};
    CHECK_EQ_INT(bt__candidates_filter(&C, nan_mix, 1.0f, 0, 1.0f, 0.0f), 2);
    CHECK_NEAR(bt_candidates_get_p(&C, 1), 0.5, 1e-6);
    float inf[4] = {0.0f, INFINITY, 0.0f, -INFINITY};
    CHECK_EQ_INT(bt__candidates_filter(&C, inf, 1.0f, 0, 1.0f, 0.0f), 3);
    CHECK_NEAR(bt_candidates_get_p(&C, 1), 1.0, 1e-6);
    float huge[4] = {FLT_MAX, -FLT_MAX, 1e-40f, 0.0f};
    CHECK(bt__candidates_filter(&C, huge, 1.0f, 0, 1.0f, 0.0f) >= 1);
    CHECK_NEAR(bt_candidates_get_p(&C, 0), 1.0, 1e-6);
}

static void test_set_p_and_draw(void) {
    setup4();
    bt__candidates_filter(&C, L4, 1.0f, 1, 1.0f, 0.0f); /* only token 0 */
    CHECK_EQ_INT(C.n, 1);
    CHECK_EQ_INT(bt_candidates_set_p(&C, 3, 1.0f), BT_OK); /* append a dropped token */
    CHECK_EQ_INT(C.n, 2);
    CHECK_NEAR(bt_candidates_get_p(&C, 3), 1.0, 0);
    CHECK(bt_candidates_set_p(&C, 4, 1.0f) != BT_OK);   /* outside the vocabulary */
    CHECK(bt_candidates_set_p(&C, 1, -1.0f) != BT_OK);  /* negative */
    CHECK(bt_candidates_set_p(&C, 1, NAN) != BT_OK);
    /* p = {1 (token 0), 1 (token 3)}: u < 0.5 picks token 0, else token 3 */
    CHECK_EQ_INT(C.data[bt__candidates_draw(&C, 0.25)].id, 0);
    CHECK_EQ_INT(C.data[bt__candidates_draw(&C, 0.75)].id, 3);
    CHECK_EQ_INT(C.data[bt__candidates_draw(&C, 0.999999999)].id, 3);
    bt_candidates_set_p(&C, 0, 0.0f);
    bt_candidates_set_p(&C, 3, 0.0f);
    CHECK_EQ_INT(bt__candidates_draw(&C, 0.5), -1);
    bt_candidates_set_p(&C, 3, INFINITY);
    CHECK_EQ_INT(C.data[bt__candidates_draw(&C, 0.1)].id, 3);
}

/* Random logits over a big vocabulary: top_p without top_k and sort_top must agree with
 * sorting everything. */
static uint64_t rs = 88172645463325252ull;
static double rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) * 0x1.0p-53;
}

static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void test_against_naive(void) {
    enum { NV = 5000 };
    static float logits[NV], sorted[NV];
    bt__candidates_release(&C);
    bt__candidates_alloc(&C, NV);
    for (int round = 0; round < 40; round++) {
        double scale = 0.5 + 8.0 * rnd();
        for (int i = 0; i < NV; i++) logits[i] = (float)(scale * rnd());
        float top_p = (float)(0.05 + 0.9 * rnd());
        /* naive: softmax, sort, count the prefix reaching top_p */
        float max = -INFINITY;
        for (int i = 0; i < NV; i++) max = fmaxf(max, logits[i]);
        double sum = 0;
        for (int i = 0; i < NV; i++) sum += exp((double)logits[i] - max);
        for (int i = 0; i < NV; i++) sorted[i] = (float)(exp((double)logits[i] - max) / sum);
        qsort(sorted, NV, sizeof *sorted, cmp_float_desc);
        int want = 0;
        double acc = 0;
        while (want < NV && acc < top_p) acc += sorted[want++];
        int got = bt__candidates_filter(&C, logits, 1.0f, 0, top_p, 0.0f);
        /* float summation order may move the boundary by one token at most */
        CHECK(abs(got - want) <= 1);
        for (int i = 1; i < C.n_sorted; i++) CHECK(C.data[i - 1].p >= C.data[i].p);
        /* sort_top on the unfiltered list */
        bt__candidates_filter(&C, logits, 1.0f, 0, 1.0f, 0.0f);
        int k = 1 + (int)(rnd() * 100);
        CHECK_EQ_INT(bt_candidates_sort_top(&C, k), k);
        double norm = 0;
        for (int i = 0; i < C.n; i++) norm += C.data[i].p;
        for (int i = 0; i < k; i++) CHECK_NEAR(C.data[i].p, sorted[i], 1e-6);
        for (int i = 0; i < C.n; i++) CHECK(bt_candidates_get_p(&C, C.data[i].id) == C.data[i].p);
        for (int i = 0; i < C.n; i++) CHECK_EQ_INT(C.pos_[C.data[i].id], i);
        CHECK_NEAR(norm, 1.0, 1e-4);
    }
}

int main(void) {
    RUN(test_softmax_only);
    RUN(test_min_p);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_bad_logits);
    RUN(test_set_p_and_draw);
    RUN(test_against_naive);
    bt__candidates_release(&C);
    TEST_MAIN_END();
}
