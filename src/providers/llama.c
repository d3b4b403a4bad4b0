/*
 * llama.c -- the llama.cpp provider.
 *
 * One llama.cpp context holds one or more sequences. Each sequence is a provider: eval()
 * decodes only positions not yet in the KV cache; rewind() removes positions with
 * llama_memory_seq_rm and checks that it worked. To make rewinds free, each sequence
 * keeps the logits of its last `logits_window` positions in a ring, plus those after its
 * prompt: a rewind that lands inside the window needs no model evaluation; a deeper one
 * re-decodes one token. The prompt is never evaluated twice.
 *
 * A single provider (bt_llama_provider_init) decodes in the caller's thread. A pool
 * (bt_llama_pool_init) gives N providers on one context, used from N threads: their eval
 * requests are gathered by a batching thread into one llama_decode per step.
 */
#define _GNU_SOURCE
#include "../internal.h"

#include "ggml-backend.h"
#include "llama.h"
#if defined(__has_include) && __has_include("ggml-rpc.h")
#include "ggml-rpc.h" /* the RPC protocol's version (headers only: no link to the backend) */
#else
#define RPC_PROTO_MAJOR_VERSION 6 /* llama.cpp v0.4.0's */
#define RPC_PROTO_MINOR_VERSION 0
#define GGML_RPC_MAX_SERVERS 16
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct llama_seq llama_seq;

/* What all sequences of one context share. */
typedef struct llama_shared {
    struct llama_model       *model;
    struct llama_context     *lctx;
    const struct llama_vocab *vocab;
    struct llama_batch        batch;
    int32_t  n_vocab, n_ctx, n_batch, n_seq;
    /* token texts, cached at load: text of t is pieces[off[t] .. off[t+1]) */
    char    *pieces;
    size_t  *off;
    llama_seq **seqs;
    /* the batching thread (pools only) */
    bool            threaded;
    pthread_mutex_t mu;
    pthread_cond_t  work, copied;
    int32_t         n_pending, n_active; /* sequences with a request, taking part */
    struct timespec last_post;           /* when the latest request arrived
                                            (CLOCK_MONOTONIC: a step of the wall clock
                                            must not stretch the wait) */
    pthread_t       thread;
    llama_seq     **reqs;      /* the batcher's list of one step's requests (n_seq) */
    bool            stop;
    int32_t         n_copying; /* sequences still copying their logits out of llama.cpp's
                                  buffer: the next llama_decode waits for them */
    /* ggml's CPU workers, kept between decodes (NULL: ggml starts them for each one) */
    struct ggml_threadpool *threadpool;
    void (*threadpool_free)(struct ggml_threadpool *);
    pid_t           pid;       /* the process that made the threads (the batcher, ggml's
                                  workers): a forked child has none of them */
    /* filling holes (see plan_fill): whether this model's cache allows it, and the
     * batcher's plan for one step: fill[r] idle sequences go before reqs[r], each at
     * fill_pos[id] */
    bool            can_fill;
    int32_t        *fill;      /* n_seq */
    llama_pos      *fill_pos;  /* n_seq */
    int64_t         n_filled;  /* idle sequences filled in so far (for tests) */
    int64_t         n_fill_skipped; /* holes of up to FILL_GAP_MAX left open (for tests) */
} llama_shared;

/* One sequence: the provider's context. */
struct llama_seq {
    llama_shared *sh;
    int32_t   id;        /* llama.cpp sequence id */
    bt_token *held;      /* n_ctx */
    int32_t   n_held;
    int32_t   window;    /* ring slots (>= 1) */
    float    *ring;      /* window * n_vocab, then base (one mapping of logits_bytes) */
    size_t    logits_bytes;
    int32_t  *ring_pos;  /* position whose logits each slot holds, -1 if none */
    float    *base;      /* logits after the first evaluated batch (the prompt) */
    int32_t   base_pos;  /* -1 if none */
    const float *cur;    /* logits of position n_held - 1, or NULL if unknown */
    bool      active;    /* between its first eval and its reset: the batcher waits for it */
    bool      owns_shared; /* a single provider frees the context with itself; pool
                              members leave that to the pool */
    bool      stale_filler; /* a filler token the cache would not drop is still there
                               (under mu): the next begin cuts it away */
    /* a request for the batching thread */
    sem_t     ready;     /* posted by the batcher when the request is done (pools) */
    bool      pending;
    const bt_token *req; /* tokens to decode at positions req_from ... */
    int32_t   req_n, req_from;
    int       req_rc;
    const float *req_out; /* set by the batcher: this request's logits, still in llama.cpp's
                             buffer, for the sequence's own thread to keep (NULL: kept) */
};

/* ==== Process-wide set-up ================================================ */

static int bt__llama_log_verbose;

/* llama.cpp's log goes to ours (at debug level) when verbose, nowhere otherwise. */
static void llama_log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (!bt__llama_log_verbose || level == GGML_LOG_LEVEL_NONE) return;
    char line[1024];
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
    if (n == 0) return;
    if (n >= sizeof line) n = sizeof line - 1;
    memcpy(line, text, n);
    line[n] = '\0';
    bt__log(level == GGML_LOG_LEVEL_ERROR ? BT_LOG_ERROR
            : level == GGML_LOG_LEVEL_WARN ? BT_LOG_WARN : BT_LOG_DEBUG, "llama.cpp: %s", line);
}

static char loaded_from[PATH_MAX]; /* where load_backends looked, for messages */

/* Load the ggml backends once. The prebuilt release ships one CPU library per CPU family
 * and picks the best at run time; they sit beside libllama, wherever it was loaded from
 * (the build's .deps/ or the install's lib/backtrack/). $BT_GGML_BACKEND_DIR or
 * params->backend_dir override that. */
static void load_backends(const char *dir) {
    static int loaded;
    if (loaded) return;
    loaded = 1;
    llama_backend_init();
    const char *env = getenv("BT_GGML_BACKEND_DIR");
    char libdir[PATH_MAX] = "";
    Dl_info info;
    if (dladdr((void *)&llama_model_load_from_file, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash && (size_t)(slash - info.dli_fname) < sizeof libdir)
            snprintf(libdir, sizeof libdir, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
    }
    const char *path = dir && *dir ? dir : env && *env ? env : libdir;
    snprintf(loaded_from, sizeof loaded_from, "%s", *path ? path : "ggml's default path");
    if (*path) ggml_backend_load_all_from_path(path);
    else ggml_backend_load_all();
}

/* The number of CPUs this process may run on (never llama.cpp's default of 4: on a
 * 2-core machine its thread pool then spins against itself, 600x slower). */
static int32_t available_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

/* Default thread count. A tiny model's step is too short to split: its threads spend the
 * step in ggml's spinning barrier, so one thread is faster (stories260K: 6,900 tok/s with
 * one, 5,100 with two) and, when two processes share the cores, two threads each make
 * both 500x slower (32 s instead of 0.06 s for 200 tokens, measured here). Models under
 * 64 MiB get one thread; bigger ones get every CPU the process may use. */
static int32_t default_threads(const struct llama_model *model) {
    if (llama_model_size(model) < 64ull * 1024 * 1024) return 1;
    return available_cpus();
}

bt_llama_params bt_llama_default_params(void) {
    return (bt_llama_params){.model_path = NULL, .n_ctx = 0, .n_batch = 512, .n_threads = 0,
                             .n_gpu_layers = 0, .logits_window = 32, .verbose = false,
                             .backend_dir = NULL, .rpc_servers = NULL};
}

/* ==== Model file checks ================================================== */

/* A clear reason why `path` is not a loadable GGUF, before llama.cpp sees it. */
static int check_model_file(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return bt__fail(BT_ERR_IO, "cannot open model '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return bt__fail(BT_ERR_IO, "model '%s' is a directory", path);
    if (!S_ISREG(st.st_mode)) return bt__fail(BT_ERR_IO, "model '%s' is not a regular file", path);
    if (st.st_size == 0) return bt__fail(BT_ERR_MODEL, "model '%s' is empty", path);
    FILE *f = fopen(path, "rb");
    if (!f) return bt__fail(BT_ERR_IO, "cannot open model '%s': %s", path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0)
        return bt__fail(BT_ERR_MODEL, "model '%s' is not a GGUF file", path);
    return BT_OK;
}

/* ==== RPC workers ========================================================= */
/* params->rpc_servers: llama.cpp's RPC backend (libggml-rpc.so, loaded with the other
 * backends) gives one device per worker (`rpc-server`); the model gets those devices, so
 * n_gpu_layers puts layers, and their KV cache, on the workers. ggml's RPC client aborts
 * the process when a worker cannot be reached or does not speak its protocol, so every
 * endpoint is checked here first: the syntax, a TCP connection and the protocol's HELLO
 * (the version), each with a clear error. A worker lost during a generation still aborts
 * inside ggml: nothing here can catch that. */

#define RPC_TIMEOUT_MS 5000
#define RPC_CMD_HELLO 14   /* ggml-rpc.cpp: "RPC_CMD_HELLO must be always 14" */
#define RPC_CAPS_SIZE 24   /* transport.h: RPC_CONN_CAPS_SIZE */

/* Split "host:port" (at most `cap` bytes of host) with the rules of ggml's parser (the
 * host ends at the first ':'), stricter: a non-empty host without spaces, a decimal port
 * in 1..65535 and nothing else. */
static int rpc_parse_endpoint(const char *ep, size_t len, char *host, size_t cap, char *port) {
    const char *colon = memchr(ep, ':', len);
    if (!colon || colon == ep)
        return bt__fail(BT_ERR_INVALID_ARG, "RPC endpoint '%.*s' is not HOST:PORT", (int)len, ep);
    size_t hl = (size_t)(colon - ep), pl = len - hl - 1;
    if (hl >= cap) return bt__fail(BT_ERR_INVALID_ARG, "RPC endpoint '%.*s': host too long", (int)len, ep);
    for (size_t i = 0; i < hl; i++)
        if (ep[i] == '[' || ep[i] == ' ' || ep[i] == '\t')
            return bt__fail(BT_ERR_INVALID_ARG, "RPC endpoint '%.*s': bad host (llama.cpp's RPC "
                            "client takes a name or an IPv4 address)", (int)len, ep);
    long v = 0;
    for (size_t i = 0; i < pl; i++) {
        char c = ep[hl + 1 + i];
        if (c < '0' || c > '9' || (v = v * 10 + (c - '0')) > 65535) { v = -1; break; }
    }
    if (pl == 0 || pl > 5 || v < 1)
        return bt__fail(BT_ERR_INVALID_ARG, "RPC endpoint '%.*s': the port must be 1 to 65535",
                        (int)len, ep);
    memcpy(host, ep, hl);
    host[hl] = '\0';
    snprintf(port, 6, "%ld", v);
    return BT_OK;
}

/* Wait until fd is ready for `events` or RPC_TIMEOUT_MS passed. 1: ready, 0: timeout. */
static int rpc_wait(int fd, short events) {
    struct pollfd pf = {.fd = fd, .events = events};
    int r;
    do r = poll(&pf, 1, RPC_TIMEOUT_MS); while (r < 0 && errno == EINTR);
    return r > 0;
}

/* Send or receive exactly n bytes within the timeout. BT_OK or -1 (errno set). */
static int rpc_io(int fd, void *buf, size_t n, bool out) {
    char *p = buf;
    while (n > 0) {
        if (!rpc_wait(fd, out ? POLLOUT : POLLIN)) { errno = ETIMEDOUT; return -1; }
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k == 0) { errno = ECONNRESET; return -1; }
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return BT_OK;
}

/* Connect to host:port without blocking past the timeout: to the host's first IPv4
 * address, the one ggml's client will use (its address in *addr). */
static int rpc_connect(const char *ep, const char *host, const char *port, int *fd_out,
                       struct sockaddr_in *addr) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *a = NULL;
    int gai = getaddrinfo(host, port, &hints, &a);
    if (gai != 0)
        return bt__fail(BT_ERR_IO, "RPC worker '%s': cannot resolve '%s': %s", ep, host,
                        gai_strerror(gai));
    memcpy(addr, a->ai_addr, sizeof *addr);
    int err = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = errno;
    } else if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
               (errno == EINPROGRESS && rpc_wait(fd, POLLOUT))) {
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    } else {
        err = errno == EINPROGRESS ? ETIMEDOUT : errno;
    }
    freeaddrinfo(a);
    if (err == 0) {
        *fd_out = fd;
        return BT_OK;
    }
    if (fd >= 0) close(fd);
    return bt__fail(BT_ERR_IO, "cannot reach RPC worker '%s': %s (is rpc-server running there?)",
                    ep, strerror(err));
}

/* Check that the worker connected on fd answers the RPC protocol's HELLO with a version
 * this ggml speaks. `held`: connections to earlier endpoints are open (a worker reached
 * by two names is busy with the first), for the message. The caller closes fd. */
static int rpc_hello(int fd, const char *ep, bool held) {
    unsigned char req[1 + 8 + RPC_CAPS_SIZE] = {RPC_CMD_HELLO};
    uint64_t size = RPC_CAPS_SIZE; /* host byte order, as ggml sends it */
    memcpy(req + 1, &size, 8);
    unsigned char rsp[4 + RPC_CAPS_SIZE];
    if (rpc_io(fd, req, sizeof req, true) != 0 || rpc_io(fd, &size, 8, false) != 0)
        return bt__fail(BT_ERR_IO, "RPC worker '%s' does not answer llama.cpp's RPC greeting "
                        "within %d s: %s (not an rpc-server, or a busy one: rpc-server serves "
                        "one client at a time%s)", ep, RPC_TIMEOUT_MS / 1000, strerror(errno),
                        held ? "; or the same worker as an earlier endpoint" : "");
    if (size != sizeof rsp || rpc_io(fd, rsp, sizeof rsp, false) != 0)
        return bt__fail(BT_ERR_IO, "'%s' does not speak llama.cpp's RPC protocol", ep);
    if (rsp[0] != RPC_PROTO_MAJOR_VERSION || rsp[1] > RPC_PROTO_MINOR_VERSION)
        return bt__fail(BT_ERR_UNSUPPORTED, "RPC worker '%s' speaks protocol %d.%d.%d, this "
                        "llama.cpp %d.%d (run the rpc-server of the same llama.cpp release)",
                        ep, rsp[0], rsp[1], rsp[2], RPC_PROTO_MAJOR_VERSION, RPC_PROTO_MINOR_VERSION);
    return BT_OK;
}

/* Close a probe's connection. After a failed probe: reset, not close, so that a worker
 * that reads our greeting later does not answer a closed socket (rpc-server dies of
 * SIGPIPE then). */
static void rpc_close(int fd, bool reset) {
    if (fd < 0) return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

/* One endpoint of the list: normalized "host:port" and its probe connection. */
typedef struct {
    char host[256], port[6], ep[300];
    struct sockaddr_in addr;
    int fd;
} rpc_endpoint;

/* Split and check the syntax of the whole list before any worker is contacted: at most
 * GGML_RPC_MAX_SERVERS endpoints into eps, their count in *n. */
static int rpc_parse_list(const char *list, rpc_endpoint *eps, int *n) {
    *n = 0;
    for (const char *p = list;; p++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) return bt__fail(BT_ERR_INVALID_ARG, "RPC workers '%s': an empty endpoint", list);
        if (*n == GGML_RPC_MAX_SERVERS)
            return bt__fail(BT_ERR_INVALID_ARG, "RPC workers: at most %d", GGML_RPC_MAX_SERVERS);
        rpc_endpoint *e = &eps[*n];
        int rc = rpc_parse_endpoint(p, len, e->host, sizeof e->host, e->port);
        if (rc != BT_OK) return rc;
        snprintf(e->ep, sizeof e->ep, "%s:%s", e->host, e->port);
        e->fd = -1;
        ++*n;
        if (!end) return BT_OK;
        p = end;
    }
}

/* Probe every endpoint, each connection held open until all are probed: ggml's client
 * opens one connection per endpoint name and rpc-server serves one connection at a time,
 * so two names of one worker would leave ggml waiting forever for the second's answer.
 * Names that are the same, or resolve to the same address, are refused at once; other
 * aliases (0.0.0.0, another interface of the same machine) meet a busy worker and time
 * out. Every connection is closed again on return. */
static int rpc_probe_all(rpc_endpoint *eps, int n) {
    int rc = BT_OK, i;
    for (i = 0; i < n && rc == BT_OK; i++) {
        rpc_endpoint *e = &eps[i];
        for (int j = 0; j < i && rc == BT_OK; j++)
            if (strcmp(eps[j].ep, e->ep) == 0)
                rc = bt__fail(BT_ERR_INVALID_ARG, "RPC worker '%s' listed twice", e->ep);
        if (rc != BT_OK) break;
        rc = rpc_connect(e->ep, e->host, e->port, &e->fd, &e->addr);
        for (int j = 0; j < i && rc == BT_OK; j++)
            if (eps[j].addr.sin_addr.s_addr == e->addr.sin_addr.s_addr &&
                eps[j].addr.sin_port == e->addr.sin_port)
                rc = bt__fail(BT_ERR_INVALID_ARG, "RPC workers '%s' and '%s' are the same "
                              "worker (rpc-server serves one client at a time)", eps[j].ep, e->ep);
        if (rc == BT_OK) rc = rpc_hello(e->fd, e->ep, i > 0);
        if (rc != BT_OK) {
            rpc_close(e->fd, true);
            e->fd = -1;
        }
    }
    while (i-- > 0) {
        rpc_close(eps[i].fd, false);
        eps[i].fd = -1;
    }
    return rc;
}

/* The devices for a model whose layers go to the workers of `list` ("host:port,...")
 * then to any local GPU: a new NULL-terminated array in *out (free() it). */
static int rpc_devices(const char *list, ggml_backend_dev_t **out) {
    *out = NULL;
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("RPC");
    if (!reg)
        return bt__fail(BT_ERR_UNSUPPORTED, "this llama.cpp has no RPC backend (no "
                        "libggml-rpc.so in %s; build it with BT_LLAMA_RPC=1 scripts/get-llama.sh)",
                        loaded_from);
    typedef ggml_backend_reg_t (*add_server_fn)(const char *endpoint);
    add_server_fn add = (add_server_fn)ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_add_server");
    if (!add) return bt__fail(BT_ERR_UNSUPPORTED, "the RPC backend has no ggml_backend_rpc_add_server");

    rpc_endpoint *eps = calloc(GGML_RPC_MAX_SERVERS, sizeof *eps);
    if (!eps) return bt__fail(BT_ERR_NOMEM, "out of memory");
    int n_ep = 0, rc = rpc_parse_list(list, eps, &n_ep);
    if (rc == BT_OK) rc = rpc_probe_all(eps, n_ep);
    size_t n_local = ggml_backend_dev_count(), cap = n_local + 1, n = 0;
    ggml_backend_dev_t *devs = NULL;
    for (int i = 0; i < n_ep && rc == BT_OK; i++) {
        ggml_backend_reg_t r = add(eps[i].ep);
        if (!r) {
            rc = bt__fail(BT_ERR_IO, "RPC worker '%s' offers no device", eps[i].ep);
            break;
        }
        size_t k = ggml_backend_reg_dev_count(r);
        ggml_backend_dev_t *nd = realloc(devs, (cap + n + k) * sizeof *nd);
        if (!nd) {
            rc = bt__fail(BT_ERR_NOMEM, "out of memory");
            break;
        }
        devs = nd;
        for (size_t j = 0; j < k; j++) devs[n++] = ggml_backend_reg_dev_get(r, j);
    }
    free(eps);
    if (rc != BT_OK) {
        free(devs);
        return rc;
    }
    /* local GPUs after the workers, as llama.cpp's own --rpc orders them */
    for (size_t i = 0; i < n_local; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        if (t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU) devs[n++] = d;
    }
    devs[n] = NULL;
    *out = devs;
    return BT_OK;
}

/* ==== Logits kept for rewinds ============================================= */

/* Remember the logits of position `pos` (from llama.cpp's output buffer) and return the
 * copy. The provider never hands out llama.cpp's own buffer: in a pool the next batch
 * overwrites (or reallocates) it while this sequence's thread is still sampling. The
 * ring has at least one slot for that reason, even with logits_window 0. */
static const float *keep_logits(llama_seq *q, int32_t pos, const float *src) {
    size_t nv = (size_t)q->sh->n_vocab;
    int32_t slot = pos % q->window;
    float *res = q->ring + (size_t)slot * nv;
    memcpy(res, src, nv * sizeof *res);
    q->ring_pos[slot] = pos;
    if (q->base_pos < 0) {
        memcpy(q->base, src, nv * sizeof *q->base);
        q->base_pos = pos;
        res = q->base;
    }
    return res;
}

/* Logits of `pos` if still kept, NULL otherwise. */
static const float *kept_logits(llama_seq *q, int32_t pos) {
    if (pos == q->base_pos) return q->base;
    if (pos >= 0 && q->ring_pos[pos % q->window] == pos)
        return q->ring + (size_t)(pos % q->window) * (size_t)q->sh->n_vocab;
    return NULL;
}

/* ==== Decoding ============================================================ */

/* In a forked child, the threads the parent made are gone: a single provider drops its
 * threadpool (left allocated: freeing it would join threads that are not there) and
 * ggml starts workers for each decode, as it did before the pool existed. */
static void drop_threadpool_after_fork(llama_shared *sh) {
    if (sh->threadpool && getpid() != sh->pid) {
        llama_detach_threadpool(sh->lctx);
        sh->threadpool = NULL;
    }
}

/* ---- Filling holes ----
 *
 * With a cache per sequence (kv_unified off), llama.cpp splits a batch into ubatches of
 * sequences with consecutive ids (llama_batch_allocr::split_equal, sequential): the
 * sequences {0,1,2,4,5,6,7} decode as two ubatches, {0,4,7} as three, and each ubatch
 * reads all the weights again. On bench-100m-q8 with 2 threads (bench/bench_holes), 7
 * tokens with a hole cost 31% more than 8 without one; {0,4,7} more than 8. That happens
 * whenever the busy slots are not side by side: a request ends in a middle slot, or a
 * server is half busy.
 *
 * So a step closes a hole of up to FILL_GAP_MAX idle sequences between two busy ones
 * with one throwaway token each, decoded after the sequence's last cached position and
 * removed right after the decode: one token costs far less than a second pass over the
 * weights. Only sequences between two generations are used (their cache is theirs again
 * once the token is removed), only with room left in their context, only for models
 * whose cache can drop its last position (not recurrent or hybrid), only when the step
 * holds one token per request, and only where no sequence's attention grows (see
 * plan_fill). Sequences in the middle of a generation that missed the step are left
 * alone: they are about to decode themselves. Everything here runs under sh->mu, which
 * every change to the cache holds, so the last cached position read here is the one the
 * decode sees. */
#define FILL_GAP_MAX 3

/* llama.cpp's attention in a ubatch spans, for every sequence in it, the longest cache of
 * them all, rounded up to 256 cells (llama_kv_cache::get_n_kv). */
#define KV_SPAN(n) ((((int64_t)(n) + 255) / 256) * 256)

/* The span of request r in the step's first ubatch, which holds one token of each. */
static int64_t req_span(llama_seq **reqs, int32_t r) {
    return KV_SPAN(reqs[r]->req_from + 1);
}

/* Plan the idle sequences that go between this step's requests (sh->fill, sh->fill_pos);
 * returns how many. A hole is filled only where that stretches no sequence's attention:
 * the runs of busy sequences on both sides span as many cells, and no idle sequence in it
 * spans more (a finished 1,500-token conversation kept for reuse, between two short
 * generations, would make every step of theirs attend over 1,536 cells instead of 256). */
static int32_t plan_fill(llama_shared *sh, llama_seq **reqs, int32_t n_req) {
    int32_t n_fill = 0;
    bool single = true; /* every request is one token (generation, or a cached prompt) */
    for (int32_t r = 0; r < n_req; r++) {
        sh->fill[r] = 0;
        single = single && reqs[r]->req_n == 1;
    }
    /* With a longer request (a prompt) llama.cpp decodes the rest of it in ubatches of
     * its own after the first, one per side of a filled hole: {0}x30 {2}x30 would become
     * {0,1,2}x1 {0}x29 {2}x29, a pass more. With one token each, requests and fillers are
     * at most one token per sequence: n_seq <= n_batch, one chunk (shared_new). */
    if (!sh->can_fill || n_req < 2 || !single) return 0;
    struct llama_memory_i *mem = llama_get_memory(sh->lctx);
    int64_t left = req_span(reqs, 0); /* the run of busy sequences left of the hole */
    for (int32_t r = 1; r < n_req; r++) {
        int32_t from = reqs[r - 1]->id + 1, to = reqs[r]->id; /* the hole: [from, to) */
        int64_t here = req_span(reqs, r);
        if (to == from) { /* no hole: the run goes on */
            if (here > left) left = here;
            continue;
        }
        int64_t right = here; /* the run right of the hole */
        for (int32_t j = r + 1; j < n_req && reqs[j]->id == reqs[j - 1]->id + 1; j++)
            if (req_span(reqs, j) > right) right = req_span(reqs, j);
        bool ok = to - from <= FILL_GAP_MAX && left == right;
        for (int32_t id = from; id < to && ok; id++) {
            llama_seq *q = sh->seqs[id];
            llama_pos next = llama_memory_seq_pos_max(mem, id) + 1;
            ok = !q->active && !q->pending && next < sh->n_ctx && KV_SPAN(next + 1) <= left;
            sh->fill_pos[id] = next;
        }
        if (ok) { /* one run now, as wide as both */
            sh->fill[r] = to - from;
            n_fill += to - from;
        } else {
            if (to - from <= FILL_GAP_MAX) sh->n_fill_skipped++;
            left = here;
        }
    }
    return n_fill;
}

/* Remove the throwaway tokens of the plan again. If the cache refuses (it should not, for
 * the models plan_fill allows), filling stops for good; the token left behind is removed
 * by that sequence's next begin or reset, which cut its cache at what it keeps. */
static void unfill(llama_shared *sh, llama_seq **reqs, int32_t n_req) {
    struct llama_memory_i *mem = llama_get_memory(sh->lctx);
    for (int32_t r = 1; r < n_req; r++)
        for (int32_t id = reqs[r]->id - sh->fill[r]; id < reqs[r]->id; id++)
            if (!llama_memory_seq_rm(mem, id, sh->fill_pos[id], -1)) {
                sh->seqs[id]->stale_filler = true;
                if (sh->can_fill)
                    bt__log(BT_LOG_WARN, "llama.cpp could not drop a filler token of "
                                         "sequence %d; no more holes are filled", id);
                sh->can_fill = false;
            }
}

/* Decode the pending requests of `reqs` (tokens of every sequence in one batch, chunked
 * at n_batch), logits for each request's last token; `reqs` is in sequence order, and
 * idle sequences fill the holes between them when plan_fill says so (those take no
 * logits). Sets each req_rc. Caller holds mu when threaded.
 *
 * Logits are kept (copied to the sequence's ring) here, except, with `defer`, those of
 * the requests that end in the last chunk: their req_out points into llama.cpp's buffer
 * and sh->n_copying counts them; each sequence's own thread copies them (in parallel,
 * out of the batcher's serial path, into the cache of the core that samples from them)
 * and the next llama_decode waits until all have. Earlier chunks' outputs are copied at
 * once: the next chunk's decode overwrites them. */
static void decode_requests(llama_shared *sh, llama_seq **reqs, int32_t n_req, bool defer) {
    drop_threadpool_after_fork(sh);
    int32_t n_fill = sh->fill ? plan_fill(sh, reqs, n_req) : 0;
    int32_t r = 0, k = 0; /* request and token within it, where the next chunk starts */
    while (r < n_req) {
        int32_t m = 0;
        int32_t first_r = r, first_k = k;
        while (r < n_req && m < sh->n_batch) {
            llama_seq *q = reqs[r];
            if (k == 0 && n_fill > 0) /* plan_fill made room: one chunk holds it all */
                for (int32_t id = q->id - sh->fill[r]; id < q->id; id++, m++) {
                    sh->batch.token[m] = 0; /* any token: it is dropped */
                    sh->batch.pos[m] = sh->fill_pos[id];
                    sh->batch.n_seq_id[m] = 1;
                    sh->batch.seq_id[m][0] = id;
                    sh->batch.logits[m] = false;
                }
            sh->batch.token[m] = q->req[k];
            sh->batch.pos[m] = q->req_from + k;
            sh->batch.n_seq_id[m] = 1;
            sh->batch.seq_id[m][0] = q->id;
            sh->batch.logits[m] = (k == q->req_n - 1);
            m++;
            if (++k == q->req_n) r++, k = 0;
        }
        sh->batch.n_tokens = m;
        int rc = llama_decode(sh->lctx, sh->batch);
        if (n_fill > 0) {
            unfill(sh, reqs, n_req);
            if (rc == 0) sh->n_filled += n_fill;
        }
        int status = rc == 0 ? BT_OK : rc == 1 ? BT_ERR_CONTEXT_FULL : BT_ERR_PROVIDER;
        if (status != BT_OK)
            bt__fail(status, rc == 1 ? "llama_decode: no room left in the KV cache"
                                     : "llama_decode failed (%d)", rc);
        /* collect the logits of the requests that ended in this chunk (fillers have none) */
        int32_t i = 0, rr = first_r, kk = first_k;
        for (; i < m; i++) {
            llama_seq *q = reqs[rr]; /* fillers come before a request: rr < n_req */
            if (sh->batch.seq_id[i][0] != q->id) continue; /* a filler */
            if (kk == q->req_n - 1) {
                if (status == BT_OK) {
                    const float *out = llama_get_logits_ith(sh->lctx, i);
                    if (out && defer && r == n_req) { /* the last chunk */
                        q->req_out = out;
                        sh->n_copying++;
                        q->req_rc = BT_OK;
                    } else if (out) {
                        q->cur = keep_logits(q, q->req_from + kk, out);
                        q->req_rc = BT_OK;
                    } else {
                        q->req_rc = bt__fail(BT_ERR_PROVIDER, "llama.cpp returned no logits");
                    }
                } else {
                    q->req_rc = status;
                }
            } else if (status != BT_OK) {
                q->req_rc = status;
            }
            if (++kk == q->req_n) rr++, kk = 0;
        }
        if (status != BT_OK) { /* fail the requests not reached yet */
            for (; r < n_req; r++) reqs[r]->req_rc = status;
            return;
        }
        n_fill = 0;
    }
}

/* How long the batcher waits for the stragglers of a step after the latest request. */
#define BATCH_WAIT_NS 2000000L

/* `t` + ns nanoseconds. */
static struct timespec ts_add(struct timespec t, long ns) {
    t.tv_nsec += ns;
    while (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    return t;
}

static bool ts_before(struct timespec a, struct timespec b) {
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* The batching thread of a pool: wait until every active sequence has a request, or until
 * none arrived for 2 ms, then decode them all in one batch. It is woken when a step's
 * first request arrives and when the last one does (the counters n_pending and n_active),
 * not by every request: each request notes its arrival time (sh->last_post) instead. */
static void *batcher(void *arg) {
    llama_shared *sh = arg;
    llama_seq **reqs = sh->reqs;
    pthread_mutex_lock(&sh->mu);
    while (!sh->stop) {
        if (sh->n_pending == 0) {
            pthread_cond_wait(&sh->work, &sh->mu);
            continue;
        }
        if (sh->n_pending < sh->n_active) { /* give the others a moment to join this step */
            struct timespec deadline = ts_add(sh->last_post, BATCH_WAIT_NS), now;
            clock_gettime(CLOCK_MONOTONIC, &now); /* `work` waits on this clock */
            if (ts_before(now, deadline)) {
                pthread_cond_timedwait(&sh->work, &sh->mu, &deadline);
                continue; /* woken, or a later request moved the deadline: count again */
            }
        }
        /* llama.cpp's output buffer is still being read from: wait for it (requests that
         * arrive meanwhile join this step) */
        if (sh->n_copying > 0) {
            pthread_cond_wait(&sh->copied, &sh->mu);
            continue;
        }
        int32_t n_req = 0;
        for (int32_t i = 0; i < sh->n_seq; i++)
            if (sh->seqs[i]->pending) reqs[n_req++] = sh->seqs[i];
        decode_requests(sh, reqs, n_req, true);
        for (int32_t i = 0; i < n_req; i++) {
            reqs[i]->pending = false;
            sh->n_pending--;
            sem_post(&reqs[i]->ready); /* wakes that sequence alone, which needs no lock */
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

/* Sequence q takes part in the batches from now on / no longer (caller holds mu): a
 * batcher waiting for the stragglers of a step stops waiting for one that left. */
static void set_active(llama_seq *q, bool active) {
    llama_shared *sh = q->sh;
    if (q->active == active) return;
    q->active = active;
    sh->n_active += active ? 1 : -1;
    if (!active && sh->n_pending > 0 && sh->n_pending >= sh->n_active)
        pthread_cond_signal(&sh->work);
}

/* Decode toks[0..n) of sequence q at positions from..: directly, or through the batching
 * thread of a pool. Caller holds mu (pools); it is released while the batch runs. */
static int decode(llama_seq *q, const bt_token *toks, int32_t n, int32_t from) {
    llama_shared *sh = q->sh;
    q->req = toks;
    q->req_n = n;
    q->req_from = from;
    q->req_rc = BT_OK;
    if (!sh->threaded) {
        decode_requests(sh, &q, 1, false);
        return q->req_rc;
    }
    if (getpid() != sh->pid)
        return bt__fail(BT_ERR_UNSUPPORTED, "a pool cannot decode in a forked child (its "
                                            "batching thread stayed in the parent)");
    set_active(q, true);
    q->pending = true;
    sh->n_pending++;
    clock_gettime(CLOCK_MONOTONIC, &sh->last_post);
    /* the step's first request starts the batcher's clock; the last one ends its wait */
    if (sh->n_pending == 1 || sh->n_pending >= sh->n_active) pthread_cond_signal(&sh->work);
    pthread_mutex_unlock(&sh->mu);
    int waited;
    while ((waited = sem_wait(&q->ready)) != 0 && errno == EINTR) {}
    if (waited != 0) { /* not a semaphore any more: nothing sane to wait on */
        pthread_mutex_lock(&sh->mu);
        return bt__fail(BT_ERR_PROVIDER, "waiting for the batch failed (%s)", strerror(errno));
    }
    /* keep our logits (the batcher waits for that before its next decode) */
    const float *out = q->req_out;
    const float *kept = out ? keep_logits(q, q->req_from + q->req_n - 1, out) : NULL;
    pthread_mutex_lock(&sh->mu);
    if (out) {
        q->cur = kept;
        q->req_out = NULL;
        if (--sh->n_copying == 0) pthread_cond_signal(&sh->copied);
    }
    /* the batcher's thread-local error message is not ours: restate it here */
    if (q->req_rc != BT_OK)
        return bt__fail(q->req_rc, q->req_rc == BT_ERR_CONTEXT_FULL
                                       ? "llama_decode: no room left in the KV cache"
                                       : "llama_decode failed");
    return BT_OK;
}

static void lock(llama_shared *sh) {
    if (sh->threaded) pthread_mutex_lock(&sh->mu);
}
static void unlock(llama_shared *sh) {
    if (sh->threaded) pthread_mutex_unlock(&sh->mu);
}

/* ==== vtable ============================================================= */

static int32_t lp_n_vocab(void *ctx) { return ((llama_seq *)ctx)->sh->n_vocab; }
static int32_t lp_n_ctx(void *ctx) { return ((llama_seq *)ctx)->sh->n_ctx; }

static int lp_tokenize(void *ctx, const char *text, size_t len, bool add_special,
                       bool parse_special, bt_token *out, int32_t cap, int32_t *n_out) {
    llama_shared *sh = ((llama_seq *)ctx)->sh;
    if (len > INT32_MAX) return bt__fail(BT_ERR_INVALID_ARG, "text too long");
    int32_t n = llama_tokenize(sh->vocab, text, (int32_t)len, out, cap, add_special, parse_special);
    if (n == INT32_MIN) return bt__fail(BT_ERR_INVALID_ARG, "tokenization overflows");
    if (n < 0) {
        *n_out = -n;
        return bt__fail(BT_ERR_INVALID_ARG, "token buffer too small (%d needed)", -n);
    }
    *n_out = n;
    return BT_OK;
}

static int lp_token_text(void *ctx, bt_token id, const char **bytes, size_t *len) {
    llama_shared *sh = ((llama_seq *)ctx)->sh;
    if (id < 0 || id >= sh->n_vocab) return bt__fail(BT_ERR_INVALID_ARG, "bad token %d", id);
    *bytes = sh->pieces + sh->off[id];
    *len = sh->off[id + 1] - sh->off[id];
    return BT_OK;
}

static bool lp_is_eog(void *ctx, bt_token id) {
    return llama_vocab_is_eog(((llama_seq *)ctx)->sh->vocab, id);
}

static int lp_eval(void *ctx, const bt_token *seq, int32_t n, const float **logits,
                   bt_eval_info *info) {
    llama_seq *q = ctx;
    llama_shared *sh = q->sh;
    bt_eval_info local = {0, 0};
    if (n > sh->n_ctx)
        return bt__fail(BT_ERR_CONTEXT_FULL, "sequence of %d tokens exceeds n_ctx = %d", n, sh->n_ctx);
    if (n <= 0 || n < q->n_held)
        return bt__fail(BT_ERR_INVALID_ARG, "eval: %d tokens, %d already held", n, q->n_held);
    for (int32_t i = q->n_held; i < n; i++)
        if (seq[i] < 0 || seq[i] >= sh->n_vocab)
            return bt__fail(BT_ERR_INVALID_ARG, "token %d outside the vocabulary", seq[i]);

    int rc = BT_OK;
    lock(sh);
    if (n > q->n_held) {
        /* copy first: the batcher reads the tokens from held[] */
        memcpy(q->held + q->n_held, seq + q->n_held, (size_t)(n - q->n_held) * sizeof *seq);
        rc = decode(q, q->held + q->n_held, n - q->n_held, q->n_held);
        if (rc == BT_OK) {
            local = (bt_eval_info){.n_evaluated = n - q->n_held, .first_pos = q->n_held};
            q->n_held = n;
        }
    } else if (!q->cur) {
        /* Rewound past the kept logits: evaluate the last position once more. */
        int32_t p = n - 1;
        if (!llama_memory_seq_rm(llama_get_memory(sh->lctx), q->id, p, -1))
            rc = bt__fail(BT_ERR_UNSUPPORTED, "this model cannot undo tokens (llama_memory_seq_rm failed)");
        else if ((rc = decode(q, q->held + p, 1, p)) == BT_OK)
            local = (bt_eval_info){.n_evaluated = 1, .first_pos = p};
    }
    const float *cur = q->cur;
    unlock(sh);
    if (rc != BT_OK) return rc;
    if (info) *info = local;
    *logits = cur;
    return BT_OK;
}

static int lp_rewind(void *ctx, int32_t n) {
    llama_seq *q = ctx;
    llama_shared *sh = q->sh;
    if (n < 0 || n > q->n_held)
        return bt__fail(BT_ERR_INVALID_ARG, "cannot rewind %d of %d positions", n, q->n_held);
    if (n == 0) return BT_OK;
    int32_t keep = q->n_held - n;
    lock(sh);
    bool ok = llama_memory_seq_rm(llama_get_memory(sh->lctx), q->id, keep, -1);
    unlock(sh);
    if (!ok) return bt__fail(BT_ERR_UNSUPPORTED, "this model cannot undo tokens (llama_memory_seq_rm failed)");
    /* Slots of removed positions are stale now. */
    for (int32_t p = keep; p < q->n_held; p++)
        if (q->ring_pos[p % q->window] == p) q->ring_pos[p % q->window] = -1;
    if (q->base_pos >= keep) q->base_pos = -1;
    q->n_held = keep;
    q->cur = keep > 0 ? kept_logits(q, keep - 1) : NULL;
    return BT_OK;
}

static void lp_reset(void *ctx) {
    llama_seq *q = ctx;
    llama_shared *sh = q->sh;
    lock(sh);
    llama_memory_seq_rm(llama_get_memory(sh->lctx), q->id, -1, -1); /* whole: never fails */
    q->stale_filler = false;
    /* a pool's batcher may be waiting for this one (a single provider has no batcher,
     * and its condition variables were never initialised) */
    if (sh->threaded) set_active(q, false);
    unlock(sh);
    q->n_held = 0;
    q->cur = NULL;
    q->base_pos = -1;
    for (int32_t i = 0; i < q->window; i++) q->ring_pos[i] = -1;
}

static int32_t lp_held(void *ctx, const bt_token **tokens) {
    llama_seq *q = ctx;
    *tokens = q->held;
    return q->n_held;
}

/* Keep the first `keep` positions of the KV cache for the next generation. The logits
 * kept for rewinds belong to the last generation: only those of kept positions stay, and
 * the next eval's last position becomes the new prompt end. */
static int32_t lp_begin(void *ctx, int32_t keep) {
    llama_seq *q = ctx;
    llama_shared *sh = q->sh;
    if (keep < 0 || keep > q->n_held)
        return bt__fail(BT_ERR_INVALID_ARG, "begin: keep %d of %d positions", keep, q->n_held);
    lock(sh);
    if ((keep < q->n_held || q->stale_filler) &&
        !llama_memory_seq_rm(llama_get_memory(sh->lctx), q->id, keep, -1)) {
        /* a cache that cannot be cut there (recurrent models): start cold */
        llama_memory_seq_rm(llama_get_memory(sh->lctx), q->id, -1, -1);
        keep = 0;
    }
    q->stale_filler = false;
    unlock(sh);
    for (int32_t i = 0; i < q->window; i++)
        if (q->ring_pos[i] >= keep) q->ring_pos[i] = -1;
    q->base_pos = -1;
    q->n_held = keep;
    q->cur = NULL;
    return keep;
}

/* The generation ended: the cache stays; a pool's batcher stops waiting for this one. */
static void lp_end(void *ctx) {
    llama_seq *q = ctx;
    llama_shared *sh = q->sh;
    lock(sh);
    if (sh->threaded) set_active(q, false);
    unlock(sh);
}

/* Memory for a sequence's kept logits (NULL if none): its own mapping, in huge pages
 * where the kernel gives them (transparent huge pages in "madvise" mode). With 4 KiB
 * pages, a 128k vocabulary's ring of 33 rows is 4,300 page faults per sequence the first
 * time it fills, paid by the first requests (measured: 0.65 s of CPU for 8 sequences on
 * a virtual machine); with 2 MiB pages it is 9. Free with logits_free(p, bytes). */
#if defined(__SANITIZE_ADDRESS__)
#define BT__LOGITS_MALLOC 1 /* AddressSanitizer checks heap blocks, not mappings */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BT__LOGITS_MALLOC 1
#endif
#endif
static float *logits_alloc(size_t bytes) {
#ifdef BT__LOGITS_MALLOC
    return calloc(1, bytes);
#else
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= (size_t)2 << 20) madvise(p, bytes, MADV_HUGEPAGE); /* a hint: may fail */
#endif
    return p;
#endif
}

static void logits_free(float *p, size_t bytes) {
#ifdef BT__LOGITS_MALLOC
    (void)bytes;
    free(p);
#else
    munmap(p, bytes);
#endif
}

/* Fault in the pages of a logits mapping now (a pool's, before its first request):
 * first touches of fresh memory are slow on virtual machines (zeroing, and the host's own
 * faults: 0.25 s of CPU for 8 sequences of a 128k vocabulary, measured), and a server
 * pays them at start-up, as llama-server pays its warm-up, not in its first requests.
 * Only up to 64 MiB a sequence (the default window of a 256k vocabulary is 34 MiB). */
static void logits_prefault(float *p, size_t bytes) {
#if defined(MADV_POPULATE_WRITE) && !defined(BT__LOGITS_MALLOC)
    /* within a budget: a large --logits-window stays lazy (the memory it never reaches
     * is never taken); a failure (ENOMEM, an old kernel) only leaves it lazy too */
    if (bytes <= ((size_t)64 << 20)) (void)madvise(p, bytes, MADV_POPULATE_WRITE);
#else
    (void)p, (void)bytes;
#endif
}

static void seq_free(llama_seq *q) {
    if (!q) return;
    free(q->held);
    if (q->ring) logits_free(q->ring, q->logits_bytes);
    free(q->ring_pos);
    free(q);
}

static void shared_free(llama_shared *sh) {
    if (!sh) return;
    drop_threadpool_after_fork(sh);
    if (sh->threaded && getpid() != sh->pid) {
        /* a forked child: the batching thread is the parent's; what it shares with this
         * copy (mutex, semaphores) is left as it is */
        sh->threaded = false;
    }
    if (sh->threaded) {
        pthread_mutex_lock(&sh->mu);
        sh->stop = true;
        pthread_cond_signal(&sh->work);
        pthread_mutex_unlock(&sh->mu);
        pthread_join(sh->thread, NULL);
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->work);
        pthread_cond_destroy(&sh->copied);
        for (int32_t i = 0; i < sh->n_seq; i++) sem_destroy(&sh->seqs[i]->ready);
    }
    if (sh->seqs)
        for (int32_t i = 0; i < sh->n_seq; i++) seq_free(sh->seqs[i]);
    free(sh->seqs);
    free(sh->reqs);
    free(sh->fill);
    free(sh->fill_pos);
    if (sh->batch.token) llama_batch_free(sh->batch);
    if (sh->lctx) llama_free(sh->lctx);
    if (sh->threadpool) sh->threadpool_free(sh->threadpool);
    if (sh->model) llama_model_free(sh->model);
    free(sh->pieces);
    free(sh->off);
    free(sh);
}

static void lp_free(void *ctx) {
    llama_seq *q = ctx;
    if (q->owns_shared) shared_free(q->sh);
}

static const bt_provider_i llama_iface = {
    .name = "llama.cpp",
    .n_vocab = lp_n_vocab,
    .n_ctx = lp_n_ctx,
    .tokenize = lp_tokenize,
    .token_text = lp_token_text,
    .is_eog = lp_is_eog,
    .eval = lp_eval,
    .rewind = lp_rewind,
    .reset = lp_reset,
    .held = lp_held,
    .begin = lp_begin,
    .end = lp_end,
    .free = lp_free,
};

/* ==== Construction ======================================================= */

/* Cache every token's text (special tokens render as ""). */
static int cache_pieces(llama_shared *sh) {
    size_t cap = (size_t)sh->n_vocab * 8 + 64, used = 0;
    sh->pieces = malloc(cap);
    sh->off = malloc(((size_t)sh->n_vocab + 1) * sizeof *sh->off);
    if (!sh->pieces || !sh->off) return bt__fail(BT_ERR_NOMEM, "out of memory");
    for (bt_token t = 0; t < sh->n_vocab; t++) {
        char buf[256];
        int32_t n = llama_token_to_piece(sh->vocab, t, buf, (int32_t)sizeof buf, 0, false);
        if (n < 0) n = 0; /* longer than 256 bytes: no real token is */
        if (used + (size_t)n > cap) {
            size_t ncap = cap * 2 + (size_t)n;
            char *np = realloc(sh->pieces, ncap);
            if (!np) return bt__fail(BT_ERR_NOMEM, "out of memory");
            sh->pieces = np;
            cap = ncap;
        }
        sh->off[t] = used;
        memcpy(sh->pieces + used, buf, (size_t)n);
        used += (size_t)n;
    }
    sh->off[sh->n_vocab] = used;
    return BT_OK;
}

static llama_seq *seq_new(llama_shared *sh, int32_t id, int32_t window) {
    llama_seq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->sh = sh;
    q->id = id;
    q->base_pos = -1;
    /* window 0 (always re-decode) still needs one slot: the logits handed out are ours.
     * With one slot a rewind never finds the position it lands on (the slot holds the
     * last one), which is what 0 asks for. */
    q->window = window > 0 ? window : 1;
    q->held = malloc((size_t)sh->n_ctx * sizeof *q->held);
    size_t nv = (size_t)sh->n_vocab;
    q->logits_bytes = ((size_t)q->window + 1) * nv * sizeof(float);
    q->ring = logits_alloc(q->logits_bytes);
    q->base = q->ring ? q->ring + (size_t)q->window * nv : NULL;
    q->ring_pos = malloc((size_t)q->window * sizeof *q->ring_pos);
    if (!q->held || !q->ring || !q->ring_pos) {
        seq_free(q);
        return NULL;
    }
    for (int32_t i = 0; i < q->window; i++) q->ring_pos[i] = -1;
    return q;
}

/* Give the context a pool of `threads` CPU workers that lives as long as it does. Without
 * one, ggml starts and joins threads - 1 threads for every llama_decode (one per token
 * in generation). The workers sleep between decodes instead of polling (poll 0): the
 * CPUs they would spin on are the ones this process samples on. Best effort: without the
 * CPU backend's entry points nothing changes. */
static void attach_threadpool(llama_shared *sh, int32_t threads) {
    if (threads <= 1) return;
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = cpu ? ggml_backend_dev_backend_reg(cpu) : NULL;
    if (!reg) return;
    struct ggml_threadpool *(*tp_new)(struct ggml_threadpool_params *) =
        (struct ggml_threadpool *(*)(struct ggml_threadpool_params *))
            ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    void (*tp_free)(struct ggml_threadpool *) = (void (*)(struct ggml_threadpool *))
        ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
    if (!tp_new || !tp_free) return;
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    tpp.poll = 0;
    if (!(sh->threadpool = tp_new(&tpp))) return;
    sh->threadpool_free = tp_free;
    llama_attach_threadpool(sh->lctx, sh->threadpool, NULL);
}

/* Load the model and build a context for n_seq sequences of n_ctx tokens each. */
static llama_shared *shared_new(const bt_llama_params *P, int32_t n_seq) {
    if (!P || !P->model_path || !*P->model_path) {
        bt__fail(BT_ERR_INVALID_ARG, "no model path given");
        return NULL;
    }
    if (P->n_ctx < 0 || P->n_batch <= 0 || P->n_threads < 0 || P->logits_window < 0 ||
        P->n_gpu_layers < -1) {
        bt__fail(BT_ERR_INVALID_ARG, "llama provider: n_ctx, n_batch, n_threads, "
                                     "logits_window must be >= 0 (n_batch > 0)");
        return NULL;
    }
    if (check_model_file(P->model_path) != BT_OK) return NULL;

    bt__llama_log_verbose = P->verbose;
    llama_log_set(llama_log_cb, NULL);
    load_backends(P->backend_dir);

    llama_shared *sh = calloc(1, sizeof *sh);
    if (!sh) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sh->n_seq = n_seq;
    sh->pid = getpid();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = P->n_gpu_layers;
    ggml_backend_dev_t *rpc = NULL;
    if (P->rpc_servers && rpc_devices(P->rpc_servers, &rpc) != BT_OK) goto fail;
    if (rpc && P->n_gpu_layers == 0)
        bt__log(BT_LOG_WARN, "RPC workers given with n_gpu_layers 0: no layer goes to them");
    mp.devices = rpc;
    sh->model = llama_model_load_from_file(P->model_path, mp);
    free(rpc);
    if (!sh->model) {
        bt__fail(BT_ERR_MODEL, "cannot load model '%s' (truncated or unsupported GGUF; "
                               "-v shows llama.cpp's reason)", P->model_path);
        goto fail;
    }
    sh->vocab = llama_model_get_vocab(sh->model);
    sh->n_vocab = llama_vocab_n_tokens(sh->vocab);
    if (sh->n_vocab <= 0) {
        bt__fail(BT_ERR_MODEL, "model '%s' has no vocabulary", P->model_path);
        goto fail;
    }

    int32_t n_train = llama_model_n_ctx_train(sh->model);
    int32_t n_ctx = P->n_ctx > 0 ? P->n_ctx : (n_train > 0 && n_train < 4096 ? n_train : 4096);
    int32_t threads = P->n_threads > 0 ? P->n_threads : default_threads(sh->model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx * (uint32_t)n_seq; /* each sequence gets n_ctx */
    cp.n_batch = (uint32_t)(P->n_batch < n_ctx ? P->n_batch : n_ctx);
    if (cp.n_batch < (uint32_t)n_seq) cp.n_batch = (uint32_t)n_seq;
    cp.n_ubatch = cp.n_batch;
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = false;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    sh->lctx = llama_init_from_model(sh->model, cp);
    if (!sh->lctx) {
        bt__fail(BT_ERR_MODEL, "cannot create a context of %d x %d tokens for '%s'", n_seq,
                 n_ctx, P->model_path);
        goto fail;
    }
    attach_threadpool(sh, threads);
    /* llama.cpp may round the context up; honour the size that was asked for. */
    sh->n_ctx = (int32_t)llama_n_ctx_seq(sh->lctx);
    if (n_ctx < sh->n_ctx) sh->n_ctx = n_ctx;
    sh->n_batch = (int32_t)cp.n_batch;
    sh->batch = llama_batch_init(sh->n_batch, 0, 1);
    sh->seqs = calloc((size_t)n_seq, sizeof *sh->seqs);
    if (!sh->batch.token || !sh->seqs) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n_seq; i++)
        if (!(sh->seqs[i] = seq_new(sh, i, P->logits_window))) {
            bt__fail(BT_ERR_NOMEM, "out of memory for the logits of %d sequences", n_seq);
            goto fail;
        }
    if (cache_pieces(sh) != BT_OK) goto fail;
    return sh;
fail:
    shared_free(sh);
    return NULL;
}

bt_provider *bt_llama_provider_init(const bt_llama_params *params) {
    llama_shared *sh = shared_new(params, 1);
    if (!sh) return NULL;
    bt_provider *p = bt_provider_init(&llama_iface, sh->seqs[0]);
    if (!p) shared_free(sh);
    else sh->seqs[0]->owns_shared = true;
    return p;
}

/* ==== Pools =============================================================== */

struct bt_llama_pool {
    llama_shared *sh;
    bt_provider **members;
};

int64_t bt__llama_pool_filled(bt_llama_pool *pool, int64_t *skipped) {
    pthread_mutex_lock(&pool->sh->mu);
    int64_t n = pool->sh->n_filled;
    if (skipped) *skipped = pool->sh->n_fill_skipped;
    pthread_mutex_unlock(&pool->sh->mu);
    return n;
}

bt_llama_pool *bt_llama_pool_init(const bt_llama_params *params, int32_t n) {
    if (n < 1 || n > 256) {
        bt__fail(BT_ERR_INVALID_ARG, "a pool holds 1 to 256 sequences");
        return NULL;
    }
    bt_llama_pool *pool = calloc(1, sizeof *pool);
    if (!pool) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!(pool->sh = shared_new(params, n))) {
        free(pool);
        return NULL;
    }
    llama_shared *sh = pool->sh;
    pool->members = calloc((size_t)n, sizeof *pool->members);
    sh->reqs = malloc((size_t)n * sizeof *sh->reqs);
    sh->fill = malloc((size_t)n * sizeof *sh->fill);
    sh->fill_pos = malloc((size_t)n * sizeof *sh->fill_pos);
    if (!pool->members || !sh->reqs || !sh->fill || !sh->fill_pos) goto nomem;
    /* a recurrent state cannot drop its last position: no fillers there (plan_fill) */
    sh->can_fill = !llama_model_is_recurrent(sh->model) && !llama_model_is_hybrid(sh->model);
    for (int32_t i = 0; i < n; i++)
        if (!(pool->members[i] = bt_provider_init(&llama_iface, sh->seqs[i]))) goto nomem;
    for (int32_t i = 0; i < n; i++) logits_prefault(sh->seqs[i]->ring, sh->seqs[i]->logits_bytes);
    int32_t n_sem = 0;
    while (n_sem < n && sem_init(&sh->seqs[n_sem]->ready, 0, 0) == 0) n_sem++;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->work, &ca);
    pthread_cond_init(&sh->copied, NULL);
    pthread_condattr_destroy(&ca);
    if (n_sem < n || pthread_create(&sh->thread, NULL, batcher, sh) != 0) {
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->work);
        pthread_cond_destroy(&sh->copied);
        for (int32_t i = 0; i < n_sem; i++) sem_destroy(&sh->seqs[i]->ready);
        bt__fail(BT_ERR_NOMEM, "cannot start the batching thread");
        goto fail;
    }
    sh->threaded = true;
    return pool;
nomem:
    bt__fail(BT_ERR_NOMEM, "out of memory");
fail:
    bt_llama_pool_free(pool);
    return NULL;
}

bt_provider *bt_llama_pool_provider(bt_llama_pool *pool, int32_t i) {
    if (!pool || i < 0 || i >= pool->sh->n_seq) return NULL;
    return pool->members[i];
}

int32_t bt_llama_pool_size(const bt_llama_pool *pool) { return pool ? pool->sh->n_seq : 0; }

void bt_llama_pool_free(bt_llama_pool *pool) {
    if (!pool) return;
    if (pool->members)
        for (int32_t i = 0; i < pool->sh->n_seq; i++) bt_provider_free(pool->members[i]);
    free(pool->members);
    shared_free(pool->sh);
    free(pool);
}

/* ==== Chat templates ====================================================== */

int bt_llama_chat_messages(bt_provider *p, const char *tmpl_name, const bt_chat_message *msgs,
                           int32_t n, char **out) {
    *out = NULL;
    if (!p || p->iface != &llama_iface)
        return bt__fail(BT_ERR_UNSUPPORTED, "chat templates need the llama.cpp provider");
    if (!msgs || n <= 0) return bt__fail(BT_ERR_INVALID_ARG, "no messages");
    llama_shared *sh = ((llama_seq *)p->ctx)->sh;
    const char *tmpl = tmpl_name && *tmpl_name ? tmpl_name : llama_model_chat_template(sh->model, NULL);
    if (!tmpl) return bt__fail(BT_ERR_UNSUPPORTED, "the model has no chat template (name one, e.g. chatml)");
    struct llama_chat_message *lm = malloc((size_t)n * sizeof *lm);
    if (!lm) return bt__fail(BT_ERR_NOMEM, "out of memory");
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            free(lm);
            return bt__fail(BT_ERR_INVALID_ARG, "message %d lacks a role or content", i);
        }
        lm[i] = (struct llama_chat_message){.role = msgs[i].role, .content = msgs[i].content};
        total += strlen(msgs[i].content) + strlen(msgs[i].role);
    }
    if (total > (size_t)INT32_MAX / 4) {
        free(lm);
        return bt__fail(BT_ERR_INVALID_ARG, "messages too long");
    }
    int32_t cap = (int32_t)(2 * total + 1024);
    int rc = bt__fail(BT_ERR_PROVIDER, "chat template grew while being applied");
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc((size_t)cap + 1);
        if (!buf) {
            rc = bt__fail(BT_ERR_NOMEM, "out of memory");
            break;
        }
        int32_t len = llama_chat_apply_template(tmpl, lm, (size_t)n, true, buf, cap);
        if (len < 0) {
            free(buf);
            rc = bt__fail(BT_ERR_UNSUPPORTED, "llama.cpp does not support the chat template%s%s",
                          tmpl_name && *tmpl_name ? " " : "", tmpl_name && *tmpl_name ? tmpl_name : "");
            break;
        }
        if (len <= cap) {
            buf[len] = '\0';
            *out = buf;
            rc = BT_OK;
            break;
        }
        free(buf);
        cap = len;
    }
    free(lm);
    return rc;
}

int bt_llama_chat_prompt(bt_provider *p, const char *user_text, char **out) {
    if (!user_text) {
        *out = NULL;
        return bt__fail(BT_ERR_INVALID_ARG, "no text");
    }
    bt_chat_message m = {"user", user_text};
    return bt_llama_chat_messages(p, NULL, &m, 1, out);
}
