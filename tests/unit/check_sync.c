/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directory sync without a directory: snapshots built here are applied to
 * a real store (cs_sync_apply), and the CLI is run against the result to
 * check that it leaves sync-owned rows alone without --force.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/x509.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

#define SOURCE "sync:DC=example,DC=com"

static testpki *pki;
static char *tmp_root;
static us_store tstore;
static cs_db *writer;
static char notes[8192];

#define ck_ok(expr) ck_assert_msg((expr) == CS_OK, "%s failed: %s", #expr, cs_db_errmsg(writer))

static void setup(void)
{
    us_store_open(&tstore, tmp_root);
    writer = tstore.writer;
    notes[0] = '\0';
}

static void teardown(void)
{
    us_store_close(&tstore);
    writer = NULL;
}

static void collect_note(int64_t where, const char *why, void *arg)
{
    size_t used = strlen(notes);

    (void)arg;
    snprintf(notes + used, sizeof(notes) - used, "%lld: %s\n", (long long)where, why);
}

static int cli(char *out, size_t len, const char *first, ...)
{
    va_list ap;
    int rc;

    va_start(ap, first);
    rc = us_cli_v(tstore.db, 1, out, len, first, ap);
    va_end(ap);
    return rc;
}

static void add_der(cs_sync_snapshot *snap, X509 *cert, int as_pin)
{
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);

    ck_assert_int_gt(len, 0);
    ck_assert(as_pin ? cs_sync_snapshot_add_pin(snap, der, (size_t)len)
                     : cs_sync_snapshot_add_cert(snap, der, (size_t)len));
    OPENSSL_free(der);
}

/* X509:<I>issuer<SR>serial as AD writes it: DN most specific first, serial reversed. */
static void altsec_issuer_serial(X509 *leaf, char *out, size_t len)
{
    char issuer[512];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    unsigned char bytes[64];
    int n = BN_bn2bin(bn, bytes);
    size_t o;

    BIO *mem = BIO_new(BIO_s_mem());
    int l;

    X509_NAME_print_ex(mem, X509_get_issuer_name(leaf), 0, XN_FLAG_RFC2253);
    l = BIO_read(mem, issuer, sizeof(issuer) - 1);
    issuer[l > 0 ? l : 0] = '\0';
    BIO_free(mem);
    o = (size_t)snprintf(out, len, "X509:<I>%s<SR>", issuer);
    for (int i = 0; i < n && o + 3 < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%02x", bytes[n - 1 - i]);
    BN_free(bn);
}

/* ca-a pinned; alice by issuer+serial, bob by his whole certificate. */
static cs_sync_snapshot *directory(int alice_disabled, int with_bob)
{
    cs_sync_snapshot *snap = cs_sync_snapshot_new();
    char value[1024];

    ck_assert_ptr_nonnull(snap);
    add_der(snap, pki->ca_a.cert, 1);
    ck_assert(cs_sync_snapshot_add_user(snap, "alice", alice_disabled));
    altsec_issuer_serial(pki->alice.cert, value, sizeof(value));
    ck_assert(cs_sync_snapshot_add_value(snap, value, strlen(value)));
    if (with_bob) {
        ck_assert(cs_sync_snapshot_add_user(snap, "bob", 0));
        add_der(snap, pki->bob.cert, 0);
    }
    return snap;
}

static cs_status apply(cs_sync_snapshot *snap, int allow_mass, cs_sync_result *res)
{
    cs_sync_opts opts = {.source = SOURCE, .allow_mass_removal = allow_mass};
    cs_status st;

    ck_ok(cs_db_begin(writer, "certstore sync"));
    st = cs_sync_apply(writer, snap, &opts, collect_note, NULL, res);
    if (st == CS_OK)
        ck_ok(cs_db_commit(writer));
    else
        cs_db_rollback(writer);
    cs_sync_snapshot_free(snap);
    return st;
}

/* An incremental apply recording mark (usn): only what the snapshot holds changes. */
static cs_status apply_incremental(cs_sync_snapshot *snap, int64_t usn, int allow_mass,
                                   cs_sync_result *res)
{
    cs_sync_mark mark = {.usn = usn, .pins_usn = 7, .last_full = 1};
    cs_sync_opts opts = {
        .source = SOURCE, .incremental = 1, .mark = &mark, .allow_mass_removal = allow_mass};
    cs_status st;

    snprintf(mark.server, sizeof(mark.server), "CN=NTDS Settings,CN=DC1");
    snprintf(mark.invocation_id, sizeof(mark.invocation_id), "00ff");
    ck_ok(cs_db_begin(writer, "certstore sync"));
    st = cs_sync_apply(writer, snap, &opts, collect_note, NULL, res);
    if (st == CS_OK)
        ck_ok(cs_db_commit(writer));
    else
        cs_db_rollback(writer);
    cs_sync_snapshot_free(snap);
    return st;
}

static cs_decision decide(const testpki_cred *leaf)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d;

    cs_decide(tstore.reader, chain, (int64_t)time(NULL), &d);
    sk_X509_pop_free(chain, X509_free);
    return d;
}

static int count_source(const cs_mapping *m, void *arg)
{
    if (m->source != NULL && strcmp(m->source, SOURCE) == 0)
        ++*(int *)arg;
    return 0;
}

START_TEST(test_first_sync_adds_owned_rows)
{
    cs_sync_result res;
    cs_decision d;
    int owned = 0;

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_assert_int_eq(res.pins_added, 1);
    ck_assert_int_eq(res.accounts_added, 2);
    ck_assert_int_eq(res.mappings_added, 2);
    ck_ok(cs_mapping_foreach(writer, NULL, count_source, &owned));
    ck_assert_int_eq(owned, 2);
    d = decide(&pki->alice);
    ck_assert_msg(d.accept, "alice: %s", cs_reason_token(d.reason));
    ck_assert_str_eq(d.account, "alice");
    d = decide(&pki->bob);
    ck_assert(d.accept);
    ck_assert_str_eq(d.account, "bob");
}
END_TEST

START_TEST(test_unchanged_directory_changes_nothing)
{
    cs_sync_result res;
    int64_t before = 0, after = 0, when = 0;

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_ok(cs_db_generation(writer, &before));
    ck_ok(apply(directory(0, 1), 0, &res));
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_eq(res.mappings_added + res.mappings_removed + res.pins_added, 0);
    ck_assert_int_eq(res.mappings_kept, 2);
    ck_assert_int_eq(res.pins_kept, 1);
    ck_assert_int_eq(after, before); /* sessions keep resuming: nothing changed */
    ck_ok(cs_sync_last_success(writer, SOURCE, &when));
    ck_assert_int_gt(when, 0);
}
END_TEST

START_TEST(test_disabled_user_disables_account)
{
    cs_sync_result res;
    int64_t before = 0, after = 0;
    cs_decision d;

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_ok(cs_db_generation(writer, &before));
    ck_ok(apply(directory(1, 1), 0, &res));
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_eq(res.accounts_disabled, 1);
    ck_assert_int_gt(after, before);
    d = decide(&pki->alice);
    ck_assert(!d.accept);
    ck_assert_str_eq(cs_reason_token(d.reason), "account-disabled");
    ck_ok(apply(directory(0, 1), 0, &res));
    ck_assert_int_eq(res.accounts_enabled, 1);
    ck_assert(decide(&pki->alice).accept);
}
END_TEST

START_TEST(test_user_gone_removes_rows)
{
    cs_sync_result res;
    cs_decision d;

    ck_ok(apply(directory(0, 1), 0, &res));
    /* One of two mappings is 50%: past the guard, so the operator allows it. */
    ck_assert_int_eq(apply(directory(0, 0), 0, &res), CS_INVALID);
    ck_assert(strstr(cs_db_errmsg(writer), "--allow-mass-removal") != NULL);
    ck_assert(decide(&pki->bob).accept); /* refused: nothing changed */
    ck_ok(apply(directory(0, 0), 1, &res));
    ck_assert_int_eq(res.mappings_removed, 1);
    ck_assert_int_eq(res.accounts_removed, 1);
    d = decide(&pki->bob);
    ck_assert(!d.accept);
    ck_assert_str_eq(cs_reason_token(d.reason), "no-mapping");
}
END_TEST

START_TEST(test_every_pin_gone_is_refused)
{
    cs_sync_result res;
    cs_sync_snapshot *snap;

    ck_ok(apply(directory(0, 1), 0, &res));
    snap = cs_sync_snapshot_new();
    ck_assert_int_eq(apply(snap, 0, &res), CS_INVALID);
    ck_assert(decide(&pki->alice).accept);
}
END_TEST

START_TEST(test_local_rows_are_left_alone)
{
    cs_sync_result res;
    cs_mapping_spec spec;
    cs_sync_snapshot *snap;
    char fp[CS_FP_HEX_LEN + 1];
    int owned = 0;

    /* carol (ca-b) is local: pin, account, mapping made with the CLI's calls. */
    memset(&spec, 0, sizeof(spec));
    ck_ok(cs_db_begin(writer, "certstore map add"));
    ck_ok(cs_pin_add(writer, pki->ca_b.cert, "", fp));
    ck_ok(cs_mapping_spec_from_cert(&spec, pki->carol.cert, CS_KIND_CERT));
    spec.account = "carol";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    ck_ok(cs_mapping_add(writer, &spec, 1, NULL));
    ck_ok(cs_db_commit(writer));

    /* The directory names carol too, and the local pin. */
    snap = directory(0, 1);
    add_der(snap, pki->ca_b.cert, 1);
    ck_assert(cs_sync_snapshot_add_user(snap, "carol", 1));
    add_der(snap, pki->carol.cert, 0);
    ck_ok(apply(snap, 0, &res));
    ck_assert_int_eq(res.conflicts, 2);
    ck_assert(strstr(notes, "pinned locally") != NULL);
    ck_assert(strstr(notes, "account carol was made locally") != NULL);
    ck_assert(decide(&pki->carol).accept); /* not disabled by the directory */

    /* A directory without carol and ca-b removes neither. */
    ck_ok(apply(directory(0, 1), 0, &res));
    ck_assert(decide(&pki->carol).accept);
    ck_ok(cs_mapping_foreach(writer, NULL, count_source, &owned));
    ck_assert_int_eq(owned, 2);
}
END_TEST

START_TEST(test_malformed_data_changes_nothing)
{
    cs_sync_result res;
    cs_sync_snapshot *snap = directory(0, 1);
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01};

    ck_assert(cs_sync_snapshot_add_user(snap, "dave", 0));
    ck_assert(cs_sync_snapshot_add_value(snap, "X509:<XYZ>nonsense", 18));
    ck_assert_int_eq(apply(snap, 0, &res), CS_INVALID);
    ck_assert(strstr(cs_db_errmsg(writer), "dave") != NULL);
    ck_assert(!decide(&pki->alice).accept);

    snap = directory(0, 1);
    add_der(snap, pki->ca_b.cert, 1);
    ck_assert(cs_sync_snapshot_add_pin(snap, junk, sizeof(junk)));
    ck_assert_int_eq(apply(snap, 0, &res), CS_INVALID);

    snap = directory(0, 1);
    ck_assert(cs_sync_snapshot_add_user(snap, "alice", 0)); /* twice */
    ck_assert_int_eq(apply(snap, 0, &res), CS_INVALID);
    ck_assert(strstr(cs_db_errmsg(writer), "two directory entries") != NULL);
    ck_assert(!decide(&pki->alice).accept);
}
END_TEST

START_TEST(test_cli_refuses_synced_rows_without_force)
{
    cs_sync_result res;
    char out[8192], fp[CS_FP_HEX_LEN + 1];

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_assert(cs_fp_of_cert(pki->ca_a.cert, fp));
    ck_assert_int_eq(cli(out, sizeof(out), "pin", "ls", NULL), 0);
    ck_assert_msg(strstr(out, "source=" SOURCE) != NULL, "%s", out);
    ck_assert_int_eq(cli(out, sizeof(out), "map", "ls", "--json", NULL), 0);
    ck_assert_msg(strstr(out, "\"source\":\"" SOURCE "\"") != NULL, "%s", out);

    ck_assert_int_eq(cli(out, sizeof(out), "pin", "disable", fp, NULL), 1);
    ck_assert_msg(strstr(out, "owned by " SOURCE) != NULL, "%s", out);
    ck_assert_int_eq(cli(out, sizeof(out), "account", "disable", "alice", NULL), 1);
    ck_assert_int_eq(cli(out, sizeof(out), "map", "rm", "1", NULL), 1);
    ck_assert(decide(&pki->alice).accept);

    ck_assert_int_eq(cli(out, sizeof(out), "account", "disable", "alice", "--force", NULL), 0);
    ck_assert_msg(strstr(out, "next sync puts it back") != NULL, "%s", out);
    ck_assert(!decide(&pki->alice).accept);
    ck_ok(apply(directory(0, 1), 0, &res)); /* ... and it does */
    ck_assert_int_eq(res.accounts_enabled, 1);
    ck_assert(decide(&pki->alice).accept);
}
END_TEST

START_TEST(test_value_moved_to_another_user)
{
    cs_sync_result res;
    cs_sync_snapshot *snap = cs_sync_snapshot_new();
    cs_decision d;

    ck_ok(apply(directory(0, 1), 0, &res));
    /* bob's certificate now belongs to carol; bob stays with nothing. */
    add_der(snap, pki->ca_a.cert, 1);
    ck_assert(cs_sync_snapshot_add_user(snap, "alice", 0));
    ck_assert(cs_sync_snapshot_add_user(snap, "carol", 0));
    add_der(snap, pki->bob.cert, 0);
    ck_ok(apply(snap, 1, &res));
    ck_assert_int_eq(res.mappings_removed, 2); /* bob's moved, alice's gone */
    ck_assert_int_eq(res.mappings_added, 1);
    d = decide(&pki->bob);
    ck_assert(d.accept);
    ck_assert_str_eq(d.account, "carol");
}
END_TEST

START_TEST(test_two_users_naming_one_certificate_keep_the_first)
{
    cs_sync_result res;
    cs_sync_snapshot *snap = directory(0, 1);
    cs_decision d;

    ck_assert(cs_sync_snapshot_add_user(snap, "mallory", 0));
    add_der(snap, pki->bob.cert, 0);
    ck_ok(apply(snap, 0, &res));
    ck_assert_int_eq(res.conflicts, 1);
    ck_assert_msg(strstr(notes, "named by bob and mallory") != NULL, "%s", notes);
    d = decide(&pki->bob);
    ck_assert(d.accept);
    ck_assert_str_eq(d.account, "bob");
}
END_TEST

START_TEST(test_weak_forms_become_rules_only_when_allowed)
{
    cs_sync_result res;
    cs_sync_snapshot *snap = directory(0, 0);
    cs_sync_opts opts = {.source = SOURCE, .allow_weak = 1};
    const char *weak = "X509:<I>CN=Partner CA A,O=certstore tests<S>CN=bob,O=certstore tests";

    ck_assert(cs_sync_snapshot_add_user(snap, "bob", 0));
    ck_assert(cs_sync_snapshot_add_value(snap, weak, strlen(weak)));
    ck_ok(cs_db_begin(writer, "certstore sync"));
    ck_ok(cs_sync_apply(writer, snap, &opts, collect_note, NULL, &res));
    ck_ok(cs_db_commit(writer));
    ck_assert_int_eq(res.rules_added, 1);
    ck_ok(cs_db_begin(writer, "certstore sync"));
    ck_ok(cs_sync_apply(writer, snap, &opts, collect_note, NULL, &res));
    ck_ok(cs_db_commit(writer));
    ck_assert_int_eq(res.rules_added, 0); /* kept, not made again */
    cs_sync_snapshot_free(snap);

    snap = directory(0, 0);
    ck_assert(cs_sync_snapshot_add_user(snap, "bob", 0));
    ck_assert(cs_sync_snapshot_add_value(snap, weak, strlen(weak)));
    ck_ok(apply(snap, 0, &res)); /* without allow_weak: refused, and the rule goes */
    ck_assert_int_eq(res.refused, 1);
    ck_assert_int_eq(res.rules_removed, 1);
}
END_TEST

START_TEST(test_incremental_changes_only_the_users_read)
{
    cs_sync_result res;
    cs_sync_snapshot *snap;
    cs_sync_mark mark;
    int64_t before = 0, after = 0;

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_assert_int_eq(cs_sync_mark_get(writer, SOURCE, &mark), CS_OK);
    ck_assert_int_eq(mark.usn, 0); /* a full apply without a mark: the next is full */
    /* Only alice changed (disabled, her value gone); bob is not in the snapshot and stays. */
    snap = cs_sync_snapshot_new();
    cs_sync_snapshot_keep_pins(snap);
    ck_assert(cs_sync_snapshot_add_user(snap, "alice", 1));
    ck_ok(cs_db_generation(writer, &before));
    ck_ok(apply_incremental(snap, 4242, 1, &res));
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_gt(after, before);
    ck_assert_int_eq(res.accounts_disabled, 1);
    ck_assert_int_eq(res.mappings_removed, 1);
    ck_assert_int_eq(res.pins_removed + res.accounts_removed, 0);
    ck_assert(!decide(&pki->alice).accept);
    ck_assert(decide(&pki->bob).accept);
    ck_ok(cs_sync_mark_get(writer, SOURCE, &mark));
    ck_assert_int_eq(mark.usn, 4242);
    ck_assert_int_eq(mark.pins_usn, 7);
    ck_assert_str_eq(mark.invocation_id, "00ff");
}
END_TEST

START_TEST(test_incremental_gone_user_is_removed)
{
    cs_sync_result res;
    cs_sync_snapshot *snap;
    cs_sync_mark mark = {.usn = 11};
    cs_sync_opts opts = {
        .source = SOURCE, .incremental = 1, .mark = &mark, .allow_mass_removal = 1};
    char source[CS_SOURCE_MAX];

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_ok(cs_db_begin(writer, "account add"));
    ck_ok(cs_account_add(writer, "dave", NULL));
    ck_ok(cs_db_commit(writer));
    /* bob deleted: 1 of 2 mappings is past the guard, as in a full sync. */
    snap = cs_sync_snapshot_new();
    cs_sync_snapshot_keep_pins(snap);
    ck_assert(cs_sync_snapshot_add_gone(snap, "bob"));
    ck_assert_int_eq(apply_incremental(snap, 10, 0, &res), CS_INVALID);
    ck_assert(decide(&pki->bob).accept);
    /* Allowed: bob goes; carol (never synced) and dave (local) are not the sync's. */
    snap = cs_sync_snapshot_new();
    cs_sync_snapshot_keep_pins(snap);
    ck_assert(cs_sync_snapshot_add_gone(snap, "bob"));
    ck_assert(cs_sync_snapshot_add_gone(snap, "carol"));
    ck_assert(cs_sync_snapshot_add_gone(snap, "dave"));
    ck_ok(cs_db_begin(writer, "certstore sync"));
    ck_ok(cs_sync_apply(writer, snap, &opts, collect_note, NULL, &res));
    ck_ok(cs_db_commit(writer));
    cs_sync_snapshot_free(snap);
    ck_assert_int_eq(res.accounts_removed, 1);
    ck_assert_int_eq(res.mappings_removed, 1);
    ck_assert(!decide(&pki->bob).accept);
    ck_assert(decide(&pki->alice).accept);
    ck_ok(cs_account_source(writer, "dave", source)); /* still there */
    ck_assert_str_eq(source, "");
}
END_TEST

START_TEST(test_incremental_pins_only_when_read)
{
    cs_sync_result res;
    cs_sync_snapshot *snap;

    ck_ok(apply(directory(0, 1), 0, &res));
    /* Pins kept: no pins in the snapshot means nothing. */
    snap = cs_sync_snapshot_new();
    cs_sync_snapshot_keep_pins(snap);
    ck_ok(apply_incremental(snap, 5, 0, &res));
    ck_assert_int_eq(res.pins_removed, 0);
    ck_assert(decide(&pki->alice).accept);
    /* Pins read: CA B instead of CA A. */
    snap = cs_sync_snapshot_new();
    add_der(snap, pki->ca_b.cert, 1);
    ck_assert_int_eq(apply_incremental(snap, 6, 0, &res), CS_INVALID); /* every pin: the guard */
    snap = cs_sync_snapshot_new();
    add_der(snap, pki->ca_b.cert, 1);
    ck_ok(apply_incremental(snap, 6, 1, &res));
    ck_assert_int_eq(res.pins_added, 1);
    ck_assert_int_eq(res.pins_removed, 1);
    ck_assert_str_eq(cs_reason_token(decide(&pki->alice).reason), "issuer-not-pinned");
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_import_update_refuses_synced_rows)
{
    cs_sync_result res;
    char out[8192], fp[CS_FP_HEX_LEN + 1], path[PATH_MAX + 16], text[512];
    cs_decision d;

    ck_ok(apply(directory(0, 1), 0, &res));
    ck_ok(cs_db_begin(writer, "account add"));
    ck_ok(cs_account_add(writer, "mallory", NULL));
    ck_ok(cs_db_commit(writer));
    ck_assert(cs_fp_of_cert(pki->bob.cert, fp));
    /* bob's synced cert mapping moved to mallory: refused in CSV and JSON lines. */
    snprintf(path, sizeof(path), "%s/moved.csv", tstore.dir);
    snprintf(text, sizeof(text), "kind,key,account\ncert,%s,mallory\n", fp);
    write_file(path, text);
    ck_assert_int_eq(cli(out, sizeof(out), "import", path, "--update", NULL), 1);
    ck_assert_msg(strstr(out, "line 2: mapping ") != NULL &&
                      strstr(out,
                             "-> bob is owned by " SOURCE
                             ": an import does not change it (change it in the directory)") != NULL,
                  "%s", out);
    snprintf(path, sizeof(path), "%s/moved.jsonl", tstore.dir);
    snprintf(text, sizeof(text), "{\"kind\":\"cert\",\"key\":\"%s\",\"account\":\"mallory\"}\n",
             fp);
    write_file(path, text);
    ck_assert_int_eq(cli(out, sizeof(out), "import", path, "--update", NULL), 1);
    ck_assert_msg(strstr(out, "is owned by " SOURCE) != NULL, "%s", out);
    d = decide(&pki->bob);
    ck_assert(d.accept);
    ck_assert_str_eq(d.account, "bob");
}
END_TEST

static Suite *sync_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *apply_tc = tcase_create("apply");
    TCase *cli_tc = tcase_create("cli");

    tcase_add_checked_fixture(apply_tc, setup, teardown);
    tcase_add_test(apply_tc, test_first_sync_adds_owned_rows);
    tcase_add_test(apply_tc, test_unchanged_directory_changes_nothing);
    tcase_add_test(apply_tc, test_disabled_user_disables_account);
    tcase_add_test(apply_tc, test_user_gone_removes_rows);
    tcase_add_test(apply_tc, test_every_pin_gone_is_refused);
    tcase_add_test(apply_tc, test_local_rows_are_left_alone);
    tcase_add_test(apply_tc, test_malformed_data_changes_nothing);
    tcase_add_test(apply_tc, test_value_moved_to_another_user);
    tcase_add_test(apply_tc, test_two_users_naming_one_certificate_keep_the_first);
    tcase_add_test(apply_tc, test_weak_forms_become_rules_only_when_allowed);
    tcase_add_test(apply_tc, test_incremental_changes_only_the_users_read);
    tcase_add_test(apply_tc, test_incremental_gone_user_is_removed);
    tcase_add_test(apply_tc, test_incremental_pins_only_when_read);
    suite_add_tcase(s, apply_tc);
    tcase_add_checked_fixture(cli_tc, setup, teardown);
    tcase_add_test(cli_tc, test_cli_refuses_synced_rows_without_force);
    tcase_add_test(cli_tc, test_import_update_refuses_synced_rows);
    suite_add_tcase(s, cli_tc);
    return s;
}

int main(void)
{
    return us_run_suite(sync_suite(), "check_sync", &pki, &tmp_root);
}
