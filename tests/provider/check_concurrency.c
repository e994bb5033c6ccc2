/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provider under concurrency: eight server threads doing real
 * handshakes (memory BIO pairs) while the certstore CLI, run as a separate
 * process, adds and removes a mapping over and over; and a server that
 * forks workers after loading the provider and handshaking once, as nginx
 * and Apache do.
 *
 * The race that matters: a handshake that starts after `map rm` has
 * returned must never be accepted. The mutator publishes a sequence number
 * (odd: an add may be under way or the mapping exists; even: the last
 * removal has returned and no add has started); a handshake that saw the
 * same even number before and after it ran and was accepted is a
 * violation.
 *
 * Each test runs in its own process (Check's fork mode): the hook keeps
 * the configuration of the first activation.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "testpki.h"
#include "tls_harness.h"

extern char **environ;

#define SERVER_THREADS 8
#define DEFAULT_CYCLES 500 /* 1,000 CLI mutations: 500 adds, 500 removals */
#define FORK_WORKERS 3
#define HANDSHAKE_PAUSE_US 5000

static tls_harness fx; /* fx.client: alice */
static SSL_CTX *bob_client;
static char cli_err[512]; /* the CLI's stderr, appended */

/*
 * The temp dir belongs to the runner's process (unchecked fixture): Check
 * ends a failing test's process at once, and the dir must still go.
 */
static char *tcase_dir;

/* ---- store, CLI and provider set-up ------------------------------------------ */

static void pem_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/pki/%s.pem", tcase_dir, name);
}

/* The first lines the CLI wrote to stderr, for failure messages. */
static const char *cli_errors(void)
{
    static char text[1024];
    FILE *f = fopen(cli_err, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = '\0';
    return text;
}

/*
 * Run the certstore CLI on the test database and wait for it; 1 if it
 * exited 0. posix_spawn, not fork: the caller may have threads.
 */
static int run_cli(const char *const *args)
{
    const char *bin = getenv("CERTSTORE_BIN");
    char *argv[16];
    posix_spawn_file_actions_t actions;
    pid_t pid;
    int status = 0, argc = 0, rc;

    if (bin == NULL)
        return 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = (char *)"--db";
    argv[argc++] = fx.db;
    while (*args != NULL && argc < 15)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, cli_err,
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    rc = posix_spawn(&pid, bin, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int cli_map(const char *verb, const char *leaf, const char *account)
{
    char pem[600];
    const char *add[] = {"map", "add", pem, "--account", account, NULL};
    const char *rm[] = {"map", "rm", pem, NULL};

    pem_path(pem, sizeof(pem), leaf);
    return run_cli(strcmp(verb, "add") == 0 ? add : rm);
}

/* With the CLI: pin ca-a, map alice to "alice"; bob's account exists, bob is unmapped. */
static void store_standard(void)
{
    char ca[600], alice[600];
    const char *init[] = {"init", NULL};
    const char *pin[] = {"pin", "add", ca, NULL};
    const char *map[] = {"map", "add", alice, "--account", "alice", "--create-account", NULL};
    const char *account[] = {"account", "add", "bob", NULL};

    pem_path(ca, sizeof(ca), "ca-a");
    pem_path(alice, sizeof(alice), "alice");
    ck_assert_msg(run_cli(init) && run_cli(pin) && run_cli(map) && run_cli(account),
                  "store set-up failed: %s", cli_errors());
}

/* Full handshakes only: no session cache, no tickets, on either side. */
static void make_contexts(void)
{
    th_make_server(&fx, SSL_OP_NO_TICKET, 0, 0);
    SSL_CTX_set_session_cache_mode(fx.server, SSL_SESS_CACHE_OFF);
    fx.client = th_make_client(&fx, "alice");
    SSL_CTX_set_session_cache_mode(fx.client, SSL_SESS_CACHE_OFF);
    bob_client = th_make_client(&fx, "bob");
    SSL_CTX_set_session_cache_mode(bob_client, SSL_SESS_CACHE_OFF);
}

/* ---- one handshake -------------------------------------------------------------- */

typedef enum { HS_ACCEPTED, HS_REJECTED, HS_BROKEN } hs_result;

/*
 * Accepted: both ends done and the account handed on is `account`.
 * Rejected: the server refused the chain for a policy reason. Anything
 * else (a set-up failure, a rejection for another reason) is broken.
 */
static hs_result handshake(SSL_CTX *client_ctx, const char *account)
{
    th_link *link = th_link_open(&fx, client_ctx, NULL);
    SSL *server = th_link_server(link);
    hs_result result = HS_BROKEN;
    const char *got;

    if (th_link_handshake(link)) {
        got = certstore_ssl_account_ex(server, fx.libctx);
        if (got != NULL && strcmp(got, account) == 0)
            result = HS_ACCEPTED;
    } else if (SSL_get_verify_result(server) == X509_V_ERR_APPLICATION_VERIFICATION) {
        result = HS_REJECTED;
    }
    th_link_free(link);
    return result;
}

/* ---- the log ---------------------------------------------------------------------- */

/* Decisions (one a line) with `needle`; -1 with no log at all. */
static long log_count(const char *needle)
{
    if (access(fx.log, F_OK) != 0)
        return -1;
    return th_log_count(&fx, needle);
}

/* ---- fixture ------------------------------------------------------------------------ */

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
    char pki_dir[600];

    th_setup_in(&fx, tcase_dir);
    bob_client = NULL;
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", tcase_dir);
    ck_assert_int_eq(mkdir(pki_dir, 0700), 0);
    ck_assert_int_eq(testpki_write(fx.pki, pki_dir), 1);
    snprintf(cli_err, sizeof(cli_err), "%s/cli.err", tcase_dir);
    ck_assert_msg(getenv("CERTSTORE_BIN") != NULL, "CERTSTORE_BIN not set");
}

static void teardown(void)
{
    SSL_CTX_free(bob_client);
    th_teardown(&fx);
}

/* ---- eight server threads against a live mutator ---------------------------------- */

typedef struct {
    long alice_accepted, alice_other;
    long bob_accepted, bob_rejected, bob_broken;
    long violations;
} tally;

static long mutator_seq; /* odd: bob may be mapped; even: removal returned */
static int mutator_done;
static long mutator_failures;
static double mutator_seconds;

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *mutator_main(void *arg)
{
    long cycles = *(const long *)arg, i;
    double start = now_seconds();

    for (i = 0; i < cycles; i++) {
        __atomic_store_n(&mutator_seq, 2 * i + 1, __ATOMIC_SEQ_CST);
        if (!cli_map("add", "bob", "bob"))
            mutator_failures++;
        if (!cli_map("rm", "bob", NULL))
            mutator_failures++;
        __atomic_store_n(&mutator_seq, 2 * i + 2, __ATOMIC_SEQ_CST);
    }
    mutator_seconds = now_seconds() - start;
    __atomic_store_n(&mutator_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void bob_handshake(tally *t)
{
    long before = __atomic_load_n(&mutator_seq, __ATOMIC_SEQ_CST);
    hs_result r = handshake(bob_client, "bob");
    long after = __atomic_load_n(&mutator_seq, __ATOMIC_SEQ_CST);

    if (r == HS_ACCEPTED) {
        t->bob_accepted++;
        /* Removed before it started, and no add began while it ran. */
        if (before % 2 == 0 && after == before)
            t->violations++;
    } else if (r == HS_REJECTED) {
        t->bob_rejected++;
    } else {
        t->bob_broken++;
    }
}

static void *server_thread_main(void *arg)
{
    tally *t = arg;
    long n;

    for (n = 0; !__atomic_load_n(&mutator_done, __ATOMIC_SEQ_CST); n++) {
        if (n % 2 == 0) {
            if (handshake(fx.client, "alice") == HS_ACCEPTED)
                t->alice_accepted++;
            else
                t->alice_other++;
        } else {
            bob_handshake(t);
        }
        /* Leave the mutator some CPU: eight busy threads on two cores starve it. */
        usleep(HANDSHAKE_PAUSE_US);
    }
    return NULL;
}

static long cycles_wanted(void)
{
    const char *env = getenv("CERTSTORE_CONCURRENCY_CYCLES");
    long n = env != NULL ? strtol(env, NULL, 10) : DEFAULT_CYCLES;

    return n > 0 ? n : DEFAULT_CYCLES;
}

START_TEST(test_threads_never_accept_a_removed_mapping)
{
    pthread_t threads[SERVER_THREADS], mutator;
    tally tallies[SERVER_THREADS], sum;
    long cycles = cycles_wanted();
    int i;

    store_standard();
    th_load_provider_with(&fx, "");
    make_contexts();
    memset(tallies, 0, sizeof(tallies));
    memset(&sum, 0, sizeof(sum));
    for (i = 0; i < SERVER_THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, server_thread_main, &tallies[i]), 0);
    ck_assert_int_eq(pthread_create(&mutator, NULL, mutator_main, &cycles), 0);
    ck_assert_int_eq(pthread_join(mutator, NULL), 0);
    for (i = 0; i < SERVER_THREADS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        sum.alice_accepted += tallies[i].alice_accepted;
        sum.alice_other += tallies[i].alice_other;
        sum.bob_accepted += tallies[i].bob_accepted;
        sum.bob_rejected += tallies[i].bob_rejected;
        sum.bob_broken += tallies[i].bob_broken;
        sum.violations += tallies[i].violations;
    }
    fprintf(stderr,
            "concurrency: %ld cycles in %.1f s (%.1f ms per CLI run); alice %ld accepted, "
            "%ld not; bob %ld accepted, %ld rejected, %ld broken; %ld violations\n",
            cycles, mutator_seconds, mutator_seconds * 500.0 / (double)cycles, sum.alice_accepted,
            sum.alice_other, sum.bob_accepted, sum.bob_rejected, sum.bob_broken, sum.violations);
    ck_assert_msg(mutator_failures == 0, "%ld CLI runs failed: %s", mutator_failures, cli_errors());
    ck_assert_msg(sum.violations == 0, "%ld handshakes accepted after the removal returned",
                  sum.violations);
    ck_assert_msg(sum.alice_other == 0, "alice not accepted %ld times", sum.alice_other);
    ck_assert_int_eq(sum.bob_broken, 0);
    ck_assert_msg(sum.alice_accepted > 0 && sum.bob_accepted > 0 && sum.bob_rejected > 0,
                  "the race was not exercised");
    ck_assert_int_eq(log_count("reason=store-unavailable"), 0);
    ck_assert_int_eq(log_count("result=accept reason=none account=\"bob\""), sum.bob_accepted);
    /* Rejections of one client are rate-limited per thread; never more lines than them. */
    ck_assert_int_le(log_count("result=reject reason=no-mapping"), sum.bob_rejected);
}
END_TEST

/* ---- workers forked after the provider was loaded and used ------------------------------ */

/* A worker's checks; returns the number of failures (its exit status). */
static int worker_phase(int phase)
{
    int failures = 0;
    hs_result alice = handshake(fx.client, "alice");
    hs_result bob = handshake(bob_client, "bob");

    if (phase == 1) {
        failures += alice != HS_ACCEPTED;
        failures += bob != HS_REJECTED;
    } else {
        failures += alice != HS_REJECTED;
        failures += bob != HS_ACCEPTED;
    }
    if (failures != 0)
        fprintf(stderr, "worker %d phase %d: alice %d bob %d\n", (int)getpid(), phase, (int)alice,
                (int)bob);
    return failures;
}

/* Debug trace to a file of its own; phase 1, report, wait for the change, phase 2. */
static void worker_main(int index, int ready_fd, int go_fd)
{
    char path[600], byte = 'r';
    int fd, failures;

    alarm(60); /* never outlive a stuck parent */
    snprintf(path, sizeof(path), "%s/worker-%d.err", tcase_dir, index);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(100);
    close(fd);
    failures = worker_phase(1);
    if (write(ready_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1)
        _exit(101);
    failures += worker_phase(2);
    _exit(failures);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int found = 0;

    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Wait for every worker, at most `seconds`; kill the rest. Returns failures. */
static int reap_workers(pid_t *pids, int n, int seconds)
{
    int failures = 0, left = n, i, status, tick;

    for (tick = 0; tick < seconds * 10 && left > 0; tick++) {
        for (i = 0; i < n; i++) {
            if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fprintf(stderr, "worker %d: status %d\n", (int)pids[i], status);
                    failures++;
                }
                pids[i] = 0;
                left--;
            }
        }
        usleep(100000);
    }
    for (i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &status, 0);
            failures++;
        }
    }
    return failures;
}

START_TEST(test_forked_workers_decide_alone_and_see_live_changes)
{
    int ready[2], go[2], i, failures;
    pid_t pids[FORK_WORKERS];
    char byte, path[600];

    /* The trace is switched on when the module loads. */
    ck_assert_int_eq(setenv("CERTSTORE_DEBUG", "1", 1), 0);
    store_standard();
    th_load_provider_with(&fx, "");
    make_contexts();
    /* The parent opens its handle, as a server's master may before forking. */
    ck_assert_int_eq(handshake(fx.client, "alice"), HS_ACCEPTED);
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    for (i = 0; i < FORK_WORKERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            /* Only the parent may write go or read ready: a dead parent means EOF. */
            close(go[1]);
            close(ready[0]);
            worker_main(i, ready[1], go[0]);
        }
    }
    for (i = 0; i < FORK_WORKERS; i++)
        ck_assert_msg(read(ready[0], &byte, 1) == 1, "a worker did not finish phase 1");
    /* The live change, by the CLI, while every worker runs. */
    ck_assert_msg(cli_map("rm", "alice", NULL), "map rm failed: %s", cli_errors());
    ck_assert_msg(cli_map("add", "bob", "bob"), "map add failed: %s", cli_errors());
    for (i = 0; i < FORK_WORKERS; i++)
        ck_assert_int_eq(write(go[1], "g", 1), 1);
    failures = reap_workers(pids, FORK_WORKERS, 60);
    ck_assert_msg(failures == 0, "%d worker(s) decided wrongly or died", failures);
    /* The parent, on its own handle, sees the change too. */
    ck_assert_int_eq(handshake(fx.client, "alice"), HS_REJECTED);
    ck_assert_int_eq(handshake(bob_client, "bob"), HS_ACCEPTED);
    for (i = 0; i < FORK_WORKERS; i++) {
        snprintf(path, sizeof(path), "%s/worker-%d.err", tcase_dir, i);
        ck_assert_msg(file_contains(path, "abandoning the inherited handle"),
                      "worker %d did not abandon the parent's SQLite handle", i);
    }
    ck_assert_int_eq(log_count("result=reject reason=no-mapping"), 2 * FORK_WORKERS + 1);
}
END_TEST

static Suite *concurrency_suite(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("threads");

    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 540);
    tcase_add_test(tc, test_threads_never_accept_a_removed_mapping);
    suite_add_tcase(s, tc);

    tc = tcase_create("fork");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_forked_workers_decide_alone_and_see_live_changes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(concurrency_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
