/*
 * serve_openai.c -- OpenAI's wire format for `backtrack serve`: a request body (JSON) is
 * checked field by field and becomes a request record (prompt, tokens, sampling
 * parameters, stop strings, strategies); a finished request becomes a completion object,
 * and a running one stream chunks. Every refusal names its field; a field that would
 * change the output and is not implemented is refused, never ignored.
 */
#include "serve_internal.h"
#include "trace.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* ==== JSON fields ============================================================= */

/* Each byte of C string s that does not start valid UTF-8 becomes '?': a message quotes a
 * client's text cut to a few bytes ("%.60s"), which may split a character. */
static void utf8_scrub(char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = trace_utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) s[i] = '?', k = 1;
        i += k;
    }
}

static bool fail(verr *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    utf8_scrub(e->msg);
    utf8_scrub(e->param);
    return false;
}

static int cmp_key(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Every key of object `obj` once, or a 400 naming the first one given twice (`where`: the
 * object's own name, NULL for the body). JSON leaves a repeated key undefined and parsers
 * disagree (cJSON's lookup finds the first, Python and JavaScript keep the last), so a
 * body with one is refused, not read one way or the other. O(n log n). */
static bool unique_keys(const cJSON *obj, const char *where, verr *e) {
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return true;
    const char *small[32], **keys = n <= 32 ? small : malloc((size_t)n * sizeof *keys);
    if (!keys) return fail(e, where, "out of memory");
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) keys[k++] = it->string ? it->string : "";
    qsort(keys, (size_t)k, sizeof *keys, cmp_key);
    const char *dup = NULL;
    for (int i = 1; i < k && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    bool ok = !dup || fail(e, where ? where : dup, "'%.60s' is given twice%s%s", dup,
                           where ? " in " : "", where ? where : "");
    if (keys != small) free(keys);
    return ok;
}

/* Read an optional number field within [lo, hi]; integer when asked. */
static bool get_num(const cJSON *obj, const char *key, double lo, double hi, bool integer,
                    double *out, bool *present, verr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (present) *present = false;
    if (!it || cJSON_IsNull(it)) return true;
    if (!cJSON_IsNumber(it)) return fail(e, key, "'%s' must be a number", key);
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi || (integer && v != floor(v)))
        return fail(e, key, "'%s' must be %s in [%.10g, %.10g]", key, integer ? "an integer" : "a number", lo, hi);
    *out = v;
    if (present) *present = true;
    return true;
}

static bool get_bool(const cJSON *obj, const char *key, bool *out, verr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return true;
    if (!cJSON_IsBool(it)) return fail(e, key, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(it);
    return true;
}

/* The value `it` of field `key`: a string or an array of strings (each non-empty, valid
 * for the phrase list); with `pairs` (a phrase list) an item may also be [phrase,
 * adjustment]. Calls add(user, s, adjustment) for each. */
static bool strings_of(const cJSON *it, const char *key, bool pairs,
                       bool (*add)(void *, const char *, double, verr *), void *user, verr *e) {
    if (cJSON_IsString(it)) return add(user, it->valuestring, 0.0, e);
    if (!cJSON_IsArray(it)) return fail(e, key, "'%s' must be a string or an array of strings", key);
    const cJSON *x;
    cJSON_ArrayForEach(x, it) {
        double adj = 0.0;
        const cJSON *sx = x;
        if (pairs && cJSON_IsArray(x)) { /* [phrase, adjustment] */
            sx = cJSON_GetArrayItem(x, 0);
            const cJSON *n = cJSON_GetArrayItem(x, 1);
            if (cJSON_GetArraySize(x) != 2 || !cJSON_IsNumber(n) ||
                !(n->valuedouble > 0 && n->valuedouble <= 1))
                return fail(e, key, "'%s': [phrase, adjustment] needs a phrase and an adjustment "
                                    "in (0, 1]", key);
            adj = n->valuedouble;
        }
        if (!cJSON_IsString(sx)) return fail(e, key, "'%s' must hold strings", key);
        if (!add(user, sx->valuestring, adj, e)) return false;
    }
    return true;
}

/* The optional field `key` of obj: strings as strings_of takes them, without pairs. */
static bool get_strings(const cJSON *obj, const char *key, bool required,
                        bool (*add)(void *, const char *, double, verr *), void *user, verr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) return required ? fail(e, key, "'%s' is required", key) : true;
    return strings_of(it, key, false, add, user, e);
}

/* ==== Strategies from JSON ======================================================== */

typedef struct strlist {
    char  **s;
    int32_t n;
} strlist;

/* ---- per-request limits: the server's ceilings (--max-phrases, --max-phrase-bytes,
 * --max-regexes, --max-retries-ceiling), counted over all of a request's lists together ---- */

typedef struct budget {
    const cli_args *A;
    long long phrases, phrase_bytes, regexes;
} budget;

static bool count_phrase(budget *b, const char *param, const char *s, verr *e) {
    b->phrases++;
    b->phrase_bytes += (long long)strlen(s);
    if (b->phrases > b->A->max_phrases)
        return fail(e, param, "'%s': the request has more than %d phrases (the server's "
                              "--max-phrases)", param, b->A->max_phrases);
    if (b->phrase_bytes > b->A->max_phrase_bytes)
        return fail(e, param, "'%s': the request's phrases hold more than %d bytes (the "
                              "server's --max-phrase-bytes)", param, b->A->max_phrase_bytes);
    return true;
}

static bool count_regex(budget *b, const char *param, verr *e) {
    if (++b->regexes > b->A->max_regexes)
        return fail(e, param, "'%s': the request has more than %d regexes (the server's "
                              "--max-regexes)", param, b->A->max_regexes);
    return true;
}

/* Where get_strings puts each string: an option of a strategy's values (a phrase list with
 * adjustments, regexes, Replace's find strings), counted against the budget; `param`
 * names the field in errors. */
typedef struct sink {
    bt_strategy_options *o;
    const char          *option; /* the catalog's name of the option */
    bool                 regex;
    const char          *param;
    budget              *b;
} sink;

static bool add_to_sink(void *user, const char *s, double adj, verr *e) {
    sink *k = user;
    if (!*s) return fail(e, k->param, "'%s': empty string", k->param);
    if (!(k->regex ? count_regex(k->b, k->param, e) : count_phrase(k->b, k->param, s, e))) return false;
    if (bt_strategy_options_add(k->o, k->option, s, strlen(s), (float)adj) != BT_OK)
        return fail(e, k->param, "'%s': \"%.60s\": %s", k->param, s, bt_last_error());
    return true;
}

/* ik_llama.cpp's banned_regex_case_insensitive: each regex with (?i) in front. */
static bool add_regex_ci(void *user, const char *s, double adj, verr *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "(?i)%s", s) >= (int)sizeof buf)
        return fail(e, "banned_regex_case_insensitive", "a regex is longer than 4,000 bytes");
    return add_to_sink(user, buf, adj, e);
}

/* Is this option one of the retry caps the server's --max-retries-ceiling bounds? */
static bool is_retry_cap(const bt_option_info *oi) {
    return strcmp(oi->name, "max_retries") == 0 || strcmp(oi->name, "max_retries_total") == 0;
}

/* The "fields" of strategy si, for an error message: "a, b, c". */
static void field_names(const bt_strategy_info *si, char *out, size_t cap) {
    size_t w = 0;
    out[0] = 0;
    for (int32_t i = 0; i < si->n_options && w < cap; i++) {
        if (si->options[i].kind == BT_OPTION_PATH_LIST) continue;
        w += (size_t)snprintf(out + w, cap - w, "%s%s", w ? ", " : "", si->options[i].name);
    }
    if (!out[0]) snprintf(out, cap, "none");
}

/* One field `it` of a strategy object into its option values: the catalog says
 * the kind, the range and the name; JSON says the value. */
static bool set_field(const bt_strategy_info *si, bt_strategy_options *o, const cJSON *it,
                      budget *b, verr *e) {
    const char *key = it->string;
    const bt_option_info *oi = bt_option_info_find(si, key);
    if (oi && strcmp(oi->name, key) != 0) oi = NULL; /* JSON names only, not CLI flags */
    /* adaptive-temperature's coefficients as one array: "coeffs": [c0, .., c4] */
    bool coeffs = !oi && strcmp(key, "coeffs") == 0 && bt_option_info_find(si, "c4");
    if ((oi || coeffs) && cJSON_IsNull(it)) return true; /* null: not given (its default), as at the top level */
    if (coeffs) {
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 5)
            return fail(e, "strategies", "%s: 'coeffs' must be 5 numbers", si->name);
        for (int i = 0; i < 5; i++) {
            const cJSON *x = cJSON_GetArrayItem(it, i);
            char name[4] = {'c', (char)('0' + i), 0};
            if (!cJSON_IsNumber(x) || bt_strategy_options_set(o, name, x->valuedouble) != BT_OK)
                return fail(e, "strategies", "%s: 'coeffs' must be 5 numbers", si->name);
        }
        return true;
    }
    if (!oi) {
        char names[512];
        field_names(si, names, sizeof names);
        return fail(e, "strategies", "unknown field '%s' for strategy '%s' (its fields: %s)", key,
                    si->name, names);
    }
    switch (oi->kind) {
    case BT_OPTION_PATH_LIST:
        return fail(e, key, "%s: '%s' names files, which a server does not read for a client: "
                            "send their contents", si->name, key);
    case BT_OPTION_BOOL:
        if (!cJSON_IsBool(it)) return fail(e, key, "'%s' must be true or false", key);
        bt_strategy_options_set(o, key, cJSON_IsTrue(it) ? 1 : 0);
        return true;
    case BT_OPTION_INT:
    case BT_OPTION_FLOAT:
        if (!cJSON_IsNumber(it)) return fail(e, key, "'%s' must be a number", key);
        if (is_retry_cap(oi) && it->valuedouble > b->A->max_retries &&
            it->valuedouble == floor(it->valuedouble))
            return fail(e, key, "'%s' is %.0f; this server allows at most %d (--max-retries-ceiling)",
                        key, it->valuedouble, b->A->max_retries);
        if (bt_strategy_options_set(o, key, it->valuedouble) != BT_OK)
            return fail(e, key, "%s", bt_last_error());
        return true;
    case BT_OPTION_TEXT:
        if (!cJSON_IsString(it)) return fail(e, key, "%s: '%s' must be a string", si->name, key);
        if (bt_strategy_options_add(o, key, it->valuestring, strlen(it->valuestring), 0.0f) != BT_OK)
            return fail(e, key, "%s: '%s': %s", si->name, key, bt_last_error());
        return true;
    default: { /* TEXT_LIST: strings; PHRASE_LIST: strings or [phrase, adjustment] */
        sink k = {.o = o, .option = key, .regex = strcmp(key, "regexes") == 0, .param = key, .b = b};
        /* `it` itself: with a key given twice, a lookup by name finds the first */
        return strings_of(it, key, oi->kind == BT_OPTION_PHRASE_LIST, add_to_sink, &k, e);
    }
    }
}

/* A retry cap the request did not give, whose default is above the server's ceiling,
 * comes down to the ceiling. */
static void cap_retries(const bt_strategy_info *si, bt_strategy_options *o, budget *b) {
    for (int32_t i = 0; i < si->n_options; i++) {
        const bt_option_info *oi = &si->options[i];
        if (is_retry_cap(oi) && bt_strategy_options_count(o, oi->name) == 0 &&
            oi->def > b->A->max_retries)
            bt_strategy_options_set(o, oi->name, b->A->max_retries);
    }
}

/* Build from filled option values (freed here); `param` names the field in errors. */
static bt_strategy *create_from(const bt_strategy_info *si, bt_strategy_options *o, budget *b,
                                const char *param, verr *e) {
    cap_retries(si, o, b);
    bt_strategy *s = bt_strategy_create(o, NULL);
    if (!s) fail(e, param, "%s: %s", si->name, bt_last_error());
    bt_strategy_options_free(o);
    return s;
}

/* One object of "strategies": {"name": ..., its fields}. */
static bt_strategy *strategy_from_json(const cJSON *obj, budget *b, verr *e) {
    if (!unique_keys(obj, "strategies", e)) return NULL;
    const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "name"));
    const bt_strategy_info *si = bt_strategy_info_find(nm);
    if (!si || si->terminal) {
        char names[256] = "";
        size_t w = 0;
        for (int32_t i = 0; i < bt_strategy_catalog_size() && w < sizeof names; i++)
            if (!bt_strategy_catalog_get(i)->terminal)
                w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", w ? ", " : "",
                                      bt_strategy_catalog_get(i)->name);
        fail(e, "strategies", si ? "strategy '%s' needs a person at a terminal; a server offers %s"
                                 : "unknown strategy '%s' (this server offers %s)", nm, names);
        return NULL;
    }
    bt_strategy_options *o = bt_strategy_options_new(si);
    if (!o) {
        fail(e, "strategies", "out of memory");
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (strcmp(it->string, "name") == 0) continue;
        if (!set_field(si, o, it, b, e)) {
            bt_strategy_options_free(o);
            return NULL;
        }
    }
    return create_from(si, o, b, "strategies", e);
}

/* The peers' shorthands for AntiSlop, so clients written for them work unchanged:
 * KoboldCpp's and ik_llama.cpp's banned_strings, Aphrodite's banned_phrases (hard bans),
 * ik_llama.cpp's banned_regex and banned_regex_case_insensitive. One AntiSlop for all of
 * them; NULL with e->msg empty when the request names none. */
static bt_strategy *make_banned(const cJSON *body, budget *b, verr *e) {
    static const char *const keys[] = {"banned_strings", "banned_phrases", "banned_regex",
                                       "banned_regex_case_insensitive"};
    const bt_strategy_info *si = bt_strategy_info_find("antislop");
    const char *param = NULL;
    for (int k = 0; k < 4; k++) { /* null and [] ask for nothing */
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, keys[k]);
        if (it && !cJSON_IsNull(it) && !(cJSON_IsArray(it) && cJSON_GetArraySize(it) == 0))
            param = keys[k];
    }
    if (!param) return NULL;
    bt_strategy_options *o = bt_strategy_options_new(si);
    if (!o) {
        fail(e, param, "out of memory");
        return NULL;
    }
    for (int k = 0; k < 2; k++) { /* arrays of strings: hard bans */
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, keys[k]);
        if (!it || cJSON_IsNull(it)) continue;
        if (!cJSON_IsArray(it)) {
            fail(e, keys[k], "'%s' must be an array of strings", keys[k]);
            goto fail;
        }
        sink phrases = {.o = o, .option = "slops", .param = keys[k], .b = b};
        const cJSON *x;
        cJSON_ArrayForEach(x, it) {
            if (!cJSON_IsString(x)) {
                fail(e, keys[k], "'%s' must hold strings", keys[k]);
                goto fail;
            }
            if (!add_to_sink(&phrases, x->valuestring, 0.0, e)) goto fail;
        }
    }
    sink re1 = {.o = o, .option = "regexes", .regex = true, .param = keys[2], .b = b};
    sink re2 = {.o = o, .option = "regexes", .regex = true, .param = keys[3], .b = b};
    if (!get_strings(body, keys[2], false, add_to_sink, &re1, e) ||
        !get_strings(body, keys[3], false, add_regex_ci, &re2, e))
        goto fail;
    return create_from(si, o, b, param, e);
fail:
    bt_strategy_options_free(o);
    return NULL;
}

/* The request's strategies (NULL with e->msg empty: none asked for), within the server's
 * per-request limits. */
static bt_strategy *build_strategies(server *srv, const cJSON *body, verr *e) {
    budget b = {.A = &srv->args};
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "strategies");
    bt_strategy *parts[16];
    int n = 0;
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list)) {
            fail(e, "strategies", "'strategies' must be an array of objects");
            return NULL;
        }
        const cJSON *o;
        cJSON_ArrayForEach(o, list) {
            if (n == 15) {
                fail(e, "strategies", "at most 15 strategies");
                goto fail;
            }
            if (!cJSON_IsObject(o) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "name"))) {
                fail(e, "strategies", "each strategy is an object with a \"name\"");
                goto fail;
            }
            bt_strategy *s = strategy_from_json(o, &b, e);
            if (!s) goto fail;
            parts[n++] = s;
        }
    }
    bt_strategy *banned = make_banned(body, &b, e);
    if (e->msg[0]) goto fail;
    if (banned) parts[n++] = banned;
    if (n == 0) return NULL;
    if (n == 1) return parts[0];
    bt_strategy *chain = bt_chain_strategy_init(parts, n);
    if (!chain) fail(e, "strategies", "%s", bt_last_error());
    return chain;
fail:
    for (int i = 0; i < n; i++) bt_strategy_free(parts[i]);
    return NULL;
}

/* OpenAI's logprobs: chat takes "logprobs": true with "top_logprobs" in [0, 20]; the
 * completions endpoint takes "logprobs": N in [0, 20] (N alternatives; OpenAI stops at 5, SillyTavern asks for 10). The values come
 * from the distribution each token was finally drawn from, after the strategies. */
static bool get_logprobs(const cJSON *b, bool chat, request *r, verr *e) {
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(b, "logprobs");
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(b, "top_logprobs");
    double v;
    bool has;
    r->logprobs = -1;
    if (chat) {
        bool on = false;
        if (!get_bool(b, "logprobs", &on, e)) return false;
        if (!get_num(b, "top_logprobs", 0, SERVE_TOP_LOGPROBS_MAX, true, &v, &has, e)) return false;
        if (has && !on) return fail(e, "top_logprobs", "'top_logprobs' needs \"logprobs\": true");
        if (on) r->logprobs = has ? (int32_t)v : 0;
        return true;
    }
    if (top && !cJSON_IsNull(top))
        return fail(e, "top_logprobs", "'top_logprobs' is for chat; completions take \"logprobs\": N");
    if (!lp || cJSON_IsNull(lp) || cJSON_IsFalse(lp)) return true;
    if (!get_num(b, "logprobs", 0, SERVE_TOP_LOGPROBS_MAX, true, &v, &has, e)) return false;
    r->logprobs = (int32_t)v;
    return true;
}

/* This server's request extension: "backtrack": {"trace": true} returns the generation's
 * events (docs/trace.md) in the response, or with the stream's chunks. */
static bool get_extension(const cJSON *b, request *r, verr *e) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(b, "backtrack");
    if (!x || cJSON_IsNull(x)) return true;
    if (!cJSON_IsObject(x)) return fail(e, "backtrack", "'backtrack' must be an object");
    if (!unique_keys(x, "backtrack", e)) return false;
    const cJSON *it;
    cJSON_ArrayForEach(it, x) if (strcmp(it->string, "trace") != 0)
        return fail(e, "backtrack", "unknown field '%s' in 'backtrack' (known: trace)", it->string);
    return get_bool(x, "trace", &r->trace, e);
}

/* ==== Request parsing ================================================================ */

static bool add_stop(void *user, const char *s, double adj, verr *e) {
    (void)adj;
    request *r = user;
    if (!*s) return fail(e, "stop", "'stop' strings must not be empty");
    if (r->n_stop == MAX_STOP) return fail(e, "stop", "at most %d stop strings", MAX_STOP);
    if (!(r->stop[r->n_stop] = strdup(s))) return fail(e, "stop", "out of memory");
    size_t l = strlen(s);
    if (l > r->max_stop) r->max_stop = l;
    r->n_stop++;
    return true;
}

/* A message's content given as OpenAI content parts: the text parts, joined by "\n" (as
 * llama.cpp does for templates that take a string). Any other part type is refused by
 * name: this server has no image or audio input. *out is malloc'd. */
static bool join_parts(const cJSON *parts, char **out, verr *e) {
    size_t len = 0, cap = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, parts) {
        if (cJSON_IsObject(part) && !unique_keys(part, "messages", e)) return false;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type)) return fail(e, "messages", "each content part needs a string 'type'");
        if (strcmp(type->valuestring, "text") != 0)
            return fail(e, "messages", "content parts of type '%.40s' are not supported (text only)",
                        type->valuestring);
        if (!cJSON_IsString(text)) return fail(e, "messages", "a text content part needs a string 'text'");
        if ((len > 0 && sbuf_append(out, &len, &cap, "\n", 1) != 0) ||
            sbuf_append(out, &len, &cap, text->valuestring, strlen(text->valuestring)) != 0)
            return fail(e, NULL, "out of memory");
    }
    if (!*out && !(*out = strdup(""))) return fail(e, NULL, "out of memory");
    return true;
}

/* Fields that would change the output and that this server does not implement: refused
 * by name, never silently ignored. The peers' sampler fields (llama-server's, and what
 * SillyTavern's text completion sends along) are refused only for a value that would
 * change something: their neutral values, which such clients send by default, pass. */
typedef enum neutral_kind {
    NEUTRAL_NONE,      /* any value (but null or false) is refused                   */
    NEUTRAL_NUMBER,    /* the number `v` is neutral                                  */
    NEUTRAL_AT_MOST,   /* any number <= `v` is neutral (off)                         */
    NEUTRAL_AT_LEAST,  /* any number >= `v` is neutral (off)                         */
    NEUTRAL_EMPTY      /* "" is neutral                                              */
} neutral_kind;

typedef struct unimplemented {
    const char  *name;
    neutral_kind kind;
    double       v;
} unimplemented;

static const unimplemented UNIMPLEMENTED[] = {
    /* OpenAI's */
    {"tools", NEUTRAL_NONE, 0},           {"tool_choice", NEUTRAL_NONE, 0},
    {"functions", NEUTRAL_NONE, 0},       {"function_call", NEUTRAL_NONE, 0},
    {"response_format", NEUTRAL_NONE, 0}, {"audio", NEUTRAL_NONE, 0},
    {"modalities", NEUTRAL_NONE, 0},      {"prediction", NEUTRAL_NONE, 0},
    {"best_of", NEUTRAL_NUMBER, 1},       {"echo", NEUTRAL_NONE, 0},
    {"suffix", NEUTRAL_EMPTY, 0},
    /* llama-server's and the text-completion peers' */
    {"json_schema", NEUTRAL_NONE, 0},     {"grammar", NEUTRAL_EMPTY, 0},
    {"n_probs", NEUTRAL_NUMBER, 0},       {"typical_p", NEUTRAL_AT_LEAST, 1},
    {"typical", NEUTRAL_AT_LEAST, 1},     {"tfs_z", NEUTRAL_AT_LEAST, 1},
    {"tfs", NEUTRAL_AT_LEAST, 1},         {"mirostat", NEUTRAL_NUMBER, 0},
    {"mirostat_mode", NEUTRAL_NUMBER, 0}, {"dynatemp_range", NEUTRAL_AT_MOST, 0},
    {"dry_multiplier", NEUTRAL_AT_MOST, 0}, {"xtc_probability", NEUTRAL_AT_MOST, 0},
    {"top_n_sigma", NEUTRAL_AT_MOST, 0},  {"nsigma", NEUTRAL_AT_MOST, 0},
    {"top_a", NEUTRAL_AT_MOST, 0},        {"ignore_eos", NEUTRAL_NONE, 0},
    {"ban_eos_token", NEUTRAL_NONE, 0},   {"min_tokens", NEUTRAL_AT_MOST, 0},
    {"min_keep", NEUTRAL_AT_MOST, 0},     {"smoothing_factor", NEUTRAL_AT_MOST, 0},
};

/* Whether `it` is a value of field f that changes nothing. */
static bool is_neutral(const unimplemented *f, const cJSON *it) {
    if (cJSON_IsNull(it) || cJSON_IsFalse(it)) return true;
    if ((strcmp(f->name, "tools") == 0 || strcmp(f->name, "functions") == 0) && cJSON_IsArray(it) &&
        cJSON_GetArraySize(it) == 0)
        return true; /* an empty tool list asks for nothing */
    if (strcmp(f->name, "tool_choice") == 0 && cJSON_IsString(it) && strcmp(it->valuestring, "none") == 0)
        return true;
    if (strcmp(f->name, "modalities") == 0 && cJSON_IsArray(it) && cJSON_GetArraySize(it) == 1 &&
        cJSON_IsString(it->child) && strcmp(it->child->valuestring, "text") == 0)
        return true; /* text out: what this server does anyway */
    if (strcmp(f->name, "response_format") == 0) {
        verr ignored;
        if (!unique_keys(it, NULL, &ignored)) return false; /* a repeated "type": not neutral */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "type");
        return cJSON_IsString(t) && strcmp(t->valuestring, "text") == 0;
    }
    switch (f->kind) {
    case NEUTRAL_NUMBER: return cJSON_IsNumber(it) && it->valuedouble == f->v;
    case NEUTRAL_AT_MOST: return cJSON_IsNumber(it) && it->valuedouble <= f->v;
    case NEUTRAL_AT_LEAST: return cJSON_IsNumber(it) && it->valuedouble >= f->v;
    case NEUTRAL_EMPTY: return cJSON_IsString(it) && it->valuestring[0] == '\0';
    default: return false;
    }
}

static bool refuse_unimplemented(const cJSON *b, verr *e) {
    for (size_t i = 0; i < sizeof UNIMPLEMENTED / sizeof *UNIMPLEMENTED; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(b, UNIMPLEMENTED[i].name);
        if (!it || is_neutral(&UNIMPLEMENTED[i], it)) continue;
        return fail(e, UNIMPLEMENTED[i].name, "'%s' is not supported by this server", UNIMPLEMENTED[i].name);
    }
    return true;
}

/* logit_bias: OpenAI's object {"token id": bias} or llama-server's [[id, bias], ...] where
 * a bias of false bans the token. Replaces the server's -l biases. */
static bool get_logit_bias(server *srv, const cJSON *b, request *r, verr *e) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(b, "logit_bias");
    if (!lb || cJSON_IsNull(lb)) return true;
    if (!cJSON_IsObject(lb) && !cJSON_IsArray(lb))
        return fail(e, "logit_bias", "'logit_bias' must be an object {\"token id\": bias} or [[id, bias], ...]");
    int n = cJSON_GetArraySize(lb);
    if (n > 4096) return fail(e, "logit_bias", "'logit_bias' holds at most 4096 entries");
    if (cJSON_IsObject(lb) && !unique_keys(lb, "logit_bias", e)) return false;
    if (n == 0) {
        r->sp.logit_bias = NULL;
        r->sp.n_logit_bias = 0;
        return true;
    }
    if (!(r->bias = calloc((size_t)n, sizeof *r->bias))) return fail(e, "logit_bias", "out of memory");
    int32_t nv = bt_provider_n_vocab(srv->slots[0].provider), k = 0;
    for (const cJSON *it = lb->child; it; it = it->next, k++) {
        const cJSON *id = NULL, *bias = it;
        double tok;
        char *end = NULL;
        if (cJSON_IsObject(lb)) {
            tok = strtod(it->string, &end);
            if (end == it->string || *end) return fail(e, "logit_bias", "logit_bias key '%s' is not a token id", it->string);
        } else {
            if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2)
                return fail(e, "logit_bias", "each logit_bias entry must be [token id, bias]");
            id = cJSON_GetArrayItem(it, 0);
            bias = cJSON_GetArrayItem(it, 1);
            if (!cJSON_IsNumber(id)) return fail(e, "logit_bias", "a logit_bias token id must be a number");
            tok = id->valuedouble;
        }
        if (tok != floor(tok) || tok < 0 || tok >= nv)
            return fail(e, "logit_bias", "logit_bias token %.10g is outside the vocabulary (%d tokens)", tok, nv);
        float bv;
        if (cJSON_IsFalse(bias)) bv = -INFINITY;
        else if (cJSON_IsNumber(bias) && isfinite(bias->valuedouble) && fabs(bias->valuedouble) <= 1e6)
            bv = (float)bias->valuedouble;
        else return fail(e, "logit_bias", "a logit_bias bias must be a number (or false: ban)");
        r->bias[k] = (bt_logit_bias){(bt_token)tok, bv};
    }
    r->sp.logit_bias = r->bias;
    r->sp.n_logit_bias = n;
    return true;
}

/* stream_options: include_usage (OpenAI's extra last chunk with the usage) and
 * include_obfuscation (accepted; this server adds no padding to its chunks). Without
 * "stream" it changes nothing. */
static bool get_stream_options(const cJSON *b, request *r, verr *e) {
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
    if (!so || cJSON_IsNull(so)) return true;
    if (!cJSON_IsObject(so)) return fail(e, "stream_options", "'stream_options' must be an object");
    if (!unique_keys(so, "stream_options", e)) return false;
    const cJSON *it;
    cJSON_ArrayForEach(it, so) { /* `it` itself: a key given twice has two values */
        if (strcmp(it->string, "include_usage") != 0 && strcmp(it->string, "include_obfuscation") != 0)
            return fail(e, "stream_options", "stream_options.%.40s is not supported (include_usage, "
                                             "include_obfuscation)", it->string);
        if (cJSON_IsNull(it)) continue; /* not given: the default */
        if (!cJSON_IsBool(it))
            return fail(e, "stream_options", "stream_options.%s must be true or false", it->string);
        if (strcmp(it->string, "include_usage") == 0) r->include_usage = cJSON_IsTrue(it);
    }
    return true;
}

/* Fill a request from the JSON body of /v1/completions (chat false) or
 * /v1/chat/completions (chat true). */
bool openai_parse_request(server *srv, const cJSON *b, bool chat, request *r, verr *e) {
    const cli_args *A = &srv->args;
    if (!cJSON_IsObject(b)) return fail(e, NULL, "the body must be a JSON object");
    if (!unique_keys(b, NULL, e)) return false;
    r->chat = chat;
    if (chat) { /* OpenAI's id prefix for chat completions */
        char id[sizeof r->id];
        memcpy(id, "chat", 4);
        memcpy(id + 4, r->id, sizeof id - 4);
        id[sizeof id - 1] = '\0';
        memcpy(r->id, id, sizeof id);
    }
    if (!refuse_unimplemented(b, e)) return false;
    if (chat) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
        int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0;
        if (n == 0) return fail(e, "messages", "'messages' must be a non-empty array");
        bt_chat_message *m = calloc((size_t)n, sizeof *m);
        char **joined = calloc((size_t)n, sizeof *joined); /* contents given as parts */
        if (!m || !joined) {
            free(m);
            free(joined);
            return fail(e, NULL, "out of memory");
        }
        int i = 0;
        bool ok = true;
        const cJSON *it;
        cJSON_ArrayForEach(it, msgs) {
            if (cJSON_IsObject(it) && !unique_keys(it, "messages", e)) {
                ok = false;
                break;
            }
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
            if (!cJSON_IsString(role) || !(cJSON_IsString(content) || cJSON_IsArray(content))) {
                ok = fail(e, "messages", "each message needs a string 'role' and a 'content' (a string "
                                         "or an array of text parts)");
                break;
            }
            if (cJSON_IsArray(content) && !(ok = join_parts(content, &joined[i], e))) break;
            m[i] = (bt_chat_message){role->valuestring, joined[i] ? joined[i] : content->valuestring};
            i++;
        }
        int rc = ok ? bt_llama_chat_messages(srv->slots[0].provider, srv->args.chat_template, m, n, &r->prompt)
                    : BT_OK;
        for (int k = 0; k < n; k++) free(joined[k]);
        free(joined);
        free(m);
        if (!ok) return false;
        if (rc != BT_OK) return fail(e, "messages", "%s", bt_last_error());
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) return fail(e, "prompt", "'prompt' must be a string");
        if (!(r->prompt = strdup(p->valuestring))) return fail(e, NULL, "out of memory");
    }
    if (!*r->prompt) return fail(e, chat ? "messages" : "prompt", "the prompt is empty");

    r->sp = bt_sampler_default_params();
    r->sp.temperature = A->temp;
    r->sp.top_k = A->top_k;
    r->sp.top_p = A->top_p;
    r->sp.min_p = A->min_p;
    r->sp.seed = A->seed;
    r->sp.max_new_tokens = A->n_predict;
    r->sp.cache_prompt = !A->no_cache_prompt;
    r->sp.repeat_penalty = A->repeat_penalty;
    r->sp.repeat_last_n = A->repeat_last_n;
    r->sp.frequency_penalty = A->frequency_penalty;
    r->sp.presence_penalty = A->presence_penalty;
    r->sp.logit_bias = A->logit_bias;
    r->sp.n_logit_bias = A->n_logit_bias;
    double v;
    bool has;
    /* as llama-server: any positive count; the end of the context stops the text
     * ("length") whatever max_tokens says. Current OpenAI clients send
     * max_completion_tokens instead: it wins when both are given; llama-server's own name,
     * n_predict, counts when neither OpenAI name is given. */
    static const char *const max_keys[] = {"n_predict", "max_tokens", "max_completion_tokens"};
    for (int k = 0; k < 3; k++) {
        if (!get_num(b, max_keys[k], -1, INT32_MAX, true, &v, &has, e)) return false;
        if (has && v == 0) return fail(e, max_keys[k], "'%s' must be >= 1 (or -1: no limit)", max_keys[k]);
        if (has) r->sp.max_new_tokens = v < 0 ? 0 : (int32_t)v; /* -1: llama-server's "no limit" */
    }
    /* repetition penalties and logit bias: llama-server's and OpenAI's names */
    if (!get_num(b, "repeat_penalty", 1e-6, 1e6, false, &v, &has, e)) return false;
    if (has) r->sp.repeat_penalty = (float)v;
    if (!get_num(b, "repeat_last_n", -1, INT32_MAX, true, &v, &has, e)) return false;
    if (has) r->sp.repeat_last_n = (int32_t)v;
    if (!get_num(b, "frequency_penalty", -2, 2, false, &v, &has, e)) return false;
    if (has) r->sp.frequency_penalty = (float)v;
    if (!get_num(b, "presence_penalty", -2, 2, false, &v, &has, e)) return false;
    if (has) r->sp.presence_penalty = (float)v;
    if (!get_logit_bias(srv, b, r, e)) return false;
    if (!get_num(b, "temperature", 0, 1e4, false, &v, &has, e)) return false;
    if (has) r->sp.temperature = (float)v;
    if (!get_num(b, "top_p", 1e-9, 1, false, &v, &has, e)) return false;
    if (has) r->sp.top_p = (float)v;
    if (!get_num(b, "top_k", 0, 1e9, true, &v, &has, e)) return false;
    if (has) r->sp.top_k = (int32_t)v;
    if (!get_num(b, "min_p", 0, 1, false, &v, &has, e)) return false;
    if (has) r->sp.min_p = (float)v;
    /* -1: a random seed, as llama-server's and the CLI's --seed -1 */
    if (!get_num(b, "seed", -1, 9007199254740991.0, true, &v, &has, e)) return false;
    if (has) r->sp.seed = v < 0 ? BT_SEED_RANDOM : (uint64_t)v;
    if (!get_num(b, "n", 1, 1, true, &v, &has, e)) return fail(e, "n", "only n = 1 is supported");
    if (!get_bool(b, "stream", &r->stream, e)) return false;
    if (!get_stream_options(b, r, e)) return false;
    if (!get_strings(b, "stop", false, add_stop, r, e)) return false;

    /* llama-server's field: false starts this request cold and leaves nothing cached */
    if (!get_bool(b, "cache_prompt", &r->sp.cache_prompt, e)) return false;
    if (!get_logprobs(b, chat, r, e) || !get_extension(b, r, e)) return false;

    /* tokenized once: to route the request to the slot that caches most of it, and to
     * check that it leaves room in the context */
    int32_t nt = 0;
    int rc = bt_provider_tokenize(srv->slots[0].provider, r->prompt, strlen(r->prompt),
                                  r->sp.add_special, r->sp.parse_special, &r->toks, &nt);
    if (rc != BT_OK) return fail(e, chat ? "messages" : "prompt", "%s", bt_last_error());
    if (nt >= srv->n_ctx)
        return fail(e, chat ? "messages" : "prompt",
                    "the prompt is %d tokens; the context holds %d (server -c)", nt, srv->n_ctx);
    r->n_prompt = nt;

    e->msg[0] = '\0';
    r->strategy = build_strategies(srv, b, e);
    return e->msg[0] == '\0';
}

/* ==== Responses ======================================================================= */

static const char *finish_reason(const request *r) {
    if (r->stop_hit || r->st.stop_reason == BT_STOP_EOG) return "stop";
    return "length";
}

/* OpenAI's usage object. */
static void add_usage(cJSON *root, const request *r) {
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", r->st.n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->st.n_released);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->st.n_prompt + r->st.n_released));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", r->st.n_prompt_cached);
}

/* choices[0].logprobs for released tokens [from, to): null unless the request asked. */
static void add_logprobs(cJSON *c, const request *r, int32_t from, int32_t to) {
    if (r->logprobs < 0 || !r->obs) {
        cJSON_AddNullToObject(c, "logprobs");
        return;
    }
    if (!r->chat) {
        cJSON_AddItemToObject(c, "logprobs", req_obs_completion_logprobs(r->obs, from, to, 0));
        return;
    }
    cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
    cJSON_AddItemToObject(lp, "content", req_obs_chat_logprobs(r->obs, from, to));
    cJSON_AddNullToObject(lp, "refusal");
}

/* backtrack.trace: the events [from, ...) when the request asked; *to gets the count. */
static void add_trace(cJSON *root, const request *r, int32_t from, int32_t *to) {
    if (!r->trace || !r->obs) return;
    cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "backtrack");
    if (!b) b = cJSON_AddObjectToObject(root, "backtrack");
    cJSON_AddItemToObject(b, "trace", req_obs_trace(r->obs, from, to));
    if (req_obs_trace_truncated(r->obs)) cJSON_AddTrueToObject(b, "trace_truncated");
}

/* This server's extension: the generation's statistics ("backtrack"). */
static void add_stats(cJSON *root, const request *r) {
    cJSON *b = cJSON_AddObjectToObject(root, "backtrack");
    cJSON_AddNumberToObject(b, "slot", r->slot);
    cJSON_AddNumberToObject(b, "prompt_cached", r->st.n_prompt_cached);
    cJSON_AddNumberToObject(b, "rewinds", (double)r->st.n_rewinds);
    cJSON_AddNumberToObject(b, "discarded_tokens", (double)r->st.n_discarded);
    cJSON_AddNumberToObject(b, "steps", (double)r->st.n_steps);
    cJSON_AddNumberToObject(b, "evaluated_positions", (double)r->st.n_evaluated);
    cJSON_AddNumberToObject(b, "prompt_reevaluated", (double)r->st.n_prompt_reevaluated);
    cJSON_AddNumberToObject(b, "dead_ends", (double)r->st.n_dead_ends);
    cJSON_AddStringToObject(b, "stop_reason", bt_stop_reason_name(r->st.stop_reason));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->st.seed);
    cJSON_AddStringToObject(b, "seed", seed);
    cJSON_AddNumberToObject(b, "time_ms", r->st.t_total_ms);
}

cJSON *openai_completion_json(server *srv, const request *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", r->id);
    cJSON_AddStringToObject(root, "object", r->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)r->created);
    cJSON_AddStringToObject(root, "model", srv->model_id);
    cJSON_AddStringToObject(root, "system_fingerprint", "backtrack-" BT_VERSION);
    cJSON *ch = cJSON_AddArrayToObject(root, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    int32_t n_lp = req_obs_tokens_within(r->obs, r->out_len);
    if (r->chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", json_text(r->out ? r->out : "", r->out ? r->out_len : 0));
    } else {
        cJSON_AddItemToObject(c, "text", json_text(r->out ? r->out : "", r->out ? r->out_len : 0));
    }
    add_logprobs(c, r, 0, n_lp);
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(r));
    add_usage(root, r);
    add_stats(root, r);
    add_trace(root, r, 0, NULL);
    return root;
}

/* What every chunk of r's stream starts with. */
static cJSON *chunk_head(server *srv, const request *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", r->id);
    cJSON_AddStringToObject(root, "object", r->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)r->created);
    cJSON_AddStringToObject(root, "model", srv->model_id);
    cJSON_AddStringToObject(root, "system_fingerprint", "backtrack-" BT_VERSION);
    return root;
}

/* As OpenAI: without stream_options.include_usage no chunk carries usage; with it every
 * chunk has "usage": null and one more chunk, after the finish reason, has the usage and
 * no choices (openai_usage_chunk_json). The statistics ("backtrack") come with the finish
 * reason either way. */
char *openai_chunk_json(server *srv, request *r, const char *text, size_t len, bool final) {
    cJSON *root = chunk_head(srv, r);
    cJSON *ch = cJSON_AddArrayToObject(root, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (r->chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (!r->sent_role) {
            cJSON_AddStringToObject(d, "role", "assistant");
            r->sent_role = true;
        }
        if (len > 0) cJSON_AddItemToObject(d, "content", json_text(text, len));
    } else {
        cJSON_AddItemToObject(c, "text", json_text(text ? text : "", len));
    }
    /* the logprobs of the tokens whose text this chunk completes */
    int32_t upto = req_obs_tokens_within(r->obs, final ? r->out_len : r->sent + len);
    if (upto < r->lp_sent) upto = r->lp_sent;
    add_logprobs(c, r, r->lp_sent, upto);
    r->lp_sent = upto;
    if (final) {
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(r));
        add_stats(root, r);
    } else {
        cJSON_AddNullToObject(c, "finish_reason");
    }
    add_trace(root, r, r->trace_sent, &r->trace_sent);
    if (r->include_usage) cJSON_AddNullToObject(root, "usage");
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return js;
}

char *openai_usage_chunk_json(server *srv, const request *r) {
    cJSON *root = chunk_head(srv, r);
    cJSON_AddArrayToObject(root, "choices");
    add_usage(root, r);
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return js;
}

char *openai_stream_error_json(const char *type, const char *msg) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return js;
}

/* ==== llama-server's /tokenize and /detokenize ================================== */

static bool utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = trace_utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Append s[0..n) to the buffer as the text of a JSON string: valid UTF-8 as it is, each
 * byte that does not start a valid sequence as U+FFFD. With `quoted`: inside quotes and
 * escaped (a NUL as \u0000), as printed JSON; without: for cJSON to escape, so s must
 * hold no NUL (json_text checks). Non-zero: out of memory. */
static int json_text_append(char **out, size_t *len, size_t *cap, const char *s, size_t n,
                            bool quoted) {
    if (quoted && sbuf_append(out, len, cap, "\"", 1) != 0) return -1;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = trace_utf8_seq((const unsigned char *)s + i, n - i);
        int rc;
        if (!k) {
            rc = sbuf_append(out, len, cap, "\xEF\xBF\xBD", 3);
            k = 1;
        } else if (quoted && (c < 0x20 || c == '"' || c == '\\')) { /* escaped as cJSON does */
            char esc[8];
            char two = c == '"' ? '"' : c == '\\' ? '\\' : c == '\b' ? 'b' : c == '\f' ? 'f'
                     : c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
            int w = two ? snprintf(esc, sizeof esc, "\\%c", two) : snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = sbuf_append(out, len, cap, esc, (size_t)w);
        } else {
            rc = sbuf_append(out, len, cap, s + i, k);
        }
        if (rc != 0) return -1;
        i += k;
    }
    return quoted ? sbuf_append(out, len, cap, "\"", 1) : 0;
}

cJSON *json_text(const char *s, size_t n) {
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool nul = n > 0 && memchr(s, 0, n) != NULL;
    if (sbuf_append(&out, &len, &cap, "", 0) != 0 || json_text_append(&out, &len, &cap, s, n, nul) != 0) {
        free(out);
        return NULL;
    }
    /* cJSON's strings end at a NUL: such a text goes out as an item already printed */
    cJSON *j = nul ? cJSON_CreateRaw(out) : cJSON_CreateString(out);
    free(out);
    return j;
}

int json_text_quoted(char **out, size_t *len, size_t *cap, const char *s, size_t n) {
    return json_text_append(out, len, cap, s, n, true);
}

/* A token's piece as llama-server shows it: a string when it is valid UTF-8, else the
 * list of its bytes. */
static cJSON *piece_json(const char *bytes, size_t len) {
    if (utf8_valid(bytes, len)) return json_text(bytes, len);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < len; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)bytes[i]));
    return a;
}

cJSON *openai_tokenize(server *srv, const cJSON *b, verr *e) {
    if (!cJSON_IsObject(b)) return fail(e, NULL, "the body must be a JSON object"), NULL;
    if (!unique_keys(b, NULL, e)) return NULL;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(b, "content");
    if (!cJSON_IsString(content)) return fail(e, "content", "'content' must be a string"), NULL;
    bool add_special = false, parse_special = true, with_pieces = false; /* llama-server's defaults */
    if (!get_bool(b, "add_special", &add_special, e) || !get_bool(b, "parse_special", &parse_special, e) ||
        !get_bool(b, "with_pieces", &with_pieces, e))
        return NULL;
    bt_provider *p = srv->slots[0].provider;
    bt_token *toks = NULL;
    int32_t n = 0;
    if (bt_provider_tokenize(p, content->valuestring, strlen(content->valuestring), add_special,
                             parse_special, &toks, &n) != BT_OK)
        return fail(e, "content", "%s", bt_last_error()), NULL;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tokens");
    for (int32_t i = 0; arr && i < n; i++) {
        if (!with_pieces) {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(toks[i]));
            continue;
        }
        const char *bytes = "";
        size_t len = 0;
        bt_provider_token_text(p, toks[i], &bytes, &len);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", toks[i]);
        cJSON_AddItemToObject(o, "piece", piece_json(bytes, len));
        cJSON_AddItemToArray(arr, o);
    }
    free(toks);
    return root;
}

cJSON *openai_detokenize(server *srv, const cJSON *b, verr *e) {
    if (!cJSON_IsObject(b)) return fail(e, NULL, "the body must be a JSON object"), NULL;
    if (!unique_keys(b, NULL, e)) return NULL;
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(b, "tokens");
    if (!cJSON_IsArray(tokens)) return fail(e, "tokens", "'tokens' must be an array of token ids"), NULL;
    bt_provider *p = srv->slots[0].provider;
    int32_t nv = bt_provider_n_vocab(p);
    char *text = NULL;
    size_t len = 0, cap = 0;
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tokens) {
        double v = cJSON_IsNumber(t) ? t->valuedouble : -1;
        const char *bytes;
        size_t n;
        if (v != floor(v) || v < 0 || v >= nv) {
            free(text);
            return fail(e, "tokens", "tokens[%d] is not a token id of this model (0 to %d)", i, nv - 1), NULL;
        }
        if (bt_provider_token_text(p, (bt_token)v, &bytes, &n) != BT_OK ||
            sbuf_append(&text, &len, &cap, bytes, n) != 0) {
            free(text);
            return fail(e, "tokens", "%s", bt_last_error()), NULL;
        }
        i++;
    }
    cJSON *content = json_text(text ? text : "", len);
    free(text);
    if (!content) return fail(e, NULL, "out of memory"), NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "content", content);
    return root;
}

/* ==== Fuzzing entry ======================================================================= */

int serve_fuzz_request(const char *body, size_t len, bool chat, bt_provider *p) {
    static server srv;
    static slot sl;
    if (!srv.slots) {
        bt_sampler_params d = bt_sampler_default_params();
        srv.args.temp = d.temperature;
        srv.args.top_k = d.top_k;
        srv.args.top_p = d.top_p;
        srv.args.min_p = d.min_p;
        srv.args.seed = d.seed;
        srv.args.n_predict = d.max_new_tokens;
        srv.args.repeat_penalty = d.repeat_penalty;
        srv.args.repeat_last_n = d.repeat_last_n;
        srv.args.max_phrases = CLI_MAX_PHRASES;
        srv.args.max_phrase_bytes = CLI_MAX_PHRASE_BYTES;
        srv.args.max_regexes = CLI_MAX_REGEXES;
        srv.args.max_retries = CLI_MAX_RETRIES;
        srv.slots = &sl;
        srv.n_slots = 1;
    }
    sl.provider = p;
    srv.n_ctx = bt_provider_n_ctx(p);
    cJSON *json = cJSON_ParseWithLength(body, len);
    if (!json) return 0;
    request *r = request_new();
    verr e = {{0}, {0}};
    bool ok = r && openai_parse_request(&srv, json, chat, r, &e);
    cJSON_Delete(json);
    if (r) request_unref(r);
    return ok ? 1 : (e.msg[0] ? 0 : -1); /* -1: refused without saying why */
}

int serve_fuzz_tokens(const char *body, size_t len, bool detokenize, bt_provider *p) {
    static server srv;
    static slot sl;
    srv.slots = &sl;
    srv.n_slots = 1;
    sl.provider = p;
    cJSON *json = cJSON_ParseWithLength(body, len);
    if (!json) return 0;
    verr e = {{0}, {0}};
    cJSON *out = detokenize ? openai_detokenize(&srv, json, &e) : openai_tokenize(&srv, json, &e);
    cJSON_Delete(json);
    if (!out) return e.msg[0] ? 0 : -1;
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    int rc = text && utf8_valid(text, strlen(text)) ? 1 : -1; /* the answer is valid UTF-8 */
    free(text);
    return rc;
}
