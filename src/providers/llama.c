/*
 * llama.c -- the llama.cpp provider.
 *
 * Holds one sequence in the KV cache (sequence 0). eval() decodes only positions not yet
 * in the cache; rewind() removes positions with llama_memory_seq_rm and checks that it
 * worked. To make rewinds free, the logits of the last `logits_window` positions are kept
 * in a ring, plus those after the prompt: a rewind that lands inside the window needs no
 * model evaluation; a deeper one re-decodes one token. The prompt is never evaluated
 * twice.
 */
#define _GNU_SOURCE
#include "../internal.h"

#include "ggml-backend.h"
#include "llama.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct llama_prov {
    struct llama_model   *model;
    struct llama_context *lctx;
    const struct llama_vocab *vocab;
    struct llama_batch    batch;
    int32_t  n_vocab, n_ctx, n_batch;
    /* token texts, cached at load: text of t is pieces[off[t] .. off[t+1]) */
    char    *pieces;
    size_t  *off;
    /* the held sequence */
    bt_token *held;      /* n_ctx */
    int32_t  n_held;
    /* logits kept for rewinds */
    int32_t  window;     /* ring slots */
    float   *ring;       /* window * n_vocab */
    int32_t *ring_pos;   /* position whose logits each slot holds, -1 if none */
    float   *base;       /* logits after the first evaluated batch (the prompt) */
    int32_t  base_pos;   /* -1 if none */
    const float *cur;    /* logits of position n_held - 1, or NULL if unknown */
} llama_prov;

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
                             .backend_dir = NULL};
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

/* ==== vtable ============================================================= */

static int32_t lp_n_vocab(void *ctx) { return ((llama_prov *)ctx)->n_vocab; }
static int32_t lp_n_ctx(void *ctx) { return ((llama_prov *)ctx)->n_ctx; }

static int lp_tokenize(void *ctx, const char *text, size_t len, bool add_special,
                       bool parse_special, bt_token *out, int32_t cap, int32_t *n_out) {
    llama_prov *lp = ctx;
    if (len > INT32_MAX) return bt__fail(BT_ERR_INVALID_ARG, "text too long");
    int32_t n = llama_tokenize(lp->vocab, text, (int32_t)len, out, cap, add_special, parse_special);
    if (n == INT32_MIN) return bt__fail(BT_ERR_INVALID_ARG, "tokenization overflows");
    if (n < 0) {
        *n_out = -n;
        return bt__fail(BT_ERR_INVALID_ARG, "token buffer too small (%d needed)", -n);
    }
    *n_out = n;
    return BT_OK;
}

static int lp_token_text(void *ctx, bt_token id, const char **bytes, size_t *len) {
    llama_prov *lp = ctx;
    if (id < 0 || id >= lp->n_vocab) return bt__fail(BT_ERR_INVALID_ARG, "bad token %d", id);
    *bytes = lp->pieces + lp->off[id];
    *len = lp->off[id + 1] - lp->off[id];
    return BT_OK;
}

static bool lp_is_eog(void *ctx, bt_token id) {
    return llama_vocab_is_eog(((llama_prov *)ctx)->vocab, id);
}

/* Remember the logits of position `pos` (from llama.cpp's output buffer). */
static const float *keep_logits(llama_prov *lp, int32_t pos, const float *src) {
    const float *res = src;
    if (lp->window > 0) {
        int32_t slot = pos % lp->window;
        float *dst = lp->ring + (size_t)slot * (size_t)lp->n_vocab;
        memcpy(dst, src, (size_t)lp->n_vocab * sizeof *dst);
        lp->ring_pos[slot] = pos;
        res = dst;
    }
    if (lp->base_pos < 0) {
        memcpy(lp->base, src, (size_t)lp->n_vocab * sizeof *lp->base);
        lp->base_pos = pos;
        res = lp->base;
    }
    return res;
}

/* Logits of `pos` if still kept, NULL otherwise. */
static const float *kept_logits(llama_prov *lp, int32_t pos) {
    if (pos == lp->base_pos) return lp->base;
    if (lp->window > 0 && pos >= 0 && lp->ring_pos[pos % lp->window] == pos)
        return lp->ring + (size_t)(pos % lp->window) * (size_t)lp->n_vocab;
    return NULL;
}

/* Decode toks[0..n) at positions from..from+n, logits for the last one only. */
static int decode(llama_prov *lp, const bt_token *toks, int32_t n, int32_t from) {
    for (int32_t done = 0; done < n;) {
        int32_t m = n - done < lp->n_batch ? n - done : lp->n_batch;
        lp->batch.n_tokens = m;
        for (int32_t i = 0; i < m; i++) {
            lp->batch.token[i] = toks[done + i];
            lp->batch.pos[i] = from + done + i;
            lp->batch.n_seq_id[i] = 1;
            lp->batch.seq_id[i][0] = 0;
            lp->batch.logits[i] = (done + i == n - 1);
        }
        int rc = llama_decode(lp->lctx, lp->batch);
        if (rc == 1)
            return bt__fail(BT_ERR_CONTEXT_FULL, "llama_decode: no room left in the KV cache");
        if (rc != 0) return bt__fail(BT_ERR_PROVIDER, "llama_decode failed (%d)", rc);
        done += m;
    }
    const float *out = llama_get_logits_ith(lp->lctx, -1);
    if (!out) return bt__fail(BT_ERR_PROVIDER, "llama.cpp returned no logits");
    lp->cur = keep_logits(lp, from + n - 1, out);
    return BT_OK;
}

static int lp_eval(void *ctx, const bt_token *seq, int32_t n, const float **logits,
                   bt_eval_info *info) {
    llama_prov *lp = ctx;
    bt_eval_info local = {0, 0};
    if (n > lp->n_ctx)
        return bt__fail(BT_ERR_CONTEXT_FULL, "sequence of %d tokens exceeds n_ctx = %d", n, lp->n_ctx);
    if (n <= 0 || n < lp->n_held)
        return bt__fail(BT_ERR_INVALID_ARG, "eval: %d tokens, %d already held", n, lp->n_held);
    for (int32_t i = lp->n_held; i < n; i++)
        if (seq[i] < 0 || seq[i] >= lp->n_vocab)
            return bt__fail(BT_ERR_INVALID_ARG, "token %d outside the vocabulary", seq[i]);

    if (n > lp->n_held) {
        int rc = decode(lp, seq + lp->n_held, n - lp->n_held, lp->n_held);
        if (rc != BT_OK) return rc;
        memcpy(lp->held + lp->n_held, seq + lp->n_held, (size_t)(n - lp->n_held) * sizeof *seq);
        local = (bt_eval_info){.n_evaluated = n - lp->n_held, .first_pos = lp->n_held};
        lp->n_held = n;
    } else if (!lp->cur) {
        /* Rewound past the kept logits: evaluate the last position once more. */
        int32_t p = n - 1;
        if (!llama_memory_seq_rm(llama_get_memory(lp->lctx), 0, p, -1))
            return bt__fail(BT_ERR_UNSUPPORTED, "this model cannot undo tokens (llama_memory_seq_rm failed)");
        int rc = decode(lp, lp->held + p, 1, p);
        if (rc != BT_OK) return rc;
        local = (bt_eval_info){.n_evaluated = 1, .first_pos = p};
    }
    if (info) *info = local;
    *logits = lp->cur;
    return BT_OK;
}

static int lp_rewind(void *ctx, int32_t n) {
    llama_prov *lp = ctx;
    if (n < 0 || n > lp->n_held)
        return bt__fail(BT_ERR_INVALID_ARG, "cannot rewind %d of %d positions", n, lp->n_held);
    if (n == 0) return BT_OK;
    int32_t keep = lp->n_held - n;
    if (!llama_memory_seq_rm(llama_get_memory(lp->lctx), 0, keep, -1))
        return bt__fail(BT_ERR_UNSUPPORTED, "this model cannot undo tokens (llama_memory_seq_rm failed)");
    /* Slots of removed positions are stale now. */
    for (int32_t p = keep; p < lp->n_held && lp->window > 0; p++)
        if (lp->ring_pos[p % lp->window] == p) lp->ring_pos[p % lp->window] = -1;
    if (lp->base_pos >= keep) lp->base_pos = -1;
    lp->n_held = keep;
    lp->cur = keep > 0 ? kept_logits(lp, keep - 1) : NULL;
    return BT_OK;
}

static void lp_reset(void *ctx) {
    llama_prov *lp = ctx;
    llama_memory_clear(llama_get_memory(lp->lctx), true);
    lp->n_held = 0;
    lp->cur = NULL;
    lp->base_pos = -1;
    for (int32_t i = 0; i < lp->window; i++) lp->ring_pos[i] = -1;
}

static void lp_free(void *ctx) {
    llama_prov *lp = ctx;
    if (!lp) return;
    if (lp->batch.token) llama_batch_free(lp->batch);
    if (lp->lctx) llama_free(lp->lctx);
    if (lp->model) llama_model_free(lp->model);
    free(lp->pieces);
    free(lp->off);
    free(lp->held);
    free(lp->ring);
    free(lp->ring_pos);
    free(lp->base);
    free(lp);
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
    .free = lp_free,
};

/* ==== Construction ======================================================= */

/* Cache every token's text (special tokens render as ""). */
static int cache_pieces(llama_prov *lp) {
    size_t cap = (size_t)lp->n_vocab * 8 + 64, used = 0;
    lp->pieces = malloc(cap);
    lp->off = malloc(((size_t)lp->n_vocab + 1) * sizeof *lp->off);
    if (!lp->pieces || !lp->off) return bt__fail(BT_ERR_NOMEM, "out of memory");
    for (bt_token t = 0; t < lp->n_vocab; t++) {
        char buf[256];
        int32_t n = llama_token_to_piece(lp->vocab, t, buf, (int32_t)sizeof buf, 0, false);
        if (n < 0) n = 0; /* longer than 256 bytes: no real token is */
        if (used + (size_t)n > cap) {
            size_t ncap = cap * 2 + (size_t)n;
            char *np = realloc(lp->pieces, ncap);
            if (!np) return bt__fail(BT_ERR_NOMEM, "out of memory");
            lp->pieces = np;
            cap = ncap;
        }
        lp->off[t] = used;
        memcpy(lp->pieces + used, buf, (size_t)n);
        used += (size_t)n;
    }
    lp->off[lp->n_vocab] = used;
    return BT_OK;
}

bt_provider *bt_llama_provider_init(const bt_llama_params *params) {
    if (!params || !params->model_path || !*params->model_path) {
        bt__fail(BT_ERR_INVALID_ARG, "no model path given");
        return NULL;
    }
    const bt_llama_params *P = params;
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

    llama_prov *lp = calloc(1, sizeof *lp);
    if (!lp) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    lp->base_pos = -1;

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = P->n_gpu_layers;
    lp->model = llama_model_load_from_file(P->model_path, mp);
    if (!lp->model) {
        bt__fail(BT_ERR_MODEL, "cannot load model '%s' (truncated or unsupported GGUF; "
                               "-v shows llama.cpp's reason)", P->model_path);
        goto fail;
    }
    lp->vocab = llama_model_get_vocab(lp->model);
    lp->n_vocab = llama_vocab_n_tokens(lp->vocab);
    if (lp->n_vocab <= 0) {
        bt__fail(BT_ERR_MODEL, "model '%s' has no vocabulary", P->model_path);
        goto fail;
    }

    int32_t n_train = llama_model_n_ctx_train(lp->model);
    int32_t n_ctx = P->n_ctx > 0 ? P->n_ctx : (n_train > 0 && n_train < 4096 ? n_train : 4096);
    int32_t threads = P->n_threads > 0 ? P->n_threads : default_threads(lp->model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)(P->n_batch < n_ctx ? P->n_batch : n_ctx);
    cp.n_ubatch = cp.n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    lp->lctx = llama_init_from_model(lp->model, cp);
    if (!lp->lctx) {
        bt__fail(BT_ERR_MODEL, "cannot create a context of %d tokens for '%s'", n_ctx, P->model_path);
        goto fail;
    }
    /* llama.cpp may round the context up; honour the size that was asked for. */
    lp->n_ctx = (int32_t)llama_n_ctx(lp->lctx);
    if (n_ctx < lp->n_ctx) lp->n_ctx = n_ctx;
    lp->n_batch = (int32_t)cp.n_batch;
    lp->batch = llama_batch_init(lp->n_batch, 0, 1);
    lp->window = P->logits_window;
    lp->held = malloc((size_t)lp->n_ctx * sizeof *lp->held);
    lp->base = malloc((size_t)lp->n_vocab * sizeof *lp->base);
    if (lp->window > 0) {
        lp->ring = malloc((size_t)lp->window * (size_t)lp->n_vocab * sizeof *lp->ring);
        lp->ring_pos = malloc((size_t)lp->window * sizeof *lp->ring_pos);
    }
    if (!lp->batch.token || !lp->held || !lp->base ||
        (lp->window > 0 && (!lp->ring || !lp->ring_pos))) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < lp->window; i++) lp->ring_pos[i] = -1;
    if (cache_pieces(lp) != BT_OK) goto fail;

    bt_provider *p = bt_provider_init(&llama_iface, lp);
    if (p) return p;
fail:
    lp_free(lp);
    return NULL;
}

int bt_llama_chat_prompt(bt_provider *p, const char *user_text, char **out) {
    *out = NULL;
    if (!p || p->iface != &llama_iface)
        return bt__fail(BT_ERR_UNSUPPORTED, "chat templates need the llama.cpp provider");
    if (!user_text) return bt__fail(BT_ERR_INVALID_ARG, "no text");
    llama_prov *lp = p->ctx;
    const char *tmpl = llama_model_chat_template(lp->model, NULL);
    if (!tmpl) return bt__fail(BT_ERR_UNSUPPORTED, "the model has no chat template (drop --chat)");
    struct llama_chat_message msg = {.role = "user", .content = user_text};
    int32_t cap = (int32_t)(2 * strlen(user_text) + 1024);
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc((size_t)cap + 1);
        if (!buf) return bt__fail(BT_ERR_NOMEM, "out of memory");
        int32_t n = llama_chat_apply_template(tmpl, &msg, 1, true, buf, cap);
        if (n < 0) {
            free(buf);
            return bt__fail(BT_ERR_UNSUPPORTED, "llama.cpp does not support this model's chat template");
        }
        if (n <= cap) {
            buf[n] = '\0';
            *out = buf;
            return BT_OK;
        }
        free(buf);
        cap = n;
    }
    return bt__fail(BT_ERR_PROVIDER, "chat template grew while being applied");
}
