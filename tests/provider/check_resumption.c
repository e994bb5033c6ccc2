/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resumption under the policy, in process: sessions and tickets must not
 * outlive the decision that made them, by time or by a narrowing change,
 * however the ClientHello is timed; they keep resuming while nothing
 * narrowed; settings that disagree between library contexts deny; and
 * certstore's session-id context does not merge an application's virtual
 * hosts.
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

#define SUITE_NAME "check_resumption"
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

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- time: a mapping's not-after ends every way back in ------------------------------ */

#define MAPPING_LIFETIME 3 /* seconds */

/*
 * Resume once a second, always with the newest session the client holds
 * (TLS 1.3 hands out a fresh ticket on every resumption), until well past
 * the mapping's end: resumption must work before it and never after it.
 */
START_TEST(test_repeated_resumption_cannot_pass_mapping_end)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    int64_t not_after = (int64_t)time(NULL) + MAPPING_LIFETIME;
    SSL_CTX *client;
    SSL_SESSION *session;
    th_outcome first, again;
    int resumed_before = 0, i;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, not_after);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    session = first.session;
    for (i = 0; i < MAPPING_LIFETIME + 3; i++) {
        int64_t started;

        sleep(1);
        /*
         * The decision is taken during the handshake, so judge it by the
         * time the handshake started: one that starts at not_after (still
         * valid) may finish a second later on a loaded machine.
         */
        started = (int64_t)time(NULL);
        again = th_connect_with(&fx, client, session, 1);
        if (started > not_after) {
            ck_assert_msg(!again.reused, "%s: resumed %lds after the mapping ended", k->name,
                          (long)(started - not_after));
            ck_assert_msg(!again.ok, "%s: accepted after the mapping ended", k->name);
        } else if (again.reused) {
            resumed_before++;
        }
        if (again.session != NULL) {
            SSL_SESSION_free(session);
            session = again.session;
        }
    }
    ck_assert_msg(resumed_before > 0, "%s: never resumed before the mapping ended", k->name);
    th_assert_log_has(&fx, "result=reject reason=mapping-expired");
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

/* Every ticket issued on a resumption ends when the mapping ends, not later. */
START_TEST(test_ticket_lifetime_is_absolute)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    int64_t not_after = (int64_t)time(NULL) + 60;
    SSL_CTX *client;
    th_outcome first, again;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];
    long end_first, end_again;

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, not_after);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    sleep(2);
    again = th_connect_with(&fx, client, first.session, 1);
    ck_assert_msg(again.ok && again.reused, "%s: did not resume", k->name);
    end_first = first.server_end;
    end_again = again.server_end;
    ck_assert_msg(end_first <= not_after + 1, "%s: first session ends %ld > %lld", k->name,
                  end_first, (long long)not_after);
    ck_assert_msg(end_again <= not_after + 1, "%s: resumed session ends %ld > %lld", k->name,
                  end_again, (long long)not_after);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- a narrowing change between SSL_new and the ClientHello ------------------------- */

START_TEST(test_client_hello_after_narrowing_not_resumed)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    th_connect_opts late_removal = {.sni = "localhost", .before = remove_alice_mapping};
    SSL_CTX *client;
    th_outcome first, again;

    store_standard();
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    /* The server SSL exists (connection accepted) before the mapping goes. */
    again = th_connect_ex(&fx, client, first.session, 0, &late_removal);
    ck_assert_msg(!again.reused, "%s: resumed a session made before the removal", k->name);
    ck_assert_msg(!again.ok, "%s: accepted after the removal", k->name);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- writes that add and still narrow ------------------------------------------------ */

/*
 * Each scenario: a store in which alice is accepted, then one write that
 * only adds a row and yet changes her decision. Sessions made before it
 * must be decided again: rejected, or accepted as the new account.
 */
typedef struct {
    const char *name;
    void (*store)(cs_db *db); /* after ca-a is pinned */
    void (*write)(cs_db *db);
    const char *reject_reason; /* NULL: accepted as `account` */
    const char *account;
} adding_write;

static void store_spki(cs_db *db)
{
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_SPKI, CS_TIME_NONE, CS_TIME_NONE);
}

static void store_spki_and_closed_account(cs_db *db)
{
    store_spki(db);
    ck_assert_int_eq(cs_account_add(db, "closed", NULL), CS_OK);
    ck_assert_int_eq(cs_account_set_enabled(db, "closed", 0), CS_OK);
}

static void add_rule(cs_db *db, const char *account, int64_t priority, const char *subject)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_rule_spec rule = {.action = CS_RULE_ALLOW,
                         .account = account,
                         .pin_fp = fp,
                         .priority = priority,
                         .subject = subject};

    ck_assert(cs_fp_of_cert(fx.pki->ca_a.cert, fp));
    ck_assert_msg(cs_rule_add(db, &rule, 1, NULL) == CS_OK, "%s", cs_db_errmsg(db));
}

static void store_partner_rule(cs_db *db)
{
    add_rule(db, "partner", CS_RULE_PRIORITY_DEFAULT, "O=certstore tests");
}

static void add_cert_mapping_not_yet_valid(cs_db *db)
{
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, (int64_t)time(NULL) + 3600,
                CS_TIME_NONE);
}

static void add_issuer_serial_to_closed_account(cs_db *db)
{
    th_map_leaf(&fx, db, "alice", "closed", CS_KIND_ISSUER_SERIAL, CS_TIME_NONE, CS_TIME_NONE);
}

static void add_rule_ahead(cs_db *db)
{
    add_rule(db, "other", 1, "CN=alice");
}

static const adding_write adding_writes[] = {
    {"cert mapping not yet valid over spki", store_spki, add_cert_mapping_not_yet_valid,
     "mapping-not-yet-valid", NULL},
    {"issuer-serial mapping to a disabled account", store_spki_and_closed_account,
     add_issuer_serial_to_closed_account, "account-disabled", NULL},
    {"rule ahead of the allow rule", store_partner_rule, add_rule_ahead, NULL, "other"},
};
#define N_ADDING ((int)(sizeof(adding_writes) / sizeof(adding_writes[0])))

START_TEST(test_adding_write_makes_session_decide_again)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i % TH_RESUMPTION_KINDS];
    const adding_write *w = &adding_writes[_i / TH_RESUMPTION_KINDS];
    char fp[CS_FP_HEX_LEN + 1], want[128];
    SSL_CTX *client;
    th_outcome first, again;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    w->store(db);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    db = th_store_begin(fx.db, SUITE_NAME);
    w->write(db);
    th_store_commit(db);
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!again.reused, "%s, %s: resumed", k->name, w->name);
    if (w->reject_reason != NULL) {
        ck_assert_msg(!again.ok, "%s, %s: accepted", k->name, w->name);
        snprintf(want, sizeof(want), "result=reject reason=%s", w->reject_reason);
        th_assert_log_has(&fx, want);
    } else {
        ck_assert_msg(again.ok && again.have_account, "%s, %s: rejected", k->name, w->name);
        ck_assert_str_eq(again.account, w->account);
    }
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- every policy write re-decides; a commit of none keeps resumption ------------- */

/*
 * Writes that only widen here: a new pin, a new mapping. Elsewhere the same
 * writes narrow (a cert mapping shadows an spki one, a rule goes ahead of
 * another), and the generation cannot tell which: every policy write makes
 * sessions decide again, in a full handshake.
 */
static void pin_another_ca(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_b.cert, "partner B", fp), CS_OK);
    th_store_commit(db);
}

static void map_another_client(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    th_map_leaf(&fx, db, "bob", "bob@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

/* A commit that writes no policy row: enabling the pin that is enabled (a change-log row). */
static void enable_enabled_pin(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert(cs_fp_of_cert(fx.pki->ca_a.cert, fp));
    ck_assert_int_eq(cs_pin_set_enabled(db, fp, 1), CS_OK);
    th_store_commit(db);
}

START_TEST(test_policy_write_makes_session_decide_again)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    th_connect_opts late_write = {.sni = "localhost", .before = map_another_client};
    SSL_CTX *client;
    th_outcome first, again, late;

    store_standard();
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    pin_another_ca();
    again = th_connect_with(&fx, client, first.session, 1);
    ck_assert_msg(again.ok && !again.reused, "%s: resumed after a policy write", k->name);
    ck_assert_msg(again.have_account, "%s: no account after deciding again", k->name);
    ck_assert_str_eq(again.account, ALICE_ACCOUNT);
    late = th_connect_ex(&fx, client, again.session, 0, &late_write);
    ck_assert_msg(late.ok && !late.reused, "%s: resumed after a policy write", k->name);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_SESSION_free(late.session);
    SSL_CTX_free(client);
}
END_TEST

START_TEST(test_resumption_survives_commit_without_policy_write)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    th_connect_opts late_commit = {.sni = "localhost", .before = enable_enabled_pin};
    SSL_CTX *client;
    th_outcome first, again, late;

    store_standard();
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    enable_enabled_pin();
    again = th_connect_with(&fx, client, first.session, 1);
    ck_assert_msg(again.ok && again.reused, "%s: no resumption after a commit of nothing", k->name);
    ck_assert_msg(again.have_account, "%s: no account on resumption", k->name);
    ck_assert_str_eq(again.account, ALICE_ACCOUNT);
    late = th_connect_ex(&fx, client, again.session, 0, &late_commit);
    ck_assert_msg(late.ok && late.reused, "%s: a commit of nothing stopped resumption", k->name);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

/* Repeated TLS 1.3 resumption keeps working (each resumption renews the ticket). */
START_TEST(test_chained_resumption_works_when_nothing_narrowed)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *client;
    SSL_SESSION *session;
    th_outcome first, again;
    int i;

    store_standard();
    th_load_provider_with(&fx, "");
    client = th_first_handshake(&fx, k, "alice", &first);
    session = first.session;
    for (i = 0; i < 3; i++) {
        again = th_connect_with(&fx, client, session, 1);
        ck_assert_msg(again.ok && again.reused, "%s: resumption %d failed", k->name, i + 1);
        ck_assert_str_eq(again.account, ALICE_ACCOUNT);
        SSL_SESSION_free(session);
        session = again.session;
    }
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- two library contexts: audit first, enforce second ---------------------------- */

START_TEST(test_audit_then_enforce_context_denies)
{
    char audit_cnf[600], lines[1200];
    FILE *f;

    store_standard();
    /* The default library context, as a server's OPENSSL_CONF would load it. */
    snprintf(audit_cnf, sizeof(audit_cnf), "%s/audit.cnf", fx.dir);
    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\nmode = audit\n", fx.db, fx.log);
    th_write_cnf(&fx, lines);
    ck_assert_int_eq(rename(fx.cnf, audit_cnf), 0);
    /* The provider checks its section's keys in $OPENSSL_CONF, as servers set it. */
    ck_assert_int_eq(setenv("OPENSSL_CONF", audit_cnf, 1), 0);
    ck_assert_int_eq(OSSL_LIB_CTX_load_config(NULL, audit_cnf), 1);
    ck_assert(OSSL_PROVIDER_available(NULL, "certstore"));
    /* A second context with mode = enforce: the settings disagree. */
    th_load_provider_with(&fx, "mode = enforce\n");
    th_make_server(&fx, 0, 0, 0);
    th_assert_rejected(&fx, "alice", "config-error");
    th_assert_rejected(&fx, "carol", "config-error");
    f = fopen(fx.log, "r");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    th_assert_log_lacks(&fx, "result=would-reject");
}
END_TEST

/* ---- virtual hosts ---------------------------------------------------------------- */

/*
 * Two virtual hosts with their own session-id contexts, as a server with
 * server blocks sets them; "b.test" selects the second. A session made on
 * one host must not resume on the other, wherever the application switches
 * (ClientHello callback or servername callback), for every resumption
 * kind. With a servername callback OpenSSL 3.0 looks a TLS 1.2 session up
 * before the switch (it resumes across hosts without certstore): the
 * ClientHello's server name, part of certstore's binding, keeps them apart.
 */
static SSL_CTX *vhost_b;

static int switch_in_client_hello(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *ext;
    size_t len;

    /* server_name: list length (2), type (1), name length (2), name */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) && len > 5 &&
        len - 5 == strlen("b.test") && memcmp(ext + 5, "b.test", 6) == 0)
        SSL_set_SSL_CTX(ssl, vhost_b);
    return SSL_CLIENT_HELLO_SUCCESS;
}

static int switch_in_servername(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (name != NULL && strcmp(name, "b.test") == 0)
        SSL_set_SSL_CTX(ssl, vhost_b);
    return SSL_TLSEXT_ERR_OK;
}

static void make_vhosts(const th_resumption_kind *k, int in_client_hello)
{
    SSL_CTX *a;

    th_make_server(&fx, k->options, k->max_version, 0);
    a = fx.server;
    fx.server = NULL;
    th_make_server(&fx, k->options, k->max_version, 0);
    vhost_b = fx.server;
    fx.server = a;
    ck_assert_int_eq(SSL_CTX_set_session_id_context(a, (const unsigned char *)"vhost-a", 7), 1);
    ck_assert_int_eq(SSL_CTX_set_session_id_context(vhost_b, (const unsigned char *)"vhost-b", 7),
                     1);
    if (in_client_hello)
        SSL_CTX_set_client_hello_cb(a, switch_in_client_hello, NULL);
    else
        SSL_CTX_set_tlsext_servername_callback(a, switch_in_servername);
}

static void check_no_cross_vhost_resumption(const th_resumption_kind *k, int in_client_hello)
{
    th_connect_opts on_a = {.sni = "a.test"}, on_b = {.sni = "b.test"};
    SSL_CTX *client;
    th_outcome first, same, other;

    store_standard();
    th_load_provider_with(&fx, "");
    make_vhosts(k, in_client_hello);
    client = th_make_client(&fx, "alice");
    first = th_connect_ex(&fx, client, NULL, 1, &on_b);
    ck_assert_msg(first.ok, "%s: first handshake on b failed", k->name);
    same = th_connect_ex(&fx, client, first.session, 0, &on_b);
    ck_assert_msg(same.ok, "%s: second handshake on b failed", k->name);
    other = th_connect_ex(&fx, client, first.session, 0, &on_a);
    ck_assert_msg(!other.reused, "%s: a session made on vhost b resumed on vhost a", k->name);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
    SSL_CTX_free(vhost_b);
}

START_TEST(test_no_resumption_across_vhosts_switched_in_client_hello)
{
    check_no_cross_vhost_resumption(&th_resumption_kinds[_i], 1);
}
END_TEST

START_TEST(test_no_resumption_across_vhosts_switched_by_servername)
{
    check_no_cross_vhost_resumption(&th_resumption_kinds[_i], 0);
}
END_TEST

static Suite *resumption_suite(void)
{
    Suite *s = suite_create("resumption");
    TCase *time_limit = tcase_create("time_limit");
    TCase *narrowing = tcase_create("narrowing");
    TCase *still_works = tcase_create("still_works");
    TCase *contexts = tcase_create("library_contexts");
    TCase *vhosts = tcase_create("vhosts");

    tcase_add_checked_fixture(time_limit, setup, teardown);
    tcase_set_timeout(time_limit, 30);
    tcase_add_loop_test(time_limit, test_repeated_resumption_cannot_pass_mapping_end, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(time_limit, test_ticket_lifetime_is_absolute, 0, TH_RESUMPTION_KINDS);
    suite_add_tcase(s, time_limit);

    tcase_add_checked_fixture(narrowing, setup, teardown);
    tcase_add_loop_test(narrowing, test_client_hello_after_narrowing_not_resumed, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(narrowing, test_adding_write_makes_session_decide_again, 0,
                        TH_RESUMPTION_KINDS * N_ADDING);
    suite_add_tcase(s, narrowing);

    tcase_add_checked_fixture(still_works, setup, teardown);
    tcase_add_loop_test(still_works, test_policy_write_makes_session_decide_again, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(still_works, test_resumption_survives_commit_without_policy_write, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(still_works, test_chained_resumption_works_when_nothing_narrowed, 0,
                        TH_RESUMPTION_KINDS);
    suite_add_tcase(s, still_works);

    tcase_add_checked_fixture(contexts, setup, teardown);
    tcase_add_test(contexts, test_audit_then_enforce_context_denies);
    suite_add_tcase(s, contexts);

    tcase_add_checked_fixture(vhosts, setup, teardown);
    tcase_add_loop_test(vhosts, test_no_resumption_across_vhosts_switched_in_client_hello, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(vhosts, test_no_resumption_across_vhosts_switched_by_servername, 0,
                        TH_RESUMPTION_KINDS);
    suite_add_tcase(s, vhosts);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(resumption_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
