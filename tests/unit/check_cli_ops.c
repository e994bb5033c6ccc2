/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an operator meets on first use, through the certstore binary as an
 * operator runs it (unit_support's CLI runner on a real SQLite file): ids
 * that are never reused, a schema-4 store migrated with its data, what
 * `map rm` and `account rm` say still admits or went, listings that stay
 * valid JSON, names shown as typed, the expiry report, one-sentence errors.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

static testpki *pki;
static char *tmp_root;
static us_store ts;
static char pki_dir[PATH_MAX + 8];
static char out[65536];

static void setup(void)
{
    us_store_open(&ts, tmp_root);
    /* The CLI creates and migrates its own store: start from no file. */
    cs_db_close(ts.reader);
    cs_db_close(ts.writer);
    ts.reader = ts.writer = NULL;
    unlink(ts.db);
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", ts.dir);
    ck_assert_int_eq(mkdir(pki_dir, 0700), 0);
    ck_assert(testpki_write(pki, pki_dir));
}

static void teardown(void)
{
    us_store_close(&ts);
}

/* certstore --db DB ARGS... (NULL-terminated): stdout in `out`. */
static int cli(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int status = us_cli_v(ts.db, 0, out, sizeof(out), first, ap);
    va_end(ap);
    return status;
}

/* The same, stderr into `out` too. */
static int cli_all(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int status = us_cli_v(ts.db, 1, out, sizeof(out), first, ap);
    va_end(ap);
    return status;
}

/* certstore --db DB ARGS... on another database, stdout and stderr in `out`. */
static int cli_on(const char *db, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int status = us_cli_v(db, 1, out, sizeof(out), first, ap);
    va_end(ap);
    return status;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static const char *pki_file(const char *name)
{
    static char bufs[4][PATH_MAX + 64];
    static int next;
    char *buf = bufs[next++ % 4];
    snprintf(buf, sizeof(bufs[0]), "%s/%s", pki_dir, name);
    return buf;
}

#define ck_out_has(text) ck_assert_msg(strstr(out, (text)) != NULL, "no '%s' in:\n%s", (text), out)
#define ck_out_lacks(text) ck_assert_msg(strstr(out, (text)) == NULL, "'%s' in:\n%s", (text), out)
#define ck_cli_ok(...) ck_assert_msg(cli_all(__VA_ARGS__, NULL) == 0, "failed:\n%s", out)

static void raw_exec(const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    ck_assert_int_eq(sqlite3_open(ts.db, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s", err);
    sqlite3_close(db);
}

static int64_t raw_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v;
    ck_assert_int_eq(sqlite3_open(ts.db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    char *text = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    return text;
}

/* ---- map rm / disable: what it removed, what still admits ----------------- */

static const char *pin_fp(const char *name)
{
    static char bufs[2][CS_FP_HEX_LEN + 1];
    static int next;
    char *buf = bufs[next++ % 2];
    ck_assert(cs_fp_of_cert(testpki_get(pki, name)->cert, buf));
    return buf;
}

/* certstore(1)'s own example: alice by cert, then by spki. */
static void alice_twice(void)
{
    ck_cli_ok("init");
    ck_cli_ok("pin", "add", pki_file("ca-a.pem"));
    ck_cli_ok("map", "add", pki_file("alice.pem"), "--account", "alice", "--create-account");
    ck_cli_ok("map", "add", pki_file("alice.pem"), "--kind", "spki", "--account", "alice");
}

START_TEST(test_map_rm_says_what_still_admits)
{
    alice_twice();
    ck_assert_int_eq(cli_all("map", "rm", pki_file("alice.pem"), NULL), 0);
    ck_out_has("removed mapping 1 cert -> alice");
    ck_out_has("still mapped: mapping 2 spki -> alice");
    ck_out_has("still accepted: account alice by mapping 2 (spki)");
    ck_out_has("map rm --all");
    ck_assert_int_eq(cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("roots.pem"), NULL),
                     0);
}
END_TEST

START_TEST(test_map_rm_by_id_says_what_still_admits)
{
    alice_twice();
    ck_assert_int_eq(cli_all("map", "rm", "1", NULL), 0);
    ck_out_has("removed mapping 1 cert -> alice");
    ck_out_has("still mapped: mapping 2 spki -> alice");
    ck_out_has("still accepted: account alice by mapping 2 (spki)");
    ck_out_has("map rm --all");
    ck_assert_int_eq(cli_all("map", "rm", "2", NULL), 0);
    ck_out_has("removed mapping 2 spki -> alice");
    ck_out_lacks("still");
}
END_TEST

START_TEST(test_map_rm_names_a_rule_that_still_admits)
{
    alice_twice();
    ck_cli_ok("rule", "add", "--pin", pin_fp("ca-a"), "--account", "fallback", "--create-account",
              "--subject", "CN=alice");
    ck_cli_ok("map", "rm", "--all", pki_file("alice.pem"));
    ck_out_has("removed mapping 1 cert -> alice");
    ck_out_has("removed mapping 2 spki -> alice");
    ck_out_lacks("still mapped");
    ck_out_has("still accepted: account fallback by rule 1");
}
END_TEST

START_TEST(test_map_rm_all_takes_access_away_in_one_go)
{
    alice_twice();
    ck_cli_ok("map", "add", pki_file("bob.pem"), "--account", "bob", "--create-account");
    ck_cli_ok("map", "rm", "--all", pki_file("alice.pem"));
    ck_out_lacks("still");
    ck_assert_int_eq(cli("check", pki_file("alice-chain.pem"), "--ca", pki_file("roots.pem"), NULL),
                     1);
    ck_out_has("no-mapping");
    ck_cli_ok("map", "ls");
    ck_out_lacks("alice");
    ck_out_has("account=bob");
    /* Nothing of it left: an error, nothing changed. */
    ck_assert_int_eq(cli_all("map", "rm", "--all", pki_file("alice.pem"), NULL), 1);
    ck_out_has("no mapping of this certificate");
    ck_assert_int_eq(cli_all("map", "rm", "--all", "1", NULL), 2);
}
END_TEST

START_TEST(test_already_exists_names_the_mapping)
{
    alice_twice();
    ck_assert_int_eq(cli_all("map", "add", pki_file("alice.pem"), "--kind", "spki", "--account",
                             "other", "--create-account", NULL),
                     1);
    ck_out_has("a spki mapping for this certificate already exists: mapping 2 -> alice");
    ck_assert_int_eq(count_lines(out), 1);
}
END_TEST

START_TEST(test_map_disable_prints_the_id)
{
    alice_twice();
    ck_cli_ok("map", "disable", pki_file("alice.pem"), "--kind", "spki");
    ck_out_has("disabled mapping 2 spki -> alice");
    ck_cli_ok("map", "enable", "2");
    ck_out_has("enabled mapping 2 spki -> alice");
}
END_TEST

/* ---- account rm: mappings and rules, counted and named ------------------- */

START_TEST(test_account_rm_counts_and_names_rules)
{
    ck_cli_ok("init");
    ck_cli_ok("pin", "add", pki_file("ca-a.pem"));
    ck_cli_ok("rule", "add", "--pin", pin_fp("ca-a"), "--account", "gw", "--create-account",
              "--subject", "CN=gw-*");
    ck_assert_int_eq(cli_all("account", "rm", "gw", NULL), 1);
    ck_out_has("used by 1 rule (1)");
    ck_out_lacks("mapping");
    ck_assert_int_eq(count_lines(out), 1);

    ck_cli_ok("map", "add", pki_file("alice.pem"), "--account", "gw");
    ck_assert_int_eq(cli_all("account", "rm", "gw", NULL), 1);
    ck_out_has("used by 1 mapping (1) and 1 rule (1)");

    ck_cli_ok("account", "rm", "gw", "--cascade");
    ck_out_has("removed with it: 1 mapping, 1 rule");
    ck_cli_ok("rule", "ls");
    ck_out_lacks("gw");
    ck_cli_ok("log");
    ck_out_has("mappings=1 rules=1 removed: 1 mapping (1) and 1 rule (1)");
}
END_TEST

START_TEST(test_stats_counts_rules)
{
    ck_cli_ok("init");
    ck_cli_ok("pin", "add", pki_file("ca-a.pem"));
    ck_cli_ok("rule", "add", "--pin", pin_fp("ca-a"), "--account", "gw", "--create-account",
              "--subject", "CN=gw-*");
    ck_cli_ok("rule", "add", "--pin", pin_fp("ca-a"), "--deny", "--subject", "CN=bad-*");
    ck_cli_ok("rule", "disable", "2");
    ck_cli_ok("stats");
    ck_out_has("rules: 2 (1 enabled, 1 deny)");
    ck_cli_ok("stats", "--json");
    ck_out_has("\"rules\":2,\"rules_enabled\":1,\"rules_deny\":1}");
}
END_TEST

/* ---- listings: valid JSON or nothing, names as typed ---------------------- */

START_TEST(test_json_listing_empty_on_error)
{
    ck_cli_ok("init");
    ck_assert_int_eq(cli("map", "ls", "--json", "--account", "nosuch", NULL), 1);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(cli("map", "ls", "--json", NULL), 0);
    ck_assert_str_eq(out, "[]\n");
}
END_TEST

START_TEST(test_names_shown_as_typed)
{
    ck_cli_ok("init");
    ck_cli_ok("account", "add", "CORP\\bobsvc");
    ck_out_has("CORP\\bobsvc");
    ck_cli_ok("account", "ls");
    ck_out_has("CORP\\bobsvc");
    ck_out_lacks("x5c");
    /* What was shown can be pasted back. */
    ck_cli_ok("account", "disable", "CORP\\bobsvc");
    ck_cli_ok("map", "add", pki_file("bob.pem"), "--account", "CORP\\bobsvc");
    ck_out_has("-> CORP\\bobsvc");
}
END_TEST

/* ---- expiring: what will actually stop working --------------------------- */

START_TEST(test_expiring_reports_what_stops_working)
{
    ck_cli_ok("init");
    /* A renewal with the same key keeps an spki mapping working. */
    ck_cli_ok("map", "add", pki_file("alice.pem"), "--kind", "spki", "--account", "alice",
              "--create-account");
    /* A disabled mapping already admits no one. */
    ck_cli_ok("map", "add", pki_file("bob.pem"), "--account", "bob", "--create-account");
    ck_cli_ok("map", "disable", pki_file("bob.pem"));
    ck_assert_int_eq(cli("expiring", "--days", "36500", NULL), 0);
    ck_out_has("nothing expires");
    ck_assert_int_eq(cli("expiring", "--days", "36500", "--all", NULL), 1);
    ck_out_has("mapping 2 cert account=bob");
    ck_out_has("disabled");
    ck_out_lacks("spki");

    ck_cli_ok("map", "add", pki_file("alice.pem"), "--account", "alice");
    ck_assert_int_eq(cli("expiring", "--days", "36500", NULL), 1);
    ck_out_has("mapping 3 cert account=alice");
    ck_out_has("by=certificate");
    ck_out_lacks("spki");

    char soon[32];
    time_t t = time(NULL) + 10 * 86400;
    strftime(soon, sizeof(soon), "%Y-%m-%d", gmtime(&t));
    ck_cli_ok("map", "add", pki_file("carol.pem"), "--kind", "spki", "--account", "alice",
              "--not-after", soon);
    ck_assert_int_eq(cli("expiring", NULL), 1);
    ck_out_has("mapping 4 spki account=alice");
    ck_out_has("by=mapping-not-after");
    ck_assert_int_eq(cli("expiring", "--json", NULL), 1);
    ck_out_has("\"by\":\"mapping-not-after\"");
}
END_TEST

/* ---- import: JSON lines with a byte-order mark, a JSON array ------------- */

static const char *write_test_file(const char *name, const char *text)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", ts.dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    fclose(f);
    return path;
}

START_TEST(test_import_json_lines_with_bom_and_array)
{
    ck_cli_ok("init");
    ck_cli_ok("account", "add", "acme");
    const char *bom = write_test_file(
        "bom.jsonl", "\xef\xbb\xbf{\"kind\":\"cert\",\"key\":\"00000000000000000000000000000000"
                     "00000000000000000000000000000001\",\"account\":\"acme\"}\n");
    ck_cli_ok("import", bom);
    ck_out_has("imported 1 mappings");
    const char *bom2 = write_test_file(
        "bom2.jsonl", "\xef\xbb\xbf{\"kind\":\"cert\",\"key\":\"0000000000000000000000000000000"
                      "000000000000000000000000000000002\",\"account\":\"acme\"}\n");
    ck_cli_ok("import", bom2, "--format", "jsonl");
    ck_out_has("imported 1 mappings");

    const char *array = write_test_file(
        "array.json", "[{\"kind\":\"cert\",\"key\":\"00000000000000000000000000000000"
                      "00000000000000000000000000000003\",\"account\":\"acme\"}]\n");
    ck_assert_int_eq(cli_all("import", array, NULL), 1);
    ck_out_has("a JSON array");
    ck_out_has("JSON lines");
    ck_out_lacks("header");
    ck_assert_int_eq(count_lines(out), 1);
    ck_assert_int_eq(cli_all("import", array, "--format", "jsonl", NULL), 1);
    ck_out_has("a JSON array");
    ck_cli_ok("map", "ls");
    ck_assert_int_eq(count_lines(out), 2);
}
END_TEST

/* ---- import progress on a terminal -------------------------------------- */

/* certstore --db DB ARGS... with stdout and stderr on a pseudo-terminal. */
static int cli_on_tty(const char *const *args)
{
    const char *argv[16];
    int n = 0, master = -1, status = 0;
    size_t used = 0;
    ssize_t got;
    argv[n++] = getenv("CERTSTORE_BIN");
    argv[n++] = "--db";
    argv[n++] = ts.db;
    for (; *args != NULL && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    /* Linux answers EIO once the child has closed its side. */
    while (used < sizeof(out) - 1 && (got = read(master, out + used, sizeof(out) - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    close(master);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(test_import_progress_on_a_terminal)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/many.csv", ts.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("kind,key,account\n", f);
    for (int i = 1; i <= 30000; i++)
        fprintf(f, "cert,%064x,acme\n", i);
    ck_assert_int_eq(fclose(f), 0);
    ck_cli_ok("init");
    const char *args[] = {"import", path, "--create-accounts", NULL};
    ck_assert_int_eq(cli_on_tty(args), 0);
    ck_out_has("10000 rows, ");
    ck_out_has(" rows/s, ");
    ck_out_has(" bytes (");
    ck_out_has(" s left");
    ck_out_has("imported 30000 mappings");
}
END_TEST

/* ---- errors: one sentence each ------------------------------------------ */

START_TEST(test_errors_name_the_path_once)
{
    char dir[PATH_MAX + 16], twice[3 * PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/adir", ts.dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_cli_ok("init");
    ck_assert_int_eq(cli_all("import", dir, NULL), 1);
    ck_out_has("is a directory");
    ck_out_lacks("header");
    ck_assert_int_eq(count_lines(out), 1);

    snprintf(twice, sizeof(twice), "%s: %s", dir, dir);
    ck_assert_int_eq(cli_on(dir, "map", "ls", NULL), 1);
    ck_out_lacks(twice);
    ck_out_has(dir);
    ck_assert_int_eq(count_lines(out), 1);
    ck_assert_int_eq(cli_on(dir, "account", "add", "x", NULL), 1);
    ck_out_lacks(twice);
    ck_assert_int_eq(count_lines(out), 1);
}
END_TEST

/* ---- item 4: ids are never reused ---------------------------------------- */

START_TEST(test_ids_never_reused_after_rm)
{
    ck_cli_ok("init");
    ck_cli_ok("pin", "add", pki_file("ca-a.pem"));
    ck_cli_ok("map", "add", pki_file("alice.pem"), "--account", "alice", "--create-account");
    ck_cli_ok("map", "add", pki_file("bob.pem"), "--account", "alice");
    ck_out_has("mapping 2:");
    ck_cli_ok("map", "rm", "2");
    ck_cli_ok("map", "add", pki_file("bob.pem"), "--account", "alice");
    ck_out_has("mapping 3:");

    char fp[CS_FP_HEX_LEN + 1];
    ck_assert(cs_fp_of_cert(testpki_get(pki, "ca-a")->cert, fp));
    ck_cli_ok("rule", "add", "--pin", fp, "--account", "alice", "--subject", "CN=gw-*");
    ck_out_has("rule 1:");
    ck_cli_ok("rule", "rm", "1");
    ck_cli_ok("rule", "add", "--pin", fp, "--account", "alice", "--subject", "CN=gw-*");
    ck_out_has("rule 2:");

    ck_cli_ok("account", "add", "temp");
    ck_cli_ok("account", "rm", "temp");
    ck_cli_ok("account", "add", "temp");
    ck_assert_int_eq(raw_int("SELECT id FROM accounts WHERE name = 'temp'"), 3);

    ck_cli_ok("pin", "add", pki_file("ca-b.pem"));
    ck_assert_int_eq(raw_int("SELECT max(id) FROM pins"), 2);
    ck_assert(cs_fp_of_cert(testpki_get(pki, "ca-b")->cert, fp));
    ck_cli_ok("pin", "rm", fp);
    ck_cli_ok("pin", "add", pki_file("ca-b.pem"));
    ck_assert_int_eq(raw_int("SELECT max(id) FROM pins"), 3);
}
END_TEST

/* A store certstore 4 wrote (tests/unit/data/certstore-v4.sql), migrated by init. */
START_TEST(test_schema_4_store_migrates_keeping_everything)
{
    const char *data = getenv("CERTSTORE_TEST_DATA");
    char path[PATH_MAX];
    ck_assert_msg(data != NULL, "CERTSTORE_TEST_DATA is not set");
    snprintf(path, sizeof(path), "%s/certstore-v4.sql", data);
    char *sql = read_text(path);
    raw_exec(sql);
    free(sql);
    ck_assert_int_eq(raw_int("PRAGMA user_version"), 4);

    /* An older schema: one sentence that says what to run. */
    ck_assert_int_eq(cli_all("map", "ls", NULL), 1);
    ck_out_has("certstore init");

    ck_cli_ok("init");
    ck_assert_int_eq(raw_int("PRAGMA user_version"), CS_SCHEMA_VERSION);
    ck_assert_int_eq(cli("map", "ls", NULL), 0);
    ck_out_has("1 cert 07f7de17f95c8823b734893762849cd82481780d0dd01b390928fb158ba1079e "
               "account=acme enabled");
    ck_out_has("2 cert 7192d996c93d519a7abd94072d47c102eed8d7692d2184817a8cf1793b684cc8 "
               "account=globex disabled not-after=2030-01-01T00:00:00Z");
    ck_cli_ok("rule", "ls");
    ck_out_has("globex");
    ck_cli_ok("account", "ls");
    ck_out_has("first partner");
    ck_assert_int_eq(raw_int("SELECT count(*) FROM pins"), 1);
    ck_assert_int_eq(raw_int("SELECT count(*) FROM mappings WHERE sha1 IS NOT NULL AND "
                             "cert_not_after = 1867509358"),
                     2);

    /* Constraints, indexes, triggers and foreign keys as before. */
    ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name "
                             "IN ('pins', 'accounts', 'mappings', 'rules') AND sql LIKE "
                             "'%AUTOINCREMENT%'"),
                     4);
    ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                             "('mappings_by_account', 'rules_by_pin', 'rules_by_account')"),
                     3);
    /* Each rebuilt table bumps the generation on insert, update and delete again. */
    ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND "
                             "tbl_name IN ('pins', 'accounts', 'mappings', 'rules') AND name "
                             "LIKE '%_bumps_generation'"),
                     12);
    ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_foreign_key_list('mappings') WHERE "
                             "\"table\" = 'accounts'"),
                     1);
    ck_assert_int_eq(cli_all("account", "rm", "acme", NULL), 1);
    ck_out_has("used by");
    int64_t generation = raw_int("SELECT generation FROM meta");
    ck_cli_ok("account", "disable", "globex");
    ck_assert_int_gt(raw_int("SELECT generation FROM meta"), generation);

    /* From here on, freed ids stay freed. */
    ck_cli_ok("map", "add", pki_file("carol.pem"), "--account", "acme");
    ck_out_has("mapping 3:");
    ck_cli_ok("map", "rm", "3");
    ck_cli_ok("map", "add", pki_file("carol.pem"), "--account", "acme");
    ck_out_has("mapping 4:");
}
END_TEST

static Suite *cli_ops_suite(void)
{
    Suite *s = suite_create("cli_ops");
    TCase *ids = tcase_create("ids");
    tcase_add_checked_fixture(ids, setup, teardown);
    tcase_add_test(ids, test_ids_never_reused_after_rm);
    tcase_add_test(ids, test_schema_4_store_migrates_keeping_everything);
    suite_add_tcase(s, ids);
    TCase *changes = tcase_create("changes");
    tcase_add_checked_fixture(changes, setup, teardown);
    tcase_add_test(changes, test_map_rm_says_what_still_admits);
    tcase_add_test(changes, test_map_rm_by_id_says_what_still_admits);
    tcase_add_test(changes, test_map_rm_names_a_rule_that_still_admits);
    tcase_add_test(changes, test_map_rm_all_takes_access_away_in_one_go);
    tcase_add_test(changes, test_map_disable_prints_the_id);
    tcase_add_test(changes, test_already_exists_names_the_mapping);
    tcase_add_test(changes, test_account_rm_counts_and_names_rules);
    tcase_add_test(changes, test_stats_counts_rules);
    suite_add_tcase(s, changes);
    TCase *listings = tcase_create("listings");
    tcase_add_checked_fixture(listings, setup, teardown);
    tcase_add_test(listings, test_json_listing_empty_on_error);
    tcase_add_test(listings, test_names_shown_as_typed);
    suite_add_tcase(s, listings);
    tcase_add_test(listings, test_expiring_reports_what_stops_working);
    tcase_add_test(listings, test_import_json_lines_with_bom_and_array);
    tcase_add_test(listings, test_import_progress_on_a_terminal);
    TCase *errors = tcase_create("errors");
    tcase_add_checked_fixture(errors, setup, teardown);
    tcase_add_test(errors, test_errors_name_the_path_once);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    return us_run_suite(cli_ops_suite(), "check_cli_ops", &pki, &tmp_root);
}
