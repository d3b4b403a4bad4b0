/*
 * live.h -- `backtrack --live`: the generation drawn on a terminal as it happens. Text a
 * strategy still holds back is dim; a rewind erases it (the undone text flashes struck
 * through first when a delay is set); released text turns normal.
 */
#ifndef BT_LIVE_H
#define BT_LIVE_H

#include "backtrack.h"

#include <stdio.h>

typedef struct live_view live_view;

/* A view writing to out (a terminal), token texts from p, pausing delay_ms per step.
 * NULL when out of memory. */
live_view *live_open(FILE *out, bt_provider *p, int delay_ms);

/* A bt_observer_fn: draws each event. */
void live_observe(void *user, const bt_event *ev);

/* Another writer (a log line on stderr, on the same terminal) is about to write: the
 * held region is erased and the cursor left where it began, after the released text. */
void live_suspend(live_view *l);

/* That output is done and ended with a newline (the cursor is at the start of a row):
 * the held region is drawn again from there. NULL-safe, as live_suspend. */
void live_resume(live_view *l);

/* True once a write to the terminal failed (the caller should stop generating). */
bool live_failed(const live_view *l);

void live_close(live_view *l);

#endif
