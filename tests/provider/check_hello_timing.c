/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A resumed session is judged against the policy state at the moment it is
 * resumed: after the whole, final ClientHello. A client controls when that
 * is: it may split its ClientHello over records and wait between them, or
 * draw a HelloRetryRequest so that its second ClientHello, the one that
 * carries the session, comes after a change. Every store write (each CLI
 * command that changes pins, accounts, mappings or rules, and a file
 * replaced by rename) lands at every such moment, for every resumption
 * kind; a resumption may succeed only when a full handshake at that moment
 * accepts the same certificate as the same account.
 *
 * The hook is process-wide and keeps the configuration of the first
 * activation, so every test runs in its own process (Check's default fork
 * mode; do not run this suite with CK_FORK=no).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_hello_timing"
#define ALICE "alice@partner-a"

static tls_harness fx;
static char pki_dir[600];
static char ca_a_fp[CS_FP_HEX_LEN + 1];

/* ---- the store ----------------------------------------------------------------- */

/*
 * ca-a pinned; alice mapped by her public key (so that mappings of earlier
 * kinds can still come); a disabled account for writes to land on.
 */
static void store_standard(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", ca_a_fp), CS_OK);
    th_map_leaf(&fx, db, "alice", ALICE, CS_KIND_SPKI, CS_TIME_NONE, CS_TIME_NONE);
    ck_assert_int_eq(cs_account_add(db, "gone@partner-a", NULL), CS_OK);
    ck_assert_int_eq(cs_account_set_enabled(db, "gone@partner-a", 0), CS_OK);
    th_store_commit(db);
}

/* A store built anew: the file and its sidecars gone first. */
static void store_fresh(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[600];
    size_t i;

    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", fx.db, suffixes[i]);
        unlink(path);
    }
    store_standard();
}

static void remove_alice_mapping(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    cs_mapping_ref ref = th_ref_for(&fx, "alice", CS_KIND_SPKI);

    ck_assert_int_eq(cs_mapping_remove(db, &ref), CS_OK);
    th_store_commit(db);
}

static void setup(void)
{
    th_setup(&fx);
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", fx.dir);
    ck_assert_int_eq(mkdir(pki_dir, 0700), 0);
    ck_assert_int_eq(testpki_write(fx.pki, pki_dir), 1);
}

static void teardown(void)
{
    th_teardown(&fx);
}

/* ---- ClientHello timings ----------------------------------------------------------- */

typedef enum { AT_CONNECT, AT_SPLIT, AT_RETRY } timing_moment;

typedef struct {
    const char *name;
    timing_moment moment;
    size_t split_at; /* AT_SPLIT: bytes of the ClientHello in its first record */
} hello_timing;

static const hello_timing timings[] = {
    {"before the ClientHello", AT_CONNECT, 0},
    {"after 1 byte of the ClientHello", AT_SPLIT, 1},
    {"after its 4-byte header", AT_SPLIT, 4},
    {"after 5 bytes", AT_SPLIT, 5},
    {"after 40 bytes", AT_SPLIT, 40},
    {"between HelloRetryRequest and the second ClientHello", AT_RETRY, 0},
};
#define N_TIMINGS ((int)(sizeof(timings) / sizeof(timings[0])))

static int timing_applies(const th_resumption_kind *k, const hello_timing *t)
{
    return t->moment != AT_RETRY || k->max_version == 0; /* HRR is TLS 1.3's */
}

/* The connection options that land `write` at moment `t`. */
static th_connect_opts opts_for(const hello_timing *t, void (*write)(void))
{
    th_connect_opts o = {.sni = "localhost"};

    switch (t->moment) {
    case AT_CONNECT:
        o.before = write;
        break;
    case AT_SPLIT:
        o.split_hello_at = t->split_at;
        o.gate_at = TH_GATE_SPLIT;
        o.at_gate = write;
        break;
    case AT_RETRY:
        /* The client offers a P-256 share; the server wants P-384: HRR. */
        o.client_groups = "P-256:P-384";
        o.server_groups = "P-384";
        o.gate_at = TH_GATE_FIRST_FLIGHT;
        o.at_gate = write;
        break;
    }
    return o;
}

/* A full handshake as alice on a server of kind k; returns her client context. */
static SSL_CTX *first_handshake(const th_resumption_kind *k, SSL_SESSION **session)
{
    th_outcome first;
    SSL_CTX *client = th_first_handshake(&fx, k, "alice", &first);

    *session = first.session;
    return client;
}

/* ---- the attacks as found ------------------------------------------------------------ */

/* The mapping goes while the server holds part of the ClientHello. */
START_TEST(test_split_client_hello_after_narrowing_not_resumed)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i / N_TIMINGS];
    const hello_timing *t = &timings[_i % N_TIMINGS];
    th_connect_opts opts = opts_for(t, remove_alice_mapping);
    SSL_SESSION *session;
    SSL_CTX *client;
    th_outcome again;

    if (!timing_applies(k, t))
        return;
    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &session);
    again = th_connect_ex(&fx, client, session, 0, &opts);
    ck_assert_msg(t->moment == AT_CONNECT || again.gate_passed, "%s, %s: the gate never opened",
                  k->name, t->name);
    ck_assert_msg(!again.reused, "%s, %s: resumed a session after its mapping was removed", k->name,
                  t->name);
    ck_assert_msg(!again.ok, "%s, %s: accepted after the removal", k->name, t->name);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

static void nothing(void)
{
}

/* The same timings with nothing written: resumption keeps working. */
START_TEST(test_split_client_hello_still_resumes_when_nothing_changed)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i / N_TIMINGS];
    const hello_timing *t = &timings[_i % N_TIMINGS];
    th_connect_opts opts = opts_for(t, nothing);
    SSL_SESSION *session;
    SSL_CTX *client;
    th_outcome again;

    if (!timing_applies(k, t))
        return;
    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &session);
    again = th_connect_ex(&fx, client, session, 0, &opts);
    ck_assert_msg(again.ok, "%s, %s: handshake failed", k->name, t->name);
    ck_assert_msg(again.reused, "%s, %s: did not resume though nothing changed", k->name, t->name);
    ck_assert_str_eq(again.account, ALICE);
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- the property: every write x every resumption kind x every timing ------------------ */

/* A store write as an operator makes it: the certstore binary, or a replaced file. */
typedef struct {
    const char *name;
    const char *args[12]; /* after --db DB; @PKI@ and @CA_A@ and @SOON@ are filled in */
    int replace_file;
} store_write;

static const store_write writes[] = {
    {"nothing", {NULL}, 0},
    {"map rm", {"map", "rm", "@PKI@/alice.pem", "--kind", "spki", NULL}, 0},
    {"map disable", {"map", "disable", "@PKI@/alice.pem", "--kind", "spki", NULL}, 0},
    {"map add cert, not yet valid",
     {"map", "add", "@PKI@/alice.pem", "--account", ALICE, "--not-before", "@SOON@", NULL},
     0},
    {"map add cert to another account",
     {"map", "add", "@PKI@/alice.pem", "--account", "mallory@partner-a", "--create-account", NULL},
     0},
    {"map add issuer-serial to a disabled account",
     {"map", "add", "@PKI@/alice.pem", "--kind", "issuer-serial", "--account", "gone@partner-a",
      NULL},
     0},
    {"account disable", {"account", "disable", ALICE, NULL}, 0},
    {"account rm --cascade", {"account", "rm", ALICE, "--cascade", NULL}, 0},
    {"pin disable", {"pin", "disable", "@CA_A@", NULL}, 0},
    {"pin add (widening)", {"pin", "add", "@PKI@/ca-b.pem", NULL}, 0},
    {"rule add deny",
     {"rule", "add", "--pin", "@CA_A@", "--deny", "--priority", "1", "--subject", "CN=*", NULL},
     0},
    {"import another account", {"import", "@PKI@/../import.csv", "--create-accounts", NULL}, 0},
    {"database replaced by rename", {NULL}, 1},
};
#define N_WRITES ((int)(sizeof(writes) / sizeof(writes[0])))

static const store_write *current_write;

static void fill(char *out, size_t len, const char *arg)
{
    char soon[32];
    time_t later = time(NULL) + 3 * 86400;
    const char *at;

    strftime(soon, sizeof(soon), "%Y-%m-%d", gmtime(&later));
    if ((at = strstr(arg, "@PKI@")) != NULL)
        snprintf(out, len, "%.*s%s%s", (int)(at - arg), arg, pki_dir, at + 5);
    else if (strcmp(arg, "@CA_A@") == 0)
        snprintf(out, len, "%s", ca_a_fp);
    else if (strcmp(arg, "@SOON@") == 0)
        snprintf(out, len, "%s", soon);
    else
        snprintf(out, len, "%s", arg);
}

static void run_cli(const store_write *w)
{
    char filled[12][700];
    char *argv[16];
    const char *bin = getenv("CERTSTORE_BIN");
    int n = 0, i, status;
    pid_t pid;

    ck_assert_ptr_nonnull(bin);
    argv[n++] = (char *)bin;
    argv[n++] = "--db";
    argv[n++] = fx.db;
    for (i = 0; w->args[i] != NULL; i++) {
        fill(filled[i], sizeof(filled[i]), w->args[i]);
        argv[n++] = filled[i];
    }
    argv[n] = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execv(bin, argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: certstore exited %d", w->name,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Another file at the path: bob mapped, alice not. */
static void replace_database(void)
{
    char tmp[600];
    cs_db *db;
    char fp[CS_FP_HEX_LEN + 1];

    snprintf(tmp, sizeof(tmp), "%s/replacement.db", fx.dir);
    db = th_store_begin(tmp, SUITE_NAME);
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "bob", "bob@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
    ck_assert_int_eq(rename(tmp, fx.db), 0);
}

static void apply_current_write(void)
{
    if (current_write->replace_file)
        replace_database();
    else if (current_write->args[0] != NULL)
        run_cli(current_write);
}

static void write_import_file(void)
{
    char path[700];
    char key[CS_FP_HEX_LEN + 1];
    FILE *f;

    snprintf(path, sizeof(path), "%s/import.csv", fx.dir);
    ck_assert_int_eq(cs_fp_of_cert(fx.pki->alice.cert, key), 1);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "kind,key,account\ncert,%s,mallory@partner-a\n", key);
    fclose(f);
}

/* One resumption attempt with the write landing at moment t, judged against a full handshake. */
static void check_one(const th_resumption_kind *k, const hello_timing *t)
{
    th_connect_opts opts = opts_for(t, apply_current_write);
    SSL_SESSION *session;
    SSL_CTX *client, *fresh;
    th_outcome again, full;

    client = first_handshake(k, &session);
    again = th_connect_ex(&fx, client, session, 0, &opts);
    ck_assert_msg(t->moment == AT_CONNECT || again.gate_passed, "%s/%s/%s: gate never opened",
                  current_write->name, k->name, t->name);
    fresh = th_make_client(&fx, "alice");
    full = th_connect_with(&fx, fresh, NULL, 0);
    if (again.reused) {
        ck_assert_msg(full.ok, "%s/%s/%s: resumed, but a full handshake now is rejected",
                      current_write->name, k->name, t->name);
        ck_assert_msg(strcmp(again.account, full.account) == 0,
                      "%s/%s/%s: resumed as '%s', a full handshake now says '%s'",
                      current_write->name, k->name, t->name, again.account, full.account);
    } else {
        ck_assert_msg(again.ok == full.ok, "%s/%s/%s: decided %d, a full handshake %d",
                      current_write->name, k->name, t->name, again.ok, full.ok);
    }
    if (current_write->args[0] == NULL && !current_write->replace_file)
        ck_assert_msg(again.reused, "%s/%s: no write, yet no resumption", k->name, t->name);
    SSL_SESSION_free(session);
    SSL_CTX_free(client);
    SSL_CTX_free(fresh);
    SSL_CTX_free(fx.server);
    fx.server = NULL;
}

START_TEST(test_resumption_accepted_only_as_a_full_handshake_would_be)
{
    const store_write *w = &writes[_i / TH_RESUMPTION_KINDS];
    const th_resumption_kind *k = &th_resumption_kinds[_i % TH_RESUMPTION_KINDS];
    int t;

    current_write = w;
    write_import_file();
    th_load_provider_with(&fx, "");
    for (t = 0; t < N_TIMINGS; t++) {
        if (!timing_applies(k, &timings[t]))
            continue;
        store_fresh();
        check_one(k, &timings[t]);
    }
}
END_TEST

static Suite *hello_timing_suite(void)
{
    Suite *s = suite_create("hello_timing");
    TCase *found = tcase_create("attacks_as_found");
    TCase *works = tcase_create("still_resumes");
    TCase *property = tcase_create("property");

    tcase_add_checked_fixture(found, setup, teardown);
    tcase_add_loop_test(found, test_split_client_hello_after_narrowing_not_resumed, 0,
                        TH_RESUMPTION_KINDS * N_TIMINGS);
    suite_add_tcase(s, found);
    tcase_add_checked_fixture(works, setup, teardown);
    tcase_add_loop_test(works, test_split_client_hello_still_resumes_when_nothing_changed, 0,
                        TH_RESUMPTION_KINDS * N_TIMINGS);
    suite_add_tcase(s, works);
    tcase_add_checked_fixture(property, setup, teardown);
    tcase_add_loop_test(property, test_resumption_accepted_only_as_a_full_handshake_would_be, 0,
                        N_WRITES * TH_RESUMPTION_KINDS);
    tcase_set_timeout(property, 300);
    suite_add_tcase(s, property);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(hello_timing_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
