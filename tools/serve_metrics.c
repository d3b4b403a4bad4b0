/*
 * serve_metrics.c -- `backtrack serve`'s counters and their Prometheus rendering
 * (GET /metrics, text exposition format 0.0.4). Every counter lives in srv->m and changes
 * only under srv->mu; the gauges (queue depth, busy slots) are read from the scheduler's
 * own state under the same lock, so one scrape is one consistent snapshot.
 */
#include "serve_internal.h"

#include <stdarg.h>
#include <stdio.h>

/* ==== Counting ================================================================ */

static const char *const OUTCOME_NAMES[OUTCOME_N] = {
    [OUTCOME_OK] = "ok",
    [OUTCOME_INVALID] = "invalid",
    [OUTCOME_BUSY] = "busy",
    [OUTCOME_CANCELLED] = "cancelled",
    [OUTCOME_ERROR] = "error",
    [OUTCOME_SHUTDOWN] = "shutdown",
};

void metrics_outcome_locked(server *srv, request_outcome o) {
    srv->m.requests[o]++;
}

void metrics_outcome(server *srv, request_outcome o) {
    pthread_mutex_lock(&srv->mu);
    metrics_outcome_locked(srv, o);
    pthread_mutex_unlock(&srv->mu);
}

void metrics_generation_locked(server *srv, const bt_stats *st) {
    serve_metrics *m = &srv->m;
    m->tokens_released += st->n_released;
    m->tokens_discarded += st->n_discarded;
    m->rewinds += st->n_rewinds;
    m->steps += st->n_steps;
    m->evaluated += st->n_evaluated;
    m->dead_ends += st->n_dead_ends;
    m->prompt_cached += st->n_prompt_cached;
    /* the prompt positions this generation ran through the model */
    m->prompt_evaluated += st->n_prompt - st->n_prompt_cached + st->n_prompt_reevaluated;
}

/* ==== Rendering =============================================================== */

typedef struct text {
    char  *s;
    size_t len, cap;
    bool   oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    if (sbuf_append(&t->s, &t->len, &t->cap, line, (size_t)n) != 0) t->oom = true;
}

/* One metric without labels: its HELP and TYPE lines and its value. */
static void metric(text *t, const char *name, const char *type, const char *help, long long v) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name, v);
}

char *metrics_render(server *srv) {
    text t = {0};
    pthread_mutex_lock(&srv->mu);
    const serve_metrics *m = &srv->m;
    put(&t, "# HELP backtrack_requests_total Generation requests (completions and chat) by "
            "outcome: ok, invalid (400 before running), busy (503, queue full), cancelled "
            "(the client went away), error (failed while running), shutdown (cancelled by "
            "the server's stop).\n# TYPE backtrack_requests_total counter\n");
    for (int o = 0; o < OUTCOME_N; o++)
        put(&t, "backtrack_requests_total{outcome=\"%s\"} %lld\n", OUTCOME_NAMES[o], m->requests[o]);
    metric(&t, "backtrack_completion_tokens_released_total", "counter",
           "Tokens released to clients (final: no strategy can undo them).", m->tokens_released);
    metric(&t, "backtrack_completion_tokens_discarded_total", "counter",
           "Tokens drawn and then removed by rewinds (never sent).", m->tokens_discarded);
    metric(&t, "backtrack_rewinds_total", "counter", "Rewinds (each removed at least one token).",
           m->rewinds);
    metric(&t, "backtrack_steps_total", "counter", "Draws, kept or rewound.", m->steps);
    metric(&t, "backtrack_dead_ends_total", "counter",
           "Steps where the strategies left no candidate (the model's own distribution was used).",
           m->dead_ends);
    metric(&t, "backtrack_prompt_tokens_evaluated_total", "counter",
           "Prompt tokens run through the model.", m->prompt_evaluated);
    metric(&t, "backtrack_prompt_tokens_cached_total", "counter",
           "Prompt tokens taken from a slot's cache instead of evaluated.", m->prompt_cached);
    metric(&t, "backtrack_evaluated_positions_total", "counter",
           "Positions the model evaluated, prompts and re-draws after rewinds included.",
           m->evaluated);
    metric(&t, "backtrack_queue_depth", "gauge", "Requests waiting for a slot.", srv->n_waiting);
    metric(&t, "backtrack_slots_busy", "gauge", "Slots generating.", srv->n_running);
    metric(&t, "backtrack_slots", "gauge", "Slots (--parallel).", srv->n_slots);
    pthread_mutex_unlock(&srv->mu);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}
