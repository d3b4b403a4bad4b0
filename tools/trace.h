/*
 * trace.h -- generation events as JSON (docs/trace.md): one object per event, for
 * `backtrack --trace FILE` (JSON Lines) and the server's `"backtrack": {"trace": true}`.
 * One formatter for both, so the schema is written down once.
 */
#ifndef BT_TRACE_H
#define BT_TRACE_H

#include "backtrack.h"

#include <stdio.h>

/* A growable byte buffer (the JSON of one event). */
typedef struct trace_buf {
    char  *data;
    size_t len, cap;
    bool   oom; /* an allocation failed: data holds a truncated text */
} trace_buf;

void trace_buf_free(trace_buf *b);

/* What the begin event says besides the library's counts (all may be NULL). */
typedef struct trace_info {
    const char *prompt;   /* the prompt text */
    const char *model;    /* the model's path */
    const char *strategy; /* the strategy's name */
} trace_info;

/* Format ev as one JSON object (no newline) into b, replacing its contents. Token texts
 * come from p. Returns false when memory ran out. */
bool trace_event_json(const bt_event *ev, bt_provider *p, const trace_info *info, trace_buf *b);

/* Append s[0..n) to b as a JSON string literal: quotes, escapes, and U+FFFD in place of
 * bytes that are not valid UTF-8. Returns true if the bytes were valid UTF-8. */
bool trace_json_string(trace_buf *b, const char *s, size_t n);

/* The length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when the bytes there are
 * not one (overlong, a surrogate, above U+10FFFF, cut short). n > 0. */
size_t trace_utf8_seq(const unsigned char *s, size_t n);

/* ---- the --trace file ---- */

typedef struct trace_file trace_file;

/* Open path for writing ("-": standard error). NULL with a reason in err. */
trace_file *trace_file_open(const char *path, bt_provider *p, const trace_info *info,
                            char *err, size_t errcap);

/* A bt_observer_fn: writes each event as one line. */
void trace_file_observe(void *user, const bt_event *ev);

/* Flush and close. Returns 0, or -1 with a reason in err when a write failed (disk full,
 * closed pipe) at any point. NULL is a no-op returning 0. */
int trace_file_close(trace_file *t, char *err, size_t errcap);

#endif
