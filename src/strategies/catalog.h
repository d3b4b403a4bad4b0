/*
 * catalog.h -- private: how a strategy file describes itself to the catalog (catalog.c).
 *
 * Each strategy file defines one bt__strategy_def: its bt_strategy_info (the options
 * table, kept next to the code that uses it) and a create function that reads the values
 * through the accessors below, by the option's index in that table.
 */
#ifndef BT_CATALOG_H
#define BT_CATALOG_H

#include "../internal.h"

typedef struct bt__strategy_def {
    bt_strategy_info info;
    /* Build from validated values (required options are present). NULL with the last
     * error set on failure. */
    bt_strategy *(*create)(const bt_strategy_options *o, bt_provider *p);
} bt__strategy_def;

/* Values of option i (its index in info.options). */
int32_t     bt__opt_count(const bt_strategy_options *o, int32_t i); /* 0: not given */
double      bt__opt_num(const bt_strategy_options *o, int32_t i);   /* the default if not given */
const char *bt__opt_str(const bt_strategy_options *o, int32_t i, int32_t k); /* k < count */
float       bt__opt_adj(const bt_strategy_options *o, int32_t i, int32_t k);
/* The strings of option i as an array (valid while o lives). */
const char *const *bt__opt_strs(const bt_strategy_options *o, int32_t i);

extern const bt__strategy_def bt__noop_def, bt__debug_def, bt__antislop_def, bt__replace_def,
    bt__creative_writing_def, bt__adaptive_temperature_def, bt__human_guidance_def;

#endif
