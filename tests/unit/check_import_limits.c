/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The import parser at its record-size limit: a field that fills the record
 * buffer followed by empty fields must be refused as too long, never write
 * past the buffer (run under ASan to see the difference).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cs_store.h"

#define RECORD_LIMIT 65536

static cs_status count_row(const cs_import_row *row, int64_t line, void *arg)
{
    (void)row;
    (void)line;
    (*(int *)arg)++;
    return CS_OK;
}

/* `prefix` + `fill` bytes of 'A' + `suffix`, parsed as `fmt`. */
static cs_status parse_filled(cs_import_format fmt, const char *prefix, size_t fill,
                              const char *suffix, int64_t *bad_line, char *msg, size_t msglen)
{
    size_t plen = strlen(prefix), slen = strlen(suffix);
    char *buf = malloc(plen + fill + slen);
    int rows = 0;
    cs_status status;

    ck_assert_ptr_nonnull(buf);
    memcpy(buf, prefix, plen);
    memset(buf + plen, 'A', fill);
    memcpy(buf + plen + fill, suffix, slen);
    status = cs_import_parse(buf, plen + fill + slen, fmt, count_row, &rows, bad_line, msg, msglen);
    free(buf);
    ck_assert_int_eq(rows, 0);
    return status;
}

START_TEST(test_csv_header_filled_then_empty_fields_rejected)
{
    int64_t bad = 0;
    char msg[256] = "";

    ck_assert_int_eq(
        parse_filled(CS_IMPORT_CSV, "", RECORD_LIMIT - 1, ",,,\n", &bad, msg, sizeof(msg)),
        CS_INVALID);
    ck_assert_int_eq(bad, 1);
    ck_assert_ptr_nonnull(strstr(msg, "longer than"));
}
END_TEST

START_TEST(test_csv_row_filled_then_empty_fields_rejected)
{
    int64_t bad = 0;
    char msg[256] = "";

    ck_assert_int_eq(parse_filled(CS_IMPORT_CSV, "kind,key,account,note\ncert,", RECORD_LIMIT - 6,
                                  ",,,\n", &bad, msg, sizeof(msg)),
                     CS_INVALID);
    ck_assert_int_eq(bad, 2);
}
END_TEST

START_TEST(test_jsonl_string_filling_the_line_rejected)
{
    int64_t bad = 0;
    char msg[256] = "";

    ck_assert_int_eq(parse_filled(CS_IMPORT_JSONL, "{\"kind\":\"", RECORD_LIMIT - 9, "\"}\n", &bad,
                                  msg, sizeof(msg)),
                     CS_INVALID);
    ck_assert_int_eq(bad, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("import_limits");
    TCase *tc = tcase_create("record_size");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_csv_header_filled_then_empty_fields_rejected);
    tcase_add_test(tc, test_csv_row_filled_then_empty_fields_rejected);
    tcase_add_test(tc, test_jsonl_string_filling_the_line_rejected);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
