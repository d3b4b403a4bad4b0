/*
 * sampler.c -- the generation loop: evaluate, filter, ask the strategy, draw, rewind,
 * release. Everything it needs per token is allocated once per sampler (vocabulary-sized
 * buffers) or once per generation (the continuation); the loop itself allocates nothing.
 */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bt_sampler {
    bt_provider      *provider;  /* borrowed */
    bt_strategy      *strategy;  /* borrowed, may be NULL */
    bt_sampler_params params;
    int32_t           n_vocab;
    float            *logits;    /* n_vocab: working copy the strategy may change */
    bt_candidates     cands;
    char             *textbuf;   /* release text: 3 * (longest token + 3) bytes  */
    size_t            max_token_len;
    bt__rng           rng;
    atomic_bool       cancel;    /* bt_sampler_cancel, from any thread */
    /* Logit bias and repetition penalties (all NULL / 0 / false when off). Each step
     * gathers the tokens they touch into a short list (pen_id / pen_val / pen_cnt,
     * pen_pos[id] = its index) and hands it to the filter as a patch over the provider's
     * logits; the list is emptied again after the draw (pen_pos back to -1). */
    bool              patch_on;  /* bias or penalties: a patch is built per step     */
    bool              sparse;    /* the strategy's on_logits is a list of bans
                                    (bans_here): they go into the patch too, and the
                                    vocabulary is never copied                        */
    bool              ban_full;  /* this step's bans did not fit in the list          */
    bool              pen_on;    /* the penalties are on (llama.cpp's is_disabled)   */
    bt_logit_bias    *bias;      /* own copy of params.logit_bias                    */
    int32_t           n_bias;
    int32_t          *pen_pos;   /* n_vocab: index into the list, or -1              */
    uint8_t          *pen_block; /* (n_vocab + 15) / 16: blocks holding a listed id   */
    bt_token         *pen_id;    /* the list: cap entries                            */
    float            *pen_val;
    int32_t          *pen_cnt;   /* occurrences in the penalty window                */
    int32_t           pen_cap;   /* distinct window tokens possible + n_bias         */
    int32_t           n_pen;     /* entries in use during a draw                     */
    /* The last draw's candidates as the filters left them (before on_probs), for a
     * draw again at the same position: a strategy that rejected the token just drawn
     * (a rewind of that one token: AntiSlop's soft bans, a retry) gets the same filter
     * output from the same logits and patch, so it is copied back instead of recomputed
     * over the whole vocabulary. Only for strategies that can rewind, without an
     * on_logits copy (sparse or none); keyed on the position, the logits pointer and the
     * patch (bias, penalties, bans) being what they were. */
    bt_candidate     *redraw;     /* BT__REDRAW_MAX entries, NULL when off               */
    int32_t           redraw_n, redraw_sorted;
    int32_t           redraw_at;  /* continuation length of the saved draw, -1: none     */
    const float      *redraw_raw;
    bt_token         *redraw_pid; /* the patch then (pen_cap entries each)               */
    float            *redraw_pval;
    int32_t           redraw_npen;
    int64_t           redraw_hits;
    /* The observer (bt_sampler_set_observer): NULL fn when none. */
    bt_observer_fn    obs_fn;
    void             *obs_user;
    int32_t           obs_n_top;
    bt_candidate     *obs_top;   /* BT__OBS_MAX_TOP entries, allocated with the observer */
};

#define BT__OBS_MAX_TOP 64
#define BT__REDRAW_MAX 4096 /* candidates a saved draw holds at most (more: not saved) */

/* ==== Random numbers: xoshiro256** seeded by splitmix64 ================== */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void bt__rng_seed(bt__rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

double bt__rng_uniform(bt__rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(result >> 11) * 0x1.0p-53;
}

/* ==== Parameters ========================================================= */

bt_sampler_params bt_sampler_default_params(void) {
    return (bt_sampler_params){
        .temperature = 1.0f,
        .top_k = 50,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .seed = BT_SEED_RANDOM,
        .max_new_tokens = 256,
        .max_length = 0,
        .max_steps = 0,
        .add_special = true,
        .parse_special = true,
        .cache_prompt = true,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .logit_bias = NULL,
        .n_logit_bias = 0,
    };
}

static int check_params(const bt_sampler_params *p) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return bt__fail(BT_ERR_INVALID_ARG, "temperature must be a finite number >= 0");
    if (p->top_k < 0) return bt__fail(BT_ERR_INVALID_ARG, "top_k must be >= 0");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return bt__fail(BT_ERR_INVALID_ARG, "top_p must be in (0, 1]");
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return bt__fail(BT_ERR_INVALID_ARG, "min_p must be in [0, 1]");
    if (p->max_new_tokens < 0) return bt__fail(BT_ERR_INVALID_ARG, "max_new_tokens must be >= 0");
    if (p->max_length < 0) return bt__fail(BT_ERR_INVALID_ARG, "max_length must be >= 0");
    if (p->max_steps < 0) return bt__fail(BT_ERR_INVALID_ARG, "max_steps must be >= 0");
    /* as llama.cpp's --repeat-penalty: finite, > 0, with a finite inverse */
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty) || isinf(1.0f / p->repeat_penalty))
        return bt__fail(BT_ERR_INVALID_ARG, "repeat_penalty must be a finite number > 0 (1.0: off)");
    if (p->repeat_last_n < -1)
        return bt__fail(BT_ERR_INVALID_ARG,
                        "repeat_last_n must be >= -1 (-1: the whole context, 0: off)");
    if (!isfinite(p->frequency_penalty))
        return bt__fail(BT_ERR_INVALID_ARG, "frequency_penalty must be a finite number (0: off)");
    if (!isfinite(p->presence_penalty))
        return bt__fail(BT_ERR_INVALID_ARG, "presence_penalty must be a finite number (0: off)");
    if (p->n_logit_bias < 0) return bt__fail(BT_ERR_INVALID_ARG, "n_logit_bias must be >= 0");
    if (p->n_logit_bias > 0 && !p->logit_bias)
        return bt__fail(BT_ERR_INVALID_ARG, "logit_bias is NULL but n_logit_bias is %d",
                        p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (isnan(p->logit_bias[i].bias))
            return bt__fail(BT_ERR_INVALID_ARG, "logit_bias[%d]: the bias of token %d is NaN", i,
                            p->logit_bias[i].token);
    return BT_OK;
}

/* llama.cpp's llama_sampler_penalties::is_disabled, with -1 meaning the whole context. */
static bool penalties_on(const bt_sampler_params *p) {
    return p->repeat_last_n != 0 && !(p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f &&
                                      p->presence_penalty == 0.0f);
}

/* Room in the per-step list for a strategy's bans (bans_here); a step with more takes
 * the copy path instead. */
#define BT__BAN_ROOM 256

/* Copy the logit bias and allocate the per-step list (once per sampler). */
static int patch_init(bt_sampler *s, const bt_sampler_params *p, int32_t n_ctx) {
    int32_t nv = s->n_vocab;
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= nv)
            return bt__fail(BT_ERR_INVALID_ARG,
                            "logit_bias[%d]: token %d is outside the vocabulary (%d tokens)", i,
                            p->logit_bias[i].token, nv);
    s->pen_on = penalties_on(p);
    s->n_bias = p->n_logit_bias;
    s->patch_on = s->pen_on || s->n_bias > 0;
    s->params.logit_bias = NULL; /* never keep the caller's pointer */
    s->sparse = s->strategy && s->strategy->iface->on_logits && bt__has_bans_here(s->strategy);
    if (!s->patch_on && !s->sparse) return BT_OK;
    /* distinct tokens a window can hold: it never outgrows the context or the vocabulary */
    int32_t win = 0;
    if (s->pen_on) {
        win = p->repeat_last_n < 0 || p->repeat_last_n > n_ctx ? n_ctx : p->repeat_last_n;
        if (win > nv) win = nv;
    }
    s->pen_cap = win + s->n_bias + (s->sparse ? BT__BAN_ROOM : 0);
    if (s->n_bias > 0 && !(s->bias = malloc((size_t)s->n_bias * sizeof *s->bias)))
        return bt__fail(BT_ERR_NOMEM, "out of memory");
    if (s->n_bias > 0) memcpy(s->bias, p->logit_bias, (size_t)s->n_bias * sizeof *s->bias);
    s->params.logit_bias = s->bias;
    s->pen_pos = malloc((size_t)nv * sizeof *s->pen_pos);
    s->pen_block = calloc((size_t)nv / 16 + 1, 1);
    s->pen_id = malloc((size_t)s->pen_cap * sizeof *s->pen_id);
    s->pen_val = malloc((size_t)s->pen_cap * sizeof *s->pen_val);
    s->pen_cnt = malloc((size_t)s->pen_cap * sizeof *s->pen_cnt);
    if (!s->pen_pos || !s->pen_block || !s->pen_id || !s->pen_val || !s->pen_cnt)
        return bt__fail(BT_ERR_NOMEM, "out of memory for the penalties of a vocabulary of %d", nv);
    memset(s->pen_pos, 0xff, (size_t)nv * sizeof *s->pen_pos); /* all -1 */
    return BT_OK;
}

/* Bytes of a release buffer for tokens of at most len bytes (bt__utf8_feed writes up to
 * 3 * (n + 3), plus the flush of an incomplete tail). */
static size_t textbuf_size(size_t len) { return 3 * (len + 3) + 16; }

/* ==== Life cycle ========================================================= */

bt_sampler *bt_sampler_init(bt_provider *provider, bt_strategy *strategy,
                            const bt_sampler_params *params) {
    if (!provider) {
        bt__fail(BT_ERR_INVALID_ARG, "sampler needs a provider");
        return NULL;
    }
    bt_sampler_params p = params ? *params : bt_sampler_default_params();
    if (check_params(&p) != BT_OK) return NULL;
    int32_t nv = bt_provider_n_vocab(provider);
    if (nv <= 0) {
        bt__fail(BT_ERR_PROVIDER, "provider reports an empty vocabulary");
        return NULL;
    }
    bt_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&s->cancel, false);
    s->provider = provider;
    s->strategy = strategy;
    s->params = p;
    s->n_vocab = nv;
    /* The longest token decides the size of the release text buffer: found once per
     * provider (its token texts never change), not by every sampler made on it (a server
     * makes one per request: 128k calls through the vtable for Llama 3's vocabulary). */
    if (provider->max_token_len_ == 0) {
        size_t longest = 1;
        bool all = true; /* a failing token_text leaves the answer unsure: not cached */
        for (bt_token t = 0; t < nv; t++) {
            const char *b;
            size_t len;
            if (provider->iface->token_text(provider->ctx, t, &b, &len) != BT_OK) all = false;
            else if (len > longest) longest = len;
        }
        s->max_token_len = longest;
        if (all) provider->max_token_len_ = longest;
    } else {
        s->max_token_len = provider->max_token_len_;
    }
    s->logits = malloc((size_t)nv * sizeof *s->logits);
    s->textbuf = malloc(textbuf_size(s->max_token_len));
    if (!s->logits || !s->textbuf || bt__candidates_alloc(&s->cands, nv) != BT_OK) {
        bt_sampler_free(s);
        bt__fail(BT_ERR_NOMEM, "out of memory for a vocabulary of %d", nv);
        return NULL;
    }
    if (patch_init(s, &p, bt_provider_n_ctx(provider)) != BT_OK) {
        bt_sampler_free(s); /* keeps the last error */
        return NULL;
    }
    s->redraw_at = -1;
    bool copies = strategy && strategy->iface->on_logits && !s->sparse;
    if (strategy && strategy->iface->backtrack && !copies) {
        s->redraw = malloc(BT__REDRAW_MAX * sizeof *s->redraw);
        if (s->pen_cap > 0) {
            s->redraw_pid = malloc((size_t)s->pen_cap * sizeof *s->redraw_pid);
            s->redraw_pval = malloc((size_t)s->pen_cap * sizeof *s->redraw_pval);
        }
        if (!s->redraw || (s->pen_cap > 0 && (!s->redraw_pid || !s->redraw_pval))) {
            bt_sampler_free(s);
            bt__fail(BT_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    return s;
}

void bt_sampler_cancel(bt_sampler *s) {
    if (s) atomic_store_explicit(&s->cancel, true, memory_order_relaxed);
}

void bt_sampler_free(bt_sampler *s) {
    if (!s) return;
    free(s->obs_top);
    free(s->logits);
    free(s->textbuf);
    bt__candidates_release(&s->cands);
    free(s->bias);
    free(s->pen_pos);
    free(s->pen_block);
    free(s->pen_id);
    free(s->pen_val);
    free(s->pen_cnt);
    free(s->redraw);
    free(s->redraw_pid);
    free(s->redraw_pval);
    free(s);
}

/* ==== One generation ===================================================== */

/* Everything that lives for one generation. */
typedef struct gen {
    bt_sampler     *s;
    bt_view         view;
    bt_token       *seq;      /* prompt followed by the continuation */
    int32_t         n_prompt;
    int32_t         n_cont;   /* continuation length                 */
    int32_t         n_held;   /* positions the provider holds: the sequence of the last
                                 eval, which lacks the token drawn after it          */
    bt__utf8_stream utf8;
    bt_release_fn   on_release;
    void           *user;
    bt_stats       *st;
    bool            stopped_by_caller;
    /* observer state (used only when s->obs_fn is set; view.obs_ then points here) */
    bool            noted;              /* a strategy explained the coming rewind */
    const char     *note_strategy;
    char            note_reason[256];
} gen;

static void refresh_view(gen *g) {
    g->view.tokens = g->seq + g->n_prompt;
    g->view.n_tokens = g->n_cont;
}

/* ==== The observer ======================================================= */

int bt_sampler_set_observer(bt_sampler *s, bt_observer_fn fn, void *user, int32_t n_top) {
    if (!s) return bt__fail(BT_ERR_INVALID_ARG, "bt_sampler_set_observer: no sampler");
    if (n_top < 0 || n_top > BT__OBS_MAX_TOP)
        return bt__fail(BT_ERR_INVALID_ARG, "n_top must be in [0, %d], not %d", BT__OBS_MAX_TOP,
                        n_top);
    if (fn && !s->obs_top && !(s->obs_top = malloc(BT__OBS_MAX_TOP * sizeof *s->obs_top)))
        return bt__fail(BT_ERR_NOMEM, "out of memory");
    s->obs_fn = fn;
    s->obs_user = user;
    s->obs_n_top = fn ? n_top : 0;
    return BT_OK;
}

/* Hand ev (type and the fields it uses set by the caller) to the observer. */
static void emit(gen *g, bt_event *ev) {
    ev->step = g->st->n_steps;
    if (!ev->reason) ev->reason = "";
    if (g->s->obs_fn) g->s->obs_fn(g->s->obs_user, ev); /* removed mid-way: not allowed, harmless */
}

/* A candidate's probability as the draw saw it, normalised: `inf_id` >= 0 when some p
 * was +INFINITY (the draw then took the first such token for certain: p 1, the rest 0);
 * otherwise NaN and negative p count as 0 (bt__candidates_draw's mass), inv = 1 / sum. */
static float draw_share(const bt_candidate *c, bt_token inf_id, double inv) {
    if (inf_id >= 0) return c->id == inf_id ? 1.0f : 0.0f;
    return c->p > 0.0f ? (float)((double)c->p * inv) : 0.0f;
}

/* The DRAW event of the token just drawn at position pos: its probability and the most
 * probable alternatives of the distribution it came from, normalised as the draw weighed
 * them (see draw_share). Sorts the head of the candidates (harmless: the draw and
 * on_next_token are done; the list is rebuilt for the next step). O(n + n_top log n_top),
 * only when observed. */
static void emit_draw(gen *g, int32_t pos, bt_token tok) {
    bt_sampler *s = g->s;
    bt_candidates *c = &s->cands;
    double sum = 0.0;
    bt_token inf_id = -1;
    const bt_candidate *drawn = NULL;
    for (int32_t i = 0; i < c->n; i++) {
        float p = c->data[i].p;
        if (p == INFINITY && inf_id < 0) inf_id = c->data[i].id;
        if (p > 0.0f) sum += p;
        if (c->data[i].id == tok) drawn = &c->data[i];
    }
    double inv = sum > 0.0 && isfinite(sum) ? 1.0 / sum : 0.0;
    float p_tok = drawn ? draw_share(drawn, inf_id, inv) : 0.0f;
    int32_t k = bt_candidates_sort_top(c, s->obs_n_top);
    for (int32_t i = 0; i < k; i++) {
        s->obs_top[i] = c->data[i];
        s->obs_top[i].p = draw_share(&c->data[i], inf_id, inv);
    }
    bt_event ev = {.type = BT_EVENT_DRAW, .pos = pos, .token = tok, .p = p_tok,
                   .top = s->obs_top, .n_top = k};
    emit(g, &ev);
}

bool bt_view_observed(const bt_view *v) { return v && v->obs_; }

/* vsnprintf into buf[0..cap) (cap >= 4); a text cut short loses the character the cut
 * fell into, so a reason is always whole UTF-8 characters (when the text was). */
static void format_reason(char *buf, size_t cap, const char *fmt, va_list ap) {
    int n = vsnprintf(buf, cap, fmt, ap);
    if (n < 0) {
        buf[0] = 0;
        return;
    }
    if ((size_t)n < cap) return;
    size_t len = cap - 1, i = len;
    while (i > 0 && len - i < 3 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return;
    unsigned char lead = (unsigned char)buf[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if ((i - 1) + need > len) buf[i - 1] = 0;
}

void bt_view_note_rewind(const bt_view *v, const bt_strategy *s, const char *fmt, ...) {
    if (!v || !v->obs_) return;
    gen *g = v->obs_;
    g->noted = true;
    g->note_strategy = s && s->iface ? s->iface->name : NULL;
    g->note_reason[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        format_reason(g->note_reason, sizeof g->note_reason, fmt, ap);
        va_end(ap);
    }
}

/* A BAN or FORCE event with a formatted reason (on the stack: no allocation). */
static void note_at(const bt_view *v, const bt_strategy *s, int type, int32_t pos,
                    bt_token tok, float factor, const char *fmt, va_list ap) {
    char reason[256] = "";
    if (fmt) format_reason(reason, sizeof reason, fmt, ap);
    bt_event ev = {.type = type, .pos = pos, .token = tok, .p = factor,
                   .strategy = s && s->iface ? s->iface->name : NULL, .reason = reason};
    emit(v->obs_, &ev);
}

void bt_view_note_ban(const bt_view *v, const bt_strategy *s, int32_t pos, bt_token token,
                      float factor, const char *fmt, ...) {
    if (!v || !v->obs_) return;
    va_list ap;
    va_start(ap, fmt);
    note_at(v, s, BT_EVENT_BAN, pos, token, factor, fmt, ap);
    va_end(ap);
}

void bt_view_note_force(const bt_view *v, const bt_strategy *s, int32_t pos, bt_token token,
                        const char *fmt, ...) {
    if (!v || !v->obs_) return;
    va_list ap;
    va_start(ap, fmt);
    note_at(v, s, BT_EVENT_FORCE, pos, token, 1.0f, fmt, ap);
    va_end(ap);
}

/* A token longer than the longest one seen at bt_sampler_init (a provider whose
 * token_text failed then, or whose texts changed: against its contract): the release
 * buffer grows to hold it. Off the per-token path in practice. False if memory ran out
 * (the text is then cut to what fits, and that is logged). */
static bool grow_textbuf(bt_sampler *s, size_t len) {
    char *nb = realloc(s->textbuf, textbuf_size(len));
    if (!nb) {
        bt__log(BT_LOG_WARN, "out of memory for a token of %zu bytes: its text is cut", len);
        return false;
    }
    s->textbuf = nb;
    s->max_token_len = len;
    return true;
}

/* Deliver continuation tokens [n_released, upto) to the caller. */
static void release_upto(gen *g, int32_t upto) {
    bt_sampler *s = g->s;
    /* once the caller said stop, nothing more is delivered or counted */
    while (g->view.n_released < upto && !g->stopped_by_caller) {
        bt_token t = g->seq[g->n_prompt + g->view.n_released++];
        g->st->n_released++;
        if (!g->on_release && !s->obs_fn) continue;
        const char *bytes = "";
        size_t len = 0;
        s->provider->iface->token_text(s->provider->ctx, t, &bytes, &len);
        if (len > s->max_token_len && !grow_textbuf(s, len)) len = s->max_token_len;
        size_t w = bt__utf8_feed(&g->utf8, bytes, len, s->textbuf);
        /* the last token of a finished generation also carries an incomplete UTF-8 tail
         * (as U+FFFD): nothing more will come to complete it */
        if (g->view.n_released == g->n_cont && upto == g->n_cont && g->st->stop_reason)
            w += bt__utf8_flush(&g->utf8, s->textbuf + w);
        if (s->obs_fn) {
            bt_event ev = {.type = BT_EVENT_RELEASE, .pos = g->view.n_released - 1, .n = 1,
                           .token = t, .text = s->textbuf, .text_len = w};
            emit(g, &ev);
        }
        if (g->on_release && g->on_release(g->user, t, s->textbuf, w) != 0)
            g->stopped_by_caller = true;
    }
}

/* Release everything still held (end of generation), flushing any incomplete UTF-8. */
static void release_all(gen *g, int reason) {
    g->st->stop_reason = reason;
    release_upto(g, g->n_cont);
    if (g->utf8.n_pending && (g->on_release || g->s->obs_fn) && !g->stopped_by_caller) {
        size_t w = bt__utf8_flush(&g->utf8, g->s->textbuf);
        if (g->s->obs_fn) {
            bt_event ev = {.type = BT_EVENT_RELEASE, .pos = g->view.n_released, .n = 0,
                           .token = -1, .text = g->s->textbuf, .text_len = w};
            emit(g, &ev);
        }
        if (g->on_release) g->on_release(g->user, -1, g->s->textbuf, w);
    }
    /* the caller stopping during this last release is what ended its text (an error
     * stays the reason: the return code tells it) */
    if (g->stopped_by_caller && reason != BT_STOP_ERROR) g->st->stop_reason = BT_STOP_CALLER;
}

/* Ask the provider for the logits after the current sequence; count what it cost. */
static int eval(gen *g, const float **logits) {
    bt_provider *p = g->s->provider;
    bt_eval_info info = {0, 0};
    int rc = p->iface->eval(p->ctx, g->seq, g->n_prompt + g->n_cont, logits, &info);
    if (rc != BT_OK) return rc;
    g->n_held = g->n_prompt + g->n_cont;
    if (info.n_evaluated > 0) {
        g->st->n_evaluated += info.n_evaluated;
        g->st->n_eval_calls++;
        if (g->st->n_steps > 0 && info.first_pos < g->n_prompt) {
            int32_t end = info.first_pos + info.n_evaluated;
            g->st->n_prompt_reevaluated += (end < g->n_prompt ? end : g->n_prompt) - info.first_pos;
        }
    }
    return BT_OK;
}

/* Logit bias and penalties for this step, as a patch over the provider's logits (which
 * are never written: the llama.cpp provider keeps them for rewinds). The list holds every
 * biased token and every token of the penalty window (the last repeat_last_n tokens of
 * the sequence as it stands, prompt included), each with its changed logit in the raw
 * units, computed exactly as llama.cpp's samplers do: bias first (entries in order), then
 * the penalties. O(repeat_last_n + n_logit_bias); patch_clear undoes it after the draw. */
static void patch_build(gen *g, const float *raw, bt__logit_patch *pt) {
    bt_sampler *s = g->s;
    const bt_sampler_params *P = &s->params;
    int32_t *pos = s->pen_pos, *cnt = s->pen_cnt, m = 0;
    bt_token *id = s->pen_id;
    float *val = s->pen_val;
    for (int32_t j = 0; j < s->n_bias; j++) {
        bt_token t = s->bias[j].token;
        int32_t k = pos[t];
        if (k < 0) {
            k = pos[t] = m++;
            id[k] = t, val[k] = raw[t], cnt[k] = 0;
        }
        val[k] += s->bias[j].bias;
    }
    if (s->pen_on) {
        int32_t n = g->n_prompt + g->n_cont;
        int32_t from = P->repeat_last_n < 0 || P->repeat_last_n >= n ? 0 : n - P->repeat_last_n;
        for (int32_t i = from; i < n; i++) {
            bt_token t = g->seq[i];
            int32_t k = pos[t];
            if (k < 0) {
                k = pos[t] = m++;
                id[k] = t, val[k] = raw[t], cnt[k] = 0;
            }
            cnt[k]++;
        }
        const float rp = P->repeat_penalty, fp = P->frequency_penalty, pp = P->presence_penalty;
        for (int32_t k = 0; k < m; k++) {
            int32_t c = cnt[k];
            if (c == 0) continue; /* biased only */
            float v = val[k];
            /* llama_sampler_penalties_apply, operation for operation */
            if (v <= 0) v *= rp;
            else v /= rp;
            v -= (float)c * fp + (float)(c > 0) * pp;
            val[k] = v;
        }
    }
    for (int32_t k = 0; k < m; k++) s->pen_block[id[k] >> 4] = 1;
    s->n_pen = m;
    *pt = (bt__logit_patch){.pos = pos, .val = val, .block = s->pen_block};
}

/* An empty patch (no bias, no penalties), for the strategy's bans to go into. */
static void patch_empty(bt_sampler *s, bt__logit_patch *pt) {
    s->n_pen = 0;
    *pt = (bt__logit_patch){.pos = s->pen_pos, .val = s->pen_val, .block = s->pen_block};
}

/* bans_here's sink: the token's logit becomes -inf in the patch (ban_full if no room). */
static void patch_ban(void *user, bt_token t) {
    bt_sampler *s = user;
    if (t < 0 || t >= s->n_vocab) return;
    int32_t k = s->pen_pos[t];
    if (k < 0) {
        if (s->n_pen == s->pen_cap) {
            s->ban_full = true;
            return;
        }
        k = s->pen_pos[t] = s->n_pen++;
        s->pen_id[k] = t;
        s->pen_cnt[k] = 0;
        s->pen_block[t >> 4] = 1;
    }
    s->pen_val[k] = -INFINITY;
}

static void patch_clear(bt_sampler *s) {
    for (int32_t k = 0; k < s->n_pen; k++) {
        s->pen_pos[s->pen_id[k]] = -1;
        s->pen_block[s->pen_id[k] >> 4] = 0;
    }
    s->n_pen = 0;
}

/* The filters over the provider's logits, scaled by inv_t, patched when pt is set. */
static int32_t filter_raw(bt_sampler *s, const float *raw, const bt__logit_patch *pt,
                          float inv_t) {
    const bt_sampler_params *P = &s->params;
    if (pt) return bt__candidates_filter_patched(&s->cands, raw, pt, inv_t, P->top_k, P->top_p,
                                                 P->min_p);
    return bt__candidates_filter(&s->cands, raw, inv_t, P->top_k, P->top_p, P->min_p);
}

/* ==== Drawing again at the same position ================================= */

/* Whether the saved draw is this one's filter output: same position (the only change
 * since was the drawn token appended and rewound), same logits, same patch. */
static bool redraw_hit(const gen *g, const float *raw, const bt__logit_patch *pt) {
    const bt_sampler *s = g->s;
    if (!s->redraw || s->redraw_at != g->n_cont || s->redraw_raw != raw) return false;
    int32_t n_pen = pt ? s->n_pen : 0;
    if (n_pen != s->redraw_npen) return false;
    /* bitwise: -inf bans compare equal, and a NaN equals its own bits */
    return n_pen == 0 || (memcmp(s->pen_id, s->redraw_pid, (size_t)n_pen * sizeof *s->pen_id) == 0 &&
                          memcmp(s->pen_val, s->redraw_pval, (size_t)n_pen * sizeof *s->pen_val) == 0);
}

/* Save the filters' output of this draw (nothing if it is too long: the next draw at
 * this position filters again). */
static void redraw_save(gen *g, const float *raw, const bt__logit_patch *pt) {
    bt_sampler *s = g->s;
    const bt_candidates *c = &s->cands;
    s->redraw_at = -1;
    if (!s->redraw || c->n > BT__REDRAW_MAX) return;
    memcpy(s->redraw, c->data, (size_t)c->n * sizeof *c->data);
    s->redraw_n = c->n;
    s->redraw_sorted = c->n_sorted;
    s->redraw_npen = pt ? s->n_pen : 0;
    if (s->redraw_npen > 0) {
        memcpy(s->redraw_pid, s->pen_id, (size_t)s->redraw_npen * sizeof *s->pen_id);
        memcpy(s->redraw_pval, s->pen_val, (size_t)s->redraw_npen * sizeof *s->pen_val);
    }
    s->redraw_raw = raw;
    s->redraw_at = g->n_cont;
}

void bt__sampler_redraw_off(bt_sampler *s) {
    free(s->redraw);
    s->redraw = NULL;
    s->redraw_at = -1;
}

int64_t bt__sampler_redraw_hits(const bt_sampler *s) { return s->redraw_hits; }

/* The saved filter output back into the candidates; returns their number. */
static int32_t redraw_restore(bt_sampler *s) {
    bt_candidates *c = &s->cands;
    bt__candidates_clear(c);
    memcpy(c->data, s->redraw, (size_t)s->redraw_n * sizeof *c->data);
    c->n = s->redraw_n;
    c->n_sorted = s->redraw_sorted;
    return c->n;
}

/* One draw: logit bias and penalties, temperature, the strategy's on_logits, filters,
 * on_probs, the seeded pick. Without an on_logits the filters read the model's logits
 * directly with the temperature as a scale factor (no copy of the vocabulary; bias and
 * penalties as a patch of a few tokens); with one, the strategy gets its own scaled copy
 * to change. Returns the token, or -1 if nothing can be drawn even from the model's own
 * distribution (all logits NaN or -inf). */
static bt_token draw(gen *g, const float *raw) {
    bt_sampler *s = g->s;
    const bt_sampler_params *P = &s->params;
    bt_candidates *c = &s->cands;
    bt_strategy *st = s->strategy;
    float inv_t = 1.0f / fmaxf(P->temperature, 1e-4f);
    double u = bt__rng_uniform(&s->rng); /* one number per step, whatever happens */
    bt__logit_patch patch, *pt = NULL;
    if (s->patch_on) patch_build(g, raw, pt = &patch);

    int32_t n;
    bool copy = st && st->iface->on_logits;
    if (copy && s->sparse) { /* the strategy's bans as a patch: no copy of the vocabulary */
        if (!pt) patch_empty(s, pt = &patch);
        s->ban_full = false;
        st->ext_->bans_here(st, &g->view, patch_ban, s);
        /* too many for the list: copy after all (the bans already patched in are bans
         * on_logits makes again, so the result is the same) */
        copy = s->ban_full;
    }
    if (copy) {
        s->redraw_at = -1;
        for (int32_t i = 0; i < s->n_vocab; i++) s->logits[i] = raw[i] * inv_t;
        for (int32_t k = 0; k < s->n_pen; k++) s->logits[s->pen_id[k]] = s->pen_val[k] * inv_t;
        st->iface->on_logits(st, &g->view, s->logits);
        n = bt__candidates_filter(c, s->logits, 1.0f, P->top_k, P->top_p, P->min_p);
    } else if (redraw_hit(g, raw, pt)) {
        n = redraw_restore(s);
        s->redraw_hits++;
    } else {
        n = filter_raw(s, raw, pt, inv_t);
        redraw_save(g, raw, pt);
    }
    if (n > 0 && st && st->iface->on_probs) st->iface->on_probs(st, &g->view, c);
    int32_t i = bt__candidates_draw(c, u);
    bt_token tok = -1;
    if (i >= 0) {
        tok = c->data[i].id;
    } else {
        /* Dead end: the strategy left nothing to draw. Fall back to the model's own
         * distribution (bias, penalties, temperature and filters, no strategy) so
         * generation goes on. */
        g->st->n_dead_ends++;
        bt__log(BT_LOG_WARN, "dead end at token %d: no candidate left, using the model's "
                             "distribution", g->n_cont);
        if (s->sparse && pt) { /* the patch holds the strategy's bans: rebuild it without */
            patch_clear(s);
            pt = NULL;
            if (s->patch_on) patch_build(g, raw, pt = &patch);
        }
        if (filter_raw(s, raw, pt, inv_t) > 0 && (i = bt__candidates_draw(c, u)) >= 0)
            tok = c->data[i].id;
    }
    if (pt) patch_clear(s);
    return tok;
}

/* Apply the strategy's backtrack: remove n tokens (clamped to unreleased ones). */
static int apply_backtrack(gen *g) {
    bt_strategy *st = g->s->strategy;
    if (!st || !st->iface->backtrack) return BT_OK;
    g->noted = false;
    int32_t n = st->iface->backtrack(st, &g->view);
    int32_t held = g->n_cont - g->view.n_released;
    if (n > held) {
        bt__log(BT_LOG_WARN, "%s asked to undo %d tokens, only %d are unreleased",
                st->iface->name, n, held);
        n = held;
    }
    if (n <= 0) return BT_OK;
    /* The tokens are gone from the text whatever the provider says below (an error
     * then releases the shortened continuation): count and report the rewind first. */
    g->n_cont -= n;
    g->st->n_discarded += n;
    g->st->n_rewinds++;
    refresh_view(g);
    if (g->s->obs_fn) {
        bt_event ev = {.type = BT_EVENT_REWIND, .pos = g->n_cont, .n = n,
                       .strategy = g->noted ? g->note_strategy : st->iface->name,
                       .reason = g->noted ? g->note_reason : ""};
        emit(g, &ev);
    }
    /* The provider never saw the token just drawn: it holds one position fewer than the
     * sequence had, so it drops n - 1 positions (none when only that token goes). Its
     * logits after the new last position are then the ones to draw from. */
    int32_t keep = g->n_prompt + g->n_cont;
    if (keep < g->n_held) {
        int rc = g->s->provider->iface->rewind(g->s->provider->ctx, g->n_held - keep);
        if (rc != BT_OK) return rc;
        g->n_held = keep;
    }
    if (st->iface->on_rewind) st->iface->on_rewind(st, &g->view, n);
    return BT_OK;
}

static int32_t keep_index(gen *g) {
    bt_strategy *st = g->s->strategy;
    int32_t k = (st && st->iface->keep_index) ? st->iface->keep_index(st, &g->view) : g->n_cont;
    if (k < g->view.n_released) k = g->view.n_released;
    if (k > g->n_cont) k = g->n_cont;
    return k;
}

/* The loop of reference-semantics.md, step by step. */
static int run(gen *g) {
    bt_sampler *s = g->s;
    const bt_sampler_params *P = &s->params;
    bt_provider *prov = s->provider;
    bt_strategy *strat = s->strategy;
    /* the text ends at max_length or at the end of the context, whichever comes first */
    int32_t max_total = g->n_prompt + g->view.max_tokens;
    if (P->max_length > 0 && P->max_length < max_total) max_total = P->max_length;
    int64_t max_steps = P->max_steps;
    if (max_steps == 0) { /* 8 draws per token the text can hold, whatever max_new_tokens says */
        int32_t room = g->view.max_tokens;
        if (P->max_new_tokens > 0 && P->max_new_tokens < room) room = P->max_new_tokens;
        max_steps = 8 * (int64_t)room + 64;
    }

    for (;;) {
        int32_t total = g->n_prompt + g->n_cont;
        if (P->max_new_tokens > 0 && g->n_cont >= P->max_new_tokens) {
            release_all(g, BT_STOP_MAX_NEW_TOKENS);
            return BT_OK;
        }
        if (total >= max_total) {
            release_all(g, BT_STOP_MAX_LENGTH);
            return BT_OK;
        }
        /* a cancel from another thread is consumed by the generation it stops */
        if (atomic_load_explicit(&s->cancel, memory_order_relaxed) &&
            atomic_exchange_explicit(&s->cancel, false, memory_order_relaxed)) {
            g->stopped_by_caller = true;
            g->st->stop_reason = BT_STOP_CALLER;
            return BT_OK;
        }
        if (g->st->n_steps >= max_steps) {
            bt__log(BT_LOG_WARN, "step cap of %lld draws reached; ending generation",
                    (long long)max_steps);
            release_all(g, BT_STOP_STEP_CAP);
            return BT_OK;
        }

        const float *raw = NULL;
        int rc = eval(g, &raw);
        if (rc != BT_OK) {
            release_all(g, BT_STOP_ERROR);
            return rc;
        }
        bt_token next = draw(g, raw);
        if (next < 0) {
            release_all(g, BT_STOP_ERROR);
            return bt__fail(BT_ERR_PROVIDER, s->n_bias ? "the model's logits are all NaN or -inf "
                                                         "after logit_bias"
                                                       : "the model's logits are all NaN or -inf");
        }
        g->st->n_steps++;
        g->seq[g->n_prompt + g->n_cont++] = next;
        refresh_view(g);
        g->view.at_end = bt_provider_is_eog(prov, next) ||
                         (P->max_new_tokens > 0 && g->n_cont >= P->max_new_tokens) ||
                         g->n_prompt + g->n_cont >= max_total;
        if (strat && strat->iface->on_next_token)
            strat->iface->on_next_token(strat, &g->view, &s->cands);
        if (s->obs_fn) emit_draw(g, g->n_cont - 1, next);

        if ((rc = apply_backtrack(g)) != BT_OK) {
            release_all(g, BT_STOP_ERROR);
            return rc;
        }
        release_upto(g, keep_index(g));
        g->view.at_end = false;
        if (g->stopped_by_caller) {
            g->st->stop_reason = BT_STOP_CALLER;
            return BT_OK;
        }
        /* Stop on end-of-generation only if the strategy kept that token. */
        if (g->n_cont > 0 && g->view.tokens[g->n_cont - 1] == next &&
            bt_provider_is_eog(prov, next)) {
            release_all(g, BT_STOP_EOG);
            return BT_OK;
        }
    }
}

int bt_generate_tokens(bt_sampler *s, const bt_token *prompt, int32_t n_prompt,
                       bt_release_fn on_release, void *user, bt_stats *stats) {
    bt_stats local;
    bt_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (!s || (!prompt && n_prompt > 0) || n_prompt < 0)
        return bt__fail(BT_ERR_INVALID_ARG, "bt_generate: bad arguments");
    if (n_prompt == 0) return bt__fail(BT_ERR_INVALID_ARG, "the prompt is empty");
    double t0 = bt__now_ms();
    bt_provider *prov = s->provider;
    int32_t n_ctx = bt_provider_n_ctx(prov);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->n_vocab)
            return bt__fail(BT_ERR_INVALID_ARG, "prompt token %d is outside the vocabulary",
                            prompt[i]);
    if (n_prompt >= n_ctx)
        return bt__fail(BT_ERR_CONTEXT_FULL,
                        "prompt is %d tokens, the context holds %d: no room to generate",
                        n_prompt, n_ctx);

    st->n_prompt = n_prompt;
    st->seed = s->params.seed;
    if (st->seed == BT_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        st->seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec;
        if (st->seed == BT_SEED_RANDOM) st->seed = 0;
    }
    bt__rng_seed(&s->rng, st->seed);
    s->redraw_at = -1; /* a saved draw belongs to the generation that made it */

    gen g = {.s = s, .n_prompt = n_prompt, .on_release = on_release, .user = user, .st = st};
    g.seq = malloc((size_t)n_ctx * sizeof *g.seq);
    if (!g.seq) return bt__fail(BT_ERR_NOMEM, "out of memory");
    memcpy(g.seq, prompt, (size_t)n_prompt * sizeof *prompt);
    /* the continuation reaching max_tokens fills the context: a max_length stop */
    g.view = (bt_view){.prompt = g.seq, .n_prompt = n_prompt, .max_tokens = n_ctx - n_prompt,
                       .n_vocab = s->n_vocab, .provider = prov};
    if (s->obs_fn) g.view.obs_ = &g;
    refresh_view(&g);

    /* The strategy first: if it cannot start, the provider and its cache are untouched. */
    int rc = BT_OK;
    bt_strategy *strat = s->strategy;
    if (strat && strat->iface->begin && (rc = strat->iface->begin(strat, &g.view)) != BT_OK) {
        if (bt_last_error()[0] == 0) bt__fail(rc, "strategy %s failed to start", strat->iface->name);
        st->stop_reason = BT_STOP_ERROR;
        if (strat->iface->reset) strat->iface->reset(strat);
        free(g.seq);
        st->t_total_ms = bt__now_ms() - t0;
        return rc;
    }
    /* Start on the longest common prefix of what the provider still holds and the
     * prompt (its last token is always evaluated, for its logits), or cold. */
    bool reuse = s->params.cache_prompt && prov->iface->held && prov->iface->begin &&
                 prov->iface->end;
    if (reuse) {
        int32_t want = bt_provider_cached_prefix(prov, prompt, n_prompt);
        int32_t keep = prov->iface->begin(prov->ctx, want);
        if (keep > want) keep = bt__fail(BT_ERR_PROVIDER, "provider %s kept %d positions, %d asked",
                                         prov->iface->name, keep, want);
        if (keep < 0) rc = keep;
        else st->n_prompt_cached = keep;
    } else {
        bt_provider_reset(prov);
    }
    bool began = rc == BT_OK && s->obs_fn; /* then END follows, whatever happens */
    if (began) {
        bt_event ev = {.type = BT_EVENT_BEGIN, .n = n_prompt, .token = st->n_prompt_cached,
                       .stats = st};
        emit(&g, &ev);
    }
    if (rc == BT_OK) {
        /* Evaluate the prompt once, up front, so its cost is measured on its own. */
        const float *raw;
        double tp = bt__now_ms();
        rc = eval(&g, &raw);
        st->t_prompt_ms = bt__now_ms() - tp;
        if (rc == BT_OK) rc = run(&g);
    }
    if (rc != BT_OK && st->stop_reason == BT_STOP_NONE) st->stop_reason = BT_STOP_ERROR;
    if (strat && strat->iface->reset) strat->iface->reset(strat);
    /* Keep the sequence for the next generation's reuse, unless it may be inconsistent
     * (an error mid-way) or reuse is off. A stop by the caller leaves it consistent. */
    if (reuse && rc == BT_OK) prov->iface->end(prov->ctx);
    else bt_provider_reset(prov);
    free(g.seq);
    st->t_total_ms = bt__now_ms() - t0;
    if (began) {
        bt_event ev = {.type = BT_EVENT_END, .pos = (int32_t)st->n_released, .stats = st};
        emit(&g, &ev);
    }
    return rc;
}

int bt_generate(bt_sampler *s, const char *prompt, size_t prompt_len,
                bt_release_fn on_release, void *user, bt_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!s || !prompt) return bt__fail(BT_ERR_INVALID_ARG, "bt_generate: bad arguments");
    if (prompt_len == 0) return bt__fail(BT_ERR_INVALID_ARG, "the prompt is empty");
    bt_token *toks = NULL;
    int32_t n = 0;
    int rc = bt_provider_tokenize(s->provider, prompt, prompt_len, s->params.add_special,
                                  s->params.parse_special, &toks, &n);
    if (rc != BT_OK) return rc;
    rc = bt_generate_tokens(s, toks, n, on_release, user, stats);
    free(toks);
    return rc;
}
