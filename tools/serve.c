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
#include <time.h>
#include <unistd.h>

/* ==== Signals and the log ====================================================== */

static volatile sig_atomic_t g_quit;
static void on_signal(int sig) {
    (void)sig;
    g_quit = 1;
}

static void log_to_stderr(void *user, int level, const char *msg) {
    int verbose = *(int *)user;
    if (level == BT_LOG_DEBUG && !verbose) return;
    fprintf(stderr, "serve: %s\n", msg);
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
    static int verbose;
    verbose = srv.args.verbose;
    bt_log_set(log_to_stderr, &verbose);
    signal(SIGPIPE, SIG_IGN);

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
    if ((started = slots_start(&srv)) < srv.n_slots) goto done;

    d = http_start(&srv, &addr);
    if (!d) {
        fprintf(stderr, "backtrack serve: error: cannot listen on %s:%d (%s)\n", srv.args.host,
                srv.args.port, strerror(errno));
        goto done;
    }
    fprintf(stderr, "serve: %s on http://%s:%d (%d slots of %d tokens, queue %d)\n", srv.model_id,
            srv.args.host, srv.args.port, srv.n_slots, srv.n_ctx, srv.args.queue);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!g_quit) pause();
    fprintf(stderr, "serve: stopping\n");
    status = 0;
done:
    /* Stop accepting, cancel what waits and what runs (each running generation ends at its
     * next step), then let the connections finish: their clients get an answer at once. */
    if (d) http_stop_accepting(d);
    if (srv.slots) slots_shutdown(&srv);
    /* the connections answer their clients (a 503, or a stream's end) and close; give
     * them a moment before the daemon stops, which drops whatever is still open */
    for (int waited = 0; d && waited < 200; waited++) {
        pthread_mutex_lock(&srv.mu);
        int open = srv.n_conns;
        pthread_mutex_unlock(&srv.mu);
        if (open == 0) break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    if (d) http_stop(d);
    if (srv.slots) slots_join(&srv, started);
    for (int i = 0; srv.slots && i < srv.n_slots; i++) {
        bt_strategy_free(srv.slots[i].fallback);
        if (srv.slots[i].srv) pthread_cond_destroy(&srv.slots[i].cv);
    }
    free(srv.slots);
    bt_llama_pool_free(srv.pool);
    cli_args_free(&srv.args);
    return status;
}
