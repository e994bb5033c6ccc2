/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-process handshake benchmark: full TLS 1.3 mutual-auth handshakes over
 * a memory BIO pair, counting only the server's CPU time inside
 * SSL_do_handshake.
 *
 * The certstore provider hooks every SSL_CTX of the process once it is
 * loaded, so "with" and "without" cannot share a process. The driver runs
 * this same binary as a worker process per configuration per round, the
 * two differing only in OPENSSL_CONF (both files activate the default
 * provider; one also activates certstore). Rounds alternate the order
 * (on/off, off/on, ...) so drift in machine speed hits both sides alike,
 * workers never overlap, and the reported ratio is the median of the
 * per-round ratios. Each worker proves which side it is on before timing:
 * an unmapped probe client must be rejected with the provider and accepted
 * without it.
 *
 *   bench_handshake --pki DIR (--conf-on FILE | --aa) --conf-off FILE --label TEXT
 *                   [--rounds 5] [--count 2000] [--warmup 200]
 *
 * --aa runs both sides without the provider: the ratio it prints is what
 * the machine's noise alone does to the method (ideally 1.000).
 * --pool LEAVES --pool-keys KEYS: every counted handshake presents the next
 * client of a pool (bench_gen leaves --keys) instead of --leaf, so the
 * provider decides each in full: clients seen for the first time.
 *   bench_handshake worker --pki DIR --expect on|off [--count N] [--warmup N]
 *                   [--pool LEAVES --pool-keys KEYS]
 *
 * What is counted is the server's part of a connection: SSL_new, every
 * SSL_do_handshake step and SSL_free. Under valgrind's callgrind
 * (--collect-atstart=no) exactly that is collected, and only once the
 * warm-up is over: run.sh's instruction counts, which no machine load
 * changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "bench_util.h"

#ifdef BENCH_HAVE_CALLGRIND
#include <valgrind/callgrind.h>
#define COLLECT_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#else
#define COLLECT_TOGGLE() ((void)0)
#endif

#define MAX_ROUNDS 64
#define HANDSHAKE_STEPS 32 /* flights are few; more means a stuck state machine */

typedef struct {
    SSL_CTX *server;
    SSL_CTX *client;       /* the mapped leaf: must be accepted */
    SSL_CTX *probe_client; /* an unmapped leaf under the pinned CA */
} contexts;

static void path_in(char *buf, size_t len, const char *dir, const char *file)
{
    snprintf(buf, len, "%s/%s", dir, file);
}

static SSL_CTX *server_ctx(const char *pki)
{
    char chain[4096], key[4096], roots[4096];
    path_in(chain, sizeof(chain), pki, "server.pem");
    path_in(key, sizeof(key), pki, "server.key");
    path_in(roots, sizeof(roots), pki, "root.pem");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, chain) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, roots, NULL) != 1) {
        bench_ssl_fail("server context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Full handshakes only: no session cache, no tickets. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
}

static SSL_CTX *leaf_client_ctx(const char *pki, const char *leaf)
{
    char chain[4096], key[4096], roots[4096], name[256];
    snprintf(name, sizeof(name), "%s-chain.pem", leaf);
    path_in(chain, sizeof(chain), pki, name);
    snprintf(name, sizeof(name), "%s.key", leaf);
    path_in(key, sizeof(key), pki, name);
    path_in(roots, sizeof(roots), pki, "root.pem");
    return bench_client_ctx(chain, key, roots);
}

/* Step one side; 1 done, 0 wants more I/O, -1 failed. */
static int step(SSL *ssl)
{
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    int err = SSL_get_error(ssl, r);
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* The server's clock (and callgrind's collection) runs only inside these. */
typedef struct {
    int64_t ns;   /* server CPU time so far */
    int counting; /* past the warm-up: callgrind collects too */
} server_meter;

static void meter_start(server_meter *m, int64_t *t0)
{
    if (m->counting)
        COLLECT_TOGGLE();
    *t0 = bench_thread_cpu_ns();
}

static void meter_stop(server_meter *m, int64_t t0)
{
    m->ns += bench_thread_cpu_ns() - t0;
    if (m->counting)
        COLLECT_TOGGLE();
}

/*
 * One handshake between fresh connections of the two contexts, the client
 * presenting leaf/key instead of its context's certificate when given.
 * Returns 1 when both sides completed, 0 when the server refused the
 * client, -1 on anything else. The server's part goes to the meter.
 */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, X509 *leaf, EVP_PKEY *key, server_meter *m)
{
    SSL *server, *client = SSL_new(cctx);
    BIO *server_bio = NULL, *client_bio = NULL;
    int result = -1;
    int64_t t0;

    meter_start(m, &t0);
    server = SSL_new(sctx);
    meter_stop(m, t0);
    if (server == NULL || client == NULL || !BIO_new_bio_pair(&server_bio, 0, &client_bio, 0))
        goto done;
    if (leaf != NULL && (SSL_use_certificate(client, leaf) != 1 ||
                         SSL_use_PrivateKey(client, key) != 1)) {
        BIO_free(server_bio);
        BIO_free(client_bio);
        goto done;
    }
    SSL_set_bio(server, server_bio, server_bio);
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    int client_state = 0, server_state = 0;
    for (int i = 0; i < HANDSHAKE_STEPS && (client_state == 0 || server_state == 0); i++) {
        if (client_state == 0)
            client_state = step(client);
        if (server_state == 0) {
            meter_start(m, &t0);
            server_state = step(server);
            meter_stop(m, t0);
        }
        if (client_state < 0 || server_state < 0)
            break;
    }
    if (client_state == 1 && server_state == 1)
        result = 1;
    else if (server_state < 0 &&
             SSL_get_verify_result(server) == X509_V_ERR_APPLICATION_VERIFICATION)
        result = 0;
    ERR_clear_error();
done:
    meter_start(m, &t0);
    SSL_free(server);
    meter_stop(m, t0);
    SSL_free(client);
    return result;
}

static void free_contexts(contexts *c)
{
    SSL_CTX_free(c->server);
    SSL_CTX_free(c->client);
    SSL_CTX_free(c->probe_client);
}

static int make_contexts(contexts *c, const char *pki, const char *leaf, const char *probe)
{
    c->server = server_ctx(pki);
    c->client = leaf_client_ctx(pki, leaf);
    c->probe_client = leaf_client_ctx(pki, probe);
    return c->server != NULL && c->client != NULL && c->probe_client != NULL;
}

/* The worker must be on the side it was told, or its numbers mean nothing. */
static int check_side(const contexts *c, int provider_expected)
{
    server_meter ignored = {0};
    int available = OSSL_PROVIDER_available(NULL, "certstore");
    if (available != provider_expected) {
        fprintf(stderr, "bench: certstore provider %s, expected %s (OPENSSL_CONF=%s)\n",
                available ? "loaded" : "not loaded", provider_expected ? "loaded" : "absent",
                getenv("OPENSSL_CONF") ? getenv("OPENSSL_CONF") : "(unset)");
        return 0;
    }
    if (handshake(c->server, c->client, NULL, NULL, &ignored) != 1) {
        fprintf(stderr, "bench: the mapped client was not accepted\n");
        return 0;
    }
    int probe = handshake(c->server, c->probe_client, NULL, NULL, &ignored);
    if (probe != (provider_expected ? 0 : 1)) {
        fprintf(stderr, "bench: the unmapped probe client was %s, expected %s\n",
                probe == 1   ? "accepted"
                : probe == 0 ? "rejected"
                             : "a failure",
                provider_expected ? "rejected" : "accepted");
        return 0;
    }
    return 1;
}

static int run_worker(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *expect = bench_opt(argc, argv, "--expect");
    const char *leaf = bench_opt(argc, argv, "--leaf");
    const char *probe = bench_opt(argc, argv, "--probe");
    const char *pool_leaves = bench_opt(argc, argv, "--pool");
    const char *pool_keys = bench_opt(argc, argv, "--pool-keys");
    long count = bench_opt_long(argc, argv, "--count", 2000);
    long warmup = bench_opt_long(argc, argv, "--warmup", 200);
    if (pki == NULL || expect == NULL || count < 0 || warmup < 0 ||
        (strcmp(expect, "on") != 0 && strcmp(expect, "off") != 0) ||
        (pool_leaves == NULL) != (pool_keys == NULL)) {
        fprintf(stderr, "usage: bench_handshake worker --pki DIR --expect on|off "
                        "[--leaf alice] [--probe bob] [--count N] [--warmup N] "
                        "[--pool LEAVES --pool-keys KEYS]\n");
        return 2;
    }
    if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1)
        return bench_ssl_fail("loading OPENSSL_CONF"), 1;
    contexts c = {0};
    bench_pool pool = {0};
    int ok = make_contexts(&c, pki, leaf ? leaf : "alice", probe ? probe : "bob") &&
             check_side(&c, strcmp(expect, "on") == 0);
    if (ok && pool_leaves != NULL && !bench_pool_load(&pool, pool_leaves, pool_keys)) {
        bench_ssl_fail("loading the client pool");
        ok = 0;
    }
    if (ok && pool.size > 0 && pool.size < warmup + count)
        fprintf(stderr, "bench: a pool of %ld for %ld handshakes: some clients come back\n",
                pool.size, warmup + count);
    server_meter meter = {0};
    for (long i = 0; ok && i < warmup + count; i++) {
        X509 *client_leaf = pool.size > 0 ? pool.leaves[i % pool.size] : NULL;
        EVP_PKEY *client_key = pool.size > 0 ? pool.keys[i % pool.size] : NULL;
        if (i == warmup)
            meter = (server_meter){0, 1}; /* caches are warm now: start counting */
        if (handshake(c.server, c.client, client_leaf, client_key, &meter) != 1) {
            fprintf(stderr, "bench: handshake %ld failed\n", i);
            ok = 0;
        }
    }
    free_contexts(&c);
    bench_pool_free(&pool);
    if (!ok)
        return 1;
    printf("server_cpu_ns=%lld count=%ld peak_rss_kib=%ld\n", (long long)meter.ns, count,
           bench_peak_rss_kib());
    return 0;
}

typedef struct {
    double handshakes_per_cpu_s;
    long peak_rss_kib;
} worker_result;

/* Exec ourselves as a worker with OPENSSL_CONF=conf and read its one line. */
static int spawn_worker(const char *self, const char *conf, const char *side, char **passthru,
                        int npassthru, worker_result *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[1]);
        setenv("OPENSSL_CONF", conf, 1);
        char *args[32];
        int n = 0;
        args[n++] = (char *)self;
        args[n++] = "worker";
        args[n++] = "--expect";
        args[n++] = (char *)side;
        for (int i = 0; i < npassthru && n < 31; i++)
            args[n++] = passthru[i];
        args[n] = NULL;
        execv(self, args);
        _exit(127);
    }
    close(fds[1]);
    char line[256] = "";
    FILE *f = fdopen(fds[0], "r");
    if (f == NULL || fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    if (f != NULL)
        fclose(f);
    else
        close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    long long ns = 0;
    long count = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line, "server_cpu_ns=%lld count=%ld peak_rss_kib=%ld", &ns, &count,
               &out->peak_rss_kib) != 3 ||
        ns <= 0) {
        fprintf(stderr, "bench: worker (%s, OPENSSL_CONF=%s) failed\n", side, conf);
        return 0;
    }
    out->handshakes_per_cpu_s = (double)count / ((double)ns / 1e9);
    return 1;
}

static int run_driver(int argc, char **argv)
{
    const char *conf_on = bench_opt(argc, argv, "--conf-on");
    const char *conf_off = bench_opt(argc, argv, "--conf-off");
    const char *label = bench_opt(argc, argv, "--label");
    long rounds = bench_opt_long(argc, argv, "--rounds", 5);
    /* --aa: the "on" side runs without the provider too; its ratio is the noise floor. */
    int aa = bench_flag(argc, argv, "--aa");
    if ((conf_on == NULL && !aa) || conf_off == NULL || bench_opt(argc, argv, "--pki") == NULL ||
        rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_handshake --pki DIR (--conf-on FILE | --aa) --conf-off FILE "
                        "[--label TEXT] [--rounds 1..64] [--count N] [--warmup N] "
                        "[--leaf alice] [--probe bob] [--pool LEAVES --pool-keys KEYS]\n");
        return 2;
    }
    const char *on_side = aa ? "off" : "on";
    if (aa)
        conf_on = conf_off;
    /* Hand the worker options through untouched. */
    char *passthru[16];
    int npassthru = 0;
    static const char *const forwarded[] = {"--pki",   "--count", "--warmup",   "--leaf",
                                             "--probe", "--pool",  "--pool-keys"};
    for (size_t k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++) {
        const char *v = bench_opt(argc, argv, forwarded[k]);
        if (v != NULL) {
            passthru[npassthru++] = (char *)forwarded[k];
            passthru[npassthru++] = (char *)v;
        }
    }
    double on[MAX_ROUNDS], off[MAX_ROUNDS], ratio[MAX_ROUNDS], rss_on[MAX_ROUNDS],
        rss_off[MAX_ROUNDS];
    for (long r = 0; r < rounds; r++) {
        worker_result a = {0}, b = {0};
        int on_first = (r % 2) == 0;
        int ok = on_first ? spawn_worker(argv[0], conf_on, on_side, passthru, npassthru, &a) &&
                                spawn_worker(argv[0], conf_off, "off", passthru, npassthru, &b)
                          : spawn_worker(argv[0], conf_off, "off", passthru, npassthru, &b) &&
                                spawn_worker(argv[0], conf_on, on_side, passthru, npassthru, &a);
        if (!ok)
            return 1;
        on[r] = a.handshakes_per_cpu_s;
        off[r] = b.handshakes_per_cpu_s;
        ratio[r] = on[r] / off[r];
        rss_on[r] = (double)a.peak_rss_kib / 1024.0;
        rss_off[r] = (double)b.peak_rss_kib / 1024.0;
    }
    size_t n = (size_t)rounds;
    printf("| %s | %.0f | %.0f | %.3f | %.1f | %.1f |\n", label ? label : "-",
           bench_median_double(off, n), bench_median_double(on, n), bench_median_double(ratio, n),
           bench_median_double(rss_off, n), bench_median_double(rss_on, n));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "worker") == 0)
        return run_worker(argc, argv);
    return run_driver(argc, argv);
}
