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

#include <openssl/evp.h>
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
    /* Rows are stored in key order: alice's mapping is 1 or 2. */
    ck_out_has("line 2: a mapping with this kind and key already exists: mapping ");
    ck_out_has(" -> alice; nothing imported");
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

/* How many times needle occurs in out. */
static int out_count(const char *needle)
{
    int n = 0;

    for (const char *p = out; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A certificate's DER in base64, one line, as IIS writes it. */
static char *cert_base64(X509 *cert)
{
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    char *b64;

    ck_assert_int_gt(len, 0);
    b64 = malloc((size_t)len * 2 + 8);
    ck_assert_ptr_nonnull(b64);
    EVP_EncodeBlock((unsigned char *)b64, der, len);
    OPENSSL_free(der);
    return b64;
}

/*
 * An applicationHost.config section: one-to-one mappings of alice, bob and
 * (when given) alice's renewed certificate, and one many-to-one mapping of
 * everyone in O=certstore tests.
 */
static void write_iis(const char *path, const char *alice_user, int with_renewed,
                      const char *partners_user)
{
    char *alice = cert_base64(pki->alice.cert), *bob = cert_base64(pki->bob.cert);
    char *renewed = cert_base64(pki->alice_renewed.cert), renewed_line[4096] = "";
    char *xml = malloc(16384);

    ck_assert_ptr_nonnull(xml);
    if (with_renewed)
        snprintf(renewed_line, sizeof(renewed_line),
                 "<add userName=\"%s\" password=\"pw\" certificate=\"%s\" />\n", alice_user,
                 renewed);
    snprintf(xml, 16384,
             "<configuration><system.webServer><security><authentication>\n"
             "<iisClientCertificateMappingAuthentication enabled=\"true\">\n"
             "<oneToOneMappings>\n"
             "<add userName=\"%s\" password=\"pw\" certificate=\"%s\" />\n"
             "<add userName=\"CORP\\bob\" password=\"pw\" certificate=\"%s\" />\n"
             "%s"
             "</oneToOneMappings>\n"
             "<manyToOneMappings>\n"
             "<add name=\"Partners\" permissionMode=\"Allow\" userName=\"%s\" password=\"pw\">\n"
             "<rules><add certificateField=\"Subject\" certificateSubField=\"O\" "
             "matchCriteria=\"certstore tests\" compareCaseSensitive=\"true\" /></rules>\n"
             "</add>\n"
             "</manyToOneMappings>\n"
             "</iisClientCertificateMappingAuthentication>\n"
             "</authentication></security></system.webServer></configuration>\n",
             alice_user, alice, bob, renewed_line, partners_user);
    write_text(path, xml);
    free(xml);
    free(alice);
    free(bob);
    free(renewed);
}

START_TEST(test_iis_import_can_be_rerun_with_update)
{
    char path[PATH_MAX + 32];

    snprintf(path, sizeof(path), "%s/applicationHost.config", store.dir);
    ck_cli(0, "pin", "add", pem("ca-a"));
    write_iis(path, "CORP\\alice", 0, "CORP\\svc-partners");
    ck_cli(0, "import", "--format", "iis", path, "--pin", fp_of(&pki->ca_a), "--create-accounts");
    ck_out_has("imported 2 mappings and 1 rules (3 accounts created, 0 entries not imported)");

    /* Again without --update: refused, naming the mapping that is there; nothing changes. */
    ck_cli(1, "import", "--format", "iis", path, "--pin", fp_of(&pki->ca_a));
    ck_out_has("line 4: a cert mapping for this certificate already exists: mapping 1 -> "
               "CORP\\alice; nothing imported (--update updates it)");
    write_iis(path, "CORP\\alice2", 1, "CORP\\svc-gateways");
    ck_cli(1, "import", "--format", "iis", path, "--pin", fp_of(&pki->ca_a), "--create-accounts");
    ck_out_has("already exists: mapping 1 -> CORP\\alice;");
    ck_cli(0, "account", "ls");
    ck_out_lacks("alice2");
    ck_out_lacks("gateways");
    ck_cli(0, "map", "ls");
    ck_assert_int_eq(out_count(" cert "), 2);
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 1);

    /* With --update: a changed account is updated, a new entry added, nothing twice. */
    ck_cli(0, "import", "--format", "iis", path, "--pin", fp_of(&pki->ca_a), "--create-accounts",
           "--update");
    ck_out_has("imported 3 mappings (1 new, 2 updated) and 1 rules (0 new, 1 updated); "
               "2 accounts created, 0 entries not imported");
    ck_cli(0, "map", "ls");
    ck_assert_int_eq(out_count(" cert "), 3);
    ck_assert_int_eq(out_count("account=CORP\\alice2 "), 2);
    ck_assert_int_eq(out_count("account=CORP\\bob "), 1);
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 1);
    ck_out_has("1 allow account=CORP\\svc-gateways priority=10 ");
    ck_cli(0, "check", pem("alice-chain"), "--ca", pem("roots"));
    ck_out_has("accept account=CORP\\alice2 kind=cert mapping=1");
    ck_cli(0, "check", pem("alice-renewed-chain"), "--ca", pem("roots"));
    ck_out_has("accept account=CORP\\alice2 kind=cert");
    ck_cli(0, "log");
    ck_out_has("map update id=1 kind=cert");
    ck_out_has("rule update id=1 action=allow account=CORP\\svc-gateways");

    /* The same file again: every entry is there already. */
    ck_cli(0, "import", "--format", "iis", path, "--pin", fp_of(&pki->ca_a), "--update");
    ck_out_has("imported 3 mappings (0 new, 3 updated) and 1 rules (0 new, 1 updated); "
               "0 accounts created, 0 entries not imported");
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 1);
}
END_TEST

/* Issuer DN most specific first, as AD writes it. */
static void ad_issuer(X509 *cert, char *buf, size_t len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int n;

    ck_assert_ptr_nonnull(bio);
    ck_assert(X509_NAME_print_ex(bio, X509_get_issuer_name(cert), 0,
                                 XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0);
    n = BIO_read(bio, buf, (int)len - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    BIO_free(bio);
}

/* "X509:<I>issuer<SR>serial", the serial least significant byte first as AD keeps it. */
static const char *ad_issuer_serial(X509 *cert)
{
    static char bufs[2][1024];
    static int next;
    char *buf = bufs[next++ % 2], issuer[512], serial[160] = "";
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    unsigned char bytes[64];
    int n = BN_bn2bin(bn, bytes);

    for (int i = 0; i < n; i++)
        snprintf(serial + 2 * i, 3, "%02x", bytes[n - 1 - i]);
    BN_free(bn);
    ad_issuer(cert, issuer, sizeof(issuer));
    snprintf(buf, sizeof(bufs[0]), "X509:<I>%s<SR>%s", issuer, serial);
    return buf;
}

static const char *ad_ski(X509 *cert)
{
    static char buf[160];
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);

    ck_assert_ptr_nonnull(ski);
    strcpy(buf, "X509:<SKI>");
    for (int i = 0; i < ASN1_STRING_length(ski); i++)
        snprintf(buf + 10 + 2 * i, 3, "%02X", ASN1_STRING_get0_data(ski)[i]);
    return buf;
}

START_TEST(test_altsecid_import_can_be_rerun_with_update)
{
    char path[PATH_MAX + 32], text[4096], bob_ski[160];
    const char *fp = fp_of(&pki->ca_a);

    snprintf(path, sizeof(path), "%s/altsec.tsv", store.dir);
    snprintf(bob_ski, sizeof(bob_ski), "%s", ad_ski(pki->bob.cert));
    ck_cli(0, "pin", "add", pem("ca-a"));
    snprintf(text, sizeof(text), "erin\tX509:<S>CN=alice,O=certstore tests\nalice\t%s\nbob\t%s\n",
             ad_issuer_serial(pki->alice.cert), bob_ski);
    write_text(path, text);
    ck_cli(0, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak",
           "--create-accounts");
    ck_out_has("imported 2 mappings and 1 rules (3 accounts created, 0 entries not imported)");

    /* Again without --update: the identical rule is refused, not added twice. */
    ck_cli(1, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak");
    ck_out_has("line 1: a rule with the same pin and conditions already exists: rule 1 -> erin; "
               "nothing imported (--update updates it)");
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 1);

    /* The rule and alice's mapping change account; alice's renewed certificate is new. */
    snprintf(text, sizeof(text),
             "frank\tX509:<S>CN=alice,O=certstore tests\nalicia\t%s\nbob\t%s\nalicia\t%s\n",
             ad_issuer_serial(pki->alice.cert), bob_ski, ad_issuer_serial(pki->alice_renewed.cert));
    write_text(path, text);
    ck_cli(1, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak",
           "--create-accounts");
    ck_out_has("rule 1 -> erin;");
    ck_cli(0, "account", "ls");
    ck_out_lacks("alicia");
    ck_out_lacks("frank");
    ck_cli(0, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak",
           "--create-accounts", "--update");
    ck_out_has("imported 3 mappings (1 new, 2 updated) and 1 rules (0 new, 1 updated); "
               "2 accounts created, 0 entries not imported");
    ck_cli(0, "map", "ls");
    ck_assert_int_eq(out_count(" issuer-serial "), 2);
    ck_assert_int_eq(out_count(" ski "), 1);
    ck_assert_int_eq(out_count("account=alicia "), 2);
    ck_out_has("1 issuer-serial ");
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 1);
    ck_out_has("1 allow account=frank priority=100 ");
    ck_cli(0, "check", pem("alice-chain"), "--ca", pem("roots"));
    ck_out_has("accept account=alicia kind=issuer-serial mapping=1");
    ck_cli(0, "check", pem("alice-renewed-chain"), "--ca", pem("roots"));
    ck_out_has("accept account=alicia kind=issuer-serial");

    /* Two rules of the same conditions in one file (the first decides) stay two. */
    write_text(path, "gina\tX509:<S>CN=twice\nhank\tX509:<S>CN=twice\n");
    ck_cli(0, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak",
           "--create-accounts", "--update");
    ck_out_has("and 2 rules (2 new, 0 updated)");
    ck_cli(0, "import", "--format", "altsecid", path, "--pin", fp, "--allow-weak", "--update");
    ck_out_has("and 2 rules (0 new, 2 updated)");
    ck_cli(0, "rule", "ls");
    ck_assert_int_eq(out_count("priority="), 3);

    /* One key twice in a file is refused, naming both lines, with --update too. */
    snprintf(text, sizeof(text), "bob\t%s\ncarol\t%s\n", bob_ski, bob_ski);
    write_text(path, text);
    ck_cli(1, "import", "--format", "altsecid", path, "--pin", fp, "--update", "--create-accounts");
    ck_out_has("line 2: same kind and key as line 1; nothing imported");

    /* A mapping a directory sync owns is not the import's to change. */
    {
        sqlite3 *raw = NULL;

        ck_assert_int_eq(sqlite3_open(store.db, &raw), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(raw,
                                      "UPDATE mappings SET source = 'sync:dc=corp' WHERE kind = 2",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(raw);
    }
    snprintf(text, sizeof(text), "bob\t%s\n", bob_ski);
    write_text(path, text);
    ck_cli(1, "import", "--format", "altsecid", path, "--pin", fp, "--update");
    ck_out_has("is owned by sync:dc=corp: an import does not change it");
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
    tcase_add_test(imports, test_iis_import_can_be_rerun_with_update);
    tcase_add_test(imports, test_altsecid_import_can_be_rerun_with_update);
    suite_add_tcase(s, imports);
    return s;
}

int main(void)
{
    return us_run_suite(operator_suite(), "check_cli_operator", &pki, &tmp_root);
}
