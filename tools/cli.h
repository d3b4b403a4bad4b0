/*
 * cli.h -- the `backtrack` command line: option parsing and strategy construction,
 * separate from main() so tests and fuzzers can drive them.
 */
#ifndef BT_CLI_H
#define BT_CLI_H

#include "backtrack.h"

#include <stdio.h>

/* One `-s NAME [options...]` on the command line. */
typedef struct cli_strategy_spec {
    const bt_strategy_info *info; /* from the library's catalog            */
    bt_strategy_options    *opts; /* owned: the values given after -s NAME  */
} cli_strategy_spec;

/* `backtrack serve`'s per-request ceilings by default: the 50,046-phrase slop list (390 KB
 * of phrases) fits. */
#define CLI_MAX_PHRASES      100000
#define CLI_MAX_PHRASE_BYTES (1 << 20)
#define CLI_MAX_REGEXES      64
#define CLI_MAX_RETRIES      100000

typedef struct cli_args {
    const char *model;
    const char *prompt;
    const char *prompt_file;
    const char *chat_template; /* NULL: the model's */
    const char *rpc_servers;   /* --rpc HOST:PORT[,...]: llama.cpp RPC workers (NULL: none) */
    int32_t     n_predict, n_ctx, n_threads, n_gpu_layers, top_k, logits_window;
    float       temp, top_p, min_p;
    /* penalties and logit bias (llama.cpp's flags; bt_sampler_params' fields) */
    float       repeat_penalty, frequency_penalty, presence_penalty;
    int32_t     repeat_last_n;
    bt_logit_bias *logit_bias; /* -l, in the order given (owned; ids checked against the
                                  vocabulary only once the model is loaded)       */
    int32_t     n_logit_bias;
    uint64_t    seed;
    int         chat, stats, verbose, help;
    const char *trace_path;    /* --trace FILE: the generation's events as JSON Lines */
    int         live;          /* --live: held text dimmed, rewinds erased (terminals)  */
    int32_t     live_delay_ms; /* --live-delay */
    /* `backtrack serve` only */
    const char *host;
    int32_t     port, parallel, queue, max_body_kb;
    float       slot_similarity; /* a slot whose cache holds more than this fraction of a
                                    prompt serves it; else the least recently used */
    int         no_cache_prompt; /* requests start cold unless they ask otherwise */
    int         no_warmup;       /* skip the start-up generation on each slot */
    const char *cors_origin;     /* Access-Control-Allow-Origin (NULL: "*") */
    int32_t     max_phrases, max_phrase_bytes, max_regexes, max_retries; /* per request:
                                    phrases (all lists), their bytes, regexes, retry caps */
    cli_strategy_spec *specs;
    int         n_specs;
    bt_strategy **parts; /* after cli_build_strategy: the n_specs strategies built, borrowed
                            (owned by the chain or the returned strategy) */
} cli_args;

/* Parse argv. Returns 0 on success, 1 when -h was given, -1 on a bad argument with a
 * one-line reason in err. *a is always safe to pass to cli_args_free. */
int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t errcap);

/* The same for `backtrack serve` (argv without the word "serve"): no prompt; --host,
 * --port, --parallel, --queue, --max-body, --slot-prompt-similarity and
 * --no-cache-prompt are accepted; -s gives the strategies used
 * when a request names none. */
int cli_parse_server(int argc, char **argv, cli_args *a, char *err, size_t errcap);

void cli_args_free(cli_args *a);

/* The llama.cpp provider's parameters the arguments ask for (model, context, threads,
 * layers, ...), shared by the CLI and the server. Borrows strings from *a. */
bt_llama_params cli_llama_params(const cli_args *a);

/* Build the strategy the arguments ask for (a chain when several -s were given; noop
 * when none). Returns BT_OK or an error code with the reason in err. */
int cli_build_strategy(cli_args *a, bt_provider *p, bt_strategy **out, char *err,
                       size_t errcap);

void cli_usage(FILE *f);
void cli_server_usage(FILE *f);

#endif
