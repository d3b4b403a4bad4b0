/*
 * replay.c -- `backtrack replay TRACE.jsonl -o PAGE.html`.
 *
 * Reads a trace (docs/trace.md: JSON Lines, one event per line), checks every line (well
 * formed, known version and event, every field present with the right type and range,
 * and the events consistent with each other: steps count the draws, rewinds and releases
 * fit the continuation), and writes one self-contained HTML page: the template
 * tools/replay_page.html, embedded at build time, with the trace inserted into its
 * <script type="application/json" id="trace"> element. The page's script draws the rest.
 *
 * The trace travels to the page re-encoded compactly (the page documents the same):
 *   {"v":1, "begin":{... "seed": "digits as written" ...}, "end":{...}, "strats":[name...],
 *    "toks":[[id, text, hex|null]...],      distinct (token, text, hex) triples
 *    "ev":[[0, pos, tok, p, [tok, p, ...]]  draw (tok: index into toks)
 *          [1, pos, tok, factor, strat, reason]   ban (strat: index into strats)
 *          [2, pos, tok, strat, reason]           force
 *          [3, n, pos, strat, reason]             rewind
 *          [4, pos, n, text]                      release ...]}
 * Every '<', '>' and '&' in it is written as a \u escape, so no text in a trace can close
 * the script element or open a comment.
 */
#include "replay.h"

#include "replay_page.h" /* generated: bt_replay_page[], bt_replay_page_len */

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRACE_VERSION 1
#define MAX_INT 2147483647LL          /* positions, counts, token ids */
#define MAX_COUNT 9007199254740992LL  /* 2^53: what a JSON number holds exactly */
#define PAGE_MARKER "@BT_TRACE_JSON@" /* where the template takes the trace */

/* ==== Growable buffer ===================================================== */

typedef struct buf {
    char  *p;
    size_t n, cap;
    bool   oom; /* an allocation failed: the content is incomplete */
} buf;

/* Append s[0..n); on allocation failure set b->oom and drop it. */
static void buf_put(buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *np = realloc(b->p, c);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* only short numbers are formatted here */
        return;
    }
    buf_put(b, tmp, (size_t)n);
}

/* Append s as a JSON string that is safe inside an HTML <script> element: quotes,
 * backslashes and control characters escaped, and '<', '>', '&', U+2028, U+2029 as \u
 * escapes. s is valid UTF-8 (checked by the reader). */
static void buf_json_str(buf *b, const char *s) {
    buf_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* bytes of s copied as they are, pending */
    for (size_t i = 0;; i++) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char tmp[8];
        size_t skip = 1;
        if (c == '\0') break;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            esc = tmp;
        } else if (c == 0xE2 && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) {
            esc = u[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
            skip = 3;
        }
        if (!esc) {
            run++;
            continue;
        }
        buf_put(b, s + i - run, run);
        run = 0;
        buf_puts(b, esc);
        i += skip - 1;
    }
    buf_put(b, s + strlen(s) - run, run);
    buf_put(b, "\"", 1);
}

/* A probability or factor, short: 6 significant digits are more than the page shows. */
static void buf_num(buf *b, double x) { buf_printf(b, "%.6g", x); }

/* ==== Interning: distinct byte strings numbered in order of first appearance ===== */

typedef struct intern {
    char   **keys;
    size_t  *lens;
    int64_t  n, cap;
    int64_t *slots; /* open addressing: index into keys, -1 empty */
    size_t   n_slots;
} intern;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Put key into a slot table of size n_slots (a power of 2). */
static void slot_insert(int64_t *slots, size_t n_slots, uint64_t h, int64_t idx) {
    size_t i = (size_t)h & (n_slots - 1);
    while (slots[i] >= 0) i = (i + 1) & (n_slots - 1);
    slots[i] = idx;
}

/* The number of key[0..len) in t: *is_new says whether it was added now. -1 when out of
 * memory. */
static int64_t intern_get(intern *t, const char *key, size_t len, bool *is_new) {
    uint64_t h = hash_bytes(key, len);
    *is_new = false;
    if (t->n_slots) {
        for (size_t i = (size_t)h & (t->n_slots - 1); t->slots[i] >= 0; i = (i + 1) & (t->n_slots - 1)) {
            int64_t k = t->slots[i];
            if (t->lens[k] == len && memcmp(t->keys[k], key, len) == 0) return k;
        }
    }
    if ((size_t)(t->n + 1) * 2 > t->n_slots) { /* grow the slots: load at most 1/2 */
        size_t ns = t->n_slots ? t->n_slots * 2 : 64;
        int64_t *sl = malloc(ns * sizeof *sl);
        if (!sl) return -1;
        for (size_t i = 0; i < ns; i++) sl[i] = -1;
        for (int64_t k = 0; k < t->n; k++) slot_insert(sl, ns, hash_bytes(t->keys[k], t->lens[k]), k);
        free(t->slots);
        t->slots = sl;
        t->n_slots = ns;
    }
    if (t->n == t->cap) {
        int64_t c = t->cap ? t->cap * 2 : 64;
        char **nk = realloc(t->keys, (size_t)c * sizeof *nk);
        if (!nk) return -1;
        t->keys = nk;
        size_t *nl = realloc(t->lens, (size_t)c * sizeof *nl);
        if (!nl) return -1;
        t->lens = nl;
        t->cap = c;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) return -1;
    memcpy(copy, key, len);
    t->keys[t->n] = copy;
    t->lens[t->n] = len;
    slot_insert(t->slots, t->n_slots, h, t->n);
    *is_new = true;
    return t->n++;
}

static void intern_free(intern *t) {
    for (int64_t k = 0; k < t->n; k++) free(t->keys[k]);
    free(t->keys);
    free(t->lens);
    free(t->slots);
}

/* ==== Reading and checking the trace ====================================== */

typedef struct reader {
    buf     begin, end, strats, toks, ev; /* the page's JSON, in parts */
    intern  tok_ids, strat_ids;
    buf     key;                          /* scratch: a token's interning key */
    int64_t line;                         /* 1-based line being read */
    const char *raw;                      /* its text, raw[0..raw_len) */
    size_t  raw_len;
    int64_t draws;                        /* draw events so far */
    int64_t len;                          /* continuation length now */
    int64_t released;                     /* continuation tokens released so far */
    bool    began, ended;
    char   *err;
    size_t  cap;
} reader;

/* Record "line N: <message>" as the error; returns -1. */
static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(reader *r, const char *fmt, ...) {
    int n = snprintf(r->err, r->cap, "line %lld: ", (long long)r->line);
    if (n < 0 || (size_t)n >= r->cap) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->cap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || n - i < len) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        unsigned char d = s[i + 1];
        if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) ||
            (c == 0xF4 && d > 0x8F))
            return false;
        i += len;
    }
    return true;
}

/* The field k of o (what: "'draw' event", for messages), which must be present and not
 * null; NULL after recording the error. */
static const cJSON *field(reader *r, const cJSON *o, const char *what, const char *k) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!f || cJSON_IsNull(f)) {
        fail(r, "%s: missing field '%s'", what, k);
        return NULL;
    }
    return f;
}

/* An integer field in [lo, hi]. */
static int get_int(reader *r, const cJSON *o, const char *what, const char *k, int64_t lo,
                   int64_t hi, int64_t *out) {
    const cJSON *f = field(r, o, what, k);
    if (!f) return -1;
    double d = f->valuedouble;
    if (!cJSON_IsNumber(f) || !isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi)
        return fail(r, "%s: '%s' must be an integer in [%lld, %lld]", what, k, (long long)lo,
                    (long long)hi);
    *out = (int64_t)d;
    return 0;
}

/* A number field in [lo, hi]. */
static int get_num(reader *r, const cJSON *o, const char *what, const char *k, double lo,
                   double hi, double *out) {
    const cJSON *f = field(r, o, what, k);
    if (!f) return -1;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble < lo ||
        f->valuedouble > hi)
        return fail(r, "%s: '%s' must be a number in [%g, %g]", what, k, lo, hi);
    *out = f->valuedouble;
    return 0;
}

/* A string field, valid UTF-8; optional ones may be absent or null (*out = NULL). */
static int get_str(reader *r, const cJSON *o, const char *what, const char *k, bool required,
                   const char **out) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    *out = NULL;
    if (!required && (!f || cJSON_IsNull(f))) return 0;
    if (!(f = field(r, o, what, k))) return -1;
    if (!cJSON_IsString(f) || !f->valuestring) return fail(r, "%s: '%s' must be a string", what, k);
    if (!utf8_ok((const unsigned char *)f->valuestring, strlen(f->valuestring)))
        return fail(r, "%s: '%s' is not valid UTF-8", what, k);
    *out = f->valuestring;
    return 0;
}

/* The optional "hex" field: lowercase hexadecimal, an even number of digits. */
static int get_hex(reader *r, const cJSON *o, const char *what, const char **out) {
    if (get_str(r, o, what, "hex", false, out) != 0) return -1;
    if (!*out) return 0;
    size_t n = strlen(*out);
    for (size_t i = 0; i < n; i++)
        if (!(((*out)[i] >= '0' && (*out)[i] <= '9') || ((*out)[i] >= 'a' && (*out)[i] <= 'f')))
            return fail(r, "%s: 'hex' must be lowercase hexadecimal digits", what);
    if (n % 2) return fail(r, "%s: 'hex' must have an even number of digits", what);
    return 0;
}

/* Read a token (token, text, [hex]) from o and append its number in the token table to
 * the events. */
static int put_token(reader *r, const cJSON *o, const char *what) {
    int64_t id;
    const char *text, *hex;
    if (get_int(r, o, what, "token", 0, MAX_INT, &id) || get_str(r, o, what, "text", true, &text) ||
        get_hex(r, o, what, &hex))
        return -1;
    r->key.n = 0;
    buf_printf(&r->key, "%lld", (long long)id);
    buf_put(&r->key, "", 1); /* a NUL between the parts: a text holds none */
    buf_puts(&r->key, text);
    if (hex) {
        buf_put(&r->key, "", 1);
        buf_puts(&r->key, hex);
    }
    if (r->key.oom) return fail(r, "out of memory");
    bool is_new;
    int64_t k = intern_get(&r->tok_ids, r->key.p, r->key.n, &is_new);
    if (k < 0) return fail(r, "out of memory");
    if (is_new) {
        buf_puts(&r->toks, k ? ",[" : "[");
        buf_printf(&r->toks, "%lld,", (long long)id);
        buf_json_str(&r->toks, text);
        buf_puts(&r->toks, ",");
        if (hex) buf_json_str(&r->toks, hex);
        else buf_puts(&r->toks, "null");
        buf_puts(&r->toks, "]");
    }
    buf_printf(&r->ev, "%lld", (long long)k);
    return 0;
}

/* Read "strategy" and "reason" from o and append ,strategy-number,"reason". */
static int put_strategy_reason(reader *r, const cJSON *o, const char *what) {
    const char *name, *reason;
    if (get_str(r, o, what, "strategy", true, &name) || get_str(r, o, what, "reason", true, &reason))
        return -1;
    bool is_new;
    int64_t k = intern_get(&r->strat_ids, name, strlen(name), &is_new);
    if (k < 0) return fail(r, "out of memory");
    if (is_new) {
        if (k) buf_puts(&r->strats, ",");
        buf_json_str(&r->strats, name);
    }
    buf_printf(&r->ev, ",%lld,", (long long)k);
    buf_json_str(&r->ev, reason);
    return 0;
}

/* Start the next event's array in r->ev. */
static void ev_open(reader *r, int type) { buf_printf(&r->ev, "%s[%d,", r->ev.n ? ",\n" : "", type); }

/* The text of the number that top-level key `key` of the JSON object in s[0..n) has, as
 * written (a JSON number beyond 2^53, such as a random 64-bit seed, loses digits as a
 * double). s is valid JSON (already parsed). Returns false if not found or too long. */
static bool raw_number(const char *s, size_t n, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == '"') {
            size_t start = ++i;
            while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1; /* to the closing quote */
            if (depth != 1 || i - start != klen || memcmp(s + start, key, klen) != 0) continue;
            size_t j = i + 1;
            while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
            if (j >= n || s[j] != ':') continue; /* a value that equals the key, not the key */
            j++;
            while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
            size_t k = j;
            while (k < n && strchr("-+.0123456789eE", s[k])) k++;
            if (k == j || k - j >= cap) return false;
            memcpy(out, s + j, k - j);
            out[k - j] = '\0';
            return true;
        }
    }
    return false;
}

static int read_begin(reader *r, const cJSON *o) {
    const char *what = "'begin' event";
    int64_t n_prompt, cached;
    double seed;
    const char *prompt, *model, *strategy;
    if (get_int(r, o, what, "n_prompt", 0, MAX_INT, &n_prompt) ||
        get_int(r, o, what, "cached", 0, MAX_INT, &cached) ||
        get_num(r, o, what, "seed", 0, 1.8446744073709552e19, &seed) ||
        get_str(r, o, what, "prompt", false, &prompt) || get_str(r, o, what, "model", false, &model) ||
        get_str(r, o, what, "strategy", true, &strategy))
        return -1;
    buf *b = &r->begin;
    char digits[64]; /* the seed exactly as written, for the page to show */
    if (!raw_number(r->raw, r->raw_len, "seed", digits, sizeof digits))
        snprintf(digits, sizeof digits, "%.17g", seed);
    buf_printf(b, "{\"n_prompt\":%lld,\"cached\":%lld,\"seed\":", (long long)n_prompt,
               (long long)cached);
    buf_json_str(b, digits);
    buf_puts(b, ",\"prompt\":");
    if (prompt) buf_json_str(b, prompt);
    else buf_puts(b, "null");
    buf_puts(b, ",\"model\":");
    if (model) buf_json_str(b, model);
    else buf_puts(b, "null");
    buf_puts(b, ",\"strategy\":");
    buf_json_str(b, strategy);
    buf_puts(b, "}");
    return 0;
}

static int read_draw(reader *r, const cJSON *o) {
    const char *what = "'draw' event";
    int64_t pos;
    double p;
    if (get_int(r, o, what, "pos", 0, MAX_INT, &pos)) return -1;
    if (pos > r->len)
        return fail(r, "draw at pos %lld, but the continuation is only %lld tokens long",
                    (long long)pos, (long long)r->len);
    if (pos < r->released)
        return fail(r, "draw at pos %lld overwrites released text (%lld tokens are released)",
                    (long long)pos, (long long)r->released);
    ev_open(r, 0);
    buf_printf(&r->ev, "%lld,", (long long)pos);
    if (put_token(r, o, what) || get_num(r, o, what, "p", 0, 1.001, &p)) return -1;
    buf_puts(&r->ev, ",");
    buf_num(&r->ev, p);
    const cJSON *top = field(r, o, what, "top");
    if (!top) return -1;
    if (!cJSON_IsArray(top)) return fail(r, "%s: 'top' must be an array", what);
    buf_puts(&r->ev, ",[");
    int i = 0;
    for (const cJSON *e = top->child; e; e = e->next, i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "'draw' event, top[%d]", i);
        if (!cJSON_IsObject(e)) return fail(r, "%s must be an object", ctx);
        if (i) buf_puts(&r->ev, ",");
        if (put_token(r, e, ctx) || get_num(r, e, ctx, "p", 0, 1.001, &p)) return -1;
        buf_puts(&r->ev, ",");
        buf_num(&r->ev, p);
    }
    buf_puts(&r->ev, "]]");
    r->len = pos + 1;
    return 0;
}

static int read_ban(reader *r, const cJSON *o) {
    const char *what = "'ban' event";
    int64_t pos;
    double factor;
    if (get_int(r, o, what, "pos", 0, MAX_INT, &pos)) return -1;
    ev_open(r, 1);
    buf_printf(&r->ev, "%lld,", (long long)pos);
    if (put_token(r, o, what) || get_num(r, o, what, "factor", 0, 1, &factor)) return -1;
    buf_puts(&r->ev, ",");
    buf_num(&r->ev, factor);
    if (put_strategy_reason(r, o, what)) return -1;
    buf_puts(&r->ev, "]");
    return 0;
}

static int read_force(reader *r, const cJSON *o) {
    const char *what = "'force' event";
    int64_t pos;
    if (get_int(r, o, what, "pos", 0, MAX_INT, &pos)) return -1;
    ev_open(r, 2);
    buf_printf(&r->ev, "%lld,", (long long)pos);
    if (put_token(r, o, what) || put_strategy_reason(r, o, what)) return -1;
    buf_puts(&r->ev, "]");
    return 0;
}

static int read_rewind(reader *r, const cJSON *o) {
    const char *what = "'rewind' event";
    int64_t n, pos;
    if (get_int(r, o, what, "n", 1, MAX_INT, &n) || get_int(r, o, what, "pos", 0, MAX_INT, &pos))
        return -1;
    if (pos + n != r->len)
        return fail(r, "rewind of %lld tokens to pos %lld, but the continuation is %lld tokens "
                       "long", (long long)n, (long long)pos, (long long)r->len);
    if (pos < r->released)
        return fail(r, "rewind to pos %lld undoes released text (%lld tokens are released)",
                    (long long)pos, (long long)r->released);
    ev_open(r, 3);
    buf_printf(&r->ev, "%lld,%lld", (long long)n, (long long)pos);
    if (put_strategy_reason(r, o, what)) return -1;
    buf_puts(&r->ev, "]");
    r->len = pos;
    return 0;
}

static int read_release(reader *r, const cJSON *o) {
    const char *what = "'release' event";
    int64_t pos, n;
    const char *text;
    if (get_int(r, o, what, "pos", 0, MAX_INT, &pos) || get_int(r, o, what, "n", 0, MAX_INT, &n) ||
        get_str(r, o, what, "text", true, &text))
        return -1;
    if (pos != r->released)
        return fail(r, "release from pos %lld, but %lld tokens were released before: releases "
                       "must follow each other", (long long)pos, (long long)r->released);
    if (pos + n > r->len)
        return fail(r, "release of tokens [%lld, %lld), but the continuation is %lld tokens long",
                    (long long)pos, (long long)(pos + n), (long long)r->len);
    ev_open(r, 4);
    buf_printf(&r->ev, "%lld,%lld,", (long long)pos, (long long)n);
    buf_json_str(&r->ev, text);
    buf_puts(&r->ev, "]");
    r->released = pos + n;
    return 0;
}

static int read_end(reader *r, const cJSON *o) {
    static const char *const STOPS[] = {"eog", "max_new_tokens", "max_length", "step_cap",
                                        "caller", "error"};
    static const char *const COUNTS[] = {"released", "discarded", "rewinds", "steps", "evaluated"};
    const char *what = "'end' event", *stop;
    if (get_str(r, o, what, "stop", true, &stop)) return -1;
    size_t i = 0;
    while (i < sizeof STOPS / sizeof *STOPS && strcmp(stop, STOPS[i]) != 0) i++;
    if (i == sizeof STOPS / sizeof *STOPS)
        return fail(r, "%s: unknown 'stop' (eog, max_new_tokens, max_length, step_cap, caller "
                       "or error)", what);
    buf_puts(&r->end, "{\"stop\":");
    buf_json_str(&r->end, stop);
    for (i = 0; i < sizeof COUNTS / sizeof *COUNTS; i++) {
        int64_t x;
        if (get_int(r, o, what, COUNTS[i], 0, MAX_COUNT, &x)) return -1;
        buf_printf(&r->end, ",\"%s\":%lld", COUNTS[i], (long long)x);
    }
    buf_puts(&r->end, "}");
    return 0;
}

/* "'TYPE'" for messages: the type's first 20 bytes, anything but printable ASCII as '?',
 * "..." if cut (a type comes from the trace: it must not break the message's line). */
static void event_name(const char *type, char *out, size_t cap) {
    char t[32];
    size_t i = 0;
    for (; type[i] && i < 20; i++) {
        unsigned char c = (unsigned char)type[i];
        t[i] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
    }
    t[i] = '\0';
    snprintf(out, cap, "'%s%s'", t, type[i] ? "..." : "");
}

/* Check and encode one line's event (an object). */
static int read_event(reader *r, const cJSON *o) {
    if (!cJSON_IsObject(o)) return fail(r, "an event must be a JSON object");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "ev");
    if (!ev) return fail(r, "missing field 'ev' (the event's type)");
    if (!cJSON_IsString(ev)) return fail(r, "'ev' must be a string");
    const char *type = ev->valuestring;
    bool is_begin = strcmp(type, "begin") == 0, is_draw = strcmp(type, "draw") == 0;
    char name[32], what[48];
    event_name(type, name, sizeof name);
    snprintf(what, sizeof what, "%s event", name);
    if (r->ended) return fail(r, "an event after 'end'");
    if (!r->began && !is_begin)
        return fail(r, "the first event must be 'begin', not %s", what);
    if (r->began && is_begin) return fail(r, "a second 'begin' event");
    if (is_begin) { /* the version first: another version may mean other fields */
        const cJSON *v = field(r, o, what, "v");
        if (!v) return -1;
        if (!cJSON_IsNumber(v)) return fail(r, "%s: 'v' (the trace version) must be a number", what);
        if (v->valuedouble != TRACE_VERSION)
            return fail(r, "unknown trace version %g (this backtrack reads version %d)",
                        v->valuedouble, TRACE_VERSION);
    }
    int64_t step;
    if (get_int(r, o, what, "step", 0, MAX_COUNT, &step)) return -1;
    int64_t want = r->draws + (is_draw ? 1 : 0);
    if (step != want)
        return fail(r, "%s: 'step' is %lld, but %lld draws came %s", what, (long long)step,
                    (long long)(is_draw ? want - 1 : want), is_draw ? "before this one" : "so far");
    if (is_begin) {
        r->began = true;
        return read_begin(r, o);
    }
    if (is_draw) {
        r->draws++;
        return read_draw(r, o);
    }
    if (strcmp(type, "ban") == 0) return read_ban(r, o);
    if (strcmp(type, "force") == 0) return read_force(r, o);
    if (strcmp(type, "rewind") == 0) return read_rewind(r, o);
    if (strcmp(type, "release") == 0) return read_release(r, o);
    if (strcmp(type, "end") == 0) {
        r->ended = true;
        return read_end(r, o);
    }
    return fail(r, "unknown event type %s (begin, draw, ban, force, rewind, release or end)", name);
}

/* Parse and check line[0..n). Blank lines are skipped. */
static int read_line(reader *r, const char *line, size_t n) {
    if (n && line[n - 1] == '\r') n--;
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == n) return 0;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(line, n, &end, false);
    if (!o) {
        size_t col = end && end >= line && end <= line + n ? (size_t)(end - line) + 1 : 1;
        return fail(r, "malformed JSON (near column %zu)", col);
    }
    while (end < line + n && (*end == ' ' || *end == '\t')) end++;
    r->raw = line;
    r->raw_len = n;
    int rc = end < line + n ? fail(r, "more than one JSON value on the line") : read_event(r, o);
    cJSON_Delete(o);
    return rc;
}

static void reader_free(reader *r) {
    free(r->begin.p), free(r->end.p), free(r->strats.p), free(r->toks.p), free(r->ev.p);
    free(r->key.p);
    intern_free(&r->tok_ids);
    intern_free(&r->strat_ids);
}

/* ==== The page ============================================================= */

int replay_render(const char *trace, size_t len, char **html, size_t *html_len, char *err,
                  size_t cap) {
    reader r = {.err = err, .cap = cap};
    *html = NULL;
    *html_len = 0;
    if (cap) err[0] = '\0';
    int rc = 0;
    size_t at = 0;
    while (rc == 0 && at < len) {
        r.line++;
        const char *nl = memchr(trace + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (trace + at)) : len - at;
        rc = read_line(&r, trace + at, n);
        at += n + (nl ? 1 : 0);
    }
    if (rc == 0 && !r.began) {
        snprintf(err, cap, "the trace is empty (no 'begin' event)");
        rc = -1;
    } else if (rc == 0 && !r.ended) {
        snprintf(err, cap, "the trace ends at line %lld without an 'end' event (cut short?)",
                 (long long)r.line);
        rc = -1;
    }
    buf page = {0};
    if (rc == 0) {
        const char *tpl = (const char *)bt_replay_page, *mark = NULL;
        size_t pre = 0, ml = strlen(PAGE_MARKER);
        for (; !mark && pre + ml <= bt_replay_page_len; pre++)
            if (memcmp(tpl + pre, PAGE_MARKER, ml) == 0) mark = tpl + pre;
        pre = mark ? (size_t)(mark - tpl) : 0;
        if (!mark) {
            snprintf(err, cap, "internal error: the page template has no %s", PAGE_MARKER);
            rc = -1;
        } else {
            buf_put(&page, tpl, pre);
            buf_printf(&page, "{\"v\":%d,\"begin\":", TRACE_VERSION);
            buf_put(&page, r.begin.p, r.begin.n);
            buf_puts(&page, ",\"end\":");
            buf_put(&page, r.end.p, r.end.n);
            buf_puts(&page, ",\n\"strats\":[");
            buf_put(&page, r.strats.p ? r.strats.p : "", r.strats.n);
            buf_puts(&page, "],\n\"toks\":[");
            buf_put(&page, r.toks.p ? r.toks.p : "", r.toks.n);
            buf_puts(&page, "],\n\"ev\":[\n");
            buf_put(&page, r.ev.p ? r.ev.p : "", r.ev.n);
            buf_puts(&page, "]}");
            buf_put(&page, mark + ml, bt_replay_page_len - pre - ml);
            bool oom = page.oom || r.begin.oom || r.end.oom || r.strats.oom || r.toks.oom || r.ev.oom;
            if (oom) {
                snprintf(err, cap, "out of memory");
                rc = -1;
            }
        }
    }
    reader_free(&r);
    if (rc != 0) {
        free(page.p);
        return -1;
    }
    *html = page.p;
    *html_len = page.n;
    return 0;
}

/* ==== The command ========================================================== */

static void usage(FILE *f) {
    fputs("usage: backtrack replay TRACE.jsonl -o PAGE.html\n"
          "\n"
          "Turn a trace written by `backtrack --trace TRACE.jsonl` (docs/trace.md) into one\n"
          "self-contained HTML page: the text with every rewound attempt struck through where\n"
          "it happened, a play button and a slider that replay the generation step by step,\n"
          "and a chart of the rewinds. TRACE '-' reads standard input, PAGE '-' writes\n"
          "standard output.\n"
          "\n"
          "  -o, --output PAGE   the page to write (required)\n"
          "  -h, --help          this help\n",
          f);
}

/* Read a whole stream; NULL with a message on failure. */
static char *slurp(FILE *f, size_t *len) {
    size_t n = 0, c = 1 << 16;
    char *b = malloc(c);
    while (b) {
        size_t got = fread(b + n, 1, c - n, f);
        n += got;
        if (n < c) break;
        char *nb = realloc(b, c * 2);
        if (!nb) {
            free(b);
            return NULL;
        }
        b = nb;
        c *= 2;
    }
    if (b && ferror(f)) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

int replay_main(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "backtrack: error: replay: %s needs a file name\n", a);
                return 2;
            }
            out = argv[++i];
        } else if (strncmp(a, "--output=", 9) == 0) {
            out = a + 9;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "backtrack: error: replay: unknown option '%s' (see backtrack replay "
                            "--help)\n", a);
            return 2;
        } else if (in) {
            fprintf(stderr, "backtrack: error: replay: one trace at a time ('%s' and '%s')\n", in, a);
            return 2;
        } else {
            in = a;
        }
    }
    if (!in || !out || !*out) {
        fprintf(stderr, "backtrack: error: replay: %s (usage: backtrack replay TRACE.jsonl -o "
                        "PAGE.html)\n", !in ? "no trace given" : "no page given (-o PAGE.html)");
        return 2;
    }
    bool from_stdin = strcmp(in, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "backtrack: error: replay: cannot open '%s': %s\n", in, strerror(errno));
        return 1;
    }
    size_t len = 0;
    char *trace = slurp(f, &len);
    if (!from_stdin) fclose(f);
    if (!trace) {
        fprintf(stderr, "backtrack: error: replay: cannot read '%s'\n", in);
        return 1;
    }
    char err[512], *html;
    size_t html_len;
    int rc = replay_render(trace, len, &html, &html_len, err, sizeof err);
    free(trace);
    if (rc != 0) {
        fprintf(stderr, "backtrack: error: replay: %s: %s\n", in, err);
        return 1;
    }
    bool to_stdout = strcmp(out, "-") == 0;
    FILE *o = to_stdout ? stdout : fopen(out, "wb");
    if (!o) {
        fprintf(stderr, "backtrack: error: replay: cannot write '%s': %s\n", out, strerror(errno));
        free(html);
        return 1;
    }
    bool ok = fwrite(html, 1, html_len, o) == html_len;
    ok = (to_stdout ? fflush(o) == 0 : fclose(o) == 0) && ok;
    free(html);
    if (!ok) {
        fprintf(stderr, "backtrack: error: replay: cannot write '%s'\n", out);
        if (!to_stdout) unlink(out);
        return 1;
    }
    return 0;
}
