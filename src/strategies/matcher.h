/*
 * matcher.h -- private: multi-phrase matching on the decoded text of the continuation,
 * shared by AntiSlop and Replace.
 *
 * An Aho-Corasick automaton over bytes (ASCII case folded when asked) is fed only the
 * bytes of new tokens; its state after every token is remembered, so a rewind restores it
 * in O(1). The per-token cost does not depend on the number of phrases.
 */
#ifndef BT_MATCHER_H
#define BT_MATCHER_H

#include "../internal.h"

/* The compiled automaton: immutable once built. */
typedef struct bt__automaton bt__automaton;

/* Build from n phrases (UTF-8, non-empty; duplicates allowed: they share a state and the
 * pattern id of their first occurrence wins). fold: ASCII case-insensitive. */
int  bt__automaton_build(const char *const *phrases, int32_t n, bool fold, bt__automaton **out);
void bt__automaton_free(bt__automaton *a);
int32_t bt__automaton_n_states(const bt__automaton *a);

/* A match found in the text: pattern id and its byte range [start, end). */
typedef struct bt__match {
    int32_t pattern; /* -1: none */
    int32_t start, end;
} bt__match;

/* The text of the continuation, token by token, with the automaton state after each. */
typedef struct bt__scan {
    const bt__automaton *a;
    bool     whole_word;
    char    *text;       /* bytes of tokens [0, n_tokens) */
    int32_t  cap;
    int32_t  len;
    int32_t *tok_end;    /* per token: text length after it        */
    int32_t *state;      /* per token: automaton state after it     */
    bt__match *pending;  /* per token: a whole-word match ending at its last byte, waiting
                            for the next byte to decide the boundary */
    int32_t  max_tokens;
    int32_t  n_tokens;
    int32_t  min_start;  /* matches starting before this byte are ignored */
    int32_t  skip_tokens;/* matches starting in the first skip_tokens tokens are ignored */
} bt__scan;

/* Allocate for up to max_tokens tokens of the provider's longest token. */
int  bt__scan_begin(bt__scan *s, const bt__automaton *a, bool whole_word, int32_t max_tokens,
                    const bt_provider *p);
void bt__scan_release(bt__scan *s);

/* Bring the scan to the view's continuation: truncate if it shrank, feed new tokens.
 * Returns the earliest-starting match completed by the new bytes (pattern -1 if none).
 * at_end: the text ends here (end of generation): a pending whole-word match is final. */
bt__match bt__scan_sync(bt__scan *s, const bt_view *v, bool at_end);

/* Byte from which the text could still become part of a match (len if none). */
int32_t bt__scan_hold_from(const bt__scan *s);

/* Index of the token containing byte b (n_tokens if b == len). */
int32_t bt__scan_token_at(const bt__scan *s, int32_t b);

/* Byte offset where token t starts. */
static inline int32_t bt__scan_token_start(const bt__scan *s, int32_t t) {
    return t > 0 ? s->tok_end[t - 1] : 0;
}

#endif
