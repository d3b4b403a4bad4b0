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

/* ==== Strategies ========================================================== */

/* The strategies and their options come from the library's catalog
 * (bt_strategy_catalog_get): each option's CLI flag, kind, range and help are written
 * once, next to the strategy's code, and the server reads the same table for its JSON. */

/* The kinds of the general options (the table in parse()). */
typedef enum { OPT_INT, OPT_FLOAT, OPT_STR, OPT_FLAG } opt_kind;

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
    for (int i = 0; i < a->n_specs; i++) bt_strategy_options_free(a->specs[i].opts);
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

/* The option `arg` of the most recent -s, with its value `val` (NULL: none left).
 * Returns how many arguments after arg it used (0 for a flag, 1 for a value), or -1 with
 * the reason in err: unknown, of another strategy, bad value. Numbers are checked here
 * against the catalog's range (so the message names the flag); texts take the escapes
 * \n \t \r \\ \" (paths do not). */
static int strategy_option(cli_args *a, const char *arg, const char *val, char *err, size_t cap) {
    const bt_option_info *oi = a->n_specs ? bt_option_info_find(a->specs[a->n_specs - 1].info, arg)
                                          : NULL;
    if (oi && strcmp(oi->flag, arg) != 0) oi = NULL; /* by flag only, not by JSON name */
    if (!oi) {
        for (int32_t d = 0; d < bt_strategy_catalog_size(); d++) {
            const bt_strategy_info *si = bt_strategy_catalog_get(d);
            const bt_option_info *other = bt_option_info_find(si, arg);
            if (!other || strcmp(other->flag, arg) != 0) continue;
            if (a->n_specs == 0)
                return errf(err, cap, "%s is an option of strategy '%s': put it after -s %s", arg,
                            si->name, si->name);
            return errf(err, cap, "%s is not an option of strategy '%s' (it belongs to '%s')",
                        arg, a->specs[a->n_specs - 1].info->name, si->name);
        }
        return errf(err, cap, "unknown option '%s' (see -h)", arg);
    }
    bt_strategy_options *o = a->specs[a->n_specs - 1].opts;
    if (oi->kind == BT_OPTION_BOOL) { /* the flag says: not the default */
        if (bt_strategy_options_set(o, oi->name, oi->def != 0 ? 0 : 1) != BT_OK)
            return errf(err, cap, "%s", bt_last_error());
        return 0;
    }
    if (!val) return errf(err, cap, "%s needs a value", arg);
    if (oi->kind == BT_OPTION_INT || oi->kind == BT_OPTION_FLOAT) {
        double v;
        bool integer = oi->kind == BT_OPTION_INT;
        if (parse_num(val, oi->min, oi->max, integer, &v) != 0)
            return errf(err, cap, "%s: '%s' is not %s in [%g, %g]", arg, val,
                        integer ? "an integer" : "a number", oi->min, oi->max);
        if (bt_strategy_options_set(o, oi->name, v) != BT_OK)
            return errf(err, cap, "%s", bt_last_error());
        return 1;
    }
    if (oi->kind == BT_OPTION_TEXT && bt_strategy_options_count(o, oi->name) > 0)
        return errf(err, cap, "%s given twice", arg);
    char *text = oi->kind == BT_OPTION_PATH_LIST ? strdup(val) : unescape(val);
    if (!text) return errf(err, cap, "out of memory");
    int rc = bt_strategy_options_add(o, oi->name, text, strlen(text), 0.0f);
    free(text);
    if (rc != BT_OK) return errf(err, cap, "%s: %s", arg, bt_last_error());
    return 1;
}

/* ==== Parsing =============================================================== */

typedef struct gopt {
    const char *s, *l; /* short and long spelling */
    opt_kind    kind;
    double      min, max;
    void       *dst;   /* int32_t*, float*, const char**, int* (flag) */
    bool        server_only; /* an option of `backtrack serve` alone */
} gopt;

static int parse(int argc, char **argv, cli_args *a, char *err, size_t cap, bool server) {
    memset(a, 0, sizeof *a);
    a->host = "127.0.0.1";
    a->port = 8080;
    a->parallel = 4;
    a->queue = 64;
    a->max_body_kb = 1024;
    a->slot_similarity = 0.5f; /* llama-server's default */
    a->max_phrases = CLI_MAX_PHRASES;
    a->max_phrase_bytes = CLI_MAX_PHRASE_BYTES;
    a->max_regexes = CLI_MAX_REGEXES;
    a->max_retries = CLI_MAX_RETRIES;
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
        {"-m", "--model", OPT_STR, 0, 0, &a->model, false},
        {"-p", "--prompt", OPT_STR, 0, 0, &a->prompt, false},
        {"-f", "--file", OPT_STR, 0, 0, &a->prompt_file, false},
        {"-n", "--n-predict", OPT_INT, 0, 1e9, &a->n_predict, false},
        {"-c", "--ctx-size", OPT_INT, 0, 1 << 24, &a->n_ctx, false},
        {"-t", "--threads", OPT_INT, 0, 1024, &a->n_threads, false},
        {"-ngl", "--n-gpu-layers", OPT_INT, -1, 1e6, &a->n_gpu_layers, false},
        {NULL, "--rpc", OPT_STR, 0, 0, &a->rpc_servers, false},
        {NULL, "--temp", OPT_FLOAT, 0, 1e6, &a->temp, false},
        {NULL, "--top-k", OPT_INT, 0, 1e9, &a->top_k, false},
        {NULL, "--top-p", OPT_FLOAT, 0, 1, &a->top_p, false},
        {NULL, "--min-p", OPT_FLOAT, 0, 1, &a->min_p, false},
        {NULL, "--logits-window", OPT_INT, 0, 4096, &a->logits_window, false},
        {NULL, "--repeat-last-n", OPT_INT, -1, 1e9, &a->repeat_last_n, false},
        {NULL, "--frequency-penalty", OPT_FLOAT, -1e9, 1e9, &a->frequency_penalty, false},
        {NULL, "--presence-penalty", OPT_FLOAT, -1e9, 1e9, &a->presence_penalty, false},
        {NULL, "--chat", OPT_FLAG, 0, 0, &a->chat, false},
        {NULL, "--chat-template", OPT_STR, 0, 0, &a->chat_template, false},
        {NULL, "--stats", OPT_FLAG, 0, 0, &a->stats, false},
        {NULL, "--trace", OPT_STR, 0, 0, &a->trace_path, false},
        {NULL, "--live", OPT_FLAG, 0, 0, &a->live, false},
        {NULL, "--live-delay", OPT_INT, 0, 10000, &a->live_delay_ms, false},
        {"-v", "--verbose", OPT_FLAG, 0, 0, &a->verbose, false},
        {"-h", "--help", OPT_FLAG, 0, 0, &a->help, false},
        /* `backtrack serve` only: the command line refuses them with a clear error */
        {NULL, "--host", OPT_STR, 0, 0, &a->host, true},
        {NULL, "--port", OPT_INT, 1, 65535, &a->port, true},
        {NULL, "--parallel", OPT_INT, 1, 64, &a->parallel, true},
        {NULL, "--queue", OPT_INT, 0, 100000, &a->queue, true},
        {NULL, "--max-body", OPT_INT, 1, 1 << 20, &a->max_body_kb, true},
        {NULL, "--slot-prompt-similarity", OPT_FLOAT, 0, 1, &a->slot_similarity, true},
        {NULL, "--no-cache-prompt", OPT_FLAG, 0, 0, &a->no_cache_prompt, true},
        {NULL, "--no-warmup", OPT_FLAG, 0, 0, &a->no_warmup, true},
        {NULL, "--cors-origin", OPT_STR, 0, 0, &a->cors_origin, true},
        {NULL, "--max-phrases", OPT_INT, 0, 1e8, &a->max_phrases, true},
        {NULL, "--max-phrase-bytes", OPT_INT, 0, 1 << 30, &a->max_phrase_bytes, true},
        {NULL, "--max-regexes", OPT_INT, 0, 1e5, &a->max_regexes, true},
        {NULL, "--max-retries-ceiling", OPT_INT, 1, 1e8, &a->max_retries, true},
    };
    const int ng = (int)(sizeof g / sizeof g[0]);

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;

        if (strcmp(arg, "-s") == 0 || strcmp(arg, "--strategy") == 0) {
            if (!val) return errf(err, cap, "%s needs a strategy name", arg);
            const bt_strategy_info *si = bt_strategy_info_find(val);
            if (!si) return errf(err, cap, "unknown strategy '%s' (see -h)", val);
            cli_strategy_spec *ns = realloc(a->specs, (size_t)(a->n_specs + 1) * sizeof *ns);
            if (!ns) return errf(err, cap, "out of memory");
            a->specs = ns;
            a->specs[a->n_specs] = (cli_strategy_spec){si, bt_strategy_options_new(si)};
            if (!a->specs[a->n_specs++].opts) return errf(err, cap, "out of memory");
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
        for (int k = 0; k < ng && !o; k++)
            if ((g[k].s && strcmp(arg, g[k].s) == 0) || strcmp(arg, g[k].l) == 0) o = &g[k];
        if (o && !server && o->server_only)
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
            int rc = strategy_option(a, arg, val, err, cap);
            if (rc < 0) return -1;
            i += rc;
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
        list[i] = bt_strategy_create(a->specs[i].opts, p);
        if (!list[i]) {
            errf(err, cap, "strategy '%s': %s", a->specs[i].info->name, bt_last_error());
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
        "                       [--no-warmup]\n"
        "                       [--cors-origin ORIGIN] [--max-phrases 100000]\n"
        "                       [--max-phrase-bytes 1048576] [--max-regexes 64]\n"
        "                       [--max-retries-ceiling 100000]\n"
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
        "A request is refused (400) beyond --max-phrases phrases or --max-phrase-bytes bytes\n"
        "of them (all its lists together), --max-regexes regexes, or retry caps\n"
        "(max_retries, max_retries_total) above --max-retries-ceiling. GET /metrics (Prometheus),\n"
        "POST /tokenize and /detokenize (llama-server's) are served too. Before it listens,\n"
        "each slot generates one token with the -s strategies (a warm-up, as llama-server's;\n"
        "--no-warmup skips it).\n"
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
    for (int32_t d = 0; d < bt_strategy_catalog_size(); d++) {
        const bt_strategy_info *si = bt_strategy_catalog_get(d);
        fprintf(f, "  %-22s %s\n", si->name, si->summary);
        for (int32_t k = 0; k < si->n_options; k++) {
            const bt_option_info *oi = &si->options[k];
            char flag[64];
            snprintf(flag, sizeof flag, "%s%s%s", oi->flag, oi->arg ? " " : "", oi->arg ? oi->arg : "");
            fprintf(f, "      %-26s %s\n", flag, oi->help);
        }
    }
}
