/* fuzz_lists.c -- the phrase-list parser (JSON and lines) and the regex-list parser,
 * plus compiling what they accept into an AntiSlop strategy. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool hard = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    bt_phrase_list *l = NULL;
    if (bt__phrase_list_parse("fuzz", text, len, hard, &l) == BT_OK) {
        for (int32_t i = 0; i < bt_phrase_list_size(l); i++) {
            const char *p = bt_phrase_list_phrase(l, i);
            float a = bt_phrase_list_adjustment(l, i);
            if (!p[0] || !bt__utf8_valid(p, strlen(p)) || !(a >= 0.0f && a <= 1.0f)) abort();
        }
        bt_antislop_params ap = bt_antislop_default_params();
        ap.phrases = l;
        bt_strategy_free(bt_antislop_strategy_init(&ap));
        bt_phrase_list_free(l);
    }
    char **re = NULL;
    int32_t n = 0;
    if (bt__regex_list_parse("fuzz", text, len, &re, &n) == BT_OK) {
        if (n <= 0) abort();
        bt_antislop_params ap = bt_antislop_default_params();
        ap.regexes = (const char *const *)re;
        ap.n_regexes = n;
        bt_strategy_free(bt_antislop_strategy_init(&ap));
        bt_strings_free(re, n);
    }
    return 0;
}
