/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Revocation: CRLs made with the OpenSSL API for the test PKI's CAs, stored
 * through cs_crl_add, and decided through a read-only handle as a server
 * would: which CRLs are refused, what replaces what, when the generation
 * moves, and every revocation policy's decision.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

#define DAY 86400

static testpki *pki;
static char *tmp_root;
static us_store tstore;
static cs_db *writer;
static cs_db *reader;
static int64_t now;
static char pin_a[CS_FP_HEX_LEN + 1];

#define ck_ok(expr) ck_assert_msg((expr) == CS_OK, "%s failed: %s", #expr, cs_db_errmsg(writer))

static void begin(void)
{
    ck_ok(cs_db_begin(writer, "check_crl"));
}

static void commit(void)
{
    ck_ok(cs_db_commit(writer));
}

static void map_cert(const testpki_cred *leaf, const char *account)
{
    cs_mapping_spec spec = {0};

    ck_ok(cs_mapping_spec_from_cert(&spec, leaf->cert, CS_KIND_CERT));
    spec.account = account;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    begin();
    ck_ok(cs_mapping_add(writer, &spec, 1, NULL));
    commit();
}

static void setup(void)
{
    us_store_open(&tstore, tmp_root);
    writer = tstore.writer;
    reader = tstore.reader;
    now = (int64_t)time(NULL);
    ck_assert(cs_fp_of_cert(pki->ca_a.cert, pin_a));
    begin();
    ck_ok(cs_pin_add(writer, pki->ca_a.cert, "", NULL));
    commit();
    map_cert(&pki->alice, "alice");
}

static void teardown(void)
{
    us_store_close(&tstore);
}

/* ---- making CRLs ---------------------------------------------------------------- */

typedef struct {
    long number;      /* < 0: no CRL number */
    int64_t last;     /* thisUpdate */
    int64_t next;     /* nextUpdate, CS_TIME_NONE: none */
    int delta;        /* a deltaCRLIndicator */
    const char *idp;  /* an issuingDistributionPoint in config syntax */
    int unknown_crit; /* an unknown critical extension */
} crl_spec;

static void add_entry(X509_CRL *crl, const X509 *cert, int reason)
{
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_TIME *when = ASN1_TIME_set(NULL, (time_t)(now - DAY));

    ck_assert(r != NULL && when != NULL);
    ck_assert(X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(cert)));
    ck_assert(X509_REVOKED_set_revocationDate(r, when));
    if (reason >= 0) {
        ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();

        ck_assert(e != NULL && ASN1_ENUMERATED_set(e, reason));
        ck_assert(X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, e, 0, 0));
        ASN1_ENUMERATED_free(e);
    }
    ck_assert(X509_CRL_add0_revoked(crl, r));
    ASN1_TIME_free(when);
}

static void add_crl_extensions(X509_CRL *crl, const testpki_cred *ca, const crl_spec *s)
{
    X509V3_CTX v3;

    if (s->number >= 0) {
        ASN1_INTEGER *n = ASN1_INTEGER_new();

        ck_assert(n != NULL && ASN1_INTEGER_set(n, s->number));
        ck_assert(X509_CRL_add1_ext_i2d(crl, NID_crl_number, n, 0, 0));
        ASN1_INTEGER_free(n);
    }
    X509V3_set_ctx(&v3, ca->cert, NULL, NULL, crl, 0);
    if (s->delta) {
        ASN1_INTEGER *n = ASN1_INTEGER_new();

        ck_assert(n != NULL && ASN1_INTEGER_set(n, 1));
        ck_assert(X509_CRL_add1_ext_i2d(crl, NID_delta_crl, n, 1, 0));
        ASN1_INTEGER_free(n);
    }
    if (s->idp != NULL) {
        X509_EXTENSION *ext =
            X509V3_EXT_nconf_nid(NULL, &v3, NID_issuing_distribution_point, s->idp);

        ck_assert(ext != NULL && X509_CRL_add_ext(crl, ext, -1));
        X509_EXTENSION_free(ext);
    }
    if (s->unknown_crit) {
        ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.4.1.55555.1", 1);
        ASN1_OCTET_STRING *data = ASN1_OCTET_STRING_new();
        X509_EXTENSION *ext;

        ck_assert(obj != NULL && data != NULL &&
                  ASN1_OCTET_STRING_set(data, (void *)"\x05\x00", 2));
        ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, data);
        ck_assert(ext != NULL && X509_CRL_add_ext(crl, ext, -1));
        X509_EXTENSION_free(ext);
        ASN1_OBJECT_free(obj);
        ASN1_OCTET_STRING_free(data);
    }
}

/* A CRL signed by ca listing the given leaves (NULL-terminated). */
static X509_CRL *make_crl(const testpki_cred *ca, const crl_spec *s, ...)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_set(NULL, (time_t)s->last);
    const testpki_cred *leaf;
    va_list ap;

    ck_assert(crl != NULL && last != NULL);
    ck_assert(X509_CRL_set_version(crl, 1));
    ck_assert(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)));
    ck_assert(X509_CRL_set1_lastUpdate(crl, last));
    if (s->next != CS_TIME_NONE) {
        ASN1_TIME *next = ASN1_TIME_set(NULL, (time_t)s->next);

        ck_assert(next != NULL && X509_CRL_set1_nextUpdate(crl, next));
        ASN1_TIME_free(next);
    }
    ASN1_TIME_free(last);
    va_start(ap, s);
    while ((leaf = va_arg(ap, const testpki_cred *)) != NULL)
        add_entry(crl, leaf->cert, 1);
    va_end(ap);
    add_crl_extensions(crl, ca, s);
    ck_assert(X509_CRL_sort(crl));
    ck_assert(X509_CRL_sign(crl, ca->key, EVP_sha256()) > 0);
    return crl;
}

static crl_spec current(long number)
{
    return (crl_spec){.number = number, .last = now - 3600, .next = now + 6 * DAY};
}

/* cs_crl_add in its own transaction, committed only on success. */
static cs_status add_crl(X509_CRL *crl, const char *pin, cs_crl_add_result *res)
{
    cs_crl_add_result ignored;
    cs_status st;

    begin();
    st = cs_crl_add(writer, crl, pin, NULL, now, res != NULL ? res : &ignored);
    if (st == CS_OK)
        commit();
    else
        cs_db_rollback(writer);
    X509_CRL_free(crl);
    return st;
}

static void set_policy(cs_revocation_policy policy, int64_t grace)
{
    begin();
    ck_ok(cs_pin_set_revocation(writer, pin_a, policy, grace));
    commit();
}

static int64_t generation(void)
{
    int64_t g = 0;

    ck_ok(cs_db_generation(writer, &g));
    return g;
}

static int count_crl(const cs_crl_info *info, void *arg)
{
    (void)info;
    ++*(int *)arg;
    return 0;
}

static int crl_count(void)
{
    int n = 0;

    ck_ok(cs_crl_foreach(writer, now, count_crl, &n));
    return n;
}

static int revoked_rows(void)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;

    ck_assert_int_eq(sqlite3_open_v2(tstore.db, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(raw, "SELECT count(*) FROM revoked", -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return n;
}

/* Decide a leaf's chain at a time through the read-only handle. */
static cs_decision decide_at(const testpki_cred *leaf, int64_t at)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d;

    ck_assert(chain != NULL);
    cs_decide(reader, chain, at, &d);
    sk_X509_pop_free(chain, X509_free);
    return d;
}

static void expect_reject(const testpki_cred *leaf, int64_t at, cs_reason reason)
{
    cs_decision d = decide_at(leaf, at);

    ck_assert_msg(!d.accept && d.reason == reason, "expected %s, got %s (%s)",
                  cs_reason_token(reason), d.accept ? "accept" : cs_reason_token(d.reason),
                  d.detail);
}

static void expect_accept(const testpki_cred *leaf, int64_t at, cs_revocation_state state)
{
    cs_decision d = decide_at(leaf, at);

    ck_assert_msg(d.accept, "rejected %s (%s)", cs_reason_token(d.reason), d.detail);
    ck_assert_str_eq(cs_revocation_state_name(d.revocation), cs_revocation_state_name(state));
}

/* alice's certificate issued again by ca_a with SERIAL (negative ones too: RFC 5280 forbids
 * them, OpenSSL parses them). */
static testpki_cred with_serial(long serial)
{
    testpki_cred c = {X509_dup(pki->alice.cert), pki->alice.key};
    ASN1_INTEGER *n = ASN1_INTEGER_new();

    ck_assert(c.cert != NULL && n != NULL && ASN1_INTEGER_set(n, serial));
    ck_assert(X509_set_serialNumber(c.cert, n));
    ck_assert(X509_sign(c.cert, pki->ca_a.key, EVP_sha256()) > 0);
    ASN1_INTEGER_free(n);
    return c;
}

static cs_decision decide_issued_by_a(const testpki_cred *leaf)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    cs_decision d;

    ck_assert(chain != NULL && sk_X509_push(chain, leaf->cert) &&
              sk_X509_push(chain, pki->ca_a.cert) && sk_X509_push(chain, pki->root.cert));
    cs_decide(reader, chain, now, &d);
    sk_X509_free(chain);
    return d;
}

/* ---- the decision ------------------------------------------------------------------ */

START_TEST(test_revoked_serial_rejected)
{
    crl_spec s = current(1);

    expect_accept(&pki->alice, now, CS_REVSTATE_NONE);
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
    ck_assert_ptr_nonnull(strstr(decide_at(&pki->alice, now).detail, "keyCompromise"));
}
END_TEST

/* -0x01 and 0xFF01 are two certificates: revoking one never revokes the other. */
START_TEST(test_negative_serial_never_revokes_a_positive_one)
{
    testpki_cred positive = with_serial(0xFF01), negative = with_serial(-1);
    crl_spec s = current(1);
    cs_decision d;

    map_cert(&positive, "positive");
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &negative, NULL), NULL, NULL));
    d = decide_issued_by_a(&negative);
    ck_assert_msg(!d.accept && d.reason == CS_REASON_REVOKED, "-0x01: %s",
                  cs_reason_token(d.reason));
    d = decide_issued_by_a(&positive);
    ck_assert_msg(d.accept, "0xFF01 rejected %s (%s)", cs_reason_token(d.reason), d.detail);
    s = current(2);
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &positive, NULL), NULL, NULL));
    d = decide_issued_by_a(&positive);
    ck_assert_msg(!d.accept && d.reason == CS_REASON_REVOKED, "0xFF01: %s",
                  cs_reason_token(d.reason));
    d = decide_issued_by_a(&negative);
    ck_assert_msg(d.reason != CS_REASON_REVOKED, "-0x01 revoked by 0xFF01's entry");
    X509_free(positive.cert);
    X509_free(negative.cert);
}
END_TEST

/* A store from before schema 11 kept -0x01 as FF 01: both readings stay revoked. */
START_TEST(test_old_ambiguous_serial_keys_stay_revoked)
{
    testpki_cred positive = with_serial(0xFF01), negative = with_serial(-1);
    crl_spec s = current(1);
    sqlite3 *raw = NULL;
    char *err = NULL;

    map_cert(&positive, "positive");
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->bob, NULL), NULL, NULL));
    ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(raw,
                               "INSERT INTO revoked (crl_id, serial) SELECT id, X'FF01' FROM crls;"
                               "PRAGMA user_version = 10",
                               NULL, NULL, &err) == SQLITE_OK,
                  "%s", err);
    sqlite3_close(raw);
    ck_ok(cs_db_migrate(writer));
    ck_assert_int_eq(decide_issued_by_a(&positive).reason, CS_REASON_REVOKED);
    ck_assert_int_eq(decide_issued_by_a(&negative).reason, CS_REASON_REVOKED);
    ck_assert_int_eq(revoked_rows(), 3);
    X509_free(positive.cert);
    X509_free(negative.cert);
}
END_TEST

/* After the pin and before the mapping: an unmapped revoked leaf is revoked, not no-mapping. */
START_TEST(test_revocation_decided_before_the_mapping)
{
    crl_spec s = current(1);

    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->bob, NULL), NULL, NULL));
    expect_reject(&pki->bob, now, CS_REASON_REVOKED);
    expect_accept(&pki->alice, now, CS_REVSTATE_GOOD);
    /* mallory: the twin CA's leaf with alice's issuer DN and serial is not pinned at all. */
    expect_reject(&pki->mallory, now, CS_REASON_ISSUER_NOT_PINNED);
}
END_TEST

/* alice_renewed has another serial: the CRL names a certificate, not a key or a name. */
START_TEST(test_renewed_certificate_not_revoked_with_the_old)
{
    crl_spec s = current(1);

    map_cert(&pki->alice_renewed, "alice");
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
    expect_accept(&pki->alice_renewed, now, CS_REVSTATE_GOOD);
}
END_TEST

START_TEST(test_off_ignores_the_crl)
{
    crl_spec s = current(1);

    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, NULL));
    set_policy(CS_REVOCATION_OFF, CS_TIME_NONE);
    expect_accept(&pki->alice, now, CS_REVSTATE_OFF);
}
END_TEST

START_TEST(test_hard_without_crl_rejects_unknown)
{
    set_policy(CS_REVOCATION_HARD, CS_TIME_NONE);
    expect_reject(&pki->alice, now, CS_REASON_REVOCATION_UNKNOWN);
}
END_TEST

START_TEST(test_soft_without_crl_accepts_missing)
{
    set_policy(CS_REVOCATION_SOFT, CS_TIME_NONE);
    expect_accept(&pki->alice, now, CS_REVSTATE_MISSING);
}
END_TEST

/* nextUpdate passed: within the grace still current, past it soft accepts stale, hard rejects. */
START_TEST(test_stale_crl_soft_and_hard)
{
    crl_spec s = current(1);
    cs_decision d;

    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->bob, NULL), NULL, NULL));
    expect_accept(&pki->alice, now + 7 * DAY, CS_REVSTATE_GRACE);
    expect_accept(&pki->alice, now + 14 * DAY, CS_REVSTATE_STALE);
    expect_reject(&pki->bob, now + 14 * DAY, CS_REASON_REVOKED); /* stale, still listed */
    set_policy(CS_REVOCATION_HARD, CS_TIME_NONE);
    expect_accept(&pki->alice, now + 7 * DAY, CS_REVSTATE_GRACE);
    expect_reject(&pki->alice, now + 14 * DAY, CS_REASON_REVOCATION_UNKNOWN);
    set_policy(CS_REVOCATION_HARD, 30 * DAY);
    expect_accept(&pki->alice, now + 14 * DAY, CS_REVSTATE_GRACE);
    set_policy(CS_REVOCATION_HARD, 0);
    expect_reject(&pki->alice, now + 6 * DAY + 60, CS_REASON_REVOCATION_UNKNOWN);
    /* An acceptance holds no longer than the CRL stays current within the grace. */
    d = decide_at(&pki->alice, now);
    ck_assert(d.accept);
    ck_assert_int_eq(d.valid_until, s.next);
}
END_TEST

/* ---- what add refuses, and leaves unchanged --------------------------------------- */

static void expect_refused(X509_CRL *crl, const char *pin, const char *why)
{
    int64_t g = generation();
    cs_status st = add_crl(crl, pin, NULL);

    ck_assert_int_ne(st, CS_OK);
    ck_assert_msg(strstr(cs_db_errmsg(writer), why) != NULL, "message '%s' lacks '%s'",
                  cs_db_errmsg(writer), why);
    ck_assert_int_eq(generation(), g);
    ck_assert_int_eq(crl_count(), 0);
    ck_assert_int_eq(revoked_rows(), 0);
    expect_accept(&pki->alice, now, CS_REVSTATE_NONE);
}

START_TEST(test_crl_of_twin_dn_ca_refused)
{
    crl_spec s = current(1);

    expect_refused(make_crl(&pki->ca_twin, &s, &pki->alice, NULL), NULL, "same name");
}
END_TEST

START_TEST(test_crl_of_unpinned_ca_refused)
{
    crl_spec s = current(1);

    expect_refused(make_crl(&pki->ca_b, &s, &pki->alice, NULL), NULL, "no pinned CA issued");
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL),
                   "0000000000000000000000000000000000000000000000000000000000000000",
                   "did not issue");
}
END_TEST

START_TEST(test_delta_crl_refused)
{
    crl_spec s = current(2);

    s.delta = 1;
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "delta CRL");
}
END_TEST

START_TEST(test_scoped_and_unknown_critical_crls_refused)
{
    crl_spec s = current(1);

    s.idp = "critical,onlysomereasons:keyCompromise";
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "some revocation reasons");
    s.idp = "critical,onlyCA:TRUE";
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "only CA");
    s.idp = "critical,indirectCRL:TRUE";
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "indirect");
    /* One shard of a sharded CRL: the next shard would lift this one's revocations. */
    s.idp = "critical,fullname:URI:http://crl.example/shard1.crl";
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "one distribution point");
    s.idp = NULL;
    s.unknown_crit = 1;
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "unknown critical");
}
END_TEST

START_TEST(test_future_crl_refused)
{
    crl_spec s = current(1);

    s.last = now + DAY;
    s.next = now + 8 * DAY;
    expect_refused(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, "in the future");
}
END_TEST

START_TEST(test_older_crl_refused_by_number)
{
    crl_spec newer = current(5), older = current(4);
    cs_crl_add_result res;

    ck_ok(add_crl(make_crl(&pki->ca_a, &newer, &pki->bob, NULL), NULL, &res));
    older.last = newer.last + 60; /* a later thisUpdate does not beat the number */
    ck_assert_int_eq(add_crl(make_crl(&pki->ca_a, &older, NULL), NULL, NULL), CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "not newer"));
    expect_reject(&pki->bob, now, CS_REASON_REVOKED);
    ck_assert_int_eq(revoked_rows(), 1);
}
END_TEST

START_TEST(test_older_crl_refused_by_this_update)
{
    crl_spec first = current(-1), older = current(-1);

    ck_ok(add_crl(make_crl(&pki->ca_a, &first, &pki->bob, NULL), NULL, NULL));
    older.last = first.last - 60;
    ck_assert_int_eq(add_crl(make_crl(&pki->ca_a, &older, NULL), NULL, NULL), CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "thisUpdate is not newer"));
    expect_reject(&pki->bob, now, CS_REASON_REVOKED);
}
END_TEST

/* ---- the generation ------------------------------------------------------------------ */

START_TEST(test_generation_moves_only_when_stricter)
{
    crl_spec s1 = current(1), s2 = current(2), s3 = current(3), s4 = current(4);
    cs_crl_add_result res;
    int64_t g;

    /* An empty first CRL revokes nothing: sessions keep resuming. */
    g = generation();
    ck_ok(add_crl(make_crl(&pki->ca_a, &s1, NULL), NULL, &res));
    ck_assert_int_eq(generation(), g);
    ck_assert(!res.generation_bumped);
    /* A newly revoked serial: every session decides again. */
    ck_ok(add_crl(make_crl(&pki->ca_a, &s2, &pki->bob, NULL), NULL, &res));
    ck_assert_int_eq(res.newly_revoked, 1);
    ck_assert_int_gt(generation(), g);
    /* A refresh listing the same serials: no bump. */
    g = generation();
    s3.next = s2.next + DAY;
    ck_ok(add_crl(make_crl(&pki->ca_a, &s3, &pki->bob, NULL), NULL, &res));
    ck_assert_int_eq(res.newly_revoked, 0);
    ck_assert_int_eq(generation(), g);
    /* An unrevocation only loosens: no bump either. */
    s4.next = s3.next;
    ck_ok(add_crl(make_crl(&pki->ca_a, &s4, NULL), NULL, &res));
    ck_assert_int_eq(res.unrevoked, 1);
    ck_assert_int_eq(generation(), g);
    ck_assert_int_eq(revoked_rows(), 0);
    expect_reject(&pki->bob, now, CS_REASON_NO_MAPPING); /* no longer revoked; unmapped */
}
END_TEST

/* A CRL that goes stale sooner (or at all) shortens acceptances: sessions decide again. */
START_TEST(test_earlier_next_update_bumps)
{
    crl_spec s1 = current(1), s2 = current(2), s3 = current(3);
    int64_t g;

    s1.next = CS_TIME_NONE;
    ck_ok(add_crl(make_crl(&pki->ca_a, &s1, NULL), NULL, NULL));
    g = generation();
    ck_ok(add_crl(make_crl(&pki->ca_a, &s2, NULL), NULL, NULL)); /* none -> a nextUpdate */
    ck_assert_int_gt(generation(), g);
    g = generation();
    s3.next = s2.next - DAY;
    ck_ok(add_crl(make_crl(&pki->ca_a, &s3, NULL), NULL, NULL));
    ck_assert_int_gt(generation(), g);
}
END_TEST

START_TEST(test_same_crl_again_is_unchanged)
{
    crl_spec s = current(1);
    X509_CRL *crl = make_crl(&pki->ca_a, &s, &pki->bob, NULL);
    cs_crl_add_result res;
    int64_t g;

    ck_assert(X509_CRL_up_ref(crl));
    ck_ok(add_crl(crl, NULL, &res));
    g = generation();
    ck_ok(add_crl(crl, NULL, &res));
    ck_assert(res.unchanged);
    ck_assert_int_eq(generation(), g);
}
END_TEST

START_TEST(test_policy_change_and_removal_bump)
{
    crl_spec s = current(1);
    int64_t g = generation();

    set_policy(CS_REVOCATION_HARD, CS_TIME_NONE);
    ck_assert_int_gt(generation(), g);
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, NULL), NULL, NULL));
    expect_accept(&pki->alice, now, CS_REVSTATE_GOOD);
    g = generation();
    begin();
    ck_ok(cs_crl_remove(writer, pin_a));
    commit();
    ck_assert_int_gt(generation(), g);
    expect_reject(&pki->alice, now, CS_REASON_REVOCATION_UNKNOWN);
    begin();
    ck_assert_int_eq(cs_crl_remove(writer, pin_a), CS_NOTFOUND);
    cs_db_rollback(writer);
}
END_TEST

START_TEST(test_pin_removal_removes_its_crl)
{
    crl_spec s = current(1);

    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->bob, NULL), NULL, NULL));
    begin();
    ck_ok(cs_pin_remove(writer, pin_a));
    commit();
    ck_assert_int_eq(crl_count(), 0);
    ck_assert_int_eq(revoked_rows(), 0);
}
END_TEST

/* Several pins (ca_a and its renewal: same name and key) issued it: --pin names one. */
START_TEST(test_ambiguous_issuer_needs_pin)
{
    crl_spec s = current(1);
    char renewed[CS_FP_HEX_LEN + 1];

    begin();
    ck_ok(cs_pin_add(writer, pki->ca_a_renewed.cert, "", renewed));
    commit();
    ck_assert_int_eq(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, NULL), CS_EXISTS);
    ck_assert_int_eq(crl_count(), 0);
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), pin_a, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
}
END_TEST

/* Decide alice's certificate as issued through the renewed CA certificate (the client's choice). */
static cs_decision decide_through_renewed(int64_t at)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    cs_decision d;

    ck_assert(chain != NULL && sk_X509_push(chain, pki->alice.cert) &&
              sk_X509_push(chain, pki->ca_a_renewed.cert) && sk_X509_push(chain, pki->root.cert));
    cs_decide(reader, chain, at, &d);
    sk_X509_free(chain);
    return d;
}

/*
 * A CRL is its issuer's (name and key): a leaf that chains through the
 * renewed CA certificate (same name and key, pinned too, no CRL of its own)
 * is revoked by it all the same. The client picks the intermediate it sends.
 */
START_TEST(test_revoked_through_renewed_ca_certificate)
{
    crl_spec s = current(1);
    cs_decision d;

    begin();
    ck_ok(cs_pin_add(writer, pki->ca_a_renewed.cert, "", NULL));
    commit();
    ck_assert(decide_through_renewed(now).accept);
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), pin_a, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
    d = decide_through_renewed(now);
    ck_assert_msg(!d.accept && d.reason == CS_REASON_REVOKED,
                  "through the renewed CA certificate: %s (%s)",
                  d.accept ? "accept" : cs_reason_token(d.reason), d.detail);
}
END_TEST

/* Both pins hold a CRL, the renewed one's older: ca_a's newer CRL revokes through either. */
START_TEST(test_revoked_by_the_newer_crl_of_the_other_pin)
{
    crl_spec first = current(1), second = current(2);
    char renewed[CS_FP_HEX_LEN + 1];
    cs_decision d;

    begin();
    ck_ok(cs_pin_add(writer, pki->ca_a_renewed.cert, "", renewed));
    commit();
    ck_ok(add_crl(make_crl(&pki->ca_a, &first, NULL), renewed, NULL));
    ck_ok(add_crl(make_crl(&pki->ca_a, &second, &pki->alice, NULL), pin_a, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
    d = decide_through_renewed(now);
    ck_assert_msg(!d.accept && d.reason == CS_REASON_REVOKED, "through the renewed pin: %s (%s)",
                  d.accept ? "accept" : cs_reason_token(d.reason), d.detail);
}
END_TEST

/* A pinned twin-DN CA (another key, mallory has alice's serial): ca_a's CRL is not its. */
START_TEST(test_twin_dn_ca_not_revoked_by_the_crl)
{
    crl_spec s = current(1);

    begin();
    ck_ok(cs_pin_add(writer, pki->ca_twin.cert, "", NULL));
    commit();
    map_cert(&pki->mallory, "mallory");
    ck_ok(add_crl(make_crl(&pki->ca_a, &s, &pki->alice, NULL), NULL, NULL));
    expect_reject(&pki->alice, now, CS_REASON_REVOKED);
    expect_accept(&pki->mallory, now, CS_REVSTATE_NONE);
}
END_TEST

/* ---- the index ------------------------------------------------------------------------ */

/* The decision's probe is the revoked table's primary key: one B-tree search. */
START_TEST(test_lookup_is_one_primary_key_probe)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    int found = 0;

    ck_assert_int_eq(sqlite3_open_v2(tstore.db, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "EXPLAIN QUERY PLAN SELECT r.reason FROM pins p"
                                        " LEFT JOIN crls c ON c.pin_id = p.id"
                                        " LEFT JOIN revoked r ON r.crl_id = c.id"
                                        " AND r.serial = ?2 WHERE p.fp = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);

        ck_assert_msg(strstr(detail, "SCAN") == NULL, "a scan: %s", detail);
        if (strstr(detail, "SEARCH r USING PRIMARY KEY (crl_id=? AND serial=?)") != NULL)
            found = 1;
    }
    sqlite3_finalize(st);
    sqlite3_close(raw);
    ck_assert(found);
}
END_TEST

static Suite *crl_suite(void)
{
    Suite *s = suite_create("crl");
    TCase *decision = tcase_create("decision");
    TCase *refused = tcase_create("refused");
    TCase *generation_case = tcase_create("generation");
    TCase *index = tcase_create("index");

    tcase_add_checked_fixture(decision, setup, teardown);
    tcase_add_test(decision, test_revoked_serial_rejected);
    tcase_add_test(decision, test_revocation_decided_before_the_mapping);
    tcase_add_test(decision, test_negative_serial_never_revokes_a_positive_one);
    tcase_add_test(decision, test_old_ambiguous_serial_keys_stay_revoked);
    tcase_add_test(decision, test_renewed_certificate_not_revoked_with_the_old);
    tcase_add_test(decision, test_off_ignores_the_crl);
    tcase_add_test(decision, test_hard_without_crl_rejects_unknown);
    tcase_add_test(decision, test_soft_without_crl_accepts_missing);
    tcase_add_test(decision, test_stale_crl_soft_and_hard);
    suite_add_tcase(s, decision);
    tcase_add_checked_fixture(refused, setup, teardown);
    tcase_add_test(refused, test_crl_of_twin_dn_ca_refused);
    tcase_add_test(refused, test_crl_of_unpinned_ca_refused);
    tcase_add_test(refused, test_delta_crl_refused);
    tcase_add_test(refused, test_scoped_and_unknown_critical_crls_refused);
    tcase_add_test(refused, test_future_crl_refused);
    tcase_add_test(refused, test_older_crl_refused_by_number);
    tcase_add_test(refused, test_older_crl_refused_by_this_update);
    tcase_add_test(refused, test_ambiguous_issuer_needs_pin);
    tcase_add_test(decision, test_revoked_through_renewed_ca_certificate);
    tcase_add_test(decision, test_twin_dn_ca_not_revoked_by_the_crl);
    tcase_add_test(decision, test_revoked_by_the_newer_crl_of_the_other_pin);
    suite_add_tcase(s, refused);
    tcase_add_checked_fixture(generation_case, setup, teardown);
    tcase_add_test(generation_case, test_generation_moves_only_when_stricter);
    tcase_add_test(generation_case, test_same_crl_again_is_unchanged);
    tcase_add_test(generation_case, test_earlier_next_update_bumps);
    tcase_add_test(generation_case, test_policy_change_and_removal_bump);
    tcase_add_test(generation_case, test_pin_removal_removes_its_crl);
    suite_add_tcase(s, generation_case);
    tcase_add_checked_fixture(index, setup, teardown);
    tcase_add_test(index, test_lookup_is_one_primary_key_probe);
    suite_add_tcase(s, index);
    return s;
}

int main(void)
{
    return us_run_suite(crl_suite(), "check_crl", &pki, &tmp_root);
}
