/* fuzz_replay.c -- `backtrack replay`'s reader (tools/replay.c) on hostile traces: any
 * bytes give a page or a one-line error, never a crash, leak or hang; and a page's trace
 * data never ends its <script> element early: from the element's start, the first "</" is
 * the template's own "</script>", and what lies before it is valid JSON (what the page's
 * JSON.parse reads). */
#include "replay.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DATA_START "<script type=\"application/json\" id=\"trace\">"

/* Whether s[0..n) contains "<!--". */
static int has_comment(const char *s, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "<!--", 4) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    char err[512], *html = (char *)1;
    size_t n = 0;
    if (replay_render((const char *)data, size, &html, &n, err, sizeof err) != 0) {
        if (html || !err[0] || strchr(err, '\n')) abort(); /* one line, and no page */
        return 0;
    }
    if (!html || strlen(html) != n) abort(); /* no NUL inside the page */
    const char *start = strstr(html, DATA_START);
    if (!start) abort();
    start += strlen(DATA_START);
    const char *end = strstr(start, "</");
    if (!end || strncmp(end, "</script>", 9) != 0 || has_comment(start, (size_t)(end - start)))
        abort();
    cJSON *j = cJSON_ParseWithLength(start, (size_t)(end - start));
    if (!j || !cJSON_IsObject(j)) abort();
    cJSON_Delete(j);
    free(html);
    return 0;
}
