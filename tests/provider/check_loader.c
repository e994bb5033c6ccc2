/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certstore: OSSL_STORE loader, in process: a fresh library context
 * loads the module just built from a generated openssl.cnf, and every test
 * opens certstore: URIs on a real SQLite file in a temp directory.
 *
 * Environment: CERTSTORE_MODULE_DIR (or OPENSSL_MODULES) names the directory
 * holding certstore.so.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "../../provider/store_uri.h"
#include "cs_store.h"
#include "testpki.h"

static testpki *pki;
static char *tmpdir;
static char db_path[1024];
static char uri[2048];
static OSSL_LIB_CTX *libctx;

/* ---- fixture ----------------------------------------------------------- */

static void make_db(void)
{
    cs_db *db = NULL;
    char fp_b[CS_FP_HEX_LEN + 1];

    snprintf(db_path, sizeof(db_path), "%s/certstore.db", tmpdir);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, "check_loader setup"), CS_OK);
    ck_assert_int_eq(cs_pin_add(db, pki->ca_a.cert, "pinned", NULL), CS_OK);
    ck_assert_int_eq(cs_pin_add(db, pki->ca_b.cert, "disabled", fp_b), CS_OK);
    ck_assert_int_eq(cs_pin_set_enabled(db, fp_b, 0), CS_OK);
    ck_assert_int_eq(cs_db_commit(db), CS_OK);
    cs_db_close(db);
}

static const char *module_dir(void)
{
    const char *dir = getenv("CERTSTORE_MODULE_DIR");

    if (dir == NULL || *dir == '\0')
        dir = getenv("OPENSSL_MODULES");
    ck_assert_msg(dir != NULL && *dir != '\0',
                  "set CERTSTORE_MODULE_DIR to the provider build dir");
    return dir;
}

static void make_libctx(void)
{
    char cnf[1100];
    FILE *f;

    snprintf(cnf, sizeof(cnf), "%s/openssl.cnf", tmpdir);
    f = fopen(cnf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "openssl_conf = openssl_init\n"
            "[openssl_init]\nproviders = provider_sect\n"
            "[provider_sect]\ndefault = default_sect\ncertstore = certstore_sect\n"
            "[default_sect]\nactivate = 1\n"
            "[certstore_sect]\nmodule = %s/certstore.so\nactivate = 1\n"
            "db = %s\nmode = off\nlog = stderr\n",
            module_dir(), db_path);
    ck_assert_int_eq(fclose(f), 0);
    libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(libctx);
    /* The provider checks its section's keys in $OPENSSL_CONF, as servers set it. */
    ck_assert_int_eq(setenv("OPENSSL_CONF", cnf, 1), 0);
    ck_assert_msg(OSSL_LIB_CTX_load_config(libctx, cnf) == 1, "could not load %s", cnf);
    ck_assert_msg(OSSL_PROVIDER_available(libctx, "certstore"), "certstore provider not active");
}

/*
 * In fork mode a failing test exits without its checked teardown, so the
 * PKI and one base directory belong to the parent (unchecked fixture, which
 * always runs), and each test works in its own directory below the base.
 */
static char *base_dir;

static void setup_tcase(void)
{
    pki = testpki_new(0);
    base_dir = testpki_tmpdir();
    if (pki == NULL || base_dir == NULL) {
        fprintf(stderr, "check_loader: cannot build the test PKI or temp dir\n");
        exit(EXIT_FAILURE);
    }
}

static void teardown_tcase(void)
{
    if (base_dir != NULL)
        testpki_rmtree(base_dir);
    free(base_dir);
    base_dir = NULL;
    testpki_free(pki);
    pki = NULL;
}

static void setup(void)
{
    static char dir[1024];

    snprintf(dir, sizeof(dir), "%s/test-XXXXXX", base_dir);
    tmpdir = mkdtemp(dir);
    ck_assert_ptr_nonnull(tmpdir);
    make_db();
    make_libctx();
    snprintf(uri, sizeof(uri), "certstore:%s", db_path);
}

static void teardown(void)
{
    OSSL_LIB_CTX_free(libctx);
    libctx = NULL;
    if (tmpdir != NULL)
        testpki_rmtree(tmpdir);
    tmpdir = NULL;
    ERR_clear_error();
}

/* ---- helpers ------------------------------------------------------------ */

static OSSL_STORE_CTX *open_store(const char *u)
{
    return OSSL_STORE_open_ex(u, libctx, NULL, NULL, NULL, NULL, NULL, NULL);
}

/* Every certificate the opened store hands out, in order. */
static STACK_OF(X509) * load_all(OSSL_STORE_CTX *store)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    int guard;

    ck_assert_ptr_nonnull(certs);
    for (guard = 0; guard < 100 && !OSSL_STORE_eof(store); guard++) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);

        if (info == NULL)
            break;
        ck_assert_int_eq(OSSL_STORE_INFO_get_type(info), OSSL_STORE_INFO_CERT);
        ck_assert_int_gt(sk_X509_push(certs, OSSL_STORE_INFO_get1_CERT(info)), 0);
        OSSL_STORE_INFO_free(info);
    }
    ck_assert_int_lt(guard, 100);
    ck_assert_int_eq(OSSL_STORE_error(store), 0);
    return certs;
}

static STACK_OF(X509) * load_uri(const char *u)
{
    OSSL_STORE_CTX *store = open_store(u);
    STACK_OF(X509) * certs;

    ck_assert_msg(store != NULL, "could not open %s", u);
    certs = load_all(store);
    OSSL_STORE_close(store);
    return certs;
}

static void assert_only(STACK_OF(X509) * certs, const X509 *want)
{
    ck_assert_int_eq(sk_X509_num(certs), 1);
    ck_assert_int_eq(X509_cmp(sk_X509_value(certs, 0), want), 0);
    sk_X509_pop_free(certs, X509_free);
}

static int error_text_cb(const char *str, size_t len, void *arg)
{
    char *buf = arg;
    size_t used = strlen(buf);
    size_t room = 4096 - used - 1;

    strncat(buf, str, len < room ? len : room);
    return 1;
}

/* Opening u must fail and leave `expected` in the error queue. */
static void assert_open_fails(const char *u, const char *expected)
{
    char errors[4096] = "";
    OSSL_STORE_CTX *store;

    ERR_clear_error();
    store = open_store(u);
    ERR_print_errors_cb(error_text_cb, errors);
    if (store != NULL)
        OSSL_STORE_close(store);
    ck_assert_msg(store == NULL, "%s opened", u);
    ck_assert_msg(strstr(errors, expected) != NULL, "%s: want \"%s\" in errors: %s", u, expected,
                  errors);
}

static char *fp_of(const X509 *cert, char hex[CS_FP_HEX_LEN + 1])
{
    ck_assert_int_eq(cs_fp_of_cert(cert, hex), 1);
    return hex;
}

static int verify_with_store(const X509 *leaf, int *error)
{
    X509_STORE *trust = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new_ex(libctx, NULL);
    int ok;

    ck_assert_ptr_nonnull(trust);
    ck_assert_ptr_nonnull(vctx);
    ck_assert_int_eq(X509_STORE_load_store_ex(trust, uri, libctx, NULL), 1);
    /* The pinned CA is the anchor: nothing above it is available. */
    ck_assert_int_eq(X509_STORE_set_flags(trust, X509_V_FLAG_PARTIAL_CHAIN), 1);
    ck_assert_int_eq(X509_STORE_CTX_init(vctx, trust, (X509 *)leaf, NULL), 1);
    ok = X509_verify_cert(vctx);
    *error = X509_STORE_CTX_get_error(vctx);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(trust);
    return ok;
}

/* ---- listing ------------------------------------------------------------ */

START_TEST(test_lists_only_enabled_pins)
{
    assert_only(load_uri(uri), pki->ca_a.cert);
}
END_TEST

START_TEST(test_triple_slash_form_is_same_store)
{
    char u[2100];

    snprintf(u, sizeof(u), "certstore://%s", db_path);
    assert_only(load_uri(u), pki->ca_a.cert);
}
END_TEST

START_TEST(test_scheme_case_insensitive)
{
    char u[2100];

    snprintf(u, sizeof(u), "CertStore:%s", db_path);
    assert_only(load_uri(u), pki->ca_a.cert);
}
END_TEST

START_TEST(test_fp_query_selects_pin)
{
    char fp[CS_FP_HEX_LEN + 1], u[2200];

    snprintf(u, sizeof(u), "%s?fp=%s", uri, fp_of(pki->ca_a.cert, fp));
    assert_only(load_uri(u), pki->ca_a.cert);
}
END_TEST

START_TEST(test_fp_query_disabled_pin_refused)
{
    char fp[CS_FP_HEX_LEN + 1], u[2200];

    snprintf(u, sizeof(u), "%s?fp=%s", uri, fp_of(pki->ca_b.cert, fp));
    assert_open_fails(u, "no pin in force");
}
END_TEST

START_TEST(test_fp_query_unknown_pin_refused)
{
    char fp[CS_FP_HEX_LEN + 1], u[2200];

    snprintf(u, sizeof(u), "%s?fp=%s", uri, fp_of(pki->root.cert, fp));
    assert_open_fails(u, "no pin in force");
}
END_TEST

START_TEST(test_expect_other_type_yields_nothing)
{
    OSSL_STORE_CTX *store = open_store(uri);
    STACK_OF(X509) * certs;

    ck_assert_ptr_nonnull(store);
    ck_assert_int_eq(OSSL_STORE_expect(store, OSSL_STORE_INFO_CRL), 1);
    certs = load_all(store);
    ck_assert_int_eq(sk_X509_num(certs), 0);
    sk_X509_free(certs);
    OSSL_STORE_close(store);
}
END_TEST

START_TEST(test_each_open_sees_current_pins)
{
    cs_db *db = NULL;
    char fp_b[CS_FP_HEX_LEN + 1];
    STACK_OF(X509) * certs;

    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, "check_loader enable"), CS_OK);
    ck_assert_int_eq(cs_pin_set_enabled(db, fp_of(pki->ca_b.cert, fp_b), 1), CS_OK);
    ck_assert_int_eq(cs_db_commit(db), CS_OK);
    cs_db_close(db);
    certs = load_uri(uri);
    ck_assert_int_eq(sk_X509_num(certs), 2);
    sk_X509_pop_free(certs, X509_free);
}
END_TEST

/* ---- searches ------------------------------------------------------------ */

static STACK_OF(X509) * load_searched(OSSL_STORE_SEARCH *search)
{
    OSSL_STORE_CTX *store = open_store(uri);
    STACK_OF(X509) * certs;

    ck_assert_ptr_nonnull(store);
    ck_assert_ptr_nonnull(search);
    ck_assert_int_eq(OSSL_STORE_supports_search(store, OSSL_STORE_SEARCH_get_type(search)), 1);
    ck_assert_int_eq(OSSL_STORE_find(store, search), 1);
    certs = load_all(store);
    OSSL_STORE_close(store);
    OSSL_STORE_SEARCH_free(search);
    return certs;
}

START_TEST(test_search_by_subject_finds_pin)
{
    X509_NAME *name = X509_get_subject_name(pki->ca_a.cert);

    assert_only(load_searched(OSSL_STORE_SEARCH_by_name(name)), pki->ca_a.cert);
}
END_TEST

START_TEST(test_search_by_other_subject_finds_nothing)
{
    STACK_OF(X509) * certs;

    certs = load_searched(OSSL_STORE_SEARCH_by_name(X509_get_subject_name(pki->root.cert)));
    ck_assert_int_eq(sk_X509_num(certs), 0);
    sk_X509_free(certs);
    /* ca-b is in the file, but disabled: a search must not reach it either. */
    certs = load_searched(OSSL_STORE_SEARCH_by_name(X509_get_subject_name(pki->ca_b.cert)));
    ck_assert_int_eq(sk_X509_num(certs), 0);
    sk_X509_free(certs);
}
END_TEST

START_TEST(test_search_by_issuer_serial_finds_pin)
{
    X509_NAME *issuer = X509_get_issuer_name(pki->ca_a.cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(pki->ca_a.cert);
    const ASN1_INTEGER *other = X509_get0_serialNumber(pki->alice.cert);
    STACK_OF(X509) * certs;

    assert_only(load_searched(OSSL_STORE_SEARCH_by_issuer_serial(issuer, serial)), pki->ca_a.cert);
    certs = load_searched(OSSL_STORE_SEARCH_by_issuer_serial(issuer, other));
    ck_assert_int_eq(sk_X509_num(certs), 0);
    sk_X509_free(certs);
}
END_TEST

START_TEST(test_fingerprint_and_alias_search_refused)
{
    OSSL_STORE_CTX *store = open_store(uri);

    ck_assert_ptr_nonnull(store);
    ck_assert_int_eq(OSSL_STORE_supports_search(store, OSSL_STORE_SEARCH_BY_KEY_FINGERPRINT), 0);
    ck_assert_int_eq(OSSL_STORE_supports_search(store, OSSL_STORE_SEARCH_BY_ALIAS), 0);
    OSSL_STORE_close(store);
}
END_TEST

/* ---- -CAstore ------------------------------------------------------------ */

START_TEST(test_castore_verifies_leaf_of_pinned_issuer)
{
    int error = -1;

    ck_assert_msg(verify_with_store(pki->alice.cert, &error) == 1, "alice: %s",
                  X509_verify_cert_error_string(error));
}
END_TEST

START_TEST(test_castore_unpinned_issuer_rejected)
{
    int error = -1;

    ck_assert_int_ne(verify_with_store(pki->carol.cert, &error), 1);
    ck_assert_int_eq(error, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}
END_TEST

START_TEST(test_castore_same_dn_twin_ca_rejected)
{
    int error = -1;

    ck_assert_int_ne(verify_with_store(pki->mallory.cert, &error), 1);
}
END_TEST

/* ---- failures ------------------------------------------------------------ */

START_TEST(test_missing_database_refused)
{
    char u[2100];

    snprintf(u, sizeof(u), "certstore:%s/nonexistent.db", tmpdir);
    assert_open_fails(u, "nonexistent.db");
}
END_TEST

START_TEST(test_corrupt_database_refused)
{
    char path[1100], u[2100];
    FILE *f;

    snprintf(path, sizeof(path), "%s/garbage.db", tmpdir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an SQLite database, not even close to one........\n", f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(u, sizeof(u), "certstore:%s", path);
    assert_open_fails(u, "garbage.db");
}
END_TEST

static const char *const bad_uris[] = {
    "certstore:relative/certstore.db",
    "certstore:",
    "certstore://",
    "certstore://host/var/lib/certstore.db",
    "certstore:/db?mode=rw",
    "certstore:/db?",
    "certstore:/db?fp=abcd",
    "certstore:/db#fragment",
    "certstore:/db%zz",
    "certstore:/db%0a",
    "certstore:/with space/db",
};

START_TEST(test_bad_uri_refused)
{
    assert_open_fails(bad_uris[_i], "bad URI");
}
END_TEST

/* ---- the parser, directly ------------------------------------------------ */

#define FP_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FP_A_COLONS                                                                                \
    "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:"   \
    "cd:ef"

static const struct {
    const char *uri;
    csp_store_uri_status status;
    const char *path;
    const char *fp;
} parse_cases[] = {
    {"certstore:/var/lib/certstore/certstore.db", CSP_URI_OK, "/var/lib/certstore/certstore.db",
     NULL},
    {"certstore:///var/lib/c.db", CSP_URI_OK, "/var/lib/c.db", NULL},
    {"CERTSTORE:/x", CSP_URI_OK, "/x", NULL},
    {"certstore:/a%20b/c%2Fd", CSP_URI_OK, "/a b/c/d", NULL},
    {"certstore:/x?fp=" FP_A, CSP_URI_OK, "/x", FP_A},
    {"certstore:/x?fp=" FP_A_COLONS, CSP_URI_OK, "/x", FP_A},
    {"file:/x", CSP_URI_NOT_CERTSTORE, NULL, NULL},
    {"certstorex:/x", CSP_URI_NOT_CERTSTORE, NULL, NULL},
    {"certstor", CSP_URI_NOT_CERTSTORE, NULL, NULL},
    {"certstore:x", CSP_URI_RELATIVE, NULL, NULL},
    {"certstore:", CSP_URI_RELATIVE, NULL, NULL},
    {"certstore://", CSP_URI_RELATIVE, NULL, NULL},
    {"certstore://localhost/x", CSP_URI_AUTHORITY, NULL, NULL},
    {"certstore:/a b", CSP_URI_BAD_CHAR, NULL, NULL},
    {"certstore:/a\\b", CSP_URI_BAD_CHAR, NULL, NULL},
    {"certstore:/a%2", CSP_URI_BAD_ESCAPE, NULL, NULL},
    {"certstore:/a%g0", CSP_URI_BAD_ESCAPE, NULL, NULL},
    {"certstore:/a%00b", CSP_URI_BAD_BYTE, NULL, NULL},
    {"certstore:/a%7F", CSP_URI_BAD_BYTE, NULL, NULL},
    {"certstore:/a#b", CSP_URI_FRAGMENT, NULL, NULL},
    {"certstore:/a?", CSP_URI_BAD_QUERY, NULL, NULL},
    {"certstore:/a?FP=" FP_A, CSP_URI_BAD_QUERY, NULL, NULL},
    {"certstore:/a?x=1", CSP_URI_BAD_QUERY, NULL, NULL},
    {"certstore:/a?fp=" FP_A "&fp=" FP_A, CSP_URI_BAD_QUERY, NULL, NULL},
    {"certstore:/a?fp=" FP_A "#x", CSP_URI_FRAGMENT, NULL, NULL},
    {"certstore:/a?fp=" FP_A "0", CSP_URI_BAD_FP, NULL, NULL},
    {"certstore:/a?fp=" FP_A_COLONS ":", CSP_URI_BAD_FP, NULL, NULL},
    {"certstore:/a?fp=0123", CSP_URI_BAD_FP, NULL, NULL},
    {"certstore:/a?fp=", CSP_URI_BAD_FP, NULL, NULL},
    {"certstore:/a?fp=01:23" FP_A, CSP_URI_BAD_FP, NULL, NULL},
    {"certstore:/a?fp=0:123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     CSP_URI_BAD_FP, NULL, NULL},
};

START_TEST(test_uri_parser_cases)
{
    csp_store_uri parsed;
    csp_store_uri_status status = csp_store_uri_parse(parse_cases[_i].uri, &parsed);

    ck_assert_msg(status == parse_cases[_i].status, "%s: got %d (%s), want %d", parse_cases[_i].uri,
                  status, csp_store_uri_strerror(status), parse_cases[_i].status);
    if (parse_cases[_i].path != NULL)
        ck_assert_str_eq(parsed.path, parse_cases[_i].path);
    ck_assert_int_eq(parsed.have_fp, parse_cases[_i].fp != NULL);
    if (parse_cases[_i].fp != NULL)
        ck_assert_str_eq(parsed.fp, parse_cases[_i].fp);
}
END_TEST

START_TEST(test_uri_parser_path_too_long)
{
    static char long_uri[CSP_STORE_URI_PATH_MAX + 32];
    csp_store_uri parsed;
    size_t i;

    strcpy(long_uri, "certstore:");
    for (i = strlen(long_uri); i < sizeof(long_uri) - 1; i++)
        long_uri[i] = 'a';
    long_uri[10] = '/';
    long_uri[sizeof(long_uri) - 1] = '\0';
    ck_assert_int_eq(csp_store_uri_parse(long_uri, &parsed), CSP_URI_TOO_LONG);
    ck_assert_int_eq(csp_store_uri_parse(NULL, &parsed), CSP_URI_NOT_CERTSTORE);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc;

    tc = tcase_create("listing");
    tcase_add_unchecked_fixture(tc, setup_tcase, teardown_tcase);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lists_only_enabled_pins);
    tcase_add_test(tc, test_triple_slash_form_is_same_store);
    tcase_add_test(tc, test_scheme_case_insensitive);
    tcase_add_test(tc, test_fp_query_selects_pin);
    tcase_add_test(tc, test_fp_query_disabled_pin_refused);
    tcase_add_test(tc, test_fp_query_unknown_pin_refused);
    tcase_add_test(tc, test_expect_other_type_yields_nothing);
    tcase_add_test(tc, test_each_open_sees_current_pins);
    suite_add_tcase(s, tc);

    tc = tcase_create("search");
    tcase_add_unchecked_fixture(tc, setup_tcase, teardown_tcase);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_search_by_subject_finds_pin);
    tcase_add_test(tc, test_search_by_other_subject_finds_nothing);
    tcase_add_test(tc, test_search_by_issuer_serial_finds_pin);
    tcase_add_test(tc, test_fingerprint_and_alias_search_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("castore");
    tcase_add_unchecked_fixture(tc, setup_tcase, teardown_tcase);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_castore_verifies_leaf_of_pinned_issuer);
    tcase_add_test(tc, test_castore_unpinned_issuer_rejected);
    tcase_add_test(tc, test_castore_same_dn_twin_ca_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_unchecked_fixture(tc, setup_tcase, teardown_tcase);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_missing_database_refused);
    tcase_add_test(tc, test_corrupt_database_refused);
    tcase_add_loop_test(tc, test_bad_uri_refused, 0, (int)(sizeof(bad_uris) / sizeof(bad_uris[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("parser");
    tcase_add_loop_test(tc, test_uri_parser_cases, 0,
                        (int)(sizeof(parse_cases) / sizeof(parse_cases[0])));
    tcase_add_test(tc, test_uri_parser_path_too_long);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(loader_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
