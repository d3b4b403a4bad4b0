/*
 * main.c -- the `backtrack` command: load a model, build the strategy, stream the text.
 *
 * Exit codes: 0 success (also when the output pipe closes early, or the step cap ends the
 * text: a warning says so), 1 runtime error (model, context, generation), 2 bad usage.
 */
#include "cli.h"
#include "live.h"
#include "replay.h"
#include "serve.h"
#include "trace.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_verbose;
static live_view *g_live; /* --live drawing on the terminal stderr also writes to */

/* The library's log: warnings and errors always, strategy output (info) always, the
 * llama.cpp log (debug) only with -v. Under --live the held region steps aside for the
 * line and is drawn again below it. */
static void log_to_stderr(void *user, int level, const char *msg) {
    (void)user;
    if (level == BT_LOG_DEBUG && !g_verbose) return;
    live_suspend(g_live);
    if (level >= BT_LOG_WARN)
        fprintf(stderr, "backtrack: %s: %s\n", level == BT_LOG_WARN ? "warning" : "error", msg);
    else
        fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    live_resume(g_live);
}

/* Do stdout and stderr write to the same terminal? */
static bool same_terminal(void) {
    struct stat a, b;
    return isatty(fileno(stdout)) && isatty(fileno(stderr)) && fstat(fileno(stdout), &a) == 0 &&
           fstat(fileno(stderr), &b) == 0 && a.st_rdev == b.st_rdev;
}

typedef struct out_state {
    int        closed; /* stdout went away (closed pipe) */
    live_view *live;   /* --live on a terminal: it draws the text, not on_release */
} out_state;

/* Stream released text to stdout at once; stop generating if nobody reads it. */
static int on_release(void *user, bt_token id, const char *text, size_t len) {
    (void)id;
    out_state *o = user;
    if (o->live) return live_failed(o->live) ? (o->closed = 1) : 0;
    if (len == 0) return 0;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        o->closed = 1;
        return 1;
    }
    return 0;
}

/* Ctrl-C during a generation ends it cleanly at the next step (the text so far printed,
 * the trace closed with its end event), exit status 130; a second Ctrl-C kills. */
static bt_sampler *volatile g_running;
static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig) {
    g_interrupted = 1;
    if (g_running) bt_sampler_cancel(g_running); /* an atomic store: signal-safe */
    signal(sig, SIG_DFL);
}

/* The observers --trace and --live install (either or both). */
typedef struct observers {
    trace_file *trace;
    live_view  *live;
} observers;

static void observe_all(void *user, const bt_event *ev) {
    observers *o = user;
    if (o->trace) trace_file_observe(o->trace, ev);
    if (o->live) live_observe(o->live, ev);
}

/* Read a whole file as a NUL-terminated string. */
static char *read_file(const char *path, size_t *len, char *err, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "cannot open prompt file '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t n = 0, c = 4096;
    char *buf = malloc(c + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, c - n, f)) > 0) {
        n += got;
        if (n == c) {
            char *nb = realloc(buf, 2 * c + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            c *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, cap, "cannot read prompt file '%s'", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "serve") == 0) return serve_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "replay") == 0) return replay_main(argc - 1, argv + 1);
    char err[512] = "";
    cli_args a;
    int rc = cli_parse(argc, argv, &a, err, sizeof err);
    if (rc == 1) {
        cli_usage(stdout);
        cli_args_free(&a);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "backtrack: error: %s\n", err);
        cli_args_free(&a);
        return 2;
    }
    g_verbose = a.verbose;
    bt_log_set(log_to_stderr, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed pipe shows up as a write error instead */

    int status = 1;
    bt_provider *prov = NULL;
    bt_strategy *strat = NULL;
    bt_sampler *smp = NULL;
    observers obs = {0};
    char *file_prompt = NULL, *chat_prompt = NULL;
    const char *prompt = a.prompt;
    size_t prompt_len = prompt ? strlen(prompt) : 0;

    if (a.prompt_file) {
        if (!(file_prompt = read_file(a.prompt_file, &prompt_len, err, sizeof err))) goto fail;
        prompt = file_prompt;
    }
    if (prompt_len == 0 || strlen(prompt) != prompt_len) {
        snprintf(err, sizeof err, prompt_len ? "the prompt contains a NUL byte" : "the prompt is empty");
        goto fail;
    }

    bt_llama_params lp = cli_llama_params(&a);
    if (!(prov = bt_llama_provider_init(&lp))) {
        snprintf(err, sizeof err, "%s", bt_last_error());
        goto fail;
    }
    if (a.chat) {
        bt_chat_message msg = {"user", prompt};
        if (bt_llama_chat_messages(prov, a.chat_template, &msg, 1, &chat_prompt) != BT_OK) {
            snprintf(err, sizeof err, "%s", bt_last_error());
            goto fail;
        }
        prompt = chat_prompt;
        prompt_len = strlen(prompt);
    }
    if (cli_build_strategy(&a, prov, &strat, err, sizeof err) != BT_OK) goto fail;

    bt_sampler_params sp = bt_sampler_default_params();
    sp.temperature = a.temp;
    sp.top_k = a.top_k;
    sp.top_p = a.top_p;
    sp.min_p = a.min_p;
    sp.seed = a.seed;
    sp.max_new_tokens = a.n_predict;
    sp.repeat_penalty = a.repeat_penalty;
    sp.repeat_last_n = a.repeat_last_n;
    sp.frequency_penalty = a.frequency_penalty;
    sp.presence_penalty = a.presence_penalty;
    sp.logit_bias = a.logit_bias;
    sp.n_logit_bias = a.n_logit_bias;
    /* a token id outside this model's vocabulary is bad usage, like any other bad value */
    for (int32_t i = 0; i < a.n_logit_bias; i++)
        if (a.logit_bias[i].token >= bt_provider_n_vocab(prov)) {
            snprintf(err, sizeof err, "--logit-bias: token %d is outside the vocabulary "
                     "(%d tokens)", a.logit_bias[i].token, bt_provider_n_vocab(prov));
            status = 2;
            goto fail;
        }
    if (!(smp = bt_sampler_init(prov, strat, &sp))) {
        snprintf(err, sizeof err, "%s", bt_last_error());
        goto fail;
    }

    if (a.trace_path) {
        trace_info ti = {.prompt = prompt, .model = a.model,
                         .strategy = strat ? strat->iface->name : ""};
        if (!(obs.trace = trace_file_open(a.trace_path, prov, &ti, err, sizeof err))) {
            status = 2;
            goto fail;
        }
    }
    /* --live only where someone watches: plain output into a pipe or a file */
    if (a.live && isatty(fileno(stdout)) && !(obs.live = live_open(stdout, prov, a.live_delay_ms))) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    if (obs.live && same_terminal()) g_live = obs.live;
    if ((obs.trace || obs.live) && bt_sampler_set_observer(smp, observe_all, &obs, 5) != BT_OK) {
        snprintf(err, sizeof err, "%s", bt_last_error());
        goto fail;
    }
    out_state out = {.live = obs.live};
    bt_stats st;
    g_running = smp;
    signal(SIGINT, on_interrupt);
    rc = bt_generate(smp, prompt, prompt_len, on_release, &out, &st);
    signal(SIGINT, SIG_DFL);
    g_running = NULL;
    if (!out.closed) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (a.stats) {
        double gen_ms = st.t_total_ms - st.t_prompt_ms;
        fprintf(stderr,
                "stats: prompt=%d prompt_cached=%d released=%lld discarded=%lld rewinds=%lld "
                "steps=%lld evaluated=%lld eval_calls=%lld prompt_reevaluated=%lld "
                "dead_ends=%lld stop=%s seed=%llu prompt_ms=%.1f total_ms=%.1f tok_per_s=%.1f\n",
                st.n_prompt, st.n_prompt_cached, (long long)st.n_released, (long long)st.n_discarded,
                (long long)st.n_rewinds, (long long)st.n_steps, (long long)st.n_evaluated,
                (long long)st.n_eval_calls, (long long)st.n_prompt_reevaluated,
                (long long)st.n_dead_ends, bt_stop_reason_name(st.stop_reason),
                (unsigned long long)st.seed, st.t_prompt_ms, st.t_total_ms,
                gen_ms > 0 ? (double)st.n_steps * 1000.0 / gen_ms : 0.0);
        for (int i = 0; a.parts && i < a.n_specs; i++) {
            bt_antislop_stats as;
            int32_t reps = bt_replace_count(a.parts[i]);
            if (bt_antislop_get_stats(a.parts[i], &as) == BT_OK)
                fprintf(stderr, "stats: antislop: matches=%lld hard_bans=%lld soft_bans=%lld "
                                "rewound_further=%lld let_through=%lld\n",
                        (long long)as.matches, (long long)as.hard_bans, (long long)as.soft_bans,
                        (long long)as.rewound_further, (long long)as.let_through);
            else if (reps >= 0)
                fprintf(stderr, "stats: replace: replacements=%d\n", reps);
        }
    }
    g_live = NULL;
    live_close(obs.live);
    obs.live = NULL;
    if (rc != BT_OK) {
        snprintf(err, sizeof err, "%s", bt_last_error());
        goto fail;
    }
    if (trace_file_close(obs.trace, err, sizeof err) != 0) {
        obs.trace = NULL;
        goto fail;
    }
    obs.trace = NULL;
    /* the CLI sets no max_length: a length stop is the end of the context */
    if (st.stop_reason == BT_STOP_MAX_LENGTH && (a.stats || a.verbose))
        fprintf(stderr, "backtrack: note: the context is full (-c %d tokens, prompt %d): the "
                        "text ends here\n", bt_provider_n_ctx(prov), st.n_prompt);
    if (st.stop_reason == BT_STOP_STEP_CAP)
        fprintf(stderr, "backtrack: warning: the step cap ended the text early (a strategy "
                        "kept rewinding)\n");
    if (g_interrupted) fprintf(stderr, "backtrack: interrupted\n");
    status = g_interrupted ? 130 : 0;
    goto done;
fail:
    fprintf(stderr, "backtrack: error: %s\n", err);
done:
    g_live = NULL;
    live_close(obs.live);
    trace_file_close(obs.trace, err, sizeof err); /* an error is already being reported */
    bt_sampler_free(smp);
    bt_strategy_free(strat);
    bt_provider_free(prov);
    free(file_prompt);
    free(chat_prompt);
    cli_args_free(&a);
    return status;
}
