/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an operator does with the certstore CLI after the first day: find a
 * partner's mapping (map show, subjects in map ls, key prefixes), ask check
 * why, and be warned of mappings and rules that can never work. Every test
 * runs the real binary against a real store made by the test PKI.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

static testpki *pki;
static char *tmp_root;
static char pki_dir[PATH_MAX + 16];
static us_store store;
static char out[65536];

static void setup(void)
{
    us_store_open(&store, tmp_root);
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", store.dir);
    ck_assert_int_eq(mkdir(pki_dir, 0700), 0);
    ck_assert(testpki_write(pki, pki_dir));
}

static void teardown(void)
{
    us_store_close(&store);
}

static const char *pem(const char *name)
{
    static char bufs[8][PATH_MAX + 64];
    static int next;
    char *buf = bufs[next++ % 8];

    snprintf(buf, sizeof(bufs[0]), "%s/%s.pem", pki_dir, name);
    return buf;
}

/* certstore --db STORE ARGS... with stderr in out; the exit status. */
static int cli(const char *first, ...)
{
    va_list ap;
    int status;

    va_start(ap, first);
    status = us_cli_v(store.db, 1, out, sizeof(out), first, ap);
    va_end(ap);
    return status;
}

#define ck_cli(want, ...)                                                                          \
    do {                                                                                           \
        int got_ = cli(__VA_ARGS__, NULL);                                                         \
        ck_assert_msg(got_ == (want), "exit %d, wanted %d:\n%s", got_, (want), out);               \
    } while (0)
#define ck_out_has(text) ck_assert_msg(strstr(out, (text)) != NULL, "lacks '%s':\n%s", (text), out)
#define ck_out_lacks(text) ck_assert_msg(strstr(out, (text)) == NULL, "has '%s':\n%s", (text), out)

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static const char *fp_of(const testpki_cred *cred)
{
    static char fp[4][CS_FP_HEX_LEN + 1];
    static int next;
    char *buf = fp[next++ % 4];

    ck_assert(cs_fp_of_cert(cred->cert, buf));
    return buf;
}

/* ---- finding a partner's mapping ------------------------------------------- */

START_TEST(test_map_show_names_the_certificate_a_mapping_was_made_from)
{
    char subject[512], issuer[512];

    cs_name_text(X509_get_subject_name(pki->alice.cert), subject, sizeof(subject));
    cs_name_text(X509_get_issuer_name(pki->alice.cert), issuer, sizeof(issuer));
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(0, "map", "add", pem("alice"), "--account", "alice", "--create-account");
    ck_cli(0, "map", "add", pem("alice"), "--account", "alice", "--kind", "spki");

    ck_cli(0, "map", "show", "1");
    ck_out_has("mapping 1: cert ");
    ck_out_has(subject);
    ck_out_has(issuer);
    ck_out_has(fp_of(&pki->alice));
    ck_out_has("serial: ");

    /* By the certificate file: every mapping of it. */
    ck_cli(0, "map", "show", pem("alice"));
    ck_out_has("mapping 1: cert ");
    ck_out_has("mapping 2: spki ");
    ck_cli(0, "map", "show", pem("alice"), "--json");
    ck_assert_msg(out[0] == '[' && strstr(out, "]\n") != NULL, "%s", out);
    ck_out_has("\"certificate\":{\"sha256\":\"");

    /* map ls shows the subject. */
    ck_cli(0, "map", "ls");
    ck_out_has("subject=");
    ck_out_has(subject);

    /* A certificate nothing maps: exit 1, one line. */
    ck_cli(1, "map", "show", pem("bob"));
    ck_out_has("no such mapping");
}
END_TEST

START_TEST(test_mapping_from_a_key_keeps_no_certificate)
{
    char csv[PATH_MAX + 16], line[256];

    snprintf(csv, sizeof(csv), "%s/keys.csv", store.dir);
    snprintf(line, sizeof(line), "kind,key,account\ncert,%s,alice\n", fp_of(&pki->alice));
    write_text(csv, line);
    ck_cli(0, "import", csv, "--create-accounts");
    ck_cli(0, "map", "show", "1");
    ck_out_has("certificate: none kept");
    ck_cli(0, "map", "ls");
    ck_out_lacks("subject=");
}
END_TEST

START_TEST(test_unique_key_prefixes_name_a_mapping_and_ambiguous_ones_are_refused)
{
    char csv[PATH_MAX + 16];
    const char *a = "abcd000000000000000000000000000000000000000000000000000000000001";
    const char *b = "abcd110000000000000000000000000000000000000000000000000000000002";
    char text[400];

    snprintf(csv, sizeof(csv), "%s/keys.csv", store.dir);
    snprintf(text, sizeof(text), "kind,key,account\ncert,%s,alice\nspki,%s,bob\n", a, b);
    write_text(csv, text);
    ck_cli(0, "import", csv, "--create-accounts");

    ck_cli(0, "map", "show", "abcd0");
    ck_out_has("mapping 1: cert abcd0000");
    ck_cli(0, "map", "show", "ABCD:11");
    ck_out_has("mapping 2: spki abcd1100");
    /* The prefix of two: refused, both candidates named. */
    ck_cli(1, "map", "show", "abcd");
    ck_out_has("ambiguous");
    ck_out_has("1 cert abcd0000");
    ck_out_has("2 spki abcd1100");
    /* --kind narrows it. */
    ck_cli(0, "map", "show", "abcd", "--kind", "spki");
    ck_out_has("mapping 2: spki");
    /* Too short, and nothing starts with it. */
    ck_cli(2, "map", "show", "abc");
    ck_cli(1, "map", "show", "ffff");
    ck_out_has("no such mapping");
    /* Wherever a key is taken: disable by prefix. */
    ck_cli(0, "map", "disable", "abcd11");
    ck_cli(0, "map", "show", "2");
    ck_out_has("(disabled)");
    ck_cli(1, "map", "enable", "abcd");
    ck_out_has("ambiguous");
}
END_TEST

/* ---- check --explain ------------------------------------------------------- */

/* A leaf of ca-a with alice's key, a UTF-8 subject and SANs (UPN too); its chain file. */
static const char *write_juergen_chain(void)
{
    static char path[PATH_MAX + 32];
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();

    ck_assert(cert && name);
    ck_assert(X509_set_version(cert, 2));
    ck_assert(ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242));
    ck_assert(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                         (const unsigned char *)"certstore tests", -1, -1, 0));
    ck_assert(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                         (const unsigned char *)"J\xc3\xbcrgen", -1, -1, 0));
    ck_assert(X509_set_subject_name(cert, name));
    X509_NAME_free(name);
    ck_assert(X509_set_issuer_name(cert, X509_get_subject_name(pki->ca_a.cert)));
    ck_assert(X509_time_adj_ex(X509_getm_notBefore(cert), 0, -60, NULL));
    ck_assert(X509_time_adj_ex(X509_getm_notAfter(cert), 30, 0, NULL));
    ck_assert(X509_set_pubkey(cert, pki->alice.key));
    ck_assert(testpki_add_ext(cert, pki->ca_a.cert, NID_subject_alt_name,
                              "DNS:gw.acme.example,email:j@acme.example,"
                              "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:j@corp.example"));
    ck_assert(testpki_add_ext(cert, pki->ca_a.cert, NID_ext_key_usage, "clientAuth"));
    ck_assert(X509_sign(cert, pki->ca_a.key, EVP_sha256()) > 0);
    snprintf(path, sizeof(path), "%s/juergen-chain.pem", store.dir);
    ck_assert(testpki_write_pem(path, cert, pki->ca_a.cert, (X509 *)NULL));
    X509_free(cert);
    return path;
}

START_TEST(test_check_explain_shows_every_mapping_and_rule_considered)
{
    ck_cli(0, "pin", "add", pem("ca-a"));
    /* spki of alice's key: would accept the renewed certificate. */
    ck_cli(0, "map", "add", pem("alice"), "--account", "alice", "--create-account", "--kind",
           "spki");
    /* The renewed certificate's own mapping, not yet valid: it decides first. */
    ck_cli(0, "map", "add", pem("alice-renewed"), "--account", "alice", "--not-before",
           "2999-01-01");
    ck_cli(0, "rule", "add", "--pin", fp_of(&pki->ca_a), "--account", "partners",
           "--create-account", "--subject", "CN=gw-*");

    ck_cli(1, "check", pem("alice-renewed-chain"), "--ca", pem("roots"), "--explain");
    ck_assert_msg(strncmp(out, "reject mapping-not-yet-valid mapping=2\n", 39) == 0, "%s", out);
    ck_out_has("  pin: the issuing CA is pinned and enabled\n");
    ck_out_has("  mapping 2 cert -> alice: decided: reject mapping-not-yet-valid");
    ck_out_has("  mapping issuer-serial: none");
    ck_out_has("  mapping 1 spki -> alice: would accept");
    ck_out_has("  rule 1 allow -> partners: passed over (its conditions do not match");
    ck_out_has("subject=\"CN=gw-*\"");

    ck_cli(1, "check", pem("alice-renewed-chain"), "--ca", pem("roots"), "--explain", "--json");
    ck_out_has("{\"step\":\"mapping\",\"id\":1,\"kind\":\"spki\",\"account\":\"alice\","
               "\"applies\":true,\"decided\":false,\"outcome\":\"accept\"");
    ck_out_has("\"decided\":true,\"outcome\":\"mapping-not-yet-valid\"");

    /* Without --explain: the decision alone, as before. */
    ck_cli(1, "check", pem("alice-renewed-chain"), "--ca", pem("roots"));
    ck_out_lacks("explain:");
}
END_TEST

START_TEST(test_check_explain_names_the_unpinned_issuer_and_the_sans)
{
    char subject[512];
    const char *chain = write_juergen_chain();

    cs_name_text(X509_get_subject_name(pki->ca_b.cert), subject, sizeof(subject));
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(1, "check", pem("carol-chain"), "--ca", pem("roots"));
    ck_out_has("reject issuer-not-pinned\n");
    ck_out_has(subject);
    ck_out_has(fp_of(&pki->ca_b));
    ck_out_has("certstore pin add");
    ck_cli(1, "check", pem("carol-chain"), "--ca", pem("roots"), "--explain");
    ck_out_has("  pin: the issuing CA is not pinned (decided)");
    ck_out_has("-----BEGIN CERTIFICATE-----");

    /* The printed issuer pins it. */
    {
        char issuer_pem[PATH_MAX + 32];
        const char *begin = strstr(out, "-----BEGIN CERTIFICATE-----");

        snprintf(issuer_pem, sizeof(issuer_pem), "%s/issuer.pem", store.dir);
        write_text(issuer_pem, begin);
        ck_cli(0, "pin", "add", issuer_pem);
        ck_out_has(fp_of(&pki->ca_b));
    }

    ck_cli(1, "check", chain, "--ca", pem("roots"), "--explain");
    ck_out_has("subject: CN=J\xc3\xbcrgen,O=certstore tests\n");
    ck_out_has("san: DNS:gw.acme.example, email:j@acme.example, UPN:j@corp.example\n");
}
END_TEST

/* ---- mappings and rules that can never work ------------------------------- */

START_TEST(test_map_add_says_when_a_mapping_cannot_work)
{
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(0, "pin", "add", pem("ca-b"));
    ck_cli(0, "account", "add", "acme");

    /* Bound to a pinned CA that did not issue it: never, refused. */
    ck_cli(1, "map", "add", pem("alice"), "--account", "acme", "--pin", fp_of(&pki->ca_b));
    ck_out_has("did not issue this certificate");
    ck_cli(0, "map", "ls");
    ck_out_lacks("acme");
    /* Bound to a CA not pinned (yet): added, with a warning. */
    ck_cli(0, "map", "add", pem("alice"), "--account", "acme", "--pin", fp_of(&pki->ca_twin));
    ck_out_has("warning: --pin");
    ck_out_has("is not pinned");
    /* An expired certificate, a window in the past: added, with a warning each. */
    ck_cli(0, "map", "add", pem("expired"), "--account", "acme");
    ck_out_has("warning: ");
    ck_out_has("expired on");
    ck_cli(0, "map", "add", pem("bob"), "--account", "acme", "--not-after", "2001-01-01");
    ck_out_has("is in the past");
    /* A fine mapping: no warning. */
    ck_cli(0, "map", "add", pem("alice"), "--account", "acme", "--kind", "spki");
    ck_out_lacks("warning");
}
END_TEST

START_TEST(test_import_warns_of_mappings_bound_to_an_unpinned_ca)
{
    char csv[PATH_MAX + 16], text[512];

    snprintf(csv, sizeof(csv), "%s/keys.csv", store.dir);
    snprintf(text, sizeof(text), "kind,key,account,pin\ncert,%s,alice,%s\ncert,%s,bob,%s\n",
             fp_of(&pki->alice), fp_of(&pki->ca_b), fp_of(&pki->bob), fp_of(&pki->ca_b));
    write_text(csv, text);
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(0, "import", csv, "--create-accounts");
    ck_out_has("warning: 2 mappings are bound to ");
    ck_out_has(fp_of(&pki->ca_b));
}
END_TEST

START_TEST(test_rule_without_a_condition_needs_any)
{
    ck_cli(0, "pin", "add", pem("ca-a"));
    ck_cli(2, "rule", "add", "--pin", fp_of(&pki->ca_a), "--account", "acme", "--create-account");
    ck_out_has("--any");
    ck_cli(2, "rule", "add", "--pin", fp_of(&pki->ca_a), "--account", "acme", "--create-account",
           "--any", "--subject", "CN=x");
    ck_cli(0, "rule", "add", "--pin", fp_of(&pki->ca_a), "--account", "acme", "--create-account",
           "--any");
    /* A deny rule for the whole CA admits nothing: no --any needed. */
    ck_cli(0, "rule", "add", "--pin", fp_of(&pki->ca_a), "--deny", "--priority", "1");
    /* A prefix of the pin's fingerprint will do; one of no pin is refused. */
    {
        char prefix[9];

        snprintf(prefix, sizeof(prefix), "%.8s", fp_of(&pki->ca_a));
        ck_cli(0, "rule", "add", "--pin", prefix, "--account", "acme", "--subject", "CN=y");
        ck_cli(0, "pin", "disable", prefix);
        ck_out_has(fp_of(&pki->ca_a));
    }
}
END_TEST

/* ---- an urgent change and a long writer ------------------------------------ */

/*
 * A child process holding the write lock (BEGIN IMMEDIATE) for hold_ms, as
 * a long import does; returns its pid once the lock is held.
 */
static pid_t hold_write_lock(int hold_ms)
{
    int ready[2];
    char byte;
    pid_t pid;

    ck_assert_int_eq(pipe(ready), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sqlite3 *raw = NULL;

        close(ready[0]);
        if (sqlite3_open(store.db, &raw) != SQLITE_OK ||
            sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        usleep((useconds_t)hold_ms * 1000);
        sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(raw);
        _exit(0);
    }
    close(ready[1]);
    ck_assert_int_eq(read(ready[0], &byte, 1), 1);
    close(ready[0]);
    return pid;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

START_TEST(test_wait_outlasts_a_long_writer_and_names_it_when_it_gives_up)
{
    struct timespec t0;
    char pid_text[32];
    pid_t holder;
    int status;

    ck_cli(0, "account", "add", "alice");
    /* SQLite's locks must not be shared across fork: the child starts without any. */
    cs_db_close(store.reader);
    cs_db_close(store.writer);
    store.reader = store.writer = NULL;
    /* Gives up after --wait, naming the process that holds the lock. */
    holder = hold_write_lock(4000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_cli(1, "account", "disable", "alice", "--wait", "0.5");
    ck_assert_msg(seconds_since(&t0) >= 0.5 && seconds_since(&t0) < 3.5, "waited %.2f s",
                  seconds_since(&t0));
    snprintf(pid_text, sizeof(pid_text), "held by process %d (", (int)holder);
    ck_out_has(pid_text);
    ck_out_has("check_cli_operator");
    ck_out_has("--wait SECONDS");
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Waits it out: --wait after the command, and CERTSTORE_WAIT as the default. */
    holder = hold_write_lock(2500);
    ck_cli(0, "account", "disable", "alice", "--wait", "20");
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    holder = hold_write_lock(2500);
    setenv("CERTSTORE_WAIT", "20", 1);
    ck_cli(0, "account", "enable", "alice");
    unsetenv("CERTSTORE_WAIT");
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    ck_cli(0, "--wait", "1", "account", "ls");
    ck_cli(2, "account", "ls", "--wait", "soon");
    ck_out_has("not a number of seconds");
}
END_TEST

/* ---- imports that can be re-run ------------------------------------------- */

START_TEST(test_import_can_be_rerun_with_update_and_lists_accounts_it_would_create)
{
    char csv[PATH_MAX + 16], text[512];

    snprintf(csv, sizeof(csv), "%s/rows.csv", store.dir);
    snprintf(text, sizeof(text), "kind,key,account,note\ncert,%s,alice,first\ncert,%s,bbo,typo\n",
             fp_of(&pki->alice), fp_of(&pki->bob));
    write_text(csv, text);
    ck_cli(0, "account", "add", "alice");

    /* A new account is a typo until said otherwise: listed, nothing imported. */
    ck_cli(1, "import", csv);
    ck_out_has("would create 1 accounts");
    ck_out_has("--create-accounts");
    ck_out_has("\n  bbo\n");
    ck_cli(0, "map", "ls");
    ck_out_lacks("alice");
    ck_cli(0, "import", csv, "--create-accounts");
    ck_out_has("imported 2 mappings (1 accounts created)");

    /* Re-run: refused as before without --update; with it, rows replace their mappings. */
    ck_cli(1, "import", csv);
    ck_out_has("already exists");
    snprintf(text, sizeof(text),
             "kind,key,account,note\ncert,%s,alice,second\ncert,%s,bob,fixed\n"
             "spki,%s,alice,new\n",
             fp_of(&pki->alice), fp_of(&pki->bob), fp_of(&pki->carol));
    write_text(csv, text);
    ck_cli(0, "import", csv, "--update", "--create-accounts");
    ck_out_has("imported 3 mappings (1 new, 2 updated; 1 accounts created)");
    ck_cli(0, "map", "ls");
    ck_out_has("1 cert ");
    ck_out_has("account=alice enabled note=second");
    ck_out_has("account=bob enabled note=fixed");
    /* A new id (an update spends one too: ids are never reused, gaps are fine). */
    ck_out_has(" spki ");
    ck_out_has("account=alice enabled note=new");
    ck_out_lacks("note=first");
    /* The same file again changes nothing but says so. */
    ck_cli(0, "import", csv, "--update");
    ck_out_has("imported 3 mappings (0 new, 3 updated; 0 accounts created)");
    ck_cli(2, "import", csv, "--allow-partial");
}
END_TEST

static Suite *operator_suite(void)
{
    Suite *s = suite_create("cli_operator");
    TCase *find = tcase_create("find");

    tcase_add_checked_fixture(find, setup, teardown);
    tcase_add_test(find, test_map_show_names_the_certificate_a_mapping_was_made_from);
    tcase_add_test(find, test_mapping_from_a_key_keeps_no_certificate);
    tcase_add_test(find, test_unique_key_prefixes_name_a_mapping_and_ambiguous_ones_are_refused);
    suite_add_tcase(s, find);

    TCase *explain = tcase_create("explain");
    tcase_add_checked_fixture(explain, setup, teardown);
    tcase_add_test(explain, test_check_explain_shows_every_mapping_and_rule_considered);
    tcase_add_test(explain, test_check_explain_names_the_unpinned_issuer_and_the_sans);
    suite_add_tcase(s, explain);

    TCase *never = tcase_create("never");
    tcase_add_checked_fixture(never, setup, teardown);
    tcase_add_test(never, test_map_add_says_when_a_mapping_cannot_work);
    tcase_add_test(never, test_import_warns_of_mappings_bound_to_an_unpinned_ca);
    tcase_add_test(never, test_rule_without_a_condition_needs_any);
    suite_add_tcase(s, never);

    TCase *wait = tcase_create("wait");
    tcase_add_checked_fixture(wait, setup, teardown);
    tcase_add_test(wait, test_wait_outlasts_a_long_writer_and_names_it_when_it_gives_up);
    suite_add_tcase(s, wait);

    TCase *imports = tcase_create("imports");
    tcase_add_checked_fixture(imports, setup, teardown);
    tcase_add_test(imports,
                   test_import_can_be_rerun_with_update_and_lists_accounts_it_would_create);
    suite_add_tcase(s, imports);
    return s;
}

int main(void)
{
    return us_run_suite(operator_suite(), "check_cli_operator", &pki, &tmp_root);
}
