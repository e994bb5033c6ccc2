/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What certstore.h reports to a server module for a connection
 * (certstore_conn_index, certstore_ssl_decision): the account, the reason
 * token and the mapping or rule, as the provider took them for that very
 * connection; on a resumed session, those the session was accepted with.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_decision"

static tls_harness fx;

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

static cs_db *store_with_pin(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    return db;
}

static int64_t map_leaf(cs_db *db, const char *leaf, const char *account, cs_kind kind)
{
    cs_mapping_spec spec;
    int64_t id = 0;

    memset(&spec, 0, sizeof(spec));
    ck_assert_int_eq(cs_mapping_spec_from_cert(&spec, testpki_get(fx.pki, leaf)->cert, kind),
                     CS_OK);
    spec.account = account;
    spec.not_before = CS_TIME_NONE;
    spec.not_after = CS_TIME_NONE;
    ck_assert_msg(cs_mapping_add(db, &spec, 1, &id) == CS_OK, "%s", cs_db_errmsg(db));
    ck_assert_int_gt(id, 0);
    return id;
}

static int64_t add_rule(cs_db *db, const char *account, const char *subject)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_rule_spec rule = {.action = CS_RULE_ALLOW,
                         .account = account,
                         .pin_fp = fp,
                         .priority = CS_RULE_PRIORITY_DEFAULT,
                         .subject = subject};
    int64_t id = 0;

    ck_assert(cs_fp_of_cert(fx.pki->ca_a.cert, fp));
    ck_assert_msg(cs_rule_add(db, &rule, 1, &id) == CS_OK, "%s", cs_db_errmsg(db));
    return id;
}

/* A handshake as `leaf` (NULL: no certificate), then data both ways; returns the link. */
static th_link *connect_as(const char *leaf, SSL_CTX **client_out, SSL_SESSION *resume)
{
    SSL_CTX *client = *client_out;
    th_link *link;

    if (client == NULL) {
        client = leaf != NULL ? th_make_client(&fx, leaf)
                              : SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());
        ck_assert_ptr_nonnull(client);
        if (leaf == NULL)
            SSL_CTX_set_cert_store(client, th_trust_root(&fx));
        *client_out = client;
    }
    link = th_link_open(&fx, client, resume);
    ck_assert_msg(th_link_handshake(link) && th_link_exchange(link), "handshake as %s failed",
                  leaf != NULL ? leaf : "(none)");
    return link;
}

/* A clean close: a session of a connection freed without one is not resumed. */
static void close_link(th_link *link)
{
    SSL_shutdown(th_link_client(link));
    SSL_shutdown(th_link_server(link));
    th_link_free(link);
}

static void assert_decision(const th_link *link, const char *account, const char *decision,
                            const char *mapping, int resumed)
{
    certstore_decision d;
    int index = certstore_conn_index(fx.libctx);
    int has = certstore_ssl_decision(th_link_server(link), index, &d);

    ck_assert_int_ge(index, 0);
    ck_assert_int_eq(has, decision != NULL);
    if (account == NULL)
        ck_assert_ptr_null(d.account);
    else
        ck_assert_str_eq(d.account != NULL ? d.account : "(null)", account);
    if (decision == NULL)
        ck_assert_ptr_null(d.decision);
    else
        ck_assert_str_eq(d.decision != NULL ? d.decision : "(null)", decision);
    ck_assert_str_eq(d.mapping, mapping);
    ck_assert_int_eq(d.resumed, resumed);
}

START_TEST(test_conn_index_needs_the_provider)
{
    th_load_provider_with(&fx, "");
    ck_assert_int_ge(certstore_conn_index(fx.libctx), 0);
    ck_assert_int_eq(certstore_conn_index(fx.libctx), certstore_account_index(fx.libctx));
    ck_assert_int_eq(certstore_conn_index(NULL), -1); /* not loaded there */
}
END_TEST

/* The three ways in each report themselves, with the mapping's or rule's own id. */
START_TEST(test_mapping_of_each_way_in)
{
    cs_db *db = store_with_pin();
    int64_t cert_id = map_leaf(db, "alice", "alice@a", CS_KIND_CERT);
    int64_t spki_id = map_leaf(db, "bob", "bob@a", CS_KIND_SPKI);
    SSL_CTX *alice = NULL, *bob = NULL;
    char want[CERTSTORE_MAPPING_MAX];
    th_link *link;

    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);

    link = connect_as("alice", &alice, NULL);
    snprintf(want, sizeof(want), "cert:%lld", (long long)cert_id);
    assert_decision(link, "alice@a", "accept", want, 0);
    close_link(link);

    link = connect_as("bob", &bob, NULL);
    snprintf(want, sizeof(want), "spki:%lld", (long long)spki_id);
    assert_decision(link, "bob@a", "accept", want, 0);
    close_link(link);
    SSL_CTX_free(alice);
    SSL_CTX_free(bob);
}
END_TEST

START_TEST(test_mapping_of_a_rule)
{
    cs_db *db = store_with_pin();
    int64_t rule_id = add_rule(db, "partner", "CN=bob");
    SSL_CTX *bob = NULL;
    char want[CERTSTORE_MAPPING_MAX];
    th_link *link;

    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    link = connect_as("bob", &bob, NULL);
    snprintf(want, sizeof(want), "rule:%lld", (long long)rule_id);
    assert_decision(link, "partner", "accept", want, 0);
    close_link(link);
    SSL_CTX_free(bob);
}
END_TEST

/* A resumed session reports the acceptance it was made with: account and mapping. */
static const struct {
    const char *name;
    long options;
    int max_version;
} resumption_kinds[] = {
    {"TLS 1.2 session ID", SSL_OP_NO_TICKET, TLS1_2_VERSION},
    {"TLS 1.2 ticket", 0, TLS1_2_VERSION},
    {"TLS 1.3 stateless ticket", 0, 0},
    {"TLS 1.3 stateful ticket", SSL_OP_NO_TICKET, 0},
};

START_TEST(test_resumed_session_reports_its_acceptance)
{
    cs_db *db = store_with_pin();
    int64_t cert_id = map_leaf(db, "alice", "alice@a", CS_KIND_CERT);
    SSL_CTX *alice = NULL;
    SSL_SESSION *session;
    char want[CERTSTORE_MAPPING_MAX];
    th_link *link;

    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, resumption_kinds[_i].options, resumption_kinds[_i].max_version, 0);
    snprintf(want, sizeof(want), "cert:%lld", (long long)cert_id);

    link = connect_as("alice", &alice, NULL);
    assert_decision(link, "alice@a", "accept", want, 0);
    session = SSL_get1_session(th_link_client(link));
    ck_assert_ptr_nonnull(session);
    close_link(link);

    link = connect_as("alice", &alice, session);
    ck_assert_msg(SSL_session_reused(th_link_server(link)), "%s: not resumed",
                  resumption_kinds[_i].name);
    assert_decision(link, "alice@a", "accept", want, 1);
    close_link(link);
    SSL_SESSION_free(session);
    SSL_CTX_free(alice);
}
END_TEST

/* Audit lets a would-be rejection through: the reason, never an account. */
START_TEST(test_audit_reports_the_reason_without_account)
{
    cs_db *db = store_with_pin();
    SSL_CTX *bob = NULL;
    th_link *link;

    map_leaf(db, "alice", "alice@a", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "mode = audit\n");
    th_make_server(&fx, 0, 0, 0);
    link = connect_as("bob", &bob, NULL);
    assert_decision(link, NULL, "no-mapping", "", 0);
    ck_assert_ptr_null(certstore_ssl_account_ex(th_link_server(link), fx.libctx));
    close_link(link);
    SSL_CTX_free(bob);
}
END_TEST

/* A disabled mapping matched: the reason names it, and still no account. */
START_TEST(test_audit_reports_the_disabled_mapping)
{
    cs_db *db = store_with_pin();
    int64_t id = map_leaf(db, "bob", "bob@a", CS_KIND_CERT);
    cs_mapping_ref ref = {.id = id};
    SSL_CTX *bob = NULL;
    char want[CERTSTORE_MAPPING_MAX];
    th_link *link;

    ck_assert_int_eq(cs_mapping_set_enabled(db, &ref, 0), CS_OK);
    th_store_commit(db);
    th_load_provider_with(&fx, "mode = audit\n");
    th_make_server(&fx, 0, 0, 0);
    link = connect_as("bob", &bob, NULL);
    snprintf(want, sizeof(want), "cert:%lld", (long long)id);
    assert_decision(link, NULL, "mapping-disabled", want, 0);
    close_link(link);
    SSL_CTX_free(bob);
}
END_TEST

/* Client certificates optional and none sent: nothing decided, nothing reported. */
START_TEST(test_no_certificate_no_decision)
{
    cs_db *db = store_with_pin();
    SSL_CTX *anonymous = NULL;
    th_link *link;

    map_leaf(db, "alice", "alice@a", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, 0, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER, NULL);
    link = connect_as(NULL, &anonymous, NULL);
    assert_decision(link, NULL, NULL, "", 0);
    close_link(link);
    SSL_CTX_free(anonymous);
}
END_TEST

static Suite *decision_suite(void)
{
    Suite *s = suite_create(SUITE_NAME);
    TCase *tc = tcase_create("decision");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_conn_index_needs_the_provider);
    tcase_add_test(tc, test_mapping_of_each_way_in);
    tcase_add_test(tc, test_mapping_of_a_rule);
    tcase_add_loop_test(tc, test_resumed_session_reports_its_acceptance, 0,
                        (int)(sizeof(resumption_kinds) / sizeof(resumption_kinds[0])));
    tcase_add_test(tc, test_audit_reports_the_reason_without_account);
    tcase_add_test(tc, test_audit_reports_the_disabled_mapping);
    tcase_add_test(tc, test_no_certificate_no_decision);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(decision_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
