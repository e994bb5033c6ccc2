/*
 * A database file replaced by another (a deploy tool's atomic rename): the
 * new file's policy generation is its own counter and may equal the old
 * one's, so sessions made under the old file must not resume under the new
 * one, whatever the resumption kind; they are decided anew under the new
 * file. Sessions made under the new file resume as usual.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"

#define ALICE_ACCOUNT "alice@partner-a"
#define BOB_ACCOUNT "bob@partner-a"
#define GENERATION_STEPS_MAX 20

typedef struct {
    char *dir;
    char db[512];     /* the path the provider is configured with */
    char db_new[512]; /* the replacement, built beside it */
    char cnf[512];
    char log[512];
    testpki *pki;
    OSSL_LIB_CTX *libctx;
    SSL_CTX *server;
} fixture;

static fixture fx;

/* ---- stores ----------------------------------------------------------------- */

static cs_db *store_begin(const char *path)
{
    cs_db *db = NULL;

    ck_assert_int_eq(cs_db_open(&db, path, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, "check_replace"), CS_OK);
    return db;
}

static void store_commit(cs_db *db)
{
    ck_assert_msg(cs_db_commit(db) == CS_OK, "%s", cs_db_errmsg(db));
    cs_db_close(db);
}

static void map_leaf(cs_db *db, const char *leaf, const char *account)
{
    cs_mapping_spec spec;

    memset(&spec, 0, sizeof(spec));
    ck_assert_int_eq(
        cs_mapping_spec_from_cert(&spec, testpki_get(fx.pki, leaf)->cert, CS_KIND_CERT), CS_OK);
    spec.account = account;
    spec.not_before = CS_TIME_NONE;
    spec.not_after = CS_TIME_NONE;
    ck_assert_msg(cs_mapping_add(db, &spec, 1, NULL) == CS_OK, "%s", cs_db_errmsg(db));
}

/* ca-a pinned; `leaf` mapped to `account`. */
static void store_build(const char *path, const char *leaf, const char *account)
{
    cs_db *db = store_begin(path);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    map_leaf(db, leaf, account);
    store_commit(db);
}

static int64_t store_generation(const char *path)
{
    cs_db *db = NULL;
    int64_t generation = -1;

    ck_assert_int_eq(cs_db_open(&db, path, CS_OPEN_READONLY), CS_OK);
    ck_assert_int_eq(cs_db_generation(db, &generation), CS_OK);
    cs_db_close(db);
    return generation;
}

/* One narrowing write: map carol, then remove her mapping (bumps the generation). */
static void store_narrow_once(const char *path)
{
    cs_db *db = store_begin(path);
    cs_mapping_ref ref;

    map_leaf(db, "carol", "carol@partner-b");
    memset(&ref, 0, sizeof(ref));
    ref.kind = CS_KIND_CERT;
    ck_assert_int_eq(cs_key_from_cert(fx.pki->carol.cert, CS_KIND_CERT, &ref.key), CS_OK);
    ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
    store_commit(db);
}

/* Narrow `path` until its generation is `target` exactly. */
static void store_raise_generation(const char *path, int64_t target)
{
    int i;

    for (i = 0; i < GENERATION_STEPS_MAX && store_generation(path) < target; i++)
        store_narrow_once(path);
    ck_assert_int_eq(store_generation(path), target);
}

/*
 * The replacement: alice NOT mapped (bob is), and the same generation as
 * the file in place, so the generation alone cannot tell them apart.
 */
static void replace_store_with_narrower(void)
{
    int64_t generation = store_generation(fx.db);

    store_build(fx.db_new, "bob", BOB_ACCOUNT);
    ck_assert_msg(store_generation(fx.db_new) <= generation, "replacement starts higher");
    store_raise_generation(fx.db_new, generation);
    ck_assert_int_eq(rename(fx.db_new, fx.db), 0);
}

/* ---- provider and TLS ------------------------------------------------------- */

static void load_provider(void)
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
    fprintf(f, "db = %s\nlog = %s\n", fx.db, fx.log);
    fclose(f);
    fx.libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(fx.libctx);
    ck_assert_msg(OSSL_LIB_CTX_load_config(fx.libctx, fx.cnf) == 1, "cannot load %s", fx.cnf);
    ck_assert_msg(OSSL_PROVIDER_available(fx.libctx, "certstore"), "certstore not active");
}

static X509_STORE *trust_root(void)
{
    X509_STORE *store = X509_STORE_new();

    ck_assert_ptr_nonnull(store);
    ck_assert_int_eq(X509_STORE_add_cert(store, fx.pki->root.cert), 1);
    return store;
}

static void make_server(long options, int max_version)
{
    fx.server = SSL_CTX_new_ex(fx.libctx, NULL, TLS_server_method());
    ck_assert_ptr_nonnull(fx.server);
    ck_assert_int_eq(SSL_CTX_use_certificate(fx.server, fx.pki->server.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(fx.server, fx.pki->server.key), 1);
    SSL_CTX_set_cert_store(fx.server, trust_root());
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_options(fx.server, options);
    if (max_version != 0)
        ck_assert_int_eq(SSL_CTX_set_max_proto_version(fx.server, max_version), 1);
}

static SSL_CTX *make_client(const char *leaf)
{
    const testpki_cred *cred = testpki_get(fx.pki, leaf);
    SSL_CTX *ctx = SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cred->cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, cred->key), 1);
    X509_up_ref(fx.pki->ca_a.cert);
    ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(ctx, fx.pki->ca_a.cert), 1);
    SSL_CTX_set_cert_store(ctx, trust_root());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

typedef struct {
    int ok;             /* both sides completed, data exchanged */
    int reused;         /* the server resumed a session */
    long server_verify; /* SSL_get_verify_result on the server */
    SSL_SESSION *session;
    char account[CS_ACCOUNT_MAX + 1];
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
    for (i = 0; i < 10 && SSL_read(client, buf, sizeof(buf)) != 4; i++)
        ;
    if (i == 10 || SSL_write(client, "pong", 4) != 4)
        return 0;
    for (i = 0; i < 10; i++) {
        if (SSL_read(server, buf, sizeof(buf)) == 4)
            return 1;
    }
    return 0;
}

static outcome connect_with(SSL_CTX *client_ctx, SSL_SESSION *resume)
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
    if (resume != NULL)
        ck_assert_int_eq(SSL_set_session(client, resume), 1);
    out.ok = run_handshake(server, client) && exchange_data(server, client);
    out.reused = SSL_session_reused(server);
    out.server_verify = SSL_get_verify_result(server);
    account = certstore_ssl_account_ex(server, fx.libctx);
    if (account != NULL)
        snprintf(out.account, sizeof(out.account), "%s", account);
    if (out.ok) {
        out.session = SSL_get1_session(client);
        SSL_shutdown(client);
        SSL_shutdown(server);
    }
    SSL_free(server);
    SSL_free(client);
    ERR_clear_error();
    return out;
}

static void assert_log_has(const char *needle)
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
    ck_assert_msg(strstr(text, needle) != NULL, "log lacks \"%s\":\n%s", needle, text);
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
    snprintf(fx.db_new, sizeof(fx.db_new), "%s/certstore.db.new", fx.dir);
    snprintf(fx.cnf, sizeof(fx.cnf), "%s/openssl.cnf", fx.dir);
    snprintf(fx.log, sizeof(fx.log), "%s/decisions.log", fx.dir);
}

static void teardown(void)
{
    SSL_CTX_free(fx.server);
    OSSL_LIB_CTX_free(fx.libctx);
    testpki_free(fx.pki);
    testpki_rmtree(fx.dir);
    free(fx.dir);
}

/* ---- the resumption kinds --------------------------------------------------- */

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

/* ---- tests ------------------------------------------------------------------ */

/*
 * Alice's session resumes under the file that mapped her (so the check
 * below can fail); once a file without her mapping, at the same generation,
 * is renamed over it, the session must not resume and she is rejected.
 */
START_TEST(test_session_not_resumed_under_replaced_file)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, before, after;

    store_build(fx.db, "alice", ALICE_ACCOUNT);
    store_raise_generation(fx.db, store_generation(fx.db) + 2);
    load_provider();
    make_server(k->options, k->max_version);
    client = make_client("alice");
    first = connect_with(client, NULL);
    ck_assert_msg(first.ok && !first.reused, "%s: first handshake failed", k->name);
    ck_assert_str_eq(first.account, ALICE_ACCOUNT);
    before = connect_with(client, first.session);
    ck_assert_msg(before.ok && before.reused, "%s: no resumption under the same file", k->name);

    /* The newest session: TLS 1.3 stateful tickets are single-use. */
    replace_store_with_narrower();
    after = connect_with(client, before.session);
    ck_assert_msg(!after.reused, "%s: resumed a session made under the replaced file", k->name);
    ck_assert_msg(!after.ok, "%s: alice accepted under a file that does not map her", k->name);
    ck_assert_int_eq(after.server_verify, X509_V_ERR_APPLICATION_VERIFICATION);
    assert_log_has("result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(before.session);
    SSL_CTX_free(client);
}
END_TEST

/* Under the new file, its own sessions resume as before. */
START_TEST(test_sessions_made_under_new_file_resume)
{
    const resumption_kind *k = &resumption_kinds[_i];
    SSL_CTX *client;
    outcome first, again;

    store_build(fx.db, "alice", ALICE_ACCOUNT);
    load_provider();
    make_server(k->options, k->max_version);
    replace_store_with_narrower();
    client = make_client("bob");
    first = connect_with(client, NULL);
    ck_assert_msg(first.ok && !first.reused, "%s: bob's first handshake failed", k->name);
    again = connect_with(client, first.session);
    ck_assert_msg(again.ok && again.reused, "%s: bob's session did not resume", k->name);
    ck_assert_str_eq(again.account, BOB_ACCOUNT);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

static Suite *replace_suite(void)
{
    Suite *s = suite_create("replace");
    TCase *replaced = tcase_create("replaced_file");

    tcase_add_checked_fixture(replaced, setup, teardown);
    tcase_set_timeout(replaced, 30);
    tcase_add_loop_test(replaced, test_session_not_resumed_under_replaced_file, 0, N_KINDS);
    tcase_add_loop_test(replaced, test_sessions_made_under_new_file_resume, 0, N_KINDS);
    suite_add_tcase(s, replaced);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(replace_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
