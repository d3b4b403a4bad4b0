/* test_catalog.c -- the strategy catalog: every description is consistent, values are
 * checked with clear messages, and bt_strategy_create builds what the options say. */
#include "check.h"
#include "backtrack.h"

#include <math.h>

static void test_descriptions(void) {
    int32_t n = bt_strategy_catalog_size();
    CHECK(n >= 7);
    CHECK(bt_strategy_catalog_get(-1) == NULL && bt_strategy_catalog_get(n) == NULL);
    for (int32_t i = 0; i < n; i++) {
        const bt_strategy_info *si = bt_strategy_catalog_get(i);
        CHECK(si && si->name && si->summary && si->summary[0]);
        CHECK(bt_strategy_info_find(si->name) == si);
        for (int32_t j = 0; j < si->n_options; j++) {
            const bt_option_info *o = &si->options[j];
            CHECK(o->name && o->help && o->flag && strncmp(o->flag, "--", 2) == 0);
            CHECK(bt_option_info_find(si, o->name) == o);
            CHECK(bt_option_info_find(si, o->flag) == o);
            if (o->kind <= BT_OPTION_BOOL) { /* the default is a valid value */
                CHECK(o->def >= o->min && o->def <= o->max);
                if (o->kind != BT_OPTION_FLOAT) CHECK(o->def == floor(o->def));
            }
            CHECK((o->arg == NULL) == (o->kind == BT_OPTION_BOOL));
            for (int32_t k = 0; k < j; k++) { /* names and flags unique in a strategy */
                CHECK(strcmp(si->options[k].name, o->name) != 0);
                CHECK(strcmp(si->options[k].flag, o->flag) != 0);
            }
        }
    }
    CHECK(bt_strategy_info_find("nope") == NULL);
    CHECK(bt_strategy_info_find(NULL) == NULL);
    CHECK(bt_strategy_info_find("human-guidance")->terminal);
    CHECK(!bt_strategy_info_find("antislop")->terminal);
}

static void test_values(void) {
    const bt_strategy_info *si = bt_strategy_info_find("antislop");
    bt_strategy_options *o = bt_strategy_options_new(si);
    CHECK(o != NULL);
    CHECK_EQ_INT(bt_strategy_options_set(o, "keep_index_buffer", 7), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_set(o, "--keep-index-buffer", 8), BT_OK); /* by flag */
    CHECK_EQ_INT(bt_strategy_options_count(o, "keep_index_buffer"), 1);
    CHECK_EQ_INT(bt_strategy_options_set(o, "keep_index_buffer", 1.5), BT_ERR_INVALID_ARG);
    CHECK(strstr(bt_last_error(), "antislop: keep_index_buffer must be a whole number in [0, 1000000]"));
    CHECK_EQ_INT(bt_strategy_options_set(o, "keep_index_buffer", -1), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_set(o, "keep_index_buffer", NAN), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_set(o, "max_retries", 0), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_set(o, "whole_word", 2), BT_ERR_INVALID_ARG);
    CHECK(strstr(bt_last_error(), "true or false"));
    CHECK_EQ_INT(bt_strategy_options_set(o, "whole_word", 1), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_set(o, "slops", 1), BT_ERR_INVALID_ARG);
    CHECK(strstr(bt_last_error(), "takes text"));
    CHECK_EQ_INT(bt_strategy_options_set(o, "temperature", 1), BT_ERR_INVALID_ARG);
    CHECK(strstr(bt_last_error(), "antislop: unknown option 'temperature'"));
    CHECK_EQ_INT(bt_strategy_options_count(o, "temperature"), -1);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "Lily", 4, 0.0f), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "park", 4, 0.5f), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "x", 1, 1.5f), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "x", 1, -0.5f), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "x", 1, NAN), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_add(o, "regexes", "a+", 2, 0.5f), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "", 0, 0.0f), BT_ERR_INVALID_ARG);
    CHECK(strstr(bt_last_error(), "empty"));
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "a\xff", 2, 0.0f), BT_ERR_UTF8);
    CHECK_EQ_INT(bt_strategy_options_add(o, "slops", "a\0b", 3, 0.0f), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_add(o, "keep_index_buffer", "5", 1, 0.0f), BT_ERR_INVALID_ARG);
    CHECK_EQ_INT(bt_strategy_options_count(o, "slops"), 2);
    bt_strategy *s = bt_strategy_create(o, NULL);
    CHECK(s != NULL);
    CHECK(s && strcmp(s->iface->name, "antislop") == 0);
    bt_strategy_free(s);
    /* a file that is not there: the library's message, naming it */
    CHECK_EQ_INT(bt_strategy_options_add(o, "slop_files", "/nonexistent/x.json", 19, 0.0f), BT_OK);
    CHECK(bt_strategy_create(o, NULL) == NULL);
    CHECK(strstr(bt_last_error(), "/nonexistent/x.json"));
    bt_strategy_options_free(o);

    /* a bad regex is refused at create, with its text */
    o = bt_strategy_options_new(si);
    CHECK_EQ_INT(bt_strategy_options_add(o, "regexes", "(a", 2, 0.0f), BT_OK);
    CHECK(bt_strategy_create(o, NULL) == NULL);
    CHECK(strstr(bt_last_error(), "(a"));
    bt_strategy_options_free(o);
    /* no phrase and no regex */
    o = bt_strategy_options_new(si);
    CHECK(bt_strategy_create(o, NULL) == NULL);
    CHECK(bt_last_error()[0] != 0);
    bt_strategy_options_free(o);
}

static void test_required_and_text(void) {
    bt_strategy_options *o = bt_strategy_options_new(bt_strategy_info_find("replace"));
    CHECK(bt_strategy_create(o, NULL) == NULL);
    CHECK(strstr(bt_last_error(), "replace needs find (--find)"));
    CHECK_EQ_INT(bt_strategy_options_add(o, "find", "</think>", 8, 0.0f), BT_OK);
    CHECK(bt_strategy_create(o, NULL) == NULL);
    CHECK(strstr(bt_last_error(), "replace needs replace (--replace)"));
    CHECK_EQ_INT(bt_strategy_options_add(o, "replace", "x", 1, 0.0f), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_add(o, "replace", "Wait", 4, 0.0f), BT_OK); /* replaces */
    CHECK_EQ_INT(bt_strategy_options_count(o, "replace"), 1);
    CHECK_EQ_INT(bt_strategy_options_set(o, "max_replacements", -1), BT_OK);
    CHECK_EQ_INT(bt_strategy_options_set(o, "max_prob", 1.01), BT_ERR_INVALID_ARG);
    bt_strategy *s = bt_strategy_create(o, NULL);
    CHECK(s != NULL);
    bt_strategy_free(s);
    bt_strategy_options_free(o);
    /* every strategy without required options builds from its defaults */
    for (int32_t i = 0; i < bt_strategy_catalog_size(); i++) {
        const bt_strategy_info *si = bt_strategy_catalog_get(i);
        if (strcmp(si->name, "replace") == 0 || strcmp(si->name, "antislop") == 0) continue;
        o = bt_strategy_options_new(si);
        s = bt_strategy_create(o, NULL);
        CHECK(s != NULL);
        bt_strategy_free(s);
        bt_strategy_options_free(o);
    }
    CHECK(bt_strategy_options_new(NULL) == NULL);
    CHECK(bt_strategy_create(NULL, NULL) == NULL);
    CHECK_EQ_INT(bt_strategy_options_set(NULL, "x", 1), BT_ERR_INVALID_ARG);
    bt_strategy_options_free(NULL);
}

int main(void) {
    RUN(test_descriptions);
    RUN(test_values);
    RUN(test_required_and_text);
    TEST_MAIN_END();
}
