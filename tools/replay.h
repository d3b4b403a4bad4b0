/*
 * replay.h -- `backtrack replay TRACE.jsonl -o PAGE.html`: a trace (docs/trace.md) checked
 * and turned into one self-contained HTML page that replays the generation.
 */
#ifndef BT_REPLAY_H
#define BT_REPLAY_H

#include <stddef.h>

/* The `replay` subcommand; argv[0] is "replay". Returns the exit code: 0 success, 1 a bad
 * or unreadable trace or an unwritable page (a message on stderr names the file and the
 * line), 2 bad usage. */
int replay_main(int argc, char **argv);

/* Check the trace trace[0..len) (JSON Lines, docs/trace.md) and render the page. Returns 0
 * with *html (malloc'ed, owned by the caller, NUL-terminated) and *html_len set, or -1
 * with *html = NULL and a one-line message in err[0..cap) ("line N: ..."). Never reads
 * past len; any input is safe. */
int replay_render(const char *trace, size_t len, char **html, size_t *html_len, char *err,
                  size_t cap);

#endif
