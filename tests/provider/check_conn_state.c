/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a connection carries from one handshake to the next, and what an
 * application's own set-up can take away from the decision:
 * - an SSL reused with SSL_clear, a renegotiation or a post-handshake
 *   authentication answered with an empty Certificate starts with no
 *   account;
 * - an error raised anywhere in the chain's verification counts, whatever
 *   the application's verify callback did with it;
 * - a connection whose certificate certstore never decided (the
 *   application replaced the certificate verification callback) fails;
 * - a session never resumes under another context than its own, even one
 *   made at the same address after a reload;
 * - a certificate rejected after a resumption (audit mode) leaves no
 *   account, the session's included.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_conn_state"
#define ALICE "alice@partner-a"

static tls_harness fx;

/* ca-a pinned; alice, and the expired certificate, mapped. */
static void store_standard(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_map_leaf(&fx, db, "expired", "expired@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

static void setup(void)
{
    th_setup(&fx);
    store_standard();
    th_load_provider_with(&fx, "");
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* A client context with no certificate at all. */
static SSL_CTX *anonymous_client(void)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());

    ck_assert_ptr_nonnull(ctx);
    SSL_CTX_set_cert_store(ctx, th_trust_root(&fx));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static const char *account_of(SSL *server)
{
    return certstore_ssl_account_ex(server, fx.libctx);
}

/* ---- state left from an earlier handshake ------------------------------------------ */

/* Client certificates optional, as nginx's ssl_verify_client optional. */
static void make_optional_server(int max_version)
{
    th_make_server(&fx, 0, max_version, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER, NULL);
}

static int handshake_on(SSL *server, SSL_CTX *client_ctx, SSL **client_out)
{
    SSL *client = SSL_new(client_ctx);
    th_link *link;
    int ok;

    ck_assert_ptr_nonnull(client);
    SSL_set_connect_state(client);
    SSL_set_post_handshake_auth(client, 1);
    link = th_link_new(server, client);
    ok = th_link_handshake(link) && th_link_exchange(link);
    if (client_out != NULL) {
        *client_out = client;
        /* the caller goes on with this link: hand it over through the client's app data */
        SSL_set_app_data(client, link);
        return ok;
    }
    SSL_shutdown(client);
    SSL_shutdown(server);
    SSL_free(client);
    th_link_free(link);
    return ok;
}

START_TEST(test_ssl_clear_forgets_previous_account)
{
    int max_version = _i == 0 ? TLS1_2_VERSION : 0;
    SSL_CTX *alice, *anonymous;
    SSL *server;

    make_optional_server(max_version);
    alice = th_make_client(&fx, "alice");
    anonymous = anonymous_client();
    server = SSL_new(fx.server);
    ck_assert_ptr_nonnull(server);
    SSL_set_accept_state(server);
    ck_assert_msg(handshake_on(server, alice, NULL), "alice's handshake failed");
    ck_assert_ptr_nonnull(account_of(server));
    ck_assert_str_eq(account_of(server), ALICE);

    ck_assert_int_eq(SSL_clear(server), 1);
    SSL_set_accept_state(server);
    ck_assert_msg(handshake_on(server, anonymous, NULL), "anonymous handshake failed");
    ck_assert_ptr_null(SSL_get0_peer_certificate(server));
    ck_assert_msg(account_of(server) == NULL, "the next client inherited account '%s'",
                  account_of(server));
    SSL_free(server);
    SSL_CTX_free(alice);
    SSL_CTX_free(anonymous);
}
END_TEST

/* The server asks again for a certificate: renegotiation or post-handshake authentication. */
static void ask_again(SSL *server, SSL *client, int renegotiate)
{
    th_link *link = SSL_get_app_data(client);
    char buf[8];
    int i;

    if (renegotiate) {
        ck_assert_int_eq(SSL_renegotiate(server), 1);
    } else {
        ck_assert_int_eq(SSL_verify_client_post_handshake(server), 1);
    }
    ck_assert_int_le(SSL_do_handshake(server), 1);
    for (i = 0; i < 40; i++) {
        th_link_pump(link);
        (void)SSL_read(client, buf, sizeof(buf));
        th_link_pump(link);
        (void)SSL_read(server, buf, sizeof(buf));
        if (i > 4 && !SSL_renegotiate_pending(server))
            break;
    }
    ERR_clear_error();
}

START_TEST(test_empty_certificate_on_second_request_forgets_account)
{
    int renegotiate = _i == 0; /* TLS 1.2 renegotiation, else TLS 1.3 PHA */
    SSL_CTX *alice;
    SSL *server, *client = NULL;

    make_optional_server(renegotiate ? TLS1_2_VERSION : 0);
    if (!renegotiate) /* TLS 1.3: no certificate until asked after the handshake */
        SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE, NULL);
    alice = th_make_client(&fx, "alice");
    server = SSL_new(fx.server);
    ck_assert_ptr_nonnull(server);
    SSL_set_accept_state(server);
    ck_assert_msg(handshake_on(server, alice, &client), "first handshake failed");
    if (!renegotiate)
        ask_again(server, client, 0);
    ck_assert_ptr_nonnull(account_of(server));
    ck_assert_str_eq(account_of(server), ALICE);
    SSL_certs_clear(client); /* its certificate gone, the client answers with none */
    ask_again(server, client, renegotiate);
    ck_assert_msg(
        account_of(server) == NULL, "%s answered without a certificate still has account '%s'",
        renegotiate ? "a renegotiation" : "a post-handshake authentication", account_of(server));
    th_link_free(SSL_get_app_data(client));
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(alice);
}
END_TEST

/* Audit lets a rejected certificate's connection go on: nothing but the rejection speaks. */
static void setup_audit(void)
{
    th_setup(&fx);
    store_standard();
    th_load_provider_with(&fx, "mode = audit\n");
}

/*
 * alice's TLS 1.3 session resumed, then a post-handshake authentication
 * answered with bob's certificate (unmapped: rejected, audit lets it on):
 * the connection's account is none, not the session's, through either call.
 */
START_TEST(test_rejected_certificate_after_resumption_has_no_account)
{
    SSL_CTX *alice = th_make_client(&fx, "alice");
    th_outcome first;
    th_link *link;
    SSL *server, *client;
    certstore_decision d;

    make_optional_server(0);
    first = th_connect_with(&fx, alice, NULL, 1);
    ck_assert_msg(first.ok && first.session != NULL, "alice's first handshake failed");
    link = th_link_open(&fx, alice, first.session);
    server = th_link_server(link);
    client = th_link_client(link);
    SSL_set_post_handshake_auth(client, 1);
    ck_assert_msg(th_link_handshake(link) && th_link_exchange(link), "resumption failed");
    ck_assert_msg(SSL_session_reused(server), "alice's session was not resumed");
    ck_assert_ptr_nonnull(account_of(server));
    ck_assert_str_eq(account_of(server), ALICE);

    ck_assert_int_eq(SSL_use_certificate(client, fx.pki->bob.cert), 1);
    ck_assert_int_eq(SSL_use_PrivateKey(client, fx.pki->bob.key), 1);
    ck_assert_int_eq(SSL_add1_chain_cert(client, fx.pki->ca_a.cert), 1);
    SSL_set_app_data(client, link);
    ask_again(server, client, 0);
    ck_assert_ptr_nonnull(SSL_get0_peer_certificate(server));
    ck_assert_int_eq(X509_cmp(SSL_get0_peer_certificate(server), fx.pki->bob.cert), 0);
    ck_assert_int_eq(certstore_ssl_decision(server, certstore_conn_index(fx.libctx), &d), 1);
    ck_assert_str_eq(d.decision, "no-mapping");
    ck_assert_msg(d.account == NULL, "the decision API says account '%s'", d.account);
    ck_assert_msg(account_of(server) == NULL,
                  "certstore_ssl_account says '%s' for bob's rejected certificate",
                  account_of(server));
    th_link_free(link);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(alice);
}
END_TEST

/* ---- the application's verify callback --------------------------------------------- */

/* Forgives an expired certificate and erases the error, as a lenient application might. */
static int forgive_and_forget(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_HAS_EXPIRED) {
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
    }
    return ok;
}

/* Server set-ups, as in th_resumption_kinds. */
static const th_resumption_kind tls_kinds[] = {
    {"TLS 1.2", 0, TLS1_2_VERSION},
    {"TLS 1.3 stateless tickets", 0, 0},
    {"TLS 1.3 stateful tickets", SSL_OP_NO_TICKET, 0},
};
#define N_TLS_KINDS ((int)(sizeof(tls_kinds) / sizeof(tls_kinds[0])))

START_TEST(test_cleared_verify_error_still_rejects)
{
    const th_resumption_kind *k = &tls_kinds[_i];
    th_outcome out;

    th_make_server(&fx, k->options, k->max_version, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       forgive_and_forget);
    out = th_connect_as(&fx, "expired");
    ck_assert_msg(!out.ok, "%s: expired certificate accepted", k->name);
    ck_assert_msg(out.server_verify == X509_V_ERR_APPLICATION_VERIFICATION,
                  "%s: failed with verify result %ld, not certstore's rejection", k->name,
                  out.server_verify);
    th_assert_log_has(&fx, "result=reject reason=chain-invalid");
    th_assert_log_lacks(&fx, "result=accept");
}
END_TEST

/* ---- the application replaces certificate verification ------------------------------- */

static int accept_everything(X509_STORE_CTX *ctx, void *arg)
{
    return 1;
}

START_TEST(test_replaced_cert_verify_callback_fails_connection)
{
    const th_resumption_kind *k = &tls_kinds[_i];
    th_outcome out;

    th_make_server(&fx, k->options, k->max_version, 0);
    SSL_CTX_set_cert_verify_callback(fx.server, accept_everything, NULL);
    out = th_connect_as(&fx, "carol"); /* issued by ca-b, not pinned */
    ck_assert_msg(!out.ok, "%s: an undecided client completed the handshake", k->name);
    th_assert_log_has(&fx, "result=reject reason=verify-hook-replaced");
    out = th_connect_as(&fx, "alice"); /* even one certstore would accept */
    ck_assert_msg(!out.ok, "%s: an undecided client completed the handshake", k->name);
}
END_TEST

/* ---- sessions and contexts ----------------------------------------------------------- */

/*
 * A session cache shared by every context, as a server's shared-memory
 * cache or a fleet's is: the last session stored, by its id.
 */
static unsigned char shared_der[8192];
static int shared_der_len;

static int shared_new(SSL *ssl, SSL_SESSION *sess)
{
    unsigned char *p = shared_der;
    int len = i2d_SSL_SESSION(sess, NULL);

    if (len > 0 && len <= (int)sizeof(shared_der))
        shared_der_len = i2d_SSL_SESSION(sess, &p);
    return 0;
}

static SSL_SESSION *shared_get(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    const unsigned char *p = shared_der;

    *copy = 0;
    return shared_der_len > 0 ? d2i_SSL_SESSION(NULL, &p, shared_der_len) : NULL;
}

static unsigned char ticket_keys[80];

/* A server context sharing the session cache and ticket keys; `strict`: other trust settings. */
static SSL_CTX *server_context(const th_resumption_kind *k, int strict)
{
    SSL_CTX *saved = fx.server, *made;

    fx.server = NULL;
    th_make_server(&fx, k->options, k->max_version, 0);
    made = fx.server;
    fx.server = saved;
    SSL_CTX_set_session_cache_mode(made, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(made, shared_new);
    SSL_CTX_sess_set_get_cb(made, shared_get);
    ck_assert_int_eq(SSL_CTX_set_tlsext_ticket_keys(made, ticket_keys, sizeof(ticket_keys)), 1);
    if (strict)
        SSL_CTX_set_verify_depth(made, 0); /* no intermediate: alice cannot verify */
    return made;
}

static th_outcome connect_on(SSL_CTX *server, SSL_CTX *client, SSL_SESSION *resume)
{
    SSL_CTX *saved = fx.server;
    th_outcome out;

    fx.server = server;
    out = th_connect_with(&fx, client, resume, 1);
    fx.server = saved;
    return out;
}

/* A session made under a lenient context, offered to a stricter live one. */
START_TEST(test_no_resumption_into_context_with_other_trust_settings)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *lenient, *strict, *client;
    th_outcome first, same, other;

    ck_assert_int_eq(RAND_bytes(ticket_keys, sizeof(ticket_keys)), 1);
    lenient = server_context(k, 0);
    strict = server_context(k, 1);
    client = th_make_client(&fx, "alice");
    first = connect_on(lenient, client, NULL);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    same = connect_on(lenient, client, first.session);
    ck_assert_msg(same.ok && same.reused, "%s: no resumption in its own context", k->name);
    other = connect_on(strict, client, same.session);
    ck_assert_msg(!other.reused, "%s: resumed into a context with other trust settings", k->name);
    ck_assert_msg(!other.ok, "%s: the stricter context accepted alice", k->name);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(same.session);
    SSL_CTX_free(lenient);
    SSL_CTX_free(strict);
    SSL_CTX_free(client);
}
END_TEST

/*
 * A reload in the same process: the old context freed, a stricter one made,
 * quite possibly at the same address. Sessions of the old one stay out.
 */
START_TEST(test_no_resumption_into_context_made_after_reload)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *old, *reloaded, *client;
    const void *old_address;
    th_outcome first, again;

    ck_assert_int_eq(RAND_bytes(ticket_keys, sizeof(ticket_keys)), 1);
    old = server_context(k, 0);
    client = th_make_client(&fx, "alice");
    first = connect_on(old, client, NULL);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    old_address = old;
    SSL_CTX_free(old);
    reloaded = server_context(k, 1);
    again = connect_on(reloaded, client, first.session);
    ck_assert_msg(!again.reused, "%s: a session of the freed context resumed (%s address)", k->name,
                  (const void *)reloaded == old_address ? "same" : "another");
    ck_assert_msg(!again.ok, "%s: the reloaded, stricter context accepted alice", k->name);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(reloaded);
    SSL_CTX_free(client);
}
END_TEST

static Suite *conn_state_suite(void)
{
    Suite *s = suite_create("conn_state");
    TCase *state = tcase_create("state_between_handshakes");
    TCase *verify = tcase_create("application_verification");
    TCase *contexts = tcase_create("contexts");
    TCase *audit = tcase_create("audit");

    tcase_add_checked_fixture(state, setup, teardown);
    tcase_add_loop_test(state, test_ssl_clear_forgets_previous_account, 0, 2);
    tcase_add_loop_test(state, test_empty_certificate_on_second_request_forgets_account, 0, 2);
    suite_add_tcase(s, state);
    tcase_add_checked_fixture(verify, setup, teardown);
    tcase_add_loop_test(verify, test_cleared_verify_error_still_rejects, 0, N_TLS_KINDS);
    tcase_add_loop_test(verify, test_replaced_cert_verify_callback_fails_connection, 0,
                        N_TLS_KINDS);
    suite_add_tcase(s, verify);
    tcase_add_checked_fixture(contexts, setup, teardown);
    tcase_add_loop_test(contexts, test_no_resumption_into_context_with_other_trust_settings, 0,
                        TH_RESUMPTION_KINDS);
    tcase_add_loop_test(contexts, test_no_resumption_into_context_made_after_reload, 0,
                        TH_RESUMPTION_KINDS);
    suite_add_tcase(s, contexts);
    tcase_add_checked_fixture(audit, setup_audit, teardown);
    tcase_add_test(audit, test_rejected_certificate_after_resumption_has_no_account);
    suite_add_tcase(s, audit);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(conn_state_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
