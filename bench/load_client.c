/*
 * load_client.c -- the load half of bench/peer.sh: C clients at once on kept-alive
 * connections, each sending completion requests of T tokens one after the other; prints
 * the aggregate completion tokens per second as a Markdown row.
 *
 *   load_client URL LABEL native|openai [N [C [T [SECONDS]]]]   (defaults: 48 8 64 0)
 *
 * SECONDS 0: N requests in all; the rate is their tokens over the time until the last
 * answer. The end of such a run is not "C clients at once": once the N-th request is
 * handed out, the clients that finish go idle while the others finish theirs. When the
 * requests end together (no strategy: every request takes T steps) that costs nothing;
 * when they end one by one (a strategy that rewinds spreads them over a request's
 * length), the last requests run in ever smaller batches for up to a request's length.
 *
 * SECONDS > 0: the steady state. Every client keeps a request in flight for SECONDS (N
 * is ignored); the rate is the tokens generated inside that window over its length. A
 * request that straddles the window's end is let finish and counted for the share of
 * its time inside the window (its tokens times that fraction), so no request is lost or
 * counted whole when half of it came after. Until the last of those has finished, the
 * clients that are done go on sending requests that count for nothing: the straddling
 * ones finish in full batches, at the pace they had inside the window, so the share by
 * time is a share of their tokens. The same for every server measured.
 *
 * native: llama-server's /completion (n_predict, counted from tokens_predicted);
 * openai: /v1/completions (max_tokens, counted from usage.completion_tokens).
 * Request i (0-based) has seed i + 1 and the sampling settings of bench_peer.mjs.
 *
 * Why C: the clients share the machine's 2 cores with the server. Node's http client
 * spends about 2 ms of CPU per request; when requests end one by one (a strategy that
 * rewinds makes each end at its own step), that time comes out of the decodes of the
 * other slots, and it measures the client. Here a request costs a few microseconds: a
 * blocking thread per client, one write, reads until the body is complete.
 *
 * An answer that is not 200 counts as an error, except llama-server's output parser
 * refusing the random model's noise after the whole generation ran ("does not match the
 * expected"): those T tokens were generated, as bench_peer.mjs counted them.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char host[256], port[16];
static const char *label, *path;
static int native_api, n_req, n_tok;
static double window_ms; /* > 0: the steady-state window (SECONDS > 0) */
static atomic_int in_window; /* clients whose last request inside the window is unfinished */
static struct timespec t_start;
static atomic_int next_req;
static atomic_int errors;
static atomic_int first_error_shown;

/* Connect to host:port; -1 on failure. Reads give up after 300 s (a stalled server fails
 * the request instead of hanging the run). */
static int connect_to(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = 300};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* A growing buffer of what the connection sent. */
typedef struct {
    char  *p;
    size_t n, cap;
} buf;

/* Read more into b (at least one byte); -2 if the server closed the connection, -1 on an
 * error or the timeout. */
static int read_more(int fd, buf *b) {
    if (b->cap - b->n < 4096) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        char *p = realloc(b->p, cap + 1);
        if (!p) return -1;
        b->p = p, b->cap = cap;
    }
    ssize_t r;
    while ((r = recv(fd, b->p + b->n, b->cap - b->n, 0)) < 0 && errno == EINTR) {}
    if (r == 0 || (r < 0 && errno == ECONNRESET)) { /* closed, or reset, by the server */
        errno = ECONNRESET; /* for the message, if it comes to one */
        return -2;
    }
    if (r < 0) return -1;
    b->n += (size_t)r;
    b->p[b->n] = '\0';
    return 0;
}

/* One request and its whole answer (Content-Length or chunked). Returns the HTTP status,
 * -2 if the connection was closed before any answer (a kept-alive connection the server
 * had closed: the request can be sent again), -1 if it failed otherwise; *body and
 * *body_n point into b. */
static int exchange(int fd, const char *req, size_t req_n, buf *b, const char **body,
                    size_t *body_n) {
    b->n = 0;
    if (b->p) b->p[0] = '\0'; /* the last answer's text is gone */
    if (write_all(fd, req, req_n) != 0) return -2;
    char *hend;
    int rc;
    while (!b->p || !(hend = strstr(b->p, "\r\n\r\n")))
        if ((rc = read_more(fd, b)) != 0) return rc == -2 && b->n == 0 ? -2 : -1;
    int status = 0;
    errno = EPROTO; /* the answer itself is wrong, from here on */
    if (sscanf(b->p, "HTTP/1.%*d %d", &status) != 1) return -1;
    size_t hlen = (size_t)(hend + 4 - b->p);
    *hend = '\0'; /* the headers as one string, for the searches below */
    char *cl = strcasestr(b->p, "\r\ncontent-length:");
    bool chunked = strcasestr(b->p, "\r\ntransfer-encoding: chunked") != NULL;
    *hend = '\r';
    if (cl) {
        size_t len = strtoul(cl + 17, NULL, 10);
        while (b->n < hlen + len)
            if (read_more(fd, b) != 0) return -1;
        *body = b->p + hlen, *body_n = len;
        return status;
    }
    if (!chunked) return -1; /* neither: the client cannot tell where the answer ends */
    /* chunks: decode in place, behind the read position */
    size_t at = hlen, out = hlen;
    for (;;) {
        char *eol;
        while (!(eol = strstr(b->p + at, "\r\n")))
            if (read_more(fd, b) != 0) return -1;
        size_t len = strtoul(b->p + at, NULL, 16);
        size_t data = (size_t)(eol + 2 - b->p);
        while (b->n < data + len + 2)
            if (read_more(fd, b) != 0) return -1;
        memmove(b->p + out, b->p + data, len);
        out += len;
        at = data + len + 2;
        if (len == 0) break;
    }
    b->p[out] = '\0';
    *body = b->p + hlen, *body_n = out - hlen;
    return status;
}

/* The number after "key": in body, or -1. */
static long json_number(const char *body, const char *key) {
    const char *k = strstr(body, key);
    if (!k) return -1;
    k += strlen(key);
    while (*k == ' ' || *k == ':') k++;
    char *end;
    long v = strtol(k, &end, 10);
    return end == k ? -1 : v;
}

static void count_error(const char *what, const char *detail) {
    atomic_fetch_add(&errors, 1);
    if (atomic_exchange(&first_error_shown, 1) == 0)
        fprintf(stderr, "%s: %s %.300s\n", label, what, detail ? detail : "");
}

/* Milliseconds since t_start. */
static double since_start(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t_start.tv_sec) * 1e3 + (double)(t.tv_nsec - t_start.tv_nsec) / 1e6;
}

/* What one client thread counted. */
typedef struct {
    pthread_t th;
    long      tokens;   /* completion tokens of all its answers */
    double    credited; /* window mode: the tokens generated inside the window */
    int       answers;
} client_t;

/* The tokens of a request that ran from t0 to t1 (ms) that fall inside the window. */
static double window_share(long n, double t0, double t1) {
    if (t1 <= window_ms) return (double)n;
    if (t0 >= window_ms || t1 <= t0) return 0;
    return (double)n * (window_ms - t0) / (t1 - t0);
}

static void *client(void *arg) {
    client_t *me = arg;
    buf b = {0};
    char body[512], req[1024];
    int fd = -1;
    bool done_window = false; /* this client's last request inside the window finished */
    for (;;) {
        double t0 = since_start();
        if (window_ms > 0 && done_window && atomic_load(&in_window) == 0) break;
        int i = atomic_fetch_add(&next_req, 1);
        if (window_ms <= 0 && i >= n_req) break;
        int bn = snprintf(body, sizeof body,
                          "{\"prompt\": \"Tell me a long story about the sea.\", \"seed\": %d, "
                          "\"%s\": %d, \"temperature\": 1, \"top_k\": 40, \"top_p\": 0.95, "
                          "\"min_p\": 0.05}",
                          i + 1, native_api ? "n_predict" : "max_tokens", n_tok);
        int rn = snprintf(req, sizeof req,
                          "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\nConnection: keep-alive\r\n\r\n%s",
                          path, host, port, bn, body);
        const char *ans = NULL;
        size_t ans_n = 0;
        int status = -2, err = 0;
        for (int attempt = 0; attempt < 2 && status == -2; attempt++) {
            errno = 0;
            if (fd < 0 && (fd = connect_to()) < 0) {
                err = errno;
                status = -1;
                break;
            }
            status = exchange(fd, req, (size_t)rn, &b, &ans, &ans_n);
            if (status < 0) { /* -2: a kept-alive connection the server closed: once more */
                err = errno;
                close(fd);
                fd = -1;
            }
        }
        long n = -1;
        if (status == 200) {
            n = json_number(ans, native_api ? "\"tokens_predicted\"" : "\"completion_tokens\"");
            if (n < 0) count_error("no token count in", ans);
        } else if (status > 0) {
            if (strstr(ans, "does not match the expected")) n = n_tok;
            char what[32];
            snprintf(what, sizeof what, "HTTP %d", status);
            count_error(what, ans);
        } else {
            count_error("connection failed", err ? strerror(err) : "(no answer)");
        }
        double t1 = since_start();
        /* after the window, a request that fails at once must not spin on the server's CPUs */
        if (n < 0 && done_window) nanosleep(&(struct timespec){0, 10000000L}, NULL);
        if (n >= 0) {
            me->tokens += n;
            me->credited += window_share(n, t0, t1);
            me->answers++;
        }
        if (window_ms > 0 && !done_window && t1 >= window_ms) {
            done_window = true;
            atomic_fetch_sub(&in_window, 1);
        }
    }
    if (fd >= 0) close(fd);
    free(b.p);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: load_client URL LABEL native|openai [N [C [T [SECONDS]]]]\n");
        return 2;
    }
    const char *url = argv[1];
    label = argv[2];
    native_api = strcmp(argv[3], "native") == 0;
    n_req = argc > 4 ? atoi(argv[4]) : 48;
    int n_clients = argc > 5 ? atoi(argv[5]) : 8;
    n_tok = argc > 6 ? atoi(argv[6]) : 64;
    char *end = NULL;
    window_ms = argc > 7 ? strtod(argv[7], &end) * 1e3 : 0;
    if (end && (end == argv[7] || *end || !isfinite(window_ms))) window_ms = -1; /* refused below */
    path = native_api ? "/completion" : "/v1/completions";
    if (strncmp(url, "http://", 7) != 0 ||
        sscanf(url + 7, "%255[^:/]:%15[0-9]", host, port) != 2 || n_req < 1 ||
        n_clients < 1 || n_clients > 256 || n_tok < 1 || !(window_ms >= 0)) {
        fprintf(stderr, "load_client: bad arguments (URL is http://HOST:PORT)\n");
        return 2;
    }
    static client_t cl[256];
    atomic_store(&in_window, n_clients);
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    int started = 0;
    for (; started < n_clients; started++)
        if (pthread_create(&cl[started].th, NULL, client, &cl[started]) != 0) break;
    atomic_fetch_sub(&in_window, n_clients - started); /* those never ran */
    long tokens = 0;
    double credited = 0;
    int answers = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(cl[i].th, NULL);
        tokens += cl[i].tokens;
        credited += cl[i].credited;
        answers += cl[i].answers;
    }
    double ms = since_start();
    if (started == 0) {
        fprintf(stderr, "load_client: no thread could start\n");
        return 1;
    }
    double rate = window_ms > 0 ? credited / (window_ms / 1e3) : (double)tokens / (ms / 1e3);
    printf("| %s | %d | %d | %d | %.1f | %d |\n", label, answers, started, n_tok, rate,
           atomic_load(&errors));
    return 0;
}
