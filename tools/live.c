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
 *
 * What keeps the bookkeeping true: a region that begins with a wrap pending (released
 * text ended at the right edge) is found at the start of the next row, never by moving
 * onto that edge; only whole characters are written (a character split across tokens
 * waits for its last byte; invalid bytes and control characters that move the cursor
 * are written as U+FFFD); tabs stop at the last column; other writers to the terminal
 * (log lines) go through live_suspend / live_resume.
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
    int          start_col;  /* column where the held region begins (== width: it begins
                                with a wrap still pending at the end of the row)      */
    int32_t      rel_pos;    /* continuation position of the first held token */
    bt_token    *held;       /* held tokens, positions [rel_pos, rel_pos + n_held) */
    int32_t      n_held, cap_held;
    /* A character split across tokens: the bytes of released tokens that the library has
     * not printed yet (it waits for the rest), which begin the held region's text, and
     * the incomplete character at the end of the held region, not written yet (written
     * alone it would show as garbage and put the cursor bookkeeping off). */
    unsigned char rel_pend[4], tail[4];
    int          n_rel_pend, n_tail;
    bool         failed;
};

/* ==== Cursor bookkeeping ================================================= */

/* Length of the UTF-8 sequence a lead byte announces, 0 if it cannot start one. */
static int seq_len(unsigned char c) {
    return c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

/* s[0..n) starts with: a whole valid character (its length), only the first k bytes of
 * one so far (-k), or bytes that are no character (0). No overlongs, surrogates or code
 * points above U+10FFFF. */
static int check_seq(const unsigned char *s, size_t n) {
    int len = seq_len(s[0]);
    if (len == 0) return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char c = s[i];
        if ((c & 0xC0) != 0x80) return 0;
        if (i == 1 && ((s[0] == 0xE0 && c < 0xA0) || (s[0] == 0xED && c > 0x9F) ||
                       (s[0] == 0xF0 && c < 0x90) || (s[0] == 0xF4 && c > 0x8F)))
            return 0;
    }
    return len;
}

/* Move the modelled cursor over one character written at it: newlines, tabs (to the next
 * stop, never past the last column and never wrapping, as xterm and tmux do), wide
 * characters two columns, combining ones none, wrapping at the width first when the
 * character does not fit (a pending wrap: col == width). */
static void advance(live_view *l, utf8proc_int32_t cp) {
    if (cp == '\n') {
        l->col = 0, l->rows++;
        return;
    }
    if (cp == '\r') {
        l->col = 0;
        return;
    }
    if (cp == '\t') {
        if (l->col < l->width - 1) l->col = (l->col / 8 + 1) * 8 < l->width - 1 ? (l->col / 8 + 1) * 8
                                                                              : l->width - 1;
        return;
    }
    int w = utf8proc_charwidth(cp);
    if (w <= 0) return;
    if (l->col + w > l->width) l->col = 0, l->rows++; /* the terminal wraps first */
    l->col += w;
}

static void write_bytes(live_view *l, const void *s, size_t n) {
    if (n && fwrite(s, 1, n, l->out) != n) l->failed = true;
}

/* Write one character (len bytes, a valid sequence) and follow the cursor over it.
 * Control characters other than newline and tab (and carriage return where `cr`) would
 * move the cursor where the bookkeeping cannot follow (escape sequences, backspace):
 * they are shown as U+FFFD, as are invalid bytes. */
static void put_char(live_view *l, const unsigned char *b, int len, bool cr) {
    utf8proc_int32_t cp = 0xFFFD;
    if (len > 0) utf8proc_iterate(b, len, &cp);
    bool ctl = (cp < 0x20 && cp != '\n' && cp != '\t' && !(cr && cp == '\r')) ||
               (cp >= 0x7F && cp < 0xA0);
    if (len <= 0 || ctl) write_bytes(l, "\xef\xbf\xbd", 3), cp = 0xFFFD;
    else write_bytes(l, b, (size_t)len);
    advance(l, cp);
}

/* Write s[0..n) as text: whole characters only. With `tail` (the held region), an
 * incomplete character at the end waits in l->tail for the bytes that complete it, and
 * a tail already waiting is completed first; without, an incomplete end is invalid. Each
 * run of invalid bytes (a lead and the continuation bytes that fit it, or one stray
 * byte) is one U+FFFD, as the library's decoder gives it. */
static void put_text(live_view *l, const char *str, size_t n, bool tail) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (tail && l->n_tail > 0 && i < n) {
        unsigned char tmp[4];
        memcpy(tmp, l->tail, (size_t)l->n_tail);
        tmp[l->n_tail] = s[i];
        int r = check_seq(tmp, (size_t)l->n_tail + 1);
        if (r > 0) {
            put_char(l, tmp, r, false);
            l->n_tail = 0, i++;
        } else if (r < 0) {
            l->tail[l->n_tail++] = s[i++];
        } else { /* the waiting bytes can never complete: one U+FFFD, retry this byte */
            put_char(l, NULL, 0, false);
            l->n_tail = 0;
        }
    }
    while (i < n) {
        int r = check_seq(s + i, n - i);
        if (r > 0) {
            put_char(l, s + i, r, !tail);
            i += (size_t)r;
        } else if (r < 0 && tail) {
            memcpy(l->tail, s + i, n - i);
            l->n_tail = (int)(n - i);
            return;
        } else {
            put_char(l, NULL, 0, false);
            size_t k = 1; /* the lead and the continuation bytes that fit it */
            while (i + k < n && (int)k < seq_len(s[i]) && check_seq(s + i, k + 1) != 0) k++;
            i += k;
        }
    }
}

static void emit_raw(live_view *l, const char *s) {
    if (fputs(s, l->out) == EOF) l->failed = true;
}

/* Move back to the start of the held region and clear everything after it. */
static void erase_held(live_view *l) {
    int up = l->rows, col = l->start_col;
    l->n_tail = 0;
    if (col >= l->width) { /* the region began with a wrap pending at the end of a row */
        if (up == 0) {     /* nothing was written since: the wrap is still pending, and
                              erasing here would take the row's last character */
            l->col = col;
            return;
        }
        up--, col = 0; /* its first character went to the start of the next row */
        l->start_col = 0;
    }
    if (up > 0) fprintf(l->out, "\x1b[%dA", up);
    fprintf(l->out, "\r");
    if (col > 0) fprintf(l->out, "\x1b[%dC", col);
    emit_raw(l, "\x1b[J");
    l->col = col;
    l->rows = 0;
}

/* The held tokens [from, n_held) as text, in the given style, after what is on the
 * screen of the region (from 0: the region's start, which begins with the bytes of
 * released tokens still waiting to complete a character). */
static void draw_tokens(live_view *l, int32_t from, const char *style) {
    emit_raw(l, style);
    if (from == 0) {
        memcpy(l->tail, l->rel_pend, (size_t)l->n_rel_pend);
        l->n_tail = l->n_rel_pend;
    }
    for (int32_t i = from; i < l->n_held; i++) {
        const char *b;
        size_t len;
        if (bt_provider_token_text(l->p, l->held[i], &b, &len) == BT_OK) put_text(l, b, len, true);
    }
    emit_raw(l, NORMAL);
}

/* After released token t: the bytes the library still holds back (an incomplete
 * character at the end of the released text, which it prints once complete). */
static void follow_release(live_view *l, bt_token t) {
    const char *b = "";
    size_t len = 0;
    if (t < 0 || bt_provider_token_text(l->p, t, &b, &len) != BT_OK) len = 0;
    unsigned char buf[4] = {0};
    int n = 0;
    /* the last (at most 3) bytes of what is held back and this token's bytes */
    size_t total = (size_t)l->n_rel_pend + len;
    for (size_t k = total > 3 ? total - 3 : 0; k < total; k++)
        buf[n++] = k < (size_t)l->n_rel_pend ? l->rel_pend[k] : (unsigned char)b[k - (size_t)l->n_rel_pend];
    l->n_rel_pend = 0;
    /* held back: a valid but incomplete character at the very end */
    for (int k = 0; k < n; k++)
        if (seq_len(buf[k]) > 1 && check_seq(buf + k, (size_t)(n - k)) == -(n - k)) {
            memcpy(l->rel_pend, buf + k, (size_t)(n - k));
            l->n_rel_pend = n - k;
            break;
        }
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
        l->n_rel_pend = l->n_tail = 0;
        break;
    case BT_EVENT_DRAW: {
        int32_t k = ev->pos - l->rel_pos; /* == n_held: rewinds come as their own events */
        if (k < 0 || k > l->n_held) break;
        bool redraw = k < l->n_held; /* a draw over held text: redraw the region */
        l->n_held = k;
        if (!push_held(l, ev->token)) {
            l->failed = true;
            break;
        }
        if (redraw) erase_held(l);
        draw_tokens(l, redraw ? 0 : k, DIM);
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
        put_text(l, ev->text, ev->text_len, false);
        if (ev->n == 0) l->n_rel_pend = 0; /* the end's flush: nothing waits any more */
        else follow_release(l, ev->token);
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

void live_suspend(live_view *l) {
    if (!l || l->failed) return;
    erase_held(l);
    if (fflush(l->out) != 0) l->failed = true;
}

void live_resume(live_view *l) {
    if (!l || l->failed) return;
    l->start_col = l->col = 0, l->rows = 0;
    draw_tokens(l, 0, DIM);
    if (fflush(l->out) != 0) l->failed = true;
}

void live_close(live_view *l) {
    if (!l) return;
    free(l->held);
    free(l);
}
