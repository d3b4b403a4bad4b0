/*
 * utf8.c -- validation and incremental decoding of UTF-8, so released text never splits
 * a character and never contains invalid bytes.
 */
#include "internal.h"

#include <string.h>

/* Length of the sequence a lead byte announces, 0 if it cannot start one. */
static size_t seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Is byte i (1-based) of a sequence starting with lead byte c acceptable? Encodes the
 * rules against overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points
 * above U+10FFFF (F4 90..BF). */
static bool cont_ok(unsigned char lead, size_t i, unsigned char c) {
    if ((c & 0xC0) != 0x80) return false;
    if (i != 1) return true;
    if (lead == 0xE0) return c >= 0xA0;
    if (lead == 0xED) return c <= 0x9F;
    if (lead == 0xF0) return c >= 0x90;
    if (lead == 0xF4) return c <= 0x8F;
    return true;
}

/* How many bytes of s[0..n) form a valid (possibly incomplete) prefix of one sequence:
 * returns the full length if complete, -k if only k bytes are present and valid so far,
 * 0 if invalid. */
static long check_seq(const unsigned char *s, size_t n) {
    size_t len = seq_len(s[0]);
    if (len == 0) return 0;
    for (size_t i = 1; i < len; i++) {
        if (i >= n) return -(long)i;
        if (!cont_ok(s[0], i, s[i])) return 0;
    }
    return (long)len;
}

bool bt__utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        long r = check_seq(u + i, n - i);
        if (r <= 0) return false;
        i += (size_t)r;
    }
    return true;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* For an invalid sequence at s[0..n): how many bytes one U+FFFD stands for. As Python's
 * errors="replace", WHATWG and Unicode's "maximal subpart" practice: a lead byte with the
 * valid continuation bytes that follow it (a truncated character) is one error; any
 * other bad byte is one error on its own. At least 1. */
static size_t bad_len(const unsigned char *s, size_t n) {
    size_t len = seq_len(s[0]), i = 1;
    if (len == 0) return 1;
    while (i < n && i < len && cont_ok(s[0], i, s[i])) i++;
    return i;
}

/* Decode buf[0..n) into out: complete characters copied, invalid bytes replaced; stores
 * an incomplete valid tail in st->pending. Returns bytes written. */
static size_t decode(bt__utf8_stream *st, const unsigned char *buf, size_t n, char *out) {
    size_t w = 0, i = 0;
    while (i < n) {
        if (buf[i] < 0x80) { out[w++] = (char)buf[i++]; continue; }
        long r = check_seq(buf + i, n - i);
        if (r > 0) {
            memcpy(out + w, buf + i, (size_t)r);
            w += (size_t)r;
            i += (size_t)r;
        } else if (r < 0) { /* incomplete at the end: keep for the next feed */
            st->n_pending = n - i;
            memcpy(st->pending, buf + i, st->n_pending);
            return w;
        } else {
            memcpy(out + w, REPLACEMENT, 3);
            w += 3;
            i += bad_len(buf + i, n - i);
        }
    }
    return w;
}

size_t bt__utf8_feed(bt__utf8_stream *st, const char *in, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)in;
    size_t w = 0;
    /* Complete a held sequence first, byte by byte (at most 3 more bytes needed). */
    while (st->n_pending > 0 && n > 0) {
        unsigned char tmp[4];
        memcpy(tmp, st->pending, st->n_pending);
        tmp[st->n_pending] = *u;
        long r = check_seq(tmp, st->n_pending + 1);
        if (r > 0) { /* completed */
            memcpy(out + w, tmp, (size_t)r);
            w += (size_t)r;
            st->n_pending = 0;
            u++, n--;
        } else if (r < 0) { /* still incomplete */
            st->pending[st->n_pending++] = (char)*u;
            u++, n--;
        } else { /* the held bytes (a truncated character) can never complete: one
                  * U+FFFD for them all, then retry this byte */
            memcpy(out + w, REPLACEMENT, 3);
            w += 3;
            st->n_pending = 0;
        }
    }
    return w + decode(st, u, n, out + w);
}

size_t bt__utf8_flush(bt__utf8_stream *st, char *out) {
    if (st->n_pending == 0) return 0;
    memcpy(out, REPLACEMENT, 3); /* a truncated character: one error (see bad_len) */
    st->n_pending = 0;
    return 3;
}
