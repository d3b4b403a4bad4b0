/*
 * internal.h -- private helpers shared by the library's files (prefix bt__).
 * Nothing here is part of the public API.
 */
#ifndef BT_INTERNAL_H
#define BT_INTERNAL_H

#include "backtrack.h"

#include <stdarg.h>

/* ---- errors and logging (common.c) ---- */

/* Set this thread's last-error message (printf-style) and return `status`, so that a
 * failing path reads: return bt__fail(BT_ERR_IO, "cannot open %s", path); */
int bt__fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Send one line to the log callback, if any. */
void bt__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if a log callback is installed (to skip formatting work when nobody listens). */
bool bt__log_enabled(void);

/* Tokenize `text` so that the tokens' texts concatenate to exactly `text` (no BOS). Some
 * tokenizers (SentencePiece) add a space in front of a text tokenized on its own: then the
 * text is tokenized after a one-letter sentinel and the sentinel's token dropped. Falls
 * back to the plain tokenization (with a warning) when neither is exact. *out: malloc'd. */
int bt__tokenize_exact(bt_provider *p, const char *text, bt_token **out, int32_t *n_out);

/* Monotonic clock in milliseconds. */
double bt__now_ms(void);

/* ---- UTF-8 (utf8.c) ---- */

/* True if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool bt__utf8_valid(const char *s, size_t n);

/* Incremental decoder: feeds bytes, writes only complete characters to out, holds back an
 * incomplete tail (at most 3 bytes), and replaces invalid bytes by U+FFFD. */
typedef struct bt__utf8_stream {
    char   pending[4];
    size_t n_pending;
} bt__utf8_stream;

/* Feed n bytes. `out` must hold 3 * (n + 3) bytes. Returns the bytes written. */
size_t bt__utf8_feed(bt__utf8_stream *st, const char *in, size_t n, char *out);

/* Flush the held tail at the end of the text (a truncated character becomes one U+FFFD,
 * as Python's errors="replace"). `out` must hold 3 bytes. Returns the bytes written. */
size_t bt__utf8_flush(bt__utf8_stream *st, char *out);

/* ---- candidates and filters (candidates.c) ---- */

/* Allocate the candidate list for a vocabulary (capacity n_vocab, pos_ all -1). */
int  bt__candidates_alloc(bt_candidates *c, int32_t n_vocab);
void bt__candidates_release(bt_candidates *c);

/* Empty the list in O(n) (resets pos_ only for the entries present). */
void bt__candidates_clear(bt_candidates *c);

/* Build the candidate list from logits[0..n_vocab) * scale (scale > 0: 1/temperature;
 * the logits themselves are not modified): keep the non-NaN ones whose probability is
 * >= min_p * max probability, then the top_k largest (0: all), then the smallest
 * most-probable set whose cumulative probability reaches top_p (1: all); set p to the
 * softmax over the survivors. Returns the number of candidates (0 if every logit is -inf
 * or NaN). One pass over the vocabulary plus work on the survivors; never sorts the
 * whole vocabulary. */
int32_t bt__candidates_filter(bt_candidates *c, const float *logits, float scale,
                              int32_t top_k, float top_p, float min_p);

/* Logits that differ from the provider's at a few tokens (logit bias, penalties), given
 * without a copy of the vocabulary: token id reads val[pos[id]] where pos[id] >= 0, else
 * the logits array. block[id >> 4] is non-zero for every block of 16 ids holding such a
 * token (and zero for the others: the filter skips those whole when it can). */
/* A built-in strategy's fast paths (bt_strategy.ext_), which the sampler may use in place
 * of a vtable slot; each gives exactly the slot's result.
 *   bans_here: report, through ban(sink, token), every token that on_logits would set to
 *     -INFINITY at position v->n_tokens, when that is ALL on_logits does. The sampler then
 *     applies them as a patch instead of copying the vocabulary's logits for on_logits. */
struct bt__strategy_ext {
    void (*bans_here)(bt_strategy *s, const bt_view *v, void (*ban)(void *sink, bt_token t),
                      void *sink);
};
typedef struct bt__strategy_ext bt__strategy_ext;

/* Can s give its on_logits as bans_here? (NULL-safe) */
static inline bool bt__has_bans_here(const bt_strategy *s) {
    return s && s->ext_ && s->ext_->bans_here;
}

/* The sampler's saved draw (sampler.c, "Drawing again at the same position"), for tests:
 * turn it off (before a generation), and how many draws it served. */
void    bt__sampler_redraw_off(bt_sampler *s);
int64_t bt__sampler_redraw_hits(const bt_sampler *s);

/* How many idle sequences a pool's batcher has decoded a filler token for, to close a
 * hole between busy ones (providers/llama.c, "Filling holes"), and (skipped, may be NULL)
 * how many small holes it left open, for tests. */
int64_t bt__llama_pool_filled(bt_llama_pool *pool, int64_t *skipped);

typedef struct bt__logit_patch {
    const int32_t *pos;   /* n_vocab entries, -1 where unpatched    */
    const float   *val;   /* patched logits, in the logits' units    */
    const uint8_t *block; /* (n_vocab + 15) / 16 entries             */
} bt__logit_patch;

/* bt__candidates_filter on the logits as patched by `patch` (not NULL): the same result,
 * in the same order, as on a patched copy; the logits themselves are not modified. */
int32_t bt__candidates_filter_patched(bt_candidates *c, const float *logits,
                                      const bt__logit_patch *patch, float scale,
                                      int32_t top_k, float top_p, float min_p);

/* Index into c->data of the drawn candidate for a uniform u in [0,1): proportional to p
 * (negative or NaN p count as 0; an infinite p wins). -1 if the total is 0. Pure. */
int32_t bt__candidates_draw(const bt_candidates *c, double u);

/* ---- phrase and regex lists from memory (phrase_list.c); `name` is for messages ---- */
int bt__phrase_list_parse(const char *name, const char *text, size_t len, bool hard,
                          bt_phrase_list **out);
int bt__regex_list_parse(const char *name, const char *text, size_t len, char ***out,
                         int32_t *n);

/* ---- random numbers (rng.c-style, in sampler.c) ---- */

typedef struct bt__rng { uint64_t s[4]; } bt__rng;
void   bt__rng_seed(bt__rng *r, uint64_t seed);
double bt__rng_uniform(bt__rng *r); /* [0, 1), 53 bits */

#endif /* BT_INTERNAL_H */
