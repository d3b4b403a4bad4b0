/*
 * backtrack.h -- sampling strategies that can undo the tokens they just generated.
 *
 * This header is the documentation of the library. Read it top to bottom:
 *
 *   1. Status codes, errors and logging.
 *   2. Candidates: the per-token set of tokens a sampler draws from.
 *   3. Providers: model backends (llama.cpp, a scripted one for tests, or yours).
 *   4. Strategies: the rules that look at each token and may rewind.
 *   5. The sampler: the generation loop that ties them together.
 *   6. Built-in providers and strategies.
 *
 * Ownership is written next to each prototype. Objects are opaque unless a struct is
 * shown here; every *_init has a matching *_free, and every params struct has a
 * *_default_params() function whose values are the documented defaults.
 *
 * Thread safety: objects are not thread-safe; use one sampler per thread. The last-error
 * message (bt_last_error) is per thread.
 */
#ifndef BACKTRACK_H
#define BACKTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BT_VERSION "0.2.0"

typedef int32_t bt_token;

/* printf-style checking of format strings where the compiler has it */
#if defined(__GNUC__) || defined(__clang__)
#define BT_PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))
#else
#define BT_PRINTF_FMT(f, a)
#endif

/* ==========================================================================
 * 1. Status codes, errors and logging
 * ========================================================================== */

/* Every function that can fail returns one of these (0 on success). A failing call also
 * sets a one-line message for the calling thread, readable with bt_last_error(). */
enum bt_status {
    BT_OK                = 0,
    BT_ERR_INVALID_ARG   = -1, /* a parameter is NULL, NaN or out of range       */
    BT_ERR_NOMEM         = -2, /* an allocation failed                            */
    BT_ERR_IO            = -3, /* a file is missing, unreadable or a directory    */
    BT_ERR_MODEL         = -4, /* the file is not a model the backend can load    */
    BT_ERR_PROVIDER      = -5, /* the backend failed to evaluate or rewind        */
    BT_ERR_CONTEXT_FULL  = -6, /* the prompt or the text no longer fits n_ctx     */
    BT_ERR_UTF8          = -7, /* text that must be UTF-8 is not                  */
    BT_ERR_STRATEGY      = -8, /* a strategy reported a failure                   */
    BT_ERR_UNSUPPORTED   = -9, /* the backend cannot do this (e.g. partial rewind) */
    BT_ERR_PARSE         = -10 /* a phrase list, option or number cannot be parsed */
};

/* The name of a status code ("BT_ERR_IO"), never NULL. */
const char *bt_status_name(int status);

/* The message of the last failing call on this thread ("" if none). The pointer stays
 * valid until the next failing call on this thread. */
const char *bt_last_error(void);

enum bt_log_level { BT_LOG_DEBUG = 0, BT_LOG_INFO = 1, BT_LOG_WARN = 2, BT_LOG_ERROR = 3 };

/* Receives every line the library wants to show (it never prints by itself). `msg` has
 * no trailing newline and is valid only during the call. */
typedef void (*bt_log_fn)(void *user, int level, const char *msg);

/* Install the process-wide log callback (NULL: silence, the default). */
void bt_log_set(bt_log_fn fn, void *user);

/* ==========================================================================
 * 2. Candidates
 *
 * At every step the sampler turns the model's logits into a candidate list: the tokens
 * that survived the filters (min_p, top_k, top_p), with their logit and probability.
 * The list is a compact array, not the whole vocabulary, so the per-token work stays
 * proportional to the vocabulary (one pass), never to its sorted order.
 *
 * Order: after the filters, the list is in descending order of probability for its
 * first `n_sorted` entries; the rest (only when no filter limited the list) are in no
 * particular order. bt_candidates_sort_top() sorts as many as a strategy needs.
 *
 * A strategy may read and change the probability of ANY token, even one the filters
 * dropped: bt_candidates_set_p() appends it. Probabilities need not sum to 1; the draw
 * is proportional to them.
 * ========================================================================== */

typedef struct bt_candidate {
    bt_token id;
    float    logit; /* after temperature and strategies' on_logits; -INFINITY if appended */
    float    p;     /* probability (softmax over the surviving candidates)                */
} bt_candidate;

typedef struct bt_candidates {
    bt_candidate *data;     /* `n` entries                                              */
    int32_t       n;
    int32_t       n_sorted; /* data[0..n_sorted) is sorted by p, descending, and holds
                               the most probable tokens                                  */
    int32_t       n_vocab;  /* capacity: a token id is in [0, n_vocab)                   */
    int32_t      *pos_;     /* private: pos_[id] = index in data, or -1, built on first
                               lookup (most steps never need it)                         */
    int32_t       indexed_; /* private: pos_ reflects data                               */
} bt_candidates;

/* Probability of `id` in the list, 0 if absent or out of range. O(1). */
float bt_candidates_get_p(const bt_candidates *c, bt_token id);

/* Set the probability of `id` (p >= 0), appending it if absent. O(1).
 * Returns BT_ERR_INVALID_ARG for an id outside the vocabulary or a negative/NaN p. */
int bt_candidates_set_p(bt_candidates *c, bt_token id, float p);

/* Make data[0..k) the k most probable candidates in descending order of p (partial
 * selection: O(n + k log k)). Returns min(k, n). */
int32_t bt_candidates_sort_top(bt_candidates *c, int32_t k);

/* The number m of most probable candidates whose cumulative probability first reaches
 * `mass` (at least 1 when n > 0), leaving data[0..m) sorted in descending order. `mass`
 * is relative to the sum of all p. Expected O(n + m log m). */
int32_t bt_candidates_top_mass(bt_candidates *c, float mass);

/* ==========================================================================
 * 3. Providers: model backends
 *
 * A provider holds one token sequence (the prompt plus the continuation) and returns the
 * next-token logits after it. Implement bt_provider_i to add a backend; bt_provider_init
 * wraps your vtable and context.
 * ========================================================================== */

typedef struct bt_provider bt_provider;

/* What one eval call cost the model: how many positions it evaluated, from which. */
typedef struct bt_eval_info {
    int32_t n_evaluated; /* positions run through the model by this call (0 if reused) */
    int32_t first_pos;   /* first position evaluated (meaningful when n_evaluated > 0) */
} bt_eval_info;

typedef struct bt_provider_i {
    const char *name; /* required: "llama.cpp", "scripted", ... */

    /* required: vocabulary size; token ids are in [0, n_vocab). */
    int32_t (*n_vocab)(void *ctx);

    /* required: the longest sequence (prompt + continuation) the provider can hold. */
    int32_t (*n_ctx)(void *ctx);

    /* required: tokenize `len` bytes of UTF-8 `text` into out[0..cap). add_special adds
     * BOS (or what the model's metadata asks for); parse_special turns "<|...|>" text into
     * special tokens. Sets *n_out to the number of tokens; if that exceeds cap, returns
     * BT_ERR_INVALID_ARG with *n_out the size needed and nothing else valid. */
    int (*tokenize)(void *ctx, const char *text, size_t len, bool add_special,
                    bool parse_special, bt_token *out, int32_t cap, int32_t *n_out);

    /* required: the bytes a token contributes to the text (special tokens: ""). The bytes
     * stay owned by the provider and valid until it is freed, at the same address and
     * with the same length for every call (the phrase matchers keep the pointers). Not
     * NUL-terminated. */
    int (*token_text)(void *ctx, bt_token id, const char **bytes, size_t *len);

    /* required: true if `id` ends the generation (EOS, EOT, ...). */
    bool (*is_eog)(void *ctx, bt_token id);

    /* required: make the provider's sequence equal seq[0..n) and return the logits
     * (n_vocab floats) after position n-1. The caller guarantees that seq starts with the
     * sequence the provider already holds, so only the new positions are evaluated. The
     * logits stay owned by the provider, valid until its next eval, rewind or reset. The
     * same sequence gives the same logits (a draw again at a position may reuse what the
     * filters made of them, when they come at the same address). `info` may be NULL.
     * BT_ERR_CONTEXT_FULL when n > n_ctx. */
    int (*eval)(void *ctx, const bt_token *seq, int32_t n, const float **logits,
                bt_eval_info *info);

    /* required: remove the last n positions of the held sequence (0 <= n <= held). */
    int (*rewind)(void *ctx, int32_t n);

    /* can be NULL: forget the held sequence (start of a new generation). */
    void (*reset)(void *ctx);

    /* can be NULL: free ctx and everything the provider owns. */
    void (*free)(void *ctx);

    /* Prompt reuse across generations. A provider that keeps its sequence (and KV cache)
     * after a generation implements all three; then the next generation evaluates only
     * what differs from the longest common prefix (see bt_sampler_params.cache_prompt).
     * All can be NULL: every generation then starts from reset. */

    /* can be NULL: the sequence held now; *tokens stays valid until the next eval,
     * rewind, reset or begin. Returns its length. */
    int32_t (*held)(void *ctx, const bt_token **tokens);

    /* can be NULL: a generation starts on the first `keep` held positions
     * (0 <= keep <= held): drop the rest, and take the last position of the next eval as
     * the end of the prompt (whose logits are kept apart for rewinds). Returns the
     * positions actually kept (a provider that cannot cut its cache there may keep fewer,
     * down to 0), or a negative status. */
    int32_t (*begin)(void *ctx, int32_t keep);

    /* can be NULL: the generation ended; keep the held sequence for the next begin, but
     * expect no eval until then (a pool stops waiting for this member's next step). */
    void (*end)(void *ctx);
} bt_provider_i;

struct bt_provider {
    const bt_provider_i *iface; /* borrowed: usually a static const table */
    void                *ctx;   /* owned: freed by iface->free            */
    uint64_t             serial_; /* private: unique per bt_provider_init, never reused
                                     (caches keyed on a provider must not trust its
                                     address, which a later provider may get)         */
    size_t               max_token_len_; /* private: the longest token's bytes, found by
                                            the first sampler made on it (0: not yet) */
};

/* Wrap a vtable and its context. Returns NULL (and sets the last error) if a required slot
 * is missing or memory runs out; ctx is NOT freed in that case. The result owns ctx. */
bt_provider *bt_provider_init(const bt_provider_i *iface, void *ctx);

/* Free the provider and its ctx. NULL is a no-op. */
void bt_provider_free(bt_provider *p);

/* Convenience wrappers over the vtable. */
int32_t bt_provider_n_vocab(const bt_provider *p);
int32_t bt_provider_n_ctx(const bt_provider *p);
bool    bt_provider_is_eog(const bt_provider *p, bt_token id);
/* The bytes of token `id` (not NUL-terminated, owned by the provider). On failure (an id
 * outside the vocabulary, a provider error) *bytes is "" and *len 0, so a caller that
 * only shows the text may ignore the status. */
int     bt_provider_token_text(const bt_provider *p, bt_token id, const char **bytes,
                               size_t *len);

/* Forget the held sequence and its cache (the next generation starts cold). NULL-safe. */
void bt_provider_reset(bt_provider *p);

/* The number of leading tokens of toks[0..n) the provider still holds from the last
 * generation: what the next generation on that prompt takes from the cache (at most
 * n - 1: the prompt's last token is always evaluated). 0 for a provider without reuse.
 * Read-only; use it to route a prompt to the provider that holds most of it, never while
 * a generation runs on that provider. */
int32_t bt_provider_cached_prefix(const bt_provider *p, const bt_token *toks, int32_t n);

/* Tokenize into a new array (*out owned by the caller, free() it). add_special and
 * parse_special as in bt_provider_i.tokenize. Checks that text is valid UTF-8. */
int bt_provider_tokenize(bt_provider *p, const char *text, size_t len, bool add_special,
                         bool parse_special, bt_token **out, int32_t *n_out);

/* ==========================================================================
 * 4. Strategies
 *
 * A strategy mirrors the original BaseStrategy. At each step the sampler calls, in
 * order: on_logits (change scores), on_probs (change probabilities), then, after the draw,
 * on_next_token, backtrack (how many tokens to undo), on_rewind (if tokens were undone,
 * by this strategy or another one of a chain) and keep_index (how many tokens are final
 * and may be released to the caller). Every slot but `name` can be NULL.
 *
 * To write one: fill a static bt_strategy_i, keep your state in a struct, and return
 * bt_strategy_init(&iface, state). See src/strategies/debug.c for a 60-line example.
 * ========================================================================== */

typedef struct bt_strategy bt_strategy;

/* What a strategy sees of the generation. Valid only during the callback. */
typedef struct bt_view {
    const bt_token *tokens;     /* the continuation so far (prompt excluded)             */
    int32_t         n_tokens;
    const bt_token *prompt;     /* the prompt tokens                                      */
    int32_t         n_prompt;
    int32_t         n_released; /* tokens already delivered to the caller: never undone   */
    int32_t         max_tokens; /* n_tokens never exceeds this in this generation         */
    int32_t         n_vocab;
    bt_provider    *provider;   /* for token_text / tokenize / is_eog                    */
    bool            at_end;     /* in on_next_token / backtrack / keep_index: the text
                                   ends after this token (end-of-generation token,
                                   max_new_tokens or max_length) unless the strategy
                                   rewinds; decide now what waits for more text         */
    void           *obs_;       /* private: the sampler's observer state, or NULL         */
} bt_view;

typedef struct bt_strategy_i {
    const char *name; /* required: shown in logs */

    /* can be NULL. Called once before the first step of every generation; the place to
     * allocate per-position state (v->max_tokens bounds it). Non-zero aborts generation. */
    int (*begin)(bt_strategy *s, const bt_view *v);

    /* can be NULL. Change the full logit vector (v->n_vocab floats, temperature already
     * applied) for the next token. Set a token to -INFINITY to ban it here. */
    void (*on_logits)(bt_strategy *s, const bt_view *v, float *logits);

    /* can be NULL. Change the candidates' probabilities after the filters and softmax. */
    void (*on_probs)(bt_strategy *s, const bt_view *v, bt_candidates *c);

    /* can be NULL. The drawn token is v->tokens[v->n_tokens - 1]; `c` is what it was
     * drawn from. */
    void (*on_next_token)(bt_strategy *s, const bt_view *v, const bt_candidates *c);

    /* can be NULL (never rewinds). Returns how many tokens to remove from the end of the
     * continuation, 0 for none. The sampler clamps it to the unreleased tokens. */
    int32_t (*backtrack)(bt_strategy *s, const bt_view *v);

    /* can be NULL. Called after every rewind, whoever asked for it (in a chain: for every
     * member, in order, also the one that asked): the last n tokens are gone and `v` shows
     * the shortened continuation (v->n_tokens is the position of the next draw). The place
     * to forget per-position state about the removed text, so that a strategy never acts
     * on a position that another strategy undid. */
    void (*on_rewind)(bt_strategy *s, const bt_view *v, int32_t n);

    /* can be NULL (everything is final at once). The number of leading continuation tokens
     * that can no longer be undone; the sampler releases them. Clamped to
     * [n_released, n_tokens]. */
    int32_t (*keep_index)(bt_strategy *s, const bt_view *v);

    /* can be NULL. Called after every generation; forget per-generation state. */
    void (*reset)(bt_strategy *s);

    /* can be NULL. Free the strategy's state (ctx). */
    void (*free)(bt_strategy *s);
} bt_strategy_i;

struct bt_strategy {
    const bt_strategy_i           *iface; /* borrowed */
    void                          *ctx;   /* owned: freed by iface->free */
    const struct bt__strategy_ext *ext_;  /* private: a built-in strategy's fast paths
                                             (NULL for yours; set by the library)     */
};

/* Wrap a vtable and its state. NULL on a missing name or out of memory (ctx not freed).
 * The result owns ctx. */
bt_strategy *bt_strategy_init(const bt_strategy_i *iface, void *ctx);

/* Free the strategy and its state. NULL is a no-op. */
void bt_strategy_free(bt_strategy *s);

/* ==========================================================================
 * 5. The sampler
 *
 * The loop, per step (see docs in README.md, "How the loop works"):
 *   logits = provider.eval(prompt + continuation)      only new positions are evaluated
 *   logit_bias, then the repetition penalties          (only when set; as llama.cpp)
 *   logits /= max(temperature, 1e-4); strategy.on_logits
 *   filters min_p, top_k, top_p; softmax; strategy.on_probs
 *   draw (seeded); strategy.on_next_token
 *   n = strategy.backtrack -> provider.rewind(n)       the prompt is never evaluated again
 *       strategy.on_rewind(n)
 *   release tokens before strategy.keep_index
 *   stop on end-of-generation, max_new_tokens, max_length, the step cap or the caller.
 * ========================================================================== */

typedef struct bt_sampler bt_sampler;

#define BT_SEED_RANDOM UINT64_MAX

/* One entry of bt_sampler_params.logit_bias: `bias` is added to the logit of `token`
 * (llama.cpp's llama_logit_bias). -INFINITY bans the token, +INFINITY forces it. */
typedef struct bt_logit_bias {
    bt_token token;
    float    bias;
} bt_logit_bias;

/* Repetition penalties and logit bias (llama.cpp's llama_sampler_init_penalties and
 * llama_sampler_init_logit_bias, same names and arithmetic, same place in the chain).
 * They change the model's raw logits before anything else, in this order:
 *   1. logit_bias: logit[token] += bias, for every entry (entries for one token add up);
 *   2. penalties, for every token seen c > 0 times in the last repeat_last_n tokens of
 *      the sequence: logit = logit <= 0 ? logit * repeat_penalty : logit / repeat_penalty,
 *      then logit -= c * frequency_penalty + presence_penalty;
 * then temperature, the strategy's on_logits (which sees the changed logits), the filters.
 * The window is the sequence the provider holds: the prompt's tokens count (BOS included),
 * as llama-server feeds every prompt token to its penalty sampler, followed by the
 * continuation as it stands now. The counts are rebuilt from that window at every step,
 * so a rewind restores them exactly: a discarded token never counts. Cost: nothing when
 * off; when on, O(repeat_last_n + n_logit_bias) per token, no copy of the vocabulary
 * (the provider's logits are never written) and no allocation per token. */

typedef struct bt_sampler_params {
    float    temperature;    /* 1.0; >= 0 (0 is taken as 1e-4: near greedy)              */
    int32_t  top_k;          /* 50 (HF's default); 0 disables                             */
    float    top_p;          /* 1.0 (off); in (0, 1]                                      */
    float    min_p;          /* 0.0 (off); in [0, 1]                                      */
    uint64_t seed;           /* BT_SEED_RANDOM: from the clock (reported in the stats)    */
    int32_t  max_new_tokens; /* 256; the continuation never grows longer; 0: no limit    */
    int32_t  max_length;     /* 0 (n_ctx); prompt + continuation never grows longer      */
    int64_t  max_steps;      /* 0: 8 * min(max_new_tokens, room in n_ctx) + 64;
                                hard cap on draws, so no strategy can loop for ever      */
    bool     add_special;    /* true: add BOS etc. as the model's metadata asks          */
    bool     parse_special;  /* true: "<|im_start|>"-style text in the prompt is special */
    bool     cache_prompt;   /* true: reuse what the provider still holds from the last
                                generation: only the tokens after the longest common
                                prefix of that sequence and the new prompt are evaluated
                                (stats: n_prompt_cached). false: start cold, and leave
                                nothing behind for the next generation. Note: llama.cpp's
                                kernels are not batch-invariant (logits differ by ~1e-3
                                when a prefix was computed in other batch shapes), so a
                                sampled text can, rarely, differ from a cold run's with
                                the same seed; set false where bytes must repeat      */
    /* Appended (ABI: new fields only ever go at the end). Defaults: all off. */
    float    repeat_penalty;    /* 1.0 (off); finite, > 0: a repeated token's logit is
                                   divided by it (if > 0) or multiplied (if <= 0)         */
    int32_t  repeat_last_n;     /* 64: the tokens the penalties look back over (prompt
                                   included); 0: penalties off; -1: the whole context     */
    float    frequency_penalty; /* 0.0 (off); finite: minus count x this (< 0 favours
                                   repeats)                                              */
    float    presence_penalty;  /* 0.0 (off); finite: minus this once a token appeared   */
    const bt_logit_bias *logit_bias; /* NULL (none): n_logit_bias entries, copied by
                                   bt_sampler_init (the array may go away after it);
                                   tokens in [0, n_vocab), biases not NaN               */
    int32_t  n_logit_bias;      /* 0; >= 0                                                */
} bt_sampler_params;

bt_sampler_params bt_sampler_default_params(void);

/* Why a generation ended. */
enum bt_stop_reason {
    BT_STOP_NONE = 0,
    BT_STOP_EOG,            /* the model produced an end-of-generation token */
    BT_STOP_MAX_NEW_TOKENS,
    BT_STOP_MAX_LENGTH,     /* max_length or n_ctx reached                  */
    BT_STOP_STEP_CAP,       /* max_steps draws done: a strategy kept rewinding */
    BT_STOP_CALLER,         /* the release callback asked to stop           */
    BT_STOP_ERROR           /* see the return code                          */
};

const char *bt_stop_reason_name(int reason);

typedef struct bt_stats {
    int32_t  n_prompt;             /* prompt tokens                                     */
    int64_t  n_released;           /* tokens delivered to the caller                    */
    int64_t  n_discarded;          /* tokens removed by rewinds                         */
    int64_t  n_rewinds;            /* rewinds (backtracks that removed >= 1 token)      */
    int64_t  n_steps;              /* draws                                             */
    int64_t  n_evaluated;          /* positions the model evaluated (prompt included)  */
    int64_t  n_eval_calls;         /* provider eval calls that ran the model            */
    int64_t  n_prompt_reevaluated; /* prompt positions evaluated twice within this
                                      generation (always 0)                            */
    int64_t  n_dead_ends;          /* steps where strategies left no candidate: the
                                      strategy-free distribution was used instead       */
    int      stop_reason;          /* enum bt_stop_reason                               */
    uint64_t seed;                 /* the seed actually used                            */
    double   t_prompt_ms;          /* time to evaluate the prompt                       */
    double   t_total_ms;           /* wall time of the whole generation                 */
    int32_t  n_prompt_cached;      /* prompt tokens taken from the provider's cache
                                      (the previous generation's), not evaluated       */
} bt_stats;

/* Called for every released token, in order. `text` holds the bytes that became
 * complete UTF-8 with this token (may be empty when a character spans tokens; invalid
 * bytes come out as U+FFFD), valid only during the call. When a generation ends with an
 * incomplete character already released, one last call with id -1 carries it as U+FFFD.
 * Return non-zero to stop. */
typedef int (*bt_release_fn)(void *user, bt_token id, const char *text, size_t len);

/* Create a sampler. Borrows `provider` and `strategy` (NULL: no strategy): both must
 * outlive the sampler. Validates params. NULL on error (see bt_last_error). */
bt_sampler *bt_sampler_init(bt_provider *provider, bt_strategy *strategy,
                            const bt_sampler_params *params);

/* Free the sampler (not the provider or strategy). NULL is a no-op. */
void bt_sampler_free(bt_sampler *s);

/* Ask the generation running on s (or, if none runs, the next one) to end at its next
 * step, as if the release callback had returned non-zero (stop_reason BT_STOP_CALLER):
 * even when a strategy holds all text back and no callback comes. The only function
 * that may be called from another thread while s generates. */
void bt_sampler_cancel(bt_sampler *s);

/* Generate from a UTF-8 prompt. `on_release` may be NULL. `stats` may be NULL; it is
 * filled even on failure. Returns BT_OK when the generation ended normally (including
 * BT_STOP_STEP_CAP and BT_STOP_CALLER, see stats->stop_reason), or an error code. Tokens
 * released before an error were delivered. */
int bt_generate(bt_sampler *s, const char *prompt, size_t prompt_len,
                bt_release_fn on_release, void *user, bt_stats *stats);

/* The same from prompt tokens (no tokenization). */
int bt_generate_tokens(bt_sampler *s, const bt_token *prompt, int32_t n_prompt,
                       bt_release_fn on_release, void *user, bt_stats *stats);

/* ---- Observing a generation: traces, live views, logprobs ----
 *
 * An observer sees every step of a generation as it happens: each draw with its
 * probability and the alternatives it was drawn from, each rewind with the strategy that
 * asked and why, the bans and forced tokens strategies place, each release, the end.
 * `backtrack --trace` writes these events as JSON Lines, `--live` draws them, the server
 * turns them into logprobs. With no observer set, nothing is computed or formatted: the
 * per-token cost is one branch.
 *
 * Order within a step: DRAW (after on_next_token), then any BAN / FORCE events the
 * strategies report, then REWIND if tokens were undone, then RELEASE if tokens became
 * final. A FORCE reported from on_probs precedes the DRAW it forces. */

enum bt_event_type {
    BT_EVENT_BEGIN = 1, /* the generation starts: n = prompt tokens, pos = 0,
                           token = prompt tokens taken from the cache (n_prompt_cached),
                           stats: n_prompt, n_prompt_cached and seed are set          */
    BT_EVENT_DRAW,      /* `token` drawn at continuation position `pos`, with probability
                           `p` in the distribution it was drawn from (after strategies,
                           normalised to sum 1); top[0..n_top) its most probable entries */
    BT_EVENT_REWIND,    /* `n` tokens undone; the continuation is now `pos` tokens long;
                           `strategy` asked for it, `reason` says why ("" if unknown) */
    BT_EVENT_BAN,       /* `strategy` will scale `token`'s probability at position `pos`
                           by `p` (0: banned outright) the next time a token is drawn there */
    BT_EVENT_FORCE,     /* `strategy` forces `token` at position `pos`                      */
    BT_EVENT_RELEASE,   /* continuation tokens [pos, pos + n) became final: text[0..text_len)
                           is what the release callback got for them (token: the last) */
    BT_EVENT_END        /* the generation ended: `stats` (stop_reason and counts) */
};

typedef struct bt_event {
    int                 type;     /* enum bt_event_type                                   */
    int64_t             step;     /* draws made so far in this generation (a DRAW counts
                                     itself: the first DRAW has step 1)                  */
    int32_t             pos;      /* continuation position (see each type)                */
    int32_t             n;        /* REWIND, RELEASE, BEGIN: a count (see each type)      */
    bt_token            token;
    float               p;        /* DRAW: probability; BAN: the factor (0: hard ban)      */
    const bt_candidate *top;      /* DRAW: the n_top most probable candidates, p
                                     normalised, descending; logit as the filters saw it  */
    int32_t             n_top;
    const char         *strategy; /* REWIND, BAN, FORCE: the acting strategy's name        */
    const char         *reason;   /* REWIND, BAN, FORCE: a short reason, "" if none         */
    const char         *text;     /* RELEASE: the released text (UTF-8)                     */
    size_t              text_len;
    const bt_stats     *stats;    /* END (final), BEGIN (seed and prompt counts only)        */
} bt_event;

/* Called for every event, on the generating thread. Everything `ev` points to is valid
 * only during the call. Must not call back into the sampler (bt_sampler_cancel aside). */
typedef void (*bt_observer_fn)(void *user, const bt_event *ev);

/* Install (fn != NULL) or remove (fn == NULL) the observer of s. n_top in [0, 64]: how
 * many alternatives DRAW events carry. Not while s generates. BT_ERR_INVALID_ARG. */
int bt_sampler_set_observer(bt_sampler *s, bt_observer_fn fn, void *user, int32_t n_top);

/* For strategies: explain what you do, for the observer (no-ops without one, so they are
 * free to call; bt_view_observed() tells whether formatting a reason is worth it).
 *   bt_view_note_rewind: call in backtrack() just before returning n > 0 (in a chain the
 *     last note before the rewind wins, i.e. the member that asked);
 *   bt_view_note_ban:    a ban (factor 0) or soft ban (factor in (0, 1)) of `token` at
 *     continuation position `pos`;
 *   bt_view_note_force:  `token` is forced at `pos`.
 * `reason` is printf-style, truncated to 255 bytes. */
bool bt_view_observed(const bt_view *v);
void bt_view_note_rewind(const bt_view *v, const bt_strategy *s, const char *fmt, ...)
    BT_PRINTF_FMT(3, 4);
void bt_view_note_ban(const bt_view *v, const bt_strategy *s, int32_t pos, bt_token token,
                      float factor, const char *fmt, ...) BT_PRINTF_FMT(6, 7);
void bt_view_note_force(const bt_view *v, const bt_strategy *s, int32_t pos, bt_token token,
                        const char *fmt, ...) BT_PRINTF_FMT(5, 6);

/* ==========================================================================
 * 6. Built-in providers and strategies
 * ========================================================================== */

/* ---- llama.cpp provider (src/providers/llama.c) ---- */

typedef struct bt_llama_params {
    const char *model_path;    /* required: a GGUF file                                  */
    int32_t     n_ctx;         /* 0: the model's training context, at most 4096          */
    int32_t     n_batch;       /* 512: prompt tokens per llama_decode                    */
    int32_t     n_threads;     /* 0: the CPUs this process may run on (1 for models under
                                  64 MiB, whose steps are too short to split)            */
    int32_t     n_gpu_layers;  /* 0; -1 for all (needs a GPU build of llama.cpp)         */
    int32_t     logits_window; /* 32: logits kept for the last positions, so a rewind of
                                  up to this many tokens costs no model evaluation; a
                                  deeper rewind re-decodes one token. 0: always re-decode.
                                  Memory: (max(window, 1) + 1) x vocabulary floats per
                                  sequence (the ring, and the prompt end's logits; the
                                  logits handed out are always the provider's own copy,
                                  never llama.cpp's buffer)                              */
    bool        verbose;       /* false: llama.cpp's own log is silent                    */
    const char *backend_dir;   /* NULL: $BT_GGML_BACKEND_DIR, else the folder libllama was
                                  loaded from (the ggml CPU backends sit beside it)       */
    const char *rpc_servers;   /* NULL: none. "host:port[,host:port...]": llama.cpp's RPC
                                  workers (rpc-server); layers go to them with
                                  n_gpu_layers. Needs a libllama whose ggml has the RPC
                                  backend (scripts/get-llama.sh with BT_LLAMA_RPC=1)      */
} bt_llama_params;

bt_llama_params bt_llama_default_params(void);

/* Load a model. NULL on error with a one-line reason in bt_last_error(): the file is
 * missing, a directory, empty, not GGUF, truncated or otherwise unloadable. */
bt_provider *bt_llama_provider_init(const bt_llama_params *params);

/* A pool: n providers on ONE llama.cpp context (one sequence each, n_ctx tokens each),
 * for n threads generating at once. Their evaluations are gathered into one llama_decode
 * per step (batched decoding) by a thread of the pool; rewinds stay per sequence. Use
 * each member from one thread at a time. NULL on error. */
typedef struct bt_llama_pool bt_llama_pool;
bt_llama_pool *bt_llama_pool_init(const bt_llama_params *params, int32_t n);

/* Member i (borrowed: owned by the pool, never bt_provider_free it). */
bt_provider *bt_llama_pool_provider(bt_llama_pool *pool, int32_t i);
int32_t      bt_llama_pool_size(const bt_llama_pool *pool);

/* Free the pool and its members (no member may be generating). NULL is a no-op. */
void bt_llama_pool_free(bt_llama_pool *pool);

typedef struct bt_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} bt_chat_message;

/* Apply a chat template to n messages and add the assistant prefix. tmpl_name: NULL for
 * the model's own template, or one of llama.cpp's built-in names ("chatml", "llama3",
 * "mistral-v7", ...). *out is a new NUL-terminated string (free() it). BT_ERR_UNSUPPORTED
 * without a template or for a provider that is not llama.cpp's. */
int bt_llama_chat_messages(bt_provider *p, const char *tmpl_name, const bt_chat_message *msgs,
                           int32_t n, char **out);

/* Wrap `user_text` as a single user message with the model's own chat template and the
 * assistant prefix. *out is a new NUL-terminated string (free() it). BT_ERR_UNSUPPORTED if
 * the model has no chat template or `p` is not a llama.cpp provider. */
int bt_llama_chat_prompt(bt_provider *p, const char *user_text, char **out);

/* ---- scripted provider, for tests (src/providers/scripted.c) ----
 * A tiny deterministic model: the logits come from a callback. Tokenization is greedy
 * longest match over the token strings. */

typedef void (*bt_scripted_logits_fn)(void *user, const bt_token *seq, int32_t n,
                                      float *logits, int32_t n_vocab);

typedef struct bt_scripted_params {
    int32_t               n_vocab;   /* required                                         */
    const char *const    *tokens;    /* required: n_vocab token strings ("" allowed)     */
    bt_token              eos;       /* the end token; -1: none                          */
    int32_t               n_ctx;     /* 4096                                             */
    bt_scripted_logits_fn logits;    /* required                                         */
    void                 *user;
} bt_scripted_params;

bt_scripted_params bt_scripted_default_params(void);

/* Copies the token strings. NULL on invalid params. */
bt_provider *bt_scripted_provider_init(const bt_scripted_params *params);

/* ---- strategies (src/strategies/) ---- */

/* Releases every token at once and never rewinds: plain sampling. */
bt_strategy *bt_noop_strategy_init(void);

/* The original's Debug: before each draw, logs the two most probable candidates and their
 * probabilities (one line through `emit`, or the log callback at BT_LOG_INFO when NULL).
 * Never rewinds. */
typedef struct bt_debug_params {
    void (*emit)(void *user, const char *line); /* NULL: bt_log at BT_LOG_INFO */
    void *user;
} bt_debug_params;

bt_debug_params bt_debug_default_params(void);
bt_strategy *bt_debug_strategy_init(const bt_debug_params *params);

/* ---- phrase lists (src/strategies/phrase_list.c) ----
 * Phrases to ban, each with an adjustment: 0 bans it outright (hard); a factor in (0, 1)
 * multiplies the probability of the phrase's first token instead (soft). */

typedef struct bt_phrase_list bt_phrase_list;

bt_phrase_list *bt_phrase_list_new(void);
void bt_phrase_list_free(bt_phrase_list *l);

/* Add one phrase (UTF-8, non-empty). adjustment: 0 (hard ban) or in (0, 1] (1: no
 * effect, the phrase is kept but never acted on). BT_ERR_UTF8 / BT_ERR_INVALID_ARG. */
int bt_phrase_list_add(bt_phrase_list *l, const char *phrase, size_t len, float adjustment);

/* Load a file into a new list. Formats, recognised by content:
 *   - a JSON array of strings: ["phrase", ...]                     (hard bans)
 *   - a JSON array of [phrase, number] pairs (../shared/slop/ files): numbers in (0, 1]
 *     are adjustments (soft bans); if any number is above 1 they are counts (hard bans)
 *   - otherwise one phrase per line (blank lines skipped; CRLF accepted)  (hard bans)
 * hard: treat every phrase as a hard ban whatever the file says.
 * Errors: BT_ERR_IO (missing file), BT_ERR_PARSE (bad JSON, line given), BT_ERR_UTF8. */
int bt_phrase_list_load(const char *path, bool hard, bt_phrase_list **out);

int32_t     bt_phrase_list_size(const bt_phrase_list *l);
const char *bt_phrase_list_phrase(const bt_phrase_list *l, int32_t i);
float       bt_phrase_list_adjustment(const bt_phrase_list *l, int32_t i);

/* Regular expressions, one per line, each optionally in double quotes with a trailing
 * comma (the format of ../shared/slop/slop_regexes.txt); lines starting with # and blank
 * lines are skipped. *out is a new array of n strings (free with bt_strings_free). */
int  bt_regex_list_load(const char *path, char ***out, int32_t *n);
void bt_strings_free(char **list, int32_t n);

/* ---- AntiSlop (src/strategies/antislop.c) ----
 * Bans phrases: when one appears in the decoded text, rewinds to the token containing its
 * first byte and bans that token at that position only (hard), or multiplies its
 * probability there by the phrase's adjustment (soft). Matching is on text, so a phrase is
 * caught however the model splits it into tokens; with variants on it is Unicode
 * case-insensitive (the original's variants: as is, lower, Capitalized, UPPER, with or
 * without a leading space, and more). Text is held back only while it could still become
 * part of a match (plus keep_index_buffer tokens, the room to rewind further at a dead
 * end). The per-token cost does not depend on the number of phrases. */

typedef struct bt_antislop_params {
    const bt_phrase_list *phrases;       /* borrowed during init (copied); may be NULL  */
    const char *const    *regexes;       /* PCRE2 patterns, hard bans; may be NULL      */
    int32_t               n_regexes;
    int32_t               keep_index_buffer; /* 5: extra tokens held back              */
    bool                  with_variants; /* true: case-insensitive, Unicode case folding */
    bool                  whole_word;    /* true: Unicode word boundaries; false: a phrase
                                            may match inside a word                      */
    int32_t               skip_tokens;   /* 0: matches starting in the first N tokens of
                                            the continuation are ignored                 */
    int32_t               max_retries_per_position; /* 20: bans at one position before the
                                            strategy rewinds one token further (or lets
                                            the phrase through if it cannot)             */
    int32_t               max_retries_total; /* 1000: after this many bans in one
                                            generation, phrases are let through          */
} bt_antislop_params;

bt_antislop_params bt_antislop_default_params(void);

/* NULL on error: no phrase and no regex, invalid regex (the message names it), bad
 * numbers, out of memory. */
bt_strategy *bt_antislop_strategy_init(const bt_antislop_params *params);

/* What AntiSlop did in the last (or current) generation. */
typedef struct bt_antislop_stats {
    int64_t matches;        /* phrase or regex matches found                         */
    int64_t hard_bans;      /* tokens banned at a position                            */
    int64_t soft_bans;      /* probabilities scaled at a position                     */
    int64_t rewound_further;/* per-position limit hit: rewound one more token         */
    int64_t let_through;    /* matches allowed (limits hit, or soft ban re-chosen)    */
} bt_antislop_stats;

/* BT_ERR_INVALID_ARG if s is not an AntiSlop strategy. */
int bt_antislop_get_stats(const bt_strategy *s, bt_antislop_stats *out);

/* ---- Replace (src/strategies/replace.c) ----
 * Find and replace while generating (vgel's R1 "overthinking" trick, generalised): when a
 * `find` string appears in the text (exact bytes), rewind to the token holding its first
 * byte and force the tokens of `replace` there, one per step. A replacement happens only
 * while fewer than max_replacements were made, the text is shorter than
 * max_new_tokens_for_replace tokens, the match starts after skip_tokens, and the model's
 * probability for the first replaced token was <= max_prob (otherwise the text stays). */

typedef struct bt_replace_params {
    const char *const *find;        /* required: n_find non-empty UTF-8 strings          */
    int32_t            n_find;
    const char        *replace;     /* required: non-empty UTF-8 ("special" text such as
                                       "<think>" becomes the special token)             */
    int32_t            max_replacements;           /* -1: unlimited (the default)     */
    int32_t            max_new_tokens_for_replace; /* -1: unlimited (the default)     */
    int32_t            skip_tokens;                /* 0                               */
    float              max_prob;                   /* 1.0                             */
} bt_replace_params;

bt_replace_params bt_replace_default_params(void);
bt_strategy *bt_replace_strategy_init(const bt_replace_params *params);

/* Replacements made in the last (or current) generation, -1 if s is not Replace. */
int32_t bt_replace_count(const bt_strategy *s);

/* ---- CreativeWriting (src/strategies/creative_writing.c) ----
 * The original's rules: ban the most probable token (unless it ends the text); where the
 * distribution is flat (>= top_k_threshold_flat tokens needed to reach top_p_flat) and the
 * last off-argmax pick was not the argmax, rewind there and take the argmax of the
 * adjusted distribution instead; end-of-generation probability times eos_penalty. */

typedef struct bt_creative_writing_params {
    float   top_p_flat;           /* 0.65 */
    int32_t top_k_threshold_flat; /* 9    */
    float   eos_penalty;          /* 0.8  */
} bt_creative_writing_params;

bt_creative_writing_params bt_creative_writing_default_params(void);
bt_strategy *bt_creative_writing_strategy_init(const bt_creative_writing_params *params);

/* ---- AdaptiveTemperature (src/strategies/adaptive_temperature.c) ----
 * Scales the logits by beta(H), H the entropy (nats) of softmax(logits):
 * beta = c0 H^4 + c1 H^3 + c2 H^2 + c3 H + c4; beta = 1 if H <= 0.5, else max(beta, 1).
 * Never rewinds. */

typedef struct bt_adaptive_temperature_params {
    float coeffs[5]; /* -0.037, 0.481, -2.3, 4.917, -1.791 */
} bt_adaptive_temperature_params;

bt_adaptive_temperature_params bt_adaptive_temperature_default_params(void);
bt_strategy *bt_adaptive_temperature_strategy_init(const bt_adaptive_temperature_params *params);

/* The pure rule, for tests and for anyone who wants the curve. */
double bt_adaptive_temperature_beta(const float coeffs[5], double entropy);

/* ---- HumanGuidance (src/strategies/human_guidance.c) ----
 * Before each pick whose top probability is below min_autopass, shows a menu of the
 * top_k tokens with their probabilities (and "Go back" once something was generated).
 * The chosen token's probability is multiplied by 10000; "Go back" removes the token just
 * drawn and the one before it. Everything is held back until the end of the generation,
 * so going back is never limited by released text. */

typedef struct bt_guidance_menu {
    const char     *text;      /* the text so far (continuation)                     */
    size_t          text_len;
    const bt_token *tokens;    /* n candidates, most probable first                  */
    const float    *probs;
    const char *const *labels; /* their text                                         */
    int32_t         n;
    bool            can_go_back;
} bt_guidance_menu;

#define BT_GUIDE_GO_BACK (-1)
#define BT_GUIDE_STOP    (-2) /* stop asking for the rest of this generation */

/* Return an index in [0, n), BT_GUIDE_GO_BACK or BT_GUIDE_STOP. */
typedef int (*bt_guidance_fn)(void *user, const bt_guidance_menu *menu);

typedef struct bt_human_guidance_params {
    int32_t        top_k;        /* 3                                                  */
    float          min_autopass; /* 1.0: the menu is skipped when the top p >= this     */
    bt_guidance_fn choose;       /* NULL: the ncurses menu on the terminal (stdin and
                                    stdout must be a terminal, else begin fails)       */
    void          *user;
} bt_human_guidance_params;

bt_human_guidance_params bt_human_guidance_default_params(void);
bt_strategy *bt_human_guidance_strategy_init(const bt_human_guidance_params *params);

/* Chain: runs several strategies in list order; keep index is the minimum of all; when
 * several would rewind at the same token only the first counts. Takes ownership of the
 * n strategies (also on failure: they are freed). */
bt_strategy *bt_chain_strategy_init(bt_strategy **strategies, int32_t n);

/* ==========================================================================
 * 7. The strategy catalog
 *
 * Every built-in strategy and its options, described once (name, kind, range, default,
 * help) next to the strategy's code. The CLI's flags and -h, the server's JSON fields and
 * the Python package's keywords all come from it, and bt_strategy_create builds a
 * strategy from option values given by name, validated here with one set of messages.
 * ========================================================================== */

enum bt_option_kind {
    BT_OPTION_INT = 0,    /* a whole number in [min, max]                                 */
    BT_OPTION_FLOAT,      /* a finite number in [min, max]                                */
    BT_OPTION_BOOL,       /* 0 or 1; the CLI flag sets the opposite of the default        */
    BT_OPTION_TEXT,       /* one UTF-8 string (given again: replaces)                      */
    BT_OPTION_TEXT_LIST,  /* UTF-8 strings (given again: appends)                          */
    BT_OPTION_PHRASE_LIST,/* UTF-8 strings, each with an adjustment: 0 (a hard ban) or in
                             (0, 1] (a soft ban: probability times it)                    */
    BT_OPTION_PATH_LIST   /* files to read (given again: appends). A server must refuse
                             these: they would read its files for a client              */
};

typedef struct bt_option_info {
    const char *name;  /* "keep_index_buffer": the JSON field and the Python keyword      */
    const char *flag;  /* "--keep-index-buffer": the CLI's                                */
    int         kind;  /* enum bt_option_kind                                             */
    double      min, max; /* numbers: the accepted range                                  */
    double      def;   /* numbers and BOOL: the default                                   */
    const char *arg;   /* the CLI's placeholder for the value ("N", "TEXT"), NULL for BOOL */
    const char *help;  /* one line                                                         */
    bool        required;
} bt_option_info;

typedef struct bt_strategy_info {
    const char           *name;     /* "antislop": -s NAME, the JSON "name", Python   */
    const char           *summary;  /* one line                                        */
    const bt_option_info *options;
    int32_t               n_options;
    bool                  terminal; /* needs a person at a terminal (HumanGuidance):
                                       a server cannot offer it                       */
} bt_strategy_info;

/* The built-in strategies: bt_strategy_catalog_get(i) for i in [0, size), NULL outside.
 * The infos are static: never freed, valid for the life of the process. */
int32_t                 bt_strategy_catalog_size(void);
const bt_strategy_info *bt_strategy_catalog_get(int32_t i);

/* The strategy called `name` (NULL if none); the option whose name or CLI flag is `key`
 * (NULL if none). */
const bt_strategy_info *bt_strategy_info_find(const char *name);
const bt_option_info   *bt_option_info_find(const bt_strategy_info *si, const char *key);

/* Option values on their way to bt_strategy_create. */
typedef struct bt_strategy_options bt_strategy_options;

/* NULL on out of memory or si == NULL. Free with bt_strategy_options_free. */
bt_strategy_options *bt_strategy_options_new(const bt_strategy_info *si);
void bt_strategy_options_free(bt_strategy_options *o);

/* Set a number (INT, FLOAT, BOOL) by option name or flag. BT_ERR_INVALID_ARG with a
 * message naming the strategy, the option and its range for an unknown option, the wrong
 * kind, a value out of range or not whole for INT, NaN. */
int bt_strategy_options_set(bt_strategy_options *o, const char *key, double value);

/* Give a string (TEXT, TEXT_LIST, PHRASE_LIST, PATH_LIST) by option name or flag:
 * text[0..len) is copied. `adjustment` only for PHRASE_LIST (0 or in (0, 1]), else 0.
 * BT_ERR_UTF8, BT_ERR_INVALID_ARG (unknown option, wrong kind, empty text, bad
 * adjustment), BT_ERR_NOMEM. */
int bt_strategy_options_add(bt_strategy_options *o, const char *key, const char *text,
                            size_t len, float adjustment);

/* How many values option `key` was given (0: not given, the default applies); -1 for an
 * unknown option. */
int32_t bt_strategy_options_count(const bt_strategy_options *o, const char *key);

/* Build the strategy. `provider` may be NULL for strategies that need none to start (all
 * built-ins today). NULL on error (a missing required option, a file that cannot be read,
 * an invalid regex, ...: see bt_last_error, which names the strategy). */
bt_strategy *bt_strategy_create(const bt_strategy_options *o, bt_provider *provider);

#ifdef __cplusplus
}
#endif

#endif /* BACKTRACK_H */
