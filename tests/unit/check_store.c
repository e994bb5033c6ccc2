/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store library: opening and migrations, read-only handles, pins,
 * accounts, mappings, keys and times, the policy generation, the change log,
 * import, and the persistent-WAL files that let unprivileged readers in.
 */
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "cs_store.h"
#include "testpki.h"

static testpki *pki;
static char *tmp_root;
static char test_dir[PATH_MAX];
static char db_path[PATH_MAX + 32];
static cs_db *db;

#define ck_ok(expr) ck_assert_msg((expr) == CS_OK, "%s failed: %s", #expr, cs_db_errmsg(db))
#define ck_status(expr, want)                                                                      \
    ck_assert_msg((expr) == (want), "%s: expected status %d: %s", #expr, (int)(want),              \
                  cs_db_errmsg(db))

static void make_test_dir(void)
{
    ck_assert_int_lt(snprintf(test_dir, sizeof(test_dir), "%s/t-XXXXXX", tmp_root),
                     (int)sizeof(test_dir));
    ck_assert_ptr_nonnull(mkdtemp(test_dir));
    snprintf(db_path, sizeof(db_path), "%s/certstore.db", test_dir);
}

static void setup(void)
{
    make_test_dir();
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_CREATE), CS_OK);
    ck_ok(cs_db_migrate(db));
}

static void setup_no_db(void)
{
    make_test_dir();
    db = NULL;
}

static void teardown(void)
{
    cs_db_close(db);
    db = NULL;
    testpki_rmtree(test_dir);
}

/* ---- helpers ------------------------------------------------------------------ */

static void begin(void)
{
    ck_ok(cs_db_begin(db, "check_store"));
}

static void commit(void)
{
    ck_ok(cs_db_commit(db));
}

static int64_t generation(void)
{
    int64_t g = -1;

    ck_ok(cs_db_generation(db, &g));
    return g;
}

static void fp_of(const testpki_cred *cred, char fp[CS_FP_HEX_LEN + 1])
{
    ck_assert(cs_fp_of_cert(cred->cert, fp));
}

static void pin(const testpki_cred *ca)
{
    begin();
    ck_ok(cs_pin_add(db, ca->cert, NULL, NULL));
    commit();
}

static int64_t map_window(const testpki_cred *leaf, cs_kind kind, const char *account,
                          int64_t not_before, int64_t not_after)
{
    cs_mapping_spec spec = {0};
    int64_t id = 0;

    char issuer_fp[CS_FP_HEX_LEN + 1];

    ck_ok(cs_mapping_spec_from_cert(&spec, leaf->cert, kind));
    spec.account = account;
    spec.not_before = not_before;
    spec.not_after = not_after;
    /* ski and issuer-serial are bound to the issuing CA, as `map add` binds them. */
    if (cs_kind_needs_pin(kind)) {
        ck_assert(cs_fp_of_cert(testpki_issuer_of(pki, leaf)->cert, issuer_fp));
        spec.pin_fp = issuer_fp;
    }
    begin();
    ck_ok(cs_mapping_add(db, &spec, 1, &id));
    commit();
    return id;
}

static int64_t map(const testpki_cred *leaf, cs_kind kind, const char *account)
{
    return map_window(leaf, kind, account, CS_TIME_NONE, CS_TIME_NONE);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fwrite(data, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Whole file into a malloc'd buffer (for "unchanged" checks). */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    long size;

    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    size = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *len = (size_t)size;
    return buf;
}

static void ck_file_equals(const char *path, const unsigned char *want, size_t want_len)
{
    size_t len = 0;
    unsigned char *now_bytes = read_file(path, &len);

    ck_assert_int_eq(len, want_len);
    ck_assert_msg(memcmp(now_bytes, want, len) == 0, "%s changed", path);
    free(now_bytes);
}

static int file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *raw = NULL;
    char *err = NULL;

    ck_assert_int_eq(sqlite3_open(path, &raw), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(raw, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql,
                  err ? err : "");
    sqlite3_close(raw);
}

static cs_decision decide_with(cs_db *handle, const testpki_cred *leaf)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d;

    ck_assert_ptr_nonnull(chain);
    cs_decide(handle, chain, (int64_t)time(NULL), &d);
    sk_X509_pop_free(chain, X509_free);
    return d;
}

/* ---- open and migrations ------------------------------------------------------- */

START_TEST(test_migrate_creates_schema_version_1)
{
    int version = 0;

    ck_ok(cs_db_schema_version(db, &version));
    ck_assert_int_eq(version, CS_SCHEMA_VERSION);
    ck_ok(cs_db_migrate(db));
    ck_ok(cs_db_schema_version(db, &version));
    ck_assert_int_eq(version, CS_SCHEMA_VERSION);
    /* Created at 1; the step to schema 3 bumps it, as it does for an existing store. */
    ck_assert_int_eq(generation(), 2);
    ck_assert_str_eq(cs_db_path(db), db_path);
}
END_TEST

START_TEST(test_readonly_open_never_creates_file)
{
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
    ck_assert_str_ne(cs_db_errmsg(db), "");
    ck_assert(!file_exists(db_path));
}
END_TEST

START_TEST(test_writable_open_without_create_refuses_missing_file)
{
    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_ERR);
    ck_assert(!file_exists(db_path));
}
END_TEST

START_TEST(test_newer_schema_refused_and_untouched)
{
    unsigned char *before;
    size_t len = 0;
    char expected[96], sql[96];

    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_CREATE), CS_OK);
    ck_ok(cs_db_migrate(db));
    cs_db_close(db);
    db = NULL;
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode=DELETE; PRAGMA user_version = %d",
             CS_SCHEMA_VERSION + 1);
    raw_exec(db_path, sql);
    before = read_file(db_path, &len);

    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_ERR);
    snprintf(expected, sizeof(expected), "schema version %d is newer than this certstore (%d)",
             CS_SCHEMA_VERSION + 1, CS_SCHEMA_VERSION);
    ck_assert_msg(strstr(cs_db_errmsg(db), expected), "%s", cs_db_errmsg(db));
    ck_assert_int_eq(cs_db_migrate(db), CS_ERR);
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
    ck_assert(strstr(cs_db_errmsg(db), "newer") != NULL);
    cs_db_close(db);
    db = NULL;
    ck_file_equals(db_path, before, len);
    free(before);
}
END_TEST

START_TEST(test_non_sqlite_file_refused_and_untouched)
{
    static const char junk[] = "this is not a database, it is a text file\n";

    write_file(db_path, junk, sizeof(junk) - 1);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
    ck_assert_msg(strstr(cs_db_errmsg(db), "not a certstore database"), "%s", cs_db_errmsg(db));
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_ERR);
    ck_assert_int_eq(cs_db_migrate(db), CS_ERR);
    cs_db_close(db);
    db = NULL;
    ck_file_equals(db_path, (const unsigned char *)junk, sizeof(junk) - 1);
}
END_TEST

START_TEST(test_empty_file_refused_readonly)
{
    write_file(db_path, "", 0);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
    ck_assert_msg(strstr(cs_db_errmsg(db), "not a certstore database"), "%s", cs_db_errmsg(db));
    ck_assert_int_eq(decide_with(db, &pki->alice).reason, CS_REASON_STORE_UNAVAILABLE);
}
END_TEST

START_TEST(test_truncated_file_never_accepts)
{
    cs_decision d;
    int status;

    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_CREATE), CS_OK);
    ck_ok(cs_db_migrate(db));
    pin(&pki->ca_a);
    for (int i = 0; i < 200; i++) {
        char name[32];

        snprintf(name, sizeof(name), "acct-%d", i);
        begin();
        ck_ok(cs_account_add(db, name, "padding the file past its first pages"));
        commit();
    }
    map(&pki->alice, CS_KIND_CERT, "alice");
    cs_db_close(db);
    db = NULL;
    ck_assert_int_eq(truncate(db_path, 6000), 0);
    status = cs_db_open(&db, db_path, CS_OPEN_READONLY);
    d = decide_with(status == CS_OK ? db : NULL, &pki->alice);
    ck_assert(!d.accept);
    ck_assert_int_eq(d.reason, CS_REASON_STORE_UNAVAILABLE);
    cs_db_close(db);
    ck_assert_int_eq(truncate(db_path, 100), 0);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
}
END_TEST

START_TEST(test_foreign_sqlite_database_refused)
{
    raw_exec(db_path, "CREATE TABLE customers (id INTEGER PRIMARY KEY)");
    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_ERR);
    ck_assert(strstr(cs_db_errmsg(db), "not a certstore database") != NULL);
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_ERR);
}
END_TEST

START_TEST(test_readonly_handle_refuses_writes)
{
    cs_db *ro = NULL;

    ck_assert_int_eq(cs_db_open(&ro, db_path, CS_OPEN_READONLY), CS_OK);
    ck_assert_int_eq(cs_db_begin(ro, "x"), CS_INVALID);
    ck_assert_int_eq(cs_db_migrate(ro), CS_INVALID);
    ck_assert_int_eq(cs_account_add(ro, "acme", NULL), CS_INVALID);
    cs_db_close(ro);
}
END_TEST

START_TEST(test_readonly_open_never_writes)
{
    cs_db *ro = NULL;
    cs_stats stats;
    unsigned char *before;
    size_t len = 0;
    struct stat st_before, st_after;

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    cs_db_close(db);
    db = NULL;
    before = read_file(db_path, &len);
    ck_assert_int_eq(stat(db_path, &st_before), 0);
    ck_assert_int_eq(cs_db_open(&ro, db_path, CS_OPEN_READONLY), CS_OK);
    ck_assert(decide_with(ro, &pki->alice).accept);
    ck_assert_int_eq(cs_stats_get(ro, &stats), CS_OK);
    ck_assert_int_eq(stats.mappings, 1);
    cs_db_close(ro);
    ck_assert_int_eq(stat(db_path, &st_after), 0);
    ck_file_equals(db_path, before, len);
    ck_assert_int_eq(st_after.st_mtime, st_before.st_mtime);
    free(before);
}
END_TEST

START_TEST(test_file_replacement_detected)
{
    cs_db *ro = NULL, *other = NULL;
    char other_path[PATH_MAX + 64];

    ck_assert_int_eq(cs_db_open(&ro, db_path, CS_OPEN_READONLY), CS_OK);
    ck_assert_int_eq(cs_db_file_replaced(ro), 0);
    snprintf(other_path, sizeof(other_path), "%s/other.db", test_dir);
    ck_assert_int_eq(cs_db_open(&other, other_path, CS_OPEN_CREATE), CS_OK);
    ck_assert_int_eq(cs_db_migrate(other), CS_OK);
    cs_db_close(other);
    ck_assert_int_eq(rename(other_path, db_path), 0);
    ck_assert_int_ne(cs_db_file_replaced(ro), 0);
    ck_assert_int_eq(unlink(db_path), 0);
    ck_assert_int_ne(cs_db_file_replaced(ro), 0);
    ck_assert_int_ne(cs_db_file_replaced(NULL), 0);
    cs_db_close(ro);
}
END_TEST

/* ---- persistent WAL and unprivileged readers -------------------------------------- */

static void wal_paths(char *wal, char *shm, size_t len)
{
    snprintf(wal, len, "%s-wal", db_path);
    snprintf(shm, len, "%s-shm", db_path);
}

START_TEST(test_wal_and_shm_persist_after_writer_closes)
{
    char wal[PATH_MAX + 64], shm[PATH_MAX + 64];
    struct stat st_db, st_wal, st_shm;

    pin(&pki->ca_a);
    cs_db_close(db);
    db = NULL;
    wal_paths(wal, shm, sizeof(wal));
    ck_assert_int_eq(stat(db_path, &st_db), 0);
    ck_assert_int_eq(stat(wal, &st_wal), 0);
    ck_assert_int_eq(stat(shm, &st_shm), 0);
    /* Checkpointed and truncated: the data lives in the main file. */
    ck_assert_int_eq(st_wal.st_size, 0);
    ck_assert_int_eq(st_wal.st_mode & 0777, st_db.st_mode & 0666);
    ck_assert_int_eq(st_shm.st_mode & 0777, st_db.st_mode & 0666);
    ck_assert_int_eq(st_wal.st_uid, st_db.st_uid);
    ck_assert_int_eq(st_shm.st_gid, st_db.st_gid);
}
END_TEST

/* In a child running as `nobody`: 0 if read-only open and an accept work, writes fail. */
static int nobody_reads(const struct passwd *nobody)
{
    cs_db *ro = NULL, *rw = NULL;
    int code = 0;

    if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
        return 10;
    if (cs_db_open(&ro, db_path, CS_OPEN_READONLY) != CS_OK) {
        fprintf(stderr, "nobody: %s\n", cs_db_errmsg(ro));
        code = 11;
    } else if (!decide_with(ro, &pki->alice).accept) {
        fprintf(stderr, "nobody: rejected: %s\n", decide_with(ro, &pki->alice).detail);
        code = 12;
    }
    if (code == 0 && cs_db_open(&rw, db_path, 0) == CS_OK && cs_db_begin(rw, "x") == CS_OK &&
        cs_account_add(rw, "intruder", NULL) == CS_OK && cs_db_commit(rw) == CS_OK)
        code = 13;
    cs_db_close(rw);
    cs_db_close(ro);
    return code;
}

START_TEST(test_unprivileged_reader_opens_readonly_after_writer_closed)
{
    struct passwd *nobody = getpwnam("nobody");
    pid_t pid;
    int wstatus = 0;

    if (geteuid() != 0) {
        fputs("test_unprivileged_reader...: needs root to become nobody; not run\n", stderr);
        return;
    }
    ck_assert_ptr_nonnull(nobody);
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    cs_db_close(db);
    db = NULL;
    /* nobody may traverse and read, never write the directory or the files. */
    ck_assert_int_eq(chmod(tmp_root, 0755), 0);
    ck_assert_int_eq(chmod(test_dir, 0755), 0);
    ck_assert_int_eq(chmod(db_path, 0644), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(nobody_reads(nobody));
    ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
    ck_assert(WIFEXITED(wstatus));
    ck_assert_msg(WEXITSTATUS(wstatus) == 0, "child as nobody failed with %d",
                  WEXITSTATUS(wstatus));
}
END_TEST

/* ---- pins ------------------------------------------------------------------------- */

static int count_pin(const cs_pin *p, void *arg)
{
    (void)p;
    ++*(int *)arg;
    return 0;
}

static int check_pin_der(const cs_pin *p, void *arg)
{
    const X509 *want = arg;
    unsigned char *der = NULL;
    int len = i2d_X509(want, &der);

    ck_assert_int_eq((int)p->der_len, len);
    ck_assert(memcmp(p->der, der, (size_t)len) == 0);
    ck_assert_str_eq(p->subject, "CN=Partner CA A,O=certstore tests");
    ck_assert_str_eq(p->note, "partner A");
    ck_assert_int_eq(p->enabled, 1);
    OPENSSL_free(der);
    return 0;
}

START_TEST(test_pin_add_keeps_whole_der)
{
    char fp[CS_FP_HEX_LEN + 1], want[CS_FP_HEX_LEN + 1];

    begin();
    ck_ok(cs_pin_add(db, pki->ca_a.cert, "partner A", fp));
    commit();
    fp_of(&pki->ca_a, want);
    ck_assert_str_eq(fp, want);
    ck_ok(cs_pin_get(db, fp, check_pin_der, pki->ca_a.cert));
}
END_TEST

START_TEST(test_pin_add_refuses_non_ca)
{
    begin();
    ck_status(cs_pin_add(db, pki->alice.cert, NULL, NULL), CS_INVALID);
    ck_assert(strstr(cs_db_errmsg(db), "CA") != NULL);
    ck_status(cs_pin_add(db, pki->selfsigned.cert, NULL, NULL), CS_INVALID);
    cs_db_rollback(db);
}
END_TEST

/* The pin that issued a leaf is the one whose key verifies it, never one with its DN only. */
START_TEST(test_pin_find_issuer_by_signature)
{
    char found[CS_FP_HEX_LEN + 1], want[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_find_issuer(db, pki->alice.cert, found), CS_NOTFOUND);
    pin(&pki->ca_twin);
    ck_assert_int_eq(cs_pin_find_issuer(db, pki->alice.cert, found), CS_NOTFOUND);
    ck_ok(cs_pin_find_issuer(db, pki->mallory.cert, found));
    fp_of(&pki->ca_twin, want);
    ck_assert_str_eq(found, want);
    pin(&pki->ca_a);
    ck_ok(cs_pin_find_issuer(db, pki->alice.cert, found));
    fp_of(&pki->ca_a, want);
    ck_assert_str_eq(found, want);
    pin(&pki->ca_b);
    ck_ok(cs_pin_find_issuer(db, pki->eve.cert, found));
    fp_of(&pki->ca_b, want);
    ck_assert_str_eq(found, want);
    /* Renewed with the same DN and key: both verify alice, the caller must choose. */
    pin(&pki->ca_a_renewed);
    ck_assert_int_eq(cs_pin_find_issuer(db, pki->alice.cert, found), CS_EXISTS);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(db), "2 pinned CAs"));
}
END_TEST

START_TEST(test_pin_add_twice_exists)
{
    pin(&pki->ca_a);
    begin();
    ck_status(cs_pin_add(db, pki->ca_a.cert, NULL, NULL), CS_EXISTS);
    cs_db_rollback(db);
}
END_TEST

START_TEST(test_pin_fingerprint_input_any_case_with_colons)
{
    char fp[CS_FP_HEX_LEN + 1], shouty[3 * CS_FP_HEX_LEN];
    int n = 0;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    for (int i = 0; i < CS_FP_HEX_LEN; i += 2)
        n += snprintf(shouty + n, sizeof(shouty) - (size_t)n, "%s%c%c", i ? ":" : "",
                      toupper((unsigned char)fp[i]), toupper((unsigned char)fp[i + 1]));
    begin();
    ck_ok(cs_pin_set_enabled(db, shouty, 0));
    ck_ok(cs_pin_remove(db, shouty));
    ck_status(cs_pin_remove(db, fp), CS_NOTFOUND);
    ck_status(cs_pin_remove(db, "abcd"), CS_INVALID);
    commit();
    n = 0;
    ck_ok(cs_pin_foreach(db, count_pin, &n));
    ck_assert_int_eq(n, 0);
}
END_TEST

/* ---- accounts --------------------------------------------------------------------- */

START_TEST(test_account_names_validated)
{
    char long_name[CS_ACCOUNT_MAX + 2];

    memset(long_name, 'a', sizeof(long_name));
    long_name[CS_ACCOUNT_MAX] = '\0';
    ck_assert(cs_account_name_valid(long_name));
    long_name[CS_ACCOUNT_MAX] = 'a';
    long_name[CS_ACCOUNT_MAX + 1] = '\0';
    ck_assert(!cs_account_name_valid(long_name));
    ck_assert(cs_account_name_valid("acme corp"));
    ck_assert(cs_account_name_valid("M\xc3\xbcller GmbH"));
    ck_assert(cs_account_name_valid("\xf0\x9f\x94\x92 vault"));
    ck_assert(!cs_account_name_valid(""));
    ck_assert(!cs_account_name_valid(NULL));
    ck_assert(!cs_account_name_valid("tab\there"));
    ck_assert(!cs_account_name_valid("line\nbreak"));
    ck_assert(!cs_account_name_valid("del\x7f"));
    ck_assert(!cs_account_name_valid("c1\xc2\x85"));
    ck_assert(!cs_account_name_valid("bad\xc3"));
    ck_assert(!cs_account_name_valid("overlong\xc0\xaf"));
    ck_assert(!cs_account_name_valid("surrogate\xed\xa0\x80"));
    begin();
    ck_status(cs_account_add(db, "ctl\x01", NULL), CS_INVALID);
    cs_db_rollback(db);
}
END_TEST

START_TEST(test_account_note_limit)
{
    char *note = malloc(CS_NOTE_MAX + 2);

    memset(note, 'n', CS_NOTE_MAX + 1);
    note[CS_NOTE_MAX + 1] = '\0';
    begin();
    ck_status(cs_account_add(db, "acme", note), CS_INVALID);
    note[CS_NOTE_MAX] = '\0';
    ck_ok(cs_account_add(db, "acme", note));
    ck_status(cs_account_add(db, "acme", NULL), CS_EXISTS);
    commit();
    free(note);
}
END_TEST

typedef struct {
    int count;
    int64_t mappings_of_acme;
    int acme_enabled;
} account_tally;

static int tally_account(const cs_account *a, void *arg)
{
    account_tally *t = arg;

    t->count++;
    if (strcmp(a->name, "acme") == 0) {
        t->mappings_of_acme = a->mappings;
        t->acme_enabled = a->enabled;
    }
    return 0;
}

START_TEST(test_account_remove_refused_while_in_use)
{
    account_tally t = {0};

    map(&pki->alice, CS_KIND_CERT, "acme");
    map(&pki->bob, CS_KIND_CERT, "acme");
    ck_ok(cs_account_foreach(db, tally_account, &t));
    ck_assert_int_eq(t.mappings_of_acme, 2);
    begin();
    ck_status(cs_account_remove(db, "acme", 0), CS_INUSE);
    ck_status(cs_account_remove(db, "nobody-here", 0), CS_NOTFOUND);
    ck_ok(cs_account_remove(db, "acme", 1));
    commit();
    memset(&t, 0, sizeof(t));
    ck_ok(cs_account_foreach(db, tally_account, &t));
    ck_assert_int_eq(t.count, 0);
    ck_assert_int_eq(decide_with(db, &pki->alice).reason, CS_REASON_ISSUER_NOT_PINNED);
}
END_TEST

START_TEST(test_account_enable_disable)
{
    account_tally t = {0};

    begin();
    ck_ok(cs_account_add(db, "acme", NULL));
    ck_ok(cs_account_set_enabled(db, "acme", 0));
    ck_status(cs_account_set_enabled(db, "ghost", 0), CS_NOTFOUND);
    commit();
    ck_ok(cs_account_foreach(db, tally_account, &t));
    ck_assert_int_eq(t.acme_enabled, 0);
}
END_TEST

/* ---- mappings --------------------------------------------------------------------- */

START_TEST(test_mapping_needs_account_unless_create)
{
    cs_mapping_spec spec = {0};

    ck_ok(cs_mapping_spec_from_cert(&spec, pki->alice.cert, CS_KIND_CERT));
    spec.account = "acme";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    begin();
    ck_status(cs_mapping_add(db, &spec, 0, NULL), CS_NOTFOUND);
    ck_ok(cs_mapping_add(db, &spec, 1, NULL));
    ck_status(cs_mapping_add(db, &spec, 1, NULL), CS_EXISTS);
    spec.not_before = 200;
    spec.not_after = 100;
    spec.kind = CS_KIND_SPKI;
    ck_status(cs_mapping_add(db, &spec, 1, NULL), CS_INVALID);
    commit();
}
END_TEST

typedef struct {
    int count;
    cs_mapping last;
    char account[CS_ACCOUNT_MAX + 1];
    char note[64];
} mapping_tally;

static int tally_mapping(const cs_mapping *m, void *arg)
{
    mapping_tally *t = arg;

    t->count++;
    t->last = *m;
    snprintf(t->account, sizeof(t->account), "%s", m->account);
    snprintf(t->note, sizeof(t->note), "%s", m->note);
    t->last.account = t->account;
    t->last.note = t->note;
    t->last.pin_fp = NULL;
    t->last.subject = NULL;
    return 0;
}

typedef struct {
    int count;
    unsigned char der[4096];
    size_t der_len;
    char subject[512], issuer[512], serial[80], fp[CS_FP_HEX_LEN + 1];
    int64_t not_before, not_after;
} kept_cert;

static int copy_kept_cert(const cs_mapping_cert *c, void *arg)
{
    kept_cert *k = arg;

    k->count++;
    ck_assert_uint_le(c->der_len, sizeof(k->der));
    memcpy(k->der, c->der, c->der_len);
    k->der_len = c->der_len;
    snprintf(k->subject, sizeof(k->subject), "%s", c->subject);
    snprintf(k->issuer, sizeof(k->issuer), "%s", c->issuer);
    snprintf(k->serial, sizeof(k->serial), "%s", c->serial);
    snprintf(k->fp, sizeof(k->fp), "%s", c->fp);
    k->not_before = c->not_before;
    k->not_after = c->not_after;
    return 0;
}

static int copy_subject(const cs_mapping *m, void *arg)
{
    snprintf(arg, 512, "%s", m->subject != NULL ? m->subject : "(none)");
    return 0;
}

START_TEST(test_mapping_keeps_the_certificate_it_was_made_from)
{
    kept_cert k = {0};
    unsigned char *der = NULL;
    int der_len = i2d_X509(pki->alice.cert, &der);
    char subject[512], issuer[512], fp[CS_FP_HEX_LEN + 1], listed[512];
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(pki->alice.cert), NULL);
    char *serial_hex = BN_bn2hex(serial);
    cs_mapping_ref by_id = {0};
    cs_mapping_spec from_key = {0};
    int64_t spki_id, key_id;
    X509 *back = NULL;

    by_id.id = map(&pki->alice, CS_KIND_CERT, "acme");
    ck_ok(cs_mapping_cert_get(db, by_id.id, copy_kept_cert, &k));
    ck_assert_int_eq(k.count, 1);
    ck_assert_int_eq((int)k.der_len, der_len);
    ck_assert_mem_eq(k.der, der, k.der_len);
    cs_name_text(X509_get_subject_name(pki->alice.cert), subject, sizeof(subject));
    cs_name_text(X509_get_issuer_name(pki->alice.cert), issuer, sizeof(issuer));
    ck_assert_str_eq(k.subject, subject);
    ck_assert_str_eq(k.issuer, issuer);
    ck_assert_ptr_nonnull(strstr(k.subject, "CN="));
    ck_assert_str_eq(k.serial, serial_hex);
    fp_of(&pki->alice, fp);
    ck_assert_str_eq(k.fp, fp);
    ck_assert_int_ne(k.not_before, CS_TIME_NONE);
    ck_assert_int_gt(k.not_after, k.not_before);
    ck_ok(cs_mapping_cert_x509(db, by_id.id, &back));
    ck_assert_int_eq(X509_cmp(back, pki->alice.cert), 0);
    X509_free(back);
    ck_ok(cs_mapping_get(db, &by_id, copy_subject, listed));
    ck_assert_str_eq(listed, subject);

    /* Another kind made from the same file keeps it too; one made from a key keeps none. */
    spki_id = map(&pki->alice, CS_KIND_SPKI, "acme");
    ck_ok(cs_mapping_cert_get(db, spki_id, copy_kept_cert, &k));
    ck_assert_int_eq(k.count, 2);
    from_key.kind = CS_KIND_CERT;
    ck_ok(cs_key_from_cert(pki->bob.cert, CS_KIND_CERT, &from_key.key));
    from_key.account = "acme";
    from_key.not_before = from_key.not_after = from_key.cert_not_after = CS_TIME_NONE;
    begin();
    ck_ok(cs_mapping_add(db, &from_key, 0, &key_id));
    commit();
    ck_status(cs_mapping_cert_get(db, key_id, copy_kept_cert, &k), CS_NOTFOUND);
    ck_status(cs_mapping_cert_x509(db, key_id, &back), CS_NOTFOUND);
    ck_assert_ptr_null(back);
    by_id.id = key_id;
    ck_ok(cs_mapping_get(db, &by_id, copy_subject, listed));
    ck_assert_str_eq(listed, "(none)");

    /* The certificate goes with its mapping, also when an account is removed with them. */
    by_id.id = spki_id;
    begin();
    ck_ok(cs_mapping_remove(db, &by_id));
    commit();
    ck_status(cs_mapping_cert_get(db, spki_id, copy_kept_cert, &k), CS_NOTFOUND);
    begin();
    ck_ok(cs_account_remove(db, "acme", 1));
    commit();
    ck_status(cs_mapping_cert_get(db, 1, copy_kept_cert, &k), CS_NOTFOUND);
    OPENSSL_free(serial_hex);
    BN_free(serial);
    OPENSSL_free(der);
}
END_TEST

START_TEST(test_mapping_remove_by_id_and_by_key)
{
    cs_mapping_ref by_id = {0}, by_key = {0};
    mapping_tally t = {0};

    by_id.id = map(&pki->alice, CS_KIND_CERT, "acme");
    map(&pki->bob, CS_KIND_SKI, "bob-co");
    by_key.kind = CS_KIND_SKI;
    ck_ok(cs_key_from_cert(pki->bob.cert, CS_KIND_SKI, &by_key.key));
    ck_ok(cs_mapping_foreach(db, "bob-co", tally_mapping, &t));
    ck_assert_int_eq(t.count, 1);
    ck_assert_int_eq(t.last.kind, CS_KIND_SKI);
    ck_assert_int_eq(t.last.key.len, by_key.key.len);
    ck_assert_int_eq(t.last.not_after, CS_TIME_NONE);
    ck_assert_int_ne(t.last.cert_not_after, CS_TIME_NONE);
    ck_assert_int_eq(t.last.have_sha1, 1);
    begin();
    ck_ok(cs_mapping_remove(db, &by_id));
    ck_ok(cs_mapping_remove(db, &by_key));
    ck_status(cs_mapping_remove(db, &by_id), CS_NOTFOUND);
    commit();
    memset(&t, 0, sizeof(t));
    ck_ok(cs_mapping_foreach(db, NULL, tally_mapping, &t));
    ck_assert_int_eq(t.count, 0);
    ck_status(cs_mapping_foreach(db, "ghost", tally_mapping, &t), CS_NOTFOUND);
}
END_TEST

START_TEST(test_issuer_serial_key_is_issuer_hash_and_serial_magnitude)
{
    cs_key key, parsed;
    unsigned char *name_der = NULL, md[32], mag[64];
    unsigned int md_len = 0;
    int name_len = i2d_X509_NAME(X509_get_issuer_name(pki->alice.cert), &name_der);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(pki->alice.cert), NULL);
    int mag_len = BN_bn2bin(bn, mag);
    char text[2 * CS_KEY_MAX + 4];

    ck_assert_int_gt(name_len, 0);
    ck_assert(EVP_Digest(name_der, (size_t)name_len, md, &md_len, EVP_sha256(), NULL));
    ck_ok(cs_key_from_cert(pki->alice.cert, CS_KIND_ISSUER_SERIAL, &key));
    ck_assert_int_eq(key.len, 32 + (size_t)mag_len);
    ck_assert(memcmp(key.bytes, md, 32) == 0);
    ck_assert(memcmp(key.bytes + 32, mag, (size_t)mag_len) == 0);
    cs_key_format(CS_KIND_ISSUER_SERIAL, &key, text, sizeof(text));
    ck_assert_int_eq(text[64], ':');
    ck_assert(cs_key_parse(CS_KIND_ISSUER_SERIAL, text, &parsed));
    ck_assert_int_eq(parsed.len, key.len);
    ck_assert(memcmp(parsed.bytes, key.bytes, key.len) == 0);
    /* mallory: twin CA with alice's issuer DN and serial, the same key. */
    ck_ok(cs_key_from_cert(pki->mallory.cert, CS_KIND_ISSUER_SERIAL, &parsed));
    ck_assert(parsed.len == key.len && memcmp(parsed.bytes, key.bytes, key.len) == 0);
    OPENSSL_free(name_der);
    BN_free(bn);
}
END_TEST

START_TEST(test_key_text_forms)
{
    cs_key key;
    char text[2 * CS_KEY_MAX + 4];
    static const char upper_colons[] =
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:"
        "23:45:67:89";

    ck_assert(cs_key_parse(CS_KIND_CERT, upper_colons, &key));
    cs_key_format(CS_KIND_CERT, &key, text, sizeof(text));
    ck_assert_str_eq(text, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    ck_assert(!cs_key_parse(CS_KIND_CERT, "abcd", &key));
    ck_assert(!cs_key_parse(CS_KIND_CERT, "ab::cd", &key));
    ck_assert(!cs_key_parse(CS_KIND_SKI, "xyz1", &key));
    ck_assert(!cs_key_parse(CS_KIND_SKI, "", &key));
    ck_assert(!cs_key_parse(CS_KIND_SKI, ":ab", &key));
    ck_assert(cs_key_parse(CS_KIND_SKI, "0a:0B", &key));
    ck_assert_int_eq(key.len, 2);
    ck_assert(cs_key_parse(CS_KIND_ISSUER_SERIAL,
                           "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789:1",
                           &key));
    ck_assert_int_eq(key.len, 33);
    ck_assert_int_eq(key.bytes[32], 1);
    ck_assert(!cs_key_parse(CS_KIND_ISSUER_SERIAL,
                            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                            &key));
}
END_TEST

START_TEST(test_kind_names_round_trip)
{
    for (int k = 0; k < CS_KIND_COUNT; k++) {
        cs_kind parsed;

        ck_assert(cs_kind_parse(cs_kind_name((cs_kind)k), &parsed));
        ck_assert_int_eq(parsed, k);
    }
    ck_assert(!cs_kind_parse("certs", &(cs_kind){0}));
    ck_assert_str_eq(cs_kind_name(CS_KIND_SPKI), "spki");
}
END_TEST

/* ---- times ------------------------------------------------------------------------ */

START_TEST(test_time_parse_strict)
{
    int64_t t = 0;
    char buf[32];

    ck_assert(cs_time_parse("2027-01-31", &t));
    ck_assert_int_eq(t, 1801353600);
    ck_assert(cs_time_parse("2027-01-31T12:00:00Z", &t));
    ck_assert_int_eq(t, 1801353600 + 43200);
    cs_time_format(t, buf);
    ck_assert_str_eq(buf, "2027-01-31T12:00:00Z");
    ck_assert(cs_time_parse("2027-01-31T14:00:00.250+02:00", &t));
    ck_assert_int_eq(t, 1801353600 + 43200);
    ck_assert(cs_time_parse("2027-01-31T07:00:00-05:00", &t));
    ck_assert_int_eq(t, 1801353600 + 43200);
    ck_assert(cs_time_parse("2028-02-29", &t));
    ck_assert(!cs_time_parse("2027-02-29", &t));
    ck_assert(!cs_time_parse("2027-02-30", &t));
    ck_assert(!cs_time_parse("2027-13-01", &t));
    ck_assert(!cs_time_parse("2027-01-31 ", &t));
    ck_assert(!cs_time_parse("2027-01-31T12:00:00", &t));
    ck_assert(!cs_time_parse("2027-01-31T12:00:00Zjunk", &t));
    ck_assert(!cs_time_parse("2027-01-31T25:00:00Z", &t));
    ck_assert(!cs_time_parse("27-01-31", &t));
    ck_assert(!cs_time_parse("", &t));
    ck_assert(!cs_time_parse(NULL, &t));
}
END_TEST

START_TEST(test_fingerprint_normalise)
{
    char out[CS_FP_HEX_LEN + 1];

    ck_assert(
        cs_fp_normalise("ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789", out));
    ck_assert_str_eq(out, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    ck_assert(!cs_fp_normalise("abcdef", out));
    ck_assert(
        !cs_fp_normalise("ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF012345678g", out));
    ck_assert(!cs_fp_normalise("ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ab",
                               out));
}
END_TEST

/* ---- generation ------------------------------------------------------------------- */

START_TEST(test_generation_bumps_on_every_narrowing_write)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_mapping_ref ref = {0};
    int64_t g;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ref.id = map_window(&pki->alice, CS_KIND_CERT, "acme", 1000, 2000000000);
    g = generation();

    begin();
    ck_ok(cs_pin_set_enabled(db, fp, 0));
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_account_set_enabled(db, "acme", 0));
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_mapping_set_enabled(db, &ref, 0));
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_mapping_set_window(db, &ref, 1000, 1900000000)); /* not_after earlier */
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_mapping_set_window(db, &ref, 5000, 1900000000)); /* not_before later */
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_mapping_remove(db, &ref));
    commit();
    /* The mapping and the certificate kept with it: two policy rows, two bumps. */
    ck_assert_int_gt(generation(), g);
    g = generation();
    begin();
    ck_ok(cs_account_remove(db, "acme", 0));
    commit();
    ck_assert_int_eq(generation(), ++g);
    begin();
    ck_ok(cs_pin_remove(db, fp));
    commit();
    ck_assert_int_eq(generation(), ++g);
}
END_TEST

START_TEST(test_generation_bumps_on_widening_writes_too)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_mapping_ref ref = {0};
    int64_t g;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ref.id = map_window(&pki->alice, CS_KIND_CERT, "acme", 5000, 1900000000);
    g = generation();
    /* Each of these can change a decision somewhere: a new mapping shadows another kind. */
    begin();
    ck_ok(cs_account_add(db, "other", NULL));
    commit();
    ck_assert_int_gt(generation(), g);
    g = generation();
    begin();
    ck_ok(cs_mapping_set_window(db, &ref, 1000, 2000000000));
    commit();
    ck_assert_int_gt(generation(), g);
    g = generation();
    map(&pki->bob, CS_KIND_SPKI, "other");
    ck_assert_int_gt(generation(), g);
    g = generation();
    begin();
    ck_ok(cs_mapping_set_not_issued_before_created(db, &ref, 0));
    commit();
    ck_assert_int_gt(generation(), g);
    /* A call that writes nothing bumps nothing. */
    g = generation();
    begin();
    ck_ok(cs_pin_set_enabled(db, fp, 1));
    commit();
    ck_assert_int_eq(generation(), g);
}
END_TEST

/*
 * Every table but meta, the change log and the sync bookkeeping is policy,
 * and its writes bump
 * the generation: a table a later migration adds must have the triggers too.
 */
START_TEST(test_every_policy_table_bumps_generation)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    int tables = 0;

    ck_assert_int_eq(sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "SELECT t.name, (SELECT count(*) FROM sqlite_master g"
                                        " WHERE g.type = 'trigger' AND g.tbl_name = t.name"
                                        " AND g.sql LIKE '%AFTER ' || ?1 || ' ON%'"
                                        " AND g.sql LIKE '%generation = generation + 1%')"
                                        " FROM sqlite_master t WHERE t.type = 'table'"
                                        " AND t.name NOT IN ('meta', 'changes', 'sync_state',"
                                        " 'sync_entries')"
                                        " AND t.name NOT LIKE 'sqlite_%'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (int e = 0; e < 3; e++) {
        static const char *const events[] = {"INSERT", "UPDATE", "DELETE"};

        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, events[e], -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            ck_assert_msg(sqlite3_column_int(st, 1) == 1, "table %s: no %s generation trigger",
                          sqlite3_column_text(st, 0), events[e]);
            tables++;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(raw);
    ck_assert_int_ge(tables, 3 * 5); /* pins, accounts, mappings, rules, mapping_certs */
}
END_TEST

START_TEST(test_rolled_back_narrowing_leaves_generation)
{
    cs_mapping_ref ref = {.id = map(&pki->alice, CS_KIND_CERT, "acme")};
    int64_t g = generation();

    begin();
    ck_ok(cs_mapping_remove(db, &ref));
    cs_db_rollback(db);
    ck_assert_int_eq(generation(), g);
}
END_TEST

/* ---- change log ------------------------------------------------------------------- */

typedef struct {
    int count;
    char user[64];
    char command[256];
    char detail[512];
} change_tally;

static int tally_change(const cs_change *c, void *arg)
{
    change_tally *t = arg;

    t->count++;
    snprintf(t->user, sizeof(t->user), "%s", c->user);
    snprintf(t->command, sizeof(t->command), "%s", c->command);
    snprintf(t->detail, sizeof(t->detail), "%s", c->detail);
    return 0;
}

START_TEST(test_change_log_row_per_mutation)
{
    change_tally t = {0};
    cs_mapping_ref ref = {0};
    struct passwd *me = getpwuid(geteuid());
    char want[256];

    ref.id = map(&pki->alice, CS_KIND_CERT, "acme");
    ck_ok(cs_change_foreach(db, CS_TIME_NONE, tally_change, &t));
    ck_assert_int_eq(t.count, 2); /* account created, mapping added */
    ck_assert(strstr(t.detail, "map add") == t.detail);

    ck_ok(cs_db_begin(db, "certstore map rm 1"));
    ck_ok(cs_mapping_remove(db, &ref));
    commit();
    memset(&t, 0, sizeof(t));
    ck_ok(cs_change_foreach(db, CS_TIME_NONE, tally_change, &t));
    ck_assert_int_eq(t.count, 3);
    ck_assert_str_eq(t.command, "certstore map rm 1");
    ck_assert_str_eq(t.user, me ? me->pw_name : "?");
    snprintf(want, sizeof(want), "map rm id=%lld kind=cert key=", (long long)ref.id);
    ck_assert_msg(strncmp(t.detail, want, strlen(want)) == 0, "%s", t.detail);
    ck_assert_msg(strstr(t.detail, "account=acme") != NULL, "%s", t.detail);

    memset(&t, 0, sizeof(t));
    ck_ok(cs_change_foreach(db, (int64_t)time(NULL) + 3600, tally_change, &t));
    ck_assert_int_eq(t.count, 0);
}
END_TEST

START_TEST(test_change_log_empty_after_rollback)
{
    change_tally t = {0};

    begin();
    ck_ok(cs_account_add(db, "acme", NULL));
    cs_db_rollback(db);
    ck_ok(cs_change_foreach(db, CS_TIME_NONE, tally_change, &t));
    ck_assert_int_eq(t.count, 0);
}
END_TEST

START_TEST(test_mutation_outside_transaction_refused)
{
    ck_status(cs_account_add(db, "acme", NULL), CS_INVALID);
    ck_status(cs_pin_add(db, pki->ca_a.cert, NULL, NULL), CS_INVALID);
}
END_TEST

/* ---- stats ------------------------------------------------------------------------ */

START_TEST(test_stats_counts)
{
    cs_stats s;
    cs_mapping_ref ref = {0};

    pin(&pki->ca_a);
    pin(&pki->ca_b);
    map(&pki->alice, CS_KIND_CERT, "a");
    map(&pki->bob, CS_KIND_SPKI, "b");
    ref.id = map(&pki->carol, CS_KIND_SPKI, "c");
    begin();
    ck_ok(cs_mapping_set_enabled(db, &ref, 0));
    commit();
    ck_ok(cs_stats_get(db, &s));
    ck_assert_int_eq(s.pins, 2);
    ck_assert_int_eq(s.pins_enabled, 2);
    ck_assert_int_eq(s.accounts, 3);
    ck_assert_int_eq(s.mappings, 3);
    ck_assert_int_eq(s.mappings_enabled, 2);
    ck_assert_int_eq(s.by_kind[CS_KIND_CERT], 1);
    ck_assert_int_eq(s.by_kind[CS_KIND_SPKI], 2);
    ck_assert_int_eq(s.schema_version, CS_SCHEMA_VERSION);
    ck_assert_int_eq(s.generation, generation());
}
END_TEST

/* ---- import ----------------------------------------------------------------------- */

static char alice_hex[2 * CS_KEY_MAX + 4], bob_hex[2 * CS_KEY_MAX + 4];

static void leaf_hex(const testpki_cred *leaf, cs_kind kind, char *out)
{
    cs_key key;

    ck_ok(cs_key_from_cert(leaf->cert, kind, &key));
    cs_key_format(kind, &key, out, 2 * CS_KEY_MAX + 4);
}

static cs_status import_text(const char *text, cs_import_format fmt, cs_import_result *r)
{
    FILE *in = fmemopen((void *)text, strlen(text), "r");
    cs_status status;

    ck_assert_ptr_nonnull(in);
    begin();
    status = cs_import(db, in, fmt, NULL, r, NULL, NULL);
    if (status == CS_OK)
        commit();
    else
        cs_db_rollback(db);
    fclose(in);
    return status;
}

static int64_t mapping_count(void)
{
    cs_stats s;

    ck_ok(cs_stats_get(db, &s));
    return s.mappings;
}

START_TEST(test_import_csv_quoted_fields_any_column_order)
{
    cs_import_result r;
    mapping_tally t = {0};
    char text[2048];

    leaf_hex(&pki->alice, CS_KIND_CERT, alice_hex);
    leaf_hex(&pki->bob, CS_KIND_SPKI, bob_hex);
    snprintf(text, sizeof(text),
             "account,kind,key,note,not_after\r\n"
             "\"acme, inc\",cert,%s,\"said \"\"hi\"\"\r\nthen left\",2030-01-01\r\n"
             "\r\n"
             "bobco,spki,%s,,\r\n",
             alice_hex, bob_hex);
    ck_ok(import_text(text, CS_IMPORT_CSV, &r));
    ck_assert_int_eq(r.rows, 2);
    ck_assert_int_eq(r.accounts_created, 2);
    ck_assert_int_eq(r.bad_line, 0);
    ck_ok(cs_mapping_foreach(db, "acme, inc", tally_mapping, &t));
    ck_assert_int_eq(t.count, 1);
    ck_assert_str_eq(t.note, "said \"hi\"\r\nthen left");
    ck_assert_int_eq(t.last.not_after, 1893456000);
    pin(&pki->ca_a);
    ck_assert_str_eq(decide_with(db, &pki->alice).account, "acme, inc");
    ck_assert_int_eq(decide_with(db, &pki->alice_renewed).reason, CS_REASON_NO_MAPPING);
    ck_assert_str_eq(decide_with(db, &pki->bob).account, "bobco");
}
END_TEST

START_TEST(test_import_jsonl_with_escapes)
{
    cs_import_result r;
    mapping_tally t = {0};
    char text[2048];

    leaf_hex(&pki->alice, CS_KIND_ISSUER_SERIAL, alice_hex);
    snprintf(text, sizeof(text),
             "\n{\"kind\": \"issuer-serial\", \"key\": \"%s\", \"account\": "
             "\"M\\u00fcller \\ud83d\\udd12\", \"note\": \"tab\\there \\\"q\\\" \\\\ \\/\","
             " \"pin\": \"%064d\"}\n"
             "   \n",
             alice_hex, 0);
    ck_ok(import_text(text, CS_IMPORT_AUTO, &r));
    ck_assert_int_eq(r.rows, 1);
    ck_ok(cs_mapping_foreach(db, "M\xc3\xbcller \xf0\x9f\x94\x92", tally_mapping, &t));
    ck_assert_int_eq(t.count, 1);
    ck_assert_str_eq(t.note, "tab\there \"q\" \\ /");
}
END_TEST

START_TEST(test_import_bad_line_reported_and_nothing_imported)
{
    cs_import_result r;
    char text[8192];
    int n;

    leaf_hex(&pki->alice, CS_KIND_CERT, alice_hex);
    n = snprintf(text, sizeof(text), "kind,key,account\n");
    for (int line = 2; line <= 16; line++) {
        cs_key key = {.len = 32};

        memset(key.bytes, line, sizeof(key.bytes));
        cs_key_format(CS_KIND_CERT, &key, bob_hex, sizeof(bob_hex));
        n += snprintf(text + n, sizeof(text) - (size_t)n, "cert,%s,acct%d\n", bob_hex, line);
    }
    snprintf(text + n, sizeof(text) - (size_t)n, "certs,%s,acme\ncert,%s,acme\n", alice_hex,
             alice_hex);
    ck_status(import_text(text, CS_IMPORT_CSV, &r), CS_INVALID);
    ck_assert_int_eq(r.bad_line, 17);
    ck_assert_str_eq(cs_db_errmsg(db), "line 17: unknown kind 'certs'");
    ck_assert_int_eq(mapping_count(), 0);
}
END_TEST

/* The case text with every '@' replaced by key. */
static void expand_key(const char *pattern, const char *key, char *out, size_t outlen)
{
    size_t n = 0;

    for (; *pattern != '\0' && n + 1 < outlen; pattern++) {
        if (*pattern == '@') {
            n += (size_t)snprintf(out + n, outlen - n, "%s", key);
            if (n >= outlen)
                n = outlen - 1;
        } else {
            out[n++] = *pattern;
        }
    }
    out[n] = '\0';
}

typedef struct {
    const char *text;
    int64_t bad_line;
    const char *message_part;
} bad_input;

START_TEST(test_import_rejects_malformed_input)
{
    static const char good_key[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char text[1024];
    const bad_input cases[] = {
        {"kind,key,account,colour\n", 1, "unknown column 'colour'"},
        {"kind,key\n", 1, "missing column 'account'"},
        {"kind,key,account,kind\n", 1, "given twice"},
        {"", 1, "no header"},
        {"kind,key,account\ncert,@\n", 2, "expected 3 fields"},
        {"kind,key,account\ncert,@,acme\ncert,@,acme\n", 3, "same kind and key as line 2"},
        {"kind,key,account\ncert,abcd,acme\n", 2, "bad cert key"},
        {"kind,key,account\ncert,@,\"acme\n", 2, "unterminated"},
        {"kind,key,account\ncert,@,ac\"me\n", 2, "quote inside"},
        {"kind,key,account\ncert,@,\"acme\"x\n", 2, "closing quote"},
        {"kind,key,account,not_after\ncert,@,acme,2027-02-30\n", 2, "bad not_after"},
        {"kind,key,account,pin\ncert,@,acme,zz\n", 2, "bad pin"},
        {"kind,key,account\ncert,@,ctl\x01name\n", 2, "invalid account name"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":[1]}\n", 1, "must be strings"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":nothing}\n", 1, "must be strings"},
        {"kind,key,account,enabled\ncert,@,acme,yes\n", 2, "enabled must be true or false"},
        {"kind,key,account,not_issued_before\ncert,@,acme,later\n", 2, "not_issued_before must be"},
        {"kind,key,account,created\ncert,@,acme,yesterday\n", 2, "bad created"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\",\"id\":\"x1\"}\n", 1, "bad id"},
        {"kind,key,account,account_enabled\ncert,@,acme,false\nspki,@,acme,true\n", 3,
         "account_enabled is true but account 'acme' is disabled"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\",\"x\":\"y\"}\n", 1, "unknown field"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\"} junk\n", 1, "after the object"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"\\ud800\"}\n", 1, "bad string"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\\u0000b\"}\n", 1, "bad string"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\",\"kind\":\"ski\"}\n", 1, "twice"},
        {"\n\n{\"kind\":\"cert\",\"key\":\"@\"}\n", 3, "missing account"},
        {"{\"kind\":\"cert\",\"key\":\"@\",\"account\":\"a\"\n", 1, "expected ','"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cs_import_result r;

        expand_key(cases[i].text, good_key, text, sizeof(text));
        ck_assert_msg(import_text(text, CS_IMPORT_AUTO, &r) == CS_INVALID, "case %zu accepted", i);
        ck_assert_msg(r.bad_line == cases[i].bad_line, "case %zu: line %lld, want %lld: %s", i,
                      (long long)r.bad_line, (long long)cases[i].bad_line, cs_db_errmsg(db));
        ck_assert_msg(strstr(cs_db_errmsg(db), cases[i].message_part) != NULL,
                      "case %zu: message '%s' lacks '%s'", i, cs_db_errmsg(db),
                      cases[i].message_part);
        ck_assert_int_eq(mapping_count(), 0);
    }
}
END_TEST

START_TEST(test_import_existing_mapping_is_bad_line)
{
    cs_import_result r;
    char text[512];

    map(&pki->alice, CS_KIND_CERT, "acme");
    leaf_hex(&pki->alice, CS_KIND_CERT, alice_hex);
    snprintf(text, sizeof(text), "kind,key,account\ncert,%s,other\n", alice_hex);
    ck_status(import_text(text, CS_IMPORT_CSV, &r), CS_INVALID);
    ck_assert_int_eq(r.bad_line, 2);
    ck_assert_str_eq(cs_db_errmsg(db),
                     "line 2: a mapping with this kind and key already exists: mapping 1 -> acme");
    ck_assert_int_eq(mapping_count(), 1);
}
END_TEST

static cs_status count_row(const cs_import_row *row, int64_t line, void *arg)
{
    (void)row;
    (void)line;
    ++*(int *)arg;
    return CS_OK;
}

START_TEST(test_import_parser_is_pure_on_buffers)
{
    static const char csv[] =
        "kind,key,account\n"
        "ski,0a0b,acme\n"
        "issuer-serial,"
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:"
        "23:45:67:89:01:02,acme\n";
    char msg[128];
    int64_t bad = -1;
    int rows = 0;

    ck_assert_int_eq(cs_import_parse(csv, sizeof(csv) - 1, CS_IMPORT_AUTO, count_row, &rows, &bad,
                                     msg, sizeof(msg)),
                     CS_OK);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(
        cs_import_parse("{", 1, CS_IMPORT_AUTO, count_row, &rows, &bad, msg, sizeof(msg)),
        CS_INVALID);
    ck_assert_int_eq(bad, 1);
    ck_assert_int_eq(cs_import_parse("kind,key,account\n\0", 18, CS_IMPORT_CSV, count_row, &rows,
                                     &bad, msg, sizeof(msg)),
                     CS_INVALID);
    ck_assert(strstr(msg, "NUL") != NULL);
}
END_TEST

/* ---- links and unsafe directories --------------------------------------------- */

/* The library refuses on its own, whatever the caller checked. */
START_TEST(test_open_refuses_links_and_unsafe_dirs)
{
    static const char *const sidecars[] = {"", "-wal", "-shm", "-journal"};
    char victim[PATH_MAX + 64], link[PATH_MAX + 64], msg[512];
    struct stat st;
    FILE *f;

    snprintf(victim, sizeof(victim), "%s/victim", test_dir);
    f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(chmod(victim, 0600), 0);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_CREATE), CS_OK);
    ck_ok(cs_db_migrate(db));
    cs_db_close(db);
    db = NULL;
    for (size_t i = 0; i < sizeof(sidecars) / sizeof(sidecars[0]); i++) {
        char moved[PATH_MAX + 80];

        snprintf(link, sizeof(link), "%s%s", db_path, sidecars[i]);
        snprintf(moved, sizeof(moved), "%s.saved", link);
        ck_assert(rename(link, moved) == 0 || errno == ENOENT);
        ck_assert_int_eq(symlink(victim, link), 0);
        for (unsigned flags = 0; flags < 2; flags++) {
            ck_assert_int_eq(cs_db_open(&db, db_path, flags ? CS_OPEN_READONLY : 0), CS_INVALID);
            ck_assert_msg(strstr(cs_db_errmsg(db), "symbolic link") != NULL, "%s",
                          cs_db_errmsg(db));
            cs_db_close(db); /* after a failed open: must not touch the link's target */
            db = NULL;
        }
        ck_assert_int_eq(stat(victim, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(st.st_size, 0);
        ck_assert_int_eq(unlink(link), 0);
        ck_assert(rename(moved, link) == 0 || errno == ENOENT);
    }

    ck_assert_int_eq(cs_db_check_dir(db_path, msg, sizeof(msg)), CS_OK);
    ck_assert_int_eq(chmod(test_dir, 0777), 0);
    ck_assert_int_eq(cs_db_check_dir(db_path, msg, sizeof(msg)), CS_INVALID);
    ck_assert_msg(strstr(msg, test_dir) != NULL && strstr(msg, "mode 0777") != NULL, "%s", msg);
    ck_assert_int_eq(cs_db_open(&db, db_path, 0), CS_INVALID);
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_READONLY), CS_OK);
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, db_path, CS_OPEN_ALLOW_UNSAFE_DIR), CS_OK);
    cs_db_close(db);
    db = NULL;
    ck_assert_int_eq(chmod(test_dir, 01777), 0);
    ck_assert_int_eq(cs_db_check_dir(db_path, msg, sizeof(msg)), CS_OK);
    ck_assert_int_eq(chmod(test_dir, 0700), 0);
    ck_assert_int_eq(chown(test_dir, 65534, 65534), 0);
    ck_assert_int_eq(cs_db_check_dir(db_path, msg, sizeof(msg)), CS_INVALID);
    ck_assert_msg(strstr(msg, "owned by uid 65534") != NULL, "%s", msg);
    ck_assert_int_eq(chown(test_dir, 0, 0), 0);
}
END_TEST

/* ---- the suite -------------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, void (*set)(void))
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, set, teardown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase(s, "open", setup);

    tcase_add_test(tc, test_migrate_creates_schema_version_1);
    tcase_add_test(tc, test_readonly_handle_refuses_writes);
    tcase_add_test(tc, test_readonly_open_never_writes);
    tcase_add_test(tc, test_file_replacement_detected);
    tc = tcase(s, "bad files", setup_no_db);
    tcase_add_test(tc, test_readonly_open_never_creates_file);
    tcase_add_test(tc, test_writable_open_without_create_refuses_missing_file);
    tcase_add_test(tc, test_newer_schema_refused_and_untouched);
    tcase_add_test(tc, test_non_sqlite_file_refused_and_untouched);
    tcase_add_test(tc, test_empty_file_refused_readonly);
    tcase_add_test(tc, test_truncated_file_never_accepts);
    tcase_add_test(tc, test_foreign_sqlite_database_refused);
    tcase_add_test(tc, test_open_refuses_links_and_unsafe_dirs);
    tc = tcase(s, "wal", setup);
    tcase_add_test(tc, test_wal_and_shm_persist_after_writer_closes);
    tcase_add_test(tc, test_unprivileged_reader_opens_readonly_after_writer_closed);
    tc = tcase(s, "pins", setup);
    tcase_add_test(tc, test_pin_add_keeps_whole_der);
    tcase_add_test(tc, test_pin_add_refuses_non_ca);
    tcase_add_test(tc, test_pin_add_twice_exists);
    tcase_add_test(tc, test_pin_find_issuer_by_signature);
    tcase_add_test(tc, test_pin_fingerprint_input_any_case_with_colons);
    tc = tcase(s, "accounts", setup);
    tcase_add_test(tc, test_account_names_validated);
    tcase_add_test(tc, test_account_note_limit);
    tcase_add_test(tc, test_account_remove_refused_while_in_use);
    tcase_add_test(tc, test_account_enable_disable);
    tc = tcase(s, "mappings", setup);
    tcase_add_test(tc, test_mapping_needs_account_unless_create);
    tcase_add_test(tc, test_mapping_keeps_the_certificate_it_was_made_from);
    tcase_add_test(tc, test_mapping_remove_by_id_and_by_key);
    tcase_add_test(tc, test_issuer_serial_key_is_issuer_hash_and_serial_magnitude);
    tcase_add_test(tc, test_key_text_forms);
    tcase_add_test(tc, test_kind_names_round_trip);
    tc = tcase(s, "times", setup);
    tcase_add_test(tc, test_time_parse_strict);
    tcase_add_test(tc, test_fingerprint_normalise);
    tc = tcase(s, "generation", setup);
    tcase_add_test(tc, test_generation_bumps_on_every_narrowing_write);
    tcase_add_test(tc, test_generation_bumps_on_widening_writes_too);
    tcase_add_test(tc, test_every_policy_table_bumps_generation);
    tcase_add_test(tc, test_rolled_back_narrowing_leaves_generation);
    tc = tcase(s, "changelog", setup);
    tcase_add_test(tc, test_change_log_row_per_mutation);
    tcase_add_test(tc, test_change_log_empty_after_rollback);
    tcase_add_test(tc, test_mutation_outside_transaction_refused);
    tcase_add_test(tc, test_stats_counts);
    tc = tcase(s, "import", setup);
    tcase_add_test(tc, test_import_csv_quoted_fields_any_column_order);
    tcase_add_test(tc, test_import_jsonl_with_escapes);
    tcase_add_test(tc, test_import_bad_line_reported_and_nothing_imported);
    tcase_add_test(tc, test_import_rejects_malformed_input);
    tcase_add_test(tc, test_import_existing_mapping_is_bad_line);
    tcase_add_test(tc, test_import_parser_is_pure_on_buffers);
    return s;
}

int main(void)
{
    SRunner *runner;
    int failed;

    pki = testpki_new(0);
    tmp_root = testpki_tmpdir();
    if (pki == NULL || tmp_root == NULL) {
        fputs("check_store: cannot build the test PKI or temp dir\n", stderr);
        return EXIT_FAILURE;
    }
    runner = srunner_create(store_suite());
    srunner_run_all(runner, CK_ENV);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    /* Failed tests skip their teardown; everything lives under tmp_root. */
    testpki_rmtree(tmp_root);
    free(tmp_root);
    testpki_free(pki);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
