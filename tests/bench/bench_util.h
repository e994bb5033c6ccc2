/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers shared by the benchmark programs: clocks, sample
 * statistics, peak memory, child processes and a blocking TLS client.
 * Benchmarks fail loudly: any helper that cannot do its job returns an
 * error the caller turns into a non-zero exit, never a made-up number.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* CLOCK_MONOTONIC and CLOCK_THREAD_CPUTIME_ID in nanoseconds. */
int64_t bench_wall_ns(void);
int64_t bench_thread_cpu_ns(void);

/* Sorts in place; percentile p in [0,100] by nearest rank. */
void bench_sort_i64(int64_t *v, size_t n);
int64_t bench_percentile_sorted(const int64_t *sorted, size_t n, double p);
double bench_median_double(double *v, size_t n);

/* Peak resident set (VmHWM) of this process in KiB; -1 if unreadable. */
long bench_peak_rss_kib(void);

/* "--name value" lookup over argv; NULL when absent. */
const char *bench_opt(int argc, char **argv, const char *name);
/* Same, parsed as a positive integer; def when absent; -1 when malformed. */
long bench_opt_long(int argc, char **argv, const char *name, long def);
int bench_flag(int argc, char **argv, const char *name);

/*
 * Run argv[0] (a path) with argv, stdout/stderr to /dev/null unless
 * keep_output; wait for it. Returns its exit status, or -1 if it did not
 * exit normally. *elapsed_ns (may be NULL) gets the wall time from spawn to
 * reap, which is what an operator waits for.
 */
int bench_run(char *const argv[], int keep_output, int64_t *elapsed_ns);

/* Load every certificate of a PEM file; NULL if none or unreadable. */
STACK_OF(X509) * bench_load_certs(const char *path);

/* Client certificates with their keys (bench_gen leaves --keys): the first-seen clients. */
typedef struct {
    X509 **leaves;
    EVP_PKEY **keys;
    long size;
} bench_pool;

/* Every certificate of leaves_pem with the key at the same place in keys_pem; 0 on a mismatch. */
int bench_pool_load(bench_pool *pool, const char *leaves_pem, const char *keys_pem);
void bench_pool_free(bench_pool *pool);

/* Print OpenSSL's error queue prefixed by what failed; returns 0. */
int bench_ssl_fail(const char *what);

/*
 * One full TLS 1.3 handshake over TCP to 127.0.0.1:port followed by one
 * HTTP/1.0 request, so a server-side rejection of the client certificate
 * (which TLS 1.3 only reports after the client's handshake has finished)
 * is seen. Returns 1 when the server answered, 0 when the server refused
 * us (alert or close before any answer), -1 on a local or network error.
 */
int bench_tls_request(SSL_CTX *ctx, int port);
/* The same, presenting leaf (issued by the context's chain CA) and key instead. */
int bench_tls_request_as(SSL_CTX *ctx, int port, X509 *leaf, EVP_PKEY *key);

/* A client context presenting chain_pem/key_pem and trusting ca_pem. */
SSL_CTX *bench_client_ctx(const char *chain_pem, const char *key_pem, const char *ca_pem);

#endif /* BENCH_UTIL_H */
