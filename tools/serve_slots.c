/*
 * serve_slots.c -- `backtrack serve`'s scheduling: requests, the bounded queue, the slots
 * and their worker threads, cancellation, and the text a generation releases (cut at stop
 * strings).
 *
 *   enqueue  -->  queue (oldest first)  -->  dispatch: the idle slot caching most of the
 *   prompt  -->  worker: one bt_sampler on the slot's provider  -->  on_release: r->out
 *
 * A slot is freed before its client hears the answer, so that the client's next turn finds
 * the slot's cache idle.
 */
#include "serve_internal.h"

#include <stdio.h>
#include <time.h>

/* ==== Requests ============================================================= */

request *request_new(void) {
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->slot = -1;
    r->logprobs = -1; /* none unless asked */
    static unsigned long long counter;
    snprintf(r->id, sizeof r->id, "cmpl-%llx%04llx", (unsigned long long)time(NULL),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) & 0xffff);
    r->created = (long long)time(NULL);
    return r;
}

void request_unref(request *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    free(r->prompt);
    free(r->toks);
    free(r->bias);
    req_obs_free(r->obs);
    bt_strategy_free(r->strategy);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->out);
    free(r->wire);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Cancel a request: it is skipped if not started, and a running generation ends at its
 * next step even when its strategy holds all text back. Caller holds r->mu. */
void request_cancel_locked(request *r) {
    r->cancelled = true;
    if (r->smp) bt_sampler_cancel(r->smp);
}

/* ==== Released text, stop strings ============================================ */

/* The first place at or after `from` where needle[0..m) starts in hay[0..n), or n. By
 * length: the generated text may hold NUL bytes (strstr would stop at the first). */
static size_t find_bytes(const char *hay, size_t n, size_t from, const char *needle, size_t m) {
    if (m == 0 || m > n) return n;
    for (size_t i = from; i + m <= n; i++) {
        const char *p = memchr(hay + i, needle[0], n - m + 1 - i);
        if (!p) return n;
        i = (size_t)(p - hay);
        if (memcmp(p, needle, m) == 0) return i;
    }
    return n;
}

/* After new text: cut at a stop string if one appeared; otherwise make visible all but
 * the longest tail that could still grow into one. */
static void check_stops(request *r, size_t old_len) {
    size_t from = old_len >= r->max_stop ? old_len - r->max_stop + 1 : 0;
    size_t cut = r->out_len;
    for (int i = 0; i < r->n_stop; i++) {
        size_t at = find_bytes(r->out, r->out_len, from, r->stop[i], strlen(r->stop[i]));
        if (at < cut) cut = at;
    }
    if (cut < r->out_len) {
        r->out_len = cut;
        r->out[cut] = '\0';
        r->stop_hit = true;
        r->visible = cut;
        return;
    }
    size_t hold = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= r->out_len && memcmp(r->out + r->out_len - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    r->visible = r->out_len - hold;
}

static int on_release(void *user, bt_token id, const char *text, size_t len) {
    (void)id;
    request *r = user;
    pthread_mutex_lock(&r->mu);
    if (len > 0 && !r->stop_hit) {
        size_t old = r->out_len;
        if (sbuf_append(&r->out, &r->out_len, &r->out_cap, text, len) != 0) r->cancelled = true;
        else check_stops(r, old);
    }
    bool stop = r->cancelled || r->stop_hit;
    /* a stream sends each piece as it comes; a whole answer waits only for the end (a
     * wake-up per token would cost its connection thread a context switch each) */
    if (r->stream) pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return stop;
}

/* ==== Slot workers ============================================================ */

/* The idle slot for r: the one whose cache holds the longest prefix of r's prompt
 * (llama-server's slot similarity), else the least recently used. -1 if all are busy.
 * Caller holds srv->mu; an idle slot's provider is not touched by its worker. */
static int pick_slot(server *srv, const request *r) {
    int best = -1;
    int32_t best_len = 0;
    /* a slot counts as similar only above the threshold (strictly, as llama-server), so
     * that a new conversation sharing a system prompt with a cached one does not evict it
     * while another slot is free; a threshold of 0 turns similarity off (LRU only) */
    double min_len = (double)srv->args.slot_similarity * r->n_prompt;
    bool similar = r->sp.cache_prompt && srv->args.slot_similarity > 0.0f;
    for (int i = 0; i < srv->n_slots; i++) {
        slot *sl = &srv->slots[i];
        if (sl->req) continue;
        int32_t len = similar ? bt_provider_cached_prefix(sl->provider, r->toks, r->n_prompt) : 0;
        if (len <= min_len) len = 0;
        if (best < 0 || len > best_len ||
            (len == best_len && sl->last_used < srv->slots[best].last_used)) {
            best = i;
            best_len = len;
        }
    }
    return best;
}

/* Hand queued requests to idle slots, oldest request first. Caller holds srv->mu. */
static void dispatch(server *srv) {
    while (srv->head && !srv->stop) {
        int i = pick_slot(srv, srv->head);
        if (i < 0) return;
        request *r = srv->head;
        srv->head = r->next;
        if (!srv->head) srv->tail = NULL;
        srv->n_waiting--;
        srv->n_running++;
        srv->slots[i].req = r;
        pthread_cond_signal(&srv->slots[i].cv);
    }
}

static void *worker(void *arg) {
    slot *sl = arg;
    server *srv = sl->srv;
    for (;;) {
        pthread_mutex_lock(&srv->mu);
        while (!srv->stop && !sl->req) pthread_cond_wait(&sl->cv, &srv->mu);
        if (!sl->req) { /* stopping, nothing assigned (assigned work is finished first) */
            sl->exited = true;
            pthread_cond_broadcast(&srv->exit_cv);
            pthread_mutex_unlock(&srv->mu);
            return NULL;
        }
        request *r = sl->req;
        pthread_mutex_unlock(&srv->mu);

        int rc = BT_OK;
        bt_stats st;
        memset(&st, 0, sizeof st);
        char err[256] = "";
        bt_sampler *smp = bt_sampler_init(sl->provider, r->strategy ? r->strategy : sl->fallback, &r->sp);
        if (!smp) {
            rc = BT_ERR_INVALID_ARG;
            snprintf(err, sizeof err, "%s", bt_last_error());
        } else if (r->logprobs >= 0 || r->trace) { /* logprobs and the trace: an observer */
            int32_t cap = bt_provider_n_ctx(sl->provider) - r->n_prompt;
            req_obs *o = req_obs_new(&r->mu, sl->provider, r->logprobs, r->trace, cap);
            int32_t n_top = r->logprobs > 0 ? r->logprobs : 0;
            if (r->trace && n_top < 5) n_top = 5; /* the replay page shows alternatives */
            if (!o || bt_sampler_set_observer(smp, req_obs_observe, o, n_top) != BT_OK) {
                req_obs_free(o);
                rc = BT_ERR_NOMEM;
                snprintf(err, sizeof err, "out of memory for this request's logprobs or trace");
                bt_sampler_free(smp);
                smp = NULL;
            } else {
                pthread_mutex_lock(&r->mu);
                r->obs = o;
                pthread_mutex_unlock(&r->mu);
            }
        }
        /* published before the cancelled check: a cancel from now on reaches the sampler */
        pthread_mutex_lock(&r->mu);
        bool skip = r->cancelled;
        r->started = true;
        r->slot = sl->index;
        r->smp = smp;
        pthread_mutex_unlock(&r->mu);
        if (smp && !skip) {
            rc = bt_generate_tokens(smp, r->toks, r->n_prompt, on_release, r, &st);
            if (rc != BT_OK) snprintf(err, sizeof err, "%s", bt_last_error());
        }
        pthread_mutex_lock(&r->mu);
        r->smp = NULL;
        bool cancelled = r->cancelled, shutdown = r->shutdown;
        pthread_mutex_unlock(&r->mu);
        bt_sampler_free(smp);
        request_outcome outcome = shutdown ? OUTCOME_SHUTDOWN
                                : rc != BT_OK ? OUTCOME_ERROR
                                : cancelled ? OUTCOME_CANCELLED : OUTCOME_OK;

        /* The slot is free before the client hears the answer: its next turn, sent the
         * moment this one ends, must find this slot's cache idle. */
        pthread_mutex_lock(&srv->mu);
        sl->req = NULL;
        if (!skip) sl->last_used = ++srv->clock; /* a skipped request left the cache as it was */
        srv->n_running--;
        srv->n_served++;
        srv->n_cancelled += cancelled;
        metrics_outcome_locked(srv, outcome);
        metrics_generation_locked(srv, &st);
        dispatch(srv);
        pthread_mutex_unlock(&srv->mu);

        pthread_mutex_lock(&r->mu);
        r->rc = rc;
        r->st = st;
        snprintf(r->errmsg, sizeof r->errmsg, "%s", err);
        r->visible = r->out_len;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        request_unref(r);
    }
}

/* Queue a request; ENQ_FULL when the queue is full, ENQ_STOPPING once the server stops
 * (a request that arrives then on a connection opened before would wait in a queue that
 * nothing serves until the grace period ran out). */
enqueue_result slots_enqueue(server *srv, request *r) {
    pthread_mutex_lock(&srv->mu);
    if (srv->stop) {
        metrics_outcome_locked(srv, OUTCOME_SHUTDOWN);
        pthread_mutex_unlock(&srv->mu);
        return ENQ_STOPPING;
    }
    int free_slots = srv->n_slots - srv->n_running - srv->n_waiting;
    if (free_slots <= 0 && srv->n_waiting >= srv->args.queue) {
        metrics_outcome_locked(srv, OUTCOME_BUSY);
        pthread_mutex_unlock(&srv->mu);
        return ENQ_FULL;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    r->next = NULL;
    if (srv->tail) srv->tail->next = r;
    else srv->head = r;
    srv->tail = r;
    srv->n_waiting++;
    dispatch(srv);
    pthread_mutex_unlock(&srv->mu);
    return ENQ_OK;
}

void slots_withdraw(server *srv, request *r) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) request_cancel_locked(r);
    pthread_mutex_unlock(&r->mu);
    /* srv->mu first (the lock order), then find r among the waiting: a worker that took it
     * took it out of the queue under this same lock; after the stop, slots_shutdown and
     * slots_join own what is queued */
    bool found = false;
    pthread_mutex_lock(&srv->mu);
    for (request **pp = &srv->head, *prev = NULL; !srv->stop && *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            if (srv->tail == r) srv->tail = prev;
            r->next = NULL;
            srv->n_waiting--;
            srv->n_served++;
            srv->n_cancelled++;
            metrics_outcome_locked(srv, OUTCOME_CANCELLED);
            found = true;
            break;
        }
    pthread_mutex_unlock(&srv->mu);
    if (!found) return; /* running (it ends at its next step), finished, or never queued */
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    request_unref(r); /* the queue's reference */
}

/* ==== Start and stop ========================================================== */

long long serve_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool serve_grace_over(server *srv) {
    long long d = atomic_load(&srv->stop_deadline_ms);
    return d > 0 && serve_now_ms() >= d;
}

int slots_start(server *srv) {
    int started = 0;
    for (; started < srv->n_slots; started++)
        if (pthread_create(&srv->slots[started].thread, NULL, worker, &srv->slots[started]) != 0)
            break;
    return started;
}

void slots_shutdown(server *srv) {
    pthread_mutex_lock(&srv->mu);
    srv->stop = true;
    atomic_store(&srv->stop_deadline_ms, serve_now_ms() + SHUTDOWN_GRACE_MS);
    for (request *r = srv->head; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        r->cancelled = r->done = r->shutdown = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        metrics_outcome_locked(srv, OUTCOME_SHUTDOWN);
    }
    for (int i = 0; i < srv->n_slots; i++)
        if (srv->slots[i].req) {
            request *r = srv->slots[i].req;
            pthread_mutex_lock(&r->mu);
            request_cancel_locked(r);
            r->shutdown = true;
            pthread_mutex_unlock(&r->mu);
        }
    pthread_mutex_unlock(&srv->mu);
}

bool slots_join(server *srv, int started) {
    long long deadline = atomic_load(&srv->stop_deadline_ms);
    if (deadline <= 0) deadline = serve_now_ms() + SHUTDOWN_GRACE_MS;
    pthread_mutex_lock(&srv->mu);
    srv->stop = true;
    for (int i = 0; i < started; i++) pthread_cond_signal(&srv->slots[i].cv);
    for (;;) {
        int running = 0;
        for (int i = 0; i < started; i++) running += !srv->slots[i].exited;
        long long left = deadline - serve_now_ms();
        if (running == 0 || left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = ts.tv_nsec + (left < 100 ? left : 100) * 1000000LL;
        ts.tv_sec += ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        pthread_cond_timedwait(&srv->exit_cv, &srv->mu, &ts);
    }
    bool all = true;
    for (int i = 0; i < started; i++) all = all && srv->slots[i].exited;
    pthread_mutex_unlock(&srv->mu);
    if (!all) return false;
    for (int i = 0; i < started; i++) pthread_join(srv->slots[i].thread, NULL);
    while (srv->head) {
        request *r = srv->head;
        srv->head = r->next;
        request_unref(r);
    }
    srv->tail = NULL;
    return true;
}
