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

#define ALICE_ACCOUNT "alice@partner-a"

typedef struct {
    char *dir;
    char db[512];
    char cnf[512];
    char log[512];
    testpki *pki;
    OSSL_LIB_CTX *libctx;
    SSL_CTX *server;
    SSL_CTX *client;
} fixture;

static fixture fx;

/* ---- store set-up ---------------------------------------------------------- */

static cs_db *store_begin(void)
{
    cs_db *db = NULL;

    ck_assert_int_eq(cs_db_open(&db, fx.db, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, "check_resumption"), CS_OK);
    return db;
}

static void store_commit(cs_db *db)
{
    ck_assert_msg(cs_db_commit(db) == CS_OK, "%s", cs_db_errmsg(db));
    cs_db_close(db);
}

static void map_leaf(cs_db *db, const char *leaf, const char *account, cs_kind kind,
                     int64_t not_before, int64_t not_after)
{
    cs_mapping_spec spec;

    memset(&spec, 0, sizeof(spec));
    ck_assert_int_eq(cs_mapping_spec_from_cert(&spec, testpki_get(fx.pki, leaf)->cert, kind),
                     CS_OK);
    spec.account = account;
    spec.not_before = not_before;
    spec.not_after = not_after;
    ck_assert_msg(cs_mapping_add(db, &spec, 1, NULL) == CS_OK, "%s", cs_db_errmsg(db));
}

static cs_mapping_ref ref_for(const char *leaf, cs_kind kind)
{
    cs_mapping_ref ref;

    memset(&ref, 0, sizeof(ref));
    ref.kind = kind;
    ck_assert_int_eq(cs_key_from_cert(testpki_get(fx.pki, leaf)->cert, kind, &ref.key), CS_OK);
    return ref;
}

/* Pin ca-a, map alice (by certificate) to ALICE_ACCOUNT. */
static void store_standard(void)
{
    cs_db *db = store_begin();
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    store_commit(db);
}

static void remove_alice_mapping(void)
{
    cs_db *db = store_begin();
    cs_mapping_ref ref = ref_for("alice", CS_KIND_CERT);

    ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
    store_commit(db);
}

/* ---- provider and TLS set-up ----------------------------------------------- */

static void write_cnf(const char *extra_lines)
{
    FILE *f = fopen(fx.cnf, "w");
    const char *module = getenv("CERTSTORE_MODULE");

    ck_assert_ptr_nonnull(f);
    fprintf(f, "openssl_conf = openssl_init\n"
               "[openssl_init]\nproviders = provider_sect\n"
               "[provider_sect]\ncertstore = certstore_sect\ndefault = default_sect\n"
               "[default_sect]\nactivate = 1\n"
               "[certstore_sect]\nactivate = 1\n");
    if (module != NULL)
        fprintf(f, "module = %s\n", module);
    fputs(extra_lines, f);
    fclose(f);
}

static void load_provider(const char *extra_lines)
{
    write_cnf(extra_lines);
    fx.libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(fx.libctx);
    ck_assert_msg(OSSL_LIB_CTX_load_config(fx.libctx, fx.cnf) == 1, "cannot load %s", fx.cnf);
    ck_assert_msg(OSSL_PROVIDER_available(fx.libctx, "certstore"), "certstore not active");
}

/* The usual configuration: db, file log, plus `more` lines. */
static void load_provider_with(const char *more)
{
    char lines[2048];

    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n%s", fx.db, fx.log, more);
    load_provider(lines);
}

static X509_STORE *trust_root(void)
{
    X509_STORE *store = X509_STORE_new();

    ck_assert_ptr_nonnull(store);
    ck_assert_int_eq(X509_STORE_add_cert(store, fx.pki->root.cert), 1);
    return store;
}

static int accept_all_errors(int ok, X509_STORE_CTX *ctx)
{
    return 1; /* like nginx optional_no_ca / HAProxy crt-ignore-err */
}

static void make_server(long options, int max_version, int permissive)
{
    fx.server = SSL_CTX_new_ex(fx.libctx, NULL, TLS_server_method());
    ck_assert_ptr_nonnull(fx.server);
    ck_assert_int_eq(SSL_CTX_use_certificate(fx.server, fx.pki->server.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(fx.server, fx.pki->server.key), 1);
    SSL_CTX_set_cert_store(fx.server, trust_root());
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       permissive ? accept_all_errors : NULL);
    SSL_CTX_set_options(fx.server, options);
    if (max_version != 0)
        ck_assert_int_eq(SSL_CTX_set_max_proto_version(fx.server, max_version), 1);
}

static SSL_CTX *make_client(const char *leaf)
{
    const testpki_cred *cred = testpki_get(fx.pki, leaf);
    const testpki_cred *issuer = testpki_issuer_of(fx.pki, cred);
    SSL_CTX *ctx = SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cred->cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, cred->key), 1);
    if (issuer != NULL && issuer != cred && issuer != &fx.pki->root) {
        X509_up_ref(issuer->cert);
        ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(ctx, issuer->cert), 1);
    }
    SSL_CTX_set_cert_store(ctx, trust_root());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

typedef struct {
    int ok;               /* both sides completed */
    int reused;           /* server resumed a session */
    long server_verify;   /* SSL_get_verify_result on the server */
    SSL_SESSION *session; /* client's session after the handshake, if asked */
    char account[CS_ACCOUNT_MAX + 1];
    int have_account;
    long server_timeout; /* lifetime of the server's session */
    long server_end;     /* when the server's session ends (time + timeout) */
} outcome;

/* Pump both ends over a BIO pair until both finish or one fails (bounded). */
static int run_handshake(SSL *server, SSL *client)
{
    int server_done = 0, client_done = 0, i, r;

    for (i = 0; i < 200 && !(server_done && client_done); i++) {
        if (!client_done) {
            r = SSL_do_handshake(client);
            if (r == 1)
                client_done = 1;
            else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
        if (!server_done) {
            r = SSL_do_handshake(server);
            if (r == 1)
                server_done = 1;
            else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
    }
    return server_done && client_done;
}

/* Application data both ways, which also delivers TLS 1.3 tickets. */
static int exchange_data(SSL *server, SSL *client)
{
    char buf[16];
    int i;

    if (SSL_write(server, "ping", 4) != 4)
        return 0;
    for (i = 0; i < 10; i++) {
        if (SSL_read(client, buf, sizeof(buf)) == 4)
            break;
    }
    if (i == 10 || SSL_write(client, "pong", 4) != 4)
        return 0;
    for (i = 0; i < 10; i++) {
        if (SSL_read(server, buf, sizeof(buf)) == 4)
            return 1;
    }
    return 0;
}

typedef struct {
    const char *sni;      /* server name the client sends */
    void (*before)(void); /* runs after SSL_new, before the ClientHello */
} connect_opts;

static outcome connect_ex(SSL_CTX *client_ctx, SSL_SESSION *resume, int keep_session,
                          const connect_opts *opts)
{
    outcome out;
    SSL *server = SSL_new(fx.server);
    SSL *client = SSL_new(client_ctx);
    BIO *sbio = NULL, *cbio = NULL;
    const char *account;

    memset(&out, 0, sizeof(out));
    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
    ck_assert_int_eq(BIO_new_bio_pair(&sbio, 0, &cbio, 0), 1);
    SSL_set_bio(server, sbio, sbio);
    SSL_set_bio(client, cbio, cbio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    ck_assert_int_eq(SSL_set_tlsext_host_name(client, opts->sni), 1);
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    if (opts->before != NULL)
        opts->before();
    out.ok = run_handshake(server, client) && exchange_data(server, client);
    out.reused = SSL_session_reused(server);
    out.server_verify = SSL_get_verify_result(server);
    if (SSL_get_session(server) != NULL) {
        out.server_timeout = (long)SSL_SESSION_get_timeout(SSL_get_session(server));
        out.server_end = (long)SSL_SESSION_get_time(SSL_get_session(server)) + out.server_timeout;
    }
    account = certstore_ssl_account_ex(server, fx.libctx);
    if (account != NULL) {
        out.have_account = 1;
        snprintf(out.account, sizeof(out.account), "%s", account);
    }
    if (out.ok && keep_session)
        out.session = SSL_get1_session(client);
    if (out.ok) {
        SSL_shutdown(client);
        SSL_shutdown(server);
    }
    SSL_free(server);
    SSL_free(client);
    ERR_clear_error();
    return out;
}

static outcome connect_with(SSL_CTX *client_ctx, SSL_SESSION *resume, int keep_session)
{
    connect_opts opts = {"localhost", NULL};

    return connect_ex(client_ctx, resume, keep_session, &opts);
}

static outcome connect_as(const char *leaf)
{
    SSL_CTX *client = make_client(leaf);
    outcome out = connect_with(client, NULL, 0);

    SSL_CTX_free(client);
    return out;
}

/* The decision log as one string (for strstr). */
static char *read_log(void)
{
    FILE *f = fopen(fx.log, "r");
    char *text = calloc(1, 65536);
    size_t n = 0;

    ck_assert_ptr_nonnull(text);
    if (f != NULL) {
        n = fread(text, 1, 65535, f);
        fclose(f);
    }
    text[n] = '\0';
    return text;
}

static void assert_log_has(const char *needle)
{
    char *text = read_log();

    ck_assert_msg(strstr(text, needle) != NULL, "log lacks \"%s\":\n%s", needle, text);
    free(text);
}

static void assert_rejected(const char *leaf, const char *reason)
{
    outcome out = connect_as(leaf);
    char needle[128];

    ck_assert_msg(!out.ok, "%s was accepted", leaf);
    ck_assert_int_eq(out.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    snprintf(needle, sizeof(needle), "result=reject reason=%s", reason);
    assert_log_has(needle);
}

static void assert_log_lacks(const char *needle)
{
    char *text = read_log();

    ck_assert_msg(strstr(text, needle) == NULL, "log has \"%s\":\n%s", needle, text);
    free(text);
}

static void setup(void)
{
    memset(&fx, 0, sizeof(fx));
    fx.dir = testpki_tmpdir();
    ck_assert_ptr_nonnull(fx.dir);
    fx.pki = testpki_new(0);
    ck_assert_ptr_nonnull(fx.pki);
    snprintf(fx.db, sizeof(fx.db), "%s/certstore.db", fx.dir);
    snprintf(fx.cnf, sizeof(fx.cnf), "%s/openssl.cnf", fx.dir);
    snprintf(fx.log, sizeof(fx.log), "%s/decisions.log", fx.dir);
}

static void teardown(void)
{
    SSL_CTX_free(fx.server);
    SSL_CTX_free(fx.client);
    OSSL_LIB_CTX_free(fx.libctx);
    testpki_free(fx.pki);
    testpki_rmtree(fx.dir);
    free(fx.dir);
}

/* ---- the resumption kinds -------------------------------------------------------- */

typedef struct {
    const char *name;
    long options;
    int max_version;
} resumption_kind;

static const resumption_kind resumption_kinds[] = {
    {"TLS 1.2 session ID", SSL_OP_NO_TICKET, TLS1_2_VERSION},
    {"TLS 1.2 ticket", 0, TLS1_2_VERSION},
    {"TLS 1.3 stateless ticket", 0, 0},
    {"TLS 1.3 stateful ticket", SSL_OP_NO_TICKET, 0},
};
#define N_KINDS ((int)(sizeof(resumption_kinds) / sizeof(resumption_kinds[0])))

/* A full handshake as alice on a server of kind k; returns her client context. */
static SSL_CTX *first_handshake(const resumption_kind *k, outcome *first)
{
    SSL_CTX *client;

    make_server(k->options, k->max_version, 0);
    client = make_client("alice");
    *first = connect_with(client, NULL, 1);
    ck_assert_msg(first->ok, "%s: first handshake failed", k->name);
    ck_assert_ptr_nonnull(first->session);
    ck_assert_int_eq(first->reused, 0);
    return client;
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
    const resumption_kind *k = &resumption_kinds[_i];
    int64_t not_after = (int64_t)time(NULL) + MAPPING_LIFETIME;
    SSL_CTX *client;
    SSL_SESSION *session;
    outcome first, again;
    int resumed_before = 0, i;
    cs_db *db = store_begin();
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, not_after);
    store_commit(db);
    load_provider_with("");
    client = first_handshake(k, &first);
    session = first.session;
    for (i = 0; i < MAPPING_LIFETIME + 3; i++) {
        sleep(1);
        again = connect_with(client, session, 1);
        if ((int64_t)time(NULL) > not_after) {
            ck_assert_msg(!again.reused, "%s: resumed %lds after the mapping ended", k->name,
                          (long)((int64_t)time(NULL) - not_after));
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
    assert_log_has("result=reject reason=mapping-expired");
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

/* Every ticket issued on a resumption ends when the mapping ends, not later. */
START_TEST(test_ticket_lifetime_is_absolute)
{
    const resumption_kind *k = &resumption_kinds[_i];
    int64_t not_after = (int64_t)time(NULL) + 60;
    SSL_CTX *client;
    outcome first, again;
    cs_db *db = store_begin();
    char fp[CS_FP_HEX_LEN + 1];
    long end_first, end_again;

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_CERT, CS_TIME_NONE, not_after);
    store_commit(db);
    load_provider_with("");
    client = first_handshake(k, &first);
    sleep(2);
    again = connect_with(client, first.session, 1);
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
    const resumption_kind *k = &resumption_kinds[_i];
    connect_opts late_removal = {"localhost", remove_alice_mapping};
    SSL_CTX *client;
    outcome first, again;

    store_standard();
    load_provider_with("");
    client = first_handshake(k, &first);
    /* The server SSL exists (connection accepted) before the mapping goes. */
    again = connect_ex(client, first.session, 0, &late_removal);
    ck_assert_msg(!again.reused, "%s: resumed a session made before the removal", k->name);
    ck_assert_msg(!again.ok, "%s: accepted after the removal", k->name);
    assert_log_has("result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- nothing narrowed: resumption keeps working ------------------------------------ */

/* Widening changes: a new pin, a new mapping. Neither may stop resumption. */
static void pin_another_ca(void)
{
    cs_db *db = store_begin();
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_b.cert, "partner B", fp), CS_OK);
    store_commit(db);
}

static void map_another_client(void)
{
    cs_db *db = store_begin();

    map_leaf(db, "bob", "bob@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    store_commit(db);
}

START_TEST(test_resumption_survives_widening_change)
{
    const resumption_kind *k = &resumption_kinds[_i];
    connect_opts late_widening = {"localhost", map_another_client};
    SSL_CTX *client;
    outcome first, again, late;

    store_standard();
    load_provider_with("");
    client = first_handshake(k, &first);
    pin_another_ca();
    again = connect_with(client, first.session, 1);
    ck_assert_msg(again.ok && again.reused, "%s: no resumption after a widening change", k->name);
    ck_assert_msg(again.have_account, "%s: no account on resumption", k->name);
    ck_assert_str_eq(again.account, ALICE_ACCOUNT);
    late = connect_ex(client, again.session, 0, &late_widening);
    ck_assert_msg(late.ok && late.reused, "%s: a widening change stopped resumption", k->name);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

/* Repeated TLS 1.3 resumption keeps working (each resumption renews the ticket). */
START_TEST(test_chained_resumption_works_when_nothing_narrowed)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    SSL_SESSION *session;
    outcome first, again;
    int i;

    store_standard();
    load_provider_with("");
    client = first_handshake(k, &first);
    session = first.session;
    for (i = 0; i < 3; i++) {
        again = connect_with(client, session, 1);
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
    write_cnf(lines);
    ck_assert_int_eq(rename(fx.cnf, audit_cnf), 0);
    ck_assert_int_eq(OSSL_LIB_CTX_load_config(NULL, audit_cnf), 1);
    ck_assert(OSSL_PROVIDER_available(NULL, "certstore"));
    /* A second context with mode = enforce: the settings disagree. */
    load_provider_with("mode = enforce\n");
    make_server(0, 0, 0);
    assert_rejected("alice", "config-error");
    assert_rejected("carol", "config-error");
    f = fopen(fx.log, "r");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    assert_log_lacks("result=would-reject");
}
END_TEST

/* ---- virtual hosts ---------------------------------------------------------------- */

/*
 * Two virtual hosts with their own session-id contexts, as a server with
 * server blocks sets them; "b.test" selects the second. A TLS 1.3 session
 * made on one host must not resume on the other, wherever the application
 * switches (ClientHello callback or servername callback).
 *
 * Not tested because not held, see the README: TLS 1.2 across hosts. With a
 * servername callback OpenSSL 3.0 looks the session up before the switch,
 * so it resumes across hosts without certstore too; with a ClientHello
 * callback certstore's per-connection sid_ctx (bound to the SSL_CTX at
 * SSL_new) survives the switch, so the hosts' own contexts no longer
 * separate TLS 1.2 sessions.
 */
#define FIRST_TLS13_KIND 2
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

static void make_vhosts(const resumption_kind *k, int in_client_hello)
{
    SSL_CTX *a;

    make_server(k->options, k->max_version, 0);
    a = fx.server;
    fx.server = NULL;
    make_server(k->options, k->max_version, 0);
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

static void check_no_cross_vhost_resumption(const resumption_kind *k, int in_client_hello)
{
    connect_opts on_a = {"a.test", NULL}, on_b = {"b.test", NULL};
    SSL_CTX *client;
    outcome first, same, other;

    store_standard();
    load_provider_with("");
    make_vhosts(k, in_client_hello);
    client = make_client("alice");
    first = connect_ex(client, NULL, 1, &on_b);
    ck_assert_msg(first.ok, "%s: first handshake on b failed", k->name);
    same = connect_ex(client, first.session, 0, &on_b);
    ck_assert_msg(same.ok, "%s: second handshake on b failed", k->name);
    other = connect_ex(client, first.session, 0, &on_a);
    ck_assert_msg(!other.reused, "%s: a session made on vhost b resumed on vhost a", k->name);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
    SSL_CTX_free(vhost_b);
}

START_TEST(test_no_resumption_across_vhosts_switched_in_client_hello)
{
    check_no_cross_vhost_resumption(&resumption_kinds[_i], 1);
}
END_TEST

START_TEST(test_no_resumption_across_vhosts_switched_by_servername)
{
    check_no_cross_vhost_resumption(&resumption_kinds[_i], 0);
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
    tcase_add_loop_test(time_limit, test_repeated_resumption_cannot_pass_mapping_end, 0, N_KINDS);
    tcase_add_loop_test(time_limit, test_ticket_lifetime_is_absolute, 0, N_KINDS);
    suite_add_tcase(s, time_limit);

    tcase_add_checked_fixture(narrowing, setup, teardown);
    tcase_add_loop_test(narrowing, test_client_hello_after_narrowing_not_resumed, 0, N_KINDS);
    suite_add_tcase(s, narrowing);

    tcase_add_checked_fixture(still_works, setup, teardown);
    tcase_add_loop_test(still_works, test_resumption_survives_widening_change, 0, N_KINDS);
    tcase_add_loop_test(still_works, test_chained_resumption_works_when_nothing_narrowed, 0,
                        N_KINDS);
    suite_add_tcase(s, still_works);

    tcase_add_checked_fixture(contexts, setup, teardown);
    tcase_add_test(contexts, test_audit_then_enforce_context_denies);
    suite_add_tcase(s, contexts);

    tcase_add_checked_fixture(vhosts, setup, teardown);
    tcase_add_loop_test(vhosts, test_no_resumption_across_vhosts_switched_in_client_hello,
                        FIRST_TLS13_KIND, N_KINDS);
    tcase_add_loop_test(vhosts, test_no_resumption_across_vhosts_switched_by_servername,
                        FIRST_TLS13_KIND, N_KINDS);
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
