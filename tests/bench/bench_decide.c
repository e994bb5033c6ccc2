/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decision latency: cs_decide() alone on chains OpenSSL has verified, one
 * clock_gettime(CLOCK_MONOTONIC) pair around each call.
 *
 *   bench_decide --db FILE --pki DIR --leaves FILE --mode warm|cold
 *                [--samples 200000] [--label TEXT]
 *
 * The leaves are distinct real certificates, each mapped in the store, so
 * successive decisions look up distinct keys in different B-tree pages.
 * warm: one untimed pass over every leaf, then `samples` timed decisions
 * cycling through them. cold: meant for a fresh process right after the
 * page cache was dropped; each leaf is decided exactly once, in a shuffled
 * order, so every sample pays for its own page reads.
 * Every decision must be an acceptance: anything else fails the run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "bench_util.h"
#include "cs_store.h"

typedef struct {
    STACK_OF(X509) * *chains;
    int count;
} verified_chains;

static STACK_OF(X509) * verify_leaf(X509_STORE *trust, X509 *leaf, STACK_OF(X509) * untrusted)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = NULL;
    if (ctx != NULL && X509_STORE_CTX_init(ctx, trust, leaf, untrusted) == 1 &&
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 && X509_verify_cert(ctx) == 1)
        chain = X509_STORE_CTX_get1_chain(ctx);
    X509_STORE_CTX_free(ctx);
    return chain;
}

static void free_chains(verified_chains *v)
{
    for (int i = 0; i < v->count; i++)
        sk_X509_pop_free(v->chains[i], X509_free);
    free(v->chains);
}

static int load_chains(verified_chains *v, const char *pki, const char *leaves_pem)
{
    char root_path[4096], ca_path[4096];
    snprintf(root_path, sizeof(root_path), "%s/root.pem", pki);
    snprintf(ca_path, sizeof(ca_path), "%s/ca-a.pem", pki);
    STACK_OF(X509) *roots = bench_load_certs(root_path);
    STACK_OF(X509) *cas = bench_load_certs(ca_path);
    STACK_OF(X509) *leaves = bench_load_certs(leaves_pem);
    X509_STORE *trust = X509_STORE_new();
    int ok = roots != NULL && cas != NULL && leaves != NULL && trust != NULL &&
             X509_STORE_add_cert(trust, sk_X509_value(roots, 0)) == 1;
    v->count = 0;
    v->chains = ok ? calloc((size_t)sk_X509_num(leaves), sizeof(*v->chains)) : NULL;
    ok = ok && v->chains != NULL;
    for (int i = 0; ok && i < sk_X509_num(leaves); i++) {
        v->chains[i] = verify_leaf(trust, sk_X509_value(leaves, i), cas);
        if (v->chains[i] == NULL) {
            fprintf(stderr, "bench_decide: leaf %d does not verify\n", i);
            ok = 0;
        } else {
            v->count++;
        }
    }
    X509_STORE_free(trust);
    sk_X509_pop_free(roots, X509_free);
    sk_X509_pop_free(cas, X509_free);
    sk_X509_pop_free(leaves, X509_free);
    return ok;
}

/* A fixed shuffle, the same in every run. */
static void shuffle(int *order, int n)
{
    uint64_t state = 88172645463325252ULL;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int j = (int)(state % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Time one decision; -1 if it was not an acceptance. */
static int64_t timed_decision(cs_db *db, STACK_OF(X509) * chain, int64_t now)
{
    cs_decision decision;
    int64_t t0 = bench_wall_ns();
    int accepted = cs_decide(db, chain, now, &decision);
    int64_t elapsed = bench_wall_ns() - t0;
    if (!accepted) {
        fprintf(stderr, "bench_decide: rejected (%s) %s\n", cs_reason_token(decision.reason),
                decision.detail);
        return -1;
    }
    return elapsed;
}

static int measure(cs_db *db, const verified_chains *v, int cold, long samples, int64_t *out,
                   long *taken)
{
    int *order = malloc((size_t)v->count * sizeof(*order));
    if (order == NULL)
        return 0;
    shuffle(order, v->count);
    int64_t now = (int64_t)time(NULL);
    int ok = 1;
    if (!cold) {
        for (int i = 0; ok && i < v->count; i++)
            ok = timed_decision(db, v->chains[order[i]], now) >= 0;
    }
    long n = cold ? v->count : samples;
    for (long i = 0; ok && i < n; i++) {
        out[i] = timed_decision(db, v->chains[order[i % v->count]], now);
        ok = out[i] >= 0;
    }
    *taken = n;
    free(order);
    return ok;
}

int main(int argc, char **argv)
{
    const char *db_path = bench_opt(argc, argv, "--db");
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *leaves = bench_opt(argc, argv, "--leaves");
    const char *mode = bench_opt(argc, argv, "--mode");
    const char *label = bench_opt(argc, argv, "--label");
    long samples = bench_opt_long(argc, argv, "--samples", 200000);
    if (db_path == NULL || pki == NULL || leaves == NULL || mode == NULL || samples < 1 ||
        (strcmp(mode, "warm") != 0 && strcmp(mode, "cold") != 0)) {
        fputs("usage: bench_decide --db FILE --pki DIR --leaves FILE --mode warm|cold "
              "[--samples N] [--label TEXT]\n",
              stderr);
        return 2;
    }
    int cold = strcmp(mode, "cold") == 0;
    verified_chains v = {0};
    cs_db *db = NULL;
    int64_t open_ns = bench_wall_ns();
    cs_status st = cs_db_open(&db, db_path, CS_OPEN_READONLY);
    open_ns = bench_wall_ns() - open_ns;
    int ok = st == CS_OK;
    if (!ok)
        fprintf(stderr, "bench_decide: %s: %s\n", db_path, db ? cs_db_errmsg(db) : "no memory");
    ok = ok && load_chains(&v, pki, leaves);
    long cap = cold ? v.count : samples;
    int64_t *lat = ok ? malloc((size_t)(cap > 0 ? cap : 1) * sizeof(*lat)) : NULL;
    long taken = 0;
    ok = ok && lat != NULL && measure(db, &v, cold, samples, lat, &taken) && taken > 0;
    if (ok) {
        int64_t first = lat[0];
        bench_sort_i64(lat, (size_t)taken);
        printf("| %s | %s | %.1f | %.1f | %.1f | %ld | %.0f / %.0f |\n", label ? label : "-", mode,
               (double)bench_percentile_sorted(lat, (size_t)taken, 50) / 1e3,
               (double)bench_percentile_sorted(lat, (size_t)taken, 99) / 1e3,
               (double)lat[taken - 1] / 1e3, taken, (double)open_ns / 1e3, (double)first / 1e3);
    }
    free(lat);
    free_chains(&v);
    cs_db_close(db);
    return ok ? 0 : 1;
}
