/*
 * serve_http.c -- `backtrack serve`'s HTTP side (libmicrohttpd, one thread per
 * connection): routing, JSON answers and OpenAI-style errors, server-sent-event streams,
 * CORS. What a request asks for is read by serve_openai.c; it is run by serve_slots.c.
 *
 * Only released text ever leaves: a client never sees text a strategy later rewinds. A
 * client that goes away mid-stream cancels its generation at its next token.
 */
#include "serve_internal.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ==== Answers ================================================================= */


/* CORS: browser-based clients (open-webui, SillyTavern, ...) call from their own origin.
 * Set once at start from --cors-origin ("*" by default). */
static const char *g_cors_origin = "*";

static void add_cors(struct MHD_Response *resp) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", g_cors_origin);
    if (strcmp(g_cors_origin, "*") != 0) MHD_add_response_header(resp, "Vary", "Origin");
}

/* A CORS preflight: 204 with what may be sent. */
static enum MHD_Result send_preflight(struct MHD_Connection *c) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    add_cors(resp);
    const char *asked = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            asked && *asked ? asked : "Content-Type, Authorization");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    enum MHD_Result rc = MHD_queue_response(c, 204, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *body) {
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    add_cors(resp);
    enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* An OpenAI-style error. */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *type,
                                  const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    return send_json(c, status, root);
}

/* ==== The client's socket ====================================================== */

/* The socket of a connection, to watch for its client leaving. */
static MHD_socket connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : MHD_INVALID_SOCKET;
}

/* Whether the client closed its end (or the connection broke): a read would see the end
 * of the stream, or an error. Never blocks, consumes nothing. Only for a connection whose
 * request has been read in full (its own thread, between MHD's reads). */
static bool client_gone(MHD_socket fd) {
    if (fd == MHD_INVALID_SOCKET) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
    if (!(p.revents & POLLIN)) return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* How often a waiting connection looks at its client's socket and at the server's stop
 * (milliseconds): a client that leaves is noticed within this, plus one step. */
#define WATCH_MS 50

/* Wait on r->cv for up to WATCH_MS. Caller holds r->mu. */
static void wait_a_moment(request *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + WATCH_MS * 1000000LL;
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* ==== Streams ================================================================= */

typedef struct stream_ctx {
    server    *srv;
    request   *r;
    MHD_socket fd;
} stream_ctx;

/* Frame one JSON text (freed here; NULL: nothing) as an event on r's wire. Caller holds
 * r->mu. */
static void sse_event(request *r, char *js) {
    if (!js) return;
    sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, "data: ", 6);
    sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, js, strlen(js));
    sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, "\n\n", 2);
    free(js);
}

/* MHD pulls the stream from here (the connection's own thread: it may block). A client
 * that leaves is noticed from its socket within WATCH_MS, and every second a comment goes
 * out (for proxies, and so that a write fails where the socket cannot tell). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    request *r = sc->r;
    int idle = 0;
    pthread_mutex_lock(&r->mu);
    while (r->wire_off == r->wire_len) {
        r->wire_off = r->wire_len = 0;
        if (r->sent < r->visible) {
            sse_event(r, openai_chunk_json(sc->srv, r, r->out + r->sent, r->visible - r->sent, false));
            r->sent = r->visible;
        } else if (r->done && !r->sent_final) {
            if (r->shutdown)
                sse_event(r, openai_stream_error_json("server_shutting_down",
                                                      "the server is shutting down; the generation was cancelled"));
            else if (r->rc != BT_OK) sse_event(r, openai_stream_error_json("server_error", r->errmsg));
            else {
                sse_event(r, openai_chunk_json(sc->srv, r, NULL, 0, true));
                if (r->include_usage) sse_event(r, openai_usage_chunk_json(sc->srv, r));
            }
            sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, "data: [DONE]\n\n", 14);
            r->sent_final = true;
        } else if (r->done) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        } else if (client_gone(sc->fd) || serve_grace_over(sc->srv)) {
            /* the client left, or the server stops and cannot wait longer: stream_free
             * cancels the generation */
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        } else {
            wait_a_moment(r);
            if (r->sent == r->visible && !r->done && ++idle * WATCH_MS >= 1000) {
                sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, ": waiting\n\n", 11);
                idle = 0;
            }
        }
    }
    size_t n = r->wire_len - r->wire_off;
    if (n > max) n = max;
    memcpy(buf, r->wire + r->wire_off, n);
    r->wire_off += n;
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

/* The stream is over, or the client went away: cancel what is left (a request still
 * queued leaves the queue). */
static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    slots_withdraw(sc->srv, sc->r);
    request_unref(sc->r);
    free(sc);
}

/* ==== Bodies ==================================================================== */

typedef struct body {
    char  *data;
    size_t len, cap;
    bool   too_big;
} body;

/* Whether JSON text s[0..n) holds a NUL character: a raw 0 byte, or the escape \u0000
 * (a 'u' after an odd run of backslashes: "\\u0000" is a backslash and "u0000"). cJSON's
 * strings end at a NUL, so such a text would be cut short without a word. */
static bool json_has_nul(const char *s, size_t n) {
    if (n > 0 && memchr(s, 0, n)) return true;
    for (size_t i = 0; i + 5 < n; i++) {
        if (s[i] != '\\') continue;
        size_t run = 0;
        while (i + run < n && s[i + run] == '\\') run++;
        i += run - 1; /* the last backslash of the run */
        if (run % 2 == 1 && i + 5 < n && memcmp(s + i + 1, "u0000", 5) == 0) return true;
    }
    return false;
}

/* The body as JSON, or NULL after answering the client with a 400 (*rc). */
static cJSON *parse_body(server *srv, struct MHD_Connection *c, const body *bd, enum MHD_Result *rc) {
    if (bd->too_big) {
        *rc = send_error(c, 400, "invalid_request_error", NULL,
                         "the body is larger than %d KB (server --max-body)", srv->args.max_body_kb);
        return NULL;
    }
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(bd->data ? bd->data : "", bd->len, &end, 0);
    if (!json) {
        *rc = send_error(c, 400, "invalid_request_error", NULL, "malformed JSON at byte %ld",
                         end && bd->data ? (long)(end - bd->data) : 0L);
    } else if (bd->data && json_has_nul(bd->data, bd->len)) {
        cJSON_Delete(json);
        json = NULL;
        *rc = send_error(c, 400, "invalid_request_error", NULL,
                         "the request holds a NUL character (\\u0000), which this server does not take");
    }
    return json;
}

/* ==== Generation ================================================================ */

/* Answer a streaming request: the connection's reference to r moves to the stream. */
static enum MHD_Result answer_stream(server *srv, struct MHD_Connection *c, request *r) {
    stream_ctx *sc = malloc(sizeof *sc);
    struct MHD_Response *resp = sc ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                                       stream_reader, sc, stream_free)
                                   : NULL;
    if (!resp) {
        free(sc);
        slots_withdraw(srv, r);
        request_unref(r);
        return MHD_NO;
    }
    sc->srv = srv;
    sc->r = r;
    sc->fd = connection_fd(c);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    add_cors(resp);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Answer a non-streaming request once it is done. Meanwhile watch the client: one that
 * leaves cancels its generation (it ends at its next step, its slot is freed) and gets
 * no answer; after SIGTERM's grace period the client gets a 503 without waiting. */
static enum MHD_Result answer_whole(server *srv, struct MHD_Connection *c, request *r) {
    MHD_socket fd = connection_fd(c);
    bool gone = false, late = false;
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        wait_a_moment(r);
        if (r->done) break;
        if ((gone = client_gone(fd))) break;
        if ((late = serve_grace_over(srv))) break;
    }
    bool shutdown = r->shutdown || late;
    pthread_mutex_unlock(&r->mu);
    if (gone) slots_withdraw(srv, r); /* cancelled; out of the queue if still there */
    enum MHD_Result rc;
    if (gone)
        rc = MHD_NO; /* close the connection: nobody listens */
    else if (shutdown)
        rc = send_error(c, 503, "server_shutting_down", NULL,
                        "the server is shutting down; the request was cancelled");
    else if (r->rc != BT_OK)
        rc = send_error(c, r->rc == BT_ERR_CONTEXT_FULL || r->rc == BT_ERR_INVALID_ARG ? 400 : 500,
                        r->rc == BT_ERR_CONTEXT_FULL || r->rc == BT_ERR_INVALID_ARG
                            ? "invalid_request_error" : "server_error", NULL,
                        "%s", r->errmsg);
    else
        rc = send_json(c, 200, openai_completion_json(srv, r));
    request_unref(r);
    return rc;
}

static enum MHD_Result handle_generate(server *srv, struct MHD_Connection *c, body *bd, bool chat) {
    enum MHD_Result rc;
    cJSON *json = parse_body(srv, c, bd, &rc);
    if (!json) {
        metrics_outcome(srv, OUTCOME_INVALID);
        return rc;
    }
    request *r = request_new();
    if (!r) {
        cJSON_Delete(json);
        return send_error(c, 500, "server_error", NULL, "out of memory");
    }
    verr e = {{0}, {0}};
    bool ok = openai_parse_request(srv, json, chat, r, &e);
    cJSON_Delete(json);
    if (!ok) {
        request_unref(r);
        metrics_outcome(srv, OUTCOME_INVALID);
        return send_error(c, 400, "invalid_request_error", e.param[0] ? e.param : NULL, "%s", e.msg);
    }
    enqueue_result q = slots_enqueue(srv, r); /* a refusal is counted there */
    if (q != ENQ_OK) {
        request_unref(r);
        if (q == ENQ_STOPPING)
            return send_error(c, 503, "server_shutting_down", NULL,
                              "the server is shutting down; the request was not run");
        return send_error(c, 503, "server_busy", NULL,
                          "all %d slots are busy and %d requests wait: try again later",
                          srv->n_slots, srv->args.queue);
    }
    return r->stream ? answer_stream(srv, c, r) : answer_whole(srv, c, r);
}

/* ==== Tokens and metrics ========================================================= */

/* POST /tokenize and /detokenize: a JSON body in, a JSON answer out (fn builds it). */
static enum MHD_Result handle_json(server *srv, struct MHD_Connection *c, body *bd,
                                   cJSON *(*fn)(server *, const cJSON *, verr *)) {
    enum MHD_Result rc;
    cJSON *json = parse_body(srv, c, bd, &rc);
    if (!json) return rc;
    verr e = {{0}, {0}};
    cJSON *out = fn(srv, json, &e);
    cJSON_Delete(json);
    if (!out) return send_error(c, 400, "invalid_request_error", e.param[0] ? e.param : NULL, "%s", e.msg);
    return send_json(c, 200, out);
}

/* GET /metrics: Prometheus' text format 0.0.4. */
static enum MHD_Result send_metrics(server *srv, struct MHD_Connection *c) {
    char *text = metrics_render(srv);
    if (!text) return send_error(c, 500, "server_error", NULL, "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    add_cors(resp);
    enum MHD_Result rc = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* ==== Routes ================================================================== */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    server *srv = cls;
    if (!*con_cls) { /* first call: headers only */
        body *bd = calloc(1, sizeof *bd);
        if (!bd) return MHD_NO;
        *con_cls = bd;
        pthread_mutex_lock(&srv->mu);
        srv->n_conns++;
        pthread_mutex_unlock(&srv->mu);
        return MHD_YES;
    }
    body *bd = *con_cls;
    if (*upload_size > 0) {
        if (bd->len + *upload_size > (size_t)srv->args.max_body_kb * 1024) bd->too_big = true;
        else if (sbuf_append(&bd->data, &bd->len, &bd->cap, upload, *upload_size) != 0) bd->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
    if (strcmp(method, "OPTIONS") == 0) return send_preflight(c);
    /* every route with or without /v1, as llama-server */
    const char *route = strncmp(url, "/v1/", 4) == 0 ? url + 3 : url;
    if (strcmp(route, "/health") == 0) {
        if (!get) return send_error(c, 405, "invalid_request_error", NULL, "use GET");
        cJSON *root = cJSON_CreateObject();
        pthread_mutex_lock(&srv->mu);
        cJSON_AddStringToObject(root, "status", "ok");
        cJSON_AddNumberToObject(root, "slots", srv->n_slots);
        cJSON_AddNumberToObject(root, "slots_busy", srv->n_running);
        cJSON_AddNumberToObject(root, "queued", srv->n_waiting);
        cJSON_AddNumberToObject(root, "served", (double)srv->n_served);
        cJSON_AddNumberToObject(root, "cancelled", (double)srv->n_cancelled);
        pthread_mutex_unlock(&srv->mu);
        return send_json(c, 200, root);
    }
    if (strcmp(route, "/models") == 0) {
        if (!get) return send_error(c, 405, "invalid_request_error", NULL, "use GET");
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(root, "data"), *m = cJSON_CreateObject();
        cJSON_AddItemToArray(data, m);
        cJSON_AddStringToObject(m, "id", srv->model_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "backtrack");
        return send_json(c, 200, root);
    }
    if (strcmp(route, "/metrics") == 0) {
        if (!get) return send_error(c, 405, "invalid_request_error", NULL, "use GET");
        return send_metrics(srv, c);
    }
    if (strcmp(route, "/tokenize") == 0 || strcmp(route, "/detokenize") == 0) {
        if (!post) return send_error(c, 405, "invalid_request_error", NULL, "use POST");
        return handle_json(srv, c, bd, route[1] == 't' ? openai_tokenize : openai_detokenize);
    }
    bool comp = strcmp(route, "/completions") == 0, chat = strcmp(route, "/chat/completions") == 0;
    if (comp || chat) {
        if (!post) return send_error(c, 405, "invalid_request_error", NULL, "use POST");
        return handle_generate(srv, c, bd, chat);
    }
    return send_error(c, 404, "invalid_request_error", NULL, "no such endpoint: %s %s", method, url);
}

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    server *srv = cls;
    body *bd = *con_cls;
    if (bd) {
        free(bd->data);
        free(bd);
        pthread_mutex_lock(&srv->mu);
        srv->n_conns--;
        pthread_mutex_unlock(&srv->mu);
    }
    *con_cls = NULL;
}

/* ==== The daemon ================================================================ */

struct MHD_Daemon *http_start(server *srv, const struct sockaddr_in *addr) {
    if (srv->args.cors_origin) g_cors_origin = srv->args.cors_origin;
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC,
                            (uint16_t)srv->args.port, NULL, NULL, handler, srv,
                            MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
                            MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            MHD_OPTION_END);
}

void http_stop_accepting(struct MHD_Daemon *d) {
    MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
}

void http_stop(struct MHD_Daemon *d) {
    MHD_stop_daemon(d);
}
