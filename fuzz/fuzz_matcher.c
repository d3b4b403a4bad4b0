/* fuzz_matcher.c -- the phrase scan against a naive reference (differential).
 *
 * Input: a flags byte, then phrases separated by '\n', a NUL, then the text.
 *   bit 0: case folding (variants)          bit 1: whole words
 *   bits 2-4: skip_tokens (0-7)             bit 5: multi-byte tokens (else one per byte)
 *   bit 6: rewind with bt__scan_truncate (else by a shorter view)
 *   bit 7: with multi-byte tokens, some pieces of up to 300 bytes (too long for the
 *          folded vocabulary's compact entries: the scan's general path)
 * With multi-byte tokens the text is cut into pieces of 1-6 bytes (a per-input vocabulary
 * of the 255 single bytes plus the pieces), so characters split across tokens in every
 * way, and tokens begin or end inside characters.
 *
 * The reference knows nothing of automata, tokens' lead/core/tail or caches: after every
 * token it decodes the whole text so far into units (a valid UTF-8 character, or one byte
 * that starts none; an incomplete character at the end is held), folds each unit with
 * utf8proc (full case folding) when asked, and searches the folded phrases naively in
 * that match text. It checks, after every token:
 *   - every match decided by this token (without whole words: ending in its new match
 *     text; with whole words: the unit after it arrived in this token, both boundaries
 *     are non-word on one side), in order, exactly as bt__scan_sync then bt__scan_next
 *     report them: match-text range, pattern (the first phrase with that folded text), and
 *     the original range (first byte of the first unit, end of the last);
 *   - the hold-back point: the first unit of the longest suffix of the match text that
 *     begins a phrase, or of a waiting whole-word candidate, or the held incomplete
 *     character, past skip_tokens;
 * and at the end, the matches that only the end of the text decides (at_end). Then a
 * rewind to a random token and a re-feed, and a second bt__scan_begin on the same scan
 * (the folded vocabulary reused), must give the same again. */
#include "internal.h"
#include "strategies/matcher.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAXP 32
#define MAXT 384

static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)user, (void)seq, (void)n, (void)nv, (void)l;
}

/* ---- the reference ---------------------------------------------------------------- */

/* Is s[0..n) a complete valid character? 1: yes, with *len; -1: a valid beginning cut
 * off by the end of s; 0: not a character. Written from RFC 3629's table. */
static int ref_char(const uint8_t *s, size_t n, int *len) {
    static const struct { uint8_t lo, hi; int len; uint8_t lo2, hi2; } T[] = {
        {0x00, 0x7F, 1, 0, 0},       {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF},
        {0xE1, 0xEC, 3, 0x80, 0xBF}, {0xED, 0xED, 3, 0x80, 0x9F}, {0xEE, 0xEF, 3, 0x80, 0xBF},
        {0xF0, 0xF0, 4, 0x90, 0xBF}, {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F},
    };
    for (size_t r = 0; r < sizeof T / sizeof T[0]; r++) {
        if (s[0] < T[r].lo || s[0] > T[r].hi) continue;
        *len = T[r].len;
        for (int i = 1; i < T[r].len; i++) {
            if ((size_t)i >= n) return -1;
            uint8_t lo = i == 1 ? T[r].lo2 : 0x80, hi = i == 1 ? T[r].hi2 : 0xBF;
            if (s[i] < lo || s[i] > hi) return 0;
        }
        return 1;
    }
    return 0;
}

static bool ref_word(int32_t c) {
    if (c == '_') return true;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO || k == UTF8PROC_CATEGORY_MN ||
           k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_ND;
}

/* The match text of s[0..n): per byte, its word class and the original range of its unit.
 * Returns its length; *held: where an incomplete character at the end begins (n if none). */
typedef struct mt {
    uint8_t b[MAXT * 6 + 16];
    uint8_t word[MAXT * 6 + 16];
    int32_t os[MAXT * 6 + 16], oe[MAXT * 6 + 16];
    int32_t len, held;
} mt;

static void ref_match_text(const uint8_t *s, size_t n, bool fold, mt *out) {
    out->len = 0;
    out->held = (int32_t)n;
    for (size_t p = 0; p < n;) {
        int len = 1;
        int r = ref_char(s + p, n - p, &len);
        if (r < 0) {
            out->held = (int32_t)p;
            break;
        }
        if (r == 0) { /* a lone byte, kept, never a word */
            out->b[out->len] = s[p];
            out->word[out->len] = 0;
            out->os[out->len] = (int32_t)p, out->oe[out->len] = (int32_t)p + 1;
            out->len++;
            p++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_iterate(s + p, len, &c);
        utf8proc_int32_t f[8];
        int bc = 0;
        utf8proc_ssize_t nf = fold ? utf8proc_decompose_char(c, f, 8, UTF8PROC_CASEFOLD, &bc) : 1;
        if (!fold) f[0] = c;
        for (utf8proc_ssize_t k = 0; k < nf; k++) {
            uint8_t e[4];
            int l = (int)utf8proc_encode_char(f[k], e);
            for (int j = 0; j < l; j++) {
                out->b[out->len] = e[j];
                out->word[out->len] = ref_word(f[k]);
                out->os[out->len] = (int32_t)p, out->oe[out->len] = (int32_t)(p + (size_t)len);
                out->len++;
            }
        }
        p += (size_t)len;
    }
}

typedef struct ref_match {
    int32_t pattern, ms, me, start, end;
} ref_match;

static int cmp_match(const void *x, const void *y) {
    const ref_match *a = x, *b = y;
    if (a->ms != b->ms) return a->ms < b->ms ? -1 : 1;
    return a->me < b->me ? -1 : a->me > b->me;
}

/* ---- the test ----------------------------------------------------------------------- */

static mt M;                        /* the match text after the current token */
static ref_match got[8192], want[8192];
static ref_match *rec;              /* what the scan reported, per step, in pass 0 */
static int32_t rec_n, rec_cap;

static void push_rec(ref_match m) {
    if (rec_n == rec_cap) {
        rec_cap = rec_cap ? 2 * rec_cap : 1024;
        rec = realloc(rec, (size_t)rec_cap * sizeof *rec);
        if (!rec) abort();
    }
    rec[rec_n++] = m;
}

/* Everything the scan reports after a sync: the sync's match, then bt__scan_next. */
static int scan_list(bt__scan *sc, bt__match m, ref_match *out) {
    int k = 0;
    while (m.pattern >= 0) {
        if (k >= 8192) abort();
        out[k++] = (ref_match){m.pattern, m.mstart, m.mend, m.start, m.end};
        bt__match next = bt__scan_next(sc, &m);
        if (next.pattern >= 0 && !(next.mstart > m.mstart || (next.mstart == m.mstart && next.mend > m.mend)))
            abort(); /* not in order: would loop */
        m = next;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    bool f = data[0] & 1, whole = data[0] & 2, multi = data[0] & 32, trunc = data[0] & 64,
         longer = data[0] & 128;
    int32_t skip = (data[0] >> 2) & 7;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(rest, 0, n);
    if (!nul) return 0;
    /* phrases: valid UTF-8 (as every caller checks), folded for the reference */
    char *phr[MAXP];
    uint8_t fp[MAXP][32 * 3];
    int32_t fpl[MAXP];
    int np = 0;
    for (const char *p = rest; p < nul && np < MAXP;) {
        const char *e = memchr(p, '\n', (size_t)(nul - p));
        if (!e) e = nul;
        if (e > p && e - p <= 32 && bt__utf8_valid(p, (size_t)(e - p))) {
            phr[np] = strndup(p, (size_t)(e - p));
            ref_match_text((const uint8_t *)phr[np], strlen(phr[np]), f, &M);
            memcpy(fp[np], M.b, (size_t)M.len);
            fpl[np] = M.len;
            np++;
        }
        p = e + 1;
    }
    const uint8_t *text = (const uint8_t *)nul + 1;
    size_t tl = strnlen((const char *)text, (size_t)(rest + n - (const char *)text));
    if (tl > MAXT) tl = MAXT;

    /* the vocabulary and the tokens */
    char *vocab_s[256 + MAXT];
    const char *vocab[256 + MAXT];
    for (int i = 0; i < 256; i++) {
        vocab_s[i] = calloc(2, 1);
        vocab_s[i][0] = (char)i; /* token 0: "" */
        vocab[i] = vocab_s[i];
    }
    int32_t nv = 256, ntok = 0;
    bt_token toks[MAXT];
    int32_t tok_end[MAXT];
    uint32_t x = 2166136261u ^ (uint32_t)tl;
    for (size_t p = 0; p < tl;) {
        size_t len = 1;
        if (multi) {
            x = x * 1103515245u + 12345u + text[p];
            len = 1 + (x >> 16) % 6;
            if (longer && (x >> 8) % 4 == 0) len = 200 + (x >> 20) % 101;
            if (len > tl - p) len = tl - p;
        }
        if (len == 1) {
            toks[ntok] = text[p];
        } else {
            vocab_s[nv] = strndup((const char *)text + p, len);
            vocab[nv] = vocab_s[nv];
            toks[ntok] = nv++;
        }
        p += len;
        tok_end[ntok++] = (int32_t)p;
    }
    bt_scripted_params sp = bt_scripted_default_params();
    sp.n_vocab = nv;
    sp.tokens = vocab;
    sp.logits = logits;
    bt_provider *prov = bt_scripted_provider_init(&sp);
    if (!prov) abort();

    bt__automaton *a = NULL;
    if (bt__automaton_build((const char *const *)phr, np, f, &a) != BT_OK) abort();
    bt__scan sc = {0};
    if (bt__scan_begin(&sc, a, whole, MAXT, prov) != BT_OK) abort();
    sc.skip_tokens = skip;
    bt_view v = {.tokens = toks, .provider = prov, .n_vocab = nv, .max_tokens = MAXT};
    int32_t allowed = skip > 0 ? (skip <= ntok ? tok_end[skip - 1] : INT32_MAX) : 0;

    int32_t rec_at[MAXT + 2], hold[MAXT + 1];
    rec_n = 0;
    int32_t mlen_prev = 0;
    for (int32_t i = 1; i <= ntok; i++) { /* pass 0: against the reference */
        v.n_tokens = i;
        bt__match m = bt__scan_sync(&sc, &v, false);
        int ng = scan_list(&sc, m, got);
        int32_t h = bt__scan_hold_from(&sc);
        rec_at[i] = rec_n;
        for (int k = 0; k < ng; k++) push_rec(got[k]);
        hold[i] = h;

        int32_t L = tok_end[i - 1];
        ref_match_text(text, (size_t)L, f, &M);
        int nw = 0;
        /* decided now: ends in the new match text; with whole words, the unit after the
         * end arrived now (byte e is new) */
        int32_t e_lo = whole ? mlen_prev : mlen_prev + 1, e_hi = whole ? M.len - 1 : M.len;
        for (int32_t e = e_lo > 1 ? e_lo : 1; e <= e_hi; e++) {
            for (int k = 0; k < np; k++) {
                int32_t s0 = e - fpl[k];
                if (s0 < 0 || memcmp(M.b + s0, fp[k], (size_t)fpl[k]) != 0) continue;
                if (M.os[s0] < allowed) continue;
                if (whole && M.word[s0] && s0 > 0 && M.word[s0 - 1]) continue;
                if (whole && M.word[e - 1] && M.word[e]) continue;
                bool dup = false; /* the first phrase with this text names the match */
                for (int j = 0; j < nw; j++) dup |= want[j].ms == s0 && want[j].me == e;
                if (!dup) want[nw++] = (ref_match){k, s0, e, M.os[s0], M.oe[e - 1]};
            }
        }
        qsort(want, (size_t)nw, sizeof *want, cmp_match);
        if (nw != ng) abort();
        for (int k = 0; k < nw; k++)
            if (memcmp(&want[k], &got[k], sizeof want[k]) != 0) abort();
        /* hold-back */
        int32_t longest = 0; /* the longest suffix that begins a phrase (or is one) */
        for (int k = 0; k < np; k++)
            for (int32_t l = fpl[k] < M.len ? fpl[k] : M.len; l > longest; l--)
                if (memcmp(M.b + M.len - l, fp[k], (size_t)l) == 0) {
                    longest = l;
                    break;
                }
        int32_t from = M.len - longest; /* match-text byte */
        if (whole) /* a whole-word candidate ending at the end waits for the next unit */
            for (int k = 0; k < np; k++) {
                int32_t s0 = M.len - fpl[k];
                if (s0 >= 0 && s0 < from && memcmp(M.b + s0, fp[k], (size_t)fpl[k]) == 0 &&
                    M.os[s0] >= allowed && !(M.word[s0] && s0 > 0 && M.word[s0 - 1]))
                    from = s0;
            }
        int32_t want_h = from < M.len ? M.os[from] : M.held;
        if (i < skip) want_h = L;
        else if (want_h < allowed) want_h = allowed;
        if (h != want_h) abort();
        mlen_prev = M.len;
    }
    rec_at[ntok + 1] = rec_n;
    if (ntok > 0) { /* the end of the text decides the waiting whole-word candidates */
        bt__match m = bt__scan_sync(&sc, &v, true);
        int ng = scan_list(&sc, m, got), nw = 0;
        for (int k = 0; whole && k < np; k++) {
            int32_t s0 = M.len - fpl[k];
            if (s0 < 0 || memcmp(M.b + s0, fp[k], (size_t)fpl[k]) != 0) continue;
            if (M.os[s0] < allowed || (M.word[s0] && s0 > 0 && M.word[s0 - 1])) continue;
            bool dup = false;
            for (int j = 0; j < nw; j++) dup |= want[j].ms == s0;
            if (!dup) want[nw++] = (ref_match){k, s0, M.len, M.os[s0], M.oe[M.len - 1]};
        }
        qsort(want, (size_t)nw, sizeof *want, cmp_match);
        if (nw != ng) abort();
        for (int k = 0; k < nw; k++)
            if (memcmp(&want[k], &got[k], sizeof want[k]) != 0) abort();
    }

    /* pass 1: rewind to a token and feed again; pass 2: begin again (the folded
     * vocabulary is reused) and feed everything again. The same, step by step. */
    int32_t cut = ntok ? (int32_t)(text[0] % (ntok + 1)) : 0;
    for (int pass = 1; pass <= 2; pass++) {
        int32_t from_tok = 0;
        if (pass == 1) {
            if (trunc) {
                bt__scan_truncate(&sc, cut);
            } else {
                v.n_tokens = cut;
                bt__scan_sync(&sc, &v, false);
            }
            if (sc.len != (cut ? tok_end[cut - 1] : 0)) abort();
            from_tok = cut;
        } else {
            if (bt__scan_begin(&sc, a, whole, MAXT, prov) != BT_OK) abort();
            sc.skip_tokens = skip;
        }
        for (int32_t i = from_tok + 1; i <= ntok; i++) {
            v.n_tokens = i;
            bt__match m = bt__scan_sync(&sc, &v, false);
            int ng = scan_list(&sc, m, got);
            if (ng != rec_at[i + 1] - rec_at[i]) abort();
            for (int k = 0; k < ng; k++)
                if (memcmp(&got[k], &rec[rec_at[i] + k], sizeof got[k]) != 0) abort();
            if (bt__scan_hold_from(&sc) != hold[i]) abort();
        }
    }
    bt__scan_release(&sc);
    bt__automaton_free(a);
    bt_provider_free(prov);
    for (int k = 0; k < np; k++) free(phr[k]);
    for (int32_t i = 0; i < nv; i++) free(vocab_s[i]);
    return 0;
}
