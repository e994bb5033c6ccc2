/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Acceptances kept per thread (provider/decache.c) and the ClientHello's
 * policy state kept with them are reused only while nothing has been
 * committed to the store. These tests reconnect the same client again and
 * again (each a full handshake) so that the kept acceptance is what would
 * answer, then change the store in ways the policy generation does not
 * see, or let time end the acceptance, and require the next handshake to
 * be decided anew.
 *
 * Every test runs in its own process (Check's default fork mode): the hook
 * keeps the configuration of the first activation.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_decache"
#define ALICE_ACCOUNT "alice@partner-a"
#define REPEATS 5

static tls_harness fx;

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* Pin ca-a, map alice by certificate, windowed [not_before, not_after]. */
static void store_alice(int64_t not_before, int64_t not_after)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, not_before, not_after);
    th_store_commit(db);
}

static void assert_accepted_repeatedly(const char *leaf, const char *account)
{
    for (int i = 0; i < REPEATS; i++) {
        th_outcome out = th_connect_as(&fx, leaf);

        ck_assert_msg(out.ok, "%s not accepted (round %d)", leaf, i);
        ck_assert_str_eq(out.account, account);
    }
}

/*
 * A write through plain SQLite, as an operator's sqlite3 shell would, that
 * leaves the generation as it was: the schema's triggers bump it for every
 * policy row, so the same transaction puts it back.
 */
static void sql_write(const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    char txn[512];

    snprintf(txn, sizeof(txn),
             "BEGIN IMMEDIATE; CREATE TEMP TABLE was AS SELECT generation FROM main.meta; %s;"
             " UPDATE main.meta SET generation = (SELECT generation FROM was); COMMIT",
             sql);
    ck_assert_int_eq(sqlite3_open_v2(fx.db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_msg(sqlite3_exec(db, txn, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql,
                  err ? err : "?");
    sqlite3_close(db);
}

static int64_t generation_now(void)
{
    cs_db *db = NULL;
    int64_t generation = -1;

    ck_assert_int_eq(cs_db_open(&db, fx.db, CS_OPEN_READONLY), CS_OK);
    ck_assert_int_eq(cs_db_generation(db, &generation), CS_OK);
    cs_db_close(db);
    return generation;
}

/* ---- commits end what was kept ----------------------------------------------------- */

START_TEST(test_commit_without_generation_bump_is_seen)
{
    int64_t generation;

    store_alice(CS_TIME_NONE, CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted_repeatedly("alice", ALICE_ACCOUNT);
    generation = generation_now();
    sql_write("UPDATE accounts SET enabled = 0 WHERE name = '" ALICE_ACCOUNT "'");
    ck_assert_int_eq(generation_now(), generation); /* only the commit itself says it */
    th_assert_rejected(&fx, "alice", "account-disabled");
    sql_write("UPDATE accounts SET enabled = 1 WHERE name = '" ALICE_ACCOUNT "'");
    assert_accepted_repeatedly("alice", ALICE_ACCOUNT);
    sql_write("DELETE FROM mappings");
    th_assert_rejected(&fx, "alice", "no-mapping");
}
END_TEST

START_TEST(test_cli_style_commits_are_seen_every_time)
{
    store_alice(CS_TIME_NONE, CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    for (int round = 0; round < 3; round++) {
        cs_db *db;
        cs_mapping_ref ref = th_ref_for(&fx, "alice", CS_KIND_CERT);

        assert_accepted_repeatedly("alice", ALICE_ACCOUNT);
        db = th_store_begin(fx.db, SUITE_NAME);
        ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
        th_store_commit(db);
        th_assert_rejected(&fx, "alice", "no-mapping");
        db = th_store_begin(fx.db, SUITE_NAME);
        th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
        th_store_commit(db);
    }
    assert_accepted_repeatedly("alice", ALICE_ACCOUNT);
}
END_TEST

/* Another leaf under the same issuer is its own decision, never alice's. */
START_TEST(test_kept_acceptance_is_per_certificate)
{
    store_alice(CS_TIME_NONE, CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    for (int i = 0; i < REPEATS; i++) {
        th_outcome alice = th_connect_as(&fx, "alice");
        th_outcome bob = th_connect_as(&fx, "bob");
        th_outcome renewed = th_connect_as(&fx, "alice-renewed");

        ck_assert_msg(alice.ok, "alice rejected in round %d", i);
        ck_assert_msg(!bob.ok, "unmapped bob accepted in round %d", i);
        ck_assert_msg(!renewed.ok, "alice's renewed certificate accepted in round %d", i);
    }
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
}
END_TEST

/* ---- time ends what was kept --------------------------------------------------------- */

START_TEST(test_kept_acceptance_ends_with_the_mapping)
{
    int64_t not_after = (int64_t)time(NULL) + 2;
    int accepted_before = 0, checked_after = 0;

    store_alice(CS_TIME_NONE, not_after);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    /* Full handshakes every quarter second until two seconds past the end. */
    while ((int64_t)time(NULL) <= not_after + 2) {
        int64_t started = (int64_t)time(NULL);
        th_outcome out = th_connect_as(&fx, "alice");

        if (started > not_after) {
            ck_assert_msg(!out.ok, "accepted %llds after the mapping ended",
                          (long long)(started - not_after));
            checked_after++;
        } else if (out.ok) {
            accepted_before++;
        }
        usleep(250000);
    }
    ck_assert_int_gt(accepted_before, 0);
    ck_assert_int_gt(checked_after, 0);
    th_assert_log_has(&fx, "result=reject reason=mapping-expired");
}
END_TEST

/* ---- a replaced file ends what was kept ----------------------------------------------- */

START_TEST(test_replaced_file_is_decided_anew)
{
    char other[600];
    cs_db *db;
    char fp[CS_FP_HEX_LEN + 1];

    store_alice(CS_TIME_NONE, CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    assert_accepted_repeatedly("alice", ALICE_ACCOUNT);
    /* Pinned, alice not mapped; renamed over the store as a deploy tool would. */
    snprintf(other, sizeof(other), "%s.new", fx.db);
    db = th_store_begin(other, SUITE_NAME);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_store_commit(db);
    ck_assert_int_eq(rename(other, fx.db), 0);
    th_assert_rejected(&fx, "alice", "no-mapping");
}
END_TEST

static Suite *decache_suite(void)
{
    Suite *s = suite_create("decache");
    TCase *tc = tcase_create("kept_acceptances");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_commit_without_generation_bump_is_seen);
    tcase_add_test(tc, test_cli_style_commits_are_seen_every_time);
    tcase_add_test(tc, test_kept_acceptance_is_per_certificate);
    tcase_add_test(tc, test_kept_acceptance_ends_with_the_mapping);
    tcase_add_test(tc, test_replaced_file_is_decided_anew);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(decache_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? 0 : 1;
}
