/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared in-process TLS harness of the provider suites (tls_harness.h).
 */
#include "tls_harness.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "certstore.h"

static void th_setup_paths(tls_harness *h, const char *dir)
{
    h->pki = testpki_new(0);
    ck_assert_ptr_nonnull(h->pki);
    snprintf(h->db, sizeof(h->db), "%s/certstore.db", dir);
    snprintf(h->cnf, sizeof(h->cnf), "%s/openssl.cnf", dir);
    snprintf(h->log, sizeof(h->log), "%s/decisions.log", dir);
}

void th_setup(tls_harness *h)
{
    memset(h, 0, sizeof(*h));
    h->dir = testpki_tmpdir();
    ck_assert_ptr_nonnull(h->dir);
    th_setup_paths(h, h->dir);
}

void th_setup_in(tls_harness *h, const char *dir)
{
    memset(h, 0, sizeof(*h));
    ck_assert_ptr_nonnull(dir);
    th_setup_paths(h, dir);
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

void th_map_cert(cs_db *db, X509 *cert, const char *account, cs_kind kind, int64_t not_before,
                 int64_t not_after)
{
    cs_mapping_spec spec;
    char issuer_fp[CS_FP_HEX_LEN + 1];

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

void th_map_leaf(const tls_harness *h, cs_db *db, const char *leaf, const char *account,
                 cs_kind kind, int64_t not_before, int64_t not_after)
{
    th_map_cert(db, testpki_get(h->pki, leaf)->cert, account, kind, not_before, not_after);
}

cs_mapping_ref th_ref_for(const tls_harness *h, const char *leaf, cs_kind kind)
{
    cs_mapping_ref ref;

    memset(&ref, 0, sizeof(ref));
    ref.kind = kind;
    ck_assert_int_eq(cs_key_from_cert(testpki_get(h->pki, leaf)->cert, kind, &ref.key), CS_OK);
    return ref;
}

void th_unmap_leaf(const tls_harness *h, const char *who, const char *leaf, cs_kind kind)
{
    cs_db *db = th_store_begin(h->db, who);
    cs_mapping_ref ref = th_ref_for(h, leaf, kind);

    ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
    th_store_commit(db);
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
    /* As a server finds it: the provider reads its section's keys from there. */
    ck_assert_int_eq(setenv("OPENSSL_CONF", h->cnf, 1), 0);
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

SSL_CTX *th_make_client_sending(const tls_harness *h, X509 *cert, EVP_PKEY *key, X509 *extra, ...)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(h->libctx, NULL, TLS_client_method());
    va_list ap;

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, key), 1);
    va_start(ap, extra);
    for (; extra != NULL; extra = va_arg(ap, X509 *)) {
        X509_up_ref(extra);
        ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(ctx, extra), 1);
    }
    va_end(ap);
    SSL_CTX_set_cert_store(ctx, th_trust_root(h));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

SSL_CTX *th_make_client(const tls_harness *h, const char *leaf)
{
    const testpki_cred *cred = testpki_get(h->pki, leaf);
    const testpki_cred *issuer = testpki_issuer_of(h->pki, cred);
    int send_issuer = issuer != NULL && issuer != cred && issuer != &h->pki->root;

    return th_make_client_sending(h, cred->cert, cred->key, send_issuer ? issuer->cert : NULL,
                                  NULL);
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

/* ---- a link the test forwards itself ----------------------------------------- */

struct th_link {
    SSL *server, *client;
    BIO *client_out, *server_in; /* what the client wrote, what the server reads */
    BIO *server_out, *client_in; /* and back */
    BIO *staged;                 /* client bytes taken, maybe re-framed, not yet delivered */
    size_t delivered;            /* client bytes delivered to the server */
    size_t first_flight;         /* client bytes before it first waited (0: not yet) */
    size_t first_fragment;       /* delivered bytes up to the end of the first fragment */
    int taken_any;
    size_t gate_at, split_hello_at;
    void (*at_gate)(void);
    int gate_passed;
    int owns_ssls; /* made by th_link_open */
};

static BIO *th_mem_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());

    ck_assert_ptr_nonnull(b);
    BIO_set_mem_eof_return(b, -1); /* empty: retry, as a socket would */
    return b;
}

th_link *th_link_new(SSL *server, SSL *client)
{
    th_link *link = calloc(1, sizeof(*link));

    ck_assert_ptr_nonnull(link);
    link->server = server;
    link->client = client;
    link->client_out = th_mem_bio();
    link->server_in = th_mem_bio();
    link->server_out = th_mem_bio();
    link->client_in = th_mem_bio();
    link->staged = th_mem_bio();
    SSL_set_bio(server, link->server_in, link->server_out);
    SSL_set_bio(client, link->client_in, link->client_out);
    return link;
}

th_link *th_link_open(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume)
{
    SSL *server = SSL_new(h->server);
    SSL *client = SSL_new(client_ctx);
    th_link *link;

    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
    link = th_link_new(server, client);
    link->owns_ssls = 1;
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    ck_assert_int_eq(SSL_set_tlsext_host_name(client, "localhost"), 1);
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    return link;
}

SSL *th_link_server(const th_link *link)
{
    return link->server;
}

SSL *th_link_client(const th_link *link)
{
    return link->client;
}

void th_link_gate(th_link *link, size_t gate_at, void (*at_gate)(void), size_t split_hello_at)
{
    link->gate_at = gate_at;
    link->at_gate = at_gate;
    link->split_hello_at = split_hello_at;
}

int th_link_gate_passed(const th_link *link)
{
    return link->gate_passed;
}

size_t th_link_client_sent(const th_link *link)
{
    return link->delivered;
}

static void th_put_record(BIO *to, const unsigned char *hdr, const unsigned char *body, size_t len)
{
    unsigned char h[5];

    memcpy(h, hdr, 3);
    h[3] = (unsigned char)(len >> 8);
    h[4] = (unsigned char)len;
    ck_assert_int_eq(BIO_write(to, h, 5), 5);
    ck_assert_int_eq(BIO_write(to, body, (int)len), (int)len);
}

/* The client's first record, re-framed into two at split_hello_at bytes of its body. */
static void th_take_split_hello(th_link *link)
{
    unsigned char rec[5 + 16384 + 256];
    size_t body;
    int n = BIO_read(link->client_out, rec, 5);

    ck_assert_int_eq(n, 5);
    body = ((size_t)rec[3] << 8) | rec[4];
    ck_assert_uint_le(body, sizeof(rec) - 5);
    ck_assert_int_eq(BIO_read(link->client_out, rec + 5, (int)body), (int)body);
    ck_assert_uint_lt(link->split_hello_at, body);
    th_put_record(link->staged, rec, rec + 5, link->split_hello_at);
    th_put_record(link->staged, rec, rec + 5 + link->split_hello_at, body - link->split_hello_at);
    link->first_fragment = 5 + link->split_hello_at;
}

static size_t th_gate_limit(const th_link *link)
{
    if (link->gate_at == 0 || link->gate_passed)
        return (size_t)-1;
    if (link->gate_at == TH_GATE_SPLIT)
        return link->first_fragment;
    if (link->gate_at == TH_GATE_FIRST_FLIGHT)
        return link->first_flight;
    return link->gate_at;
}

static void th_move(BIO *from, BIO *to, size_t limit)
{
    unsigned char buf[4096];

    while (limit > 0) {
        int n = BIO_read(from, buf, (int)(limit < sizeof(buf) ? limit : sizeof(buf)));

        if (n <= 0)
            break;
        ck_assert_int_eq(BIO_write(to, buf, n), n);
        limit -= (size_t)n;
    }
}

/* Carry what each end wrote to the other, holding client bytes at the gate. */
static void th_link_flow(th_link *link)
{
    size_t limit;

    if (!link->taken_any && BIO_ctrl_pending(link->client_out) > 0) {
        link->taken_any = 1;
        link->first_flight = BIO_ctrl_pending(link->client_out);
        if (link->split_hello_at > 0) {
            th_take_split_hello(link);
            link->first_flight += 5;
        }
    }
    th_move(link->client_out, link->staged, (size_t)-1);
    limit = th_gate_limit(link);
    if (limit != (size_t)-1) {
        size_t before = BIO_ctrl_pending(link->staged);

        th_move(link->staged, link->server_in,
                limit > link->delivered ? limit - link->delivered : 0);
        link->delivered += before - BIO_ctrl_pending(link->staged);
    } else {
        link->delivered += BIO_ctrl_pending(link->staged);
        th_move(link->staged, link->server_in, (size_t)-1);
    }
    th_move(link->server_out, link->client_in, (size_t)-1);
}

void th_link_pump(th_link *link)
{
    th_link_flow(link);
}

/* The server read everything up to the gate and waits: the gate's moment. */
static void th_link_at_gate(th_link *link, int server_waiting)
{
    size_t limit = th_gate_limit(link);

    if (limit == (size_t)-1 || !link->taken_any || !server_waiting || link->delivered < limit ||
        BIO_ctrl_pending(link->server_in) > 0)
        return;
    if (link->at_gate != NULL)
        link->at_gate();
    link->gate_passed = 1;
}

static int th_step(SSL *ssl, int *done, int *waiting)
{
    int r;

    *waiting = 0;
    if (*done)
        return 1;
    r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    *waiting = SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ;
    return *waiting;
}

int th_link_handshake(th_link *link)
{
    int server_done = 0, client_done = 0, waiting, i;

    for (i = 0; i < 400 && !(server_done && client_done); i++) {
        if (!th_step(link->client, &client_done, &waiting))
            return 0;
        th_link_flow(link);
        if (!th_step(link->server, &server_done, &waiting))
            return 0;
        th_link_at_gate(link, waiting);
        th_link_flow(link);
    }
    return server_done && client_done;
}

static int th_read_on(th_link *link, SSL *reader, char *buf, int len)
{
    int i, n;

    for (i = 0; i < 10; i++) {
        th_link_flow(link);
        n = SSL_read(reader, buf, len);
        if (n > 0)
            return n;
        if (SSL_get_error(reader, n) != SSL_ERROR_WANT_READ)
            return n;
    }
    return 0;
}

int th_link_exchange(th_link *link)
{
    char buf[16];

    if (SSL_write(link->server, "ping", 4) != 4 || th_read_on(link, link->client, buf, 16) != 4)
        return 0;
    if (SSL_write(link->client, "pong", 4) != 4 || th_read_on(link, link->server, buf, 16) != 4)
        return 0;
    return 1;
}

int th_link_read_step(th_link *link, SSL *reader)
{
    char buf[64];
    int r;

    th_link_flow(link);
    r = SSL_read(reader, buf, sizeof(buf));
    if (r > 0)
        return 1;
    return SSL_get_error(reader, r) == SSL_ERROR_WANT_READ;
}

int th_link_send(th_link *link, SSL *from, SSL *to)
{
    char buf[16];
    int i, r;

    if (SSL_write(from, "ping", 4) != 4)
        return 0;
    for (i = 0; i < 10; i++) {
        th_link_flow(link);
        r = SSL_read(to, buf, sizeof(buf));
        if (r == 4)
            return 1;
        if (r <= 0 && SSL_get_error(to, r) != SSL_ERROR_WANT_READ)
            return 0;
        if (!th_link_read_step(link, from))
            return 0;
    }
    return 0;
}

void th_link_free(th_link *link)
{
    if (link == NULL)
        return;
    BIO_free(link->staged); /* the SSLs own the other four */
    if (link->owns_ssls) {
        SSL_free(link->server);
        SSL_free(link->client);
        ERR_clear_error();
    }
    free(link);
}

th_outcome th_connect_ex(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                         int keep_session, const th_connect_opts *opts)
{
    th_outcome out;
    SSL *server = SSL_new(h->server);
    SSL *client = SSL_new(client_ctx);
    th_link *link;
    const char *account;

    memset(&out, 0, sizeof(out));
    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
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
    if (opts->before != NULL)
        opts->before();
    out.ok = th_link_handshake(link) && th_link_exchange(link);
    out.gate_passed = th_link_gate_passed(link);
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
    th_link_free(link);
    ERR_clear_error();
    return out;
}

th_outcome th_connect_with(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                           int keep_session)
{
    th_connect_opts opts = {.sni = "localhost"};

    return th_connect_ex(h, client_ctx, resume, keep_session, &opts);
}

th_outcome th_connect_as(const tls_harness *h, const char *leaf)
{
    SSL_CTX *client = th_make_client(h, leaf);
    th_outcome out = th_connect_with(h, client, NULL, 0);

    SSL_CTX_free(client);
    return out;
}

/* ---- resumption --------------------------------------------------------------- */

const th_resumption_kind th_resumption_kinds[TH_RESUMPTION_KINDS] = {
    {"TLS 1.2 session ID", SSL_OP_NO_TICKET, TLS1_2_VERSION},
    {"TLS 1.2 ticket", 0, TLS1_2_VERSION},
    {"TLS 1.3 stateless ticket", 0, 0},
    {"TLS 1.3 stateful ticket", SSL_OP_NO_TICKET, 0},
};

SSL_CTX *th_first_handshake(tls_harness *h, const th_resumption_kind *k, const char *leaf,
                            th_outcome *first)
{
    SSL_CTX *client;

    th_make_server(h, k->options, k->max_version, 0);
    client = th_make_client(h, leaf);
    *first = th_connect_with(h, client, NULL, 1);
    ck_assert_msg(first->ok, "%s: first handshake as %s failed", k->name, leaf);
    ck_assert_int_eq(first->reused, 0);
    ck_assert_ptr_nonnull(first->session);
    return client;
}

/* ---- the decision log ------------------------------------------------------- */

char *th_read_log(const tls_harness *h)
{
    FILE *f = fopen(h->log, "r");
    char *text = NULL;
    size_t len = 0;
    long size;

    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0) {
        rewind(f);
        text = malloc((size_t)size + 1);
        ck_assert_ptr_nonnull(text);
        len = fread(text, 1, (size_t)size, f);
    }
    if (f != NULL)
        fclose(f);
    if (text == NULL)
        text = malloc(1);
    ck_assert_ptr_nonnull(text);
    text[len] = '\0';
    return text;
}

int th_count_in(const char *text, const char *needle)
{
    int n = 0;

    for (text = strstr(text, needle); text != NULL; text = strstr(text + 1, needle))
        n++;
    return n;
}

int th_log_count(const tls_harness *h, const char *needle)
{
    char *text = th_read_log(h);
    int n = th_count_in(text, needle);

    free(text);
    return n;
}

void th_assert_log_count(const tls_harness *h, const char *needle, int expected)
{
    char *text = th_read_log(h);
    int n = th_count_in(text, needle);

    ck_assert_msg(n == expected, "log has \"%s\" %d times, want %d:\n%s", needle, n, expected,
                  text);
    free(text);
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
