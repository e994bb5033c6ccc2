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
    ck_assert_int_eq(cs_db_begin(db, "check_provider"), CS_OK);
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

static outcome connect_with(SSL_CTX *client_ctx, SSL_SESSION *resume, int keep_session)
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
    ck_assert_int_eq(SSL_set_tlsext_host_name(client, "localhost"), 1);
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    out.ok = run_handshake(server, client) && exchange_data(server, client);
    out.reused = SSL_session_reused(server);
    out.server_verify = SSL_get_verify_result(server);
    if (SSL_get_session(server) != NULL)
        out.server_timeout = (long)SSL_SESSION_get_timeout(SSL_get_session(server));
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

static void assert_accepted(const char *leaf, const char *account)
{
    outcome out = connect_as(leaf);

    ck_assert_msg(out.ok, "%s was rejected (verify result %ld)", leaf, out.server_verify);
    ck_assert_int_eq(out.have_account, 1);
    ck_assert_str_eq(out.account, account);
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

/* ---- policy through real handshakes ----------------------------------------- */

START_TEST(test_mapped_client_accepted_with_account)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    assert_log_has("result=accept reason=none account=\"" ALICE_ACCOUNT "\"");
    assert_log_has("mode=enforce");
}
END_TEST

START_TEST(test_unpinned_issuer_rejected)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("carol", "issuer-not-pinned");
}
END_TEST

START_TEST(test_root_issued_client_rejected)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("direct", "issuer-not-pinned");
}
END_TEST

START_TEST(test_same_dn_twin_ca_rejected)
{
    cs_db *db;

    store_standard();
    db = store_begin(); /* mallory shares alice's issuer DN and serial */
    map_leaf(db, "alice", ALICE_ACCOUNT, CS_KIND_ISSUER_SERIAL, CS_TIME_NONE, CS_TIME_NONE);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("mallory", "issuer-not-pinned");
}
END_TEST

START_TEST(test_unmapped_client_rejected)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("bob", "no-mapping");
}
END_TEST

START_TEST(test_disabled_pin_rejected)
{
    cs_db *db;
    char fp[CS_FP_HEX_LEN + 1];

    store_standard();
    db = store_begin();
    ck_assert_int_eq(cs_fp_of_cert(fx.pki->ca_a.cert, fp), 1);
    ck_assert_int_eq(cs_pin_set_enabled(db, fp, 0), CS_OK);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("alice", "pin-disabled");
}
END_TEST

START_TEST(test_disabled_mapping_rejected)
{
    cs_db *db;
    cs_mapping_ref ref;

    store_standard();
    db = store_begin();
    ref = ref_for("alice", CS_KIND_CERT);
    ck_assert_int_eq(cs_mapping_set_enabled(db, &ref, 0), CS_OK);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("alice", "mapping-disabled");
}
END_TEST

START_TEST(test_mapping_not_yet_valid_rejected)
{
    cs_db *db;

    store_standard();
    db = store_begin();
    map_leaf(db, "bob", "bob", CS_KIND_CERT, (int64_t)time(NULL) + 86400, CS_TIME_NONE);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("bob", "mapping-not-yet-valid");
}
END_TEST

START_TEST(test_mapping_expired_rejected)
{
    cs_db *db;

    store_standard();
    db = store_begin();
    map_leaf(db, "bob", "bob", CS_KIND_CERT, CS_TIME_NONE, (int64_t)time(NULL) - 86400);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("bob", "mapping-expired");
}
END_TEST

START_TEST(test_disabled_account_rejected)
{
    cs_db *db;

    store_standard();
    db = store_begin();
    ck_assert_int_eq(cs_account_set_enabled(db, ALICE_ACCOUNT, 0), CS_OK);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("alice", "account-disabled");
}
END_TEST

START_TEST(test_error_let_through_by_application_rejected)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 1); /* the application's callback forgives every error */
    assert_rejected("selfsigned", "chain-invalid");
}
END_TEST

START_TEST(test_spki_mapping_survives_renewal)
{
    cs_db *db = store_begin();
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    map_leaf(db, "alice", "alice-by-key", CS_KIND_SPKI, CS_TIME_NONE, CS_TIME_NONE);
    store_commit(db);
    load_provider_with("");
    make_server(0, 0, 0);
    assert_accepted("alice", "alice-by-key");
    assert_accepted("alice-renewed", "alice-by-key");
    assert_rejected("bob", "no-mapping");
}
END_TEST

static void assert_log_lacks(const char *needle)
{
    char *text = read_log();

    ck_assert_msg(strstr(text, needle) == NULL, "log has \"%s\":\n%s", needle, text);
    free(text);
}

/* ---- live changes and fail-closed init -------------------------------------- */

START_TEST(test_live_removal_applies_to_next_handshake)
{
    store_standard();
    load_provider_with("");
    make_server(0, 0, 0);
    assert_accepted("alice", ALICE_ACCOUNT);
    remove_alice_mapping();
    assert_rejected("alice", "no-mapping");
}
END_TEST

START_TEST(test_missing_db_denies_all)
{
    load_provider_with(""); /* fx.db does not exist */
    make_server(0, 0, 0);
    assert_rejected("alice", "store-unavailable");
    assert_log_has("store-unavailable");
}
END_TEST

START_TEST(test_db_appearing_later_is_picked_up)
{
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("alice", "store-unavailable");
    store_standard();
    assert_accepted("alice", ALICE_ACCOUNT);
}
END_TEST

START_TEST(test_db_path_is_directory_denies_all)
{
    char lines[1024];

    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n", fx.dir, fx.log);
    load_provider(lines);
    make_server(0, 0, 0);
    assert_rejected("alice", "store-unavailable");
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
    load_provider_with("");
    make_server(0, 0, 0);
    assert_rejected("alice", "store-unavailable");
}
END_TEST

START_TEST(test_bad_mode_denies_all)
{
    store_standard();
    load_provider_with("mode = enforcing\n");
    make_server(0, 0, 0);
    assert_rejected("alice", "config-error");
    assert_log_has("mode must be enforce, audit or off");
}
END_TEST

START_TEST(test_bad_busy_timeout_denies_all)
{
    store_standard();
    load_provider_with("busy_timeout_ms = 12abc\n");
    make_server(0, 0, 0);
    assert_rejected("alice", "config-error");
}
END_TEST

START_TEST(test_relative_db_denies_all)
{
    char lines[1024];

    store_standard();
    snprintf(lines, sizeof(lines), "db = certstore.db\nlog = %s\n", fx.log);
    load_provider(lines);
    make_server(0, 0, 0);
    assert_rejected("alice", "config-error");
}
END_TEST

START_TEST(test_missing_db_key_denies_all)
{
    char lines[1024];

    store_standard();
    snprintf(lines, sizeof(lines), "log = %s\n", fx.log);
    load_provider(lines);
    make_server(0, 0, 0);
    assert_rejected("alice", "config-error");
}
END_TEST

START_TEST(test_audit_mode_accepts_and_logs_would_reject)
{
    outcome out;

    store_standard();
    load_provider_with("mode = audit\n");
    make_server(0, 0, 0);
    out = connect_as("bob");
    ck_assert_msg(out.ok, "audit mode rejected bob");
    ck_assert_int_eq(out.have_account, 0);
    assert_log_has("result=would-reject reason=no-mapping");
    assert_log_has("mode=audit");
    assert_accepted("alice", ALICE_ACCOUNT);
}
END_TEST

START_TEST(test_mode_off_enforces_nothing)
{
    outcome out;

    store_standard();
    load_provider_with("mode = off\n");
    make_server(0, 0, 0);
    out = connect_as("bob");
    ck_assert_msg(out.ok, "mode=off rejected bob");
    ck_assert_int_eq(out.have_account, 0);
    assert_log_lacks("result=");
}
END_TEST

/* A client SSL in the same process (server-side hooks installed) is untouched. */
START_TEST(test_client_side_untouched)
{
    SSL_CTX *client;
    outcome out;

    store_standard();
    load_provider_with("");
    /* A server outside the policy's reach: no client certificate asked. */
    make_server(0, 0, 0);
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_NONE, NULL);
    client = make_client("bob"); /* verifies the server's chain: no mapping for it */
    out = connect_with(client, NULL, 0);
    SSL_CTX_free(client);
    ck_assert_msg(out.ok, "client-side verification was changed");
    ck_assert_int_eq(out.have_account, 0);
    assert_log_lacks("result=");
}
END_TEST

/* ---- resumption ---------------------------------------------------------------- */

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

START_TEST(test_resumption_works_when_nothing_narrowed)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, again;

    store_standard();
    load_provider_with("");
    make_server(k->options, k->max_version, 0);
    client = make_client("alice");
    first = connect_with(client, NULL, 1);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    ck_assert_ptr_nonnull(first.session);
    ck_assert_int_eq(first.reused, 0);
    again = connect_with(client, first.session, 0);
    ck_assert_msg(again.ok && again.reused, "%s: did not resume", k->name);
    ck_assert_msg(again.have_account, "%s: no account on resumption", k->name);
    ck_assert_str_eq(again.account, ALICE_ACCOUNT);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

START_TEST(test_resumption_after_removal_rejected)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, again;

    store_standard();
    load_provider_with("");
    make_server(k->options, k->max_version, 0);
    client = make_client("alice");
    first = connect_with(client, NULL, 1);
    ck_assert_msg(first.ok, "%s: first handshake failed", k->name);
    ck_assert_ptr_nonnull(first.session);
    remove_alice_mapping();
    again = connect_with(client, first.session, 0);
    ck_assert_msg(!again.reused, "%s: resumed after removal", k->name);
    ck_assert_msg(!again.ok, "%s: accepted after removal", k->name);
    assert_log_has("result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

START_TEST(test_resumption_after_account_disabled_rejected)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, again;
    cs_db *db;

    store_standard();
    load_provider_with("");
    make_server(k->options, k->max_version, 0);
    client = make_client("alice");
    first = connect_with(client, NULL, 1);
    ck_assert(first.ok);
    db = store_begin();
    ck_assert_int_eq(cs_account_set_enabled(db, ALICE_ACCOUNT, 0), CS_OK);
    store_commit(db);
    again = connect_with(client, first.session, 0);
    ck_assert_msg(!again.reused && !again.ok, "%s: resumed a disabled account", k->name);
    assert_log_has("result=reject reason=account-disabled");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

START_TEST(test_resumption_after_pin_disabled_rejected)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, again;
    char fp[CS_FP_HEX_LEN + 1];
    cs_db *db;

    store_standard();
    load_provider_with("");
    make_server(k->options, k->max_version, 0);
    client = make_client("alice");
    first = connect_with(client, NULL, 1);
    ck_assert(first.ok);
    db = store_begin();
    ck_assert_int_eq(cs_fp_of_cert(fx.pki->ca_a.cert, fp), 1);
    ck_assert_int_eq(cs_pin_set_enabled(db, fp, 0), CS_OK);
    store_commit(db);
    again = connect_with(client, first.session, 0);
    ck_assert_msg(!again.reused && !again.ok, "%s: resumed under a disabled pin", k->name);
    assert_log_has("result=reject reason=pin-disabled");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* A mapping that ends soon caps the session lifetime at its end. */
START_TEST(test_session_lifetime_capped_by_mapping_end)
{
    SSL_CTX *client;
    outcome first;
    cs_db *db;
    long timeout;

    store_standard();
    db = store_begin();
    map_leaf(db, "bob", "bob", CS_KIND_CERT, CS_TIME_NONE, (int64_t)time(NULL) + 60);
    store_commit(db);
    load_provider_with("");
    make_server(SSL_OP_NO_TICKET, TLS1_2_VERSION, 0);
    client = make_client("bob");
    first = connect_with(client, NULL, 1);
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
    load_provider_with("");
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
    int n = (int)(sizeof(resumption_kinds) / sizeof(resumption_kinds[0]));

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
    suite_add_tcase(s, init);

    tcase_add_checked_fixture(modes, setup, teardown);
    tcase_add_test(modes, test_audit_mode_accepts_and_logs_would_reject);
    tcase_add_test(modes, test_mode_off_enforces_nothing);
    tcase_add_test(modes, test_client_side_untouched);
    suite_add_tcase(s, modes);

    tcase_add_checked_fixture(resumption, setup, teardown);
    tcase_add_loop_test(resumption, test_resumption_works_when_nothing_narrowed, 0, n);
    tcase_add_loop_test(resumption, test_resumption_after_removal_rejected, 0, n);
    tcase_add_loop_test(resumption, test_resumption_after_account_disabled_rejected, 0, n);
    tcase_add_loop_test(resumption, test_resumption_after_pin_disabled_rejected, 0, n);
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
