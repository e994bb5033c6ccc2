/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS 1.3 post-handshake authentication (PHA) under the policy, in process.
 *
 * During PHA OpenSSL runs certificate verification first and only then
 * replaces the connection's session with a copy that receives the client
 * certificate; the tickets sent after the PHA carry that copy. What
 * certstore records for a decision (account, deadline, generation) must
 * therefore reach every ticket issued after an accepted PHA, must never
 * land on a session that was ticketed before it (the client held that
 * ticket while unauthenticated), and a rejected PHA must end the
 * connection with no new ticket.
 *
 * The server requests no certificate during the handshake
 * (SSL_VERIFY_POST_HANDSHAKE) and asks for one afterwards with
 * SSL_verify_client_post_handshake. The client collects every ticket it is
 * given, in order, through its new-session callback.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_pha"
#define ALICE_ACCOUNT "alice@partner-a"
#define MAX_TICKETS 16

static tls_harness fx;
static SSL_SESSION *tickets[MAX_TICKETS]; /* every ticket the client received */
static int n_tickets;

/* ---- store set-up ---------------------------------------------------------- */

/* Pin ca-a and map alice (by certificate) until not_after; bob stays unmapped. */
static void store_alice_until(int64_t not_after)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, not_after);
    th_store_commit(db);
}

static void remove_alice_mapping(void)
{
    th_unmap_leaf(&fx, SUITE_NAME, "alice", CS_KIND_CERT);
}

/* ---- provider and TLS set-up ----------------------------------------------- */

/* TLS 1.3 only; a certificate is asked for after the handshake, never during it. */
static void make_server(long options)
{
    th_make_server(&fx, options, 0, 0);
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(fx.server, TLS1_3_VERSION), 1);
    SSL_CTX_set_verify(
        fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_POST_HANDSHAKE,
        NULL);
}

static int keep_ticket(SSL *ssl, SSL_SESSION *sess)
{
    if (n_tickets >= MAX_TICKETS)
        return 0; /* not kept: OpenSSL frees it */
    tickets[n_tickets++] = sess;
    return 1;
}

static void make_client(const char *leaf)
{
    fx.client = th_make_client(&fx, leaf);
    SSL_CTX_set_session_cache_mode(fx.client,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(fx.client, keep_ticket);
}

/* ---- driving a connection ------------------------------------------------------- */

/* A connection whose client will answer a post-handshake certificate request. */
static th_link *pair_new(SSL_SESSION *resume)
{
    th_link *link = th_link_open(&fx, fx.client, resume);

    SSL_set_post_handshake_auth(th_link_client(link), 1);
    return link;
}

/*
 * A connection that ended well says so: a client that frees its SSL without
 * a close_notify marks its current session (the newest ticket) unresumable.
 */
static void pair_close(th_link *link)
{
    SSL_shutdown(th_link_client(link));
    SSL_shutdown(th_link_server(link));
}

/* Both ways, then to the client again: delivers every ticket the server sends. */
static int exchange_data(th_link *link)
{
    SSL *server = th_link_server(link), *client = th_link_client(link);

    return th_link_send(link, server, client) && th_link_send(link, client, server) &&
           th_link_send(link, server, client);
}

/*
 * The server asks for a certificate and the client answers (its Certificate
 * is read, so decided, by the server's next read). 1 if both ends carried on.
 */
static int post_handshake_auth(th_link *link)
{
    ck_assert_int_eq(SSL_verify_client_post_handshake(th_link_server(link)), 1);
    ck_assert_int_eq(SSL_do_handshake(th_link_server(link)), 1);
    return exchange_data(link);
}

/* A first connection: handshake without a certificate, data, then PHA. */
static int connect_then_pha(th_link **link, int *tickets_before_pha)
{
    *link = pair_new(NULL);
    ck_assert_msg(th_link_handshake(*link), "handshake failed");
    ck_assert_msg(exchange_data(*link), "data before PHA failed");
    ck_assert_ptr_null(SSL_get0_peer_certificate(th_link_server(*link)));
    ck_assert_ptr_null(certstore_ssl_account_ex(th_link_server(*link), fx.libctx));
    *tickets_before_pha = n_tickets;
    ck_assert_msg(*tickets_before_pha > 0, "no ticket before the PHA");
    return post_handshake_auth(*link);
}

typedef struct {
    int ok;
    int reused;
    int has_peer;
    char account[CS_ACCOUNT_MAX + 1];
    int have_account;
} resumed;

static resumed resume_with(SSL_SESSION *ticket)
{
    th_link *link = pair_new(ticket);
    SSL *server = th_link_server(link);
    const char *account;
    resumed r;

    memset(&r, 0, sizeof(r));
    r.ok = th_link_handshake(link) && exchange_data(link);
    if (r.ok)
        pair_close(link);
    r.reused = SSL_session_reused(server);
    r.has_peer = SSL_get0_peer_certificate(server) != NULL;
    account = certstore_ssl_account_ex(server, fx.libctx);
    if (account != NULL) {
        r.have_account = 1;
        snprintf(r.account, sizeof(r.account), "%s", account);
    }
    th_link_free(link);
    return r;
}

/*
 * The certstore binding the server's resumed session carries: 1 with the
 * deadline and generation if its appdata has the full record.
 */
static int resumed_binding(SSL_SESSION *ticket, int64_t *deadline, int64_t *generation)
{
    th_link *link = pair_new(ticket);
    SSL *server = th_link_server(link);
    void *data = NULL;
    size_t len = 0, head;
    int found = 0;

    if (th_link_handshake(link) && SSL_session_reused(server) &&
        SSL_SESSION_get0_ticket_appdata(SSL_get_session(server), &data, &len) && len > 0) {
        head = strnlen(data, len);
        found = head + 1 < len &&
                sscanf((const char *)data + head + 1, "deadline=%" SCNd64 " generation=%" SCNd64,
                       deadline, generation) == 2;
    }
    th_link_free(link);
    return found;
}

static void setup(void)
{
    th_setup(&fx);
    memset(tickets, 0, sizeof(tickets));
    n_tickets = 0;
}

static void teardown(void)
{
    int i;

    for (i = 0; i < n_tickets; i++)
        SSL_SESSION_free(tickets[i]);
    th_teardown(&fx);
}

/* ---- the ticket kinds -------------------------------------------------------------- */

typedef struct {
    const char *name;
    long options;
} ticket_kind;

static const ticket_kind ticket_kinds[] = {
    {"TLS 1.3 stateless ticket", 0},
    {"TLS 1.3 stateful ticket", SSL_OP_NO_TICKET},
};
#define N_KINDS ((int)(sizeof(ticket_kinds) / sizeof(ticket_kinds[0])))

static void start(const ticket_kind *k, const char *leaf, int64_t alice_not_after)
{
    store_alice_until(alice_not_after);
    th_load_provider_with(&fx, "");
    make_server(k->options);
    make_client(leaf);
}

/* ---- accepted PHA: later tickets carry the decision -------------------------------- */

START_TEST(test_accepted_pha_tickets_carry_account)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before;
    int64_t deadline = 0, generation = -1;
    resumed r;

    start(k, "alice", CS_TIME_NONE);
    ck_assert_msg(connect_then_pha(&p, &before), "%s: accepted PHA failed", k->name);
    ck_assert_ptr_nonnull(SSL_get0_peer_certificate(th_link_server(p)));
    ck_assert_str_eq(certstore_ssl_account_ex(th_link_server(p), fx.libctx), ALICE_ACCOUNT);
    pair_close(p);
    th_link_free(p);
    ck_assert_msg(n_tickets > before, "%s: no ticket after the PHA", k->name);

    r = resume_with(tickets[n_tickets - 1]);
    ck_assert_msg(r.ok && r.reused, "%s: post-PHA ticket did not resume", k->name);
    ck_assert(r.has_peer);
    ck_assert_msg(r.have_account, "%s: resumed post-PHA session has no account", k->name);
    ck_assert_str_eq(r.account, ALICE_ACCOUNT);
    ck_assert_msg(resumed_binding(tickets[before], &deadline, &generation),
                  "%s: post-PHA ticket lacks the deadline and generation", k->name);
    ck_assert_int_ge(generation, 0);
}
END_TEST

/* A mapping that ends by time, with no write, ends the post-PHA tickets too. */
START_TEST(test_accepted_pha_tickets_end_at_mapping_deadline)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before;
    int64_t end = (int64_t)time(NULL) + 3;
    resumed r;

    start(k, "alice", end);
    ck_assert_msg(connect_then_pha(&p, &before), "%s: accepted PHA failed", k->name);
    pair_close(p);
    th_link_free(p);
    ck_assert_msg(n_tickets >= before + 2, "%s: fewer than two post-PHA tickets", k->name);

    r = resume_with(tickets[before]);
    ck_assert_msg(r.ok && r.reused, "%s: post-PHA ticket did not resume in time", k->name);
    while ((int64_t)time(NULL) <= end + 1)
        sleep(1);
    r = resume_with(tickets[n_tickets - 1]);
    ck_assert_msg(!r.reused, "%s: post-PHA ticket resumed past the mapping's end", k->name);
    ck_assert(!r.have_account);
}
END_TEST

/* A narrowing change ends the post-PHA tickets (generation). */
START_TEST(test_accepted_pha_tickets_end_at_narrowing)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before;
    resumed r;

    start(k, "alice", CS_TIME_NONE);
    ck_assert_msg(connect_then_pha(&p, &before), "%s: accepted PHA failed", k->name);
    pair_close(p);
    th_link_free(p);
    ck_assert_msg(n_tickets >= before + 2, "%s: fewer than two post-PHA tickets", k->name);
    r = resume_with(tickets[before]);
    ck_assert_msg(r.ok && r.reused, "%s: post-PHA ticket did not resume", k->name);

    remove_alice_mapping();
    r = resume_with(tickets[n_tickets - 1]);
    ck_assert_msg(!r.reused, "%s: post-PHA ticket resumed after the mapping was removed", k->name);
    ck_assert(!r.have_account);
}
END_TEST

/* ---- tickets from before the PHA stay unauthenticated ----------------------------- */

START_TEST(test_pre_pha_tickets_stay_unauthenticated)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before, i;
    resumed r;

    start(k, "alice", CS_TIME_NONE);
    ck_assert_msg(connect_then_pha(&p, &before), "%s: accepted PHA failed", k->name);
    pair_close(p);
    th_link_free(p);
    for (i = 0; i < before; i++) {
        r = resume_with(tickets[i]);
        ck_assert_msg(r.ok, "%s: pre-PHA ticket %d: connection failed", k->name, i);
        ck_assert_msg(!r.has_peer, "%s: pre-PHA ticket %d resumed with a certificate", k->name, i);
        ck_assert_msg(!r.have_account, "%s: pre-PHA ticket %d resumed as account %s", k->name, i,
                      r.account);
    }
}
END_TEST

/* ---- rejected PHA: the connection ends, no ticket carries an acceptance ------------ */

START_TEST(test_rejected_pha_ends_connection)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before, i;
    resumed r;

    start(k, "bob", CS_TIME_NONE);
    ck_assert_msg(!connect_then_pha(&p, &before), "%s: unmapped client passed PHA", k->name);
    ck_assert_int_eq(SSL_get_verify_result(th_link_server(p)), X509_V_ERR_APPLICATION_VERIFICATION);
    ck_assert_ptr_null(certstore_ssl_account_ex(th_link_server(p), fx.libctx));
    ck_assert_int_le(SSL_write(th_link_server(p), "more", 4), 0);
    th_link_free(p);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    ck_assert_msg(n_tickets == before, "%s: %d ticket(s) issued after a rejected PHA", k->name,
                  n_tickets - before);
    for (i = 0; i < before; i++) {
        r = resume_with(tickets[i]);
        ck_assert_msg(!r.has_peer && !r.have_account,
                      "%s: pre-PHA ticket %d resumed as authenticated", k->name, i);
    }
}
END_TEST

/* A rejected PHA after an accepted one leaves no account on the connection. */
START_TEST(test_rejected_pha_after_accepted_one_clears_account)
{
    const ticket_kind *k = &ticket_kinds[_i];
    th_link *p;
    int before;

    start(k, "alice", CS_TIME_NONE);
    ck_assert_msg(connect_then_pha(&p, &before), "%s: accepted PHA failed", k->name);
    ck_assert_str_eq(certstore_ssl_account_ex(th_link_server(p), fx.libctx), ALICE_ACCOUNT);
    remove_alice_mapping();
    ck_assert_msg(!post_handshake_auth(p), "%s: second PHA passed after removal", k->name);
    ck_assert_ptr_null(certstore_ssl_account_ex(th_link_server(p), fx.libctx));
    th_link_free(p);
}
END_TEST

static Suite *pha_suite(void)
{
    Suite *s = suite_create("pha");
    TCase *accepted = tcase_create("accepted");
    TCase *rejected = tcase_create("rejected");

    tcase_add_checked_fixture(accepted, setup, teardown);
    tcase_set_timeout(accepted, 30);
    tcase_add_loop_test(accepted, test_accepted_pha_tickets_carry_account, 0, N_KINDS);
    tcase_add_loop_test(accepted, test_accepted_pha_tickets_end_at_mapping_deadline, 0, N_KINDS);
    tcase_add_loop_test(accepted, test_accepted_pha_tickets_end_at_narrowing, 0, N_KINDS);
    tcase_add_loop_test(accepted, test_pre_pha_tickets_stay_unauthenticated, 0, N_KINDS);
    suite_add_tcase(s, accepted);

    tcase_add_checked_fixture(rejected, setup, teardown);
    tcase_add_loop_test(rejected, test_rejected_pha_ends_connection, 0, N_KINDS);
    tcase_add_loop_test(rejected, test_rejected_pha_after_accepted_one_clears_account, 0, N_KINDS);
    suite_add_tcase(s, rejected);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(pha_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
