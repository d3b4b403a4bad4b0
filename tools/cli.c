/*
 * cli.c -- parsing of the `backtrack` command line and construction of strategies.
 *
 * Every strategy is described by a table row (name, options with kinds and ranges, and a
 * create function). Adding a strategy to the CLI means adding one row: the parser,
 * validation and the help text follow from it.
 */
#include "cli.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ==== Strategy table ====================================================== */

typedef enum { OPT_INT, OPT_FLOAT, OPT_STR, OPT_LIST, OPT_FLAG,
               OPT_TEXT,     /* like OPT_STR, with \n \t \\ escapes  */
               OPT_TEXT_LIST /* like OPT_LIST, with escapes            */ } opt_kind;

typedef struct cli_opt_def {
    const char *name; /* "--slop" */
    opt_kind    kind;
    double      min, max;
    const char *help;
} cli_opt_def;

typedef struct cli_strategy_def {
    const char        *name;
    const char        *summary;
    const cli_opt_def *opts; /* terminated by a NULL name */
    /* Build the strategy from validated values (vals[i] belongs to opts[i]). */
    bt_strategy *(*create)(const cli_value *vals, bt_provider *p);
} cli_strategy_def;

static bt_strategy *make_noop(const cli_value *v, bt_provider *p) {
    (void)v, (void)p;
    return bt_noop_strategy_init();
}

static bt_strategy *make_debug(const cli_value *v, bt_provider *p) {
    (void)v, (void)p;
    bt_debug_params dp = bt_debug_default_params();
    return bt_debug_strategy_init(&dp);
}

static const cli_opt_def no_opts[] = {{NULL, 0, 0, 0, NULL}};

/* ---- antislop ---- */
enum { AS_SLOP, AS_SLOP_FILE, AS_REGEX, AS_REGEX_FILE, AS_HARD, AS_BUFFER, AS_NO_VARIANTS,
       AS_WHOLE_WORD, AS_SKIP, AS_RETRIES, AS_RETRIES_TOTAL };
static const cli_opt_def antislop_opts[] = {
    [AS_SLOP] = {"--slop", OPT_TEXT_LIST, 0, 0, "TEXT: a phrase to ban (repeatable)"},
    [AS_SLOP_FILE] = {"--slop-file", OPT_LIST, 0, 0,
                      "FILE: phrases, one per line or JSON ([\"a\", ...] or [[\"a\", adj], ...])"},
    [AS_REGEX] = {"--slop-regex", OPT_LIST, 0, 0, "PCRE: a regular expression to ban (repeatable)"},
    [AS_REGEX_FILE] = {"--slop-regex-file", OPT_LIST, 0, 0, "FILE: regular expressions, one per line"},
    [AS_HARD] = {"--slop-hard", OPT_FLAG, 0, 0, "ban outright even where a file gives adjustments"},
    [AS_BUFFER] = {"--keep-index-buffer", OPT_INT, 0, 1e6, "N: extra tokens held back (default 5)"},
    [AS_NO_VARIANTS] = {"--no-variants", OPT_FLAG, 0, 0, "match case-sensitively"},
    [AS_WHOLE_WORD] = {"--whole-word", OPT_FLAG, 0, 0, "a phrase must not match inside a longer word"},
    [AS_SKIP] = {"--skip-tokens", OPT_INT, 0, 1e9, "N: ignore matches starting in the first N tokens"},
    [AS_RETRIES] = {"--max-retries", OPT_INT, 1, 1e6, "N: bans at one position before rewinding further (20)"},
    [AS_RETRIES_TOTAL] = {"--max-retries-total", OPT_INT, 1, 1e8, "N: bans per generation before letting phrases through (1000)"},
    {NULL, 0, 0, 0, NULL},
};

static bt_strategy *make_antislop(const cli_value *v, bt_provider *p) {
    (void)p;
    bt_strategy *s = NULL;
    bt_phrase_list *list = bt_phrase_list_new();
    char **res = NULL;
    int32_t n_res = 0;
    if (!list) return NULL;
    bool hard = v[AS_HARD].set > 0;
    for (int i = 0; i < v[AS_SLOP].set; i++)
        if (bt_phrase_list_add(list, v[AS_SLOP].strs[i], strlen(v[AS_SLOP].strs[i]), 0.0f) != BT_OK)
            goto done;
    for (int i = 0; i < v[AS_SLOP_FILE].set; i++) {
        bt_phrase_list *f = NULL;
        if (bt_phrase_list_load(v[AS_SLOP_FILE].strs[i], hard, &f) != BT_OK) goto done;
        int rc = BT_OK;
        for (int32_t k = 0; k < bt_phrase_list_size(f) && rc == BT_OK; k++) {
            const char *ph = bt_phrase_list_phrase(f, k);
            rc = bt_phrase_list_add(list, ph, strlen(ph), bt_phrase_list_adjustment(f, k));
        }
        bt_phrase_list_free(f);
        if (rc != BT_OK) goto done;
    }
    for (int i = 0; i < v[AS_REGEX_FILE].set; i++) {
        char **more = NULL;
        int32_t n_more = 0;
        if (bt_regex_list_load(v[AS_REGEX_FILE].strs[i], &more, &n_more) != BT_OK) goto done;
        char **grown = realloc(res, (size_t)(n_res + n_more) * sizeof *grown);
        if (!grown) {
            bt_strings_free(more, n_more);
            goto done;
        }
        res = grown;
        memcpy(res + n_res, more, (size_t)n_more * sizeof *more);
        n_res += n_more;
        free(more);
    }
    for (int i = 0; i < v[AS_REGEX].set; i++) {
        char **grown = realloc(res, (size_t)(n_res + 1) * sizeof *grown);
        if (!grown || !(grown[n_res] = strdup(v[AS_REGEX].strs[i]))) {
            if (grown) res = grown;
            goto done;
        }
        res = grown;
        n_res++;
    }
    bt_antislop_params ap = bt_antislop_default_params();
    ap.phrases = list;
    ap.regexes = (const char *const *)res;
    ap.n_regexes = n_res;
    if (v[AS_BUFFER].set) ap.keep_index_buffer = (int32_t)v[AS_BUFFER].num;
    ap.with_variants = v[AS_NO_VARIANTS].set == 0;
    ap.whole_word = v[AS_WHOLE_WORD].set > 0;
    if (v[AS_SKIP].set) ap.skip_tokens = (int32_t)v[AS_SKIP].num;
    if (v[AS_RETRIES].set) ap.max_retries_per_position = (int32_t)v[AS_RETRIES].num;
    if (v[AS_RETRIES_TOTAL].set) ap.max_retries_total = (int32_t)v[AS_RETRIES_TOTAL].num;
    s = bt_antislop_strategy_init(&ap);
done:
    bt_phrase_list_free(list);
    bt_strings_free(res, n_res);
    return s;
}

/* ---- replace ---- */
enum { RP_FIND, RP_REPLACE, RP_MAX, RP_MAX_NEW, RP_SKIP, RP_MAX_PROB };
static const cli_opt_def replace_opts[] = {
    [RP_FIND] = {"--find", OPT_TEXT_LIST, 0, 0, "TEXT: text to find (repeatable)"},
    [RP_REPLACE] = {"--replace", OPT_TEXT, 0, 0, "TEXT: what to put in its place"},
    [RP_MAX] = {"--max-replacements", OPT_INT, 0, 1e9, "N: at most N replacements (default: no limit)"},
    [RP_MAX_NEW] = {"--max-new-tokens-for-replace", OPT_INT, 0, 1e9,
                    "N: replace only while the text is at most N tokens (default: no limit)"},
    [RP_SKIP] = {"--skip-tokens", OPT_INT, 0, 1e9, "N: ignore matches starting in the first N tokens"},
    [RP_MAX_PROB] = {"--max-prob", OPT_FLOAT, 0, 1, "P: replace only if the model gave the found text's "
                                                    "first token p <= P (default 1)"},
    {NULL, 0, 0, 0, NULL},
};

static bt_strategy *make_replace(const cli_value *v, bt_provider *p) {
    (void)p;
    if (!v[RP_FIND].set || !v[RP_REPLACE].set) {
        bt_replace_params none = bt_replace_default_params();
        return bt_replace_strategy_init(&none); /* fails with the reason */
    }
    bt_replace_params rp = bt_replace_default_params();
    rp.find = (const char *const *)v[RP_FIND].strs;
    rp.n_find = v[RP_FIND].set;
    rp.replace = v[RP_REPLACE].strs[0];
    if (v[RP_MAX].set) rp.max_replacements = (int32_t)v[RP_MAX].num;
    if (v[RP_MAX_NEW].set) rp.max_new_tokens_for_replace = (int32_t)v[RP_MAX_NEW].num;
    if (v[RP_SKIP].set) rp.skip_tokens = (int32_t)v[RP_SKIP].num;
    if (v[RP_MAX_PROB].set) rp.max_prob = (float)v[RP_MAX_PROB].num;
    return bt_replace_strategy_init(&rp);
}

/* ---- creative-writing ---- */
enum { CW_TOP_P_FLAT, CW_THRESHOLD, CW_EOS };
static const cli_opt_def creative_opts[] = {
    [CW_TOP_P_FLAT] = {"--top-p-flat", OPT_FLOAT, 1e-6, 1, "P: mass that defines flatness (0.65)"},
    [CW_THRESHOLD] = {"--top-k-threshold-flat", OPT_INT, 1, 1e9,
                      "K: flat when K or more tokens are needed to reach it (9)"},
    [CW_EOS] = {"--eos-penalty", OPT_FLOAT, 0, 1e6, "F: end-of-text probability times F (0.8)"},
    {NULL, 0, 0, 0, NULL},
};

static bt_strategy *make_creative(const cli_value *v, bt_provider *p) {
    (void)p;
    bt_creative_writing_params cp = bt_creative_writing_default_params();
    if (v[CW_TOP_P_FLAT].set) cp.top_p_flat = (float)v[CW_TOP_P_FLAT].num;
    if (v[CW_THRESHOLD].set) cp.top_k_threshold_flat = (int32_t)v[CW_THRESHOLD].num;
    if (v[CW_EOS].set) cp.eos_penalty = (float)v[CW_EOS].num;
    return bt_creative_writing_strategy_init(&cp);
}

/* ---- adaptive-temperature ---- */
static const cli_opt_def adaptive_opts[] = {
    {"--c0", OPT_FLOAT, -1e6, 1e6, "X: coefficient of H^4 (-0.037)"},
    {"--c1", OPT_FLOAT, -1e6, 1e6, "X: coefficient of H^3 (0.481)"},
    {"--c2", OPT_FLOAT, -1e6, 1e6, "X: coefficient of H^2 (-2.3)"},
    {"--c3", OPT_FLOAT, -1e6, 1e6, "X: coefficient of H (4.917)"},
    {"--c4", OPT_FLOAT, -1e6, 1e6, "X: constant (-1.791)"},
    {NULL, 0, 0, 0, NULL},
};

static bt_strategy *make_adaptive(const cli_value *v, bt_provider *p) {
    (void)p;
    bt_adaptive_temperature_params ap = bt_adaptive_temperature_default_params();
    for (int i = 0; i < 5; i++)
        if (v[i].set) ap.coeffs[i] = (float)v[i].num;
    return bt_adaptive_temperature_strategy_init(&ap);
}

/* ---- human-guidance ---- */
enum { HG_K, HG_AUTOPASS };
static const cli_opt_def guidance_opts[] = {
    [HG_K] = {"--menu-k", OPT_INT, 1, 64, "K: tokens in the menu (3)"},
    [HG_AUTOPASS] = {"--min-autopass", OPT_FLOAT, 0, 1, "P: skip the menu when the top p >= P (1.0)"},
    {NULL, 0, 0, 0, NULL},
};

static bt_strategy *make_guidance(const cli_value *v, bt_provider *p) {
    (void)p;
    bt_human_guidance_params hp = bt_human_guidance_default_params();
    if (v[HG_K].set) hp.top_k = (int32_t)v[HG_K].num;
    if (v[HG_AUTOPASS].set) hp.min_autopass = (float)v[HG_AUTOPASS].num;
    return bt_human_guidance_strategy_init(&hp);
}

static const cli_strategy_def strategy_defs[] = {
    {"noop", "plain sampling: release every token at once, never rewind", no_opts, make_noop},
    {"debug", "show the two most probable tokens and their probabilities before each pick",
     no_opts, make_debug},
    {"antislop", "ban phrases: rewind when one appears and ban its first token there",
     antislop_opts, make_antislop},
    {"replace", "find and replace while generating (e.g. </think> -> \"\\nWait, but\")",
     replace_opts, make_replace},
    {"creative-writing", "avoid the most probable token; rewind where the distribution is flat",
     creative_opts, make_creative},
    {"adaptive-temperature", "sharpen the distribution by its entropy", adaptive_opts, make_adaptive},
    {"human-guidance", "choose tokens yourself in a terminal menu (arrows, Enter, q)",
     guidance_opts, make_guidance},
};
#define N_DEFS ((int)(sizeof strategy_defs / sizeof strategy_defs[0]))

/* ==== Helpers ============================================================== */

static int errf(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Strict number parsing: the whole string, finite, within [min, max]. */
static int parse_num(const char *s, double min, double max, bool integer, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v;
    if (integer) {
        long long l = strtoll(s, &end, 10);
        v = (double)l;
    } else {
        v = strtod(s, &end);
    }
    if (errno || *end || !isfinite(v) || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* A copy of s with C escapes \n \t \r \\ \" turned into their bytes (others kept). */
static char *unescape(const char *s) {
    char *out = malloc(strlen(s) + 1), *w = out;
    if (!out) return NULL;
    for (; *s; s++) {
        if (*s != '\\' || !s[1]) {
            *w++ = *s;
            continue;
        }
        switch (*++s) {
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        case 'r': *w++ = '\r'; break;
        case '\\': *w++ = '\\'; break;
        case '"': *w++ = '"'; break;
        default: *w++ = '\\', *w++ = *s;
        }
    }
    *w = '\0';
    return out;
}

static const cli_strategy_def *find_def(const char *name) {
    for (int i = 0; i < N_DEFS; i++)
        if (strcmp(strategy_defs[i].name, name) == 0) return &strategy_defs[i];
    return NULL;
}

bt_llama_params cli_llama_params(const cli_args *a) {
    bt_llama_params lp = bt_llama_default_params();
    lp.model_path = a->model;
    lp.n_ctx = a->n_ctx;
    lp.n_threads = a->n_threads;
    lp.n_gpu_layers = a->n_gpu_layers;
    lp.rpc_servers = a->rpc_servers;
    lp.logits_window = a->logits_window;
    lp.verbose = a->verbose;
    return lp;
}

void cli_args_free(cli_args *a) {
    for (int i = 0; i < a->n_specs; i++)
        for (int j = 0; j < CLI_MAX_OPTS; j++) {
            cli_value *v = &a->specs[i].vals[j];
            if (v->owned)
                for (int k = 0; k < v->set; k++) free(v->strs[k]);
            free(v->strs);
        }
    free(a->specs);
    free(a->parts);
    free(a->logit_bias);
    a->specs = NULL;
    a->parts = NULL;
    a->n_specs = 0;
    a->logit_bias = NULL;
    a->n_logit_bias = 0;
}

/* llama.cpp's -l syntax, TOKEN_ID(+/-)BIAS: "15043+1", "15043-0.5", "15043-inf". The
 * whole string must parse; the bias may be infinite, never NaN. */
static int parse_logit_bias(const char *s, bt_logit_bias *out) {
    if (!s || !(*s >= '0' && *s <= '9')) return -1;
    char *end;
    errno = 0;
    long long id = strtoll(s, &end, 10);
    if (errno || id > INT32_MAX || (*end != '+' && *end != '-')) return -1;
    bool neg = *end++ == '-';
    if (!*end) return -1;
    char *e2;
    errno = 0;
    double b = strtod(end, &e2);
    if (e2 == end || *e2 || isnan(b) || errno == ERANGE || (isfinite(b) && fabs(b) > FLT_MAX))
        return -1;
    out->token = (bt_token)id;
    out->bias = (float)(neg ? -b : b);
    return 0;
}

/* ==== Parsing =============================================================== */

typedef struct gopt {
    const char *s, *l; /* short and long spelling */
    opt_kind    kind;
    double      min, max;
    void       *dst;   /* int32_t*, float*, const char**, int* (flag) */
} gopt;

static int parse(int argc, char **argv, cli_args *a, char *err, size_t cap, bool server) {
    memset(a, 0, sizeof *a);
    a->host = "127.0.0.1";
    a->port = 8080;
    a->parallel = 4;
    a->queue = 64;
    a->max_body_kb = 1024;
    a->slot_similarity = 0.5f; /* llama-server's default */
    bt_sampler_params sp = bt_sampler_default_params();
    bt_llama_params lp = bt_llama_default_params();
    a->n_predict = sp.max_new_tokens;
    a->top_k = sp.top_k;
    a->temp = sp.temperature;
    a->top_p = sp.top_p;
    a->min_p = sp.min_p;
    a->repeat_penalty = sp.repeat_penalty;
    a->repeat_last_n = sp.repeat_last_n;
    a->frequency_penalty = sp.frequency_penalty;
    a->presence_penalty = sp.presence_penalty;
    a->seed = BT_SEED_RANDOM;
    a->logits_window = lp.logits_window;
    double seed_d = -1;
    bool seed_set = false;

    const gopt g[] = {
        {"-m", "--model", OPT_STR, 0, 0, &a->model},
        {"-p", "--prompt", OPT_STR, 0, 0, &a->prompt},
        {"-f", "--file", OPT_STR, 0, 0, &a->prompt_file},
        {"-n", "--n-predict", OPT_INT, 0, 1e9, &a->n_predict},
        {"-c", "--ctx-size", OPT_INT, 0, 1 << 24, &a->n_ctx},
        {"-t", "--threads", OPT_INT, 0, 1024, &a->n_threads},
        {"-ngl", "--n-gpu-layers", OPT_INT, -1, 1e6, &a->n_gpu_layers},
        {NULL, "--rpc", OPT_STR, 0, 0, &a->rpc_servers},
        {NULL, "--temp", OPT_FLOAT, 0, 1e6, &a->temp},
        {NULL, "--top-k", OPT_INT, 0, 1e9, &a->top_k},
        {NULL, "--top-p", OPT_FLOAT, 0, 1, &a->top_p},
        {NULL, "--min-p", OPT_FLOAT, 0, 1, &a->min_p},
        {NULL, "--logits-window", OPT_INT, 0, 4096, &a->logits_window},
        {NULL, "--repeat-last-n", OPT_INT, -1, 1e9, &a->repeat_last_n},
        {NULL, "--frequency-penalty", OPT_FLOAT, -1e9, 1e9, &a->frequency_penalty},
        {NULL, "--presence-penalty", OPT_FLOAT, -1e9, 1e9, &a->presence_penalty},
        {NULL, "--chat", OPT_FLAG, 0, 0, &a->chat},
        {NULL, "--chat-template", OPT_STR, 0, 0, &a->chat_template},
        {NULL, "--stats", OPT_FLAG, 0, 0, &a->stats},
        {NULL, "--trace", OPT_STR, 0, 0, &a->trace_path},
        {NULL, "--live", OPT_FLAG, 0, 0, &a->live},
        {NULL, "--live-delay", OPT_INT, 0, 10000, &a->live_delay_ms},
        {"-v", "--verbose", OPT_FLAG, 0, 0, &a->verbose},
        {"-h", "--help", OPT_FLAG, 0, 0, &a->help},
        /* server only (checked below) */
        {NULL, "--host", OPT_STR, 0, 0, &a->host},
        {NULL, "--port", OPT_INT, 1, 65535, &a->port},
        {NULL, "--parallel", OPT_INT, 1, 64, &a->parallel},
        {NULL, "--queue", OPT_INT, 0, 100000, &a->queue},
        {NULL, "--max-body", OPT_INT, 1, 1 << 20, &a->max_body_kb},
        {NULL, "--slot-prompt-similarity", OPT_FLOAT, 0, 1, &a->slot_similarity},
        {NULL, "--no-cache-prompt", OPT_FLAG, 0, 0, &a->no_cache_prompt},
        {NULL, "--cors-origin", OPT_STR, 0, 0, &a->cors_origin},
    };
    const int ng = (int)(sizeof g / sizeof g[0]);
    const int n_server_only = 8;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;

        if (strcmp(arg, "-s") == 0 || strcmp(arg, "--strategy") == 0) {
            if (!val) return errf(err, cap, "%s needs a strategy name", arg);
            const cli_strategy_def *d = find_def(val);
            if (!d) return errf(err, cap, "unknown strategy '%s' (see -h)", val);
            cli_strategy_spec *ns = realloc(a->specs, (size_t)(a->n_specs + 1) * sizeof *ns);
            if (!ns) return errf(err, cap, "out of memory");
            a->specs = ns;
            memset(&a->specs[a->n_specs], 0, sizeof *ns);
            a->specs[a->n_specs++].def = d;
            i++;
            continue;
        }
        if (strcmp(arg, "--repeat-penalty") == 0) {
            double v;
            if (!val) return errf(err, cap, "%s needs a value", arg);
            if (parse_num(val, 0, 1e9, false, &v) != 0 || !(v > 0) || !isfinite(1.0f / (float)v))
                return errf(err, cap, "--repeat-penalty: '%s' is not a number in (0, 1e+09] "
                            "(1.0: off)", val);
            a->repeat_penalty = (float)v;
            i++;
            continue;
        }
        if (strcmp(arg, "-l") == 0 || strcmp(arg, "--logit-bias") == 0) {
            bt_logit_bias lb;
            if (!val) return errf(err, cap, "%s needs a value", arg);
            if (parse_logit_bias(val, &lb) != 0)
                return errf(err, cap, "%s: '%s' is not TOKEN_ID(+/-)BIAS (e.g. 15043+1, "
                            "15043-inf)", arg, val);
            bt_logit_bias *nb = realloc(a->logit_bias, (size_t)(a->n_logit_bias + 1) * sizeof *nb);
            if (!nb) return errf(err, cap, "out of memory");
            a->logit_bias = nb;
            a->logit_bias[a->n_logit_bias++] = lb;
            i++;
            continue;
        }
        if (strcmp(arg, "--seed") == 0) {
            if (!val || parse_num(val, -1, 1.8e19, true, &seed_d) != 0)
                return errf(err, cap, "--seed needs an integer >= 0 (or -1: random)");
            seed_set = seed_d >= 0;
            if (seed_set) a->seed = strtoull(val, NULL, 10);
            i++;
            continue;
        }

        const gopt *o = NULL;
        int ko = -1;
        for (int k = 0; k < ng && !o; k++)
            if ((g[k].s && strcmp(arg, g[k].s) == 0) || strcmp(arg, g[k].l) == 0) o = &g[ko = k];
        if (o && !server && ko >= ng - n_server_only)
            return errf(err, cap, "%s is an option of `backtrack serve`", arg);
        if (o && server && (o->dst == (void *)&a->prompt || o->dst == (void *)&a->prompt_file ||
                            o->dst == (void *)&a->chat || o->dst == (void *)&a->stats))
            return errf(err, cap, "%s does not apply to `backtrack serve` (requests carry it)", arg);
        if (o) {
            if (o->kind == OPT_FLAG) {
                *(int *)o->dst = 1;
                continue;
            }
            if (!val) return errf(err, cap, "%s needs a value", arg);
            double v;
            if (o->kind == OPT_STR) {
                *(const char **)o->dst = val;
            } else if (parse_num(val, o->min, o->max, o->kind == OPT_INT, &v) != 0) {
                if (o->kind == OPT_INT)
                    return errf(err, cap, "%s: '%s' is not an integer in [%g, %g]", arg, val,
                                o->min, o->max);
                return errf(err, cap, "%s: '%s' is not a number in [%g, %g]", arg, val, o->min,
                            o->max);
            } else if (o->kind == OPT_INT) {
                *(int32_t *)o->dst = (int32_t)v;
            } else {
                *(float *)o->dst = (float)v;
            }
            i++;
            continue;
        }

        /* A strategy option: belongs to the most recent -s. */
        if (arg[0] == '-' && arg[1] == '-') {
            const cli_opt_def *od = NULL;
            int idx = -1;
            if (a->n_specs > 0) {
                const cli_opt_def *opts = a->specs[a->n_specs - 1].def->opts;
                for (int k = 0; opts[k].name; k++)
                    if (strcmp(opts[k].name, arg) == 0) od = &opts[idx = k];
            }
            if (!od) {
                for (int d = 0; d < N_DEFS; d++)
                    for (int k = 0; strategy_defs[d].opts[k].name; k++)
                        if (strcmp(strategy_defs[d].opts[k].name, arg) == 0) {
                            if (a->n_specs == 0)
                                return errf(err, cap, "%s is an option of strategy '%s': put it "
                                            "after -s %s", arg, strategy_defs[d].name,
                                            strategy_defs[d].name);
                            return errf(err, cap, "%s is not an option of strategy '%s' (it "
                                        "belongs to '%s')", arg,
                                        a->specs[a->n_specs - 1].def->name, strategy_defs[d].name);
                        }
                return errf(err, cap, "unknown option '%s' (see -h)", arg);
            }
            cli_value *cv = &a->specs[a->n_specs - 1].vals[idx];
            if (od->kind == OPT_FLAG) {
                cv->set++;
                cv->num = 1;
                continue;
            }
            if (!val) return errf(err, cap, "%s needs a value", arg);
            bool text = od->kind == OPT_TEXT || od->kind == OPT_TEXT_LIST;
            if (od->kind == OPT_STR || od->kind == OPT_LIST || text) {
                if ((od->kind == OPT_STR || od->kind == OPT_TEXT) && cv->set)
                    return errf(err, cap, "%s given twice", arg);
                char **ns = realloc(cv->strs, (size_t)(cv->set + 2) * sizeof *ns);
                if (!ns) return errf(err, cap, "out of memory");
                cv->strs = ns;
                cv->owned = text;
                cv->strs[cv->set] = text ? unescape(val) : argv[i + 1];
                cv->strs[cv->set + 1] = NULL;
                if (!cv->strs[cv->set]) return errf(err, cap, "out of memory");
            } else if (parse_num(val, od->min, od->max, od->kind == OPT_INT, &cv->num) != 0) {
                return errf(err, cap, "%s: '%s' is not %s in [%g, %g]", arg, val,
                            od->kind == OPT_INT ? "an integer" : "a number", od->min, od->max);
            }
            cv->set++;
            i++;
            continue;
        }
        return errf(err, cap, "unexpected argument '%s' (see -h)", arg);
    }
    if (a->help) return 1;
    if (!a->model) return errf(err, cap, "no model given (-m FILE)");
    if (server) return 0;
    if (!a->prompt && !a->prompt_file) return errf(err, cap, "no prompt given (-p TEXT or -f FILE)");
    if (a->prompt && a->prompt_file) return errf(err, cap, "give -p or -f, not both");
    if (!(a->top_p > 0.0f)) return errf(err, cap, "--top-p must be in (0, 1]");
    return 0;
}

int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t cap) {
    return parse(argc, argv, a, err, cap, false);
}

int cli_parse_server(int argc, char **argv, cli_args *a, char *err, size_t cap) {
    return parse(argc, argv, a, err, cap, true);
}

/* ==== Strategy construction ================================================== */

int cli_build_strategy(cli_args *a, bt_provider *p, bt_strategy **out, char *err,
                       size_t cap) {
    *out = NULL;
    if (a->n_specs == 0) {
        *out = bt_noop_strategy_init();
        return *out ? BT_OK : (errf(err, cap, "%s", bt_last_error()), BT_ERR_NOMEM);
    }
    bt_strategy **list = calloc((size_t)a->n_specs, sizeof *list);
    if (!list) return errf(err, cap, "out of memory"), BT_ERR_NOMEM;
    for (int i = 0; i < a->n_specs; i++) {
        list[i] = a->specs[i].def->create(a->specs[i].vals, p);
        if (!list[i]) {
            errf(err, cap, "strategy '%s': %s", a->specs[i].def->name, bt_last_error());
            for (int k = 0; k < i; k++) bt_strategy_free(list[k]);
            free(list);
            return BT_ERR_STRATEGY;
        }
    }
    free(a->parts);
    a->parts = malloc((size_t)a->n_specs * sizeof *a->parts);
    if (a->parts) memcpy(a->parts, list, (size_t)a->n_specs * sizeof *list);
    if (a->n_specs == 1) {
        *out = list[0];
    } else if (!(*out = bt_chain_strategy_init(list, a->n_specs))) {
        errf(err, cap, "%s", bt_last_error());
        free(list);
        free(a->parts);
        a->parts = NULL;
        return BT_ERR_STRATEGY;
    }
    free(list);
    return BT_OK;
}

/* ==== Help =================================================================== */

void cli_server_usage(FILE *f) {
    fprintf(f,
        "usage: backtrack serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel 4]\n"
        "                       [--queue 64] [-c N] [-t N] [-ngl N] [--rpc HOST:PORT,...]\n"
        "                       [--max-body KB]\n"
        "                       [--slot-prompt-similarity 0.5] [--no-cache-prompt]\n"
        "                       [--cors-origin ORIGIN]\n"
        "                       [--chat-template NAME] [-s STRATEGY [its options]]...\n"
        "\n"
        "An OpenAI-compatible HTTP server: GET /health, GET /v1/models, POST /v1/completions,\n"
        "POST /v1/chat/completions (streaming with \"stream\": true). The model is loaded once;\n"
        "--parallel generations run at once on one context (batched decoding), each with -c\n"
        "tokens of context; up to --queue more wait, beyond that requests get 503. Requests\n"
        "choose strategies with \"strategies\": [{\"name\": \"antislop\", \"slops\": [...]}, ...]\n"
        "or KoboldCpp's \"banned_strings\"; the -s strategies apply when a request names none.\n"
        "Sampling defaults (--temp, --top-k, --top-p, --min-p, -n, --seed) apply when a request\n"
        "omits them. Each slot keeps its last conversation in its cache: a request goes to the\n"
        "free slot whose cache holds more than --slot-prompt-similarity of its prompt (the\n"
        "longest such prefix; 0: off), else to the least recently used, and only the rest of\n"
        "its prompt is evaluated (\"cache_prompt\": false, or --no-cache-prompt, turns that off).\n"
        "See README.md, \"The server\".\n");
}

void cli_usage(FILE *f) {
    fprintf(f,
        "usage: backtrack -m MODEL (-p TEXT | -f FILE) [options] [-s STRATEGY [its options]]...\n"
        "       backtrack serve -m MODEL [options]   (an OpenAI-compatible server: serve -h)\n"
        "       backtrack replay TRACE.jsonl -o PAGE.html   (a trace as a page: replay -h)\n"
        "\n"
        "Generate text with a sampling strategy that can undo the tokens it just generated.\n"
        "Text streams to stdout as it becomes final.\n"
        "\n"
        "model and prompt:\n"
        "  -m, --model FILE        GGUF model\n"
        "  -p, --prompt TEXT       prompt\n"
        "  -f, --file FILE         read the prompt from FILE\n"
        "      --chat              wrap the prompt as a user message with the model's chat template\n"
        "      --chat-template NAME  use llama.cpp's built-in template NAME instead (chatml, llama3, ...)\n"
        "  -c, --ctx-size N        context size (default: the model's, at most 4096)\n"
        "  -t, --threads N         threads (default: the CPUs this process may use; 1 for\n"
        "                          models under 64 MiB)\n"
        "  -ngl, --n-gpu-layers N  layers to offload to a GPU (-1: all; needs a GPU build)\n"
        "      --rpc HOST:PORT[,HOST:PORT...]  llama.cpp RPC workers (rpc-server): -ngl puts\n"
        "                          layers on them (needs BT_LLAMA_RPC=1 scripts/get-llama.sh;\n"
        "                          see docs/scale-out.md)\n"
        "      --logits-window N   positions whose logits are kept so a rewind costs no\n"
        "                          model evaluation (default 32; 0: re-decode one token)\n"
        "sampling:\n"
        "  -n, --n-predict N       max new tokens (default 256; 0: until the context is full)\n"
        "      --temp T            temperature >= 0 (default 1.0)\n"
        "      --top-k K           keep the K most probable tokens (default 50; 0: off)\n"
        "      --top-p P           nucleus in (0, 1] (default 1.0: off)\n"
        "      --min-p P           drop tokens below P * the top probability (default 0: off)\n"
        "      --repeat-penalty N  divide the logit of a token among the last --repeat-last-n\n"
        "                          by N (multiply it if negative) (default 1.0: off)\n"
        "      --repeat-last-n N   tokens the penalties look back over, the prompt's included\n"
        "                          (default 64; 0: off; -1: the whole context)\n"
        "      --presence-penalty N  subtract N from a token found there (default 0: off)\n"
        "      --frequency-penalty N subtract N times its count there (default 0: off)\n"
        "  -l, --logit-bias TOKEN_ID(+/-)BIAS  add BIAS to the token's logit (repeatable):\n"
        "                          -l 15043+1 favours token 15043, -l 15043-inf bans it\n"
        "                          (bias and penalties apply to the model's logits, before\n"
        "                          --temp and the strategies, as in llama.cpp)\n"
        "      --seed N            random seed (default: random, shown by --stats)\n"
        "output:\n"
        "      --stats             print a statistics line on stderr at the end\n"
        "      --trace FILE        write every step (draws, rewinds and why, bans, releases) as\n"
        "                          JSON Lines to FILE ('-': stderr); see docs/trace.md and\n"
        "                          `backtrack replay`\n"
        "      --live              on a terminal, show the text a strategy still holds back\n"
        "                          dimmed, and rewinds erasing it (plain output otherwise)\n"
        "      --live-delay MS     pause MS milliseconds per step in --live (to watch it)\n"
        "  -v, --verbose           show llama.cpp's log\n"
        "  -h, --help              this help\n"
        "\n"
        "strategies (-s NAME, repeatable: several form a chain, in order; a strategy's\n"
        "options follow its -s):\n");
    for (int d = 0; d < N_DEFS; d++) {
        fprintf(f, "  %-22s %s\n", strategy_defs[d].name, strategy_defs[d].summary);
        for (int k = 0; strategy_defs[d].opts[k].name; k++)
            fprintf(f, "      %-20s %s\n", strategy_defs[d].opts[k].name, strategy_defs[d].opts[k].help);
    }
}
