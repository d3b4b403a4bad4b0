/*
 * noop.c -- the strategy that does nothing: every token is final at once. Plain sampling,
 * and the baseline for benchmarks.
 */
#include "../internal.h"

static const bt_strategy_i noop_iface = {.name = "noop"};

bt_strategy *bt_noop_strategy_init(void) { return bt_strategy_init(&noop_iface, NULL); }
