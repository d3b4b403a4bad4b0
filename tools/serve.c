/*
 * serve.c -- `backtrack serve`: an OpenAI-compatible HTTP server. This file: the flags,
 * startup, signals and the shutdown sequence.
 *
 *   HTTP (serve_http.c, one thread per connection; serve_openai.c reads the requests and
 *   writes the answers)  -->  bounded queue  -->  N slot workers (serve_slots.c), each a
 *   bt_sampler on one member of a bt_llama_pool (one context, batched decoding)  -->
 *   released text  -->  the connection (JSON, or server-sent events).
 */
#include "serve_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ==== Signals and the log ====================================================== */

/* SIGINT and SIGTERM are blocked in every thread (the mask is set before any starts) and
 * taken by the main thread alone with sigwait: whichever thread the kernel would have
 * picked, the stop cannot be missed. */
static void block_stop_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void log_to_stderr(void *user, int level, const char *msg) {
    int verbose = *(int *)user;
    if (level == BT_LOG_DEBUG && !verbose) return;
    fprintf(stderr, "serve: %s\n", msg);
}

/* ==== Warm-up ================================================================= */

/* One token on each slot, with the slot's -s strategies, before the server listens (as
 * llama-server warms up): what a slot's first generation would otherwise pay lands here
 * instead of in the first requests (a strategy's one-time set-up, such as AntiSlop's
 * folded vocabulary, 17 ms for Llama 3's; the first decodes' page faults). The slot's
 * cache is emptied after it, as llama-server clears its own: the first request of a fresh
 * server starts cold. The prompt is the start of "Hello" that leaves room for the token
 * (none: no warm-up). Only a failure of the model or of memory stops the start (it would
 * fail every request); any other is logged and the server starts. A stop signal (SIGINT,
 * SIGTERM: blocked, as everywhere in the server) that arrives meanwhile ends it between
 * two slots, with *stopped set. */
static int warm_up(server *srv, const sigset_t *stop, bool *stopped, char *err, size_t cap) {
    static const char text[] = "Hello";
    for (int i = 0; i < srv->n_slots; i++) {
        struct timespec zero = {0, 0};
        if (sigtimedwait(stop, NULL, &zero) > 0) {
            *stopped = true;
            return BT_OK;
        }
        slot *sl = &srv->slots[i];
        bt_token *toks = NULL;
        int32_t n = 0;
        int rc = bt_provider_tokenize(sl->provider, text, sizeof text - 1, true, false, &toks, &n);
        int32_t room = bt_provider_n_ctx(sl->provider) - 1;
        if (n > room) n = room;
        if (rc == BT_OK && n > 0) {
            bt_sampler_params sp = bt_sampler_default_params();
            sp.max_new_tokens = 1;
            sp.seed = 0;
            bt_sampler *smp = bt_sampler_init(sl->provider, sl->fallback, &sp);
            rc = smp ? bt_generate_tokens(smp, toks, n, NULL, NULL, NULL) : BT_ERR_NOMEM;
            bt_sampler_free(smp);
            bt_provider_reset(sl->provider); /* a fresh server's slots hold nothing */
        }
        free(toks);
        if (rc == BT_ERR_PROVIDER || rc == BT_ERR_MODEL || rc == BT_ERR_NOMEM) {
            snprintf(err, cap, "slot %d: %s", i, bt_last_error());
            return rc;
        }
        if (rc != BT_OK) {
            fprintf(stderr, "serve: warm-up of slot %d skipped: %s\n", i, bt_last_error());
            return BT_OK; /* the same for every slot */
        }
    }
    return BT_OK;
}

/* ==== Main ==================================================================== */

int serve_main(int argc, char **argv) {
    static server srv;
    char err[512];
    int rc = cli_parse_server(argc, argv, &srv.args, err, sizeof err);
    if (rc == 1) {
        cli_server_usage(stdout);
        cli_args_free(&srv.args);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "backtrack serve: error: %s\n", err);
        cli_args_free(&srv.args);
        return 2;
    }
    /* a strategy that asks a person at a terminal has no one to ask here (as a request's
     * "strategies" are refused it; before: the warm-up opened its menu, or every request
     * failed) */
    for (int i = 0; i < srv.args.n_specs; i++)
        if (srv.args.specs[i].info->terminal) {
            fprintf(stderr, "backtrack serve: error: -s %s needs a person at a terminal; a "
                            "server cannot use it\n", srv.args.specs[i].info->name);
            cli_args_free(&srv.args);
            return 2;
        }
    static int verbose;
    verbose = srv.args.verbose;
    bt_log_set(log_to_stderr, &verbose);
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals;
    block_stop_signals(&stop_signals);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.args.port)};
    if (inet_pton(AF_INET, srv.args.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "backtrack serve: error: --host must be an IPv4 address, not '%s'\n", srv.args.host);
        cli_args_free(&srv.args);
        return 2;
    }

    bt_llama_params lp = cli_llama_params(&srv.args);
    srv.n_slots = srv.args.parallel;
    srv.pool = bt_llama_pool_init(&lp, srv.n_slots);
    if (!srv.pool) {
        fprintf(stderr, "backtrack serve: error: %s\n", bt_last_error());
        cli_args_free(&srv.args);
        return 1;
    }
    srv.n_ctx = bt_provider_n_ctx(bt_llama_pool_provider(srv.pool, 0));
    int32_t nv = bt_provider_n_vocab(bt_llama_pool_provider(srv.pool, 0));
    for (int32_t i = 0; i < srv.args.n_logit_bias; i++)
        if (srv.args.logit_bias[i].token >= nv) {
            fprintf(stderr, "backtrack serve: error: --logit-bias token %d is outside the vocabulary "
                            "(%d tokens)\n", srv.args.logit_bias[i].token, nv);
            bt_llama_pool_free(srv.pool);
            cli_args_free(&srv.args);
            return 2;
        }
    const char *base = strrchr(srv.args.model, '/');
    snprintf(srv.model_id, sizeof srv.model_id, "%s", base ? base + 1 : srv.args.model);
    pthread_mutex_init(&srv.mu, NULL);
    pthread_cond_init(&srv.exit_cv, NULL);
    srv.slots = calloc((size_t)srv.n_slots, sizeof *srv.slots);
    int status = 1;
    int started = 0;
    struct MHD_Daemon *d = NULL;
    if (!srv.slots) goto done;
    for (int i = 0; i < srv.n_slots; i++) {
        slot *sl = &srv.slots[i];
        sl->srv = &srv;
        sl->index = i;
        sl->provider = bt_llama_pool_provider(srv.pool, i);
        pthread_cond_init(&sl->cv, NULL);
        if (srv.args.n_specs > 0 &&
            cli_build_strategy(&srv.args, sl->provider, &sl->fallback, err, sizeof err) != BT_OK) {
            fprintf(stderr, "backtrack serve: error: %s\n", err);
            goto done;
        }
    }
    bool stopped = false;
    if (!srv.args.no_warmup && warm_up(&srv, &stop_signals, &stopped, err, sizeof err) != BT_OK) {
        fprintf(stderr, "backtrack serve: error: warm-up: %s\n", err);
        goto done;
    }
    if (stopped) { /* SIGINT or SIGTERM before it listened: a clean stop */
        fprintf(stderr, "serve: stopped before listening\n");
        status = 0;
        goto done;
    }
    if ((started = slots_start(&srv)) < srv.n_slots) goto done;

    d = http_start(&srv, &addr);
    if (!d) {
        fprintf(stderr, "backtrack serve: error: cannot listen on %s:%d (%s)\n", srv.args.host,
                srv.args.port, strerror(errno));
        goto done;
    }
    fprintf(stderr, "serve: %s on http://%s:%d (%d slots of %d tokens, queue %d)\n", srv.model_id,
            srv.args.host, srv.args.port, srv.n_slots, srv.n_ctx, srv.args.queue);
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {}
    fprintf(stderr, "serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
done:
    /* Stop accepting, cancel what waits and what runs (each running generation ends at its
     * next step), then let the connections finish: their clients get an answer at once.
     * Everything has SHUTDOWN_GRACE_MS: connections then give up waiting, and workers
     * still inside one long step are left behind (the process exits without them). */
    if (d) http_stop_accepting(d);
    if (srv.slots) slots_shutdown(&srv);
    while (d && !serve_grace_over(&srv)) {
        pthread_mutex_lock(&srv.mu);
        int open = srv.n_conns;
        pthread_mutex_unlock(&srv.mu);
        if (open == 0) break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    if (d) http_stop(d);
    if (srv.slots && !slots_join(&srv, started)) {
        fprintf(stderr, "serve: a generation did not end within %d ms of the stop; exiting without it\n",
                SHUTDOWN_GRACE_MS);
        fflush(stderr);
        _exit(status);
    }
    for (int i = 0; srv.slots && i < srv.n_slots; i++) {
        bt_strategy_free(srv.slots[i].fallback);
        if (srv.slots[i].srv) pthread_cond_destroy(&srv.slots[i].cv);
    }
    free(srv.slots);
    pthread_cond_destroy(&srv.exit_cv);
    bt_llama_pool_free(srv.pool);
    cli_args_free(&srv.args);
    return status;
}
