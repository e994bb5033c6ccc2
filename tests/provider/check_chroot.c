/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A server that chroots after loading the provider (HAProxy's `chroot`):
 * the provider is loaded here as the server's master would, then a forked
 * child chroots into an empty directory, where the database's path names
 * nothing, and decides through the directory descriptor the provider
 * opened at load. Decisions, a `map rm` (a WAL commit), a database replaced
 * by rename and a directory replaced as a whole are each tested from inside
 * the jail; the parent makes the changes from outside, stepping in turn
 * with the child over two pipes.
 *
 * chroot(2) needs root: without it the suite says so and exits 77 (skipped).
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sqlite3.h>

#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define ALICE_ACCOUNT "alice@partner-a"
#define BOB_ACCOUNT "bob@partner-a"
#define NOBODY 65534

static tls_harness fx;
static char store_dir[400]; /* the database's directory, fx.dir/store */
static char jail[400];      /* an empty directory: the child's root */
static SSL_CTX *alice, *bob;

/* ---- stores ----------------------------------------------------------------- */

/* ca-a pinned; `leaf` mapped to `account`, in a file at `path`. */
static void store_build(const char *path, const char *leaf, const char *account)
{
    cs_db *db = th_store_begin(path, "check_chroot");
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, leaf, account, CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

/* A deploy tool's replacement: another file mapping only bob, renamed over the store. */
static void replace_file_mapping_bob(void)
{
    char fresh[700];

    snprintf(fresh, sizeof(fresh), "%s/certstore.db.new", store_dir);
    store_build(fresh, "bob", BOB_ACCOUNT);
    ck_assert_int_eq(rename(fresh, fx.db), 0);
}

/* The whole directory moved aside and a new one, mapping only bob, put in its place. */
static void replace_directory_mapping_bob(void)
{
    char aside[700];

    snprintf(aside, sizeof(aside), "%s/store.old", fx.dir);
    ck_assert_int_eq(rename(store_dir, aside), 0);
    ck_assert_int_eq(mkdir(store_dir, 0755), 0);
    store_build(fx.db, "bob", BOB_ACCOUNT);
}

/* ---- the jailed child ---------------------------------------------------------- */

typedef struct {
    int to_child[2], to_parent[2];
    pid_t pid;
} jailed;

/* In the child: tell the parent this step is reached, wait until it has acted. */
static void child_step(jailed *j)
{
    char c = 's';

    if (write(j->to_parent[1], &c, 1) != 1 || read(j->to_child[0], &c, 1) != 1)
        _exit(90);
}

/* In the child: connect with `client`; 1 if the outcome is the one expected. */
static int child_expect(SSL_CTX *client, int accepted, const char *account, const char *what)
{
    th_outcome out = th_connect_with(&fx, client, NULL, 0);

    if (out.ok != accepted || (accepted && (!out.have_account || strcmp(out.account, account))))
        fprintf(stderr, "check_chroot: in the jail, %s: %s (account %s)\n", what,
                out.ok ? "accepted" : "rejected", out.have_account ? out.account : "none");
    else
        return 1;
    return 0;
}

#define JAIL 1 /* chroot into the empty jail */
#define DROP 2 /* then become nobody */

/* Chroot into the empty jail as the server's worker does, drop to nobody, as asked. */
static void child_enter_jail(int how)
{
    struct stat st;

    if ((how & JAIL) && (chroot(jail) != 0 || chdir("/") != 0))
        _exit(91);
    if ((how & JAIL) && (stat(fx.db, &st) == 0 || errno != ENOENT))
        _exit(92); /* the test must not see the database by path */
    if ((how & DROP) && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0))
        _exit(93);
}

/*
 * Fork a child that enters the jail and runs body (its exit status: 0 when
 * every check held); the parent runs parent_steps[i] at the child's i-th step.
 */
static int run_jailed(int how, int (*body)(jailed *), void (*const parent_steps[])(void), int steps)
{
    jailed j;
    int status = 0;
    char c;

    ck_assert_int_eq(pipe(j.to_child), 0);
    ck_assert_int_eq(pipe(j.to_parent), 0);
    j.pid = fork();
    ck_assert_int_ge(j.pid, 0);
    if (j.pid == 0) {
        close(j.to_child[1]);
        close(j.to_parent[0]);
        child_enter_jail(how);
        _exit(body(&j));
    }
    close(j.to_child[0]);
    close(j.to_parent[1]);
    for (int i = 0; i < steps && read(j.to_parent[0], &c, 1) == 1; i++) {
        parent_steps[i]();
        ck_assert_int_eq(write(j.to_child[1], &c, 1), 1);
    }
    ck_assert_int_eq(waitpid(j.pid, &status, 0), j.pid);
    close(j.to_child[1]);
    close(j.to_parent[0]);
    ck_assert_msg(WIFEXITED(status), "the jailed child died");
    return WEXITSTATUS(status);
}

/* ---- fixture ---------------------------------------------------------------- */

/*
 * untidy: openssl.cnf names the database with "//" and "/./" in its path.
 * extra: more lines for the provider's section.
 */
static void setup_with(int untidy, const char *extra)
{
    th_setup(&fx);
    snprintf(store_dir, sizeof(store_dir), "%s/store", fx.dir);
    snprintf(jail, sizeof(jail), "%s/jail", fx.dir);
    ck_assert_int_lt(
        snprintf(fx.db, sizeof(fx.db), "%.400s%s/certstore.db", store_dir, untidy ? "//./" : ""),
        (int)sizeof(fx.db));
    ck_assert_int_eq(mkdir(store_dir, 0755), 0);
    ck_assert_int_eq(mkdir(jail, 0755), 0);
    store_build(fx.db, "alice", ALICE_ACCOUNT);
    /* As the server's master: load and build everything before the chroot. */
    th_load_provider_with(&fx, extra);
    th_make_server(&fx, SSL_OP_NO_TICKET, 0, 0);
    alice = th_make_client(&fx, "alice");
    bob = th_make_client(&fx, "bob");
}

static void setup(void)
{
    setup_with(0, "");
}

static void setup_untidy(void)
{
    setup_with(1, "");
}

static void setup_no_descriptor(void)
{
    setup_with(0, "db_dir_descriptor = no\n");
}

static void teardown(void)
{
    char aside[700];

    SSL_CTX_free(alice);
    SSL_CTX_free(bob);
    snprintf(aside, sizeof(aside), "%s/store.old", fx.dir);
    testpki_rmtree(aside);
    th_teardown(&fx);
}

/* ---- tests ------------------------------------------------------------------ */

static void remove_alice(void)
{
    th_unmap_leaf(&fx, "check_chroot", "alice", CS_KIND_CERT);
}

/* Mapped alice in, unmapped bob out; `map rm` (a commit to the -wal) seen at once. */
static int body_decide(jailed *j)
{
    int ok = child_expect(alice, 1, ALICE_ACCOUNT, "mapped alice") &
             child_expect(bob, 0, NULL, "unmapped bob");

    child_step(j); /* the parent removes alice's mapping */
    ok &= child_expect(alice, 0, NULL, "alice after map rm");
    return ok ? 0 : 1;
}

START_TEST(test_jailed_worker_decides_through_descriptor)
{
    void (*const steps[])(void) = {remove_alice};

    ck_assert_int_eq(run_jailed(JAIL, body_decide, steps, 1), 0);
    th_assert_log_has(&fx, "result=accept");
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    th_assert_log_lacks(&fx, "store-unavailable");
}
END_TEST

static int body_replaced(jailed *j)
{
    int ok = child_expect(alice, 1, ALICE_ACCOUNT, "alice before the replacement");

    child_step(j); /* the parent renames a file mapping only bob over the store */
    ok &= child_expect(alice, 0, NULL, "alice after the replacement");
    ok &= child_expect(bob, 1, BOB_ACCOUNT, "bob after the replacement");
    return ok ? 0 : 1;
}

START_TEST(test_jailed_worker_notices_file_replaced_by_rename)
{
    void (*const steps[])(void) = {replace_file_mapping_bob};

    ck_assert_int_eq(run_jailed(JAIL, body_replaced, steps, 1), 0);
    th_assert_log_lacks(&fx, "store-unavailable");
}
END_TEST

static int body_dir_replaced(jailed *j)
{
    int ok = child_expect(alice, 1, ALICE_ACCOUNT, "alice before the directory is replaced");

    child_step(j); /* the parent moves the directory aside and puts another in its place */
    ok &= child_expect(alice, 0, NULL, "alice after the directory is replaced");
    ok &= child_expect(bob, 0, NULL, "bob after the directory is replaced");
    return ok ? 0 : 1;
}

/* Not followable through the descriptor: fail closed, saying why. */
START_TEST(test_jailed_worker_fails_closed_when_directory_replaced)
{
    void (*const steps[])(void) = {replace_directory_mapping_bob};

    ck_assert_int_eq(run_jailed(JAIL, body_dir_replaced, steps, 1), 0);
    th_assert_log_has(&fx, "reason=store-unavailable");
    th_assert_log_has(&fx, "directory replaced or removed since load (reload the server)");
}
END_TEST

static int body_denied(jailed *j)
{
    return child_expect(alice, 0, NULL, "alice with the directory closed to the worker") ? 0 : 1;
}

/* The descriptor widens nothing: the worker's own credentials are checked. */
START_TEST(test_jailed_worker_without_permission_fails_closed)
{
    ck_assert_int_eq(chmod(store_dir, 0700), 0);
    ck_assert_int_eq(run_jailed(JAIL | DROP, body_denied, NULL, 0), 0);
    th_assert_log_has(&fx, "reason=store-unavailable");
}
END_TEST

/* In the child: a fresh WAL database at `path`, one row written and read back. */
static int child_sqlite_roundtrip(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok =
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK &&
        sqlite3_exec(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (v); INSERT INTO t VALUES (7)",
                     NULL, NULL, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT v FROM t", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 7;
    struct stat wal;
    char wal_path[64];

    /* While open, the -wal is beside it, in the jail. */
    snprintf(wal_path, sizeof(wal_path), "%s-wal", path);
    ok = ok && stat(wal_path, &wal) == 0;
    if (!ok)
        fprintf(stderr, "check_chroot: in the jail, %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

/* In the child: 1 if SQLite cannot open `path` read-only (it names nothing here). */
static int child_sqlite_absent(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);

    sqlite3_close(db);
    if (rc == SQLITE_OK)
        fprintf(stderr, "check_chroot: in the jail, %s opened: routed though not ours\n", path);
    return rc != SQLITE_OK;
}

static int body_others_untouched(jailed *j)
{
    char sibling[700];
    int ok = child_expect(alice, 1, ALICE_ACCOUNT, "alice (routing on)");

    /* Another database of the process, in the jail, by path: WAL and all. */
    ok &= child_sqlite_roundtrip("/other.db");
    /* A name beside ours, outside the jail: not reachable, not routed. */
    snprintf(sibling, sizeof(sibling), "%s2", fx.db);
    ok &= child_sqlite_absent(sibling);
    ok &= child_expect(alice, 1, ALICE_ACCOUNT, "alice after the other database");
    return ok ? 0 : 1;
}

/* Routing covers only our database's files: other SQLite use in the process is by path. */
START_TEST(test_other_sqlite_use_untouched_in_jail)
{
    char sibling[700], other[700];

    snprintf(sibling, sizeof(sibling), "%s2", fx.db);
    store_build(sibling, "bob", BOB_ACCOUNT);
    ck_assert_int_eq(run_jailed(JAIL, body_others_untouched, NULL, 0), 0);
    snprintf(other, sizeof(other), "%s/other.db", jail);
    ck_assert_int_eq(access(other, F_OK), 0);
}
END_TEST

static int body_readable(jailed *j)
{
    return child_expect(alice, 1, ALICE_ACCOUNT, "alice, all open to nobody") ? 0 : 1;
}

/*
 * Not chrooted, a directory above the database closed to the process: the
 * path does not name "nothing", so it is not routed, and the descriptor
 * does not let the process past that directory. Everything else is open to
 * nobody, which is accepted when that directory is open too.
 */
START_TEST(test_unsearchable_ancestor_not_bypassed)
{
    char sidecar[700];

    ck_assert_int_eq(chmod(fx.dir, 0755), 0);
    ck_assert_int_eq(chmod(store_dir, 0777), 0);
    ck_assert_int_eq(chmod(fx.db, 0666), 0);
    snprintf(sidecar, sizeof(sidecar), "%s-shm", fx.db);
    ck_assert(chmod(sidecar, 0666) == 0 || errno == ENOENT);
    snprintf(sidecar, sizeof(sidecar), "%s-wal", fx.db);
    ck_assert(chmod(sidecar, 0666) == 0 || errno == ENOENT);
    ck_assert_int_eq(run_jailed(DROP, body_readable, NULL, 0), 0);
    ck_assert_int_eq(chmod(fx.dir, 0700), 0);
    ck_assert_int_eq(run_jailed(DROP, body_denied, NULL, 0), 0);
    th_assert_log_has(&fx, "reason=store-unavailable");
}
END_TEST

/* Where the path resolves, it is followed as before: a new directory is read at once. */
START_TEST(test_reachable_path_followed_not_descriptor)
{
    th_outcome out = th_connect_with(&fx, alice, NULL, 0);

    ck_assert_msg(out.ok, "alice rejected before the directory is replaced");
    replace_directory_mapping_bob();
    out = th_connect_with(&fx, bob, NULL, 0);
    ck_assert_msg(out.ok, "bob rejected: the new directory at the path was not read");
    ck_assert_str_eq(out.account, BOB_ACCOUNT);
    out = th_connect_with(&fx, alice, NULL, 0);
    ck_assert_msg(!out.ok, "alice accepted from the directory moved aside");
    th_assert_log_lacks(&fx, "store-unavailable");
}
END_TEST

/* Descriptors of this process open on the database's directory; *cloexec: all close-on-exec. */
static int directory_descriptors(int *cloexec)
{
    struct stat dir_st, st;
    DIR *fds;
    struct dirent *e;
    int found = 0;

    *cloexec = 1;
    ck_assert_int_eq(stat(store_dir, &dir_st), 0);
    fds = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(fds);
    while ((e = readdir(fds)) != NULL) {
        int fd = atoi(e->d_name);

        if (e->d_name[0] == '.' || fd == dirfd(fds) || fstat(fd, &st) != 0)
            continue;
        if (st.st_dev == dir_st.st_dev && st.st_ino == dir_st.st_ino) {
            found++;
            *cloexec &= (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
        }
    }
    closedir(fds);
    return found;
}

/* One descriptor on the directory per load, close-on-exec, whatever the connections. */
START_TEST(test_one_close_on_exec_descriptor_per_load)
{
    int cloexec;

    for (int i = 0; i < 3; i++)
        ck_assert(th_connect_with(&fx, alice, NULL, 0).ok);
    ck_assert_int_eq(directory_descriptors(&cloexec), 1);
    ck_assert_msg(cloexec, "the directory descriptor is inherited across exec");
}
END_TEST

static int body_no_way_in(jailed *j)
{
    (void)j;
    return child_expect(alice, 0, NULL, "alice jailed with db_dir_descriptor = no") ? 0 : 1;
}

/* db_dir_descriptor = no: no way out of the chroot is kept, and none in: fail closed. */
START_TEST(test_no_descriptor_kept_when_turned_off)
{
    int cloexec;

    ck_assert(th_connect_with(&fx, alice, NULL, 0).ok); /* by path, before the chroot */
    ck_assert_int_eq(directory_descriptors(&cloexec), 0);
    ck_assert_int_eq(run_jailed(JAIL, body_no_way_in, NULL, 0), 0);
    th_assert_log_has(&fx, "reason=store-unavailable");
}
END_TEST

static Suite *chroot_suite(void)
{
    Suite *s = suite_create("chroot");
    TCase *jailed_case = tcase_create("jailed"), *untidy_case, *no_descriptor_case;

    tcase_add_checked_fixture(jailed_case, setup, teardown);
    tcase_set_timeout(jailed_case, 60);
    tcase_add_test(jailed_case, test_jailed_worker_decides_through_descriptor);
    tcase_add_test(jailed_case, test_jailed_worker_notices_file_replaced_by_rename);
    tcase_add_test(jailed_case, test_jailed_worker_fails_closed_when_directory_replaced);
    tcase_add_test(jailed_case, test_jailed_worker_without_permission_fails_closed);
    tcase_add_test(jailed_case, test_reachable_path_followed_not_descriptor);
    tcase_add_test(jailed_case, test_unsearchable_ancestor_not_bypassed);
    tcase_add_test(jailed_case, test_other_sqlite_use_untouched_in_jail);
    tcase_add_test(jailed_case, test_one_close_on_exec_descriptor_per_load);
    suite_add_tcase(s, jailed_case);
    /* The same decisions with the path written untidily in openssl.cnf. */
    untidy_case = tcase_create("untidy_path");
    tcase_add_checked_fixture(untidy_case, setup_untidy, teardown);
    tcase_set_timeout(untidy_case, 60);
    tcase_add_test(untidy_case, test_jailed_worker_decides_through_descriptor);
    suite_add_tcase(s, untidy_case);
    /* db_dir_descriptor = no: a chroot that must contain a compromised worker. */
    no_descriptor_case = tcase_create("no_descriptor");
    tcase_add_checked_fixture(no_descriptor_case, setup_no_descriptor, teardown);
    tcase_set_timeout(no_descriptor_case, 60);
    tcase_add_test(no_descriptor_case, test_no_descriptor_kept_when_turned_off);
    suite_add_tcase(s, no_descriptor_case);
    return s;
}

int main(void)
{
    SRunner *runner;
    int failed;

    if (geteuid() != 0) {
        fprintf(stderr, "check_chroot: skipped: chroot(2) needs root\n");
        return 77;
    }
    runner = srunner_create(chroot_suite());
    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
