/* fuzz_request.c -- the server's request parser (JSON body -> prompt, sampling parameters,
 * stop strings, strategies, per-request limits) and its /tokenize and /detokenize on
 * hostile bodies: each must accept or refuse with a message, never crash, leak or refuse
 * silently, and a token answer is valid UTF-8 even for half a character. The first byte
 * picks the endpoint: bit 1 clear: completions (bit 0 clear) or chat; set: tokenize (bit 0
 * clear) or detokenize. */
#include "internal.h"
#include "serve.h"

#include <stdlib.h>

static const char *const VOCAB[] = {"", "a", "b", " ", "Wait", "x", "\n", "<", ">", "/",
                                    "\xc3", "\xa1"}; /* the halves of "\xc3\xa1" */

static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)user, (void)seq, (void)n;
    for (int32_t i = 0; i < nv; i++) l[i] = (float)i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bt_provider *p;
    if (!p) {
        bt_scripted_params sp = bt_scripted_default_params();
        sp.n_vocab = 12;
        sp.tokens = VOCAB;
        sp.eos = 0;
        sp.n_ctx = 64;
        sp.logits = logits;
        p = bt_scripted_provider_init(&sp);
    }
    if (size < 1 || size > 65536) return 0;
    int rc = data[0] & 2 ? serve_fuzz_tokens((const char *)data + 1, size - 1, data[0] & 1, p)
                         : serve_fuzz_request((const char *)data + 1, size - 1, data[0] & 1, p);
    if (rc < 0) abort();
    return 0;
}
