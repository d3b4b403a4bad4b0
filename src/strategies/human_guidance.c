/*
 * human_guidance.c -- pick the next token yourself (the original's HumanGuidanceStrategy).
 *
 * Before a draw whose top probability is below min_autopass, a menu shows the text so far
 * and the top_k tokens; the choice gets its probability multiplied by 10000. "Go back"
 * undoes the token just drawn and the one before it. The menu is ncurses by default (the
 * terminal leaves curses mode between menus, so nothing else on the screen is disturbed);
 * a callback can replace it (tests, GUIs).
 */
#include "catalog.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_K 64

typedef struct guidance {
    bt_human_guidance_params p;
    bool     go_back;
    bool     stopped;   /* the user asked to stop guiding */
    SCREEN  *screen;
    char    *text;      /* the text so far, rebuilt for each menu */
    size_t   text_cap;
} guidance;

bt_human_guidance_params bt_human_guidance_default_params(void) {
    return (bt_human_guidance_params){.top_k = 3, .min_autopass = 1.0f, .choose = NULL, .user = NULL};
}

/* ==== The ncurses menu ====================================================== */

/* Print a token's text readably (newlines and control bytes escaped). */
static void add_label(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n') addstr("\\n");
        else if (c < 0x20) printw("\\x%02x", c);
        else addch(c);
    }
}

static int curses_choose(void *user, const bt_guidance_menu *m) {
    guidance *g = user;
    if (!g->screen) {
        g->screen = newterm(NULL, stdout, stdin);
        if (!g->screen) return BT_GUIDE_STOP;
        cbreak();
        noecho();
        keypad(stdscr, TRUE);
    } else {
        reset_prog_mode();
        refresh();
    }
    int n_items = m->n + (m->can_go_back ? 1 : 0), sel = 0, choice = BT_GUIDE_STOP;
    for (;;) {
        erase();
        int rows = LINES, cols = COLS;
        /* the tail of the text that fits above the menu */
        int text_rows = rows - n_items - 4;
        if (text_rows < 1) text_rows = 1;
        size_t max_bytes = (size_t)text_rows * (size_t)(cols > 1 ? cols : 1);
        size_t from = m->text_len > max_bytes ? m->text_len - max_bytes : 0;
        mvaddnstr(0, 0, m->text + from, (int)(m->text_len - from));
        mvhline(text_rows + 1, 0, '-', cols);
        for (int i = 0; i < n_items; i++) {
            move(text_rows + 2 + i, 0);
            if (i == sel) attron(A_REVERSE);
            if (i < m->n) {
                printw("%3d  %6.2f%%  '", i + 1, 100.0 * m->probs[i]);
                add_label(m->labels[i]);
                addch('\'');
            } else {
                addstr("     Go back");
            }
            if (i == sel) attroff(A_REVERSE);
        }
        mvaddstr(rows - 1, 0, "up/down: move  enter: choose  q: stop guiding");
        refresh();
        int ch = getch();
        if (ch == KEY_UP || ch == 'k') sel = (sel + n_items - 1) % n_items;
        else if (ch == KEY_DOWN || ch == 'j') sel = (sel + 1) % n_items;
        else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
            choice = sel < m->n ? sel : BT_GUIDE_GO_BACK;
            break;
        } else if (ch == 'q' || ch == ERR) {
            choice = BT_GUIDE_STOP;
            break;
        }
    }
    def_prog_mode();
    endwin();
    return choice;
}

/* ==== vtable ================================================================= */

static int hg_begin(bt_strategy *s, const bt_view *v) {
    (void)v;
    guidance *g = s->ctx;
    g->go_back = g->stopped = false;
    if (!g->p.choose && !(isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)))
        return bt__fail(BT_ERR_UNSUPPORTED, "human-guidance needs a terminal on stdin and stdout");
    return BT_OK;
}

/* Rebuild the text of the continuation for the menu (human speed: no need to be clever). */
static int build_text(guidance *g, const bt_view *v, size_t *len) {
    size_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const char *b;
        size_t l;
        bt_provider_token_text(v->provider, v->tokens[i], &b, &l); /* "" on failure */
        if (n + l + 1 > g->text_cap) {
            size_t nc = (n + l + 1) * 2;
            char *nt = realloc(g->text, nc);
            if (!nt) return BT_ERR_NOMEM;
            g->text = nt;
            g->text_cap = nc;
        }
        memcpy(g->text + n, b, l);
        n += l;
    }
    if (!g->text && !(g->text = calloc(1, g->text_cap = 64))) return BT_ERR_NOMEM;
    g->text[n] = '\0';
    *len = n;
    return BT_OK;
}

static void hg_on_probs(bt_strategy *s, const bt_view *v, bt_candidates *c) {
    guidance *g = s->ctx;
    if (g->stopped || c->n == 0) return;
    int32_t k = bt_candidates_sort_top(c, g->p.top_k);
    double total = 0;
    for (int32_t i = 0; i < c->n; i++) total += c->data[i].p > 0 ? c->data[i].p : 0;
    if (total <= 0 || c->data[0].p / total >= g->p.min_autopass) return;

    bt_token toks[MAX_K];
    float probs[MAX_K];
    char labels_buf[MAX_K][96];
    const char *labels[MAX_K];
    for (int32_t i = 0; i < k; i++) {
        const char *b;
        size_t l;
        toks[i] = c->data[i].id;
        probs[i] = (float)(c->data[i].p / total);
        bt_provider_token_text(v->provider, toks[i], &b, &l); /* "" on failure */
        if (l > sizeof labels_buf[i] - 1) l = sizeof labels_buf[i] - 1;
        memcpy(labels_buf[i], b, l);
        labels_buf[i][l] = '\0';
        labels[i] = labels_buf[i];
    }
    size_t len = 0;
    if (build_text(g, v, &len) != BT_OK) return;
    bt_guidance_menu m = {g->text, len, toks, probs, labels, k,
                          v->n_tokens - v->n_released >= 1};
    int choice = g->p.choose ? g->p.choose(g->p.user, &m) : curses_choose(g, &m);
    if (choice == BT_GUIDE_GO_BACK && m.can_go_back) g->go_back = true;
    else if (choice == BT_GUIDE_STOP) g->stopped = true;
    else if (choice >= 0 && choice < k) bt_candidates_set_p(c, toks[choice], c->data[choice].p * 10000.0f);
}

static int32_t hg_backtrack(bt_strategy *s, const bt_view *v) {
    guidance *g = s->ctx;
    if (!g->go_back) return 0;
    g->go_back = false;
    bt_view_note_rewind(v, s, "the user chose \"Go back\"");
    return v->n_tokens >= 2 ? 2 : v->n_tokens;
}

/* A "Go back" chosen at a step that another strategy of a chain rewound first is void. */
static void hg_on_rewind(bt_strategy *s, const bt_view *v, int32_t n) {
    (void)v, (void)n;
    ((guidance *)s->ctx)->go_back = false;
}

/* Hold everything until the end: "Go back" may go as far as the user likes. */
static int32_t hg_keep_index(bt_strategy *s, const bt_view *v) {
    guidance *g = s->ctx;
    return g->stopped ? v->n_tokens : 0;
}

static void hg_reset(bt_strategy *s) {
    guidance *g = s->ctx;
    if (g->screen) {
        delscreen(g->screen);
        g->screen = NULL;
    }
}

static void hg_free(bt_strategy *s) {
    guidance *g = s->ctx;
    hg_reset(s);
    free(g->text);
    free(g);
}

static const bt_strategy_i guidance_iface = {
    .name = "human-guidance",
    .begin = hg_begin,
    .on_probs = hg_on_probs,
    .backtrack = hg_backtrack,
    .on_rewind = hg_on_rewind,
    .keep_index = hg_keep_index,
    .reset = hg_reset,
    .free = hg_free,
};

bt_strategy *bt_human_guidance_strategy_init(const bt_human_guidance_params *params) {
    bt_human_guidance_params p = params ? *params : bt_human_guidance_default_params();
    if (p.top_k < 1 || p.top_k > MAX_K || !(p.min_autopass >= 0.0f && p.min_autopass <= 1.0f)) {
        bt__fail(BT_ERR_INVALID_ARG, "human-guidance: top_k in [1, %d], min_autopass in [0, 1]", MAX_K);
        return NULL;
    }
    guidance *g = calloc(1, sizeof *g);
    if (!g) {
        bt__fail(BT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    g->p = p;
    bt_strategy *s = bt_strategy_init(&guidance_iface, g);
    if (!s) free(g);
    return s;
}

/* ==== In the catalog (catalog.c): options, described once ===================== */

static const bt_option_info guidance_options[2] = {
    {"top_k", "--menu-k", BT_OPTION_INT, 1, 64, 3, "K", "tokens in the menu (3)", false},
    {"min_autopass", "--min-autopass", BT_OPTION_FLOAT, 0, 1, 1.0, "P",
     "skip the menu when the top p >= P (1.0)", false},
};

static bt_strategy *guidance_create(const bt_strategy_options *o, bt_provider *p) {
    (void)p;
    bt_human_guidance_params hp = bt_human_guidance_default_params();
    hp.top_k = (int32_t)bt__opt_num(o, 0);
    hp.min_autopass = (float)bt__opt_num(o, 1);
    return bt_human_guidance_strategy_init(&hp);
}

const bt__strategy_def bt__human_guidance_def = {
    {"human-guidance", "choose tokens yourself in a terminal menu (arrows, Enter, q)",
     guidance_options, 2, true},
    guidance_create,
};
