/* serve.h -- `backtrack serve`, the OpenAI-compatible HTTP server (serve.c). */
#ifndef BT_SERVE_H
#define BT_SERVE_H

/* Run the server: argv without the word "serve". Returns the exit status. */
int serve_main(int argc, char **argv);

#endif
