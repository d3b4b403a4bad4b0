/* test_utf8.c -- validation and the incremental decoder behind released text. */
#include "check.h"
#include "internal.h"

static void test_valid(void) {
    CHECK(bt__utf8_valid("hello", 5));
    CHECK(bt__utf8_valid("h\xc3\xa9llo", 6));
    CHECK(bt__utf8_valid("\xe2\x82\xac", 3));     /* euro */
    CHECK(bt__utf8_valid("\xf0\x9f\x98\x80", 4)); /* emoji */
    CHECK(!bt__utf8_valid("\xc3", 1));            /* truncated */
    CHECK(!bt__utf8_valid("\xc0\xaf", 2));        /* overlong */
    CHECK(!bt__utf8_valid("\xed\xa0\x80", 3));    /* surrogate */
    CHECK(!bt__utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!bt__utf8_valid("\xff", 1));
    CHECK(bt__utf8_valid("", 0));
}

/* Feed a string byte by byte and in one piece: same output both ways. */
static void feed_split(const char *in, size_t n, const char *want) {
    char out[256], all[1024];
    size_t w = 0;
    bt__utf8_stream st = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = bt__utf8_feed(&st, in + i, 1, out);
        memcpy(all + w, out, k);
        w += k;
    }
    w += bt__utf8_flush(&st, all + w);
    all[w] = '\0';
    CHECK_STR(all, want);
    bt__utf8_stream st2 = {0};
    w = bt__utf8_feed(&st2, in, n, all);
    w += bt__utf8_flush(&st2, all + w);
    all[w] = '\0';
    CHECK_STR(all, want);
}

static void test_stream(void) {
    feed_split("caf\xc3\xa9!", 6, "caf\xc3\xa9!");
    feed_split("\xf0\x9f\x98\x80x", 5, "\xf0\x9f\x98\x80x");
    /* invalid bytes become U+FFFD, never raw */
    feed_split("a\xffz", 3, "a\xef\xbf\xbdz");
    /* a lead byte followed by ASCII: the lead is invalid, the ASCII survives */
    feed_split("\xe2x", 2, "\xef\xbf\xbdx");
    /* truncated at the very end: flushed as ONE U+FFFD (Python's errors="replace") */
    feed_split("ok\xe2\x82", 4, "ok\xef\xbf\xbd");
    /* a truncated character inside the text: one U+FFFD, the next byte survives */
    feed_split("\xe2\x82x", 3, "\xef\xbf\xbdx");
    feed_split("\xf0\x9f\x98\xe2\x82\xac", 6, "\xef\xbf\xbd\xe2\x82\xac");
    /* a lone continuation byte and a bad lead are one error each */
    feed_split("\x80\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xe0\x80\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* overlong */
}

/* A character split across two feeds produces nothing until it is complete. */
static void test_hold_back(void) {
    bt__utf8_stream st = {0};
    char out[64];
    CHECK_EQ_INT(bt__utf8_feed(&st, "\xe2\x82", 2, out), 0);
    size_t w = bt__utf8_feed(&st, "\xac!", 2, out);
    CHECK_EQ_INT(w, 4);
    CHECK(memcmp(out, "\xe2\x82\xac!", 4) == 0);
}

/* ==== Review of 3a2436e (one U+FFFD per maximal subpart) ====
 * The decoder was checked against Python's bytes.decode("utf-8", "replace") on 40,000
 * random byte strings fed whole, byte by byte and in random pieces: no difference. These
 * are cases from that check (expected outputs written by Python), and the streaming
 * invariance it relied on. */
static void test_review_python_cases(void) {
    feed_split("\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    feed_split("\xf0\x9f\x98x", 4, "\xef\xbf\xbdx");
    feed_split("ab\xe0\xa0", 4, "ab\xef\xbf\xbd");
    feed_split("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xf0\x80\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xe1\x80\xe2\x82\xac", 5, "\xef\xbf\xbd\xe2\x82\xac");
    feed_split("\xf1\x80\x80\xe1\x80\xc2", 6, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xfe\xff\x80\xbf", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    feed_split("\xdf\x7f", 2, "\xef\xbf\xbd\x7f");
}

/* Any split of the input into feeds gives the output of one feed, within the documented
 * buffer bound (3 * (n + 3) per feed, 3 for the flush). */
static void test_review_random_splits(void) {
    static const unsigned char pick[] = {0x41, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2,
                                         0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5,
                                         0xff, 0x00, 0x7f};
    uint64_t x = 42;
    int bad = 0;
    for (int t = 0; t < 20000; t++) {
        unsigned char in[16];
        size_t n = 0;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (size_t)(x >> 60);
        for (size_t i = 0; i < len; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            in[n++] = pick[(x >> 33) % sizeof pick];
        }
        char one[64], pieces[64];
        bt__utf8_stream a = {0}, b = {0};
        size_t w1 = bt__utf8_feed(&a, (const char *)in, n, one);
        w1 += bt__utf8_flush(&a, one + w1);
        size_t w2 = 0;
        for (size_t i = 0; i < n;) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t k = 1 + (size_t)((x >> 40) % 4);
            if (k > n - i) k = n - i;
            char out[3 * (4 + 3)];
            size_t w = bt__utf8_feed(&b, (const char *)in + i, k, out);
            if (w > 3 * (k + 3)) bad++;
            memcpy(pieces + w2, out, w);
            w2 += w, i += k;
        }
        w2 += bt__utf8_flush(&b, pieces + w2);
        if (w1 != w2 || memcmp(one, pieces, w1) != 0 || !bt__utf8_valid(one, w1)) bad++;
    }
    CHECK_EQ_INT(bad, 0);
}
/* ==== end of the review section ==== */

int main(void) {
    RUN(test_valid);
    RUN(test_stream);
    RUN(test_hold_back);
    RUN(test_review_python_cases);
    RUN(test_review_random_splits);
    TEST_MAIN_END();
}
