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

int main(void) {
    RUN(test_valid);
    RUN(test_stream);
    RUN(test_hold_back);
    TEST_MAIN_END();
}
