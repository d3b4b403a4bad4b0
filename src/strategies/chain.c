/*
 * chain.c -- several strategies as one, in list order (the original's ChainStrategy).
 *
 * Keep index: the minimum over all (a token is final only when every strategy agrees).
 * Backtrack: asked in order; the first that wants to rewind wins and the rest are not
 * asked at this token. Every member hears of the rewind through its on_rewind.
 */
#include "../internal.h"

#include <stdlib.h>

typedef struct chain {
    bt_strategy **items;
    int32_t       n;
} chain;

#define EACH(ch, it) for (int32_t i_ = 0; i_ < (ch)->n && ((it) = (ch)->items[i_], 1); i_++)

static int chain_begin(bt_strategy *s, const bt_view *v) {
    chain *ch = s->ctx;
    bt_strategy *it;
    EACH(ch, it) {
        if (it->iface->begin) {
            int rc = it->iface->begin(it, v);
            if (rc != BT_OK) return rc;
        }
    }
    return BT_OK;
}

static void chain_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->on_logits) it->iface->on_logits(it, v, logits);
}

/* chain_on_logits as bans, when every member's on_logits is one (see chain_ext). */
static void chain_bans_here(bt_strategy *s, const bt_view *v, void (*ban)(void *, bt_token),
                            void *sink) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->on_logits) it->ext_->bans_here(it, v, ban, sink);
}

static const bt__strategy_ext chain_ext = {.bans_here = chain_bans_here};

static void chain_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->on_probs) it->iface->on_probs(it, v, c);
}

static void chain_on_next_token(bt_strategy *s, const bt_view *v, const bt_candidates *c) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->on_next_token) it->iface->on_next_token(it, v, c);
}

static int32_t chain_backtrack(bt_strategy *s, const bt_view *v) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) {
        if (!it->iface->backtrack) continue;
        /* observed: the member asked, with no reason unless it notes its own (a note
         * from a member that then returned 0 must not stick to the next one's rewind) */
        if (v->obs_) bt_view_note_rewind(v, it, "%s", "");
        int32_t n = it->iface->backtrack(it, v);
        if (n > 0) return n; /* only the first rewind at a token counts */
    }
    return 0;
}

static void chain_on_rewind(bt_strategy *s, const bt_view *v, int32_t n) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->on_rewind) it->iface->on_rewind(it, v, n);
}

static int32_t chain_keep_index(bt_strategy *s, const bt_view *v) {
    int32_t k = v->n_tokens;
    bt_strategy *it;
    EACH((chain *)s->ctx, it) {
        if (!it->iface->keep_index) continue;
        int32_t ki = it->iface->keep_index(it, v);
        if (ki < k) k = ki;
    }
    return k;
}

static void chain_reset(bt_strategy *s) {
    bt_strategy *it;
    EACH((chain *)s->ctx, it) if (it->iface->reset) it->iface->reset(it);
}

static void chain_free(bt_strategy *s) {
    chain *ch = s->ctx;
    for (int32_t i = 0; i < ch->n; i++) bt_strategy_free(ch->items[i]);
    free(ch->items);
    free(ch);
}

static const bt_strategy_i chain_iface = {
    .name = "chain",
    .begin = chain_begin,
    .on_logits = chain_on_logits,
    .on_probs = chain_on_probs,
    .on_next_token = chain_on_next_token,
    .backtrack = chain_backtrack,
    .on_rewind = chain_on_rewind,
    .keep_index = chain_keep_index,
    .reset = chain_reset,
    .free = chain_free,
};

bt_strategy *bt_chain_strategy_init(bt_strategy **strategies, int32_t n) {
    chain *ch = NULL;
    if (!strategies || n <= 0) {
        bt__fail(BT_ERR_INVALID_ARG, "a chain needs at least one strategy");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        if (!strategies[i]) {
            bt__fail(BT_ERR_INVALID_ARG, "chain entry %d is NULL", i);
            goto fail;
        }
    ch = calloc(1, sizeof *ch);
    if (!ch || !(ch->items = malloc((size_t)n * sizeof *ch->items))) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) ch->items[i] = strategies[i];
    ch->n = n;
    bt_strategy *s = bt_strategy_init(&chain_iface, ch);
    if (s) {
        bool bans = true; /* every on_logits of the chain is a list of bans */
        for (int32_t i = 0; i < n; i++)
            if (strategies[i]->iface->on_logits && !bt__has_bans_here(strategies[i])) bans = false;
        if (bans) s->ext_ = &chain_ext;
        return s;
    }
    ch->n = 0; /* fall through: free the inputs once, below */
fail:
    if (ch) {
        free(ch->items);
        free(ch);
    }
    if (strategies)
        for (int32_t i = 0; i < n; i++) bt_strategy_free(strategies[i]);
    return NULL;
}
