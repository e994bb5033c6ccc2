/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attacks on the provider, each a real TLS handshake in process (a server
 * and a client SSL over a memory BIO pair, the module just built loaded from
 * a generated openssl.cnf, a real SQLite store in a temp dir), each asserting
 * a rejection and the reason token the decision log gives for it:
 *
 * - chains: a pinned CA sent beside a chain through an unpinned one, a twin
 *   of a pinned CA (same DN, leaf with the same issuer and serial), leaves
 *   from the root and self-signed leaves that are mapped and trusted, a leaf
 *   without clientAuth;
 * - a new certificate mid-connection: TLS 1.2 renegotiation (server- and
 *   client-initiated) and TLS 1.3 post-handshake authentication;
 * - strings: account names and notes shaped like SQL, shell and log
 *   injection, and a certificate subject that tries to forge a log line.
 *
 * Each positive control (the same path with a mapped certificate) shows the
 * path really reaches the policy, so a rejection is the policy's doing.
 * Sessions offered after a narrowing change are check_hello_timing's and
 * check_resumption's (every write, resumption kind and ClientHello timing).
 * The hook keeps the configuration of the first activation, so every test
 * runs in its own process (Check's default fork mode).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_attacks"
#define ALICE_ACCOUNT "alice@partner-a"
#define HANDSHAKE_STEPS 200

static tls_harness fx;

/* ---- store set-up ---------------------------------------------------------- */

static void map_leaf(cs_db *db, const char *leaf, const char *account, cs_kind kind)
{
    th_map_leaf(&fx, db, leaf, account, kind, CS_TIME_NONE, CS_TIME_NONE);
}

static void pin_ca_a(cs_db *db)
{
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
}

/* Pin ca-a, map alice (by certificate) to ALICE_ACCOUNT. */
static void store_standard(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT);
    th_store_commit(db);
}

/* ---- TLS contexts ------------------------------------------------------------ */

typedef struct {
    long options;
    int max_version;
    int verify_mode;    /* 0: require a client certificate */
    int forgiving;      /* the application's callback forgives every error */
    X509 *extra_anchor; /* trusted beside the root (NULL: none) */
} server_spec;

static void make_server(const server_spec *spec)
{
    X509_STORE *trust;

    th_make_server(&fx, spec->options, spec->max_version, spec->forgiving);
    if (spec->verify_mode != 0)
        SSL_CTX_set_verify(fx.server, spec->verify_mode, SSL_CTX_get_verify_callback(fx.server));
    if (spec->extra_anchor != NULL) {
        trust = th_trust_root(&fx);
        ck_assert_int_eq(X509_STORE_add_cert(trust, spec->extra_anchor), 1);
        SSL_CTX_set_cert_store(fx.server, trust);
    }
}

static void make_default_server(void)
{
    th_make_server(&fx, 0, 0, 0);
}

static th_outcome connect_with(SSL_CTX *client_ctx, SSL_SESSION *resume, int keep_session)
{
    return th_connect_with(&fx, client_ctx, resume, keep_session);
}

static th_outcome connect_as(const char *leaf)
{
    return th_connect_as(&fx, leaf);
}

/* ---- the decision log --------------------------------------------------------- */

static void assert_log_count(const char *needle, int expected)
{
    th_assert_log_count(&fx, needle, expected);
}

static void assert_no_acceptance_logged(void)
{
    assert_log_count("result=accept", 0);
}

/* A rejection by the policy: the handshake failed and the log names the reason. */
static void assert_policy_rejected(const th_outcome *out, const char *what, const char *reason)
{
    char needle[128];

    ck_assert_msg(!out->ok, "%s was accepted (account '%s')", what, out->account);
    ck_assert_msg(out->server_verify == X509_V_ERR_APPLICATION_VERIFICATION,
                  "%s: verify result %ld, not the policy's", what, out->server_verify);
    ck_assert_msg(!out->have_account || out->account[0] == '\0', "%s: account '%s' handed on", what,
                  out->account);
    snprintf(needle, sizeof(needle), "result=reject reason=%s", reason);
    ck_assert_msg(th_log_count(&fx, needle) >= 1, "%s: log lacks \"%s\"", what, needle);
}

static void assert_accepted(const th_outcome *out, const char *what, const char *account)
{
    ck_assert_msg(out->ok, "%s was rejected (verify result %ld)", what, out->server_verify);
    ck_assert_msg(out->have_account, "%s: no account", what);
    ck_assert_str_eq(out->account, account);
}

/* ---- fixture ------------------------------------------------------------------- */

static void setup(void)
{
    th_setup(&fx);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- chains ---------------------------------------------------------------------- */

/*
 * carol chains through CA B (not pinned) but also sends the pinned CA A,
 * first, where "element 1 of what the client sent" would find it.
 */
START_TEST(test_pinned_ca_sent_beside_unpinned_chain_rejected)
{
    SSL_CTX *client;
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "carol", "carol", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();

    client = th_make_client_sending(&fx, fx.pki->carol.cert, fx.pki->carol.key, fx.pki->ca_a.cert,
                                    fx.pki->ca_b.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    assert_policy_rejected(&out, "carol + [ca-a, ca-b]", "issuer-not-pinned");

    client = th_make_client_sending(&fx, fx.pki->carol.cert, fx.pki->carol.key, fx.pki->ca_b.cert,
                                    fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    assert_policy_rejected(&out, "carol + [ca-b, ca-a]", "issuer-not-pinned");
    assert_no_acceptance_logged();
}
END_TEST

/* Sending only the pinned CA: no chain to a trust anchor, OpenSSL itself refuses. */
START_TEST(test_pinned_ca_instead_of_real_issuer_fails_verification)
{
    SSL_CTX *client;
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "carol", "carol", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    client =
        th_make_client_sending(&fx, fx.pki->carol.cert, fx.pki->carol.key, fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    ck_assert_msg(!out.ok, "carol sending only ca-a was accepted");
    ck_assert_int_ne(out.server_verify, X509_V_OK);
    ck_assert_int_eq(out.have_account && out.account[0] != '\0', 0);
    assert_no_acceptance_logged();
}
END_TEST

/*
 * mallory: issued by ca-twin (ca-a's subject DN, another key) with alice's
 * issuer DN and serial, while alice is mapped by issuer+serial. The pin is
 * the CA certificate itself, so the twin is not it.
 */
START_TEST(test_twin_ca_with_issuer_serial_mapping_rejected)
{
    SSL_CTX *client;
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_ISSUER_SERIAL);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();

    out = connect_as("alice"); /* control: the issuer-serial mapping works */
    assert_accepted(&out, "alice", ALICE_ACCOUNT);

    out = connect_as("mallory");
    assert_policy_rejected(&out, "mallory + [ca-twin]", "issuer-not-pinned");

    /* The real pinned CA sent too, first: the chain still goes through the twin. */
    client = th_make_client_sending(&fx, fx.pki->mallory.cert, fx.pki->mallory.key,
                                    fx.pki->ca_a.cert, fx.pki->ca_twin.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    ck_assert_msg(!out.ok, "mallory + [ca-a, ca-twin] was accepted as '%s'", out.account);
    ck_assert_int_eq(out.have_account && out.account[0] != '\0', 0);
    assert_log_count("result=accept", 1); /* alice's, nothing else */
    assert_log_count("result=reject reason=issuer-not-pinned", 2);
}
END_TEST

/*
 * Three partner CAs pinned. eve: ca-b's leaf carrying alice's SKI with its
 * own key (a CA writes any SKI); mallory: ca-twin's leaf with alice's issuer
 * DN and serial. alice's ski and issuer-serial mappings are bound to ca-a,
 * so neither is alice.
 */
START_TEST(test_other_pinned_partner_ca_cannot_take_over_ski_or_issuer_serial)
{
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_b.cert, "partner B", NULL), CS_OK);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_twin.cert, "partner A twin", NULL), CS_OK);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_SKI);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_ISSUER_SERIAL);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();

    out = connect_as("alice");
    assert_accepted(&out, "alice", ALICE_ACCOUNT);
    out = connect_as("eve");
    assert_policy_rejected(&out, "eve + [ca-b]", "no-mapping");
    out = connect_as("mallory");
    assert_policy_rejected(&out, "mallory + [ca-twin]", "no-mapping");
    assert_log_count("result=accept", 1);
}
END_TEST

/* mallory sending only the real ca-a: its signature does not verify. */
START_TEST(test_twin_leaf_with_real_ca_fails_verification)
{
    SSL_CTX *client;
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_ISSUER_SERIAL);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    client = th_make_client_sending(&fx, fx.pki->mallory.cert, fx.pki->mallory.key,
                                    fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    ck_assert_msg(!out.ok, "mallory + [ca-a] was accepted");
    ck_assert_int_ne(out.server_verify, X509_V_OK);
    assert_no_acceptance_logged();
}
END_TEST

START_TEST(test_root_issued_mapped_leaf_rejected)
{
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "direct", "direct", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    out = connect_as("direct");
    assert_policy_rejected(&out, "direct (issued by the root)", "issuer-not-pinned");
    assert_no_acceptance_logged();
}
END_TEST

/* The root itself pinned: a leaf it issued directly is its client (NTAuth's model). */
START_TEST(test_leaf_of_pinned_root_accepted)
{
    th_outcome out;
    char fp[CS_FP_HEX_LEN + 1];
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    ck_assert_int_eq(cs_pin_add(db, fx.pki->root.cert, "root, issues clients", fp), CS_OK);
    map_leaf(db, "direct", "direct", CS_KIND_CERT);
    map_leaf(db, "alice", "alice", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    out = connect_as("direct");
    ck_assert_msg(out.ok, "direct, issued by the pinned root, was rejected");
    out = connect_as("alice"); /* mapped, but the root's pin does not pin ca-a */
    assert_policy_rejected(&out, "alice (through ca-a, under the pinned root)",
                           "issuer-not-pinned");
}
END_TEST

/*
 * A self-signed leaf the server trusts outright (in its CA file) and that
 * is mapped: a chain of one has no issuing CA to be pinned. Nor can the
 * leaf itself be pinned: pins are CA certificates.
 */
START_TEST(test_trusted_mapped_selfsigned_leaf_rejected)
{
    server_spec spec;
    th_outcome out;
    char fp[CS_FP_HEX_LEN + 1];
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->selfsigned.cert, "not a CA", fp), CS_INVALID);
    map_leaf(db, "selfsigned", "selfsigned", CS_KIND_CERT);
    map_leaf(db, "selfsigned", "selfsigned", CS_KIND_SPKI);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    memset(&spec, 0, sizeof(spec));
    spec.extra_anchor = fx.pki->selfsigned.cert;
    make_server(&spec);
    out = connect_as("selfsigned");
    assert_policy_rejected(&out, "trusted self-signed leaf", "issuer-not-pinned");
    assert_no_acceptance_logged();
}
END_TEST

/* serverAuth only: OpenSSL's own purpose check refuses it before the policy runs. */
START_TEST(test_leaf_without_client_auth_fails_verification)
{
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "noclient", "noclient", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    out = connect_as("noclient");
    ck_assert_msg(!out.ok, "a leaf without clientAuth was accepted");
    ck_assert_int_eq(out.server_verify, X509_V_ERR_INVALID_PURPOSE);
    assert_no_acceptance_logged();
}
END_TEST

/* An application that forgives the purpose error does not get the leaf through. */
START_TEST(test_leaf_without_client_auth_forgiven_by_application_rejected)
{
    server_spec spec;
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "noclient", "noclient", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    memset(&spec, 0, sizeof(spec));
    spec.forgiving = 1;
    make_server(&spec);
    out = connect_as("noclient");
    assert_policy_rejected(&out, "noclient, error forgiven", "chain-invalid");
    assert_no_acceptance_logged();
}
END_TEST

/* ---- resumption ---------------------------------------------------------------- */

/* ---- renegotiation and post-handshake authentication ----------------------------- */

/* Switch the client's certificate, sent with its real issuing CA. */
static void present_certificate(SSL *client, const char *leaf)
{
    const testpki_cred *cred = testpki_get(fx.pki, leaf);
    STACK_OF(X509) *chain = testpki_chain(testpki_issuer_of(fx.pki, cred)->cert, NULL);

    ck_assert_ptr_nonnull(chain);
    ck_assert_int_eq(SSL_use_certificate(client, cred->cert), 1);
    ck_assert_int_eq(SSL_use_PrivateKey(client, cred->key), 1);
    ck_assert_int_eq(SSL_set1_chain(client, chain), 1);
    sk_X509_pop_free(chain, X509_free);
}

/* Application data both ways, which also delivers TLS 1.3 tickets. */
static int exchange_data(th_link *link)
{
    return th_link_send(link, th_link_server(link), th_link_client(link)) &&
           th_link_send(link, th_link_client(link), th_link_server(link));
}

/* What the server made of the connection: its verify result and the account it hands on. */
static void server_outcome(const th_link *link, int ok, th_outcome *out)
{
    const char *account = certstore_ssl_account_ex(th_link_server(link), fx.libctx);

    memset(out, 0, sizeof(*out));
    out->ok = ok;
    out->server_verify = SSL_get_verify_result(th_link_server(link));
    out->have_account = account != NULL;
    snprintf(out->account, sizeof(out->account), "%s", account != NULL ? account : "");
}

/* The server has finished a handshake in which the client presented `leaf`. */
static int server_saw(SSL *server, X509 *leaf)
{
    X509 *peer = SSL_get0_peer_certificate(server);

    return SSL_is_init_finished(server) && peer != NULL && X509_cmp(peer, leaf) == 0;
}

/*
 * Drive a TLS 1.2 renegotiation started by `initiator`, with both sides
 * reading, until the server has finished a handshake with `leaf` (or one
 * side fails). A server-initiated one starts with a HelloRequest that the
 * server counts as a finished handshake by itself, hence the certificate
 * test. Returns 1 when it completed and data flows again.
 */
static int renegotiate(th_link *link, SSL *initiator, X509 *leaf)
{
    SSL *server = th_link_server(link), *client = th_link_client(link);
    int i, r;

    ck_assert_int_eq(SSL_renegotiate(initiator), 1);
    r = SSL_do_handshake(initiator);
    if (r <= 0 && SSL_get_error(initiator, r) != SSL_ERROR_WANT_READ)
        return 0;
    for (i = 0; i < HANDSHAKE_STEPS && !server_saw(server, leaf); i++) {
        if (!th_link_read_step(link, client) || !th_link_read_step(link, server))
            return 0;
    }
    return server_saw(server, leaf) && exchange_data(link);
}

/*
 * alice (mapped) connects over TLS 1.2, then the connection renegotiates
 * and the client presents `second`. Returns whether it went through; the
 * server-side account afterwards goes to *out.
 */
static int renegotiate_as(const char *second, int client_initiated, th_outcome *out)
{
    server_spec spec;
    SSL_CTX *client = th_make_client(&fx, "alice");
    th_link *link;
    int renegotiated;

    memset(&spec, 0, sizeof(spec));
    spec.max_version = TLS1_2_VERSION;
    /*
     * OpenSSL 3 refuses client-initiated renegotiation unless allowed. A
     * server renegotiating to ask for a certificate refuses resumption on
     * it (as mod_ssl does), or the client would resume and send none.
     */
    spec.options = client_initiated ? SSL_OP_ALLOW_CLIENT_RENEGOTIATION
                                    : SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION;
    make_server(&spec);
    link = th_link_open(&fx, client, NULL);
    ck_assert_msg(th_link_handshake(link) && exchange_data(link), "alice's handshake failed");
    server_outcome(link, 1, out);
    ck_assert_str_eq(out->account, ALICE_ACCOUNT);

    present_certificate(th_link_client(link), second);
    renegotiated = renegotiate(link, client_initiated ? th_link_client(link) : th_link_server(link),
                               testpki_get(fx.pki, second)->cert);
    server_outcome(link, renegotiated, out);
    th_link_free(link);
    SSL_CTX_free(client);
    return renegotiated;
}

static void store_alice_and_bob(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT);
    map_leaf(db, "bob", "bob", CS_KIND_CERT);
    th_store_commit(db);
}

START_TEST(test_renegotiation_with_unmapped_certificate_rejected)
{
    int client_initiated = _i;
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "");
    ck_assert_msg(!renegotiate_as("bob", client_initiated, &out),
                  "%s renegotiation to an unmapped certificate went through",
                  client_initiated ? "client-initiated" : "server-initiated");
    ck_assert_int_eq(out.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    ck_assert_msg(strcmp(out.account, "bob") != 0, "bob's account handed on");
    assert_log_count("result=reject reason=no-mapping", 1);
}
END_TEST

START_TEST(test_renegotiation_with_unpinned_chain_rejected)
{
    th_outcome out;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    pin_ca_a(db);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT);
    map_leaf(db, "carol", "carol", CS_KIND_CERT);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    ck_assert_msg(!renegotiate_as("carol", 0, &out), "renegotiation to carol went through");
    ck_assert_int_eq(out.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    ck_assert_msg(strcmp(out.account, "carol") != 0, "carol's account handed on");
    assert_log_count("result=reject reason=issuer-not-pinned", 1);
    assert_log_count("result=accept", 1); /* alice's first handshake only */
}
END_TEST

/* Control: renegotiation does reach the policy, and the account follows the new certificate. */
START_TEST(test_renegotiation_with_mapped_certificate_changes_account)
{
    int client_initiated = _i;
    th_outcome out;

    store_alice_and_bob();
    th_load_provider_with(&fx, "");
    ck_assert_msg(renegotiate_as("bob", client_initiated, &out), "renegotiation to bob failed");
    ck_assert_str_eq(out.account, "bob");
    assert_log_count("result=accept", 2);
}
END_TEST

/*
 * TLS 1.3: no certificate in the handshake; the server asks for one after
 * it (as a server does for one protected path) and the client answers with
 * `leaf`. Returns whether the authentication went through.
 */
static int post_handshake_auth_as(const char *leaf, th_outcome *out)
{
    server_spec spec;
    SSL_CTX *client = th_make_client(&fx, leaf);
    th_link *link;
    SSL *server;
    int i, ok, server_failed = 0;

    memset(&spec, 0, sizeof(spec));
    spec.verify_mode =
        SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_POST_HANDSHAKE;
    make_server(&spec);
    link = th_link_open(&fx, client, NULL);
    server = th_link_server(link);
    SSL_set_post_handshake_auth(th_link_client(link), 1);
    ck_assert_msg(th_link_handshake(link) && exchange_data(link), "TLS 1.3 handshake failed");
    ck_assert_int_eq(SSL_version(server), TLS1_3_VERSION);
    ck_assert_ptr_null(SSL_get0_peer_certificate(server));
    assert_log_count("result=", 0); /* no certificate yet, no decision */

    ck_assert_int_eq(SSL_verify_client_post_handshake(server), 1);
    ck_assert_int_eq(SSL_do_handshake(server), 1); /* sends the CertificateRequest */
    for (i = 0; i < 10 && !server_failed; i++) {
        ck_assert(th_link_read_step(link, th_link_client(link)) || i > 0);
        server_failed = !th_link_read_step(link, server);
    }
    ok = !server_failed && th_link_send(link, th_link_client(link), server);
    server_outcome(link, ok, out);
    th_link_free(link);
    SSL_CTX_free(client);
    return out->ok;
}

START_TEST(test_post_handshake_auth_with_unmapped_certificate_rejected)
{
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "");
    ck_assert_msg(!post_handshake_auth_as("bob", &out), "post-handshake auth as bob went through");
    ck_assert_int_eq(out.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    ck_assert_msg(out.account[0] == '\0', "account '%s' handed on", out.account);
    assert_log_count("result=reject reason=no-mapping", 1);
    assert_no_acceptance_logged();
}
END_TEST

START_TEST(test_post_handshake_auth_with_mapped_certificate_accepted)
{
    th_outcome out;

    store_standard();
    th_load_provider_with(&fx, "");
    ck_assert_msg(post_handshake_auth_as("alice", &out), "post-handshake auth as alice failed");
    ck_assert_str_eq(out.account, ALICE_ACCOUNT);
    assert_log_count("result=accept", 1);
}
END_TEST

/* ---- strings ------------------------------------------------------------------------ */

/* Valid UTF-8 without control characters: allowed, and must come back verbatim. */
#define HOSTILE_ACCOUNT                                                                            \
    "'; DROP TABLE mappings; -- \" $(reboot) `reboot` %s%n \\ <b> \xe2\x80\xae"                    \
    "result=accept M\xc3\xbcller"
#define HOSTILE_NOTE                                                                               \
    "line one\nresult=accept reason=none account=\"root\"\r\n\x1b[2J'); DELETE FROM pins; --"      \
    "\xff\xfe invalid UTF-8"

typedef struct {
    const char *want_name;
    const char *want_note;
    int found;
} account_probe;

static int probe_account(const cs_account *acct, void *arg)
{
    account_probe *p = arg;

    if (strcmp(acct->name, p->want_name) == 0 && strcmp(acct->note, p->want_note) == 0)
        p->found++;
    return 0;
}

START_TEST(test_hostile_account_and_note_stored_and_handed_on_verbatim)
{
    account_probe probe = {HOSTILE_ACCOUNT, HOSTILE_NOTE, 0};
    cs_stats stats;
    th_outcome out;
    char *log;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    ck_assert(cs_account_name_valid(HOSTILE_ACCOUNT));
    pin_ca_a(db);
    ck_assert_int_eq(cs_account_add(db, HOSTILE_ACCOUNT, HOSTILE_NOTE), CS_OK);
    map_leaf(db, "alice", HOSTILE_ACCOUNT, CS_KIND_CERT);
    th_store_commit(db);

    th_load_provider_with(&fx, "");
    make_default_server();
    out = connect_as("alice");
    assert_accepted(&out, "alice", HOSTILE_ACCOUNT);

    db = th_store_begin(fx.db, SUITE_NAME); /* the store is intact and holds the strings as given */
    ck_assert_int_eq(cs_account_foreach(db, probe_account, &probe), CS_OK);
    ck_assert_int_eq(probe.found, 1);
    ck_assert_int_eq(cs_stats_get(db, &stats), CS_OK);
    ck_assert_int_eq(stats.pins, 1);
    ck_assert_int_eq(stats.mappings, 1);
    cs_db_rollback(db);
    cs_db_close(db);

    /* One decision, one line; the account's quote and backslash escaped in it. */
    log = th_read_log(&fx);
    ck_assert_int_eq(th_count_in(log, "\n"), 1);
    ck_assert_int_eq(th_count_in(log, "result=accept"), 2); /* the real one, and inside the name */
    ck_assert_msg(strstr(log, "account=\"'; DROP TABLE mappings; -- \\\" $(reboot)") != NULL,
                  "account not quoted and escaped in the log:\n%s", log);
    free(log);
}
END_TEST

START_TEST(test_control_characters_and_bad_utf8_in_account_refused)
{
    static const char *const refused[] = {
        "",
        "alice\nresult=accept",
        "alice\r",
        "tab\there",
        "esc\x1b[31m",
        "del\x7f",
        "c1\xc2\x85",   /* U+0085 NEXT LINE */
        "\xff\xfe",     /* not UTF-8 */
        "\xc0\xaf",     /* overlong "/" */
        "\xed\xa0\x80", /* a surrogate */
        "trunc\xe2\x82",
    };
    char *long_name = malloc(64 * 1024 + 1);
    char *long_note = malloc(64 * 1024 + 1);
    size_t i;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    ck_assert_ptr_nonnull(long_name);
    ck_assert_ptr_nonnull(long_note);
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        ck_assert_msg(!cs_account_name_valid(refused[i]), "name %zu accepted", i);
        ck_assert_int_eq(cs_account_add(db, refused[i], NULL), CS_INVALID);
    }
    memset(long_name, 'a', 64 * 1024);
    long_name[64 * 1024] = '\0';
    ck_assert_int_eq(cs_account_add(db, long_name, NULL), CS_INVALID);
    long_name[CS_ACCOUNT_MAX] = '\0';
    ck_assert_int_eq(cs_account_add(db, long_name, NULL), CS_OK); /* the longest allowed */
    memset(long_note, 'n', 64 * 1024);
    long_note[64 * 1024] = '\0';
    ck_assert_int_eq(cs_account_add(db, "long-note", long_note), CS_INVALID);
    long_note[CS_NOTE_MAX] = '\0';
    ck_assert_int_eq(cs_account_add(db, "long-note", long_note), CS_OK);
    th_store_commit(db);
    free(long_name);
    free(long_note);
}
END_TEST

/* A leaf from the pinned CA whose subject holds `cn` (UTF8String), on alice's key. */
static X509 *issue_leaf_with_cn(const char *cn)
{
    X509 *leaf = X509_new();
    X509_NAME *name = X509_NAME_new();
    static const struct {
        int nid;
        const char *value;
    } extensions[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "clientAuth"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    size_t i;

    ck_assert_ptr_nonnull(leaf);
    ck_assert_ptr_nonnull(name);
    ck_assert_int_eq(X509_set_version(leaf, X509_VERSION_3), 1);
    ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(leaf), 0x5eed), 1);
    /* As raw UTF8String bytes: the attacker's CA software need not honour ub-common-name. */
    ck_assert_int_eq(X509_NAME_add_entry_by_txt(name, "CN", V_ASN1_UTF8STRING,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    ck_assert_int_eq(X509_set_subject_name(leaf, name), 1);
    X509_NAME_free(name);
    ck_assert_int_eq(X509_set_issuer_name(leaf, X509_get_subject_name(fx.pki->ca_a.cert)), 1);
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notBefore(leaf), -3600));
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notAfter(leaf), 86400));
    ck_assert_int_eq(X509_set_pubkey(leaf, fx.pki->alice.key), 1);
    for (i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
        ck_assert_int_eq(
            testpki_add_ext(leaf, fx.pki->ca_a.cert, extensions[i].nid, extensions[i].value), 1);
    ck_assert_int_gt(X509_sign(leaf, fx.pki->ca_a.key, EVP_sha256()), 0);
    return leaf;
}

/*
 * Anyone with a certificate from a trusted CA chooses its subject, and
 * every decision logs it: a subject with line breaks, quotes and escape
 * sequences must not add or forge a log line.
 */
START_TEST(test_forged_log_line_in_subject_stays_one_line)
{
    static const char forged[] = "x\" result=accept reason=none account=\"root\"\n"
                                 "certstore: result=accept account=\"root\"\r\x1b[1A\xe2\x80\xa8";
    X509 *leaf;
    SSL_CTX *client;
    th_outcome out;
    char *log;

    store_standard();
    th_load_provider_with(&fx, "");
    make_default_server();
    leaf = issue_leaf_with_cn(forged);
    client = th_make_client_sending(&fx, leaf, fx.pki->alice.key, fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    assert_policy_rejected(&out, "forged subject", "no-mapping");

    /* Mapped, the same certificate is accepted: still one line per decision. */
    {
        cs_db *db = th_store_begin(fx.db, SUITE_NAME);

        th_map_cert(db, leaf, "forger", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
        th_store_commit(db);
    }
    client = th_make_client_sending(&fx, leaf, fx.pki->alice.key, fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    assert_accepted(&out, "forged subject, mapped", "forger");
    X509_free(leaf);

    log = th_read_log(&fx);
    ck_assert_msg(th_count_in(log, "\n") == 2, "two decisions, not two lines:\n%s", log);
    ck_assert_msg(th_count_in(log, "\r") == 0 && th_count_in(log, "\x1b") == 0,
                  "raw control bytes in the log:\n%s", log);
    ck_assert_msg(th_count_in(log, "account=\"root\"") == 0, "forged field unescaped:\n%s", log);
    ck_assert_int_eq(th_count_in(log, "result=reject reason=no-mapping"), 1);
    ck_assert_int_eq(th_count_in(log, "result=accept reason=none account=\"forger\""), 1);
    free(log);
}
END_TEST

/*
 * An operator reads the log: a subject stays readable UTF-8 (Jürgen, not
 * J\\C3\\BCrgen), while what could reorder or break what a terminal shows
 * (a bidi override, a line separator) and bytes that are not UTF-8 are
 * escaped; an acceptance names the mapping that made it.
 */
START_TEST(test_log_subject_readable_utf8_and_accept_names_the_mapping)
{
    X509 *leaf = issue_leaf_with_cn("J\xc3\xbcrgen \xe2\x80\xae\xe2\x80\xa8 \xe5\xb1\xb1");
    SSL_CTX *client;
    th_outcome out;
    char *log;
    cs_db *db;

    store_standard();
    db = th_store_begin(fx.db, SUITE_NAME);
    th_map_cert(db, leaf, "j\xc3\xbcrgen", CS_KIND_SPKI, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    make_default_server();
    client = th_make_client_sending(&fx, leaf, fx.pki->alice.key, fx.pki->ca_a.cert, NULL);
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    assert_accepted(&out, "utf-8 subject", "j\xc3\xbcrgen");
    X509_free(leaf);

    log = th_read_log(&fx);
    ck_assert_msg(strstr(log, "account=\"j\xc3\xbcrgen\" subject=\"CN=J\xc3\xbcrgen "
                              "\\xe2\\x80\\xae\\xe2\\x80\\xa8 \xe5\xb1\xb1\"") != NULL,
                  "subject not readable UTF-8 with controls escaped:\n%s", log);
    ck_assert_msg(th_count_in(log, "result=accept") == 1 && strstr(log, " mapping=") != NULL &&
                      strstr(log, " kind=spki ") != NULL,
                  "the accept line does not name the mapping:\n%s", log);
    free(log);
}
END_TEST

static Suite *attacks_suite(void)
{
    Suite *s = suite_create("attacks");
    TCase *chains = tcase_create("chains");
    TCase *renegotiation = tcase_create("new_certificate_mid_connection");
    TCase *strings = tcase_create("strings");

    tcase_add_checked_fixture(chains, setup, teardown);
    tcase_add_test(chains, test_pinned_ca_sent_beside_unpinned_chain_rejected);
    tcase_add_test(chains, test_pinned_ca_instead_of_real_issuer_fails_verification);
    tcase_add_test(chains, test_twin_ca_with_issuer_serial_mapping_rejected);
    tcase_add_test(chains, test_twin_leaf_with_real_ca_fails_verification);
    tcase_add_test(chains, test_other_pinned_partner_ca_cannot_take_over_ski_or_issuer_serial);
    tcase_add_test(chains, test_root_issued_mapped_leaf_rejected);
    tcase_add_test(chains, test_leaf_of_pinned_root_accepted);
    tcase_add_test(chains, test_trusted_mapped_selfsigned_leaf_rejected);
    tcase_add_test(chains, test_leaf_without_client_auth_fails_verification);
    tcase_add_test(chains, test_leaf_without_client_auth_forgiven_by_application_rejected);
    suite_add_tcase(s, chains);

    tcase_add_checked_fixture(renegotiation, setup, teardown);
    /* loop index: 0 server-initiated (as Apache does per location), 1 client-initiated */
    tcase_add_loop_test(renegotiation, test_renegotiation_with_unmapped_certificate_rejected, 0, 2);
    tcase_add_test(renegotiation, test_renegotiation_with_unpinned_chain_rejected);
    tcase_add_loop_test(renegotiation, test_renegotiation_with_mapped_certificate_changes_account,
                        0, 2);
    tcase_add_test(renegotiation, test_post_handshake_auth_with_unmapped_certificate_rejected);
    tcase_add_test(renegotiation, test_post_handshake_auth_with_mapped_certificate_accepted);
    suite_add_tcase(s, renegotiation);

    tcase_add_checked_fixture(strings, setup, teardown);
    tcase_add_test(strings, test_hostile_account_and_note_stored_and_handed_on_verbatim);
    tcase_add_test(strings, test_control_characters_and_bad_utf8_in_account_refused);
    tcase_add_test(strings, test_forged_log_line_in_subject_stays_one_line);
    tcase_add_test(strings, test_log_subject_readable_utf8_and_accept_names_the_mapping);
    suite_add_tcase(s, strings);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(attacks_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
