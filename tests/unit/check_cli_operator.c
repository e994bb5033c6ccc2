/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an operator does with the certstore CLI after the first day: find a
 * partner's mapping (map show, subjects in map ls, key prefixes), ask check
 * why, and be warned of mappings and rules that can never work. Every test
 * runs the real binary against a real store made by the test PKI.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

static testpki *pki;
static char *tmp_root;
static char pki_dir[PATH_MAX + 16];
static us_store store;
static char out[65536];

static void setup(void)
{
    us_store_open(&store, tmp_root);
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", store.dir);
    ck_assert_int_eq(mkdir(pki_dir, 0700), 0);
    ck_assert(testpki_write(pki, pki_dir));
}

static void teardown(void)
{
    us_store_close(&store);
}

static const char *pem(const char *name)
{
    static char bufs[8][PATH_MAX + 64];
    static int next;
    char *buf = bufs[next++ % 8];

    snprintf(buf, sizeof(bufs[0]), "%s/%s.pem", pki_dir, name);
    return buf;
}

/* certstore --db STORE ARGS... with stderr in out; the exit status. */
static int cli(const char *first, ...)
{
    va_list ap;
    int status;

    va_start(ap, first);
    status = us_cli_v(store.db, 1, out, sizeof(out), first, ap);
    va_end(ap);
    return status;
}

#define ck_cli(want, ...)                                                                          \
    do {                                                                                           \
        int got_ = cli(__VA_ARGS__, NULL);                                                         \
        ck_assert_msg(got_ == (want), "exit %d, wanted %d:\n%s", got_, (want), out);               \
    } while (0)
#define ck_out_has(text) ck_assert_msg(strstr(out, (text)) != NULL, "lacks '%s':\n%s", (text), out)
#define ck_out_lacks(text) ck_assert_msg(strstr(out, (text)) == NULL, "has '%s':\n%s", (text), out)

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static const char *fp_of(const testpki_cred *cred)
{
    static char fp[4][CS_FP_HEX_LEN + 1];
    static int next;
    char *buf = fp[next++ % 4];

    ck_assert(cs_fp_of_cert(cred->cert, buf));
    return buf;
}

/* ---- finding a partner's mapping ------------------------------------------- */

START_TEST(test_map_show_names_the_certificate_a_mapping_was_made_from)
{
    char subject[512], issuer[512];

    cs_name_text(X509_get_subject_name(pki->alice.cert), subject, sizeof(subject));
    cs_name_text(X509_get_issuer_name(pki->alice.cert), issuer, sizeof(issuer));
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(0, "map", "add", pem("alice"), "--account", "alice", "--create-account");
    ck_cli(0, "map", "add", pem("alice"), "--account", "alice", "--kind", "spki");

    ck_cli(0, "map", "show", "1");
    ck_out_has("mapping 1: cert ");
    ck_out_has(subject);
    ck_out_has(issuer);
    ck_out_has(fp_of(&pki->alice));
    ck_out_has("serial: ");

    /* By the certificate file: every mapping of it. */
    ck_cli(0, "map", "show", pem("alice"));
    ck_out_has("mapping 1: cert ");
    ck_out_has("mapping 2: spki ");
    ck_cli(0, "map", "show", pem("alice"), "--json");
    ck_assert_msg(out[0] == '[' && strstr(out, "]\n") != NULL, "%s", out);
    ck_out_has("\"certificate\":{\"sha256\":\"");

    /* map ls shows the subject. */
    ck_cli(0, "map", "ls");
    ck_out_has("subject=");
    ck_out_has(subject);

    /* A certificate nothing maps: exit 1, one line. */
    ck_cli(1, "map", "show", pem("bob"));
    ck_out_has("no such mapping");
}
END_TEST

START_TEST(test_mapping_from_a_key_keeps_no_certificate)
{
    char csv[PATH_MAX + 16], line[256];

    snprintf(csv, sizeof(csv), "%s/keys.csv", store.dir);
    snprintf(line, sizeof(line), "kind,key,account\ncert,%s,alice\n", fp_of(&pki->alice));
    write_text(csv, line);
    ck_cli(0, "import", csv);
    ck_cli(0, "map", "show", "1");
    ck_out_has("certificate: none kept");
    ck_cli(0, "map", "ls");
    ck_out_lacks("subject=");
}
END_TEST

START_TEST(test_unique_key_prefixes_name_a_mapping_and_ambiguous_ones_are_refused)
{
    char csv[PATH_MAX + 16];
    const char *a = "abcd000000000000000000000000000000000000000000000000000000000001";
    const char *b = "abcd110000000000000000000000000000000000000000000000000000000002";
    char text[400];

    snprintf(csv, sizeof(csv), "%s/keys.csv", store.dir);
    snprintf(text, sizeof(text), "kind,key,account\ncert,%s,alice\nspki,%s,bob\n", a, b);
    write_text(csv, text);
    ck_cli(0, "import", csv);

    ck_cli(0, "map", "show", "abcd0");
    ck_out_has("mapping 1: cert abcd0000");
    ck_cli(0, "map", "show", "ABCD:11");
    ck_out_has("mapping 2: spki abcd1100");
    /* The prefix of two: refused, both candidates named. */
    ck_cli(1, "map", "show", "abcd");
    ck_out_has("ambiguous");
    ck_out_has("1 cert abcd0000");
    ck_out_has("2 spki abcd1100");
    /* --kind narrows it. */
    ck_cli(0, "map", "show", "abcd", "--kind", "spki");
    ck_out_has("mapping 2: spki");
    /* Too short, and nothing starts with it. */
    ck_cli(2, "map", "show", "abc");
    ck_cli(1, "map", "show", "ffff");
    ck_out_has("no such mapping");
    /* Wherever a key is taken: disable by prefix. */
    ck_cli(0, "map", "disable", "abcd11");
    ck_cli(0, "map", "show", "2");
    ck_out_has("(disabled)");
    ck_cli(1, "map", "enable", "abcd");
    ck_out_has("ambiguous");
}
END_TEST

static Suite *operator_suite(void)
{
    Suite *s = suite_create("cli_operator");
    TCase *find = tcase_create("find");

    tcase_add_checked_fixture(find, setup, teardown);
    tcase_add_test(find, test_map_show_names_the_certificate_a_mapping_was_made_from);
    tcase_add_test(find, test_mapping_from_a_key_keeps_no_certificate);
    tcase_add_test(find, test_unique_key_prefixes_name_a_mapping_and_ambiguous_ones_are_refused);
    suite_add_tcase(s, find);
    return s;
}

int main(void)
{
    return us_run_suite(operator_suite(), "check_cli_operator", &pki, &tmp_root);
}
