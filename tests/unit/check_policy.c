/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy function: every rule of cs_decide and every reason token,
 * decided through a read-only handle as a server would, on a real database.
 */
#include <check.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

static testpki *pki;
static char *tmp_root;
static us_store tstore; /* this test's store: tstore.dir, tstore.db */
static cs_db *writer;
static cs_db *reader;
static int64_t now;

#define ck_ok(expr) ck_assert_msg((expr) == CS_OK, "%s failed: %s", #expr, cs_db_errmsg(writer))

static void setup(void)
{
    us_store_open(&tstore, tmp_root);
    writer = tstore.writer;
    reader = tstore.reader;
    now = (int64_t)time(NULL);
}

static void teardown(void)
{
    /* Tests may have closed or reopened them. */
    tstore.writer = writer;
    tstore.reader = reader;
    us_store_close(&tstore);
    reader = writer = NULL;
}

/* ---- helpers ---------------------------------------------------------------- */

static void begin(void)
{
    ck_ok(cs_db_begin(writer, "check_policy"));
}

static void commit(void)
{
    ck_ok(cs_db_commit(writer));
}

static void fp_of(const testpki_cred *cred, char fp[CS_FP_HEX_LEN + 1])
{
    ck_assert(cs_fp_of_cert(cred->cert, fp));
}

static void pin(const testpki_cred *ca)
{
    begin();
    ck_ok(cs_pin_add(writer, ca->cert, "test pin", NULL));
    commit();
}

static void set_pin_enabled(const testpki_cred *ca, int enabled)
{
    char fp[CS_FP_HEX_LEN + 1];

    fp_of(ca, fp);
    begin();
    ck_ok(cs_pin_set_enabled(writer, fp, enabled));
    commit();
}

/* A mapping of `kind` from a leaf, optionally windowed and restricted to a pin. */
static int64_t map_full(const testpki_cred *leaf, cs_kind kind, const char *account,
                        const testpki_cred *restrict_to, int64_t not_before, int64_t not_after)
{
    cs_mapping_spec spec = {0};
    char fp[CS_FP_HEX_LEN + 1];
    int64_t id = 0;

    ck_ok(cs_mapping_spec_from_cert(&spec, leaf->cert, kind));
    spec.account = account;
    spec.not_before = not_before;
    spec.not_after = not_after;
    if (restrict_to != NULL) {
        fp_of(restrict_to, fp);
        spec.pin_fp = fp;
    }
    begin();
    ck_ok(cs_mapping_add(writer, &spec, 1, &id));
    commit();
    ck_assert_int_gt(id, 0);
    return id;
}

/* ski and issuer-serial mappings are bound to the leaf's issuing CA, as `map add` binds them. */
static int64_t map(const testpki_cred *leaf, cs_kind kind, const char *account)
{
    const testpki_cred *bound =
        kind == CS_KIND_SKI || kind == CS_KIND_ISSUER_SERIAL ? testpki_issuer_of(pki, leaf) : NULL;

    return map_full(leaf, kind, account, bound, CS_TIME_NONE, CS_TIME_NONE);
}

/*
 * A mapping bound to no pin, written past the library as a database made
 * before ski and issuer-serial mappings had to be bound may still hold it.
 */
static void map_unbound_raw(const testpki_cred *leaf, cs_kind kind, const char *account)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    cs_key key;

    ck_ok(cs_key_from_cert(leaf->cert, kind, &key));
    ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, "PRAGMA busy_timeout = 5000", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "INSERT OR IGNORE INTO accounts (name, created)"
                                        " VALUES (?1, 1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "INSERT INTO mappings (kind, key, account_id, created)"
                                        " VALUES (?1, ?2, (SELECT id FROM accounts"
                                        " WHERE name = ?3), 1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, (int)kind);
    sqlite3_bind_blob(st, 2, key.bytes, (int)key.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, account, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(raw);
}

static void set_mapping_enabled(int64_t id, int enabled)
{
    cs_mapping_ref ref = {.id = id};

    begin();
    ck_ok(cs_mapping_set_enabled(writer, &ref, enabled));
    commit();
}

static cs_decision decide_chain_on(cs_db *db, STACK_OF(X509) * chain, int64_t at)
{
    cs_decision d;
    int accepted;

    ck_assert_ptr_nonnull(chain);
    accepted = cs_decide(db, chain, at, &d);
    ck_assert_int_eq(accepted, d.accept);
    if (!d.accept) {
        ck_assert_str_eq(d.account, "");
        ck_assert_int_ne(d.reason, CS_REASON_NONE);
    }
    return d;
}

static cs_decision decide_on(cs_db *db, const testpki_cred *leaf, int64_t at)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d = decide_chain_on(db, chain, at);

    sk_X509_pop_free(chain, X509_free);
    return d;
}

/* alice (or another ca-a leaf) as it arrives through ca-a renewed with the same key. */
static STACK_OF(X509) * chain_via_renewed_ca(const testpki_cred *leaf)
{
    return testpki_chain(leaf->cert, pki->ca_a_renewed.cert, pki->root.cert, (X509 *)NULL);
}

static cs_decision decide(const testpki_cred *leaf)
{
    return decide_on(reader, leaf, now);
}

#define ck_rejected(d, why)                                                                        \
    do {                                                                                           \
        cs_decision d_ = (d);                                                                      \
        ck_assert_msg(!d_.accept, "accepted, expected %s", cs_reason_token(why));                  \
        ck_assert_str_eq(cs_reason_token(d_.reason), cs_reason_token(why));                        \
    } while (0)

#define ck_accepted(d, acct)                                                                       \
    do {                                                                                           \
        cs_decision d_ = (d);                                                                      \
        ck_assert_msg(d_.accept, "rejected: %s %s", cs_reason_token(d_.reason), d_.detail);        \
        ck_assert_int_eq(d_.reason, CS_REASON_NONE);                                               \
        ck_assert_str_eq(d_.account, (acct));                                                      \
    } while (0)

static int64_t not_after_of(const testpki_cred *cred)
{
    int days = 0, secs = 0;

    ck_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cred->cert)));
    return (int64_t)time(NULL) + (int64_t)days * 86400 + secs;
}

/* ---- rule 1 and 2: the issuing CA must be pinned ---------------------------------- */

START_TEST(test_chain_of_one_rejected_issuer_not_pinned)
{
    STACK_OF(X509) *chain = testpki_chain(pki->selfsigned.cert, (X509 *)NULL);
    cs_decision d;

    map(&pki->selfsigned, CS_KIND_CERT, "self");
    ck_assert_int_eq(cs_decide(reader, chain, now, &d), 0);
    sk_X509_pop_free(chain, X509_free);
    ck_rejected(d, CS_REASON_ISSUER_NOT_PINNED);
    ck_assert_str_eq(d.issuer_fp, "");
}
END_TEST

START_TEST(test_unpinned_issuer_rejected)
{
    pin(&pki->ca_a);
    map(&pki->carol, CS_KIND_CERT, "carol");
    ck_rejected(decide(&pki->carol), CS_REASON_ISSUER_NOT_PINNED);
}
END_TEST

START_TEST(test_root_pin_does_not_pin_intermediates)
{
    pin(&pki->root);
    map(&pki->alice, CS_KIND_CERT, "alice");
    ck_rejected(decide(&pki->alice), CS_REASON_ISSUER_NOT_PINNED);
}
END_TEST

START_TEST(test_leaf_issued_by_pinned_root_accepted)
{
    pin(&pki->root);
    map(&pki->direct, CS_KIND_CERT, "direct");
    ck_accepted(decide(&pki->direct), "direct");
}
END_TEST

START_TEST(test_same_dn_twin_ca_rejected)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice");
    /* Same issuer DN and serial as alice: only the fingerprint tells them apart. */
    ck_assert_int_eq(X509_NAME_cmp(X509_get_subject_name(pki->ca_twin.cert),
                                   X509_get_subject_name(pki->ca_a.cert)),
                     0);
    ck_rejected(decide(&pki->mallory), CS_REASON_ISSUER_NOT_PINNED);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_twin_ca_pinned_but_mapping_restricted_rejected)
{
    pin(&pki->ca_a);
    pin(&pki->ca_twin);
    map_full(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice", &pki->ca_a, CS_TIME_NONE, CS_TIME_NONE);
    ck_rejected(decide(&pki->mallory), CS_REASON_NO_MAPPING);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_disabled_pin_rejected)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    set_pin_enabled(&pki->ca_a, 0);
    ck_rejected(decide(&pki->alice), CS_REASON_PIN_DISABLED);
    set_pin_enabled(&pki->ca_a, 1);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_removed_pin_rejected)
{
    char fp[CS_FP_HEX_LEN + 1];

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    ck_accepted(decide(&pki->alice), "alice");
    fp_of(&pki->ca_a, fp);
    begin();
    ck_ok(cs_pin_remove(writer, fp));
    commit();
    ck_rejected(decide(&pki->alice), CS_REASON_ISSUER_NOT_PINNED);
}
END_TEST

/* ---- rule 3: the leaf must map to an account ----------------------------------- */

START_TEST(test_cert_mapping_accepted_with_details)
{
    cs_decision d;
    char leaf_fp[CS_FP_HEX_LEN + 1], issuer_fp[CS_FP_HEX_LEN + 1];
    int64_t id, generation = 0, limit;

    pin(&pki->ca_a);
    id = map(&pki->alice, CS_KIND_CERT, "alice");
    d = decide(&pki->alice);
    ck_accepted(d, "alice");
    ck_assert_int_eq(d.mapping_id, id);
    ck_assert_int_eq(d.kind, CS_KIND_CERT);
    ck_ok(cs_db_generation(writer, &generation));
    ck_assert_int_eq(d.generation, generation);
    fp_of(&pki->alice, leaf_fp);
    fp_of(&pki->ca_a, issuer_fp);
    ck_assert_str_eq(d.leaf_fp, leaf_fp);
    ck_assert_str_eq(d.issuer_fp, issuer_fp);
    limit = not_after_of(&pki->alice) < not_after_of(&pki->ca_a) ? not_after_of(&pki->alice)
                                                                 : not_after_of(&pki->ca_a);
    ck_assert_int_le(llabs(d.valid_until - limit), 2);
}
END_TEST

START_TEST(test_no_mapping_rejected)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    ck_rejected(decide(&pki->bob), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_issuer_serial_mapping_accepted)
{
    pin(&pki->ca_a);
    map(&pki->bob, CS_KIND_ISSUER_SERIAL, "bob");
    ck_accepted(decide(&pki->bob), "bob");
    ck_assert_int_eq(decide(&pki->bob).kind, CS_KIND_ISSUER_SERIAL);
}
END_TEST

START_TEST(test_ski_mapping_accepted)
{
    pin(&pki->ca_a);
    map(&pki->bob, CS_KIND_SKI, "bob");
    ck_accepted(decide(&pki->bob), "bob");
    ck_assert_int_eq(decide(&pki->bob).kind, CS_KIND_SKI);
}
END_TEST

START_TEST(test_spki_mapping_survives_renewal)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_SPKI, "alice");
    ck_accepted(decide(&pki->alice), "alice");
    ck_accepted(decide(&pki->alice_renewed), "alice");
    ck_assert_int_eq(decide(&pki->alice_renewed).kind, CS_KIND_SPKI);
}
END_TEST

START_TEST(test_cert_mapping_does_not_match_renewed_cert)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_cert_mapping_looked_up_before_spki)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_SPKI, "alice-by-key");
    map(&pki->alice, CS_KIND_CERT, "alice-by-cert");
    ck_accepted(decide(&pki->alice), "alice-by-cert");
    ck_accepted(decide(&pki->alice_renewed), "alice-by-key");
}
END_TEST

START_TEST(test_first_existing_mapping_decides)
{
    int64_t cert_id;

    pin(&pki->ca_a);
    cert_id = map(&pki->alice, CS_KIND_CERT, "alice");
    map(&pki->alice, CS_KIND_SPKI, "alice");
    set_mapping_enabled(cert_id, 0);
    /* The disabled cert mapping decides; the spki one is never consulted. */
    ck_rejected(decide(&pki->alice), CS_REASON_MAPPING_DISABLED);
    ck_assert_int_eq(decide(&pki->alice).mapping_id, cert_id);
}
END_TEST

START_TEST(test_disabled_mapping_rejected)
{
    int64_t id;

    pin(&pki->ca_a);
    id = map(&pki->alice, CS_KIND_CERT, "alice");
    set_mapping_enabled(id, 0);
    ck_rejected(decide(&pki->alice), CS_REASON_MAPPING_DISABLED);
    set_mapping_enabled(id, 1);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_mapping_not_yet_valid_rejected)
{
    pin(&pki->ca_a);
    map_full(&pki->alice, CS_KIND_CERT, "alice", NULL, now + 3600, CS_TIME_NONE);
    ck_rejected(decide(&pki->alice), CS_REASON_MAPPING_NOT_YET_VALID);
    ck_accepted(decide_on(reader, &pki->alice, now + 3600), "alice");
}
END_TEST

START_TEST(test_mapping_expired_rejected)
{
    cs_decision d;

    pin(&pki->ca_a);
    map_full(&pki->alice, CS_KIND_CERT, "alice", NULL, CS_TIME_NONE, now + 60);
    d = decide_on(reader, &pki->alice, now + 60);
    ck_accepted(d, "alice");
    ck_assert_int_eq(d.valid_until, now + 60);
    ck_rejected(decide_on(reader, &pki->alice, now + 61), CS_REASON_MAPPING_EXPIRED);
}
END_TEST

START_TEST(test_disabled_account_rejected)
{
    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "acme");
    begin();
    ck_ok(cs_account_set_enabled(writer, "acme", 0));
    commit();
    ck_rejected(decide(&pki->alice), CS_REASON_ACCOUNT_DISABLED);
}
END_TEST

START_TEST(test_mapping_restricted_to_other_pin_lets_next_kind_decide)
{
    pin(&pki->ca_a);
    pin(&pki->ca_b);
    map_full(&pki->alice, CS_KIND_CERT, "alice-b", &pki->ca_b, CS_TIME_NONE, CS_TIME_NONE);
    /* The cert mapping does not apply through ca-a: the spki one decides. */
    map(&pki->alice, CS_KIND_SPKI, "alice");
    ck_accepted(decide(&pki->alice), "alice");
    ck_assert_int_eq(decide(&pki->alice).kind, CS_KIND_SPKI);
}
END_TEST

/*
 * ca-a renewed with the same key, both pinned; a cert mapping bound to the
 * old CA, a disabled spki mapping and an allow rule of the new CA. Through
 * the new CA the cert mapping does not apply, so the spki one decides
 * (disabled), not the rule.
 */
START_TEST(test_mapping_for_other_pin_does_not_skip_to_rules)
{
    char renewed_fp[CS_FP_HEX_LEN + 1];
    cs_rule_spec rule = {.action = CS_RULE_ALLOW,
                         .account = "partner",
                         .priority = CS_RULE_PRIORITY_DEFAULT,
                         .subject = "O=certstore tests"};
    STACK_OF(X509) *renewed = chain_via_renewed_ca(&pki->alice);
    cs_decision fast, full;

    pin(&pki->ca_a);
    pin(&pki->ca_a_renewed);
    fp_of(&pki->ca_a_renewed, renewed_fp);
    rule.pin_fp = renewed_fp;
    map_full(&pki->alice, CS_KIND_CERT, "alice", &pki->ca_a, CS_TIME_NONE, CS_TIME_NONE);
    set_mapping_enabled(map(&pki->alice, CS_KIND_SPKI, "alice"), 0);
    begin();
    ck_ok(cs_rule_add(writer, &rule, 1, NULL));
    commit();

    fast = decide_chain_on(reader, renewed, now);
    begin();
    full = decide_chain_on(writer, renewed, now);
    cs_db_rollback(writer);
    sk_X509_pop_free(renewed, X509_free);
    ck_rejected(fast, CS_REASON_MAPPING_DISABLED);
    ck_rejected(full, CS_REASON_MAPPING_DISABLED);
    ck_assert_int_eq(fast.kind, CS_KIND_SPKI);
    ck_assert_int_eq(full.rule_id, 0);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

/* ---- ski and issuer-serial are bound to the pin that issued them --------------- */

START_TEST(test_unbound_ski_mapping_refused)
{
    cs_mapping_spec spec = {0};

    pin(&pki->ca_a);
    ck_ok(cs_mapping_spec_from_cert(&spec, pki->alice.cert, CS_KIND_SKI));
    spec.account = "alice";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    begin();
    ck_assert_int_eq(cs_mapping_add(writer, &spec, 1, NULL), CS_INVALID);
    ck_assert_msg(strstr(cs_db_errmsg(writer), "pin") != NULL, "%s", cs_db_errmsg(writer));
    spec.kind = CS_KIND_ISSUER_SERIAL;
    ck_ok(cs_key_from_cert(pki->alice.cert, CS_KIND_ISSUER_SERIAL, &spec.key));
    ck_assert_int_eq(cs_mapping_add(writer, &spec, 1, NULL), CS_INVALID);
    cs_db_rollback(writer);
}
END_TEST

/* Another pinned partner CA writes alice's SKI into a leaf of its own key. */
START_TEST(test_ski_from_other_pinned_ca_rejected)
{
    pin(&pki->ca_a);
    pin(&pki->ca_b);
    pin(&pki->ca_twin);
    map(&pki->alice, CS_KIND_SKI, "alice");
    ck_rejected(decide(&pki->eve), CS_REASON_NO_MAPPING);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_issuer_serial_from_pinned_twin_ca_rejected)
{
    pin(&pki->ca_a);
    pin(&pki->ca_b);
    pin(&pki->ca_twin);
    map(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice");
    ck_rejected(decide(&pki->mallory), CS_REASON_NO_MAPPING);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

/* Rows a database made before binding may hold: they never accept anyone. */
START_TEST(test_unbound_ski_and_issuer_serial_never_match)
{
    pin(&pki->ca_a);
    pin(&pki->ca_b);
    pin(&pki->ca_twin);
    map_unbound_raw(&pki->alice, CS_KIND_SKI, "alice");
    ck_rejected(decide(&pki->eve), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    map_unbound_raw(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice");
    ck_rejected(decide(&pki->mallory), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    /* Not applicable, not decisive: the next kind still decides. */
    map(&pki->alice, CS_KIND_SPKI, "alice-by-key");
    ck_accepted(decide(&pki->alice), "alice-by-key");
    ck_rejected(decide(&pki->eve), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_mapping_restricted_to_own_pin_accepted)
{
    pin(&pki->ca_a);
    map_full(&pki->alice, CS_KIND_CERT, "alice", &pki->ca_a, CS_TIME_NONE, CS_TIME_NONE);
    ck_accepted(decide(&pki->alice), "alice");
}
END_TEST

START_TEST(test_valid_until_is_earliest_of_mapping_and_certs)
{
    cs_decision d;

    pin(&pki->ca_a);
    map_full(&pki->alice, CS_KIND_CERT, "alice", NULL, CS_TIME_NONE, now + 86400);
    d = decide(&pki->alice);
    ck_accepted(d, "alice");
    ck_assert_int_eq(d.valid_until, now + 86400);
}
END_TEST

/* ---- rule 4: store errors reject ---------------------------------------------- */

START_TEST(test_no_store_rejected_store_unavailable)
{
    cs_decision d = decide_on(NULL, &pki->alice, now);

    ck_rejected(d, CS_REASON_STORE_UNAVAILABLE);
    ck_assert_str_ne(d.detail, "");
}
END_TEST

START_TEST(test_broken_schema_rejected_store_unavailable)
{
    cs_decision d;

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    {
        sqlite3 *raw = NULL;

        ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
        ck_assert_int_eq(
            sqlite3_exec(raw, "PRAGMA foreign_keys=OFF; DROP TABLE mappings", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(raw);
    }
    d = decide(&pki->alice);
    ck_rejected(d, CS_REASON_STORE_UNAVAILABLE);
    ck_assert_msg(strstr(d.detail, "mappings") != NULL, "detail: %s", d.detail);
}
END_TEST

START_TEST(test_locked_store_rejected_store_unavailable)
{
    sqlite3 *raw = NULL;
    cs_decision d;
    cs_status opened;

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    cs_db_close(reader);
    cs_db_close(writer);
    reader = writer = NULL;
    /* An exclusive-locking writer is the one thing that blocks WAL readers. */
    ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw,
                                  "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
                                  " UPDATE meta SET generation = generation + 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    opened = cs_db_open(&reader, tstore.db, CS_OPEN_READONLY);
    d = decide(&pki->alice);
    sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(raw);
    ck_assert_int_ne(opened, CS_OK);
    ck_assert_msg(strstr(cs_db_errmsg(reader), "locked") != NULL, "%s", cs_db_errmsg(reader));
    ck_rejected(d, CS_REASON_STORE_UNAVAILABLE);
    ck_assert_str_ne(d.detail, "");
}
END_TEST

START_TEST(test_corrupt_file_rejected_store_unavailable)
{
    FILE *fp;
    cs_decision d;
    cs_db *fresh = NULL;
    char garbage[8192];

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    cs_db_close(reader);
    reader = NULL;
    cs_db_close(writer);
    writer = NULL;
    ck_assert_int_eq(cs_db_open(&reader, tstore.db, CS_OPEN_READONLY), CS_OK);
    memset(garbage, 0x5a, sizeof(garbage));
    fp = fopen(tstore.db, "r+");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fwrite(garbage, 1, sizeof(garbage), fp), sizeof(garbage));
    fclose(fp);
    d = decide(&pki->alice);
    ck_rejected(d, CS_REASON_STORE_UNAVAILABLE);
    ck_assert_int_ne(cs_db_open(&fresh, tstore.db, CS_OPEN_READONLY), CS_OK);
    ck_rejected(decide_on(NULL, &pki->alice, now), CS_REASON_STORE_UNAVAILABLE);
    cs_db_close(fresh);
}
END_TEST

START_TEST(test_empty_chain_rejected_chain_invalid)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    cs_decision d;

    ck_assert_int_eq(cs_decide(reader, chain, now, &d), 0);
    ck_rejected(d, CS_REASON_CHAIN_INVALID);
    ck_assert_int_eq(cs_decide(reader, NULL, now, &d), 0);
    ck_rejected(d, CS_REASON_CHAIN_INVALID);
    sk_X509_free(chain);
}
END_TEST

/* ---- liveness and tokens ---------------------------------------------------- */

START_TEST(test_change_seen_by_open_reader_without_reopen)
{
    int64_t id;

    pin(&pki->ca_a);
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    id = map(&pki->alice, CS_KIND_CERT, "alice");
    ck_accepted(decide(&pki->alice), "alice");
    set_mapping_enabled(id, 0);
    ck_rejected(decide(&pki->alice), CS_REASON_MAPPING_DISABLED);
}
END_TEST

START_TEST(test_decision_reports_current_generation)
{
    int64_t id, before, after;

    pin(&pki->ca_a);
    id = map(&pki->alice, CS_KIND_CERT, "alice");
    map(&pki->bob, CS_KIND_CERT, "bob");
    before = decide(&pki->bob).generation;
    set_mapping_enabled(id, 0);
    after = decide(&pki->bob).generation;
    ck_assert_int_eq(after, before + 1);
}
END_TEST

START_TEST(test_reason_tokens_verbatim)
{
    static const struct {
        cs_reason reason;
        const char *token;
    } tokens[] = {
        {CS_REASON_CHAIN_INVALID, "chain-invalid"},
        {CS_REASON_ISSUER_NOT_PINNED, "issuer-not-pinned"},
        {CS_REASON_PIN_DISABLED, "pin-disabled"},
        {CS_REASON_NO_MAPPING, "no-mapping"},
        {CS_REASON_MAPPING_DISABLED, "mapping-disabled"},
        {CS_REASON_MAPPING_NOT_YET_VALID, "mapping-not-yet-valid"},
        {CS_REASON_MAPPING_EXPIRED, "mapping-expired"},
        {CS_REASON_ACCOUNT_DISABLED, "account-disabled"},
        {CS_REASON_STORE_UNAVAILABLE, "store-unavailable"},
    };

    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
        ck_assert_str_eq(cs_reason_token(tokens[i].reason), tokens[i].token);
    /* Out of range must not read past the table, and must not sound like an accept. */
    ck_assert_str_eq(cs_reason_token(CS_REASON_COUNT), "store-unavailable");
}
END_TEST

START_TEST(test_decide_from_writer_inside_transaction)
{
    cs_decision d;
    STACK_OF(X509) *chain = testpki_chain_for(pki, &pki->alice);

    pin(&pki->ca_a);
    map(&pki->alice, CS_KIND_CERT, "alice");
    begin();
    cs_decide(writer, chain, now, &d);
    cs_db_rollback(writer);
    sk_X509_pop_free(chain, X509_free);
    ck_accepted(d, "alice");
}
END_TEST

/*
 * A reader outside any transaction takes the one-statement path for the
 * common case; the writer inside its own transaction always runs the full
 * evaluation. Every state below must get the same decision from both.
 */
static void assert_paths_agree(const char *state)
{
    const testpki_cred *leaves[] = {&pki->alice,   &pki->alice_renewed, &pki->bob,    &pki->carol,
                                    &pki->mallory, &pki->eve,           &pki->expired};
    static const int64_t offsets[] = {0, 3600, 7200};
    const size_t nleaves = sizeof(leaves) / sizeof(leaves[0]);

    /* Every leaf through its own CA, then alice and bob through ca-a renewed. */
    for (size_t i = 0; i < nleaves + 2; i++) {
        STACK_OF(X509) *chain = i < nleaves
                                    ? testpki_chain_for(pki, leaves[i])
                                    : chain_via_renewed_ca(i == nleaves ? &pki->alice : &pki->bob);

        for (size_t t = 0; t < sizeof(offsets) / sizeof(offsets[0]); t++) {
            cs_decision fast = decide_chain_on(reader, chain, now + offsets[t]), full;

            begin();
            full = decide_chain_on(writer, chain, now + offsets[t]);
            cs_db_rollback(writer);
            ck_assert_msg(fast.accept == full.accept && fast.reason == full.reason,
                          "%s, leaf %zu, +%llds: one statement says %s, full evaluation %s", state,
                          i, (long long)offsets[t], cs_reason_token(fast.reason),
                          cs_reason_token(full.reason));
            ck_assert_str_eq(fast.account, full.account);
            ck_assert_int_eq(fast.mapping_id, full.mapping_id);
            ck_assert_int_eq(fast.rule_id, full.rule_id);
            ck_assert_int_eq(fast.valid_until, full.valid_until);
            ck_assert_int_eq(fast.generation, full.generation);
            ck_assert_int_eq(fast.kind, full.kind);
        }
        sk_X509_pop_free(chain, X509_free);
    }
}

START_TEST(test_one_statement_path_agrees_with_full_evaluation)
{
    int64_t alice_cert;

    assert_paths_agree("nothing pinned");
    pin(&pki->ca_a);
    pin(&pki->ca_b);
    pin(&pki->ca_twin);
    pin(&pki->ca_a_renewed);
    assert_paths_agree("pinned, nothing mapped");
    map_unbound_raw(&pki->alice, CS_KIND_SKI, "alice-unbound");
    map_unbound_raw(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice-unbound");
    assert_paths_agree("unbound ski and issuer-serial mappings");
    map_full(&pki->bob, CS_KIND_SKI, "bob-ski", &pki->ca_a, CS_TIME_NONE, CS_TIME_NONE);
    map_full(&pki->bob, CS_KIND_ISSUER_SERIAL, "bob-is", &pki->ca_a, CS_TIME_NONE, CS_TIME_NONE);
    alice_cert = map(&pki->alice, CS_KIND_CERT, "alice");
    map(&pki->alice, CS_KIND_SPKI, "alice-by-key");
    map_full(&pki->bob, CS_KIND_CERT, "bob", &pki->ca_b, CS_TIME_NONE, CS_TIME_NONE);
    map(&pki->bob, CS_KIND_SPKI, "bob-by-key");
    map_full(&pki->carol, CS_KIND_CERT, "carol", &pki->ca_b, now + 3600, now + 5000);
    map(&pki->expired, CS_KIND_CERT, "expired");
    assert_paths_agree("mapped: own pin, other pin, windowed");
    set_mapping_enabled(alice_cert, 0);
    assert_paths_agree("alice's cert mapping disabled");
    set_mapping_enabled(alice_cert, 1);
    begin();
    ck_ok(cs_account_set_enabled(writer, "alice", 0));
    commit();
    assert_paths_agree("alice's account disabled");
    set_pin_enabled(&pki->ca_a, 0);
    assert_paths_agree("pin A disabled");
}
END_TEST

/* ---- schema 3: databases made before binding ------------------------------------ */

static void raw_exec_all(const char *sql)
{
    sqlite3 *raw = NULL;

    ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, "PRAGMA busy_timeout = 5000", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(raw));
    sqlite3_close(raw);
}

/* Schema 2 is schema 3 without the generation triggers, meta.bulk_write and mapping_certs. */
static void downgrade_to_schema_2(void)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    char names[32][96];
    int n = 0;

    ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "SELECT name FROM sqlite_master WHERE type = 'trigger'", -1,
                                        &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW && n < 32)
        snprintf(names[n++], sizeof(names[0]), "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(raw);
    /* 3 per policy table (pins, accounts, mappings, rules, mapping_certs, crls, revoked,
     * ocsp_answers) and mappings_drop_cert; sync_state has none. */
    ck_assert_int_eq(n, 25);
    for (int i = 0; i < n; i++) {
        char sql[160];

        snprintf(sql, sizeof(sql), "DROP TRIGGER \"%.96s\"", names[i]);
        raw_exec_all(sql);
    }
    /* Schemas 10 and 9 undone first (sync bookkeeping, OCSP answers), then 8. */
    raw_exec_all("DROP TABLE sync_entries; DROP TABLE ocsp_answers;");
    raw_exec_all("DROP INDEX mappings_by_source; DROP TABLE sync_state;"
                 "ALTER TABLE pins DROP COLUMN source; ALTER TABLE accounts DROP COLUMN source;"
                 "ALTER TABLE mappings DROP COLUMN source; ALTER TABLE rules DROP COLUMN source");
    /* Then schema 7 (revocation). */
    raw_exec_all("DROP TABLE revoked; DROP TABLE crls;"
                 "ALTER TABLE pins DROP COLUMN revocation;"
                 "ALTER TABLE pins DROP COLUMN revocation_grace;");
    raw_exec_all("DROP TABLE mapping_certs;"
                 "ALTER TABLE meta DROP COLUMN bulk_write;"
                 "ALTER TABLE rules DROP COLUMN subject_exact;"
                 "ALTER TABLE rules DROP COLUMN issuer_exact; PRAGMA user_version = 2");
}

static char cli_out[16384];

static int cli(const char *first, ...)
{
    va_list ap;
    int status;

    va_start(ap, first);
    status = us_cli_v(tstore.db, 1, cli_out, sizeof(cli_out), first, ap);
    va_end(ap);
    return status;
}

START_TEST(test_schema_2_unbound_mappings_stay_inert_and_flagged)
{
    int64_t before = 0, after = 0;
    int version = 0;
    cs_db *fresh = NULL;

    pin(&pki->ca_a);
    pin(&pki->ca_b);
    pin(&pki->ca_twin);
    map(&pki->bob, CS_KIND_CERT, "bob");
    cs_db_close(reader);
    reader = NULL;
    downgrade_to_schema_2();
    map_unbound_raw(&pki->alice, CS_KIND_SKI, "alice");
    map_unbound_raw(&pki->alice, CS_KIND_ISSUER_SERIAL, "alice");
    ck_ok(cs_db_generation(writer, &before));

    /* No write reaches a database without the generation triggers. */
    ck_assert_int_eq(cs_db_begin(writer, "check_policy"), CS_INVALID);
    ck_assert_msg(strstr(cs_db_errmsg(writer), "older") != NULL, "%s", cs_db_errmsg(writer));
    ck_ok(cs_db_migrate(writer));
    ck_ok(cs_db_schema_version(writer, &version));
    ck_assert_int_eq(version, CS_SCHEMA_VERSION);
    /* Sessions an older binary accepted through the unbound rows decide again. */
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_gt(after, before);

    ck_assert_int_eq(cs_db_open(&fresh, tstore.db, CS_OPEN_READONLY), CS_OK);
    reader = fresh;
    ck_rejected(decide(&pki->eve), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->mallory), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    ck_accepted(decide(&pki->bob), "bob");

    ck_assert_int_eq(cli("map", "ls", NULL), 0);
    ck_assert_msg(strstr(cli_out, "ski") != NULL &&
                      strstr(strstr(cli_out, "unbound: never matches, re-add with --pin") + 1,
                             "unbound: never matches, re-add with --pin") != NULL,
                  "%s", cli_out);
    ck_assert_int_eq(cli("map", "ls", "--json", NULL), 0);
    ck_assert_ptr_nonnull(strstr(cli_out, "\"unbound\":true"));
    ck_assert_ptr_nonnull(strstr(cli_out, "\"unbound\":false"));
    ck_assert_int_eq(cli("stats", "--json", NULL), 0);
    ck_assert_ptr_nonnull(strstr(cli_out, "\"mappings_unbound\":2"));
    /* csv re-imports and server maps: left out, counted. */
    ck_assert_int_eq(cli("export", "--format", "csv", NULL), 0);
    ck_assert_ptr_null(strstr(cli_out, "alice"));
    ck_assert_ptr_nonnull(strstr(cli_out, "2 unbound: they never match"));
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *pins = tcase_create("pins");
    TCase *mappings = tcase_create("mappings");
    TCase *store = tcase_create("store");
    TCase *live = tcase_create("live");

    tcase_add_checked_fixture(pins, setup, teardown);
    tcase_add_test(pins, test_chain_of_one_rejected_issuer_not_pinned);
    tcase_add_test(pins, test_unpinned_issuer_rejected);
    tcase_add_test(pins, test_root_pin_does_not_pin_intermediates);
    tcase_add_test(pins, test_leaf_issued_by_pinned_root_accepted);
    tcase_add_test(pins, test_same_dn_twin_ca_rejected);
    tcase_add_test(pins, test_twin_ca_pinned_but_mapping_restricted_rejected);
    tcase_add_test(pins, test_disabled_pin_rejected);
    tcase_add_test(pins, test_removed_pin_rejected);
    suite_add_tcase(s, pins);

    tcase_add_checked_fixture(mappings, setup, teardown);
    tcase_add_test(mappings, test_cert_mapping_accepted_with_details);
    tcase_add_test(mappings, test_no_mapping_rejected);
    tcase_add_test(mappings, test_issuer_serial_mapping_accepted);
    tcase_add_test(mappings, test_ski_mapping_accepted);
    tcase_add_test(mappings, test_spki_mapping_survives_renewal);
    tcase_add_test(mappings, test_cert_mapping_does_not_match_renewed_cert);
    tcase_add_test(mappings, test_cert_mapping_looked_up_before_spki);
    tcase_add_test(mappings, test_first_existing_mapping_decides);
    tcase_add_test(mappings, test_disabled_mapping_rejected);
    tcase_add_test(mappings, test_mapping_not_yet_valid_rejected);
    tcase_add_test(mappings, test_mapping_expired_rejected);
    tcase_add_test(mappings, test_disabled_account_rejected);
    tcase_add_test(mappings, test_mapping_restricted_to_other_pin_lets_next_kind_decide);
    tcase_add_test(mappings, test_mapping_for_other_pin_does_not_skip_to_rules);
    tcase_add_test(mappings, test_unbound_ski_mapping_refused);
    tcase_add_test(mappings, test_ski_from_other_pinned_ca_rejected);
    tcase_add_test(mappings, test_issuer_serial_from_pinned_twin_ca_rejected);
    tcase_add_test(mappings, test_unbound_ski_and_issuer_serial_never_match);
    tcase_add_test(mappings, test_mapping_restricted_to_own_pin_accepted);
    tcase_add_test(mappings, test_valid_until_is_earliest_of_mapping_and_certs);
    tcase_add_test(mappings, test_one_statement_path_agrees_with_full_evaluation);
    suite_add_tcase(s, mappings);

    tcase_add_checked_fixture(store, setup, teardown);
    tcase_set_timeout(store, 30); /* lock tests wait out the busy timeout */
    tcase_add_test(store, test_no_store_rejected_store_unavailable);
    tcase_add_test(store, test_broken_schema_rejected_store_unavailable);
    tcase_add_test(store, test_locked_store_rejected_store_unavailable);
    tcase_add_test(store, test_corrupt_file_rejected_store_unavailable);
    tcase_add_test(store, test_empty_chain_rejected_chain_invalid);
    suite_add_tcase(s, store);

    tcase_add_checked_fixture(live, setup, teardown);
    tcase_add_test(live, test_change_seen_by_open_reader_without_reopen);
    tcase_add_test(live, test_decision_reports_current_generation);
    tcase_add_test(live, test_reason_tokens_verbatim);
    tcase_add_test(live, test_decide_from_writer_inside_transaction);
    tcase_add_test(live, test_schema_2_unbound_mappings_stay_inert_and_flagged);
    suite_add_tcase(s, live);
    return s;
}

int main(void)
{
    return us_run_suite(policy_suite(), "check_policy", &pki, &tmp_root);
}
