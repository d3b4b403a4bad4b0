/*
 * serve_observe.c -- what a request asked to see of its generation, from the library's
 * observer (bt_sampler_set_observer): the logprobs of the tokens it was given
 * (`logprobs` / `top_logprobs`), and the trace (`"backtrack": {"trace": true}`).
 *
 * The observer runs on the slot's worker thread. Logprobs: every draw at a position
 * overwrites that position's entry (a rewind makes the position drawable again), and a
 * release makes it final: from then on the entry is never written again, so the HTTP
 * thread may read entries [0, n_released) once it has read n_released under r->mu. The
 * distribution is the one the token was finally drawn from: after the strategies, as the
 * DRAW event reports it. The trace: each event's JSON (tools/trace.c, the --trace format)
 * appended to a list under r->mu.
 */
#include "serve_internal.h"
#include "trace.h"

#include <math.h>

/* OpenAI's stand-in for the logprob of an impossible token (JSON has no -Infinity). */
#define LOGPROB_FLOOR -9999.0

struct req_obs {
    pthread_mutex_t *mu;     /* the request's r->mu */
    bt_provider     *p;
    int32_t          n_top;  /* alternatives per token; -1: no logprobs asked */
    bool             trace;
    /* logprobs, per continuation position */
    int32_t          cap;
    float           *lp;     /* [cap] the drawn token's probability (not yet its log) */
    bt_token        *tok;    /* [cap] */
    bt_candidate    *top;    /* [cap * n_top] */
    int32_t         *n_tops; /* [cap] */
    size_t          *end;    /* [cap] bytes of released text after this token */
    int32_t          n_rel;  /* released positions (under mu) */
    size_t           bytes;  /* released text so far (worker only) */
    /* the trace: one JSON object per event (under mu) */
    char           **events;
    int32_t          n_events, cap_events;
    size_t           trace_bytes;
    bool             trace_truncated;
    trace_buf        buf;    /* worker only */
};

/* A trace longer than this stops growing (and says so): a request cannot take the
 * server's memory with a long strategy-heavy generation. */
#define TRACE_MAX_BYTES ((size_t)64 << 20)

/* ==== Life cycle ============================================================ */

req_obs *req_obs_new(pthread_mutex_t *mu, bt_provider *p, int32_t n_top, bool trace,
                     int32_t cap) {
    req_obs *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->mu = mu;
    o->p = p;
    o->n_top = n_top;
    o->trace = trace;
    if (n_top >= 0) {
        int32_t k = n_top > 0 ? n_top : 1;
        o->cap = cap > 0 ? cap : 1;
        o->lp = calloc((size_t)o->cap, sizeof *o->lp);
        o->tok = calloc((size_t)o->cap, sizeof *o->tok);
        o->top = calloc((size_t)o->cap * (size_t)k, sizeof *o->top);
        o->n_tops = calloc((size_t)o->cap, sizeof *o->n_tops);
        o->end = calloc((size_t)o->cap, sizeof *o->end);
        if (!o->lp || !o->tok || !o->top || !o->n_tops || !o->end) {
            req_obs_free(o);
            return NULL;
        }
    }
    return o;
}

void req_obs_free(req_obs *o) {
    if (!o) return;
    free(o->lp);
    free(o->tok);
    free(o->top);
    free(o->n_tops);
    free(o->end);
    for (int32_t i = 0; i < o->n_events; i++) free(o->events[i]);
    free(o->events);
    trace_buf_free(&o->buf);
    free(o);
}

int32_t req_obs_n_top(const req_obs *o) { return o ? o->n_top : -1; }

/* ==== The observer (worker thread) ============================================= */

/* Keep one event's JSON in the trace list; false when memory runs out (the trace is then
 * marked truncated and stops). */
static void keep_event(req_obs *o, const bt_event *ev) {
    if (o->trace_truncated) return;
    if (!trace_event_json(ev, o->p, NULL, &o->buf) || o->trace_bytes + o->buf.len > TRACE_MAX_BYTES) {
        pthread_mutex_lock(o->mu);
        o->trace_truncated = true;
        pthread_mutex_unlock(o->mu);
        return;
    }
    char *copy = malloc(o->buf.len + 1);
    if (copy) memcpy(copy, o->buf.data, o->buf.len + 1);
    pthread_mutex_lock(o->mu);
    if (copy && o->n_events == o->cap_events) {
        int32_t nc = o->cap_events ? 2 * o->cap_events : 256;
        char **ne = realloc(o->events, (size_t)nc * sizeof *ne);
        if (ne) o->events = ne, o->cap_events = nc;
    }
    if (copy && o->n_events < o->cap_events) {
        o->events[o->n_events++] = copy;
        o->trace_bytes += o->buf.len;
    } else {
        free(copy);
        o->trace_truncated = true;
    }
    pthread_mutex_unlock(o->mu);
}

void req_obs_observe(void *user, const bt_event *ev) {
    req_obs *o = user;
    if (o->trace) keep_event(o, ev);
    if (o->n_top < 0) return;
    if (ev->type == BT_EVENT_DRAW && ev->pos >= 0 && ev->pos < o->cap) {
        int32_t i = ev->pos, k = o->n_top < ev->n_top ? o->n_top : ev->n_top;
        o->lp[i] = ev->p;
        o->tok[i] = ev->token;
        o->n_tops[i] = k;
        for (int32_t j = 0; j < k; j++) o->top[(size_t)i * (size_t)o->n_top + (size_t)j] = ev->top[j];
    } else if (ev->type == BT_EVENT_RELEASE && ev->n > 0 && ev->pos >= 0 && ev->pos < o->cap) {
        o->bytes += ev->text_len;
        o->end[ev->pos] = o->bytes;
        pthread_mutex_lock(o->mu);
        o->n_rel = ev->pos + ev->n;
        pthread_mutex_unlock(o->mu);
    } else if (ev->type == BT_EVENT_RELEASE) {
        o->bytes += ev->text_len; /* the final U+FFFD of an incomplete character */
    }
}

/* ==== Reading (HTTP thread, r->mu held) ===================================== */

int32_t req_obs_tokens_within(const req_obs *o, size_t nbytes) {
    if (!o || o->n_top < 0) return 0;
    int32_t n = 0;
    while (n < o->n_rel && o->end[n] <= nbytes) n++;
    return n;
}

static double logprob(float p) { return p > 0.0f ? log((double)p) : LOGPROB_FLOOR; }

/* {"token": text, "logprob": x, "bytes": [...]} for token t with probability p. */
/* Token t's text as a JSON string (U+FFFD for bytes that are not UTF-8 on their own);
 * its raw bytes in *bytes, *len. */
static cJSON *token_string(const req_obs *o, bt_token t, const char **bytes, size_t *len) {
    bt_provider_token_text(o->p, t, bytes, len); /* "" on failure */
    return json_text(*bytes, *len);
}

static cJSON *token_entry(const req_obs *o, bt_token t, float p, bool with_top) {
    const char *b;
    size_t len;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToObject(e, "token", token_string(o, t, &b, &len));
    cJSON_AddNumberToObject(e, "logprob", logprob(p));
    cJSON *arr = cJSON_AddArrayToObject(e, "bytes");
    for (size_t i = 0; arr && i < len; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((unsigned char)b[i]));
    if (with_top) cJSON_AddArrayToObject(e, "top_logprobs");
    return e;
}

cJSON *req_obs_chat_logprobs(const req_obs *o, int32_t from, int32_t to) {
    cJSON *content = cJSON_CreateArray();
    for (int32_t i = from; o && i < to; i++) {
        if (bt_provider_is_eog(o->p, o->tok[i])) continue; /* OpenAI lists no end token */
        cJSON *e = token_entry(o, o->tok[i], o->lp[i], true);
        cJSON *tops = cJSON_GetObjectItemCaseSensitive(e, "top_logprobs");
        for (int32_t j = 0; j < o->n_tops[i]; j++) {
            const bt_candidate *c = &o->top[(size_t)i * (size_t)o->n_top + (size_t)j];
            cJSON_AddItemToArray(tops, token_entry(o, c->id, c->p, false));
        }
        cJSON_AddItemToArray(content, e);
    }
    return content;
}

/* The completions endpoint's {text: logprob} of position i's alternatives, the first of
 * equal texts winning, written here as JSON text (a raw item): a text with a NUL byte
 * cannot be a cJSON key. Keys are compared as printed (json_text_quoted escapes as cJSON
 * does, one to one: two lone bytes that both print as U+FFFD are one key) and numbers
 * are printed by cJSON, so the text is what a cJSON object would print. */
static cJSON *top_map(const req_obs *o, int32_t i) {
    const bt_candidate *top = &o->top[(size_t)i * (size_t)o->n_top];
    char *out = NULL, *keys = NULL;
    size_t n = 0, cap = 0, kn = 0, kcap = 0, kstart[SERVE_TOP_LOGPROBS_MAX + 1];
    int rc = sbuf_append(&out, &n, &cap, "{", 1) || sbuf_append(&keys, &kn, &kcap, "", 0);
    for (int32_t j = 0; rc == 0 && j < o->n_tops[i] && j < SERVE_TOP_LOGPROBS_MAX; j++) {
        const char *b;
        size_t len;
        bt_provider_token_text(o->p, top[j].id, &b, &len);
        kstart[j] = kn;
        if ((rc = json_text_quoted(&keys, &kn, &kcap, b, len)) != 0) break;
        size_t klen = kn - kstart[j];
        bool seen = false;
        for (int32_t q = 0; q < j && !seen; q++)
            seen = kstart[q + 1] - kstart[q] == klen && memcmp(keys + kstart[q], keys + kstart[j], klen) == 0;
        if (seen) continue;
        cJSON *num = cJSON_CreateNumber(logprob(top[j].p));
        char *v = num ? cJSON_PrintUnformatted(num) : NULL;
        rc = !v || (n > 1 && sbuf_append(&out, &n, &cap, ",", 1)) ||
             sbuf_append(&out, &n, &cap, keys + kstart[j], klen) || sbuf_append(&out, &n, &cap, ":", 1) ||
             sbuf_append(&out, &n, &cap, v, strlen(v));
        cJSON_free(v);
        cJSON_Delete(num);
    }
    if (rc == 0) rc = sbuf_append(&out, &n, &cap, "}", 1);
    cJSON *m = rc == 0 ? cJSON_CreateRaw(out) : NULL;
    free(out);
    free(keys);
    return m ? m : cJSON_CreateObject();
}

cJSON *req_obs_completion_logprobs(const req_obs *o, int32_t from, int32_t to, size_t offset0) {
    cJSON *lp = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON *off = cJSON_AddArrayToObject(lp, "text_offset");
    for (int32_t i = from; o && i < to; i++) {
        if (bt_provider_is_eog(o->p, o->tok[i])) continue;
        const char *b;
        size_t len;
        cJSON_AddItemToArray(tokens, token_string(o, o->tok[i], &b, &len));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(logprob(o->lp[i])));
        cJSON_AddItemToArray(top, top_map(o, i));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset0 + (i > 0 ? o->end[i - 1] : 0))));
    }
    return lp;
}

cJSON *req_obs_trace(const req_obs *o, int32_t from, int32_t *to) {
    cJSON *arr = cJSON_CreateArray();
    int32_t n = o ? o->n_events : 0;
    /* each event as the JSON text it already is (a raw item, printed as it stands): parsed
     * into a tree, a trace took some 13 times its size while the answer was built */
    for (int32_t i = from; i < n; i++) {
        cJSON *e = cJSON_CreateRaw(o->events[i]);
        if (e) cJSON_AddItemToArray(arr, e);
    }
    if (to) *to = n;
    return arr;
}

bool req_obs_trace_truncated(const req_obs *o) { return o && o->trace_truncated; }
