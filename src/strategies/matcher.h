/*
 * matcher.h -- private: multi-phrase matching on the decoded text of the continuation,
 * shared by AntiSlop and Replace.
 *
 * An Aho-Corasick automaton over bytes is fed only the bytes of new tokens; its state
 * after every token is remembered, so a rewind restores it in O(1). The per-token cost
 * does not depend on the number of phrases.
 *
 * Units. The text is read as a sequence of units: a valid UTF-8 character, or one byte
 * that is not part of one (each such byte is a unit of its own, so invalid text never
 * stops the scan). A character split across tokens (byte-level BPE does that) becomes a
 * unit when its last byte arrives; until then its first bytes are held.
 *
 * Match text. The automaton runs on the "match text": with folding, every character
 * replaced by its full Unicode case folding (utf8proc: "É" -> "é", "ß" -> "ss", "İ" ->
 * "i̇", final sigma -> sigma), invalid bytes kept as they are; without folding, the text's
 * bytes themselves (byte-exact matching). Phrases are folded the same way when the
 * automaton is built. Token texts are folded once per vocabulary, at the first
 * bt__scan_begin on a provider (cached in the scan), so the per-token path only copies.
 *
 * Whole words. A word character is a letter (L*), a combining mark (M*), a decimal digit
 * (Nd) or '_'; anything else (punctuation such as “ ” — …, spaces including U+00A0,
 * symbols, invalid bytes, the ends of the text) is a boundary. A whole-word match is one
 * whose first unit is not preceded by a word unit when it is itself a word unit, and
 * likewise at its end; the unit after the match may arrive with a later token, so such a
 * match is decided then (or at the end of the text).
 *
 * Coordinates. bt__match.start/end, bt__scan_hold_from and bt__scan_token_at use offsets
 * in the ORIGINAL text (s->text: what the tokens' bytes concatenate to, which regexes and
 * callers see); a match starts at the first byte of its first unit, so a character whose
 * first byte lies in an earlier token maps back to that token.
 */
#ifndef BT_MATCHER_H
#define BT_MATCHER_H

#include "../internal.h"

/* The compiled automaton: immutable once built. */
typedef struct bt__automaton bt__automaton;

/* Build from n phrases (valid UTF-8, else BT_ERR_UTF8; an empty phrase never matches;
 * duplicates allowed: they share a state and the pattern id of their first occurrence
 * wins; so do phrases that fold to the same text). fold: Unicode case-insensitive (full
 * case folding); otherwise byte-exact. */
int  bt__automaton_build(const char *const *phrases, int32_t n, bool fold, bt__automaton **out);
void bt__automaton_free(bt__automaton *a);
int32_t bt__automaton_n_states(const bt__automaton *a);

/* A match found in the text: pattern id, its range [start, end) in the original text, and
 * its range [mstart, mend) in the match text (the order of matches: by mstart, then mend). */
typedef struct bt__match {
    int32_t pattern; /* -1: none */
    int32_t start, end;
    int32_t mstart, mend;
} bt__match;

/* Each vocabulary token's text, split as lead | core | tail (lead: up to 3 continuation
 * bytes that may complete a character of an earlier token; tail: an incomplete character
 * at the end), with the core's match text and word classes precomputed. Private to
 * matcher.c; valid while the provider it was made from lives (its token texts are
 * immutable and stay valid until it is freed: the provider contract). */
typedef struct bt__vtok {
    uint32_t off;    /* the core's match text: pool/cls [off, off + mlen); when it is inline
                        (mlen <= 8), its word classes as bits instead                     */
    uint16_t len;    /* bytes (UINT16_MAX: longer)                                         */
    uint8_t  mlen;
    uint8_t  info;   /* lead (bits 0-1), tail (bits 2-3), flags                            */
    uint8_t  inl[8]; /* the core's match text when mlen <= 8: one cache line per token     */
} bt__vtok;

typedef struct bt__vocab_fold {
    uint64_t prov_serial;  /* the provider's serial_ (its address may be reused) */
    int32_t      n_vocab;
    bool         fold;
    bool         ready;
    bt__vtok    *tok;
    const char **src;      /* per token: the provider's bytes                          */
    char        *pool;     /* longer cores' match text (padded: read 16 bytes at a time) */
    uint8_t     *cls;      /* per pool byte: 1 if its unit is a word character         */
    int32_t      longest;  /* longest token, bytes                                     */
    int32_t      longest_m;/* longest core match text, bytes                           */
} bt__vocab_fold;

/* Per token of the scan. */
typedef struct bt__scan_tok {
    int32_t end;   /* text length after it                                            */
    int32_t mend;  /* match-text length after it                                      */
    int32_t uend;  /* original bytes turned into units after it (the rest, up to end,
                      is an incomplete character, held)                               */
    int32_t state; /* automaton state after it                                        */
    int32_t id;    /* the token                                                       */
    int32_t flags;
} bt__scan_tok;

/* A whole-word candidate waiting for the next unit (match-text range). */
typedef struct bt__pend {
    int32_t pattern, mstart, mend;
} bt__pend;

/* The text of the continuation, token by token, with the automaton state after each. */
typedef struct bt__scan {
    const bt__automaton *a;
    bool     whole_word;
    char    *text;       /* original bytes of tokens [0, n_tokens), filled on demand:
                            read it through bt__scan_text                                 */
    int32_t  cap;
    int32_t  len;        /* text length (always up to date)                              */
    int32_t  text_filled;/* tokens whose bytes are in text                               */
    char    *mtext;      /* the match text                                                */
    uint8_t *mcls;       /* per match-text byte: word class (whole_word only)             */
    int32_t  mcap;
    bt__scan_tok *tk;    /* per token; tk[-1] is all zeros                               */
    bt__pend *pending;   /* per token (whole_word only): a candidate ending at its last
                            match-text byte, waiting for the next unit to decide the
                            boundary                                                      */
    int32_t  max_tokens;
    int32_t  n_tokens;
    int32_t  min_start;  /* matches starting before this byte are ignored                 */
    int32_t  skip_tokens;/* matches starting in the first skip_tokens tokens are ignored  */
    int32_t  sync_from;  /* first token fed by the last bt__scan_sync                     */
    bool     sync_at_end;
    bt__vocab_fold vf;
} bt__scan;

/* Allocate for up to max_tokens tokens of the provider's vocabulary. The first call for a
 * provider folds its vocabulary (once; later calls check that it is the same provider, by
 * serial, with the same token text pointers and lengths, and reuse it). Until the next begin, tokens are read from that
 * cache, not asked of the provider again. */
int  bt__scan_begin(bt__scan *s, const bt__automaton *a, bool whole_word, int32_t max_tokens,
                    const bt_provider *p);
void bt__scan_release(bt__scan *s);

/* Forget the tokens from n_tokens on (a rewind); n_tokens <= s->n_tokens. */
void bt__scan_truncate(bt__scan *s, int32_t n_tokens);

/* Bring the scan to the view's continuation: truncate if it shrank, feed new tokens.
 * Returns the earliest match completed by the new bytes (pattern -1 if none): the smallest
 * (mstart, mend). at_end: the text ends here (end of generation): a pending whole-word
 * match is final. */
bt__match bt__scan_sync(bt__scan *s, const bt_view *v, bool at_end);

/* The next match, in the same order, among those the last bt__scan_sync completed: the
 * earliest one after `after` (pattern -1 if none). For a caller that lets a match through
 * and must still see the others. */
bt__match bt__scan_next(bt__scan *s, const bt__match *after);

/* Byte (original text) from which the text could still become part of a match (len if
 * none): a partial match, a pending whole-word match, an incomplete character. */
int32_t bt__scan_hold_from(bt__scan *s);

/* Index of the token containing byte b of the original text (n_tokens if b == len). */
int32_t bt__scan_token_at(const bt__scan *s, int32_t b);

/* Byte offset where token t starts. */
static inline int32_t bt__scan_token_start(const bt__scan *s, int32_t t) {
    return s->tk[t - 1].end;
}

/* The original text, s->len bytes (filled now if needed). */
const char *bt__scan_text(bt__scan *s);

#endif
