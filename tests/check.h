/* check.h -- the smallest test harness: CHECK and CHECK_EQ record failures and go on;
 * TEST_MAIN prints "N passed, M failed" and exits non-zero on any failure. */
#ifndef BT_CHECK_H
#define BT_CHECK_H

#include <math.h>
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

#endif
