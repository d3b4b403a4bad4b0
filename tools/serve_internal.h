/*
 * serve_internal.h -- private to `backtrack serve`: the records its files share and each
 * file's entry points. One concern per file:
 *
 *   serve.c         main: flags, startup, signals, the shutdown sequence
 *   serve_http.c    libmicrohttpd: routing, JSON and server-sent-event answers, CORS
 *   serve_openai.c  OpenAI's wire format: a request body -> a request record (validated),
 *                   a finished request -> a response or stream chunks
 *   serve_slots.c   requests, the queue, the slots and their workers, cancellation,
 *                   released text and stop strings
 *   serve_metrics.c the counters and their Prometheus rendering (GET /metrics)
 *
 * Locking: srv->mu guards the queue, the slots' assignments and the server's counters;
 * r->mu guards one request's output and state. Never take srv->mu while holding r->mu.
 */
#ifndef BT_SERVE_INTERNAL_H
#define BT_SERVE_INTERNAL_H

#include "cli.h"
#include "serve.h"

#include <cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP 32 /* SillyTavern's text completion may send more than OpenAI's 4 */

/* After SIGTERM, how long running generations and open connections get to end before the
 * server stops without them (milliseconds). */
#define SHUTDOWN_GRACE_MS 3000

/* ==== Records ================================================================ */

typedef struct req_obs req_obs;

typedef struct request request;
struct request {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             refs;     /* the connection and, once queued, the worker */
    request        *next;     /* queue link */
    /* what to do */
    char             *prompt;
    bool              chat, stream;
    bool              include_usage; /* stream_options.include_usage */
    bt_sampler_params sp;
    bt_strategy      *strategy; /* NULL: the slot's default */
    char             *stop[MAX_STOP];
    int               n_stop;
    size_t            max_stop;
    bt_token         *toks;     /* the prompt, tokenized once at parse time */
    bt_logit_bias    *bias;     /* the request's logit_bias (owned), or NULL */
    int32_t           logprobs; /* alternatives per token asked (top_logprobs, or the
                                   completions' logprobs); -1: no logprobs            */
    bool              trace;    /* "backtrack": {"trace": true}                       */
    req_obs          *obs;      /* what the worker's observer collects (owned), or NULL */
    int32_t           lp_sent;  /* streaming: released tokens whose logprobs went out  */
    int32_t           trace_sent; /* streaming: trace events that went out             */
    int32_t           n_prompt;
    int               slot;     /* the slot that served it, -1 before */
    /* what happened */
    char      *out;        /* text produced, stop string cut off */
    size_t     out_len, out_cap;
    size_t     visible;    /* bytes that can be sent (no possible stop-string prefix) */
    size_t     sent;       /* streaming: bytes already sent */
    bool       stop_hit, done, cancelled, started;
    bt_sampler *smp;       /* while generating: for cancel() */
    bool       shutdown;   /* cancelled because the server stops */
    int        rc;
    char       errmsg[256];
    bt_stats   st;
    /* streaming wire state */
    char      *wire;       /* SSE bytes not yet handed to MHD */
    size_t     wire_len, wire_cap, wire_off;
    bool       sent_role, sent_final;
    char       id[40];
    long long  created;
};

typedef struct server server;

/* How a generation request ended, for /metrics. */
typedef enum request_outcome {
    OUTCOME_OK,        /* answered (any finish reason)                  */
    OUTCOME_INVALID,   /* refused with a 400 before it ran              */
    OUTCOME_BUSY,      /* refused with a 503: the queue was full        */
    OUTCOME_CANCELLED, /* the client went away                          */
    OUTCOME_ERROR,     /* the generation failed                         */
    OUTCOME_SHUTDOWN,  /* cancelled because the server stops            */
    OUTCOME_N
} request_outcome;

/* The server's counters (under srv->mu). */
typedef struct serve_metrics {
    long long requests[OUTCOME_N];
    long long tokens_released, tokens_discarded, rewinds, steps, evaluated, dead_ends;
    long long prompt_evaluated, prompt_cached;
} serve_metrics;

typedef struct slot {
    server      *srv;
    int          index;
    bt_provider *provider;    /* borrowed from the pool */
    bt_strategy *fallback;    /* the server's -s strategies for this slot, or NULL */
    pthread_t    thread;
    /* under srv->mu */
    pthread_cond_t cv;        /* a request was assigned, or the server stops */
    request       *req;       /* assigned, not yet finished; NULL when idle */
    long long      last_used; /* LRU clock when its last request finished (0: never) */
    bool           exited;    /* its worker thread returned */
} slot;

struct server {
    cli_args        args;
    bt_llama_pool  *pool;
    slot           *slots;
    int             n_slots;
    char            model_id[256];
    int32_t         n_ctx;
    /* the queue */
    pthread_mutex_t mu;
    pthread_cond_t  exit_cv;   /* a worker thread returned */
    request        *head, *tail;
    int             n_waiting, n_running;
    bool            stop;
    long long       n_served, n_cancelled, clock;
    int             n_conns;   /* connections between their first call and their end */
    serve_metrics   m;
    /* 0 while running; after SIGTERM, the monotonic time (ms) by which connections and
     * generations must have ended. Read without the lock. */
    atomic_llong    stop_deadline_ms;
};

/* A validation failure: the message for the client and the field it names ("" for none). */
typedef struct verr {
    char msg[400];
    char param[64];
} verr;

/* Append n bytes to a growing NUL-terminated buffer; -1 when memory runs out (the buffer
 * is left as it was). */
static inline int sbuf_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* Monotonic clock in milliseconds. */
long long serve_now_ms(void);

/* True once the server stops and its grace period is over: waiters give up. */
bool serve_grace_over(server *srv);

/* ==== serve_slots.c: requests, queue, workers =================================== */

/* A new request with one reference (the connection's) and a fresh id. NULL: no memory. */
request *request_new(void);

/* Drop one reference; the last one frees the request and everything it owns. */
void request_unref(request *r);

/* Cancel a request: it is skipped if not started, and a running generation ends at its
 * next step even when its strategy holds all text back. Caller holds r->mu. */
void request_cancel_locked(request *r);

/* Queue a request (the queue takes a reference): ENQ_OK, or ENQ_FULL when the queue is
 * full, ENQ_STOPPING once the server stops (refused: nothing would run it). */
typedef enum enqueue_result { ENQ_OK, ENQ_FULL, ENQ_STOPPING } enqueue_result;
enqueue_result slots_enqueue(server *srv, request *r);

/* A request whose client left: cancel it, and if no slot has taken it yet, take it out of
 * the queue at once (it is done, counted as cancelled) so that its place goes to a client
 * that still waits. Caller holds no lock. */
void slots_withdraw(server *srv, request *r);

/* Start one worker thread per slot (the slots' providers and fallbacks set). Returns how
 * many started; fewer than srv->n_slots means a failure. */
int slots_start(server *srv);

/* The server stops: no more dispatch; queued requests are cancelled and marked done (their
 * connections answer 503), running ones are cancelled (they end at their next step). */
void slots_shutdown(server *srv);

/* Wake the first `started` workers and wait for them to end, until the grace period is
 * over; free what is still queued. False when a worker is still running (stuck in a
 * long step): the process must then exit without freeing what the worker uses. */
bool slots_join(server *srv, int started);

/* ==== serve_observe.c: logprobs and the trace, from the library's observer ========== */

/* Collect for one request: logprobs with n_top alternatives (-1: none) for up to cap
 * continuation positions, and/or the trace. `mu` is the request's r->mu (taken when
 * publishing what the HTTP thread reads). NULL when memory runs out. */
req_obs *req_obs_new(pthread_mutex_t *mu, bt_provider *p, int32_t n_top, bool trace, int32_t cap);
void     req_obs_free(req_obs *o);
/* The bt_observer_fn to install with `o` as its user pointer. */
void     req_obs_observe(void *user, const bt_event *ev);
/* The rest read under r->mu. Released tokens whose text ends within the first nbytes of
 * the output (a prefix: logprobs go out with the text they belong to). */
int32_t  req_obs_tokens_within(const req_obs *o, size_t nbytes);
/* OpenAI's chat "content" array for released tokens [from, to) (end tokens left out). */
cJSON   *req_obs_chat_logprobs(const req_obs *o, int32_t from, int32_t to);
/* The completions' logprobs object (tokens, token_logprobs, top_logprobs, text_offset). */
cJSON   *req_obs_completion_logprobs(const req_obs *o, int32_t from, int32_t to, size_t offset0);
/* The trace events [from, *to) as an array (*to: the count so far). */
cJSON   *req_obs_trace(const req_obs *o, int32_t from, int32_t *to);
bool     req_obs_trace_truncated(const req_obs *o);

/* ==== serve_openai.c: OpenAI's wire format ====================================== */

/* Fill a request from the JSON body of /v1/completions (chat false) or
 * /v1/chat/completions (chat true). False with *e filled on a bad request. */
bool openai_parse_request(server *srv, const cJSON *b, bool chat, request *r, verr *e);

/* The response to a finished non-streaming request (owned by the caller). */
cJSON *openai_completion_json(server *srv, const request *r);

/* One stream chunk as JSON text (malloc'd, NULL when memory runs out): `text` (may be
 * NULL), `final` adds the finish reason and the statistics. Caller holds r->mu. */
char *openai_chunk_json(server *srv, request *r, const char *text, size_t len, bool final);

/* The chunk after the finish reason when stream_options.include_usage asks for it: no
 * choices, the usage (malloc'd, or NULL). */
char *openai_usage_chunk_json(server *srv, const request *r);

/* The error event that ends a stream whose generation failed or was cut short (malloc'd,
 * or NULL). */
char *openai_stream_error_json(const char *type, const char *msg);

/* The most alternatives a request's logprobs may ask for per token (OpenAI's 20). */
#define SERVE_TOP_LOGPROBS_MAX 20

/* s[0..n) as a JSON string item: bytes that do not start valid UTF-8 become U+FFFD; a
 * NUL byte stays, as \u0000 (cJSON's strings end at a NUL: such a text is a raw item,
 * already escaped). NULL: out of memory. */
cJSON *json_text(const char *s, size_t n);
/* Append s[0..n) as a quoted, escaped JSON string (the same text json_text gives) to a
 * buffer grown by sbuf_append. Non-zero: out of memory. */
int json_text_quoted(char **out, size_t *len, size_t *cap, const char *s, size_t n);

/* llama-server's POST /tokenize ({"content", "add_special", "parse_special",
 * "with_pieces"} -> {"tokens": [...]}) and POST /detokenize ({"tokens": [...]} ->
 * {"content"}): the answer (owned by the caller), or NULL with *e filled. */
cJSON *openai_tokenize(server *srv, const cJSON *b, verr *e);
cJSON *openai_detokenize(server *srv, const cJSON *b, verr *e);

/* ==== serve_metrics.c: counters ================================================== */

/* Count one request's outcome (the _locked form: caller holds srv->mu). */
void metrics_outcome(server *srv, request_outcome o);
void metrics_outcome_locked(server *srv, request_outcome o);

/* Add one finished generation's statistics. Caller holds srv->mu. */
void metrics_generation_locked(server *srv, const bt_stats *st);

/* The counters and gauges in Prometheus' text format (malloc'd; NULL: out of memory). */
char *metrics_render(server *srv);

/* ==== serve_http.c: the HTTP side ================================================ */

struct MHD_Daemon;

/* Listen on addr and answer requests (one thread per connection). NULL on failure
 * (errno says why). */
struct MHD_Daemon *http_start(server *srv, const struct sockaddr_in *addr);

/* Stop accepting new connections; the open ones go on. */
void http_stop_accepting(struct MHD_Daemon *d);

/* Stop the daemon: waits for the connection threads, drops what is still open. */
void http_stop(struct MHD_Daemon *d);

#endif
