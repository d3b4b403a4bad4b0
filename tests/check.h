/* check.h -- the smallest test harness: CHECK and CHECK_EQ record failures and go on;
 * TEST_MAIN prints "N passed, M failed" and exits non-zero on any failure. */
#ifndef BT_CHECK_H
#define BT_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) check_passed++;                                                         \
        else {                                                                            \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                \
    do {                                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                               \
        if (a_ == b_) check_passed++;                                                     \
        else {                                                                            \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, a_, b_);                                                      \
        }                                                                                 \
    } while (0)

#define CHECK_NEAR(a, b, eps)                                                             \
    do {                                                                                  \
        double a_ = (double)(a), b_ = (double)(b);                                        \
        if (fabs(a_ - b_) <= (eps)) check_passed++;                                       \
        else {                                                                            \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %.9g != %.9g\n", __FILE__, __LINE__, \
                    #a, #b, a_, b_);                                                      \
        }                                                                                 \
    } while (0)

#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (a_ && b_ && strcmp(a_, b_) == 0) check_passed++;                              \
        else {                                                                            \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: %s == %s failed:\n  got  \"%s\"\n  want \"%s\"\n",    \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");  \
        }                                                                                 \
    } while (0)

#define RUN(test)                                                                         \
    do {                                                                                  \
        int before_ = check_failed;                                                       \
        test();                                                                           \
        fprintf(stderr, "%s %s\n", check_failed == before_ ? "ok  " : "FAIL", #test);     \
    } while (0)

#define TEST_MAIN_END()                                                                   \
    do {                                                                                  \
        printf("%d passed, %d failed\n", check_passed, check_failed);                     \
        return check_failed ? 1 : 0;                                                      \
    } while (0)

/* ---- helpers shared by the test programs ---- */

/* Collects released text: use text_sink_collect as the bt_release_fn. */
typedef struct text_sink {
    char   text[65536];
    size_t len;
} text_sink;

static inline int text_sink_collect(void *user, int32_t id, const char *text, size_t len) {
    (void)id;
    text_sink *s = user;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    return 0;
}

/* Does hay contain needle, ASCII case-insensitively? */
static inline int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && ((p[i] | 32) == (needle[i] | 32))) i++;
        if (i == n) return 1;
    }
    return 0;
}

#endif
