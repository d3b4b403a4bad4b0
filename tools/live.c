/*
 * live.c -- the --live terminal view.
 *
 * The screen holds the released text (final, normal) followed by the held region: the
 * texts of the tokens drawn but not yet released, dimmed. The region is redrawn from its
 * start whenever it changes other than by growing: after a rewind (tokens gone) and after
 * a release (its first tokens become normal text). To find its start again the view
 * follows the cursor: the column after every character it writes (wide characters count
 * two, from utf8proc), wrapping at the terminal's width, so it knows how many rows up and
 * which column the region began at. Erasing is then "rows up, to that column, clear to
 * the end of the screen". Only the held region is ever erased: released text is never
 * touched, so a scrolled-away start cannot corrupt it.
 */
#include "live.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#define DIM    "\x1b[2m"
#define STRIKE "\x1b[9;31m" /* struck through, red: what a rewind takes away */
#define NORMAL "\x1b[0m"

struct live_view {
    FILE        *out;
    bt_provider *p;
    int          delay_ms;
    int          width;      /* terminal columns */
    int          col;        /* the cursor's column (== width: wrap pending) */
    int          rows;       /* rows the held region spans below its first */
    int          start_col;  /* column where the held region begins */
    int32_t      rel_pos;    /* continuation position of the first held token */
    bt_token    *held;       /* held tokens, positions [rel_pos, rel_pos + n_held) */
    int32_t      n_held, cap_held;
    bool         failed;
};

/* ==== Cursor bookkeeping ================================================= */

/* Write bytes and advance the modelled cursor over them: columns per character (wide
 * ones two, combining ones zero), newlines, tabs, wrapping at the width. Counts rows
 * into l->rows. Bytes that are not UTF-8 count one column (the terminal shows U+FFFD). */
static void emit_text(live_view *l, const char *s, size_t n) {
    if (n && fwrite(s, 1, n, l->out) != n) l->failed = true;
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) k = 1, cp = 0xFFFD;
        i += (size_t)k;
        if (cp == '\n') {
            l->col = 0, l->rows++;
            continue;
        }
        if (cp == '\r') {
            l->col = 0;
            continue;
        }
        int w = cp == '\t' ? 8 - l->col % 8 : utf8proc_charwidth(cp);
        if (w <= 0) continue;
        if (l->col + w > l->width) l->col = 0, l->rows++; /* the terminal wraps first */
        l->col += w;
    }
}

static void emit_raw(live_view *l, const char *s) {
    if (fputs(s, l->out) == EOF) l->failed = true;
}

/* Move back to the start of the held region and clear everything after it. */
static void erase_held(live_view *l) {
    if (l->rows > 0) fprintf(l->out, "\x1b[%dA", l->rows);
    fprintf(l->out, "\r");
    if (l->start_col > 0) fprintf(l->out, "\x1b[%dC", l->start_col);
    emit_raw(l, "\x1b[J");
    l->col = l->start_col;
    l->rows = 0;
}

/* The held tokens [from, n_held) as text, in the given style. */
static void draw_tokens(live_view *l, int32_t from, const char *style) {
    emit_raw(l, style);
    for (int32_t i = from; i < l->n_held; i++) {
        const char *b;
        size_t len;
        if (bt_provider_token_text(l->p, l->held[i], &b, &len) == BT_OK) emit_text(l, b, len);
    }
    emit_raw(l, NORMAL);
}

static void pause_ms(int ms) {
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ==== Events ============================================================= */

live_view *live_open(FILE *out, bt_provider *p, int delay_ms) {
    live_view *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->out = out;
    l->p = p;
    l->delay_ms = delay_ms;
    struct winsize ws;
    l->width = ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    return l;
}

static bool push_held(live_view *l, bt_token t) {
    if (l->n_held == l->cap_held) {
        int32_t cap = l->cap_held ? 2 * l->cap_held : 64;
        bt_token *h = realloc(l->held, (size_t)cap * sizeof *h);
        if (!h) return false;
        l->held = h, l->cap_held = cap;
    }
    l->held[l->n_held++] = t;
    return true;
}

void live_observe(void *user, const bt_event *ev) {
    live_view *l = user;
    if (l->failed) return;
    switch (ev->type) {
    case BT_EVENT_BEGIN:
        l->start_col = l->col = 0, l->rows = 0, l->rel_pos = 0, l->n_held = 0;
        break;
    case BT_EVENT_DRAW: {
        int32_t k = ev->pos - l->rel_pos; /* == n_held: rewinds come as their own events */
        if (k < 0 || k > l->n_held) break;
        l->n_held = k;
        if (!push_held(l, ev->token)) {
            l->failed = true;
            break;
        }
        draw_tokens(l, k, DIM);
        pause_ms(l->delay_ms);
        break;
    }
    case BT_EVENT_REWIND: {
        int32_t keep = ev->pos - l->rel_pos;
        if (keep < 0) keep = 0;
        if (keep >= l->n_held) break;
        if (l->delay_ms > 0) { /* show what goes, struck through, for a moment */
            erase_held(l);
            int32_t all = l->n_held;
            l->n_held = keep;
            draw_tokens(l, 0, DIM);
            l->n_held = all;
            draw_tokens(l, keep, STRIKE);
            fflush(l->out);
            pause_ms(l->delay_ms * 4);
        }
        erase_held(l);
        l->n_held = keep;
        draw_tokens(l, 0, DIM);
        break;
    }
    case BT_EVENT_RELEASE: {
        /* the released text replaces its tokens at the front of the region */
        erase_held(l);
        emit_text(l, ev->text, ev->text_len);
        int32_t n = ev->n < l->n_held ? ev->n : l->n_held;
        memmove(l->held, l->held + n, (size_t)(l->n_held - n) * sizeof *l->held);
        l->n_held -= n;
        l->rel_pos += ev->n;
        l->start_col = l->col;
        l->rows = 0;
        draw_tokens(l, 0, DIM);
        break;
    }
    case BT_EVENT_END:
        erase_held(l); /* nothing should be left; never leave dim text behind */
        l->n_held = 0;
        break;
    default: break;
    }
    if (fflush(l->out) != 0) l->failed = true;
}

bool live_failed(const live_view *l) { return l->failed; }

void live_close(live_view *l) {
    if (!l) return;
    free(l->held);
    free(l);
}
