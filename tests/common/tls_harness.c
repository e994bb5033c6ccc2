/*
 * The shared in-process TLS harness of the provider suites (tls_harness.h).
 */
#include "tls_harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "certstore.h"

#define LOG_READ_MAX 65536

void th_setup(tls_harness *h)
{
    memset(h, 0, sizeof(*h));
    h->dir = testpki_tmpdir();
    ck_assert_ptr_nonnull(h->dir);
    h->pki = testpki_new(0);
    ck_assert_ptr_nonnull(h->pki);
    snprintf(h->db, sizeof(h->db), "%s/certstore.db", h->dir);
    snprintf(h->cnf, sizeof(h->cnf), "%s/openssl.cnf", h->dir);
    snprintf(h->log, sizeof(h->log), "%s/decisions.log", h->dir);
}

void th_teardown(tls_harness *h)
{
    SSL_CTX_free(h->server);
    SSL_CTX_free(h->client);
    OSSL_LIB_CTX_free(h->libctx);
    testpki_free(h->pki);
    testpki_rmtree(h->dir);
    free(h->dir);
}

/* ---- store set-up ---------------------------------------------------------- */

cs_db *th_store_begin(const char *path, const char *who)
{
    cs_db *db = NULL;

    ck_assert_int_eq(cs_db_open(&db, path, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, who), CS_OK);
    return db;
}

void th_store_commit(cs_db *db)
{
    ck_assert_msg(cs_db_commit(db) == CS_OK, "%s", cs_db_errmsg(db));
    cs_db_close(db);
}

void th_map_leaf(const tls_harness *h, cs_db *db, const char *leaf, const char *account,
                 cs_kind kind, int64_t not_before, int64_t not_after)
{
    cs_mapping_spec spec;
    char issuer_fp[CS_FP_HEX_LEN + 1];
    X509 *cert = testpki_get(h->pki, leaf)->cert;

    memset(&spec, 0, sizeof(spec));
    ck_assert_int_eq(cs_mapping_spec_from_cert(&spec, cert, kind), CS_OK);
    spec.account = account;
    spec.not_before = not_before;
    spec.not_after = not_after;
    /* ski and issuer-serial: bound to the pin that issued the leaf, as `map add` binds them. */
    if (cs_kind_needs_pin(kind)) {
        ck_assert_msg(cs_pin_find_issuer(db, cert, issuer_fp) == CS_OK, "%s", cs_db_errmsg(db));
        spec.pin_fp = issuer_fp;
    }
    ck_assert_msg(cs_mapping_add(db, &spec, 1, NULL) == CS_OK, "%s", cs_db_errmsg(db));
}

cs_mapping_ref th_ref_for(const tls_harness *h, const char *leaf, cs_kind kind)
{
    cs_mapping_ref ref;

    memset(&ref, 0, sizeof(ref));
    ref.kind = kind;
    ck_assert_int_eq(cs_key_from_cert(testpki_get(h->pki, leaf)->cert, kind, &ref.key), CS_OK);
    return ref;
}

/* ---- provider and TLS set-up ----------------------------------------------- */

void th_write_cnf(const tls_harness *h, const char *extra_lines)
{
    FILE *f = fopen(h->cnf, "w");
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

void th_load_provider(tls_harness *h, const char *extra_lines)
{
    th_write_cnf(h, extra_lines);
    h->libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(h->libctx);
    ck_assert_msg(OSSL_LIB_CTX_load_config(h->libctx, h->cnf) == 1, "cannot load %s", h->cnf);
    ck_assert_msg(OSSL_PROVIDER_available(h->libctx, "certstore"), "certstore not active");
}

void th_load_provider_with(tls_harness *h, const char *more)
{
    char lines[2048];

    snprintf(lines, sizeof(lines), "db = %s\nlog = %s\n%s", h->db, h->log, more);
    th_load_provider(h, lines);
}

X509_STORE *th_trust_root(const tls_harness *h)
{
    X509_STORE *store = X509_STORE_new();

    ck_assert_ptr_nonnull(store);
    ck_assert_int_eq(X509_STORE_add_cert(store, h->pki->root.cert), 1);
    return store;
}

static int accept_all_errors(int ok, X509_STORE_CTX *ctx)
{
    return 1; /* like nginx optional_no_ca / HAProxy crt-ignore-err */
}

void th_make_server(tls_harness *h, long options, int max_version, int permissive)
{
    h->server = SSL_CTX_new_ex(h->libctx, NULL, TLS_server_method());
    ck_assert_ptr_nonnull(h->server);
    ck_assert_int_eq(SSL_CTX_use_certificate(h->server, h->pki->server.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(h->server, h->pki->server.key), 1);
    SSL_CTX_set_cert_store(h->server, th_trust_root(h));
    SSL_CTX_set_verify(h->server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       permissive ? accept_all_errors : NULL);
    SSL_CTX_set_options(h->server, options);
    if (max_version != 0)
        ck_assert_int_eq(SSL_CTX_set_max_proto_version(h->server, max_version), 1);
}

SSL_CTX *th_make_client(const tls_harness *h, const char *leaf)
{
    const testpki_cred *cred = testpki_get(h->pki, leaf);
    const testpki_cred *issuer = testpki_issuer_of(h->pki, cred);
    SSL_CTX *ctx = SSL_CTX_new_ex(h->libctx, NULL, TLS_client_method());

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cred->cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, cred->key), 1);
    if (issuer != NULL && issuer != cred && issuer != &h->pki->root) {
        X509_up_ref(issuer->cert);
        ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(ctx, issuer->cert), 1);
    }
    SSL_CTX_set_cert_store(ctx, th_trust_root(h));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

/* ---- handshakes ------------------------------------------------------------ */

/* Pump both ends over a BIO pair until both finish or one fails (bounded). */
int th_run_handshake(SSL *server, SSL *client)
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
int th_exchange_data(SSL *server, SSL *client)
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

th_outcome th_connect_ex(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                         int keep_session, const th_connect_opts *opts)
{
    th_outcome out;
    SSL *server = SSL_new(h->server);
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
    if (opts->sni != NULL)
        ck_assert_int_eq(SSL_set_tlsext_host_name(client, opts->sni), 1);
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    if (opts->before != NULL)
        opts->before();
    out.ok = th_run_handshake(server, client) && th_exchange_data(server, client);
    out.reused = SSL_session_reused(server);
    out.server_verify = SSL_get_verify_result(server);
    if (SSL_get_session(server) != NULL) {
        out.server_timeout = (long)SSL_SESSION_get_timeout(SSL_get_session(server));
        out.server_end = (long)SSL_SESSION_get_time(SSL_get_session(server)) + out.server_timeout;
    }
    account = certstore_ssl_account_ex(server, h->libctx);
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

th_outcome th_connect_with(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                           int keep_session)
{
    th_connect_opts opts = {"localhost", NULL};

    return th_connect_ex(h, client_ctx, resume, keep_session, &opts);
}

th_outcome th_connect_as(const tls_harness *h, const char *leaf)
{
    SSL_CTX *client = th_make_client(h, leaf);
    th_outcome out = th_connect_with(h, client, NULL, 0);

    SSL_CTX_free(client);
    return out;
}

/* ---- the decision log ------------------------------------------------------- */

char *th_read_log(const tls_harness *h)
{
    FILE *f = fopen(h->log, "r");
    char *text = calloc(1, LOG_READ_MAX);
    size_t n = 0;

    ck_assert_ptr_nonnull(text);
    if (f != NULL) {
        n = fread(text, 1, LOG_READ_MAX - 1, f);
        fclose(f);
    }
    text[n] = '\0';
    return text;
}

/* Check's messages have a size limit: show the end of a long log. */
static const char *th_log_tail(const char *text)
{
    size_t len = strlen(text);

    return len > 1500 ? text + len - 1500 : text;
}

void th_assert_log_has(const tls_harness *h, const char *needle)
{
    char *text = th_read_log(h);

    ck_assert_msg(strstr(text, needle) != NULL, "log lacks \"%s\":\n...%s", needle,
                  th_log_tail(text));
    free(text);
}

void th_assert_log_lacks(const tls_harness *h, const char *needle)
{
    char *text = th_read_log(h);

    ck_assert_msg(strstr(text, needle) == NULL, "log has \"%s\":\n...%s", needle,
                  th_log_tail(text));
    free(text);
}

void th_assert_rejected(const tls_harness *h, const char *leaf, const char *reason)
{
    th_outcome out = th_connect_as(h, leaf);
    char needle[128];

    ck_assert_msg(!out.ok, "%s was accepted", leaf);
    ck_assert_int_eq(out.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    snprintf(needle, sizeof(needle), "result=reject reason=%s", reason);
    th_assert_log_has(h, needle);
}
