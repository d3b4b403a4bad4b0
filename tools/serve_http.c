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
#include <stdio.h>
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

/* ==== Streams ================================================================= */

typedef struct stream_ctx {
    server  *srv;
    request *r;
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

/* MHD pulls the stream from here (the connection's own thread: it may block). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    request *r = sc->r;
    pthread_mutex_lock(&r->mu);
    while (r->wire_off == r->wire_len) {
        r->wire_off = r->wire_len = 0;
        if (r->sent < r->visible) {
            sse_event(r, openai_chunk_json(sc->srv, r, r->out + r->sent, r->visible - r->sent, false));
            r->sent = r->visible;
        } else if (r->done && !r->sent_final) {
            if (r->rc != BT_OK) sse_event(r, openai_stream_error_json(r->errmsg));
            else sse_event(r, openai_chunk_json(sc->srv, r, NULL, 0, true));
            sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, "data: [DONE]\n\n", 14);
            r->sent_final = true;
        } else if (r->done) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        } else {
            /* nothing yet: wait, and every second send a comment so a vanished client is
             * noticed even while a strategy holds the text back */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT &&
                r->sent == r->visible && !r->done)
                sbuf_append(&r->wire, &r->wire_len, &r->wire_cap, ": waiting\n\n", 11);
        }
    }
    size_t n = r->wire_len - r->wire_off;
    if (n > max) n = max;
    memcpy(buf, r->wire + r->wire_off, n);
    r->wire_off += n;
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

/* The stream is over, or the client went away: cancel what is left. */
static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    pthread_mutex_lock(&sc->r->mu);
    if (!sc->r->done) request_cancel_locked(sc->r);
    pthread_mutex_unlock(&sc->r->mu);
    request_unref(sc->r);
    free(sc);
}

/* ==== Routes ================================================================== */

typedef struct body {
    char  *data;
    size_t len, cap;
    bool   too_big;
} body;

static enum MHD_Result handle_generate(server *srv, struct MHD_Connection *c, body *bd, bool chat) {
    if (bd->too_big)
        return send_error(c, 400, "invalid_request_error", NULL,
                          "the body is larger than %d KB (server --max-body)", srv->args.max_body_kb);
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(bd->data ? bd->data : "", bd->len, &end, 0);
    if (!json)
        return send_error(c, 400, "invalid_request_error", NULL, "malformed JSON at byte %ld",
                          end && bd->data ? (long)(end - bd->data) : 0L);
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
        return send_error(c, 400, "invalid_request_error", e.param[0] ? e.param : NULL, "%s", e.msg);
    }
    if (!slots_enqueue(srv, r)) {
        request_unref(r);
        return send_error(c, 503, "server_busy", NULL,
                          "all %d slots are busy and %d requests wait: try again later",
                          srv->n_slots, srv->args.queue);
    }
    if (r->stream) {
        stream_ctx *sc = malloc(sizeof *sc);
        if (!sc) {
            pthread_mutex_lock(&r->mu);
            request_cancel_locked(r);
            pthread_mutex_unlock(&r->mu);
            request_unref(r);
            return MHD_NO;
        }
        sc->srv = srv;
        sc->r = r; /* the connection's reference moves to the stream */
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, sc, stream_free);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        add_cors(resp);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    enum MHD_Result rc;
    if (r->shutdown)
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
