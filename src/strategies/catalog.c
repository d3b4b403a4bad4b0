/*
 * catalog.c -- the strategy catalog: the list of built-in strategies, and option values
 * checked against their descriptions (bt_strategy_options) on the way to
 * bt_strategy_create. The descriptions themselves live in each strategy's file.
 */
#include "catalog.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const bt__strategy_def *const defs[] = {
    &bt__noop_def,     &bt__debug_def,
    &bt__antislop_def, &bt__replace_def,
    &bt__creative_writing_def, &bt__adaptive_temperature_def,
    &bt__human_guidance_def,
};
#define N_DEFS ((int32_t)(sizeof defs / sizeof defs[0]))

/* ==== Lookup ============================================================= */

int32_t bt_strategy_catalog_size(void) { return N_DEFS; }

const bt_strategy_info *bt_strategy_catalog_get(int32_t i) {
    return i >= 0 && i < N_DEFS ? &defs[i]->info : NULL;
}

static const bt__strategy_def *def_of(const bt_strategy_info *si) {
    for (int32_t i = 0; si && i < N_DEFS; i++)
        if (strcmp(defs[i]->info.name, si->name) == 0) return defs[i];
    return NULL;
}

const bt_strategy_info *bt_strategy_info_find(const char *name) {
    for (int32_t i = 0; name && i < N_DEFS; i++)
        if (strcmp(defs[i]->info.name, name) == 0) return &defs[i]->info;
    return NULL;
}

static int32_t option_index(const bt_strategy_info *si, const char *key) {
    for (int32_t i = 0; si && key && i < si->n_options; i++)
        if (strcmp(si->options[i].name, key) == 0 ||
            (si->options[i].flag && strcmp(si->options[i].flag, key) == 0))
            return i;
    return -1;
}

const bt_option_info *bt_option_info_find(const bt_strategy_info *si, const char *key) {
    int32_t i = option_index(si, key);
    return i < 0 ? NULL : &si->options[i];
}

/* ==== Values ============================================================= */

typedef struct optval {
    int32_t count;
    double  num;
    char  **strs;  /* count strings (string kinds), NULL-terminated */
    float  *adjs;  /* PHRASE_LIST: one per string */
    int32_t cap;
} optval;

struct bt_strategy_options {
    const bt__strategy_def *def;
    optval                 *v; /* one per option */
};

bt_strategy_options *bt_strategy_options_new(const bt_strategy_info *si) {
    const bt__strategy_def *d = def_of(si);
    if (!d) {
        bt__fail(BT_ERR_INVALID_ARG, "unknown strategy");
        return NULL;
    }
    bt_strategy_options *o = calloc(1, sizeof *o);
    if (o) o->v = calloc((size_t)d->info.n_options + 1, sizeof *o->v);
    if (!o || !o->v) {
        free(o);
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->def = d;
    return o;
}

void bt_strategy_options_free(bt_strategy_options *o) {
    if (!o) return;
    for (int32_t i = 0; i < o->def->info.n_options; i++) {
        for (int32_t k = 0; k < o->v[i].count && o->v[i].strs; k++) free(o->v[i].strs[k]);
        free(o->v[i].strs);
        free(o->v[i].adjs);
    }
    free(o->v);
    free(o);
}

/* The option `key` of o's strategy, or -1 with the error set. */
static int32_t find_or_fail(const bt_strategy_options *o, const char *key) {
    int32_t i = option_index(&o->def->info, key);
    if (i < 0) bt__fail(BT_ERR_INVALID_ARG, "%s: unknown option '%s'", o->def->info.name, key ? key : "");
    return i;
}

int bt_strategy_options_set(bt_strategy_options *o, const char *key, double value) {
    if (!o) return bt__fail(BT_ERR_INVALID_ARG, "no options");
    int32_t i = find_or_fail(o, key);
    if (i < 0) return BT_ERR_INVALID_ARG;
    const bt_option_info *oi = &o->def->info.options[i];
    const char *sn = o->def->info.name;
    switch (oi->kind) {
    case BT_OPTION_BOOL:
        if (value != 0.0 && value != 1.0)
            return bt__fail(BT_ERR_INVALID_ARG, "%s: %s must be true or false", sn, oi->name);
        break;
    case BT_OPTION_INT:
        if (!(value >= oi->min && value <= oi->max) || value != floor(value))
            return bt__fail(BT_ERR_INVALID_ARG, "%s: %s must be a whole number in [%.10g, %.10g]",
                            sn, oi->name, oi->min, oi->max);
        break;
    case BT_OPTION_FLOAT:
        if (!(value >= oi->min && value <= oi->max))
            return bt__fail(BT_ERR_INVALID_ARG, "%s: %s must be a number in [%.10g, %.10g]", sn,
                            oi->name, oi->min, oi->max);
        break;
    default:
        return bt__fail(BT_ERR_INVALID_ARG, "%s: %s takes text, not a number", sn, oi->name);
    }
    o->v[i].num = value;
    o->v[i].count = 1;
    return BT_OK;
}

int bt_strategy_options_add(bt_strategy_options *o, const char *key, const char *text,
                            size_t len, float adjustment) {
    if (!o || (!text && len)) return bt__fail(BT_ERR_INVALID_ARG, "no options or no text");
    int32_t i = find_or_fail(o, key);
    if (i < 0) return BT_ERR_INVALID_ARG;
    const bt_option_info *oi = &o->def->info.options[i];
    const char *sn = o->def->info.name;
    if (oi->kind < BT_OPTION_TEXT)
        return bt__fail(BT_ERR_INVALID_ARG, "%s: %s takes a number, not text", sn, oi->name);
    if (len == 0) return bt__fail(BT_ERR_INVALID_ARG, "%s: %s: empty text", sn, oi->name);
    if (memchr(text, 0, len))
        return bt__fail(BT_ERR_INVALID_ARG, "%s: %s: the text contains a NUL byte", sn, oi->name);
    if (!bt__utf8_valid(text, len))
        return bt__fail(BT_ERR_UTF8, "%s: %s: the text is not valid UTF-8", sn, oi->name);
    if (oi->kind == BT_OPTION_PHRASE_LIST ? !(adjustment == 0.0f || (adjustment > 0.0f && adjustment <= 1.0f))
                                          : adjustment != 0.0f)
        return bt__fail(BT_ERR_INVALID_ARG, "%s: %s: an adjustment must be 0 (ban) or in (0, 1]%s",
                        sn, oi->name, oi->kind == BT_OPTION_PHRASE_LIST ? "" : ", and only for phrases");
    optval *v = &o->v[i];
    char *copy = malloc(len + 1);
    if (!copy) return bt__fail(BT_ERR_NOMEM, "out of memory");
    memcpy(copy, text, len);
    copy[len] = 0;
    if (oi->kind == BT_OPTION_TEXT && v->count == 1) { /* given again: replaces */
        free(v->strs[0]);
        v->strs[0] = copy;
        return BT_OK;
    }
    if (v->count + 1 >= v->cap) {
        int32_t cap = v->cap ? 2 * v->cap : 4;
        char **ns = realloc(v->strs, (size_t)cap * sizeof *ns);
        if (ns) v->strs = ns;
        float *na = ns ? realloc(v->adjs, (size_t)cap * sizeof *na) : NULL;
        if (na) v->adjs = na;
        if (!ns || !na) {
            free(copy);
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        v->cap = cap;
    }
    v->adjs[v->count] = adjustment;
    v->strs[v->count++] = copy;
    v->strs[v->count] = NULL;
    return BT_OK;
}

int32_t bt_strategy_options_count(const bt_strategy_options *o, const char *key) {
    int32_t i = o ? option_index(&o->def->info, key) : -1;
    return i < 0 ? -1 : o->v[i].count;
}

bt_strategy *bt_strategy_create(const bt_strategy_options *o, bt_provider *provider) {
    if (!o) {
        bt__fail(BT_ERR_INVALID_ARG, "no options");
        return NULL;
    }
    const bt_strategy_info *si = &o->def->info;
    for (int32_t i = 0; i < si->n_options; i++)
        if (si->options[i].required && o->v[i].count == 0) {
            bt__fail(BT_ERR_INVALID_ARG, "%s needs %s (%s)", si->name, si->options[i].name,
                     si->options[i].flag ? si->options[i].flag : "");
            return NULL;
        }
    bt__fail(BT_OK, "%s", ""); /* so a create that fails without a message is caught */
    bt_strategy *s = o->def->create(o, provider);
    if (!s && bt_last_error()[0] == 0) bt__fail(BT_ERR_STRATEGY, "%s: cannot be created", si->name);
    return s;
}

/* ==== Accessors for the create functions ================================= */

int32_t bt__opt_count(const bt_strategy_options *o, int32_t i) { return o->v[i].count; }

double bt__opt_num(const bt_strategy_options *o, int32_t i) {
    return o->v[i].count ? o->v[i].num : o->def->info.options[i].def;
}

const char *bt__opt_str(const bt_strategy_options *o, int32_t i, int32_t k) {
    return k < o->v[i].count ? o->v[i].strs[k] : NULL;
}

float bt__opt_adj(const bt_strategy_options *o, int32_t i, int32_t k) {
    return k < o->v[i].count ? o->v[i].adjs[k] : 0.0f;
}

const char *const *bt__opt_strs(const bt_strategy_options *o, int32_t i) {
    return (const char *const *)o->v[i].strs;
}
