/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an application's own set-up must not take from the policy, and what
 * the policy must not take from the application (conn.c, resume.c):
 * - a client made from a role-neutral method (TLS_method, what nginx's
 *   proxy_ssl and many clients use) gets certstore's per-connection
 *   session-id context at SSL_new, so every resumption its server accepts
 *   fails on the client ("attempt to reuse session in different context");
 * - an application that sets its own per-SSL info callback (as Node.js
 *   does) keeps the ClientHello binding forever: a HelloRetryRequest's
 *   second ClientHello (or an SSL_clear'ed SSL) resumes under the state of
 *   the first;
 * - an application that installs its own ticket callbacks (stunnel) lets
 *   TLS 1.3 resumption chains outlive the mapping's not_after;
 * - below TLS 1.2 a replaced verification callback would go unseen, so a
 *   server that asks for certificates does not speak those versions.
 *
 * Every test runs in its own process (Check's default fork mode).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_app_callbacks"
#define ALICE "alice@partner-a"

static tls_harness fx;

static void store_standard(int64_t not_after)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE, CS_KIND_SPKI, CS_TIME_NONE, not_after);
    th_store_commit(db);
}

static void remove_alice_mapping(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    cs_mapping_ref ref = th_ref_for(&fx, "alice", CS_KIND_SPKI);

    ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
    th_store_commit(db);
}

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- a client made from TLS_method() ------------------------------------------------ */

/* th_make_client, but from the role-neutral method, as SSL_CTX_new(SSLv23_method()) in nginx. */
static SSL_CTX *neutral_client(const char *leaf)
{
    const testpki_cred *cred = testpki_get(fx.pki, leaf);
    SSL_CTX *ctx = SSL_CTX_new_ex(fx.libctx, NULL, TLS_method());

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cred->cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, cred->key), 1);
    X509_up_ref(fx.pki->ca_a.cert);
    ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(ctx, fx.pki->ca_a.cert), 1);
    SSL_CTX_set_cert_store(ctx, th_trust_root(&fx));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

START_TEST(test_tls_method_client_still_resumes)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *client;
    th_outcome first, again;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    client = neutral_client("alice");
    first = th_connect_with(&fx, client, NULL, 1);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(again.ok, "%s: a TLS_method client failed to resume (client-side error)",
                  k->name);
    ck_assert_msg(again.reused, "%s: not resumed", k->name);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* A server made from TLS_method() too (nginx's servers): sessions still bound to the policy. */
START_TEST(test_tls_method_server_resumes_only_while_policy_holds)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i / 2];
    int narrow = _i % 2;
    SSL_CTX *client;
    th_outcome first, again;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    fx.server = SSL_CTX_new_ex(fx.libctx, NULL, TLS_method());
    ck_assert_ptr_nonnull(fx.server);
    ck_assert_int_eq(SSL_CTX_use_certificate(fx.server, fx.pki->server.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(fx.server, fx.pki->server.key), 1);
    SSL_CTX_set_cert_store(fx.server, th_trust_root(&fx));
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_options(fx.server, k->options);
    ck_assert_int_eq(SSL_CTX_set_session_id_context(fx.server, (const unsigned char *)"app", 3), 1);
    if (k->max_version != 0)
        ck_assert_int_eq(SSL_CTX_set_max_proto_version(fx.server, k->max_version), 1);
    client = neutral_client("alice");
    first = th_connect_with(&fx, client, NULL, 1);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    if (narrow)
        remove_alice_mapping();
    again = th_connect_with(&fx, client, first.session, 0);
    if (narrow) {
        ck_assert_msg(!again.reused && !again.ok, "%s: resumed/accepted after the removal",
                      k->name);
    } else {
        ck_assert_msg(again.ok && again.reused, "%s: no resumption though nothing changed",
                      k->name);
        ck_assert_str_eq(again.account, ALICE);
    }
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- an application's own per-SSL info callback ---------------------------------------- */

static int app_info_calls;

static void app_info(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    (void)where;
    (void)ret;
    app_info_calls++;
}

/*
 * th_connect_ex with the application's info callback set on the server SSL
 * (SSL_set_info_callback, as Node.js's TLSWrap does for every connection).
 */
static th_outcome connect_app_info(SSL_CTX *client_ctx, SSL_SESSION *resume, int keep,
                                   const th_connect_opts *opts)
{
    th_outcome out;
    SSL *server = SSL_new(fx.server), *client = SSL_new(client_ctx);
    th_link *link;

    memset(&out, 0, sizeof(out));
    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
    SSL_set_info_callback(server, app_info);
    link = th_link_new(server, client);
    th_link_gate(link, opts->gate_at, opts->at_gate, opts->split_hello_at);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    if (opts->sni != NULL)
        ck_assert_int_eq(SSL_set_tlsext_host_name(client, opts->sni), 1);
    if (opts->client_groups != NULL)
        ck_assert_int_eq(SSL_set1_groups_list(client, opts->client_groups), 1);
    if (opts->server_groups != NULL)
        ck_assert_int_eq(SSL_set1_groups_list(server, opts->server_groups), 1);
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    out.ok = th_link_handshake(link) && th_link_exchange(link);
    out.gate_passed = th_link_gate_passed(link);
    out.reused = SSL_session_reused(server);
    if (out.ok && keep)
        out.session = SSL_get1_session(client);
    SSL_free(server);
    SSL_free(client);
    th_link_free(link);
    ERR_clear_error();
    return out;
}

/* HRR: the mapping goes between the first ClientHello and the second, which offers the session. */
START_TEST(test_app_info_callback_hrr_after_narrowing_not_resumed)
{
    const th_resumption_kind *k = &th_resumption_kinds[2 + _i]; /* the TLS 1.3 kinds */
    th_connect_opts plain = {.sni = "localhost"};
    th_connect_opts hrr = {.client_groups = "P-256:P-384",
                           .server_groups = "P-384",
                           .gate_at = TH_GATE_FIRST_FLIGHT,
                           .at_gate = remove_alice_mapping};
    SSL_CTX *client;
    th_outcome first, again;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    client = th_make_client(&fx, "alice");
    first = th_connect_ex(&fx, client, NULL, 1, &plain);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    hrr.sni = "localhost";
    again = connect_app_info(client, first.session, 0, &hrr);
    ck_assert_msg(again.gate_passed, "%s: the gate never opened", k->name);
    ck_assert_msg(app_info_calls > 0, "the application's callback was not called");
    ck_assert_msg(!again.reused, "%s: resumed after the mapping was removed (HRR, app info cb)",
                  k->name);
    ck_assert_msg(!again.ok, "%s: accepted after the removal", k->name);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* SSL_clear: the server SSL is reused for the next connection. */
START_TEST(test_app_info_callback_ssl_clear_after_narrowing_not_resumed)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i];
    SSL_CTX *client;
    SSL *server, *c1, *c2;
    SSL_SESSION *session;
    th_link *link;
    int ok;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    client = th_make_client(&fx, "alice");
    server = SSL_new(fx.server);
    c1 = SSL_new(client);
    SSL_set_info_callback(server, app_info);
    link = th_link_new(server, c1);
    SSL_set_accept_state(server);
    SSL_set_connect_state(c1);
    ck_assert_msg(th_link_handshake(link) && th_link_exchange(link), "%s: first failed", k->name);
    session = SSL_get1_session(c1);
    SSL_shutdown(c1);
    SSL_shutdown(server);
    th_link_free(link);
    SSL_free(c1);

    remove_alice_mapping();

    ck_assert_int_eq(SSL_clear(server), 1);
    c2 = SSL_new(client);
    link = th_link_new(server, c2); /* new BIOs for the reused server SSL */
    SSL_set_accept_state(server);
    SSL_set_connect_state(c2);
    ck_assert_int_eq(SSL_set_session(c2, session), 1);
    ok = th_link_handshake(link) && th_link_exchange(link);
    ck_assert_msg(!SSL_session_reused(server),
                  "%s: an SSL_clear'ed SSL resumed after the mapping was removed", k->name);
    ck_assert_msg(!ok, "%s: accepted after the removal", k->name);
    th_link_free(link);
    SSL_free(c2);
    SSL_free(server);
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

/* A client context with no certificate at all. */
static SSL_CTX *anonymous_client(void)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());

    ck_assert_ptr_nonnull(ctx);
    SSL_CTX_set_cert_store(ctx, th_trust_root(&fx));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static int handshake_on(SSL *server, SSL_CTX *client_ctx)
{
    SSL *client = SSL_new(client_ctx);
    th_link *link;
    int ok;

    ck_assert_ptr_nonnull(client);
    SSL_set_connect_state(client);
    link = th_link_new(server, client);
    ok = th_link_handshake(link) && th_link_exchange(link);
    SSL_shutdown(client);
    SSL_shutdown(server);
    SSL_free(client);
    th_link_free(link);
    return ok;
}

/* check_conn_state's test_ssl_clear_forgets_previous_account, with the app's info callback. */
START_TEST(test_app_info_callback_ssl_clear_forgets_previous_account)
{
    SSL_CTX *alice, *anonymous;
    SSL *server;
    const char *account;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, _i == 0 ? TLS1_2_VERSION : 0, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER, NULL); /* optional client certificates */
    alice = th_make_client(&fx, "alice");
    anonymous = anonymous_client();
    server = SSL_new(fx.server);
    ck_assert_ptr_nonnull(server);
    SSL_set_info_callback(server, app_info);
    SSL_set_accept_state(server);
    ck_assert_msg(handshake_on(server, alice), "alice's handshake failed");
    account = certstore_ssl_account_ex(server, fx.libctx);
    ck_assert_ptr_nonnull(account);
    ck_assert_str_eq(account, ALICE);

    ck_assert_int_eq(SSL_clear(server), 1);
    SSL_set_accept_state(server);
    ck_assert_msg(handshake_on(server, anonymous), "anonymous handshake failed");
    ck_assert_ptr_null(SSL_get0_peer_certificate(server));
    account = certstore_ssl_account_ex(server, fx.libctx);
    ck_assert_msg(account == NULL, "the next client (no certificate) was handed account '%s'",
                  account);
    SSL_free(server);
    SSL_CTX_free(alice);
    SSL_CTX_free(anonymous);
}
END_TEST

/* The server asks again: TLS 1.2 renegotiation (_i 0) or TLS 1.3 PHA (_i 1); the client has no
 * certificate now. */
START_TEST(test_app_info_callback_empty_certificate_on_second_request_forgets_account)
{
    int renegotiate = _i == 0;
    SSL_CTX *alice;
    SSL *server, *client;
    th_link *link;
    const char *account;
    char buf[8];
    int i;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, renegotiate ? TLS1_2_VERSION : 0, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | (renegotiate ? 0 : SSL_VERIFY_POST_HANDSHAKE),
                       NULL);
    alice = th_make_client(&fx, "alice");
    server = SSL_new(fx.server);
    client = SSL_new(alice);
    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
    SSL_set_info_callback(server, app_info);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    SSL_set_post_handshake_auth(client, 1);
    link = th_link_new(server, client);
    ck_assert_msg(th_link_handshake(link) && th_link_exchange(link), "first handshake failed");
    for (int round = renegotiate ? 1 : 0; round < 2; round++) {
        if (round == 1)
            SSL_certs_clear(client); /* the client answers with no certificate */
        if (renegotiate)
            ck_assert_int_eq(SSL_renegotiate(server), 1);
        else
            ck_assert_int_eq(SSL_verify_client_post_handshake(server), 1);
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
        if (round == 0) {
            account = certstore_ssl_account_ex(server, fx.libctx);
            ck_assert_ptr_nonnull(account);
            ck_assert_str_eq(account, ALICE);
        }
    }
    account = certstore_ssl_account_ex(server, fx.libctx);
    ck_assert_msg(account == NULL, "%s answered without a certificate still has account '%s'",
                  renegotiate ? "a renegotiation" : "a post-handshake authentication", account);
    th_link_free(link);
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(alice);
}
END_TEST

/* ---- the application's own ticket callbacks (stunnel) -------------------------------------- */

static int app_gen(SSL *ssl, void *arg)
{
    (void)ssl;
    (void)arg;
    return 1;
}

static SSL_TICKET_RETURN app_dec(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
                                 size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)ssl;
    (void)ss;
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
        return SSL_TICKET_RETURN_USE;
    case SSL_TICKET_SUCCESS_RENEW:
        return SSL_TICKET_RETURN_USE_RENEW;
    default:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
}

/* alice's mapping ends in 6 s; she resumes at +2 s, then tries again at +8 s. */
START_TEST(test_app_ticket_callbacks_chain_cannot_pass_mapping_end)
{
    const th_resumption_kind *k = &th_resumption_kinds[2 + _i];
    SSL_CTX *client;
    th_outcome first, mid, late;
    time_t start = time(NULL);

    store_standard((int64_t)start + 6);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    SSL_CTX_set_session_ticket_cb(fx.server, app_gen, app_dec, NULL);
    client = th_make_client(&fx, "alice");
    first = th_connect_with(&fx, client, NULL, 1);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    sleep(2);
    mid = th_connect_with(&fx, client, first.session, 1);
    ck_assert_msg(mid.ok && mid.reused, "%s: resumption before the end failed", k->name);
    sleep(6);
    ck_assert_int_gt((long)time(NULL), (long)start + 6);
    late = th_connect_with(&fx, client, mid.session, 0);
    ck_assert_msg(!late.reused, "%s: resumed after the mapping's not_after (app ticket callbacks)",
                  k->name);
    ck_assert_msg(!late.ok, "%s: accepted after the mapping's not_after", k->name);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(mid.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- a replaced verification callback on a legacy version ---------------------------------- */

static int accept_everything(X509_STORE_CTX *store_ctx, void *arg)
{
    (void)store_ctx;
    (void)arg;
    return 1;
}

/*
 * check_conn_state's test_replaced_cert_verify_callback_fails_connection on
 * a server that still allows TLS 1.0/1.1 (SECLEVEL=0, as legacy partners
 * need): CertificateVerify there has no signature algorithm, so OpenSSL
 * never asks SSL_SECOP_SIGALG_CHECK and carol (CA not pinned) gets in.
 */
START_TEST(test_replaced_cert_verify_callback_fails_legacy_versions)
{
    static const int versions[] = {TLS1_VERSION, TLS1_1_VERSION};
    SSL_CTX *client;
    th_outcome out;

    store_standard(CS_TIME_NONE);
    th_load_provider_with(&fx, "");
    th_make_server(&fx, 0, versions[_i], 0);
    ck_assert_int_eq(SSL_CTX_set_cipher_list(fx.server, "DEFAULT:@SECLEVEL=0"), 1);
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(fx.server, TLS1_VERSION), 1);
    SSL_CTX_set_cert_verify_callback(fx.server, accept_everything, NULL);
    client = th_make_client(&fx, "carol");
    ck_assert_int_eq(SSL_CTX_set_cipher_list(client, "DEFAULT:@SECLEVEL=0"), 1);
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(client, TLS1_VERSION), 1);
    out = th_connect_with(&fx, client, NULL, 0);
    ck_assert_msg(!out.ok, "TLS 0x%x: an undecided client certificate completed the handshake",
                  versions[_i]);
    SSL_CTX_free(client);
}
END_TEST

static Suite *review_suite(void)
{
    Suite *s = suite_create("app_callbacks");
    TCase *neutral = tcase_create("tls_method_client");
    TCase *info = tcase_create("app_info_callback");
    TCase *tickets = tcase_create("app_ticket_callbacks");

    tcase_add_checked_fixture(neutral, setup, teardown);
    tcase_add_loop_test(neutral, test_tls_method_client_still_resumes, 0, TH_RESUMPTION_KINDS);
    tcase_add_loop_test(neutral, test_tls_method_server_resumes_only_while_policy_holds, 0,
                        2 * TH_RESUMPTION_KINDS);
    suite_add_tcase(s, neutral);

    tcase_add_checked_fixture(info, setup, teardown);
    tcase_add_loop_test(info, test_app_info_callback_hrr_after_narrowing_not_resumed, 0, 2);
    tcase_add_loop_test(info, test_app_info_callback_ssl_clear_after_narrowing_not_resumed, 0,
                        TH_RESUMPTION_KINDS);
    suite_add_tcase(s, info);

    tcase_add_loop_test(info, test_replaced_cert_verify_callback_fails_legacy_versions, 0, 2);
    tcase_add_loop_test(info, test_app_info_callback_ssl_clear_forgets_previous_account, 0, 2);
    tcase_add_loop_test(
        info, test_app_info_callback_empty_certificate_on_second_request_forgets_account, 0, 2);

    tcase_add_checked_fixture(tickets, setup, teardown);
    tcase_set_timeout(tickets, 30);
    tcase_add_loop_test(tickets, test_app_ticket_callbacks_chain_cannot_pass_mapping_end, 0, 2);
    suite_add_tcase(s, tickets);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(review_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
