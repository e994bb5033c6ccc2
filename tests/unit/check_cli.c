/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certstore CLI, driven as a user drives it: the binary from
 * $CERTSTORE_BIN run with fork/exec on real certificate files and real
 * SQLite databases in temp dirs, checking stdout, stderr and exit status,
 * and that a failing command leaves the database exactly as it was.
 *
 * In fork mode a failing test exits without its checked teardown, so the PKI
 * and the base directory belong to the parent (unchecked fixture), which
 * always removes them; each test works in its own subdirectory.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cs_store.h"
#include "testpki.h"

#define RUN_TIMEOUT_MS 60000
#define NOBODY_UID 65534
#define NOGROUP_GID 65534

static const char *cli_bin;
static testpki *pki;
static char *base_dir; /* PKI files and every test's directory */
static char pki_dir[512];
static char test_dir[512];
static char db_path[600];
static int test_counter;

typedef struct {
    int status; /* exit status, or -1 when killed or not run */
    char *out;
    char *err;
} run_result;
static run_result last;

/* ---- small helpers ------------------------------------------------------- */

/* A path under the PKI dir; the returned buffer is one of a few rotating ones. */
static const char *pki_file(const char *name)
{
    static char bufs[8][600];
    static int next;
    char *buf = bufs[next++ % 8];
    snprintf(buf, sizeof(bufs[0]), "%s/%s", pki_dir, name);
    return buf;
}

static const char *test_file(const char *name)
{
    static char bufs[8][700];
    static int next;
    char *buf = bufs[next++ % 8];
    snprintf(buf, sizeof(bufs[0]), "%s/%s", test_dir, name);
    return buf;
}

static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out != NULL)
        *len_out = len;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "create %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *path, const char *text)
{
    write_file(path, text, strlen(text));
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static void free_last(void)
{
    free(last.out);
    free(last.err);
    memset(&last, 0, sizeof(last));
}

/* ---- running the CLI ----------------------------------------------------- */

typedef struct {
    const char *stdin_path; /* NULL: /dev/null */
    uid_t uid;              /* 0: stay root */
} run_opts;

static void exec_child(const run_opts *o, char **argv, const char *out, const char *err)
{
    int in = open(o->stdin_path != NULL ? o->stdin_path : "/dev/null", O_RDONLY);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || fo < 0 || fe < 0 || dup2(in, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
        _exit(126);
    if (o->uid != 0 && (setgroups(0, NULL) != 0 || setgid(NOGROUP_GID) != 0 || setuid(o->uid) != 0))
        _exit(126);
    execv(cli_bin, argv);
    _exit(127);
}

/* Wait at most RUN_TIMEOUT_MS; a CLI that hangs is killed and fails the test. */
static int wait_bounded(pid_t pid)
{
    for (int waited = 0; waited < RUN_TIMEOUT_MS; waited += 5) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Run the CLI with args (NULL-terminated); db NULL: no --db. */
static int run_cli_args(const run_opts *o, const char *db, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)cli_bin;
    if (db != NULL) {
        argv[argc++] = "--db";
        argv[argc++] = (char *)db;
    }
    for (; *args != NULL; args++) {
        ck_assert_int_lt(argc, 31);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;

    char out[800], err[800];
    snprintf(out, sizeof(out), "%s/.stdout", test_dir);
    snprintf(err, sizeof(err), "%s/.stderr", test_dir);
    free_last();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        exec_child(o, argv, out, err);
    last.status = wait_bounded(pid);
    last.out = read_file(out, NULL);
    last.err = read_file(err, NULL);
    unlink(out);
    unlink(err);
    return last.status;
}

static int run_cli_v(const run_opts *o, const char *db, va_list ap)
{
    const char *args[32];
    int n = 0;
    const char *arg;
    while ((arg = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, 28);
        args[n++] = arg;
    }
    args[n] = NULL;
    return run_cli_args(o, db, args);
}

/* certstore --db <db> ARGS... (NULL-terminated); db NULL: no --db. */
static int cli_db(const char *db, ...)
{
    run_opts o = {0};
    va_list ap;
    va_start(ap, db);
    int st = run_cli_v(&o, db, ap);
    va_end(ap);
    return st;
}

#define cli(...) cli_db(db_path, __VA_ARGS__, NULL)
#define cli_nodb(...) cli_db(NULL, __VA_ARGS__, NULL)

static int cli_with(const run_opts *o, ...)
{
    va_list ap;
    va_start(ap, o);
    int st = run_cli_v(o, db_path, ap);
    va_end(ap);
    return st;
}

#define assert_ok() ck_assert_msg(last.status == 0, "exit %d, stderr: %s", last.status, last.err)
#define assert_out_has(text)                                                                       \
    ck_assert_msg(strstr(last.out, (text)) != NULL, "stdout lacks '%s':\n%s", (text), last.out)
#define assert_err_has(text)                                                                       \
    ck_assert_msg(strstr(last.err, (text)) != NULL, "stderr lacks '%s':\n%s", (text), last.err)

/* A failure: the given status, exactly one stderr line naming the command, nothing on stdout. */
static void assert_one_line_failure(int status, const char *phrase)
{
    ck_assert_msg(last.status == status, "exit %d, wanted %d; stderr: %s", last.status, status,
                  last.err);
    ck_assert_msg(strncmp(last.err, "certstore: ", 11) == 0, "stderr: %s", last.err);
    ck_assert_msg(count_lines(last.err) == 1, "want one stderr line, got:\n%s", last.err);
    assert_err_has(phrase);
}

/* A usage error: exit 2, the message line and the "Try" line. */
static void assert_usage_error(const char *phrase, const char *try_line)
{
    ck_assert_msg(last.status == 2, "exit %d, wanted 2; stderr: %s", last.status, last.err);
    ck_assert_msg(count_lines(last.err) == 2, "want two stderr lines, got:\n%s", last.err);
    assert_err_has(phrase);
    assert_err_has(try_line);
}

/* ---- the database as data ------------------------------------------------ */

static void dump_table(sqlite3 *db, const char *table, FILE *f)
{
    char sql[300];
    snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", table);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    fprintf(f, "table %s\n", table);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const unsigned char *v = sqlite3_column_text(st, c);
            fprintf(f, "%d:%s|", sqlite3_column_type(st, c), v != NULL ? (const char *)v : "");
        }
        fputc('\n', f);
    }
    sqlite3_finalize(st);
}

/* Every row of every table plus user_version: "unchanged" means equal dumps. */
static char *db_dump(const char *path)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    fprintf(f, "user_version %d\n", sqlite3_column_int(st, 0));
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type='table' "
                                        "ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        dump_table(db, (const char *)sqlite3_column_text(st, 0), f);
    sqlite3_finalize(st);
    sqlite3_close(db);
    fclose(f);
    return buf;
}

static void assert_db_unchanged(const char *before)
{
    char *after = db_dump(db_path);
    ck_assert_msg(strcmp(before, after) == 0, "database changed:\nbefore:\n%s\nafter:\n%s", before,
                  after);
    free(after);
}

static void set_user_version(const char *path, int version)
{
    sqlite3 *db;
    char sql[64];
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- certificates -------------------------------------------------------- */

static X509 *pki_cert(const char *name)
{
    const testpki_cred *c = testpki_get(pki, name);
    ck_assert_msg(c != NULL, "no credential %s", name);
    return c->cert;
}

static const char *fp_of(const char *name)
{
    static char bufs[4][CS_FP_HEX_LEN + 1];
    static int next;
    char *buf = bufs[next++ % 4];
    ck_assert(cs_fp_of_cert(pki_cert(name), buf));
    return buf;
}

static const char *write_der(const char *name, const char *file)
{
    unsigned char *der = NULL;
    int len = i2d_X509(pki_cert(name), &der);
    ck_assert_int_gt(len, 0);
    const char *path = test_file(file);
    write_file(path, der, (size_t)len);
    OPENSSL_free(der);
    return path;
}

/* ---- fixtures ------------------------------------------------------------ */

static void setup_suite(void)
{
    cli_bin = getenv("CERTSTORE_BIN");
    ck_assert_msg(cli_bin != NULL && access(cli_bin, X_OK) == 0,
                  "CERTSTORE_BIN must name the certstore binary");
    unsetenv("CERTSTORE_DB");
    pki = testpki_new(0);
    ck_assert_ptr_nonnull(pki);
    base_dir = testpki_tmpdir();
    ck_assert_ptr_nonnull(base_dir);
    /* The read-only test runs the CLI as nobody, who must reach the files. */
    ck_assert_int_eq(chmod(base_dir, 0755), 0);
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", base_dir);
    ck_assert_int_eq(mkdir(pki_dir, 0755), 0);
    ck_assert(testpki_write(pki, pki_dir));
}

static void teardown_suite(void)
{
    if (base_dir != NULL)
        testpki_rmtree(base_dir);
    free(base_dir);
    base_dir = NULL;
    testpki_free(pki);
    pki = NULL;
}

static void setup(void)
{
    snprintf(test_dir, sizeof(test_dir), "%s/t%d-%d", base_dir, (int)getpid(), ++test_counter);
    ck_assert_int_eq(mkdir(test_dir, 0700), 0);
    snprintf(db_path, sizeof(db_path), "%s/certstore.db", test_dir);
}

static void teardown(void)
{
    free_last();
}

/* A database with ca-a pinned and alice mapped to account alice. */
static void init_with_alice(void)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(
        cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--create-account"), 0);
}

static int check_chain(const char *chain_file)
{
    return cli("check", pki_file(chain_file), "--ca", pki_file("roots.pem"));
}

static void assert_decision(const char *chain_file, const char *first_line)
{
    int status = check_chain(chain_file);
    ck_assert_msg(strncmp(last.out, first_line, strlen(first_line)) == 0,
                  "%s: wanted '%s', got:\n%s\nstderr: %s", chain_file, first_line, last.out,
                  last.err);
    ck_assert_int_eq(status, strncmp(first_line, "accept", 6) == 0 ? 0 : 1);
    /* The token is followed by the end of the line or by " (" and OpenSSL's text. */
    if (first_line[strlen(first_line) - 1] != '=') {
        char next = last.out[strlen(first_line)];
        ck_assert_msg(next == '\n' || next == ' ', "decision line: %s", last.out);
    }
}

/* ---- help, version, usage ------------------------------------------------ */

START_TEST(test_help_everywhere)
{
    static const char *const commands[][2] = {
        {"init", NULL},        {"pin", NULL},     {"pin", "add"},    {"pin", "rm"},
        {"pin", "disable"},    {"pin", "enable"}, {"pin", "ls"},     {"account", NULL},
        {"account", "add"},    {"account", "rm"}, {"account", "ls"}, {"account", "disable"},
        {"account", "enable"}, {"map", NULL},     {"map", "add"},    {"map", "rm"},
        {"map", "disable"},    {"map", "enable"}, {"map", "ls"},     {"check", NULL},
        {"import", NULL},      {"export", NULL},  {"log", NULL},     {"stats", NULL},
    };
    ck_assert_int_eq(cli_nodb("--help"), 0);
    assert_out_has("Usage: certstore");
    assert_out_has("check");
    ck_assert_int_eq(cli_nodb("--version"), 0);
    assert_out_has("certstore " CERTSTORE_VERSION);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (commands[i][1] != NULL)
            cli_nodb(commands[i][0], commands[i][1], "--help");
        else
            cli_nodb(commands[i][0], "--help");
        ck_assert_msg(last.status == 0 && strncmp(last.out, "Usage: certstore", 16) == 0,
                      "%s %s --help: exit %d\n%s", commands[i][0],
                      commands[i][1] ? commands[i][1] : "", last.status, last.out);
        ck_assert_str_eq(last.err, "");
    }
    /* No database was needed for any of that. */
    ck_assert_int_ne(access(db_path, F_OK), 0);
}
END_TEST

START_TEST(test_usage_errors_exit_2)
{
    ck_assert_int_eq(cli("init"), 0);
    char *before = db_dump(db_path);

    cli_nodb(NULL);
    assert_usage_error("certstore: missing COMMAND", "Try 'certstore --help'.");
    cli("frobnicate");
    assert_usage_error("certstore: unknown command 'frobnicate'", "Try 'certstore --help'.");
    cli_nodb("--bogus", "stats");
    assert_usage_error("unknown option '--bogus'", "Try 'certstore --help'.");
    cli_nodb("stats", "--db");
    assert_usage_error("missing value for --db", "Try 'certstore stats --help'.");

    cli("map", "add", pki_file("alice.pem"));
    ck_assert_str_eq(last.err, "certstore: map add: missing --account\n"
                               "Try 'certstore map add --help'.\n");
    ck_assert_int_eq(last.status, 2);
    cli("pin", "ls", "--bogus");
    assert_usage_error("certstore: pin ls: unknown option '--bogus'",
                       "Try 'certstore pin ls --help'.");
    cli("pin", "add");
    assert_usage_error("certstore: pin add: missing CA.pem", "Try 'certstore pin add --help'.");
    cli("pin", "frob");
    assert_usage_error("certstore: pin: unknown subcommand 'frob'", "Try 'certstore pin --help'.");
    cli("pin");
    assert_usage_error("certstore: pin: missing subcommand", "Try 'certstore pin --help'.");
    cli("pin", "rm", "not-a-fingerprint");
    assert_usage_error("not a SHA-256 fingerprint", "Try 'certstore pin rm --help'.");
    cli("account", "add");
    assert_usage_error("missing NAME", "Try 'certstore account add --help'.");
    cli("account", "add", "a", "b");
    assert_usage_error("unexpected argument 'b'", "Try 'certstore account add --help'.");
    cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--kind", "fingerprint");
    assert_usage_error("--kind: 'fingerprint'", "Try 'certstore map add --help'.");
    cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--not-after", "tomorrow");
    assert_usage_error("--not-after: 'tomorrow'", "Try 'certstore map add --help'.");
    cli("map", "add", pki_file("alice.pem"), "--account");
    assert_usage_error("missing value for --account", "Try 'certstore map add --help'.");
    cli("map", "rm", "zz-not-a-ref");
    assert_usage_error("not a mapping id, a certificate file or a cert key",
                       "Try 'certstore map rm --help'.");
    cli("check", pki_file("alice-chain.pem"));
    assert_usage_error("certstore: check: missing --ca", "Try 'certstore check --help'.");
    cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("roots.pem"), "--at", "soon");
    assert_usage_error("--at: 'soon'", "Try 'certstore check --help'.");
    cli("export");
    assert_usage_error("certstore: export: missing --format", "Try 'certstore export --help'.");
    cli("export", "--format", "xml");
    assert_usage_error("--format: 'xml'", "Try 'certstore export --help'.");
    cli("import", "x.csv", "--format", "xml");
    assert_usage_error("--format: 'xml'", "Try 'certstore import --help'.");
    cli("log", "--since", "yesterday");
    assert_usage_error("--since: 'yesterday'", "Try 'certstore log --help'.");
    cli("stats", "--json=yes");
    assert_usage_error("takes no value", "Try 'certstore stats --help'.");

    assert_db_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_db_from_env_and_option_after_command)
{
    setenv("CERTSTORE_DB", db_path, 1);
    int st = cli_nodb("init");
    unsetenv("CERTSTORE_DB");
    ck_assert_int_eq(st, 0);
    ck_assert_int_eq(access(db_path, F_OK), 0);
    /* --db after the command works too. */
    ck_assert_int_eq(cli_nodb("stats", "--db", db_path), 0);
    assert_out_has("schema-version: ");
}
END_TEST

/* ---- init, pin, account, map --------------------------------------------- */

START_TEST(test_init_creates_and_is_idempotent)
{
    char expected[64];

    ck_assert_int_eq(cli("init"), 0);
    assert_out_has("schema version");
    ck_assert_int_eq(access(db_path, F_OK), 0);
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("stats", "--json"), 0);
    snprintf(expected, sizeof(expected), "\"schema_version\":%d", CS_SCHEMA_VERSION);
    assert_out_has(expected);
    assert_out_has("\"pins\":0");
}
END_TEST

START_TEST(test_commands_need_an_initialised_db)
{
    cli("pin", "add", pki_file("ca-a.pem"));
    assert_one_line_failure(1, "certstore init");
    ck_assert_int_ne(access(db_path, F_OK), 0);
    cli("pin", "ls");
    ck_assert_int_eq(last.status, 1);
    ck_assert_int_ne(access(db_path, F_OK), 0);
}
END_TEST

START_TEST(test_pin_lifecycle)
{
    const char *fp = fp_of("ca-a");
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem"), "--note", "Partner A"), 0);
    assert_out_has(fp);
    ck_assert_int_eq(cli("pin", "ls"), 0);
    assert_out_has(fp);
    assert_out_has(" enabled ");
    assert_out_has("note=Partner A");
    ck_assert_int_eq(cli("pin", "ls", "--json"), 0);
    assert_out_has("\"enabled\":true");
    assert_out_has("\"note\":\"Partner A\"");
    char want[100];
    snprintf(want, sizeof(want), "\"fingerprint\":\"%s\"", fp);
    assert_out_has(want);
    ck_assert_int_eq(last.out[0], '[');

    ck_assert_int_eq(cli("pin", "disable", fp), 0);
    ck_assert_int_eq(cli("pin", "ls", "--json"), 0);
    assert_out_has("\"enabled\":false");
    ck_assert_int_eq(cli("pin", "enable", fp), 0);
    ck_assert_int_eq(cli("pin", "ls", "--json"), 0);
    assert_out_has("\"enabled\":true");

    char *before = db_dump(db_path);
    cli("pin", "add", pki_file("ca-a.pem"));
    assert_one_line_failure(1, "already pinned");
    assert_db_unchanged(before);
    free(before);

    /* Upper case with colons is the same fingerprint. */
    char upper[100] = "";
    for (int i = 0; i < CS_FP_HEX_LEN; i += 2) {
        char pair[4] = {(char)(fp[i] >= 'a' ? fp[i] - 32 : fp[i]),
                        (char)(fp[i + 1] >= 'a' ? fp[i + 1] - 32 : fp[i + 1]),
                        i + 2 < CS_FP_HEX_LEN ? ':' : '\0', '\0'};
        strcat(upper, pair);
    }
    ck_assert_int_eq(cli("pin", "rm", upper), 0);
    ck_assert_int_eq(cli("pin", "ls", "--json"), 0);
    ck_assert_str_eq(last.out, "[]\n");
    cli("pin", "rm", fp);
    assert_one_line_failure(1, "no pin with fingerprint");
}
END_TEST

START_TEST(test_pin_add_der_input)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", write_der("ca-a", "ca-a.der")), 0);
    assert_out_has(fp_of("ca-a"));
}
END_TEST

START_TEST(test_pin_add_refuses_non_ca)
{
    ck_assert_int_eq(cli("init"), 0);
    char *before = db_dump(db_path);
    cli("pin", "add", pki_file("alice.pem"));
    assert_one_line_failure(1, "not a CA certificate (no basicConstraints CA:TRUE)");
    assert_err_has("alice.pem");
    cli("pin", "add", pki_file("alice-chain.pem"));
    assert_one_line_failure(1, "expected one certificate, found 2");
    assert_db_unchanged(before);
    free(before);
}
END_TEST

/* A self-signed root pinned: the CLI says it pins the root only, not what is under it. */
START_TEST(test_pin_add_root_says_what_it_pins)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("root.pem")), 0);
    assert_err_has("self-signed root");
    assert_err_has("not those of the intermediate CAs");
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_ptr_null(strstr(last.err, "self-signed root"));
}
END_TEST

START_TEST(test_account_lifecycle)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("account", "add", "acme", "--note", "ACME Corp"), 0);
    ck_assert_int_eq(cli("account", "ls"), 0);
    assert_out_has("acme enabled mappings=0 note=ACME Corp");
    ck_assert_int_eq(cli("account", "ls", "--json"), 0);
    assert_out_has("\"name\":\"acme\",\"enabled\":true,\"mappings\":0");
    cli("account", "add", "acme");
    assert_one_line_failure(1, "already exists");
    ck_assert_int_eq(cli("account", "disable", "acme"), 0);
    ck_assert_int_eq(cli("account", "ls", "--json"), 0);
    assert_out_has("\"enabled\":false");
    ck_assert_int_eq(cli("account", "enable", "acme"), 0);

    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "acme"), 0);
    char *before = db_dump(db_path);
    cli("account", "rm", "acme");
    assert_one_line_failure(1, "--cascade");
    assert_db_unchanged(before);
    free(before);
    ck_assert_int_eq(cli("account", "rm", "acme", "--cascade"), 0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    ck_assert_str_eq(last.out, "[]\n");
    cli("account", "disable", "acme");
    assert_one_line_failure(1, "no such account");
}
END_TEST

START_TEST(test_map_lifecycle)
{
    ck_assert_int_eq(cli("init"), 0);
    char *before = db_dump(db_path);
    cli("map", "add", pki_file("alice.pem"), "--account", "alice");
    assert_one_line_failure(1, "--create-account");
    assert_db_unchanged(before);
    free(before);

    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice",
                         "--create-account", "--note", "first"),
                     0);
    assert_out_has("cert ");
    assert_out_has(fp_of("alice"));
    ck_assert_int_eq(cli("map", "ls"), 0);
    assert_out_has(fp_of("alice"));
    assert_out_has("account=alice enabled");
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    char want[200];
    snprintf(want, sizeof(want), "\"kind\":\"cert\",\"key\":\"%s\",\"account\":\"alice\"",
             fp_of("alice"));
    assert_out_has(want);
    ck_assert_int_eq(cli("account", "add", "bob"), 0);
    ck_assert_int_eq(cli("map", "ls", "--account", "bob", "--json"), 0);
    ck_assert_str_eq(last.out, "[]\n");
    cli("map", "ls", "--account", "nobody");
    assert_one_line_failure(1, "no such account");

    cli("map", "add", pki_file("alice.pem"), "--account", "alice");
    assert_one_line_failure(1, "already exists");

    /* REF as a certificate file, as an id, and as hex (upper case). */
    ck_assert_int_eq(cli("map", "disable", pki_file("alice.pem")), 0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    assert_out_has("\"enabled\":false");
    ck_assert_int_eq(cli("map", "enable", "1"), 0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    assert_out_has("\"enabled\":true");
    char upper[CS_FP_HEX_LEN + 1];
    strcpy(upper, fp_of("alice"));
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p -= 32;
    ck_assert_int_eq(cli("map", "rm", upper), 0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    ck_assert_str_eq(last.out, "[]\n");
    cli("map", "rm", "1");
    assert_one_line_failure(1, "no such mapping");

    /* The other kinds, each from a certificate file; issuer-serial and ski bind to ca-a. */
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(
        cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--kind", "issuer-serial"),
        0);
    assert_out_has(fp_of("ca-a"));
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--kind", "ski",
                         "--create-account"),
                     0);
    ck_assert_int_eq(cli("map", "add", write_der("carol", "carol.der"), "--account", "carol",
                         "--kind", "spki", "--create-account", "--pin", fp_of("ca-b"),
                         "--not-before", "2020-01-01", "--not-after", "2099-12-31T00:00:00Z"),
                     0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    assert_out_has("\"kind\":\"issuer-serial\"");
    assert_out_has("\"kind\":\"ski\"");
    assert_out_has("\"kind\":\"spki\"");
    assert_out_has("\"not_before\":\"2020-01-01T00:00:00Z\"");
    assert_out_has("\"not_after\":\"2099-12-31T00:00:00Z\"");
    snprintf(want, sizeof(want), "\"pin\":\"%s\"", fp_of("ca-b"));
    assert_out_has(want);
    ck_assert_int_eq(cli("map", "rm", pki_file("bob.pem"), "--kind", "ski"), 0);
    ck_assert_int_eq(cli("stats", "--json"), 0);
    assert_out_has("\"mappings\":2");
}
END_TEST

/* ---- check: every reason token ------------------------------------------ */

START_TEST(test_check_accepts_mapped_client)
{
    init_with_alice();
    assert_decision("alice-chain.pem", "accept account=alice kind=cert mapping=");
    char line[200];
    snprintf(line, sizeof(line), "leaf-sha256: %s\n", fp_of("alice"));
    assert_out_has(line);
    snprintf(line, sizeof(line), "issuer-sha256: %s\n", fp_of("ca-a"));
    assert_out_has(line);
    assert_out_has("subject: ");
    assert_out_has("alice");

    ck_assert_int_eq(
        cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("roots.pem"), "--json"), 0);
    assert_out_has("{\"decision\":\"accept\",\"reason\":null,\"account\":\"alice\","
                   "\"kind\":\"cert\",\"mapping\":");
    ck_assert_int_eq(count_lines(last.out), 1);
}
END_TEST

START_TEST(test_check_renewed_cert_accepted_by_spki)
{
    init_with_alice();
    assert_decision("alice-renewed-chain.pem", "reject no-mapping");
    ck_assert_int_eq(
        cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--kind", "spki"), 0);
    assert_decision("alice-renewed-chain.pem", "accept account=alice kind=spki");
}
END_TEST

START_TEST(test_check_unpinned_issuer_rejected)
{
    init_with_alice();
    ck_assert_int_eq(
        cli("map", "add", pki_file("carol.pem"), "--account", "carol", "--create-account"), 0);
    assert_decision("carol-chain.pem", "reject issuer-not-pinned");
    ck_assert_int_eq(
        cli("check", pki_file("carol-chain.pem"), "--ca", pki_file("roots.pem"), "--json"), 1);
    assert_out_has("\"decision\":\"reject\",\"reason\":\"issuer-not-pinned\",\"account\":null");
    /* Issued by the root itself: its issuer is the root, which is not pinned. */
    assert_decision("direct.pem", "reject issuer-not-pinned");
}
END_TEST

START_TEST(test_check_same_dn_twin_ca_rejected)
{
    init_with_alice();
    assert_decision("mallory-chain.pem", "reject issuer-not-pinned");
}
END_TEST

START_TEST(test_check_disabled_pin_rejected)
{
    init_with_alice();
    ck_assert_int_eq(cli("pin", "disable", fp_of("ca-a")), 0);
    assert_decision("alice-chain.pem", "reject pin-disabled");
}
END_TEST

START_TEST(test_check_unmapped_rejected)
{
    init_with_alice();
    assert_decision("bob-chain.pem", "reject no-mapping");
}
END_TEST

START_TEST(test_check_disabled_mapping_rejected)
{
    init_with_alice();
    ck_assert_int_eq(cli("map", "disable", pki_file("alice.pem")), 0);
    assert_decision("alice-chain.pem", "reject mapping-disabled");
}
END_TEST

START_TEST(test_check_mapping_windows)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice",
                         "--create-account", "--not-before", "2099-01-01"),
                     0);
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--create-account",
                         "--not-after", "2001-01-01"),
                     0);
    assert_decision("alice-chain.pem", "reject mapping-not-yet-valid");
    assert_decision("bob-chain.pem", "reject mapping-expired");
}
END_TEST

START_TEST(test_check_disabled_account_rejected)
{
    init_with_alice();
    ck_assert_int_eq(cli("account", "disable", "alice"), 0);
    assert_decision("alice-chain.pem", "reject account-disabled");
}
END_TEST

START_TEST(test_check_missing_store_unavailable)
{
    /* No database at all: the decision is store-unavailable, and nothing is created. */
    assert_decision("alice-chain.pem", "reject store-unavailable");
    assert_out_has("detail: ");
    ck_assert_int_ne(access(db_path, F_OK), 0);
}
END_TEST

START_TEST(test_check_chain_invalid)
{
    init_with_alice();
    assert_decision("expired-chain.pem", "reject chain-invalid");
    assert_out_has("certificate has expired");
    assert_decision("noclient-chain.pem", "reject chain-invalid");
    assert_decision("selfsigned.pem", "reject chain-invalid");
    /* alice against a trust store that does not hold her root. */
    ck_assert_int_eq(cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("selfsigned.pem")),
                     1);
    ck_assert_msg(strncmp(last.out, "reject chain-invalid (", 22) == 0, "%s", last.out);
    /* --at in the past, before alice existed. */
    ck_assert_int_eq(cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("roots.pem"),
                         "--at", "2001-01-01"),
                     1);
    ck_assert_msg(strncmp(last.out, "reject chain-invalid (", 22) == 0, "%s", last.out);
    ck_assert_int_eq(
        cli("check", pki_file("expired-chain.pem"), "--ca", pki_file("roots.pem"), "--json"), 1);
    assert_out_has("\"reason\":\"chain-invalid\"");
    assert_out_has("\"chain_error\":\"certificate has expired\"");
}
END_TEST

START_TEST(test_check_der_leaf_and_chain_order)
{
    init_with_alice();
    /* A DER leaf alone cannot be chained to the root without its issuing CA. */
    ck_assert_int_eq(cli("check", write_der("alice", "alice.der"), "--ca", pki_file("roots.pem")),
                     1);
    ck_assert_msg(strncmp(last.out, "reject chain-invalid", 20) == 0, "%s", last.out);
    /* With the issuing CA in the trusted file, as in a server's CA file, it verifies. */
    char *roots = read_file(pki_file("roots.pem"), NULL);
    char *ca = read_file(pki_file("ca-a.pem"), NULL);
    char *both = malloc(strlen(roots) + strlen(ca) + 1);
    strcpy(both, roots);
    strcat(both, ca);
    write_text(test_file("bundle.pem"), both);
    free(roots);
    free(ca);
    free(both);
    ck_assert_int_eq(cli("check", test_file("alice.der"), "--ca", test_file("bundle.pem")), 0);
    assert_out_has("accept account=alice");
}
END_TEST

/* ---- ski and issuer-serial: bound to the pin that issued them --------------- */

/* ca-a, ca-b and ca-twin pinned: three partner CAs, two with the same DN. */
static void init_three_partner_cas(void)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-b.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-twin.pem")), 0);
}

/* The key of `kind` of a test certificate as `certstore` prints it. */
static const char *key_text(const char *name, cs_kind kind)
{
    static char bufs[4][2 * CS_KEY_MAX + 2];
    static int next;
    char *buf = bufs[next++ % 4];
    cs_key key;
    ck_assert_int_eq(cs_key_from_cert(pki_cert(name), kind, &key), CS_OK);
    cs_key_format(kind, &key, buf, sizeof(bufs[0]));
    return buf;
}

START_TEST(test_map_add_binds_ski_and_issuer_serial_to_issuing_pin)
{
    init_three_partner_cas();
    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice",
                         "--create-account", "--kind", "ski"),
                     0);
    assert_out_has(fp_of("ca-a"));
    /* ca-b's leaf with alice's SKI and its own key; the handshake proves only the key. */
    assert_decision("eve-chain.pem", "reject no-mapping");
    assert_decision("alice-chain.pem", "accept account=alice kind=ski");
    ck_assert_int_eq(cli("map", "rm", pki_file("alice.pem"), "--kind", "ski"), 0);

    ck_assert_int_eq(
        cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--kind", "issuer-serial"),
        0);
    /* ca-twin's leaf with alice's issuer DN and serial. */
    assert_decision("mallory-chain.pem", "reject no-mapping");
    assert_decision("alice-chain.pem", "accept account=alice kind=issuer-serial");
    ck_assert_int_eq(cli("map", "ls"), 0);
    char want[200];
    snprintf(want, sizeof(want), "pin=%s", fp_of("ca-a"));
    assert_out_has(want);
    ck_assert_ptr_null(strstr(last.out, "unbound"));
}
END_TEST

START_TEST(test_map_add_refuses_without_one_issuing_pin)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-b.pem")), 0);
    char *before = db_dump(db_path);
    cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--create-account", "--kind",
        "ski");
    assert_one_line_failure(1, "no pinned CA issued this certificate");
    assert_err_has("--pin");
    assert_db_unchanged(before);
    free(before);

    /* ca-a and its renewal with the same DN and key both verify alice. */
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a-renewed.pem")), 0);
    before = db_dump(db_path);
    cli("map", "add", pki_file("alice.pem"), "--account", "alice", "--create-account", "--kind",
        "issuer-serial");
    assert_one_line_failure(1, "2 pinned CAs");
    assert_err_has("--pin");
    assert_db_unchanged(before);
    free(before);
    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice",
                         "--create-account", "--kind", "issuer-serial", "--pin",
                         fp_of("ca-a-renewed")),
                     0);
    /* cert and spki stay unbound unless asked: the handshake proves their key. */
    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice"), 0);
    ck_assert_int_eq(cli("map", "ls", "--json"), 0);
    assert_out_has("\"kind\":\"cert\"");
    assert_out_has("\"pin\":null");
}
END_TEST

START_TEST(test_import_needs_pin_for_ski_and_issuer_serial)
{
    init_three_partner_cas();
    char csv[800];
    snprintf(csv, sizeof(csv), "kind,key,account\ncert,%s,bob\nski,%s,alice\n", fp_of("bob"),
             key_text("alice", CS_KIND_SKI));
    write_text(test_file("unbound.csv"), csv);
    char *before = db_dump(db_path);
    cli("import", test_file("unbound.csv"));
    assert_one_line_failure(1, "line 3");
    assert_err_has("needs a pin");
    assert_db_unchanged(before);
    free(before);

    char jsonl[800];
    snprintf(jsonl, sizeof(jsonl),
             "{\"kind\":\"issuer-serial\",\"key\":\"%s\",\"account\":\"alice\"}\n",
             key_text("alice", CS_KIND_ISSUER_SERIAL));
    write_text(test_file("unbound.jsonl"), jsonl);
    cli("import", test_file("unbound.jsonl"));
    assert_one_line_failure(1, "needs a pin");

    /* Bound by --pin, or by the pin column. */
    ck_assert_int_eq(
        cli("import", test_file("unbound.csv"), "--pin", fp_of("ca-a"), "--create-accounts"), 0);
    snprintf(jsonl, sizeof(jsonl),
             "{\"kind\":\"issuer-serial\",\"key\":\"%s\",\"account\":\"alice\",\"pin\":\"%s\"}\n",
             key_text("alice", CS_KIND_ISSUER_SERIAL), fp_of("ca-a"));
    write_text(test_file("bound.jsonl"), jsonl);
    ck_assert_int_eq(cli("import", test_file("bound.jsonl"), "--create-accounts"), 0);
    assert_decision("eve-chain.pem", "reject no-mapping");
    assert_decision("mallory-chain.pem", "reject no-mapping");
    assert_decision("alice-chain.pem", "accept account=alice kind=issuer-serial");
}
END_TEST

/* ---- every write bumps the policy generation -------------------------------- */

static int64_t db_generation(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT generation FROM meta WHERE id = 1", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t g = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return g;
}

/*
 * An argument of the table below: "@NAME" is the PKI file NAME, "%NAME" the
 * fingerprint of PKI certificate NAME, "#NAME" the test file NAME.
 */
static const char *expand_arg(const char *arg)
{
    switch (arg[0]) {
    case '@':
        return pki_file(arg + 1);
    case '%':
        return fp_of(arg + 1);
    case '#':
        return test_file(arg + 1);
    default:
        return arg;
    }
}

/*
 * Every CLI command that writes, in an order where each succeeds. Some of
 * them only widen access in this store; any of them can narrow it in
 * another (a cert mapping with a later not-before shadows an spki one, an
 * issuer-serial mapping to a disabled account, a rule ahead of another),
 * so every one must bump the generation.
 */
static const char *const write_commands[][12] = {
    {"pin", "add", "@ca-a.pem"},
    {"pin", "add", "@ca-b.pem"},
    {"pin", "disable", "%ca-b"},
    {"pin", "enable", "%ca-b"},
    {"account", "add", "acme"},
    {"account", "disable", "acme"},
    {"account", "enable", "acme"},
    {"account", "add", "closed"},
    {"account", "disable", "closed"},
    {"map", "add", "@alice.pem", "--account", "acme", "--kind", "spki"},
    {"map", "add", "@alice.pem", "--account", "acme", "--kind", "cert", "--not-before",
     "2099-01-01"},
    {"map", "add", "@alice.pem", "--account", "closed", "--kind", "issuer-serial"},
    {"map", "add", "@alice.pem", "--account", "acme", "--kind", "ski"},
    {"map", "add", "@bob.pem", "--account", "acme", "--not-issued-before", "created"},
    {"map", "disable", "@alice.pem", "--kind", "cert"},
    {"map", "enable", "@alice.pem", "--kind", "cert"},
    {"map", "disable", "@alice.pem", "--kind", "issuer-serial"},
    {"map", "enable", "@alice.pem", "--kind", "issuer-serial"},
    {"map", "disable", "@alice.pem", "--kind", "ski"},
    {"map", "enable", "@alice.pem", "--kind", "ski"},
    {"map", "disable", "@alice.pem", "--kind", "spki"},
    {"map", "enable", "@alice.pem", "--kind", "spki"},
    {"rule", "add", "--pin", "%ca-a", "--account", "acme", "--subject", "O=certstore tests"},
    {"rule", "add", "--pin", "%ca-a", "--account", "other", "--create-account", "--priority", "1",
     "--any"},
    {"rule", "add", "--pin", "%ca-a", "--deny", "--subject", "CN=nobody"},
    {"rule", "disable", "1"},
    {"rule", "enable", "1"},
    {"rule", "rm", "1"},
    {"import", "#rows.csv", "--create-accounts"},
    {"import", "#rows.jsonl", "--format", "jsonl", "--create-accounts"},
    {"import", "#iis.config", "--format", "iis", "--create-accounts"},
    {"import", "#altsec.tsv", "--format", "altsecid", "--pin", "%ca-a", "--create-accounts"},
    {"map", "rm", "@alice.pem", "--kind", "cert"},
    {"map", "rm", "@alice.pem", "--kind", "issuer-serial"},
    {"map", "rm", "@alice.pem", "--kind", "ski"},
    {"map", "rm", "@alice.pem", "--kind", "spki"},
    {"account", "rm", "acme", "--cascade"},
    {"account", "rm", "closed", "--cascade"},
    {"pin", "rm", "%ca-b"},
};

/* The import files of write_commands: each maps a certificate no step maps otherwise. */
static void write_import_files(void)
{
    char text[4096];
    snprintf(text, sizeof(text), "kind,key,account\ncert,%s,carol\n", fp_of("carol"));
    write_text(test_file("rows.csv"), text);
    snprintf(text, sizeof(text), "{\"kind\":\"cert\",\"key\":\"%s\",\"account\":\"dave\"}\n",
             fp_of("expired"));
    write_text(test_file("rows.jsonl"), text);

    unsigned char *der = NULL;
    int len = i2d_X509(pki_cert("noclient"), &der);
    ck_assert_int_gt(len, 0);
    char *b64 = malloc((size_t)len * 2 + 8);
    ck_assert_ptr_nonnull(b64);
    EVP_EncodeBlock((unsigned char *)b64, der, len);
    OPENSSL_free(der);
    snprintf(text, sizeof(text),
             "<configuration><system.webServer><security><authentication>"
             "<iisClientCertificateMappingAuthentication enabled=\"true\"><oneToOneMappings>"
             "<add enabled=\"true\" userName=\"CORP\\erin\" certificate=\"%s\" />"
             "</oneToOneMappings></iisClientCertificateMappingAuthentication>"
             "</authentication></security></system.webServer></configuration>\n",
             b64);
    free(b64);
    write_text(test_file("iis.config"), text);

    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(pki_cert("bob"));
    ck_assert_ptr_nonnull(ski);
    int n = snprintf(text, sizeof(text), "frank\tX509:<SKI>");
    for (int i = 0; i < ASN1_STRING_length(ski); i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%02X", ASN1_STRING_get0_data(ski)[i]);
    snprintf(text + n, sizeof(text) - (size_t)n, "\n");
    write_text(test_file("altsec.tsv"), text);
}

START_TEST(test_every_write_command_bumps_generation)
{
    ck_assert_int_eq(cli("init"), 0);
    write_import_files();
    for (size_t i = 0; i < sizeof(write_commands) / sizeof(write_commands[0]); i++) {
        const char *args[13];
        char shown[300] = "";
        size_t n = 0;
        for (; n < 12 && write_commands[i][n] != NULL; n++) {
            args[n] = expand_arg(write_commands[i][n]);
            strncat(shown, write_commands[i][n], sizeof(shown) - strlen(shown) - 2);
            strcat(shown, " ");
        }
        args[n] = NULL;
        int64_t before = db_generation();
        run_opts o = {0};
        ck_assert_msg(run_cli_args(&o, db_path, args) == 0, "%s: exit %d: %s", shown, last.status,
                      last.err);
        ck_assert_msg(db_generation() > before, "%s: generation stayed %lld", shown,
                      (long long)before);
    }
    /* The per-row triggers are on again after the bulk imports. */
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM meta WHERE bulk_write = 0", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

/* The change the generation exists for: a connection accepted before may not resume. */
START_TEST(test_narrowing_by_adding_bumps_generation)
{
    init_with_alice();
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--kind", "spki",
                         "--create-account"),
                     0);
    assert_decision("bob-chain.pem", "accept account=bob kind=spki");
    int64_t g = db_generation();
    ck_assert_int_eq(
        cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--not-before", "2099-01-01"),
        0);
    assert_decision("bob-chain.pem", "reject mapping-not-yet-valid");
    ck_assert_int_gt(db_generation(), g);
}
END_TEST

/* ---- import, export, log, stats ------------------------------------------ */

START_TEST(test_export_csv_round_trips_through_import)
{
    init_with_alice();
    /* Bound to ca-a by map add; the pin column carries the binding through. Added in the
     * order import gives ids (by kind, then key), so the second export is the same text. */
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--kind", "ski",
                         "--create-account"),
                     0);
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--kind", "spki",
                         "--not-after", "2099-01-01", "--note", "a note, with \"quotes\"", "--pin",
                         fp_of("ca-a")),
                     0);
    ck_assert_int_eq(cli("export", "--format", "csv"), 0);
    static const char header[] =
        "kind,key,account,not_before,not_after,note,pin,enabled,account_enabled,"
        "not_issued_before,created\n";
    ck_assert_msg(strncmp(last.out, header, sizeof(header) - 1) == 0, "%s", last.out);
    ck_assert_int_eq(count_lines(last.out), 4);
    char *exported = strdup(last.out);
    write_text(test_file("export.csv"), exported);

    char first_db[700];
    strcpy(first_db, db_path);
    snprintf(db_path, sizeof(db_path), "%s/second.db", test_dir);
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("import", test_file("export.csv"), "--create-accounts"), 0);
    assert_out_has("imported 3 mappings");
    ck_assert_int_eq(cli("export", "--format", "csv"), 0);
    ck_assert_str_eq(last.out, exported);
    free(exported);
    strcpy(db_path, first_db);
}
END_TEST

START_TEST(test_import_bad_line_imports_nothing)
{
    ck_assert_int_eq(cli("init"), 0);
    char csv[600];
    snprintf(csv, sizeof(csv), "kind,key,account\ncert,%s,alice\ncert,%s,bob\nspki,not-hex,carol\n",
             fp_of("alice"), fp_of("bob"));
    write_text(test_file("bad.csv"), csv);
    char *before = db_dump(db_path);
    cli("import", test_file("bad.csv"));
    assert_one_line_failure(1, "line 4");
    assert_err_has("nothing imported");
    assert_db_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_import_jsonl_from_stdin_without_progress)
{
    ck_assert_int_eq(cli("init"), 0);
    char jsonl[600];
    snprintf(jsonl, sizeof(jsonl),
             "{\"kind\":\"cert\",\"key\":\"%s\",\"account\":\"alice\"}\n"
             "{\"kind\":\"cert\",\"key\":\"%s\",\"account\":\"bob\",\"note\":\"n\"}\n",
             fp_of("alice"), fp_of("bob"));
    write_text(test_file("in.jsonl"), jsonl);
    run_opts o = {.stdin_path = test_file("in.jsonl")};
    ck_assert_int_eq(cli_with(&o, "import", "-", "--format", "jsonl", "--create-accounts", NULL),
                     0);
    assert_out_has("imported 2 mappings (2 accounts created)");
    /* stderr is a file, not a terminal: no progress. */
    ck_assert_str_eq(last.err, "");
    ck_assert_int_eq(cli("account", "ls", "--json"), 0);
    assert_out_has("\"name\":\"bob\"");
}
END_TEST

/* The import transaction skips SQLite's per-row foreign-key lookup: every row must still point at
 * its account. */
START_TEST(test_import_ties_every_mapping_to_its_account)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st;

    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("account", "add", "alice"), 0);
    char csv[700];
    snprintf(csv, sizeof(csv), "kind,key,account\ncert,%s,alice\ncert,%s,bob\nspki,%s,bob\n",
             fp_of("alice"), fp_of("bob"), fp_of("carol"));
    write_text(test_file("in.csv"), csv);
    ck_assert_int_eq(cli("import", test_file("in.csv"), "--create-accounts"), 0);
    assert_out_has("imported 3 mappings (1 accounts created)");
    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT a.name, count(*) FROM mappings m JOIN accounts a"
                                        " ON a.id = m.account_id GROUP BY a.name ORDER BY a.name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "alice");
    ck_assert_int_eq(sqlite3_column_int(st, 1), 1);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "bob");
    ck_assert_int_eq(sqlite3_column_int(st, 1), 2);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

START_TEST(test_export_server_maps)
{
    init_with_alice();
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--account", "bob", "--create-account"),
                     0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-b.pem")), 0);
    ck_assert_int_eq(cli("map", "add", pki_file("carol.pem"), "--account", "carol",
                         "--create-account", "--kind", "ski"),
                     0);
    ck_assert_int_eq(cli("map", "disable", pki_file("bob.pem")), 0);

    ck_assert_int_eq(cli("export", "--format", "haproxy-map"), 0);
    char want[200];
    snprintf(want, sizeof(want), "%s alice\n", fp_of("alice"));
    ck_assert_str_eq(last.out, want);
    assert_one_line_failure(0, "exported 1 certificates; left out: 1 mapping-disabled, 1 mappings "
                               "without a key this format can use");

    unsigned char sha1[20];
    unsigned int len = 0;
    ck_assert(X509_digest(pki_cert("alice"), EVP_sha1(), sha1, &len));
    char hex[41];
    for (int i = 0; i < 20; i++)
        sprintf(hex + 2 * i, "%02x", sha1[i]);
    ck_assert_int_eq(cli("export", "--format", "nginx-map"), 0);
    snprintf(want, sizeof(want), "%s alice;\n", hex);
    /* carol's ski mapping was made from her certificate, so nginx gets it too. */
    ck_assert_msg(strstr(last.out, want) != NULL, "%s", last.out);
    ck_assert_int_eq(count_lines(last.out), 2);
    ck_assert_ptr_null(strstr(last.out, "bob"));

    ck_assert_int_eq(cli("export", "--format", "json"), 0);
    ck_assert_int_eq(count_lines(last.out), 3);
    assert_out_has("\"account\":\"bob\"");
    assert_out_has("\"enabled\":false");
}
END_TEST

START_TEST(test_log_and_stats)
{
    init_with_alice();
    ck_assert_int_eq(cli("log"), 0);
    assert_out_has("pin add");
    assert_out_has("map add");
    ck_assert_int_ge(count_lines(last.out), 2);
    ck_assert_int_eq(cli("log", "--json"), 0);
    ck_assert_int_eq(last.out[0], '[');
    assert_out_has("\"command\":\"certstore --db ");
    assert_out_has("\"user\":\"root\"");
    ck_assert_int_eq(cli("log", "--since", "2999-01-01", "--json"), 0);
    ck_assert_str_eq(last.out, "[]\n");

    ck_assert_int_eq(cli("stats"), 0);
    assert_out_has("pins: 1 (1 enabled)");
    assert_out_has("accounts: 1 (1 enabled)");
    assert_out_has("mappings-cert: 1");
    ck_assert_int_eq(cli("stats", "--json"), 0);
    assert_out_has("\"pins\":1,\"pins_enabled\":1,\"accounts\":1");
    assert_out_has("\"mappings_by_kind\":{\"cert\":1,\"issuer-serial\":0,\"ski\":0,\"spki\":0}");
}
END_TEST

START_TEST(test_untrusted_text_is_escaped)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("account", "add", "acme", "--note", "line1\nline2\x1b[31m\\"), 0);
    ck_assert_int_eq(cli("account", "ls"), 0);
    ck_assert_int_eq(count_lines(last.out), 1);
    assert_out_has("note=line1\\x0aline2\\x1b[31m\\\n");
    ck_assert_int_eq(cli("account", "ls", "--json"), 0);
    assert_out_has("\"note\":\"line1\\nline2\\u001b[31m\\\\\"");
}
END_TEST

START_TEST(test_permission_warning)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(chmod(db_path, 0666), 0);
    ck_assert_int_eq(cli("stats"), 0);
    assert_one_line_failure(0, "writable by group or others");
    ck_assert_int_eq(chmod(db_path, 0600), 0);
    ck_assert_int_eq(cli("stats"), 0);
    ck_assert_str_eq(last.err, "");
}
END_TEST

/* ---- bad input ----------------------------------------------------------- */

/* Each bad certificate file, given to pin add, map add and check: one line, db unchanged. */
static void assert_bad_cert_file(const char *path, const char *phrase)
{
    char *before = db_dump(db_path);
    cli("pin", "add", path);
    assert_one_line_failure(1, phrase);
    assert_err_has("certstore: pin add: ");
    cli("map", "add", path, "--account", "alice");
    assert_one_line_failure(1, phrase);
    cli("map", "rm", path);
    assert_one_line_failure(1, phrase);
    cli("check", path, "--ca", pki_file("roots.pem"));
    assert_one_line_failure(1, phrase);
    ck_assert_str_eq(last.out, "");
    cli("check", pki_file("alice-chain.pem"), "--ca", path);
    assert_one_line_failure(1, phrase);
    assert_db_unchanged(before);
    free(before);
}

START_TEST(test_bad_certificate_files)
{
    init_with_alice();
    char *pem = read_file(pki_file("alice.pem"), NULL);

    write_text(test_file("empty.pem"), "");
    assert_bad_cert_file(test_file("empty.pem"), "empty.pem: empty file");

    /* Truncated in the middle of the base64. */
    write_file(test_file("truncated.pem"), pem, strlen(pem) / 2);
    assert_bad_cert_file(test_file("truncated.pem"), "truncated.pem: malformed PEM");

    write_text(test_file("garbage.pem"),
               "-----BEGIN CERTIFICATE-----\n!!!! not base64 at all !!!!\n"
               "-----END CERTIFICATE-----\n");
    assert_bad_cert_file(test_file("garbage.pem"), "garbage.pem: malformed PEM");

    /* Valid base64, but not a certificate inside. */
    write_text(
        test_file("notcert.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n");
    assert_bad_cert_file(test_file("notcert.pem"), "notcert.pem: malformed certificate in PEM");

    assert_bad_cert_file(pki_file("alice.key"),
                         "alice.key: not a certificate (found a PRIVATE KEY)");

    /* The same key as DER. */
    const testpki_cred *alice = testpki_get(pki, "alice");
    unsigned char *der = NULL;
    int len = i2d_PrivateKey(alice->key, &der);
    ck_assert_int_gt(len, 0);
    write_file(test_file("alice-key.der"), der, (size_t)len);
    OPENSSL_free(der);
    assert_bad_cert_file(test_file("alice-key.der"), "not a certificate (found a PRIVATE KEY)");

    /* A truncated DER certificate. */
    der = NULL;
    len = i2d_X509(alice->cert, &der);
    ck_assert_int_gt(len, 100);
    write_file(test_file("truncated.der"), der, (size_t)len - 40);
    OPENSSL_free(der);
    assert_bad_cert_file(test_file("truncated.der"), "truncated.der: malformed DER certificate");

    write_text(test_file("text.txt"), "hello, I am not a certificate\n");
    assert_bad_cert_file(test_file("text.txt"),
                         "text.txt: not a certificate (neither PEM nor DER)");

    write_text(test_file("pubkey.pem"),
               "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    assert_bad_cert_file(test_file("pubkey.pem"), "found a PEM block labelled 'PUBLIC KEY'");

    cli("pin", "add", test_file("does-not-exist.pem"));
    assert_one_line_failure(1, "No such file or directory");
    free(pem);
}
END_TEST

START_TEST(test_huge_garbage_file_refused_quickly)
{
    init_with_alice();
    const char *path = test_file("huge.bin");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    /* 100 MB, sparse apart from some garbage at both ends. */
    ck_assert_int_eq(write(fd, "\x30\x82garbage", 9), 9);
    ck_assert_int_eq(ftruncate(fd, 100L * 1024 * 1024), 0);
    ck_assert_int_eq(pwrite(fd, "tail", 4, 100L * 1024 * 1024 - 4), 4);
    close(fd);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_bad_cert_file(path, "huge.bin: file too large (limit 1 MiB)");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(seconds < 20.0, "five refusals took %.1f s", seconds);

    unlink(path);
    /* A device has no size to look at: the read limit refuses it. */
    cli("pin", "add", "/dev/zero");
    assert_one_line_failure(1, "/dev/zero: file too large (limit 1 MiB)");
}
END_TEST

START_TEST(test_not_sqlite_database)
{
    char garbage[8192];
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)(i * 7 + 3);
    write_file(db_path, garbage, sizeof(garbage));

    cli("pin", "add", pki_file("ca-a.pem"));
    assert_one_line_failure(1, db_path);
    cli("pin", "ls");
    assert_one_line_failure(1, db_path);
    cli("init");
    assert_one_line_failure(1, db_path);
    assert_decision("alice-chain.pem", "reject store-unavailable");

    size_t len = 0;
    char *after = read_file(db_path, &len);
    ck_assert_uint_eq(len, sizeof(garbage));
    ck_assert(memcmp(after, garbage, len) == 0);
    free(after);
}
END_TEST

START_TEST(test_newer_schema_refused_untouched)
{
    init_with_alice();
    set_user_version(db_path, 99);
    char *before = db_dump(db_path);
    cli("pin", "add", pki_file("ca-b.pem"));
    assert_one_line_failure(1, db_path);
    cli("map", "rm", "1");
    assert_one_line_failure(1, db_path);
    cli("init");
    assert_one_line_failure(1, db_path);
    cli("map", "ls");
    assert_one_line_failure(1, db_path);
    assert_decision("alice-chain.pem", "reject store-unavailable");
    assert_db_unchanged(before);
    free(before);
}
END_TEST

START_TEST(test_read_only_database)
{
    init_with_alice();
    /* Root writes anything: run as nobody, who may read but not write. */
    ck_assert_int_eq(chmod(test_dir, 0755), 0);
    ck_assert_int_eq(chmod(db_path, 0644), 0);
    char *before = db_dump(db_path);
    run_opts o = {.uid = NOBODY_UID};
    cli_with(&o, "pin", "add", pki_file("ca-b.pem"), NULL);
    assert_one_line_failure(1, "read-only");
    cli_with(&o, "map", "disable", "1", NULL);
    assert_one_line_failure(1, "read-only");
    cli_with(&o, "account", "add", "eve", NULL);
    assert_one_line_failure(1, "read-only");
    assert_db_unchanged(before);
    free(before);
    ck_assert_int_eq(chmod(test_dir, 0700), 0);
}
END_TEST

/* ---- export and import keep every decision ---------------------------------- */

static const char *const roundtrip_chains[] = {
    "alice-chain.pem",   "alice-renewed-chain.pem", "bob-chain.pem",
    "carol-chain.pem",   "mallory-chain.pem",       "direct.pem",
    "expired-chain.pem", "noclient-chain.pem",      "selfsigned.pem",
};

/* One store with every field that changes a decision, each used by a test certificate. */
static void build_store_with_every_field(void)
{
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-a.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-b.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("ca-twin.pem")), 0);
    ck_assert_int_eq(cli("pin", "add", pki_file("root.pem")), 0);
    /* accepted, with a note CSV must quote */
    ck_assert_int_eq(cli("map", "add", pki_file("alice.pem"), "--account", "alice",
                         "--create-account", "--note", "plain, \"quoted\"\nand a second line"),
                     0);
    /* issued-before-mapping */
    ck_assert_int_eq(cli("map", "add", pki_file("alice-renewed.pem"), "--account", "alice",
                         "--not-issued-before", "created"),
                     0);
    /* restricted to a pin, not yet valid */
    ck_assert_int_eq(cli("map", "add", pki_file("bob.pem"), "--kind", "spki", "--account", "bob",
                         "--create-account", "--pin", fp_of("ca-a"), "--not-before", "2099-01-01"),
                     0);
    /* account disabled */
    ck_assert_int_eq(cli("map", "add", pki_file("carol.pem"), "--kind", "issuer-serial",
                         "--account", "carol", "--create-account"),
                     0);
    ck_assert_int_eq(cli("account", "disable", "carol"), 0);
    /* mapping disabled */
    ck_assert_int_eq(
        cli("map", "add", pki_file("mallory.pem"), "--account", "mallory", "--create-account"), 0);
    ck_assert_int_eq(cli("map", "disable", pki_file("mallory.pem")), 0);
    /* window over */
    ck_assert_int_eq(cli("map", "add", pki_file("direct.pem"), "--kind", "ski", "--account",
                         "direct", "--create-account", "--not-before", "2019-01-01", "--not-after",
                         "2020-01-01T12:30:00Z"),
                     0);
    ck_assert_int_eq(cli("map", "add", pki_file("expired.pem"), "--account", "alice"), 0);
}

/* Every test certificate's decision in the store at db, without mapping ids. */
static char *decisions_of(const char *db)
{
    char saved[sizeof(db_path)], target[sizeof(db_path)];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    snprintf(target, sizeof(target), "%s", db);
    strcpy(saved, db_path);
    strcpy(db_path, target);
    for (size_t i = 0; i < sizeof(roundtrip_chains) / sizeof(roundtrip_chains[0]); i++) {
        int status = check_chain(roundtrip_chains[i]);
        size_t first = strcspn(last.out, "\n");
        char line[512];

        snprintf(line, sizeof(line), "%.*s", (int)first, last.out);
        char *id = strstr(line, " mapping=");
        if (id != NULL) {
            char *end = id + 1 + strcspn(id + 1, " ");
            memmove(id, end, strlen(end) + 1);
        }
        fprintf(f, "%s: %d %s\n", roundtrip_chains[i], status, line);
    }
    fclose(f);
    strcpy(db_path, saved);
    return buf;
}

static char *export_text(const char *db, const char *format)
{
    cli_db(db, "export", "--format", format, NULL);
    assert_ok();
    ck_assert_str_eq(last.err, "");
    return strdup(last.out);
}

/* A fresh store at test_dir/NAME.db holding what `text` says; its path. */
static const char *import_fresh(const char *name, const char *text)
{
    static char dbs[4][800];
    static int next;
    char *db = dbs[next++ % 4];
    char file[800];

    snprintf(db, sizeof(dbs[0]), "%s/%s.db", test_dir, name);
    snprintf(file, sizeof(file), "%s/%s.in", test_dir, name);
    write_text(file, text);
    ck_assert_int_eq(cli_db(db, "init", NULL), 0);
    /* Pins are not mappings: the new store trusts the same issuers. */
    static const char *const pins[] = {"ca-a.pem", "ca-b.pem", "ca-twin.pem", "root.pem"};
    for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
        ck_assert_int_eq(cli_db(db, "pin", "add", pki_file(pins[i]), NULL), 0);
    cli_db(db, "import", file, "--create-accounts", NULL);
    assert_ok();
    return db;
}

START_TEST(test_export_import_keeps_every_decision)
{
    static const char *const formats[] = {"csv", "json"};

    build_store_with_every_field();
    char *want = decisions_of(db_path);
    /* The fixture is worth something only if it covers each outcome. */
    static const char *const outcomes[] = {
        "accept",           "issued-before-mapping", "mapping-not-yet-valid", "account-disabled",
        "mapping-disabled", "mapping-expired",       "chain-invalid",
    };
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        ck_assert_msg(strstr(want, outcomes[i]) != NULL, "no %s in:\n%s", outcomes[i], want);

    for (size_t i = 0; i < 2; i++) {
        char name[32];
        char *first = export_text(db_path, formats[i]);
        snprintf(name, sizeof(name), "%s-1", formats[i]);
        const char *once = import_fresh(name, first);
        char *got = decisions_of(once);
        ck_assert_msg(strcmp(want, got) == 0,
                      "%s: decisions differ after import:\nwant:\n%s\ngot:\n%s", formats[i], want,
                      got);

        char *second = export_text(once, formats[i]);
        snprintf(name, sizeof(name), "%s-2", formats[i]);
        const char *twice = import_fresh(name, second);
        char *third = export_text(twice, formats[i]);
        ck_assert_msg(strcmp(second, third) == 0,
                      "%s: export changed on a second round trip:\n%s\n---\n%s", formats[i], second,
                      third);
        char *again = decisions_of(twice);
        ck_assert_str_eq(want, again);
        free(first);
        free(got);
        free(second);
        free(third);
        free(again);
    }
    free(want);
}
END_TEST

/* ---- symbolic links and unsafe directories -------------------------------- */

/* A root-owned 0600 file an attacker would like root to chmod, chown or write. */
static const char *make_victim(void)
{
    const char *victim = test_file("victim");
    write_text(victim, "precious\n");
    ck_assert_int_eq(chmod(victim, 0600), 0);
    return victim;
}

static void assert_victim_untouched(const char *victim)
{
    struct stat st;
    ck_assert_int_eq(lstat(victim, &st), 0);
    ck_assert_msg((st.st_mode & 07777) == 0600, "victim mode changed to %04o",
                  (unsigned)(st.st_mode & 07777));
    ck_assert_msg(st.st_uid == 0 && st.st_gid == 0, "victim owner changed to %u:%u",
                  (unsigned)st.st_uid, (unsigned)st.st_gid);
    char *text = read_file(victim, NULL);
    ck_assert_str_eq(text, "precious\n");
    free(text);
}

/* A database in its own directory, handed to nobody afterwards (the attacker). */
static void init_in_dir_given_to_nobody(char *dir, size_t len)
{
    snprintf(dir, len, "%s", test_file("shared"));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_lt(snprintf(db_path, sizeof(db_path), "%s/certstore.db", dir),
                     (int)sizeof(db_path));
    ck_assert_int_eq(cli("init"), 0);
    ck_assert_int_eq(chown(dir, NOBODY_UID, NOGROUP_GID), 0);
}

static void plant_symlink(const char *target, const char *link)
{
    unlink(link);
    ck_assert_msg(symlink(target, link) == 0, "symlink %s: %s", link, strerror(errno));
}

START_TEST(test_symlinked_sidecar_in_foreign_dir_not_followed)
{
    static const char *const sidecars[] = {"-wal", "-shm"};
    char dir[700], link[800];

    for (size_t i = 0; i < 2; i++) {
        setup();
        const char *victim = make_victim();
        init_in_dir_given_to_nobody(dir, sizeof(dir));
        snprintf(link, sizeof(link), "%s%s", db_path, sidecars[i]);
        plant_symlink(victim, link);
        /* A write that succeeds and one that fails: neither may touch the target. */
        cli("account", "add", "eve");
        assert_one_line_failure(1, dir);
        assert_err_has("owned by uid 65534");
        assert_victim_untouched(victim);
        cli("pin", "add", test_file("no-such.pem"));
        ck_assert_int_eq(last.status, 1);
        assert_victim_untouched(victim);
        free_last();
    }
}
END_TEST

START_TEST(test_symlinked_sidecar_refused_even_where_allowed)
{
    static const char *const sidecars[] = {"-wal", "-shm"};
    char link[800];

    for (size_t i = 0; i < 2; i++) {
        setup();
        const char *victim = make_victim();
        ck_assert_int_eq(cli("init"), 0);
        snprintf(link, sizeof(link), "%s%s", db_path, sidecars[i]);
        plant_symlink(victim, link);
        cli("--allow-unsafe-dir", "account", "add", "eve");
        assert_one_line_failure(1, "symbolic link");
        assert_victim_untouched(victim);
        /* Reading commands open the same files. */
        cli("stats");
        assert_one_line_failure(1, "symbolic link");
        assert_victim_untouched(victim);
        free_last();
    }
}
END_TEST

START_TEST(test_init_does_not_follow_symlinked_db)
{
    const char *elsewhere = test_file("elsewhere.db");
    plant_symlink(elsewhere, db_path);
    cli("init");
    assert_one_line_failure(1, "symbolic link");
    ck_assert_int_ne(access(elsewhere, F_OK), 0);
    /* An existing file behind the link is not written either. */
    const char *victim = make_victim();
    plant_symlink(victim, db_path);
    cli("init");
    assert_one_line_failure(1, "symbolic link");
    assert_victim_untouched(victim);
    cli("--allow-unsafe-dir", "pin", "add", pki_file("ca-a.pem"));
    ck_assert_int_eq(last.status, 1);
    assert_victim_untouched(victim);
}
END_TEST

START_TEST(test_world_writable_dir_refused_unless_allowed)
{
    char dir[700];
    snprintf(dir, sizeof(dir), "%s", test_file("open"));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(chmod(dir, 0777), 0);
    ck_assert_int_lt(snprintf(db_path, sizeof(db_path), "%s/certstore.db", dir),
                     (int)sizeof(db_path));
    cli("init");
    assert_one_line_failure(1, dir);
    assert_err_has("mode 0777");
    assert_err_has("--allow-unsafe-dir");
    ck_assert_int_ne(access(db_path, F_OK), 0);

    ck_assert_int_eq(cli("--allow-unsafe-dir", "init"), 0);
    cli("account", "add", "alice");
    assert_one_line_failure(1, "mode 0777");
    ck_assert_int_eq(cli("account", "add", "alice", "--allow-unsafe-dir"), 0);
    setenv("CERTSTORE_ALLOW_UNSAFE_DIR", "1", 1);
    ck_assert_int_eq(cli("account", "add", "bob"), 0);
    unsetenv("CERTSTORE_ALLOW_UNSAFE_DIR");

    /* Sticky and ours, like /tmp: others cannot replace our files there. */
    ck_assert_int_eq(chmod(dir, 01777), 0);
    ck_assert_int_eq(cli("account", "add", "carol"), 0);
    /* Group-writable is others too. */
    ck_assert_int_eq(chmod(dir, 0775), 0);
    cli("account", "add", "dave");
    assert_one_line_failure(1, "mode 0775");
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("commands");
    tcase_add_unchecked_fixture(tc, setup_suite, teardown_suite);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_help_everywhere);
    tcase_add_test(tc, test_usage_errors_exit_2);
    tcase_add_test(tc, test_db_from_env_and_option_after_command);
    tcase_add_test(tc, test_init_creates_and_is_idempotent);
    tcase_add_test(tc, test_commands_need_an_initialised_db);
    tcase_add_test(tc, test_pin_lifecycle);
    tcase_add_test(tc, test_pin_add_der_input);
    tcase_add_test(tc, test_pin_add_refuses_non_ca);
    tcase_add_test(tc, test_pin_add_root_says_what_it_pins);
    tcase_add_test(tc, test_account_lifecycle);
    tcase_add_test(tc, test_map_lifecycle);
    tcase_add_test(tc, test_map_add_binds_ski_and_issuer_serial_to_issuing_pin);
    tcase_add_test(tc, test_map_add_refuses_without_one_issuing_pin);
    tcase_add_test(tc, test_import_needs_pin_for_ski_and_issuer_serial);
    tcase_add_test(tc, test_every_write_command_bumps_generation);
    tcase_add_test(tc, test_narrowing_by_adding_bumps_generation);
    tcase_add_test(tc, test_export_csv_round_trips_through_import);
    tcase_add_test(tc, test_export_import_keeps_every_decision);
    tcase_add_test(tc, test_import_bad_line_imports_nothing);
    tcase_add_test(tc, test_import_jsonl_from_stdin_without_progress);
    tcase_add_test(tc, test_import_ties_every_mapping_to_its_account);
    tcase_add_test(tc, test_export_server_maps);
    tcase_add_test(tc, test_log_and_stats);
    tcase_add_test(tc, test_untrusted_text_is_escaped);
    tcase_add_test(tc, test_permission_warning);
    suite_add_tcase(s, tc);

    tc = tcase_create("check");
    tcase_add_unchecked_fixture(tc, setup_suite, teardown_suite);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_check_accepts_mapped_client);
    tcase_add_test(tc, test_check_renewed_cert_accepted_by_spki);
    tcase_add_test(tc, test_check_unpinned_issuer_rejected);
    tcase_add_test(tc, test_check_same_dn_twin_ca_rejected);
    tcase_add_test(tc, test_check_disabled_pin_rejected);
    tcase_add_test(tc, test_check_unmapped_rejected);
    tcase_add_test(tc, test_check_disabled_mapping_rejected);
    tcase_add_test(tc, test_check_mapping_windows);
    tcase_add_test(tc, test_check_disabled_account_rejected);
    tcase_add_test(tc, test_check_missing_store_unavailable);
    tcase_add_test(tc, test_check_chain_invalid);
    tcase_add_test(tc, test_check_der_leaf_and_chain_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_unchecked_fixture(tc, setup_suite, teardown_suite);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_bad_certificate_files);
    tcase_add_test(tc, test_huge_garbage_file_refused_quickly);
    tcase_add_test(tc, test_not_sqlite_database);
    tcase_add_test(tc, test_newer_schema_refused_untouched);
    tcase_add_test(tc, test_read_only_database);
    suite_add_tcase(s, tc);

    tc = tcase_create("unsafe_paths");
    tcase_add_unchecked_fixture(tc, setup_suite, teardown_suite);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_symlinked_sidecar_in_foreign_dir_not_followed);
    tcase_add_test(tc, test_symlinked_sidecar_refused_even_where_allowed);
    tcase_add_test(tc, test_init_does_not_follow_symlinked_db);
    tcase_add_test(tc, test_world_writable_dir_refused_unless_allowed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
