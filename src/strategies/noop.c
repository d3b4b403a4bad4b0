/*
 * noop.c -- the strategy that does nothing: every token is final at once. Plain sampling,
 * and the baseline for benchmarks.
 */
#include "catalog.h"

static const bt_strategy_i noop_iface = {.name = "noop"};

bt_strategy *bt_noop_strategy_init(void) { return bt_strategy_init(&noop_iface, NULL); }

/* ==== In the catalog (catalog.c): options, described once ===================== */

static bt_strategy *noop_create(const bt_strategy_options *o, bt_provider *p) {
    (void)o, (void)p;
    return bt_noop_strategy_init();
}

const bt__strategy_def bt__noop_def = {
    {"noop", "plain sampling: release every token at once, never rewind", NULL, 0, false},
    noop_create,
};
