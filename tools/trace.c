/*
 * trace.c -- generation events as JSON (the schema is docs/trace.md).
 */
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ==== Buffer ============================================================= */

void trace_buf_free(trace_buf *b) {
    free(b->data);
    *b = (trace_buf){0};
}

/* Make room for n more bytes (and a NUL). False on out of memory (b->oom set). */
static bool reserve(trace_buf *b, size_t n) {
    if (b->oom) return false;
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

static void put(trace_buf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(trace_buf *b, const char *s) { put(b, s, strlen(s)); }

static void printf_(trace_buf *b, const char *fmt, ...) BT_PRINTF_FMT(2, 3);
static void printf_(trace_buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A float as JSON: shortest round-trip-ish form; non-finite values (which JSON cannot
 * hold) as null. */
static void put_num(trace_buf *b, double v) {
    if (!isfinite(v)) puts_(b, "null");
    else printf_(b, "%.6g", v);
}

/* ==== JSON strings ======================================================= */

size_t trace_utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                                             : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate, above U+10FFFF */
    return len;
}

/* Append s[0..n) with U+FFFD in place of bytes that are not valid UTF-8; as the inside of
 * a JSON string literal (escaped) when `json`, else as it is. True if s was valid. */
static bool put_utf8(trace_buf *b, const char *s, size_t n, bool json) {
    const unsigned char *u = (const unsigned char *)s;
    bool valid = true;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t k = trace_utf8_seq(u + i, n - i);
            if (k == 0) {
                valid = false;
                puts_(b, "\xef\xbf\xbd");
                i++;
            } else {
                put(b, s + i, k);
                i += k;
            }
            continue;
        }
        i++;
        if (!json) {
            put(b, (const char *)&c, 1);
            continue;
        }
        switch (c) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) printf_(b, "\\u%04x", c);
            else put(b, (const char *)&c, 1);
        }
    }
    return valid;
}

bool trace_json_string(trace_buf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    bool valid = put_utf8(b, s, n, true);
    put(b, "\"", 1);
    return valid;
}


/* ,"text":"..." for token id, and ,"hex":"..." when its bytes are not valid UTF-8. */
static void put_token_text(trace_buf *b, bt_provider *p, bt_token id) {
    const char *bytes = "";
    size_t len = 0;
    if (id >= 0 && bt_provider_token_text(p, id, &bytes, &len) != BT_OK) len = 0;
    puts_(b, ",\"text\":");
    if (trace_json_string(b, bytes, len)) return;
    puts_(b, ",\"hex\":\"");
    for (size_t i = 0; i < len; i++) printf_(b, "%02x", (unsigned char)bytes[i]);
    puts_(b, "\"");
}

static void put_named(trace_buf *b, const char *key, const char *s) {
    printf_(b, ",\"%s\":", key);
    trace_json_string(b, s ? s : "", s ? strlen(s) : 0);
}

/* ==== Events ============================================================= */

static const char *stop_name(int reason) {
    switch (reason) {
    case BT_STOP_EOG: return "eog";
    case BT_STOP_MAX_NEW_TOKENS: return "max_new_tokens";
    case BT_STOP_MAX_LENGTH: return "max_length";
    case BT_STOP_STEP_CAP: return "step_cap";
    case BT_STOP_CALLER: return "caller";
    case BT_STOP_ERROR: return "error";
    default: return "none";
    }
}

bool trace_event_json(const bt_event *ev, bt_provider *p, const trace_info *info, trace_buf *b) {
    b->len = 0;
    b->oom = false;
    static const char *const names[] = {"", "begin", "draw", "rewind", "ban", "force",
                                        "release", "end"};
    int t = ev->type >= BT_EVENT_BEGIN && ev->type <= BT_EVENT_END ? ev->type : 0;
    printf_(b, "{\"ev\":\"%s\",\"step\":%" PRId64, names[t], ev->step);
    switch (ev->type) {
    case BT_EVENT_BEGIN:
        printf_(b, ",\"v\":1,\"n_prompt\":%d,\"cached\":%d", ev->n, ev->token);
        if (ev->stats) printf_(b, ",\"seed\":%" PRIu64, ev->stats->seed);
        if (info && info->prompt) put_named(b, "prompt", info->prompt);
        if (info && info->model) put_named(b, "model", info->model);
        put_named(b, "strategy", info ? info->strategy : NULL);
        break;
    case BT_EVENT_DRAW:
        printf_(b, ",\"pos\":%d,\"token\":%d", ev->pos, ev->token);
        put_token_text(b, p, ev->token);
        puts_(b, ",\"p\":");
        put_num(b, ev->p);
        puts_(b, ",\"top\":[");
        for (int32_t i = 0; i < ev->n_top; i++) {
            printf_(b, "%s{\"token\":%d", i ? "," : "", ev->top[i].id);
            put_token_text(b, p, ev->top[i].id);
            puts_(b, ",\"p\":");
            put_num(b, ev->top[i].p);
            puts_(b, "}");
        }
        puts_(b, "]");
        break;
    case BT_EVENT_BAN:
    case BT_EVENT_FORCE:
        printf_(b, ",\"pos\":%d,\"token\":%d", ev->pos, ev->token);
        put_token_text(b, p, ev->token);
        if (ev->type == BT_EVENT_BAN) {
            puts_(b, ",\"factor\":");
            put_num(b, ev->p);
        }
        put_named(b, "strategy", ev->strategy);
        put_named(b, "reason", ev->reason);
        break;
    case BT_EVENT_REWIND:
        printf_(b, ",\"n\":%d,\"pos\":%d", ev->n, ev->pos);
        put_named(b, "strategy", ev->strategy);
        put_named(b, "reason", ev->reason);
        break;
    case BT_EVENT_RELEASE:
        printf_(b, ",\"pos\":%d,\"n\":%d,\"text\":", ev->pos, ev->n);
        trace_json_string(b, ev->text ? ev->text : "", ev->text ? ev->text_len : 0);
        break;
    case BT_EVENT_END:
        if (ev->stats)
            printf_(b, ",\"stop\":\"%s\",\"released\":%" PRId64 ",\"discarded\":%" PRId64
                       ",\"rewinds\":%" PRId64 ",\"steps\":%" PRId64 ",\"evaluated\":%" PRId64,
                    stop_name(ev->stats->stop_reason), ev->stats->n_released,
                    ev->stats->n_discarded, ev->stats->n_rewinds, ev->stats->n_steps,
                    ev->stats->n_evaluated);
        break;
    default: break;
    }
    puts_(b, "}");
    return !b->oom;
}

/* ==== The --trace file =================================================== */

struct trace_file {
    FILE        *f;
    bool         own;   /* fclose it (not stderr) */
    bt_provider *p;
    trace_info   info;
    trace_buf    buf;
    int          err;   /* first errno of a failed write, or -1 for out of memory */
};

trace_file *trace_file_open(const char *path, bt_provider *p, const trace_info *info,
                            char *err, size_t errcap) {
    trace_file *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    if (strcmp(path, "-") == 0) {
        t->f = stderr;
    } else if (!(t->f = fopen(path, "w"))) {
        snprintf(err, errcap, "--trace: cannot write '%s': %s", path, strerror(errno));
        free(t);
        return NULL;
    } else {
        t->own = true;
    }
    t->p = p;
    if (info) t->info = *info;
    return t;
}

void trace_file_observe(void *user, const bt_event *ev) {
    trace_file *t = user;
    if (t->err) return; /* the first failure is the one reported */
    if (!trace_event_json(ev, t->p, &t->info, &t->buf)) {
        t->err = -1;
        return;
    }
    put(&t->buf, "\n", 1);
    if (fwrite(t->buf.data, 1, t->buf.len, t->f) != t->buf.len) t->err = errno ? errno : EIO;
}

int trace_file_close(trace_file *t, char *err, size_t errcap) {
    if (!t) return 0;
    if (fflush(t->f) != 0 && !t->err) t->err = errno ? errno : EIO;
    if (t->own && fclose(t->f) != 0 && !t->err) t->err = errno ? errno : EIO;
    int e = t->err;
    trace_buf_free(&t->buf);
    free(t);
    if (!e) return 0;
    snprintf(err, errcap, "--trace: %s", e < 0 ? "out of memory" : strerror(e));
    return -1;
}
