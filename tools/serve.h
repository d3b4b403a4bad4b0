/* serve.h -- `backtrack serve`, the OpenAI-compatible HTTP server (tools/serve*.c). */
#ifndef BT_SERVE_H
#define BT_SERVE_H

/* Run the server: argv without the word "serve". Returns the exit status. */
int serve_main(int argc, char **argv);

#include "backtrack.h"

/* For the fuzzer: parse one request body as the server would (completions, or chat when
 * `chat`), with `p` standing for the model. 1: accepted, 0: refused with a message, -1:
 * refused without one (a bug). */
int serve_fuzz_request(const char *body, size_t len, bool chat, bt_provider *p);

/* For the fuzzer: one body of POST /tokenize (or /detokenize when `detokenize`). 1: an
 * answer of valid UTF-8, 0: refused with a message, -1: a bug (refused without a message,
 * or an answer that is not valid UTF-8). */
int serve_fuzz_tokens(const char *body, size_t len, bool detokenize, bt_provider *p);

#endif
