/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A database file replaced by another (a deploy tool's atomic rename): the
 * new file's policy generation is its own counter and may equal the old
 * one's, so sessions made under the old file must not resume under the new
 * one, whatever the resumption kind; they are decided anew under the new
 * file. Sessions made under the new file resume as usual.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define ALICE_ACCOUNT "alice@partner-a"
#define BOB_ACCOUNT "bob@partner-a"
#define GENERATION_STEPS_MAX 20

static tls_harness fx;
static char db_new[512]; /* the replacement, built beside the store in place */

/* ---- stores ----------------------------------------------------------------- */

/* ca-a pinned; `leaf` mapped to `account`. */
static void store_build(const char *path, const char *leaf, const char *account)
{
    cs_db *db = th_store_begin(path, "check_replace");
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, leaf, account, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

static int64_t store_generation(const char *path)
{
    cs_db *db = NULL;
    int64_t generation = -1;

    ck_assert_int_eq(cs_db_open(&db, path, CS_OPEN_READONLY), CS_OK);
    ck_assert_int_eq(cs_db_generation(db, &generation), CS_OK);
    cs_db_close(db);
    return generation;
}

/* One write of one policy row: the generation goes up by exactly one. */
static void store_narrow_once(const char *path)
{
    static int written;
    cs_db *db = th_store_begin(path, "check_replace");
    char name[32];

    snprintf(name, sizeof(name), "filler-%d", ++written);
    ck_assert_int_eq(cs_account_add(db, name, NULL), CS_OK);
    th_store_commit(db);
}

/* Narrow `path` until its generation is `target` exactly. */
static void store_raise_generation(const char *path, int64_t target)
{
    int i;

    for (i = 0; i < GENERATION_STEPS_MAX && store_generation(path) < target; i++)
        store_narrow_once(path);
    ck_assert_int_eq(store_generation(path), target);
}

/*
 * The replacement: alice NOT mapped (bob is), and the same generation as
 * the file in place, so the generation alone cannot tell them apart.
 */
static void replace_store_with_narrower(void)
{
    int64_t generation = store_generation(fx.db);

    store_build(db_new, "bob", BOB_ACCOUNT);
    ck_assert_msg(store_generation(db_new) <= generation, "replacement starts higher");
    store_raise_generation(db_new, generation);
    ck_assert_int_eq(rename(db_new, fx.db), 0);
}

/* ---- provider and TLS ------------------------------------------------------- */

/* This suite's clients send no server name and always keep their session. */
static th_outcome connect_with(SSL_CTX *client_ctx, SSL_SESSION *resume)
{
    th_connect_opts opts = {.sni = NULL};

    return th_connect_ex(&fx, client_ctx, resume, 1, &opts);
}

static void setup(void)
{
    th_setup(&fx);
    snprintf(db_new, sizeof(db_new), "%s/certstore.db.new", fx.dir);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- tests ------------------------------------------------------------------ */

/*
 * Alice's session resumes under the file that mapped her (so the check
 * below can fail); once a file without her mapping, at the same generation,
 * is renamed over it, the session must not resume and she is rejected.
 */
START_TEST(test_session_not_resumed_under_replaced_file)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *client;
    th_outcome first, before, after;

    store_build(fx.db, "alice", ALICE_ACCOUNT);
    store_raise_generation(fx.db, store_generation(fx.db) + 2);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    client = th_make_client(&fx, "alice");
    first = connect_with(client, NULL);
    ck_assert_msg(first.ok && !first.reused, "%s: first handshake failed", k->name);
    ck_assert_str_eq(first.account, ALICE_ACCOUNT);
    before = connect_with(client, first.session);
    ck_assert_msg(before.ok && before.reused, "%s: no resumption under the same file", k->name);

    /* The newest session: TLS 1.3 stateful tickets are single-use. */
    replace_store_with_narrower();
    after = connect_with(client, before.session);
    ck_assert_msg(!after.reused, "%s: resumed a session made under the replaced file", k->name);
    ck_assert_msg(!after.ok, "%s: alice accepted under a file that does not map her", k->name);
    ck_assert_int_eq(after.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(before.session);
    SSL_CTX_free(client);
}
END_TEST

/* Under the new file, its own sessions resume as before. */
START_TEST(test_sessions_made_under_new_file_resume)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *client;
    th_outcome first, again;

    store_build(fx.db, "alice", ALICE_ACCOUNT);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    replace_store_with_narrower();
    client = th_make_client(&fx, "bob");
    first = connect_with(client, NULL);
    ck_assert_msg(first.ok && !first.reused, "%s: bob's first handshake failed", k->name);
    again = connect_with(client, first.session);
    ck_assert_msg(again.ok && again.reused, "%s: bob's session did not resume", k->name);
    ck_assert_str_eq(again.account, BOB_ACCOUNT);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

/*
 * The server holds alice's ClientHello (and has answered it) when a file
 * without her mapping is renamed over the store; her Certificate arrives
 * after. The decision comes from the file at the path when it is taken.
 */
START_TEST(test_file_replaced_between_hello_and_certificate_decides_new_file)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    th_connect_opts opts = {.gate_at = TH_GATE_FIRST_FLIGHT,
                            .at_gate = replace_store_with_narrower};
    SSL_CTX *client;
    th_outcome out;

    store_build(fx.db, "alice", ALICE_ACCOUNT);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    client = th_make_client(&fx, "alice");
    out = th_connect_ex(&fx, client, NULL, 0, &opts);
    ck_assert_msg(out.gate_passed, "%s: the file was never replaced", k->name);
    ck_assert_msg(!out.ok, "%s: alice accepted from the file replaced before her Certificate",
                  k->name);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    SSL_CTX_free(client);
}
END_TEST

static Suite *replace_suite(void)
{
    Suite *s = suite_create("replace");
    TCase *replaced = tcase_create("replaced_file");

    tcase_add_checked_fixture(replaced, setup, teardown);
    tcase_set_timeout(replaced, 30);
    tcase_add_loop_test(replaced, test_session_not_resumed_under_replaced_file, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(replaced, test_sessions_made_under_new_file_resume, 0, TH_RESUMPTION_KINDS);
    tcase_add_loop_test(replaced, test_file_replaced_between_hello_and_certificate_decides_new_file,
                        0, TH_RESUMPTION_KINDS);
    suite_add_tcase(s, replaced);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(replace_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
