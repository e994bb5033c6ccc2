/* SPDX-License-Identifier: Apache-2.0 */
/*
 * First-seen clients against a real server on 127.0.0.1: every full
 * handshake presents the next certificate of a pool (bench_gen leaves
 * --keys), so a server never sees the same client twice in a row and
 * certstore decides every one in full. `openssl s_time` cannot do this: it
 * presents one certificate for the whole run.
 *
 *   bench_pool --port P --pki DIR --leaves FILE --keys FILE [--seconds 8]
 *              [--threads 1]
 *
 * Each handshake is TLS 1.3 with a fresh connection, no session reuse, and
 * is followed by one HTTP/1.0 request so that a server-side rejection
 * (which TLS 1.3 reports after the client's handshake) is seen; every one
 * must be accepted. The client threads share the pool, each starting at
 * its own offset. Prints "handshakes=N elapsed_ns=T pool=M".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAX_THREADS 16

typedef struct {
    SSL_CTX *ctx;
    const bench_pool *pool;
    int port;
    long next; /* index into the pool */
    int64_t deadline_ns;
    long handshakes;
    long failures;
} pool_share;

static void *pool_thread(void *arg)
{
    pool_share *s = arg;

    while (bench_wall_ns() < s->deadline_ns) {
        long i = s->next++ % s->pool->size;

        if (bench_tls_request_as(s->ctx, s->port, s->pool->leaves[i], s->pool->keys[i]) == 1)
            s->handshakes++;
        else
            s->failures++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *leaves = bench_opt(argc, argv, "--leaves");
    const char *keys = bench_opt(argc, argv, "--keys");
    long port = bench_opt_long(argc, argv, "--port", -1);
    long seconds = bench_opt_long(argc, argv, "--seconds", 8);
    long threads = bench_opt_long(argc, argv, "--threads", 1);
    char chain[4096], key[4096], roots[4096];
    bench_pool pool = {0};
    pool_share shares[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    long started = 0, handshakes = 0, failures = 0;
    SSL_CTX *ctx;
    int64_t t0, elapsed;

    if (pki == NULL || leaves == NULL || keys == NULL || port < 1 || port > 65535 || seconds < 1 ||
        threads < 1 || threads > MAX_THREADS) {
        fputs("usage: bench_pool --port P --pki DIR --leaves FILE --keys FILE [--seconds N] "
              "[--threads 1..16]\n",
              stderr);
        return 2;
    }
    if (!bench_pool_load(&pool, leaves, keys)) {
        bench_pool_free(&pool);
        return bench_ssl_fail("loading the client pool"), 1;
    }
    /* alice's chain brings Partner CA A, the issuer of every pool leaf. */
    snprintf(chain, sizeof(chain), "%s/alice-chain.pem", pki);
    snprintf(key, sizeof(key), "%s/alice.key", pki);
    snprintf(roots, sizeof(roots), "%s/root.pem", pki);
    ctx = bench_client_ctx(chain, key, roots);
    if (ctx == NULL) {
        bench_pool_free(&pool);
        return 1;
    }
    t0 = bench_wall_ns();
    for (long t = 0; t < threads; t++) {
        shares[t] = (pool_share){
            ctx, &pool, (int)port, t * (pool.size / threads), t0 + seconds * 1000000000LL, 0, 0};
        if (pthread_create(&tids[t], NULL, pool_thread, &shares[t]) != 0)
            break;
        started++;
    }
    failures = started == threads ? 0 : 1;
    for (long t = 0; t < started; t++) {
        pthread_join(tids[t], NULL);
        handshakes += shares[t].handshakes;
        failures += shares[t].failures;
    }
    elapsed = bench_wall_ns() - t0;
    SSL_CTX_free(ctx);
    bench_pool_free(&pool);
    if (failures != 0 || handshakes == 0) {
        fprintf(stderr, "bench_pool: %ld handshakes were not accepted (%ld were)\n", failures,
                handshakes);
        return 1;
    }
    printf("handshakes=%ld elapsed_ns=%lld pool=%ld\n", handshakes, (long long)elapsed, pool.size);
    return 0;
}
