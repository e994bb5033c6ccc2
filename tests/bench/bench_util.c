/* SPDX-License-Identifier: Apache-2.0 */
#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_wall_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t bench_thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort_i64(int64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
}

int64_t bench_percentile_sorted(const int64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return -1;
    /* Nearest rank: the smallest sample with at least p% at or below it. */
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

double bench_median_double(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

long bench_peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    }
    fclose(f);
    return kib;
}

const char *bench_opt(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return NULL;
}

long bench_opt_long(int argc, char **argv, const char *name, long def)
{
    const char *text = bench_opt(argc, argv, name);
    if (text == NULL)
        return def;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0)
        return -1;
    return v;
}

int bench_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return 1;
    }
    return 0;
}

static void silence_child(void)
{
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
}

int bench_run(char *const argv[], int keep_output, int64_t *elapsed_ns)
{
    int64_t start = bench_wall_ns();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!keep_output)
            silence_child();
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (elapsed_ns != NULL)
        *elapsed_ns = bench_wall_ns() - start;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

STACK_OF(X509) * bench_load_certs(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509 *cert = NULL;
    while (certs != NULL && (cert = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(certs, cert)) {
            X509_free(cert);
            break;
        }
    }
    fclose(f);
    ERR_clear_error(); /* the end of file shows up as a PEM "no start line" */
    if (certs != NULL && sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        certs = NULL;
    }
    return certs;
}

int bench_ssl_fail(const char *what)
{
    fprintf(stderr, "bench: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    return 0;
}

SSL_CTX *bench_client_ctx(const char *chain_pem, const char *key_pem, const char *ca_pem)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, chain_pem) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_pem, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca_pem, NULL) != 1) {
        bench_ssl_fail("client context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Every connection is a full handshake: nothing to resume from. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
}

static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Bounded: a wedged server fails the run instead of hanging it. */
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* After the handshake: 1 if the server answers, 0 if it refuses us. */
static int read_answer(SSL *ssl)
{
    static const char request[] = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (SSL_write(ssl, request, (int)sizeof(request) - 1) <= 0)
        return 0;
    char buf[512];
    int got = SSL_read(ssl, buf, (int)sizeof(buf) - 1);
    if (got <= 0)
        return 0;
    buf[got] = '\0';
    return strncmp(buf, "HTTP/1.", 7) == 0 ? 1 : 0;
}

int bench_tls_request(SSL_CTX *ctx, int port)
{
    return bench_tls_request_as(ctx, port, NULL, NULL);
}

int bench_tls_request_as(SSL_CTX *ctx, int port, X509 *leaf, EVP_PKEY *key)
{
    int fd = connect_loopback(port);
    if (fd < 0)
        return -1;
    SSL *ssl = SSL_new(ctx);
    int result = -1;
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 &&
        SSL_set_tlsext_host_name(ssl, "localhost") == 1 &&
        (leaf == NULL ||
         (SSL_use_certificate(ssl, leaf) == 1 && SSL_use_PrivateKey(ssl, key) == 1))) {
        if (SSL_connect(ssl) == 1)
            result = read_answer(ssl);
        else if (SSL_get_verify_result(ssl) != X509_V_OK)
            result = -1; /* we distrust the server: our problem, not a refusal */
        else
            result = 0; /* refused during the handshake */
        if (result == 1)
            SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return result;
}

void bench_pool_free(bench_pool *pool)
{
    for (long i = 0; i < pool->size; i++) {
        X509_free(pool->leaves[i]);
        EVP_PKEY_free(pool->keys[i]);
    }
    free(pool->leaves);
    free(pool->keys);
    pool->leaves = NULL;
    pool->keys = NULL;
    pool->size = 0;
}

int bench_pool_load(bench_pool *pool, const char *leaves_pem, const char *keys_pem)
{
    STACK_OF(X509) *certs = bench_load_certs(leaves_pem);
    FILE *f = fopen(keys_pem, "r");
    long n = certs != NULL ? sk_X509_num(certs) : 0;
    int ok = n > 0 && f != NULL;

    pool->size = 0;
    pool->leaves = ok ? calloc((size_t)n, sizeof(X509 *)) : NULL;
    pool->keys = ok ? calloc((size_t)n, sizeof(EVP_PKEY *)) : NULL;
    ok = ok && pool->leaves != NULL && pool->keys != NULL;
    for (long i = 0; ok && i < n; i++) {
        EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        X509 *leaf = sk_X509_value(certs, (int)i);

        ok = key != NULL && X509_check_private_key(leaf, key) == 1 && X509_up_ref(leaf) == 1;
        if (!ok) {
            EVP_PKEY_free(key);
            fprintf(stderr, "bench: key %ld of %s does not match leaf %ld\n", i, keys_pem, i);
            break;
        }
        pool->leaves[i] = leaf;
        pool->keys[i] = key;
        pool->size = i + 1;
    }
    if (f != NULL)
        fclose(f);
    sk_X509_pop_free(certs, X509_free);
    return ok;
}
