/*
 * matcher.c -- Aho-Corasick over bytes, and the per-token text scan built on it.
 */
#include "matcher.h"

#include <stdlib.h>
#include <string.h>

/* ==== The automaton ====================================================== */

#define NONE (-1)

/* One state of the compact automaton. States are numbered in breadth-first order, so
 * the children of a state are consecutive: [first, first + n_child), and their edge bytes
 * sit side by side in edge[] (a lookup reads one short run of bytes). Shallow states,
 * where most walks end, come first and stay in cache. */
typedef struct ac_state {
    int32_t  first;   /* first child */
    int32_t  n_child;
    int32_t  fail;
    int32_t  depth;
    int32_t  out;     /* pattern ending exactly here, or NONE */
    int32_t  dict;    /* nearest state in the fail chain with out != NONE */
} ac_state;

struct bt__automaton {
    ac_state *st;         /* compact form, after the build */
    uint8_t  *edge;       /* per state: the byte on the edge into it */
    int32_t  n;           /* states; 0 is the root */
    int32_t  cap;
    int32_t *first_child; /* child lists (for the root: the dense table is used) */
    int32_t *next_sibling;
    uint8_t *ch;          /* byte on the edge into the state */
    int32_t *fail;
    int32_t *depth;
    int32_t *out;         /* pattern ending exactly here, or NONE */
    int32_t *dict;        /* nearest state in the fail chain with out != NONE */
    int32_t  root_next[256];
    int32_t *dfa;        /* full transitions (fail links resolved) of the shallow states,
                            n_classes per state: dfa[s * n_classes + cls[c]] */
    int32_t  n_shallow;  /* states of depth <= 2: ids [0, n_shallow) */
    uint8_t  cls[256];   /* byte -> class; bytes no pattern uses share class 0 */
    int32_t  n_classes;
    bool     fold;
};

static inline uint8_t fold_byte(const bt__automaton *a, uint8_t c) {
    return (a->fold && c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Child of s on byte c during the build (linked lists). */
static int32_t child(const bt__automaton *a, int32_t s, uint8_t c) {
    if (s == 0) return a->root_next[c];
    for (int32_t k = a->first_child[s]; k != NONE; k = a->next_sibling[k])
        if (a->ch[k] == c) return k;
    return NONE;
}

/* Child of s on byte c in the compact form. */
static inline int32_t child_c(const bt__automaton *a, int32_t s, uint8_t c) {
    if (s == 0) return a->root_next[c];
    const ac_state *st = &a->st[s];
    const uint8_t *e = a->edge + st->first;
    for (int32_t k = 0; k < st->n_child; k++)
        if (e[k] == c) return st->first + k;
    return NONE;
}

static int grow(bt__automaton *a) {
    int32_t nc = a->cap ? a->cap * 2 : 1024;
#define GROW(f)                                                    \
    do {                                                           \
        void *p_ = realloc(a->f, (size_t)nc * sizeof *a->f);        \
        if (!p_) return bt__fail(BT_ERR_NOMEM, "out of memory");    \
        a->f = p_;                                                 \
    } while (0)
    GROW(first_child);
    GROW(next_sibling);
    GROW(ch);
    GROW(fail);
    GROW(depth);
    GROW(out);
    GROW(dict);
#undef GROW
    a->cap = nc;
    return BT_OK;
}

static int32_t new_state(bt__automaton *a, int32_t parent, uint8_t c) {
    if (a->n == a->cap && grow(a) != BT_OK) return NONE;
    int32_t s = a->n++;
    a->first_child[s] = NONE;
    a->ch[s] = c;
    a->fail[s] = 0;
    a->depth[s] = parent >= 0 ? a->depth[parent] + 1 : 0;
    a->out[s] = NONE;
    a->dict[s] = NONE;
    if (parent == 0) {
        a->root_next[c] = s;
        a->next_sibling[s] = NONE;
    } else if (parent > 0) {
        a->next_sibling[s] = a->first_child[parent];
        a->first_child[parent] = s;
    } else {
        a->next_sibling[s] = NONE;
    }
    return s;
}

void bt__automaton_free(bt__automaton *a) {
    if (!a) return;
    free(a->st);
    free(a->edge);
    free(a->dfa);
    free(a->first_child);
    free(a->next_sibling);
    free(a->ch);
    free(a->fail);
    free(a->depth);
    free(a->out);
    free(a->dict);
    free(a);
}

int32_t bt__automaton_n_states(const bt__automaton *a) { return a->n; }

int bt__automaton_build(const char *const *phrases, int32_t n, bool fold, bt__automaton **out) {
    *out = NULL;
    bt__automaton *a = calloc(1, sizeof *a);
    if (!a) return bt__fail(BT_ERR_NOMEM, "out of memory");
    a->fold = fold;
    for (int c = 0; c < 256; c++) a->root_next[c] = NONE;
    if (new_state(a, -1, 0) != 0) goto nomem;

    /* the trie */
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)phrases[i];
        size_t len = strlen(phrases[i]);
        int32_t s = 0;
        for (size_t k = 0; k < len; k++) {
            uint8_t c = fold_byte(a, p[k]);
            int32_t t = child(a, s, c);
            if (t == NONE && (t = new_state(a, s, c)) == NONE) goto nomem;
            s = t;
        }
        if (s != 0 && a->out[s] == NONE) a->out[s] = i;
    }

    /* failure and dictionary links, breadth first (the state array doubles as queue
     * storage: BFS order is computed into `order`) */
    int32_t *order = malloc((size_t)a->n * sizeof *order);
    if (!order) goto nomem;
    int32_t head = 0, tail = 0;
    for (int c = 0; c < 256; c++)
        if (a->root_next[c] != NONE) order[tail++] = a->root_next[c];
    while (head < tail) {
        int32_t u = order[head++];
        for (int32_t v = a->first_child[u]; v != NONE; v = a->next_sibling[v]) {
            uint8_t c = a->ch[v];
            int32_t f = a->fail[u], g;
            while ((g = child(a, f, c)) == NONE && f != 0) f = a->fail[f];
            a->fail[v] = (g != NONE && g != v) ? g : 0;
            int32_t fv = a->fail[v];
            a->dict[v] = a->out[fv] != NONE ? fv : a->dict[fv];
            order[tail++] = v;
        }
    }
    /* Compact form in breadth-first order (root first, then `order`). */
    int32_t *newid = malloc((size_t)a->n * sizeof *newid);
    a->st = malloc((size_t)a->n * sizeof *a->st);
    a->edge = malloc((size_t)a->n);
    if (!newid || !a->st || !a->edge) {
        free(order);
        free(newid);
        goto nomem;
    }
    newid[0] = 0;
    for (int32_t i = 0; i < tail; i++) newid[order[i]] = i + 1;
    for (int32_t i = -1; i < tail; i++) {
        int32_t old = i < 0 ? 0 : order[i], id = newid[old];
        ac_state *st = &a->st[id];
        st->fail = newid[a->fail[old]];
        st->depth = a->depth[old];
        st->out = a->out[old];
        st->dict = a->dict[old] == NONE ? NONE : newid[a->dict[old]];
        a->edge[id] = a->ch[old];
        st->first = 0;
        st->n_child = 0;
        int32_t lo = INT32_MAX;
        for (int32_t k = a->first_child[old]; old != 0 && k != NONE; k = a->next_sibling[k]) {
            if (newid[k] < lo) lo = newid[k];
            st->n_child++;
        }
        if (st->n_child) st->first = lo;
    }
    for (int c = 0; c < 256; c++)
        if (a->root_next[c] != NONE) a->root_next[c] = newid[a->root_next[c]];
    free(newid);
    free(order);
    /* Dense rows for the states of depth <= 2, where most walks stay and every fail walk
     * ends: a step from there is one lookup. Rows are indexed by byte class (the bytes the
     * patterns use, plus one class for all others), which keeps them small enough for the
     * cache even for 50,000 phrases. */
    bool used[256] = {false};
    for (int32_t q = 1; q < a->n; q++) used[a->edge[q]] = true;
    a->n_classes = 1;
    for (int c = 0; c < 256; c++) /* byte 0 ends C strings: at most 255 used bytes */
        a->cls[c] = used[c] ? (uint8_t)a->n_classes++ : 0;
    a->n_shallow = 1;
    while (a->n_shallow < a->n && a->st[a->n_shallow].depth <= 2) a->n_shallow++;
    a->dfa = malloc((size_t)a->n_shallow * (size_t)a->n_classes * sizeof *a->dfa);
    if (!a->dfa) goto nomem;
    int32_t rep[256]; /* a byte of each class */
    for (int c = 255; c >= 0; c--) rep[a->cls[c]] = c;
    for (int32_t q = 0; q < a->n_shallow; q++)
        for (int32_t k = 0; k < a->n_classes; k++) {
            int32_t t = NONE;
            if (k > 0) t = child_c(a, q, (uint8_t)rep[k]);
            int32_t *row = a->dfa + (size_t)q * (size_t)a->n_classes;
            /* breadth-first order: the fail state's row (shallower) is already done */
            row[k] = t != NONE ? t : q == 0 ? 0 : a->dfa[(size_t)a->st[q].fail * (size_t)a->n_classes + k];
        }
    /* the build-time arrays are no longer needed */
    free(a->first_child), a->first_child = NULL;
    free(a->next_sibling), a->next_sibling = NULL;
    free(a->ch), a->ch = NULL;
    free(a->fail), a->fail = NULL;
    free(a->depth), a->depth = NULL;
    free(a->out), a->out = NULL;
    free(a->dict), a->dict = NULL;
    *out = a;
    return BT_OK;
nomem:
    bt__automaton_free(a);
    return bt__fail(BT_ERR_NOMEM, "out of memory building the phrase automaton");
}

/* One transition. */
static inline int32_t step(const bt__automaton *a, int32_t s, uint8_t c) {
    c = fold_byte(a, c);
    for (;;) {
        if (s < a->n_shallow) return a->dfa[(size_t)s * (size_t)a->n_classes + a->cls[c]];
        int32_t t = child_c(a, s, c);
        if (t != NONE) return t;
        s = a->st[s].fail;
    }
}

/* ==== The scan =========================================================== */

static inline bool is_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

int bt__scan_begin(bt__scan *s, const bt__automaton *a, bool whole_word, int32_t max_tokens,
                   const bt_provider *p) {
    size_t longest = 1;
    int32_t nv = bt_provider_n_vocab(p);
    for (bt_token t = 0; t < nv; t++) {
        const char *b;
        size_t len;
        if (p->iface->token_text(p->ctx, t, &b, &len) == BT_OK && len > longest) longest = len;
    }
    if ((double)longest * max_tokens > (double)INT32_MAX / 2)
        return bt__fail(BT_ERR_INVALID_ARG, "context too large for the phrase scan");
    int32_t cap = (int32_t)longest * max_tokens + 1;
    if (s->max_tokens < max_tokens || s->cap < cap) {
        bt__scan_release(s);
        s->text = malloc((size_t)cap);
        s->tok_end = malloc(((size_t)max_tokens + 1) * sizeof *s->tok_end);
        s->state = malloc(((size_t)max_tokens + 1) * sizeof *s->state);
        s->pending = malloc(((size_t)max_tokens + 1) * sizeof *s->pending);
        if (!s->text || !s->tok_end || !s->state || !s->pending) {
            bt__scan_release(s);
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        s->cap = cap;
        s->max_tokens = max_tokens;
    }
    s->a = a;
    s->whole_word = whole_word;
    s->len = 0;
    s->n_tokens = 0;
    s->min_start = 0;
    s->skip_tokens = 0;
    return BT_OK;
}

void bt__scan_release(bt__scan *s) {
    free(s->text);
    free(s->tok_end);
    free(s->state);
    free(s->pending);
    memset(s, 0, sizeof *s);
}

/* Is [start, end) a whole word? `after` is the byte after it, or -1 at the end. */
static bool word_ok(const bt__scan *s, int32_t start, int32_t end, int after) {
    const uint8_t *t = (const uint8_t *)s->text;
    if (is_word(t[start]) && start > 0 && is_word(t[start - 1])) return false;
    if (is_word(t[end - 1]) && after >= 0 && is_word((uint8_t)after)) return false;
    return true;
}

/* Keep the earlier-starting of two matches. */
static inline void earliest(bt__match *best, int32_t pattern, int32_t start, int32_t end) {
    if (best->pattern == NONE || start < best->start) *best = (bt__match){pattern, start, end};
}

/* The first byte a match may start at: past the skipped tokens and min_start. While the
 * skipped tokens are still being fed, nothing counts. */
static int32_t first_allowed(const bt__scan *s) {
    if (s->n_tokens < s->skip_tokens) return INT32_MAX;
    int32_t b = s->skip_tokens > 0 ? s->tok_end[s->skip_tokens - 1] : 0;
    return b > s->min_start ? b : s->min_start;
}

/* Feed one token's bytes; report completed matches into *best. */
static void feed_token(bt__scan *s, const char *bytes, size_t len, bt__match *best) {
    const bt__automaton *a = s->a;
    int32_t st = s->n_tokens > 0 ? s->state[s->n_tokens - 1] : 0;
    bt__match pend = s->n_tokens > 0 ? s->pending[s->n_tokens - 1] : (bt__match){NONE, 0, 0};
    int32_t allowed = first_allowed(s);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)bytes[i];
        if (pend.pattern != NONE) { /* the byte after a whole-word candidate decides it */
            if (!is_word(c) || !is_word((uint8_t)s->text[pend.end - 1]))
                earliest(best, pend.pattern, pend.start, pend.end);
            pend.pattern = NONE;
        }
        s->text[s->len++] = (char)c;
        st = step(a, st, c);
        int32_t end = s->len;
        for (int32_t k = a->st[st].out != NONE ? st : a->st[st].dict; k != NONE; k = a->st[k].dict) {
            int32_t pat = a->st[k].out;
            int32_t start = end - a->st[k].depth;
            if (start < allowed) continue;
            if (!s->whole_word) {
                earliest(best, pat, start, end);
            } else if (word_ok(s, start, end, -1)) {
                /* the end boundary needs the next byte: wait for it */
                if (pend.pattern == NONE || start < pend.start) pend = (bt__match){pat, start, end};
            }
        }
    }
    s->tok_end[s->n_tokens] = s->len;
    s->state[s->n_tokens] = st;
    s->pending[s->n_tokens] = pend;
    s->n_tokens++;
}

bt__match bt__scan_sync(bt__scan *s, const bt_view *v, bool at_end) {
    bt__match best = {NONE, 0, 0};
    if (v->n_tokens < s->n_tokens) { /* rewound */
        s->n_tokens = v->n_tokens;
        s->len = s->n_tokens > 0 ? s->tok_end[s->n_tokens - 1] : 0;
    }
    while (s->n_tokens < v->n_tokens && s->n_tokens < s->max_tokens) {
        const char *b = "";
        size_t len = 0;
        bt_provider_token_text(v->provider, v->tokens[s->n_tokens], &b, &len);
        feed_token(s, b, len, &best);
    }
    if (at_end && s->n_tokens > 0) {
        bt__match pend = s->pending[s->n_tokens - 1];
        if (pend.pattern != NONE) earliest(&best, pend.pattern, pend.start, pend.end);
    }
    return best;
}

int32_t bt__scan_hold_from(const bt__scan *s) {
    if (s->n_tokens == 0) return 0;
    int32_t from = s->len - s->a->st[s->state[s->n_tokens - 1]].depth;
    bt__match pend = s->pending[s->n_tokens - 1];
    if (pend.pattern != NONE && pend.start < from) from = pend.start;
    int32_t allowed = first_allowed(s);
    if (allowed > s->len) return s->len;
    return from > allowed ? from : allowed;
}

int32_t bt__scan_token_at(const bt__scan *s, int32_t b) {
    /* binary search for the first token whose end is past b */
    int32_t lo = 0, hi = s->n_tokens;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (s->tok_end[mid] > b) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}
