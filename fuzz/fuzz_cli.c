/* fuzz_cli.c -- the command-line parsers (backtrack and backtrack serve) and strategy
 * construction: arguments are the input split at NUL bytes. Strategies are built on a scripted provider (no files are
 * read: arguments naming a path are skipped). */
#include "cli.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const VOCAB[] = {"", "a", "b", " ", "Wait", "x", "\n"};

static void logits(void *user, const bt_token *seq, int32_t n, float *l, int32_t nv) {
    (void)user, (void)seq, (void)n;
    for (int32_t i = 0; i < nv; i++) l[i] = (float)i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[64];
    int argc = 0;
    argv[argc++] = "backtrack";
    for (char *p = buf; p <= buf + size && argc < 63; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    bool paths = false;
    for (int i = 1; i < argc; i++) paths |= strchr(argv[i], '/') != NULL;
    cli_args a;
    char err[512];
    /* inputs starting with 's' go to `backtrack serve`'s parser */
    bool server = size > 0 && data[0] == 's';
    int rc = server ? cli_parse_server(argc, argv, &a, err, sizeof err)
                    : cli_parse(argc, argv, &a, err, sizeof err);
    if (rc < 0 && !err[0]) abort(); /* every refusal says why */
    if (rc == 0 && !paths) {
        bt_scripted_params sp = bt_scripted_default_params();
        sp.n_vocab = 7;
        sp.tokens = VOCAB;
        sp.eos = 0;
        sp.logits = logits;
        bt_provider *p = bt_scripted_provider_init(&sp);
        bt_strategy *s = NULL;
        if (cli_build_strategy(&a, p, &s, err, sizeof err) == BT_OK) bt_strategy_free(s);
        bt_provider_free(p);
    }
    cli_args_free(&a);
    free(buf);
    return 0;
}
