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

/* True once a write to the terminal failed (the caller should stop generating). */
bool live_failed(const live_view *l);

void live_close(live_view *l);

#endif
