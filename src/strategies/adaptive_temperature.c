/*
 * adaptive_temperature.c -- entropy-driven logit scaling (Alexander Doria's rule, as in
 * the original): sharpen the distribution where the model is uncertain. Never rewinds.
 */
#include "catalog.h"

#include <math.h>
#include <stdlib.h>

typedef struct adaptive {
    bt_adaptive_temperature_params p;
} adaptive;

bt_adaptive_temperature_params bt_adaptive_temperature_default_params(void) {
    return (bt_adaptive_temperature_params){{-0.037f, 0.481f, -2.3f, 4.917f, -1.791f}};
}

double bt_adaptive_temperature_beta(const float c[5], double h) {
    double beta = (((c[0] * h + c[1]) * h + c[2]) * h + c[3]) * h + c[4];
    if (!(h > 0.5)) return 1.0;
    return beta > 1.0 ? beta : 1.0;
}

/* Entropy in nats of softmax(logits), from one pass for the max and one for the sums:
 * H = log Z - sum(e_i * x_i) / Z with x_i = l_i - max and e_i = exp(x_i). */
static double entropy(const float *l, int32_t n) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (l[i] > max) max = l[i];
    if (!isfinite(max)) return 0.0;
    double z = 0, ex = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!(l[i] > -INFINITY)) continue;
        double x = (double)l[i] - max, e = exp(x);
        z += e;
        ex += e * x;
    }
    return log(z) - ex / z;
}

static void at_on_logits(bt_strategy *s, const bt_view *v, float *logits) {
    adaptive *a = s->ctx;
    double beta = bt_adaptive_temperature_beta(a->p.coeffs, entropy(logits, v->n_vocab));
    if (beta == 1.0) return;
    for (int32_t i = 0; i < v->n_vocab; i++) logits[i] = (float)(logits[i] * beta);
}

static void at_free(bt_strategy *s) { free(s->ctx); }

static const bt_strategy_i adaptive_iface = {
    .name = "adaptive-temperature",
    .on_logits = at_on_logits,
    .free = at_free,
};

bt_strategy *bt_adaptive_temperature_strategy_init(const bt_adaptive_temperature_params *params) {
    adaptive *a = malloc(sizeof *a);
    if (!a) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    a->p = params ? *params : bt_adaptive_temperature_default_params();
    for (int i = 0; i < 5; i++)
        if (!isfinite(a->p.coeffs[i])) {
            free(a);
            bt__fail(BT_ERR_INVALID_ARG, "adaptive-temperature: coefficients must be finite");
            return NULL;
        }
    bt_strategy *s = bt_strategy_init(&adaptive_iface, a);
    if (!s) free(a);
    return s;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

static const bt_option_info adaptive_options[5] = {
    {"c0", "--c0", BT_OPTION_FLOAT, -1e6, 1e6, -0.037, "X", "coefficient of H^4 (-0.037)", false},
    {"c1", "--c1", BT_OPTION_FLOAT, -1e6, 1e6, 0.481, "X", "coefficient of H^3 (0.481)", false},
    {"c2", "--c2", BT_OPTION_FLOAT, -1e6, 1e6, -2.3, "X", "coefficient of H^2 (-2.3)", false},
    {"c3", "--c3", BT_OPTION_FLOAT, -1e6, 1e6, 4.917, "X", "coefficient of H (4.917)", false},
    {"c4", "--c4", BT_OPTION_FLOAT, -1e6, 1e6, -1.791, "X", "constant (-1.791)", false},
};

static bt_strategy *adaptive_create(const bt_strategy_options *o, bt_provider *p) {
    (void)p;
    bt_adaptive_temperature_params ap = bt_adaptive_temperature_default_params();
    for (int32_t i = 0; i < 5; i++) ap.coeffs[i] = (float)bt__opt_num(o, i);
    return bt_adaptive_temperature_strategy_init(&ap);
}

const bt__strategy_def bt__adaptive_temperature_def = {
    {"adaptive-temperature", "sharpen the distribution by its entropy",
     adaptive_options, 5, false},
    adaptive_create,
};
