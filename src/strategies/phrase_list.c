/*
 * phrase_list.c -- lists of phrases to ban (with soft-ban adjustments) and of regular
 * expressions, loaded from the formats people actually use (../shared/slop/).
 */
#include "../internal.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_phrase_list {
    char   **phrases;
    float   *adjust;
    int32_t  n, cap;
};

bt_phrase_list *bt_phrase_list_new(void) {
    bt_phrase_list *l = calloc(1, sizeof *l);
    if (!l) bt__fail(BT_ERR_NOMEM, "out of memory");
    return l;
}

void bt_phrase_list_free(bt_phrase_list *l) {
    if (!l) return;
    for (int32_t i = 0; i < l->n; i++) free(l->phrases[i]);
    free(l->phrases);
    free(l->adjust);
    free(l);
}

int bt_phrase_list_add(bt_phrase_list *l, const char *phrase, size_t len, float adjustment) {
    if (!l || !phrase) return bt__fail(BT_ERR_INVALID_ARG, "no list or phrase");
    if (len == 0) return bt__fail(BT_ERR_INVALID_ARG, "empty phrase");
    if (memchr(phrase, '\0', len)) return bt__fail(BT_ERR_INVALID_ARG, "phrase contains a NUL byte");
    if (!bt__utf8_valid(phrase, len)) return bt__fail(BT_ERR_UTF8, "phrase is not valid UTF-8");
    if (!(adjustment >= 0.0f && adjustment <= 1.0f))
        return bt__fail(BT_ERR_INVALID_ARG, "adjustment must be 0 (ban) or in (0, 1]");
    if (l->n == INT32_MAX) return bt__fail(BT_ERR_INVALID_ARG, "too many phrases");
    if (l->n == l->cap) {
        int32_t nc = l->cap ? (l->cap > INT32_MAX / 2 ? INT32_MAX : l->cap * 2) : 64;
        char **np = realloc(l->phrases, (size_t)nc * sizeof *np);
        if (!np) return bt__fail(BT_ERR_NOMEM, "out of memory");
        l->phrases = np;
        float *na = realloc(l->adjust, (size_t)nc * sizeof *na);
        if (!na) return bt__fail(BT_ERR_NOMEM, "out of memory");
        l->adjust = na;
        l->cap = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy) return bt__fail(BT_ERR_NOMEM, "out of memory");
    memcpy(copy, phrase, len);
    copy[len] = '\0';
    l->phrases[l->n] = copy;
    l->adjust[l->n] = adjustment;
    l->n++;
    return BT_OK;
}

int32_t bt_phrase_list_size(const bt_phrase_list *l) { return l ? l->n : 0; }
const char *bt_phrase_list_phrase(const bt_phrase_list *l, int32_t i) {
    return (l && i >= 0 && i < l->n) ? l->phrases[i] : NULL;
}
float bt_phrase_list_adjustment(const bt_phrase_list *l, int32_t i) {
    return (l && i >= 0 && i < l->n) ? l->adjust[i] : 0.0f;
}

/* ==== Files ============================================================== */

/* Read a whole file (NUL-terminated). */
static int slurp(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return bt__fail(BT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = cap < ((size_t)1 << 32) ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) return bt__fail(BT_ERR_NOMEM, "'%s' is too large to load", path);
    if (err) {
        free(buf);
        return bt__fail(BT_ERR_IO, "cannot read '%s'", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return BT_OK;
}

/* Line number of byte offset `at` (for error messages). */
static int line_of(const char *text, size_t at) {
    int line = 1;
    for (size_t i = 0; i < at && text[i]; i++) line += text[i] == '\n';
    return line;
}

static int load_json(const char *path, const char *text, size_t len, bool hard, bt_phrase_list *l) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        return bt__fail(BT_ERR_PARSE, "%s:%d: invalid JSON", path, line_of(text, at));
    }
    int rc = BT_OK;
    if (!cJSON_IsArray(root)) {
        rc = bt__fail(BT_ERR_PARSE, "%s: expected a JSON array of phrases", path);
        goto done;
    }
    /* First pass: are the numbers adjustments (all in (0, 1]) or counts? */
    bool counts = hard;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (cJSON_IsArray(it)) {
            const cJSON *num = cJSON_GetArrayItem(it, 1);
            if (cJSON_IsNumber(num) && !(num->valuedouble > 0 && num->valuedouble <= 1))
                counts = true;
        }
    }
    int idx = 0;
    cJSON_ArrayForEach(it, root) {
        const cJSON *str = it;
        double adj = 0;
        if (cJSON_IsArray(it)) {
            str = cJSON_GetArrayItem(it, 0);
            const cJSON *num = cJSON_GetArrayItem(it, 1);
            if (num && !cJSON_IsNumber(num)) {
                rc = bt__fail(BT_ERR_PARSE, "%s: entry %d: the second item must be a number", path, idx);
                goto done;
            }
            if (num && !counts) adj = num->valuedouble;
        }
        if (!cJSON_IsString(str) || !str->valuestring) {
            rc = bt__fail(BT_ERR_PARSE, "%s: entry %d is not a string or [string, number]", path, idx);
            goto done;
        }
        rc = bt_phrase_list_add(l, str->valuestring, strlen(str->valuestring), (float)adj);
        if (rc == BT_ERR_INVALID_ARG && str->valuestring[0] == '\0') rc = BT_OK; /* skip "" */
        if (rc != BT_OK) {
            rc = bt__fail(rc, "%s: entry %d: %s", path, idx, bt_last_error());
            goto done;
        }
        idx++;
    }
done:
    cJSON_Delete(root);
    return rc;
}

static int load_lines(const char *path, const char *text, size_t len, bt_phrase_list *l) {
    size_t i = 0;
    int line = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        line++;
        size_t e = j;
        if (e > i && text[e - 1] == '\r') e--;
        if (e > i) {
            int rc = bt_phrase_list_add(l, text + i, e - i, 0.0f);
            if (rc != BT_OK) return bt__fail(rc, "%s:%d: %s", path, line, bt_last_error());
        }
        i = j + 1;
    }
    return BT_OK;
}

int bt__phrase_list_parse(const char *name, const char *text, size_t len, bool hard,
                          bt_phrase_list **out) {
    *out = NULL;
    bt_phrase_list *l = bt_phrase_list_new();
    if (!l) return BT_ERR_NOMEM;
    size_t k = 0;
    while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\n')) k++;
    int rc = (k < len && text[k] == '[') ? load_json(name, text, len, hard, l)
                                        : load_lines(name, text, len, l);
    if (rc == BT_OK && l->n == 0) rc = bt__fail(BT_ERR_PARSE, "'%s' holds no phrase", name);
    if (rc != BT_OK) {
        bt_phrase_list_free(l);
        return rc;
    }
    *out = l;
    return BT_OK;
}

int bt_phrase_list_load(const char *path, bool hard, bt_phrase_list **out) {
    *out = NULL;
    if (!path) return bt__fail(BT_ERR_INVALID_ARG, "no path");
    char *text;
    size_t len;
    int rc = slurp(path, &text, &len);
    if (rc != BT_OK) return rc;
    rc = bt__phrase_list_parse(path, text, len, hard, out);
    free(text);
    return rc;
}

void bt_strings_free(char **list, int32_t n) {
    if (!list) return;
    for (int32_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

int bt__regex_list_parse(const char *path, const char *text, size_t len, char ***out,
                         int32_t *n_out) {
    *out = NULL;
    *n_out = 0;
    int rc = BT_OK;
    char **list = NULL;
    int32_t n = 0, line = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        line++;
        size_t a = i, e = j;
        while (a < e && (text[a] == ' ' || text[a] == '\t')) a++;
        while (e > a && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) e--;
        if (e > a && text[e - 1] == ',') e--;
        if (e > a && text[a] != '#') {
            if (text[a] == '"') {
                if (e - a < 2 || text[e - 1] != '"') {
                    rc = bt__fail(BT_ERR_PARSE, "%s:%d: unterminated quote", path, line);
                    break;
                }
                a++, e--;
            }
            if (!bt__utf8_valid(text + a, e - a)) {
                rc = bt__fail(BT_ERR_UTF8, "%s:%d: not valid UTF-8", path, line);
                break;
            }
            char **nl = realloc(list, (size_t)(n + 1) * sizeof *nl);
            char *re = malloc(e - a + 1);
            if (!nl || !re) {
                free(re);
                if (nl) list = nl;
                rc = bt__fail(BT_ERR_NOMEM, "out of memory");
                break;
            }
            list = nl;
            /* inside quotes, \" stands for a quote; every other backslash is the regex's */
            size_t w = 0;
            for (size_t k = a; k < e; k++) {
                if (text[k] == '\\' && k + 1 < e && text[k + 1] == '"') k++;
                re[w++] = text[k];
            }
            re[w] = '\0';
            list[n++] = re;
        }
        i = j + 1;
    }
    if (rc == BT_OK && n == 0) rc = bt__fail(BT_ERR_PARSE, "'%s' holds no regular expression", path);
    if (rc != BT_OK) {
        bt_strings_free(list, n);
        return rc;
    }
    *out = list;
    *n_out = n;
    return BT_OK;
}

int bt_regex_list_load(const char *path, char ***out, int32_t *n_out) {
    *out = NULL;
    *n_out = 0;
    char *text;
    size_t len;
    int rc = slurp(path, &text, &len);
    if (rc != BT_OK) return rc;
    rc = bt__regex_list_parse(path, text, len, out, n_out);
    free(text);
    return rc;
}
