/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives a real server on 127.0.0.1 over TCP.
 *
 *   bench_load load --port P --pki DIR [--count 2000] [--threads 2] [--leaf alice]
 *       A fixed number of full TLS 1.3 mutual-auth handshakes (no session
 *       reuse, each followed by one HTTP/1.0 request so that a server-side
 *       rejection is seen), shared by the client threads. Every one must be
 *       accepted. Prints "handshakes=N elapsed_ns=T".
 *   bench_load live --port P --pki DIR --cli PATH --db FILE [--count 100]
 *                   [--leaf alice-renewed] [--account NAME] [--label TEXT]
 *       Liveness: `count` times, `certstore map add` the leaf (the next
 *       handshake must be accepted), then `certstore map rm` it; the very
 *       next handshake after rm returns must be rejected, else it is a stale
 *       decision. Prints one table row; exits 1 on any stale decision.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAX_THREADS 16

typedef struct {
    SSL_CTX *ctx;
    int port;
    long count;
    long failures;
} load_share;

static SSL_CTX *leaf_ctx(const char *pki, const char *leaf)
{
    char chain[4096], key[4096], roots[4096];
    snprintf(chain, sizeof(chain), "%s/%s-chain.pem", pki, leaf);
    snprintf(key, sizeof(key), "%s/%s.key", pki, leaf);
    snprintf(roots, sizeof(roots), "%s/root.pem", pki);
    return bench_client_ctx(chain, key, roots);
}

static void *load_thread(void *arg)
{
    load_share *share = arg;
    for (long i = 0; i < share->count; i++) {
        if (bench_tls_request(share->ctx, share->port) != 1)
            share->failures++;
    }
    return NULL;
}

static int run_load(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *leaf = bench_opt(argc, argv, "--leaf");
    long port = bench_opt_long(argc, argv, "--port", -1);
    long count = bench_opt_long(argc, argv, "--count", 2000);
    long threads = bench_opt_long(argc, argv, "--threads", 2);
    if (pki == NULL || port < 1 || port > 65535 || count < 1 || threads < 1 ||
        threads > MAX_THREADS) {
        fputs("usage: bench_load load --port P --pki DIR [--count N] [--threads 1..16] "
              "[--leaf NAME]\n",
              stderr);
        return 2;
    }
    SSL_CTX *ctx = leaf_ctx(pki, leaf ? leaf : "alice");
    if (ctx == NULL)
        return 1;
    load_share shares[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    long started = 0;
    int64_t t0 = bench_wall_ns();
    for (long t = 0; t < threads; t++) {
        shares[t] = (load_share){ctx, (int)port, count / threads + (t < count % threads), 0};
        if (pthread_create(&tids[t], NULL, load_thread, &shares[t]) != 0)
            break;
        started++;
    }
    long failures = started == threads ? 0 : 1;
    for (long t = 0; t < started; t++) {
        pthread_join(tids[t], NULL);
        failures += shares[t].failures;
    }
    int64_t elapsed = bench_wall_ns() - t0;
    SSL_CTX_free(ctx);
    if (failures != 0) {
        fprintf(stderr, "bench_load: %ld of %ld handshakes were not accepted\n", failures, count);
        return 1;
    }
    printf("handshakes=%ld elapsed_ns=%lld\n", count, (long long)elapsed);
    return 0;
}

typedef struct {
    const char *cli, *db, *leaf_pem, *account;
} live_setup;

static int cli_map(const live_setup *s, int add, int64_t *elapsed)
{
    char *add_argv[] = {(char *)s->cli,
                        "--db",
                        (char *)s->db,
                        "map",
                        "add",
                        (char *)s->leaf_pem,
                        "--account",
                        (char *)s->account,
                        "--create-account",
                        NULL};
    char *rm_argv[] = {(char *)s->cli,      "--db", (char *)s->db, "map", "rm",
                       (char *)s->leaf_pem, NULL};
    int rc = bench_run(add ? add_argv : rm_argv, 0, elapsed);
    if (rc != 0)
        fprintf(stderr, "bench_load: certstore map %s exited %d\n", add ? "add" : "rm", rc);
    return rc == 0;
}

static double ms_at(int64_t *sorted, long n, double p)
{
    return (double)bench_percentile_sorted(sorted, (size_t)n, p) / 1e6;
}

static int run_live(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *leaf = bench_opt(argc, argv, "--leaf");
    const char *label = bench_opt(argc, argv, "--label");
    long port = bench_opt_long(argc, argv, "--port", -1);
    long count = bench_opt_long(argc, argv, "--count", 100);
    live_setup s = {bench_opt(argc, argv, "--cli"), bench_opt(argc, argv, "--db"), NULL,
                    bench_opt(argc, argv, "--account")};
    if (pki == NULL || s.cli == NULL || s.db == NULL || port < 1 || port > 65535 || count < 1) {
        fputs("usage: bench_load live --port P --pki DIR --cli PATH --db FILE [--count N] "
              "[--leaf NAME] [--account NAME] [--label TEXT]\n",
              stderr);
        return 2;
    }
    leaf = leaf ? leaf : "alice-renewed";
    char leaf_pem[4096];
    snprintf(leaf_pem, sizeof(leaf_pem), "%s/%s.pem", pki, leaf);
    s.leaf_pem = leaf_pem;
    s.account = s.account ? s.account : "liveness";
    SSL_CTX *ctx = leaf_ctx(pki, leaf);
    int64_t *adds = calloc((size_t)count, sizeof(int64_t));
    int64_t *rms = calloc((size_t)count, sizeof(int64_t));
    int64_t *reject = calloc((size_t)count, sizeof(int64_t));
    long stale = 0, missed_adds = 0;
    int ok = ctx != NULL && adds != NULL && rms != NULL && reject != NULL;
    for (long i = 0; ok && i < count; i++) {
        ok = cli_map(&s, 1, &adds[i]);
        if (ok && bench_tls_request(ctx, (int)port) != 1)
            missed_adds++;
        ok = ok && cli_map(&s, 0, &rms[i]);
        int64_t t0 = bench_wall_ns();
        int r = ok ? bench_tls_request(ctx, (int)port) : -1;
        reject[i] = bench_wall_ns() - t0;
        if (r == 1)
            stale++;
        else if (r < 0)
            ok = 0;
    }
    if (ok) {
        bench_sort_i64(adds, (size_t)count);
        bench_sort_i64(rms, (size_t)count);
        bench_sort_i64(reject, (size_t)count);
        printf("| %s | %ld | %ld | %ld | %.2f / %.2f | %.1f / %.1f | %.1f / %.1f |\n",
               label ? label : "-", count, stale, missed_adds, ms_at(reject, count, 50),
               ms_at(reject, count, 100), ms_at(adds, count, 50), ms_at(adds, count, 99),
               ms_at(rms, count, 50), ms_at(rms, count, 99));
    } else {
        fprintf(stderr, "bench_load: liveness run aborted\n");
    }
    free(adds);
    free(rms);
    free(reject);
    SSL_CTX_free(ctx);
    return ok && stale == 0 && missed_adds == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "load") == 0)
        return run_load(argc, argv);
    if (argc > 1 && strcmp(argv[1], "live") == 0)
        return run_live(argc, argv);
    fputs("usage: bench_load load|live ...\n", stderr);
    return 2;
}
