/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provider in process: a library context loaded from a generated
 * openssl.cnf that loads the module just built, a real SQLite store in a
 * temp dir, and real TLS handshakes between a server and a client SSL over
 * a memory BIO pair.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_provider"
#define ALICE_ACCOUNT "alice@partner-a"

static tls_harness fx;

/* ---- store set-up ---------------------------------------------------------- */

/* Pin ca-a, map alice (by certificate) to ALICE_ACCOUNT. */
static void store_standard(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

static void remove_alice_mapping(void)
{
    th_unmap_leaf(&fx, SUITE_NAME, "alice", CS_KIND_CERT);
}

/* ---- handshakes (tests/common/tls_harness.h) --------------------------------- */

static void assert_accepted(const char *leaf, const char *account)
{
    th_outcome out = th_connect_as(&fx, leaf);

    ck_assert_msg(out.ok, "%s was rejected (verify result %ld)", leaf, out.server_verify);
    ck_assert_int_eq(out.have_account, 1);
    ck_assert_str_eq(out.account, account);
}

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- policy through real handshakes ----------------------------------------- */

START_TEST(test_mapped_client_accepted_with_account)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    th_assert_log_has(&fx, "result=accept reason=none account=\"" ALICE_ACCOUNT "\"");
    th_assert_log_has(&fx, "mode=enforce");
}
END_TEST

START_TEST(test_unpinned_issuer_rejected)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "carol", "issuer-not-pinned");
}
END_TEST

START_TEST(test_root_issued_client_rejected)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "direct", "issuer-not-pinned");
}
END_TEST

START_TEST(test_same_dn_twin_ca_rejected)
{
    cs_db *db;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME); /* mallory shares alice's issuer DN and serial */
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_ISSUER_SERIAL, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "mallory", "issuer-not-pinned");
}
END_TEST

START_TEST(test_unmapped_client_rejected)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "bob", "no-mapping");
}
END_TEST

START_TEST(test_disabled_pin_rejected)
{
    cs_db *db;
    char fp[CS_FP_HEX_LEN + 1];

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    ck_assert_int_eq(cs_fp_of_cert(fx.pki->ca_a.cert, fp), 1);
    ck_assert_int_eq(cs_pin_set_enabled(db, fp, 0), CS_OK);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "pin-disabled");
}
END_TEST

START_TEST(test_disabled_mapping_rejected)
{
    cs_db *db;
    cs_mapping_ref ref;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    ref = th_ref_for(&fx, "alice", CS_KIND_CERT);
    ck_assert_int_eq(cs_mapping_set_enabled(db, &ref, 0), CS_OK);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "mapping-disabled");
}
END_TEST

START_TEST(test_mapping_not_yet_valid_rejected)
{
    cs_db *db;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    th_map_leaf(&fx, db, "bob", "bob", CS_KIND_CERT, (int64_t)time(NULL) + 86400, CS_TIME_NONE);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "bob", "mapping-not-yet-valid");
}
END_TEST

START_TEST(test_mapping_expired_rejected)
{
    cs_db *db;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    th_map_leaf(&fx, db, "bob", "bob", CS_KIND_CERT, CS_TIME_NONE, (int64_t)time(NULL) - 86400);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "bob", "mapping-expired");
}
END_TEST

START_TEST(test_disabled_account_rejected)
{
    cs_db *db;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    ck_assert_int_eq(cs_account_set_enabled(db, ALICE_ACCOUNT, 0), CS_OK);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "account-disabled");
}
END_TEST

START_TEST(test_error_let_through_by_application_rejected)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 1); /* the application's callback forgives every error */
    th_assert_rejected(&fx, "selfsigned", "chain-invalid");
}
END_TEST

START_TEST(test_spki_mapping_survives_renewal)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", "alice-by-key", CS_KIND_SPKI, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", "alice-by-key");
    assert_accepted("alice-renewed", "alice-by-key");
    th_assert_rejected(&fx, "bob", "no-mapping");
}
END_TEST

/* ---- live changes and fail-closed init -------------------------------------- */

START_TEST(test_live_removal_applies_to_next_handshake)
{
    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    remove_alice_mapping();
    th_assert_rejected(&fx, "alice", "no-mapping");
}
END_TEST

START_TEST(test_missing_db_denies_all)
{
    th_load_provider_with(&fx, ""); /* fx.db does not exist */
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "store-unavailable");
    th_assert_log_has(&fx, "store-unavailable");
}
END_TEST

START_TEST(test_db_appearing_later_is_picked_up)
{
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "store-unavailable");
    store_standard();
    assert_accepted("alice", ALICE_ACCOUNT);
}
END_TEST

START_TEST(test_db_path_is_directory_denies_all)
{
    char lines[1024];

    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n", fx.dir, fx.log);
    th_load_provider(&fx, lines);
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "store-unavailable");
}
END_TEST

START_TEST(test_unreadable_db_denies_all)
{
    store_standard();
    if (geteuid() == 0) {
        /* root reads anything: make the file unusable another way */
        FILE *f = fopen(fx.db, "w");

        ck_assert_ptr_nonnull(f);
        fputs("this is not an SQLite database, padding padding padding padding\n", f);
        fclose(f);
    } else {
        ck_assert_int_eq(chmod(fx.db, 0), 0);
    }
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "store-unavailable");
}
END_TEST

START_TEST(test_bad_mode_denies_all)
{
    store_standard();
    th_load_provider_with(&fx, "mode = enforcing\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
    th_assert_log_has(&fx, "mode must be enforce, audit or off");
}
END_TEST

START_TEST(test_bad_busy_timeout_denies_all)
{
    store_standard();
    th_load_provider_with(&fx, "busy_timeout_ms = 12abc\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
}
END_TEST

START_TEST(test_relative_db_denies_all)
{
    char lines[1024];

    store_standard();
    snprintf(lines, sizeof(lines), "db = certstore.db\nlog = %s\n", fx.log);
    th_load_provider(&fx, lines);
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
}
END_TEST

START_TEST(test_missing_db_key_denies_all)
{
    char lines[1024];

    store_standard();
    snprintf(lines, sizeof(lines), "log = %s\n", fx.log);
    th_load_provider(&fx, lines);
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
}
END_TEST

/*
 * The log file is opened as root at load time: a link planted at its path
 * must not make root create, append to or take over another file. The log
 * falls back to syslog; decisions are unaffected.
 */
START_TEST(test_log_path_symlink_not_followed)
{
    char victim[600], link[600], lines[1400];
    struct stat st;
    FILE *f;

    store_standard();
    snprintf(victim, sizeof(victim), "%s/victim", fx.dir);
    snprintf(link, sizeof(link), "%s/linked.log", fx.dir);
    f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(victim, 0600), 0);
    ck_assert_int_eq(symlink(victim, link), 0);
    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n", fx.db, link);
    th_load_provider(&fx, lines);
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    ck_assert_int_eq(stat(victim, &st), 0);
    ck_assert_msg(st.st_size == 9, "the log was written through the link (%lld bytes)",
                  (long long)st.st_size);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    /* A dangling link: nothing may be created where it points. */
    ck_assert_int_eq(unlink(victim), 0);
    th_connect_as(&fx, "bob");
    ck_assert_int_ne(access(victim, F_OK), 0);
}
END_TEST

START_TEST(test_log_path_dangling_symlink_not_created)
{
    char target[600], link[600], lines[1400];

    store_standard();
    snprintf(target, sizeof(target), "%s/created-by-root", fx.dir);
    snprintf(link, sizeof(link), "%s/linked.log", fx.dir);
    ck_assert_int_eq(symlink(target, link), 0);
    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n", fx.db, link);
    th_load_provider(&fx, lines);
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    ck_assert_msg(access(target, F_OK) != 0, "root created the file the link points to");
}
END_TEST

/* A misspelt key must not leave its setting at a default: everything is denied. */
START_TEST(test_unknown_key_denies_all)
{
    store_standard();
    th_load_provider_with(&fx, "require_stong = yes\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
    th_assert_log_has(&fx, "unknown key \"require_stong\"");
}
END_TEST

/* A value given with a prefix OpenSSL would pass on under another name is not ours. */
START_TEST(test_dotted_own_key_denies_all)
{
    store_standard();
    th_load_provider_with(&fx, "1.mode = audit\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
}
END_TEST

/* Loaded from a file the provider cannot find again: its keys are unchecked, so deny. */
START_TEST(test_section_not_found_denies_all)
{
    char lines[1400];

    store_standard();
    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n", fx.db, fx.log);
    th_write_cnf(&fx, lines);
    setenv("OPENSSL_CONF", "/nonexistent/openssl.cnf", 1);
    fx.libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(fx.libctx);
    ck_assert_int_eq(OSSL_LIB_CTX_load_config(fx.libctx, fx.cnf), 1);
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
    th_assert_log_has(&fx, "cannot read /nonexistent/openssl.cnf");
}
END_TEST

/* Keys OpenSSL itself reads in the section, also with its dotted prefixes, are known. */
START_TEST(test_openssl_keys_and_dotted_names_accepted)
{
    store_standard();
    th_load_provider_with(&fx, "identity = certstore\n1.activate = 1\n");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
}
END_TEST

/* Every value strictly: an empty require_strong is not "no". */
START_TEST(test_empty_value_denies_all)
{
    store_standard();
    th_load_provider_with(&fx, "require_strong =\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
}
END_TEST

START_TEST(test_audit_mode_accepts_and_logs_would_reject)
{
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "mode = audit\n");
    th_make_server(&fx, 0, 0, 0);
    out = th_connect_as(&fx, "bob");
    ck_assert_msg(out.ok, "audit mode rejected bob");
    ck_assert_int_eq(out.have_account, 0);
    th_assert_log_has(&fx, "result=would-reject reason=no-mapping");
    th_assert_log_has(&fx, "mode=audit");
    assert_accepted("alice", ALICE_ACCOUNT);
}
END_TEST

START_TEST(test_mode_off_enforces_nothing)
{
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "mode = off\n");
    th_make_server(&fx, 0, 0, 0);
    out = th_connect_as(&fx, "bob");
    ck_assert_msg(out.ok, "mode=off rejected bob");
    ck_assert_int_eq(out.have_account, 0);
    th_assert_log_lacks(&fx, "result=");
}
END_TEST

/* A client SSL in the same process (server-side hooks installed) is untouched. */
START_TEST(test_client_side_untouched)
{
    SSL_CTX *client;
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "");
    /* A server outside the policy's reach: no client certificate asked. */
    th_make_server(&fx, 0, 0, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_NONE, NULL);
    client = th_make_client(&fx, "bob"); /* verifies the server's chain: no mapping for it */
    out = th_connect_with(&fx, client, NULL, 0);
    SSL_CTX_free(client);
    ck_assert_msg(out.ok, "client-side verification was changed");
    ck_assert_int_eq(out.have_account, 0);
    th_assert_log_lacks(&fx, "result=");
}
END_TEST

/* ---- resumption (narrowing changes: check_resumption, check_hello_timing) ------- */

/* A mapping that ends soon caps the session lifetime at its end. */
START_TEST(test_session_lifetime_capped_by_mapping_end)
{
    SSL_CTX *client;
    th_outcome first;
    cs_db *db;
    long timeout;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    th_map_leaf(&fx, db, "bob", "bob", CS_KIND_CERT, CS_TIME_NONE, (int64_t)time(NULL) + 60);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, SSL_OP_NO_TICKET, TLS1_2_VERSION, 0);
    client = th_make_client(&fx, "bob");
    first = th_connect_with(&fx, client, NULL, 1);
    ck_assert(first.ok);
    timeout = first.server_timeout;
    ck_assert_msg(timeout > 0 && timeout <= 60, "session lifetime %ld outlives the mapping",
                  timeout);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

START_TEST(test_account_index_published)
{
    store_standard();
    th_load_provider_with(&fx, "");
    ck_assert_int_ge(certstore_account_index(fx.libctx), 0);
    ck_assert_int_eq(certstore_account_index(NULL), -1); /* not loaded there */
}
END_TEST

static Suite *provider_suite(void)
{
    Suite *s = suite_create("provider");
    TCase *policy = tcase_create("policy");
    TCase *init = tcase_create("fail_closed_init");
    TCase *modes = tcase_create("modes");
    TCase *resumption = tcase_create("resumption");

    tcase_add_checked_fixture(policy, setup, teardown);
    tcase_add_test(policy, test_mapped_client_accepted_with_account);
    tcase_add_test(policy, test_unpinned_issuer_rejected);
    tcase_add_test(policy, test_root_issued_client_rejected);
    tcase_add_test(policy, test_same_dn_twin_ca_rejected);
    tcase_add_test(policy, test_unmapped_client_rejected);
    tcase_add_test(policy, test_disabled_pin_rejected);
    tcase_add_test(policy, test_disabled_mapping_rejected);
    tcase_add_test(policy, test_mapping_not_yet_valid_rejected);
    tcase_add_test(policy, test_mapping_expired_rejected);
    tcase_add_test(policy, test_disabled_account_rejected);
    tcase_add_test(policy, test_error_let_through_by_application_rejected);
    tcase_add_test(policy, test_spki_mapping_survives_renewal);
    tcase_add_test(policy, test_live_removal_applies_to_next_handshake);
    tcase_add_test(policy, test_account_index_published);
    suite_add_tcase(s, policy);

    tcase_add_checked_fixture(init, setup, teardown);
    tcase_add_test(init, test_missing_db_denies_all);
    tcase_add_test(init, test_db_appearing_later_is_picked_up);
    tcase_add_test(init, test_db_path_is_directory_denies_all);
    tcase_add_test(init, test_unreadable_db_denies_all);
    tcase_add_test(init, test_bad_mode_denies_all);
    tcase_add_test(init, test_bad_busy_timeout_denies_all);
    tcase_add_test(init, test_relative_db_denies_all);
    tcase_add_test(init, test_missing_db_key_denies_all);
    tcase_add_test(init, test_unknown_key_denies_all);
    tcase_add_test(init, test_dotted_own_key_denies_all);
    tcase_add_test(init, test_section_not_found_denies_all);
    tcase_add_test(init, test_openssl_keys_and_dotted_names_accepted);
    tcase_add_test(init, test_empty_value_denies_all);
    tcase_add_test(init, test_log_path_symlink_not_followed);
    tcase_add_test(init, test_log_path_dangling_symlink_not_created);
    suite_add_tcase(s, init);

    tcase_add_checked_fixture(modes, setup, teardown);
    tcase_add_test(modes, test_audit_mode_accepts_and_logs_would_reject);
    tcase_add_test(modes, test_mode_off_enforces_nothing);
    tcase_add_test(modes, test_client_side_untouched);
    suite_add_tcase(s, modes);

    tcase_add_checked_fixture(resumption, setup, teardown);
    tcase_add_test(resumption, test_session_lifetime_capped_by_mapping_end);
    suite_add_tcase(s, resumption);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(provider_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
