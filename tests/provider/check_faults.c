/*
 * Faults in process: a writer that holds the database's lock. In WAL mode
 * (what the CLI leaves) readers never wait and decide from the last
 * committed state; in rollback-journal mode (a store shipped that way) an
 * exclusive lock does block readers, and the provider must then fail
 * closed within its busy timeout, not hang the handshake, and recover by
 * itself once the lock is gone. The shell test test_faults.sh covers the
 * file faults under openssl s_server.
 *
 * Each test runs in its own process (Check's fork mode): the hook keeps
 * the configuration of the first activation.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define BUSY_TIMEOUT_MS 300
#define STORE_OPEN_BUSY_MS 2000 /* cs_db_open's own, before the caller can set one */

typedef struct {
    char db[512];
    char cnf[512];
    char log[512];
    testpki *pki;
    OSSL_LIB_CTX *libctx;
    SSL_CTX *server;
    SSL_CTX *alice;
    sqlite3 *writer;
} fixture;

static fixture fx;
static char *tcase_dir; /* the runner's: removed even when a test fails */

static void store_standard(void)
{
    cs_db *db = NULL;
    cs_mapping_spec spec;
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_db_open(&db, fx.db, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_begin(db, "check_faults"), CS_OK);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    memset(&spec, 0, sizeof(spec));
    ck_assert_int_eq(cs_mapping_spec_from_cert(&spec, fx.pki->alice.cert, CS_KIND_CERT), CS_OK);
    spec.account = "alice";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    ck_assert_int_eq(cs_mapping_add(db, &spec, 1, NULL), CS_OK);
    ck_assert_msg(cs_db_commit(db) == CS_OK, "%s", cs_db_errmsg(db));
    cs_db_close(db);
}

static void writer_exec(const char *sql)
{
    char *err = NULL;

    ck_assert_msg(sqlite3_exec(fx.writer, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql,
                  err != NULL ? err : "?");
}

static void open_writer(void)
{
    ck_assert_int_eq(sqlite3_open_v2(fx.db, &fx.writer, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
}

static void load_provider(void)
{
    FILE *f = fopen(fx.cnf, "w");
    const char *module = getenv("CERTSTORE_MODULE");

    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "openssl_conf = openssl_init\n"
            "[openssl_init]\nproviders = provider_sect\n"
            "[provider_sect]\ncertstore = certstore_sect\ndefault = default_sect\n"
            "[default_sect]\nactivate = 1\n"
            "[certstore_sect]\nactivate = 1\ndb = %s\nlog = %s\nbusy_timeout_ms = %d\n",
            fx.db, fx.log, BUSY_TIMEOUT_MS);
    if (module != NULL)
        fprintf(f, "module = %s\n", module);
    fclose(f);
    fx.libctx = OSSL_LIB_CTX_new();
    ck_assert_ptr_nonnull(fx.libctx);
    /* The provider checks its section's keys in $OPENSSL_CONF, as servers set it. */
    ck_assert_int_eq(setenv("OPENSSL_CONF", fx.cnf, 1), 0);
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

static void make_contexts(void)
{
    fx.server = SSL_CTX_new_ex(fx.libctx, NULL, TLS_server_method());
    ck_assert_ptr_nonnull(fx.server);
    ck_assert_int_eq(SSL_CTX_use_certificate(fx.server, fx.pki->server.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(fx.server, fx.pki->server.key), 1);
    SSL_CTX_set_cert_store(fx.server, trust_root());
    SSL_CTX_set_verify(fx.server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(fx.server, SSL_SESS_CACHE_OFF);

    fx.alice = SSL_CTX_new_ex(fx.libctx, NULL, TLS_client_method());
    ck_assert_ptr_nonnull(fx.alice);
    ck_assert_int_eq(SSL_CTX_use_certificate(fx.alice, fx.pki->alice.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(fx.alice, fx.pki->alice.key), 1);
    X509_up_ref(fx.pki->ca_a.cert);
    ck_assert_int_eq(SSL_CTX_add_extra_chain_cert(fx.alice, fx.pki->ca_a.cert), 1);
    SSL_CTX_set_cert_store(fx.alice, trust_root());
    SSL_CTX_set_verify(fx.alice, SSL_VERIFY_PEER, NULL);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One handshake as alice, SSL_new included (it reads the generation). */
static int alice_accepted(double *elapsed_ms)
{
    double start = now_ms();
    SSL *server = SSL_new(fx.server);
    SSL *client = SSL_new(fx.alice);
    BIO *sbio = NULL, *cbio = NULL;
    const char *account;
    int accepted = 0;

    ck_assert_ptr_nonnull(server);
    ck_assert_ptr_nonnull(client);
    ck_assert_int_eq(BIO_new_bio_pair(&sbio, 0, &cbio, 0), 1);
    SSL_set_bio(server, sbio, sbio);
    SSL_set_bio(client, cbio, cbio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    if (th_run_handshake(server, client)) {
        account = certstore_ssl_account_ex(server, fx.libctx);
        accepted = account != NULL && strcmp(account, "alice") == 0;
    } else {
        ck_assert_int_eq(SSL_get_verify_result(server), X509_V_ERR_APPLICATION_VERIFICATION);
    }
    *elapsed_ms = now_ms() - start;
    SSL_free(server);
    SSL_free(client);
    ERR_clear_error();
    return accepted;
}

static int log_has(const char *needle)
{
    FILE *f = fopen(fx.log, "r");
    char line[4096];
    int found = 0;

    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void make_dir(void)
{
    tcase_dir = testpki_tmpdir();
}

static void remove_dir(void)
{
    if (tcase_dir != NULL)
        testpki_rmtree(tcase_dir);
    free(tcase_dir);
    tcase_dir = NULL;
}

static void setup(void)
{
    memset(&fx, 0, sizeof(fx));
    ck_assert_ptr_nonnull(tcase_dir);
    fx.pki = testpki_new(0);
    ck_assert_ptr_nonnull(fx.pki);
    snprintf(fx.db, sizeof(fx.db), "%s/certstore.db", tcase_dir);
    snprintf(fx.cnf, sizeof(fx.cnf), "%s/openssl.cnf", tcase_dir);
    snprintf(fx.log, sizeof(fx.log), "%s/decisions.log", tcase_dir);
}

static void teardown(void)
{
    if (fx.writer != NULL)
        sqlite3_close(fx.writer);
    SSL_CTX_free(fx.server);
    SSL_CTX_free(fx.alice);
    OSSL_LIB_CTX_free(fx.libctx);
    testpki_free(fx.pki);
}

START_TEST(test_wal_writer_holding_exclusive_lock_does_not_stall_readers)
{
    double ms, slowest = 0;
    int i;

    store_standard();
    load_provider();
    make_contexts();
    ck_assert(alice_accepted(&ms));
    open_writer();
    writer_exec("BEGIN EXCLUSIVE; DELETE FROM mappings;");
    for (i = 0; i < 20; i++) {
        ck_assert_msg(alice_accepted(&ms), "alice rejected while a write was uncommitted");
        if (ms > slowest)
            slowest = ms;
    }
    ck_assert_msg(slowest < BUSY_TIMEOUT_MS, "a handshake waited %.0f ms", slowest);
    writer_exec("COMMIT;");
    ck_assert(!alice_accepted(&ms));
    ck_assert(log_has("result=reject reason=no-mapping"));
}
END_TEST

START_TEST(test_rollback_journal_exclusive_lock_fails_closed_within_busy_timeout)
{
    double ms;
    int i;

    store_standard();
    open_writer();
    writer_exec("PRAGMA journal_mode = DELETE;");
    load_provider();
    make_contexts();
    ck_assert(alice_accepted(&ms));
    writer_exec("BEGIN EXCLUSIVE; UPDATE mappings SET note = 'held';");
    for (i = 0; i < 3; i++) {
        ck_assert_msg(!alice_accepted(&ms), "alice accepted through an exclusive lock");
        fprintf(stderr, "locked store: rejected after %.0f ms (busy timeout %d ms)\n", ms,
                BUSY_TIMEOUT_MS);
        /*
         * Bounded, not instant: the generation read at SSL_new waits the busy
         * timeout, and the reopen after the failure runs the store's schema
         * check under the store's own default timeout (cs_db_open has no way
         * to take the provider's before it). A failed open is then reused
         * for a second, so the decision does not wait a second time.
         */
        ck_assert_msg(ms < BUSY_TIMEOUT_MS + STORE_OPEN_BUSY_MS + 1000,
                      "the handshake stalled %.0f ms", ms);
    }
    ck_assert(log_has("result=reject reason=store-unavailable"));
    writer_exec("ROLLBACK;");
    /* The file did not change: the provider retries within about a second. */
    for (i = 0; i < 30 && !alice_accepted(&ms); i++)
        usleep(100000);
    ck_assert_msg(i < 30, "no recovery within 3 s of the lock being released");
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("locks");

    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wal_writer_holding_exclusive_lock_does_not_stall_readers);
    suite_add_tcase(s, tc);
    tc = tcase_create("journal");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rollback_journal_exclusive_lock_fails_closed_within_busy_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(faults_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
