/* fuzz_matcher.c -- the phrase scan against a naive reference (differential).
 *
 * Input: flags byte (bit 0: case folding, bit 1: whole words), then phrases separated by
 * '\n', a NUL, then the text. The text is fed one byte per token (a scripted vocabulary
 * of the 255 non-NUL bytes). After every token the scan's reported match (the earliest
 * start among matches ending at that byte) and its hold-back point must equal what a naive
 * search computes; a rewind to a random point and a re-feed must give the same again. */
#include "internal.h"
#include "strategies/matcher.h"

#include <stdlib.h>
#include <string.h>

#define MAXP 32
#define MAXT 512

static char  tokstr[256][2];
static const char *vocab[256];
static bt_provider *prov;

static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)user, (void)seq, (void)n, (void)nv, (void)l;
}

static unsigned char fold(unsigned char c, bool f) { return (f && c >= 'A' && c <= 'Z') ? c + 32 : c; }

static bool eq(const char *a, const char *b, size_t n, bool f) {
    for (size_t i = 0; i < n; i++)
        if (fold((unsigned char)a[i], f) != fold((unsigned char)b[i], f)) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!prov) {
        for (int i = 0; i < 256; i++) {
            tokstr[i][0] = (char)i;
            tokstr[i][1] = 0;
            vocab[i] = tokstr[i];
        }
        bt_scripted_params sp = bt_scripted_default_params();
        sp.n_vocab = 256;
        sp.tokens = vocab;
        sp.logits = logits;
        prov = bt_scripted_provider_init(&sp);
    }
    if (size < 2) return 0;
    bool f = data[0] & 1, whole = data[0] & 2;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(rest, 0, n);
    if (!nul) return 0;
    /* phrases */
    char *phr[MAXP];
    size_t plen[MAXP];
    int np = 0;
    for (const char *p = rest; p < nul && np < MAXP;) {
        const char *e = memchr(p, '\n', (size_t)(nul - p));
        if (!e) e = nul;
        if (e > p && e - p <= 32) {
            phr[np] = strndup(p, (size_t)(e - p));
            plen[np] = (size_t)(e - p);
            np++;
        }
        p = e + 1;
    }
    const char *text = nul + 1;
    size_t tl = strnlen(text, (size_t)(rest + n - text)); /* byte 0 would be an empty token */
    if (tl > MAXT) tl = MAXT;
    bt__automaton *a = NULL;
    if (bt__automaton_build((const char *const *)phr, np, f, &a) != BT_OK) abort();
    bt__scan sc = {0};
    if (bt__scan_begin(&sc, a, whole, MAXT, prov) != BT_OK) abort();
    bt_token toks[MAXT];
    for (size_t i = 0; i < tl; i++) toks[i] = (unsigned char)text[i];
    bt_view v = {.tokens = toks, .provider = prov, .n_vocab = 256, .max_tokens = MAXT};
    bt__match first[MAXT + 1];
    int32_t hold[MAXT + 1];
    size_t cut = tl ? (size_t)(text[0] % (tl + 1)) : 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = (pass ? cut : 0) + 1; i <= tl; i++) {
            v.n_tokens = (int32_t)i;
            bt__match m = bt__scan_sync(&sc, &v, false);
            int32_t h = bt__scan_hold_from(&sc);
            if (pass == 1) { /* after the rewind: the same as the first time */
                if (m.pattern != first[i].pattern || m.start != first[i].start || h != hold[i]) abort();
                continue;
            }
            first[i] = m;
            hold[i] = h;
            if (whole) { /* soundness: a reported match is a whole-word occurrence */
                if (m.pattern >= 0) {
                    if (!eq(sc.text + m.start, phr[m.pattern], plen[m.pattern], f)) abort();
                    if (m.end - m.start != (int32_t)plen[m.pattern]) abort();
                }
                continue;
            }
            /* naive: earliest start among occurrences ending exactly at byte i */
            int32_t best = -1;
            for (int k = 0; k < np; k++)
                if (plen[k] <= i && eq(text + i - plen[k], phr[k], plen[k], f) &&
                    (best < 0 || (int32_t)(i - plen[k]) < best))
                    best = (int32_t)(i - plen[k]);
            if ((best < 0) != (m.pattern < 0) || (best >= 0 && m.start != best)) abort();
            /* naive hold-back: the longest suffix that is a prefix of a phrase */
            size_t longest = 0;
            for (int k = 0; k < np; k++)
                for (size_t l = plen[k] < i ? plen[k] : i; l > longest; l--)
                    if (eq(text + i - l, phr[k], l, f)) {
                        longest = l;
                        break;
                    }
            if (h != (int32_t)(i - longest)) abort();
        }
        v.n_tokens = (int32_t)cut; /* rewind */
        bt__scan_sync(&sc, &v, false);
        if (sc.len != (int32_t)cut) abort();
    }
    bt__scan_release(&sc);
    bt__automaton_free(a);
    for (int k = 0; k < np; k++) free(phr[k]);
    return 0;
}
