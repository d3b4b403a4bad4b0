/*
 * matcher.c -- Aho-Corasick over bytes, and the per-token text scan built on it, on the
 * match text: Unicode case folded (utf8proc) or as is, character by character (see
 * matcher.h for units, folding, whole words and coordinates).
 */
#include "matcher.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ==== Units, folding, word classes ======================================= */

/* Match-text bytes one unit can become: full case folding gives at most 3 code points of
 * at most 4 bytes (6 bytes in practice: U+0390 -> U+03B9 U+0308 U+0301). */
#define UNIT_MAX 12

/* Length of the unit at s[0..n), n >= 1: k > 0 for a complete valid character of k bytes;
 * -k when the k bytes up to s[n] are a valid but incomplete character (more may come);
 * 0 when s[0] starts no valid character here (it is a unit of one byte). The rules of
 * utf8.c: no overlongs, no surrogates, nothing above U+10FFFF. */
static int unit_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
            : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -i;
        uint8_t d = s[i];
        if ((d & 0xC0) != 0x80) return 0;
        if (i == 1 && ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) ||
                       (c == 0xF0 && d < 0x90) || (c == 0xF4 && d > 0x8F)))
            return 0;
    }
    return len;
}

static int32_t decode_cp(const uint8_t *s, int k) {
    switch (k) {
    case 1: return s[0];
    case 2: return (int32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (int32_t)(s[0] & 0x0F) << 12 | (int32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    default:
        return (int32_t)(s[0] & 0x07) << 18 | (int32_t)(s[1] & 0x3F) << 12 |
               (int32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
}

/* A word character: a letter (L*), a combining mark (M*), a decimal digit (Nd) or '_'. */
static bool word_cp(int32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND;
}

/* The match text of the unit u[0..k) (k from unit_len; k <= 0: the lone byte u[0]).
 * Writes its bytes to out (at most UNIT_MAX; NULL: not wanted) and their word classes to
 * cls (NULL: not wanted). Returns its length; *simple: one character as long as the unit,
 * so offsets inside it map one to one. Invalid bytes stay as they are (class 0). */
static int unit_text(bool fold, const uint8_t *u, int k, uint8_t *out, uint8_t *cls,
                     bool *simple) {
    *simple = true;
    if (k <= 0) {
        if (out) out[0] = u[0];
        if (cls) cls[0] = 0;
        return 1;
    }
    int32_t c = decode_cp(u, k);
    if (!fold || c < 0x80) {
        if (out) {
            memcpy(out, u, (size_t)k);
            if (fold && c >= 'A' && c <= 'Z') out[0] = (uint8_t)(c + 32);
        }
        if (cls) memset(cls, word_cp(c), (size_t)k);
        return k;
    }
    utf8proc_int32_t f[4];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(c, f, 4, UTF8PROC_CASEFOLD, &boundclass);
    if (n < 1 || n > 3) { /* never happens with utf8proc 2.x; keep the character */
        f[0] = c;
        n = 1;
    }
    uint8_t tmp[UNIT_MAX];
    int w = 0;
    for (utf8proc_ssize_t i = 0; i < n; i++) {
        int l = (int)utf8proc_encode_char(f[i], tmp + w);
        if (cls) memset(cls + w, word_cp(f[i]), (size_t)l);
        w += l;
    }
    if (out) memcpy(out, tmp, (size_t)w);
    *simple = n == 1 && w == k;
    return w;
}

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

    /* the trie, over the phrases' match text */
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)phrases[i];
        size_t len = strlen(phrases[i]);
        if (!bt__utf8_valid(phrases[i], len)) {
            bt__automaton_free(a);
            return bt__fail(BT_ERR_UTF8, "phrase %d is not valid UTF-8", i);
        }
        int32_t s = 0;
        for (size_t q = 0; q < len;) {
            uint8_t buf[UNIT_MAX];
            int w = 1, k = 1;
            if (p[q] < 0x80) { /* ASCII: folding is lower case */
                buf[0] = (fold && p[q] >= 'A' && p[q] <= 'Z') ? (uint8_t)(p[q] + 32) : p[q];
            } else {
                bool simple;
                k = unit_len(p + q, len - q); /* valid: k > 0 */
                w = unit_text(fold, p + q, k, buf, NULL, &simple);
            }
            for (int j = 0; j < w; j++) {
                int32_t t = child(a, s, buf[j]);
                if (t == NONE && (t = new_state(a, s, buf[j])) == NONE) goto nomem;
                s = t;
            }
            q += (size_t)k;
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

/* One transition (c is match text: already folded). */
static inline int32_t step(const bt__automaton *a, int32_t s, uint8_t c) {
    for (;;) {
        if (s < a->n_shallow) return a->dfa[(size_t)s * (size_t)a->n_classes + a->cls[c]];
        int32_t t = child_c(a, s, c);
        if (t != NONE) return t;
        s = a->st[s].fail;
    }
}


/* ==== The vocabulary, folded once ======================================== */

#define VT_SIMPLE 0x10 /* bt__vtok.info: the core's offsets map one to one            */
#define VT_CACHED 0x20 /* bt__vtok.info: fits the compact form (the fast path)        */
#define VT_INLINE 0x40 /* bt__vtok.info: the core's match text is in the entry        */
#define TF_SIMPLE 0x01 /* bt__scan_tok.flags: its match text maps one to one          */
#define POOL_PAD  16   /* the pool and the match text are read and written 16 at a time */

static void vf_free(bt__vocab_fold *f) {
    free(f->tok);
    free((void *)f->src);
    free(f->pool);
    free(f->cls);
    memset(f, 0, sizeof *f);
}

static int token_text(const bt_provider *p, bt_token t, const char **b, size_t *len) {
    if (p->iface->token_text(p->ctx, t, b, len) != BT_OK || (*len && !*b)) {
        *b = "";
        *len = 0;
    }
    return BT_OK;
}

/* Split every token as lead | core | tail and precompute its core's match text and word
 * classes. Reused when the provider (its serial), the vocabulary size and the folding are
 * what they were: the provider contract keeps a token's bytes where they are until the
 * provider is freed. A sample of 1,024 tokens spread over the vocabulary is checked
 * (pointer and length) against a provider that breaks it; every token was, once a
 * generation: 128k calls through the vtable for Llama 3's vocabulary, about 1 ms in C
 * (measured in the server) and a Python call each for a provider written in Python. */
static int vf_build(bt__vocab_fold *f, const bt_provider *p, bool fold) {
    int32_t nv = bt_provider_n_vocab(p);
    if (f->ready && f->prov_serial == p->serial_ && f->n_vocab == nv && f->fold == fold) {
        bool same = true;
        int32_t step = nv > 1024 ? nv / 1024 : 1;
        for (bt_token t = nv - 1; t >= 0 && same; t -= step) {
            const char *b;
            size_t len;
            token_text(p, t, &b, &len);
            same = b == f->src[t] && (len < UINT16_MAX ? len : UINT16_MAX) == f->tok[t].len;
        }
        if (same) return BT_OK;
    }
    vf_free(f);
    if (nv < 0) nv = 0;
    size_t cap = (size_t)nv * 8 + 64, used = 0;
    f->tok = calloc((size_t)nv + 1, sizeof *f->tok);
    f->src = calloc((size_t)nv + 1, sizeof *f->src);
    f->cls = malloc(cap + POOL_PAD);
    f->pool = malloc(cap + POOL_PAD);
    if (!f->tok || !f->src || !f->cls || !f->pool) goto nomem;
    for (bt_token t = 0; t < nv; t++) {
        const char *b;
        size_t len;
        token_text(p, t, &b, &len);
        if (len > (1u << 24)) {
            vf_free(f);
            return bt__fail(BT_ERR_INVALID_ARG, "token %d is too long for the phrase scan", t);
        }
        if ((int32_t)len > f->longest) f->longest = (int32_t)len;
        const uint8_t *u = (const uint8_t *)b;
        /* lead: continuation bytes that may end a character of an earlier token (more
         * than 3 never can: those stay lone bytes, as in the core) */
        size_t lead = 0;
        while (lead < 3 && lead < len && (u[lead] & 0xC0) == 0x80) lead++;
        /* tail: an incomplete character at the end (its lead byte is the last
         * non-continuation byte, at most 3 bytes from the end) */
        size_t tail = 0;
        for (size_t q = len; q > lead && len - q < 3;) {
            q--;
            if ((u[q] & 0xC0) != 0x80) {
                if (unit_len(u + q, len - q) < 0) tail = len - q;
                break;
            }
        }
        if (used + 3 * len + UNIT_MAX > cap) {
            cap = (used + 3 * len + UNIT_MAX) * 2;
            uint8_t *c2 = realloc(f->cls, cap + POOL_PAD);
            if (!c2) goto nomem;
            f->cls = c2;
            char *p2 = realloc(f->pool, cap + POOL_PAD);
            if (!p2) goto nomem;
            f->pool = p2;
        }
        bool simple = true;
        size_t start = used;
        for (size_t q = lead; q < len - tail;) {
            int k = unit_len(u + q, len - q);
            bool s1;
            used += (size_t)unit_text(fold, u + q, k, (uint8_t *)f->pool + used, f->cls + used, &s1);
            simple &= s1;
            q += k > 0 ? (size_t)k : 1;
        }
        size_t mlen = used - start;
        if ((int32_t)mlen > f->longest_m) f->longest_m = (int32_t)mlen;
        if (used > INT32_MAX / 2) {
            vf_free(f);
            return bt__fail(BT_ERR_INVALID_ARG, "vocabulary too large for the phrase scan");
        }
        bt__vtok *e = &f->tok[t]; /* a longer token takes the slow path */
        f->src[t] = b;
        e->off = (uint32_t)start;
        e->len = (uint16_t)(len < UINT16_MAX ? len : UINT16_MAX);
        e->mlen = (uint8_t)(mlen <= UINT8_MAX ? mlen : 0);
        e->info = (uint8_t)(lead | tail << 2 | (simple ? VT_SIMPLE : 0) |
                            (len < UINT16_MAX && mlen <= UINT8_MAX ? VT_CACHED : 0));
        if (mlen <= sizeof e->inl) { /* short: all in the entry, none in the pool */
            memcpy(e->inl, f->pool + start, mlen);
            uint32_t bits = 0;
            for (size_t j = 0; j < mlen; j++) bits |= (uint32_t)f->cls[start + j] << j;
            e->off = bits;
            e->info |= VT_INLINE;
            used = start;
        }
    }
    memset(f->pool + used, 0, POOL_PAD);
    memset(f->cls + used, 0, POOL_PAD);
    f->prov_serial = p->serial_;
    f->n_vocab = nv;
    f->fold = fold;
    f->ready = true;
    return BT_OK;
nomem:
    vf_free(f);
    return bt__fail(BT_ERR_NOMEM, "out of memory folding the vocabulary");
}

/* ==== The scan =========================================================== */

static const bt__match NO_MATCH = {NONE, 0, 0, 0, 0};
static const bt__pend NO_PEND = {NONE, 0, 0};

static void release_buffers(bt__scan *s) {
    free(s->text);
    free(s->mtext);
    free(s->mcls);
    free(s->tk ? s->tk - 1 : NULL);
    free(s->pending);
    s->text = s->mtext = NULL;
    s->mcls = NULL;
    s->tk = NULL;
    s->pending = NULL;
    s->cap = s->mcap = s->max_tokens = 0;
}

int bt__scan_begin(bt__scan *s, const bt__automaton *a, bool whole_word, int32_t max_tokens,
                   const bt_provider *p) {
    int rc = vf_build(&s->vf, p, a->fold);
    if (rc != BT_OK) return rc;
    int64_t longest = s->vf.longest > 1 ? s->vf.longest : 1;
    /* a token's match text: its core, plus what a character begun in earlier tokens and
     * its own leading bytes become (at most 6 units of UNIT_MAX bytes) */
    int64_t mlongest = (int64_t)s->vf.longest_m + 6 * UNIT_MAX;
    if ((double)mlongest * max_tokens > (double)INT32_MAX / 2 ||
        (double)longest * max_tokens > (double)INT32_MAX / 2)
        return bt__fail(BT_ERR_INVALID_ARG, "context too large for the phrase scan");
    int32_t cap = (int32_t)(longest * max_tokens + 1), mcap = (int32_t)(mlongest * max_tokens + 1);
    if (s->max_tokens < max_tokens || s->cap < cap || s->mcap < mcap || (whole_word && !s->mcls)) {
        release_buffers(s);
        size_t nt = (size_t)max_tokens + 1;
        s->text = malloc((size_t)cap);
        s->mtext = malloc((size_t)mcap + POOL_PAD);
        s->mcls = whole_word ? malloc((size_t)mcap + POOL_PAD) : NULL;
        bt__scan_tok *tk = calloc(nt + 1, sizeof *tk);
        s->tk = tk ? tk + 1 : NULL;
        s->pending = whole_word ? malloc(nt * sizeof *s->pending) : NULL;
        if (!s->text || !s->mtext || (whole_word && (!s->mcls || !s->pending)) || !s->tk) {
            release_buffers(s);
            return bt__fail(BT_ERR_NOMEM, "out of memory");
        }
        s->cap = cap;
        s->mcap = mcap;
        s->max_tokens = max_tokens;
    }
    s->a = a;
    s->whole_word = whole_word;
    s->len = 0;
    s->text_filled = 0;
    s->n_tokens = 0;
    s->min_start = 0;
    s->skip_tokens = 0;
    s->sync_from = 0;
    s->sync_at_end = false;
    return BT_OK;
}

void bt__scan_release(bt__scan *s) {
    release_buffers(s);
    vf_free(&s->vf);
    memset(s, 0, sizeof *s);
}

void bt__scan_truncate(bt__scan *s, int32_t n) {
    if (n < 0) n = 0;
    if (n >= s->n_tokens) return;
    s->n_tokens = n;
    s->len = s->tk[n - 1].end;
    if (s->text_filled > n) s->text_filled = n;
    if (s->sync_from > n) s->sync_from = n;
}

/* Copy the bytes of tokens [text_filled, n) into the text. */
static void fill_text(bt__scan *s, int32_t n) {
    for (int32_t t = s->text_filled; t < n; t++) { /* only cached tokens wait here */
        int32_t id = s->tk[t].id;
        memcpy(s->text + s->tk[t - 1].end, s->vf.src[id], s->vf.tok[id].len);
    }
    if (n > s->text_filled) s->text_filled = n;
}

const char *bt__scan_text(bt__scan *s) {
    fill_text(s, s->n_tokens);
    return s->text;
}

/* ---- from the match text back to the original text ---- */

/* The token, among the first n, whose match text holds byte b: mostly one of the last. */
static int32_t mtoken_at(const bt__scan *s, int32_t b, int32_t n) {
    int32_t t = n - 1;
    for (int k = 0; k < 4; k++, t--)
        if (t <= 0 || s->tk[t - 1].mend <= b) return t > 0 ? t : 0;
    int32_t lo = 0, hi = t + 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (s->tk[mid].mend > b) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* The original range [*os, *oe) of the unit whose match text holds byte b, token t's: its
 * units walked again (the rare case: a character whose folding changes its length or
 * makes several, or one begun in an earlier token). The text is filled up to t. */
static void unit_of(const bt__scan *s, int32_t t, int32_t b, int32_t *os, int32_t *oe) {
    const uint8_t *x = (const uint8_t *)s->text;
    int32_t m = s->tk[t - 1].mend, u = s->tk[t - 1].uend;
    while (u < s->tk[t].uend) {
        int k = unit_len(x + u, (size_t)(s->tk[t].end - u));
        bool simple;
        int ml = unit_text(s->a->fold, x + u, k, NULL, NULL, &simple);
        int32_t ul = k > 0 ? k : 1;
        if (b < m + ml) {
            *os = u;
            *oe = u + ul;
            return;
        }
        u += ul;
        m += ml;
    }
    *os = *oe = s->tk[t].uend; /* not reached */
}

/* Original offsets of match-text byte b (of the first n tokens'): the start of the unit
 * holding it (end: false) or the end of the unit holding byte b - 1 (end: true).
 * Matches and partial matches start and end on characters (phrases are valid UTF-8), so
 * in a one-to-one token (always without folding) the offset carries over. */
static int32_t orig_slow(bt__scan *s, int32_t b, int32_t n, bool end) {
    int32_t t = mtoken_at(s, b - end, n);
    if (s->tk[t].flags & TF_SIMPLE) return s->tk[t - 1].uend + (b - s->tk[t - 1].mend);
    fill_text(s, t + 1);
    int32_t os, oe;
    unit_of(s, t, b - end, &os, &oe);
    return end ? oe : os;
}

static inline int32_t orig_off(bt__scan *s, int32_t b, int32_t n, bool end) {
    const bt__scan_tok *last = &s->tk[n - 1];
    if (b - end >= s->tk[n - 2].mend && (last->flags & TF_SIMPLE)) /* in the last token */
        return s->tk[n - 2].uend + (b - s->tk[n - 2].mend);
    return orig_slow(s, b, n, end);
}

static inline int32_t orig_start(bt__scan *s, int32_t b, int32_t n) { return orig_off(s, b, n, false); }
static inline int32_t orig_end(bt__scan *s, int32_t e, int32_t n) { return orig_off(s, e, n, true); }

/* ---- matching ---- */

/* The first byte (original text) a match may start at while token t is fed: past the
 * skipped tokens and min_start. While the skipped tokens are fed, nothing counts. */
static inline int32_t first_allowed(const bt__scan *s, int32_t t) {
    if (t < s->skip_tokens) return INT32_MAX;
    int32_t b = s->skip_tokens > 0 ? s->tk[s->skip_tokens - 1].end : 0;
    return b > s->min_start ? b : s->min_start;
}

static inline bool allowed_at(bt__scan *s, int32_t ms, int32_t allowed, int32_t n) {
    if (allowed == 0) return true;
    if (allowed == INT32_MAX) return false;
    return orig_start(s, ms, n) >= allowed;
}

/* Is (ms, me) after `after` in the order of matches (NULL: everything is)? */
static inline bool later(const bt__match *after, int32_t ms, int32_t me) {
    return !after || ms > after->mstart || (ms == after->mstart && me > after->mend);
}

/* Keep the earliest of two matches, among those after `after`. */
static inline void consider(bt__match *best, const bt__match *after, int32_t pattern,
                            int32_t ms, int32_t me) {
    if (!later(after, ms, me)) return;
    if (best->pattern == NONE || ms < best->mstart || (ms == best->mstart && me < best->mend))
        *best = (bt__match){pattern, 0, 0, ms, me};
}

/* Whole words: may a match start at match-text byte ms? */
static inline bool start_ok(const uint8_t *cls, int32_t ms) {
    return !(cls[ms] && ms > 0 && cls[ms - 1]);
}

/* The patterns ending at match-text byte `end` in state st: whole-word candidates
 * (start boundary checked) go to *pend (the earliest start), others to *best. */
static inline __attribute__((always_inline)) void
outputs(bt__scan *s, int32_t st, int32_t end, int32_t allowed, int32_t n,
        const bt__match *after, bt__pend *pend, bt__match *best) {
    const bt__automaton *a = s->a;
    for (int32_t k = a->st[st].out != NONE ? st : a->st[st].dict; k != NONE; k = a->st[k].dict) {
        int32_t ms = end - a->st[k].depth;
        if (!allowed_at(s, ms, allowed, n)) continue;
        if (!s->whole_word) {
            consider(best, after, a->st[k].out, ms, end);
        } else if (start_ok(s->mcls, ms) && later(after, ms, end) &&
                   (pend->pattern == NONE || ms < pend->mstart)) {
            /* the end boundary needs the next unit: wait for it */
            *pend = (bt__pend){a->st[k].out, ms, end};
        }
    }
}

/* Run the automaton over match-text bytes [from, to) of token n - 1. */
static inline __attribute__((always_inline)) void
walk(bt__scan *s, int32_t n, int32_t from, int32_t to, int32_t *pst, bt__pend *ppend,
     int32_t allowed, const bt__match *after, bt__match *best) {
    const bt__automaton *a = s->a;
    const uint8_t *mt = (const uint8_t *)s->mtext, *cls = s->mcls;
    int32_t st = *pst;
    bt__pend pend = *ppend;
    for (int32_t i = from; i < to; i++) {
        if (pend.pattern != NONE) { /* the unit after a whole-word candidate decides it */
            if (!cls[i] || !cls[pend.mend - 1]) consider(best, after, pend.pattern, pend.mstart, pend.mend);
            pend.pattern = NONE;
        }
        st = step(a, st, mt[i]);
        if (a->st[st].out != NONE || a->st[st].dict != NONE)
            outputs(s, st, i + 1, allowed, n, after, &pend, best);
    }
    *pst = st;
    *ppend = pend;
}

/* Turn complete units of the text from *u on (up to `limit`) into match text at m; stops
 * at an incomplete character. Returns the new match-text length. The text must be
 * filled up to the current token. */
static int32_t emit_units(bt__scan *s, int32_t *u, int32_t limit, int32_t m, int32_t *flags) {
    const uint8_t *x = (const uint8_t *)s->text;
    bool fold = s->a->fold;
    while (*u < limit) {
        int k = unit_len(x + *u, (size_t)(s->len - *u));
        if (k < 0) break; /* held until its last byte arrives */
        if (m + UNIT_MAX > s->mcap) break; /* only if the provider's texts changed */
        bool simple;
        m += unit_text(fold, x + *u, k, (uint8_t *)s->mtext + m, s->mcls ? s->mcls + m : NULL,
                       &simple);
        if (!simple) *flags &= ~TF_SIMPLE;
        *u += k > 0 ? k : 1;
    }
    return m;
}

/* Word classes: bit j of the low byte to byte j (little endian), 0 or 1. */
static inline uint64_t expand_bits(uint32_t bits) {
    uint64_t y = ((uint64_t)(bits & 0xFF) * 0x0101010101010101ull) & 0x8040201008040201ull;
    uint64_t w = ((y + 0x7F7F7F7F7F7F7F7Full) & 0x8080808080808080ull) >> 7;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Copy n bytes (n <= 255) from a padded source to a padded destination. */
static inline void copy_padded(void *dst, const void *src, uint32_t n) {
    uint8_t *d = dst;
    const uint8_t *p = src;
    for (uint32_t i = 0; i < n; i += 16) {
        uint64_t w0, w1;
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + i + 8, 8);
        memcpy(d + i, &w0, 8);
        memcpy(d + i + 8, &w1, 8);
    }
}

/* Feed token `id` (bytes/len: its text when it is not in the folded vocabulary, else
 * NULL): its bytes to the text, its units to the match text, that to the automaton;
 * report completed matches into *best. */
static inline __attribute__((always_inline)) void
feed_token(bt__scan *s, bt_token id, const char *bytes, size_t len, bt__match *best) {
    const int32_t t = s->n_tokens;
    const bt__scan_tok *prev = &s->tk[t - 1];
    bt__scan_tok *cur = &s->tk[t];
    const bt__vtok *e = bytes ? NULL : &s->vf.tok[id];
    const int32_t t0 = prev->end;
    int32_t u = prev->uend, m = prev->mend, flags = TF_SIMPLE;
    const int32_t m0 = m;
    if (e) { /* the text is filled later, when someone reads it */
        cur->end = s->len = t0 + e->len;
        cur->id = id;
        int32_t core = t0 + (e->info & 3);
        if (u < core) { /* a character begun in earlier tokens; this token's lead bytes */
            fill_text(s, t + 1);
            m = emit_units(s, &u, core, m, &flags);
        }
        if (u == core) { /* the core, as folded at load */
            if (e->info & VT_INLINE) {
                memcpy(s->mtext + m, e->inl, 8);
                if (s->mcls) {
                    uint64_t w = expand_bits(e->off);
                    memcpy(s->mcls + m, &w, 8);
                }
            } else {
                copy_padded(s->mtext + m, s->vf.pool + e->off, e->mlen);
                if (s->mcls) copy_padded(s->mcls + m, s->vf.cls + e->off, e->mlen);
            }
            m += e->mlen;
            u = cur->end - ((e->info >> 2) & 3);
            if (!(e->info & VT_SIMPLE)) flags = 0;
        } else if (u > core) { /* only if the provider's texts changed */
            m = emit_units(s, &u, cur->end, m, &flags);
        }
    } else {
        fill_text(s, t);
        if (len > (size_t)(s->cap - 1 - t0)) len = (size_t)(s->cap - 1 - t0); /* ditto */
        memcpy(s->text + t0, bytes, len);
        cur->end = s->len = t0 + (int32_t)len;
        cur->id = id;
        s->text_filled = t + 1;
        m = emit_units(s, &u, cur->end, m, &flags);
    }
    cur->uend = u;
    cur->mend = m;
    cur->flags = flags;
    int32_t st = prev->state;
    bt__pend pend = s->whole_word && t > 0 ? s->pending[t - 1] : NO_PEND;
    walk(s, t + 1, m0, m, &st, &pend, first_allowed(s, t), NULL, best);
    cur->state = st;
    if (s->whole_word) s->pending[t] = pend;
    s->n_tokens = t + 1;
}

/* Fill in a match's original range. */
static bt__match finish(bt__scan *s, bt__match m) {
    m.start = orig_start(s, m.mstart, s->n_tokens);
    m.end = orig_end(s, m.mend, s->n_tokens);
    return m;
}

bt__match bt__scan_sync(bt__scan *s, const bt_view *v, bool at_end) {
    bt__match best = NO_MATCH;
    if (v->n_tokens < s->n_tokens) bt__scan_truncate(s, v->n_tokens); /* rewound */
    if (s->text_filled > s->n_tokens) s->text_filled = s->n_tokens; /* n_tokens set by hand */
    s->sync_from = s->n_tokens;
    s->sync_at_end = at_end;
    const bt__vocab_fold *f = &s->vf;
    while (s->n_tokens < v->n_tokens && s->n_tokens < s->max_tokens) {
        bt_token id = v->tokens[s->n_tokens];
        if ((uint32_t)id < (uint32_t)f->n_vocab && (f->tok[id].info & VT_CACHED)) {
            feed_token(s, id, NULL, 0, &best);
        } else {
            const char *b = "";
            size_t len = 0;
            if (bt_provider_token_text(v->provider, id, &b, &len) != BT_OK || (len && !b)) b = "", len = 0;
            feed_token(s, id, b, len, &best);
        }
    }
    if (at_end && s->whole_word && s->n_tokens > 0) {
        bt__pend pend = s->pending[s->n_tokens - 1];
        if (pend.pattern != NONE) consider(&best, NULL, pend.pattern, pend.mstart, pend.mend);
    }
    return best.pattern == NONE ? best : finish(s, best);
}

bt__match bt__scan_next(bt__scan *s, const bt__match *after) {
    bt__match best = NO_MATCH;
    bt__pend pend = NO_PEND;
    int32_t t0 = s->sync_from, n = s->n_tokens;
    int32_t st = s->tk[t0 - 1].state;
    if (s->whole_word && t0 > 0 && s->tk[t0 - 1].mend > 0) {
        /* the candidate waiting at the start, chosen again among those after `after` */
        int32_t end = s->tk[t0 - 1].mend;
        int32_t tj = mtoken_at(s, end - 1, t0);
        outputs(s, st, end, first_allowed(s, tj), t0, after, &pend, &best);
    }
    for (int32_t t = t0; t < n; t++)
        walk(s, t + 1, s->tk[t - 1].mend, s->tk[t].mend, &st, &pend, first_allowed(s, t), after, &best);
    if (s->sync_at_end && pend.pattern != NONE) consider(&best, after, pend.pattern, pend.mstart, pend.mend);
    return best.pattern == NONE ? best : finish(s, best);
}

int32_t bt__scan_hold_from(bt__scan *s) {
    int32_t n = s->n_tokens;
    if (n == 0) return 0;
    const bt__scan_tok *last = &s->tk[n - 1];
    int32_t ms = last->mend - s->a->st[last->state].depth;
    if (s->whole_word) {
        bt__pend pend = s->pending[n - 1];
        if (pend.pattern != NONE && pend.mstart < ms) ms = pend.mstart;
    }
    int32_t from = ms < last->mend ? orig_start(s, ms, n) : last->uend;
    int32_t allowed = first_allowed(s, n);
    if (allowed > s->len) return s->len;
    return from > allowed ? from : allowed;
}

int32_t bt__scan_token_at(const bt__scan *s, int32_t b) {
    /* the first token whose end is past b: mostly one of the last */
    int32_t n = s->n_tokens, t = n;
    for (int k = 0; k < 4; k++, t--)
        if (t <= 0 || s->tk[t - 1].end <= b) return t > 0 ? t : 0;
    int32_t lo = 0, hi = t;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (s->tk[mid].end > b) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}
