/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prefetched OCSP answers: responses made with OpenSSL's OCSP API for the
 * test PKI's leaves, stored through cs_ocsp_store and decided through a
 * read-only handle as a server would: which responses are refused (and
 * leave the store as it was), what is stored, when the generation moves,
 * and how an answer meets the pin's revocation policy.
 */
#include <check.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>
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
    ck_ok(cs_db_begin(writer, "check_ocsp"));
}

static void commit(void)
{
    ck_ok(cs_db_commit(writer));
}

static void setup(void)
{
    cs_mapping_spec spec = {0};

    us_store_open(&tstore, tmp_root);
    writer = tstore.writer;
    reader = tstore.reader;
    now = (int64_t)time(NULL);
    ck_assert(cs_fp_of_cert(pki->ca_a.cert, pin_a));
    begin();
    ck_ok(cs_pin_add(writer, pki->ca_a.cert, "", NULL));
    ck_ok(cs_mapping_spec_from_cert(&spec, pki->alice.cert, CS_KIND_CERT));
    spec.account = "alice";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    ck_ok(cs_mapping_add(writer, &spec, 1, NULL));
    commit();
}

static void teardown(void)
{
    us_store_close(&tstore);
}

/* ---- making responses ---------------------------------------------------------- */

typedef struct {
    int status;             /* V_OCSP_CERTSTATUS_* */
    int64_t this_update;    /* relative to now */
    int64_t next_update;    /* relative to now; 0: none */
    const testpki_cred *by; /* the signer; NULL: ca_a itself */
    X509 *by_cert;          /* a signer made here (a responder certificate) */
    EVP_PKEY *by_key;
    OCSP_REQUEST *nonce_of; /* echo this request's nonce; NULL: none */
    int wrong_nonce;
} resp_spec;

static ASN1_GENERALIZEDTIME *gtime(int64_t at)
{
    ASN1_GENERALIZEDTIME *t = ASN1_GENERALIZEDTIME_set(NULL, (time_t)at);

    ck_assert(t != NULL);
    return t;
}

/* A DER OCSP response about leaf (issued by ca_a); *len set; free() it. */
static unsigned char *make_response(const testpki_cred *leaf, const resp_spec *s, int *len)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf->cert, pki->ca_a.cert);
    ASN1_GENERALIZEDTIME *thisupd = gtime(now + s->this_update);
    ASN1_GENERALIZEDTIME *nextupd = s->next_update != 0 ? gtime(now + s->next_update) : NULL;
    ASN1_GENERALIZEDTIME *revtime = gtime(now - DAY);
    X509 *signer = s->by_cert != NULL ? s->by_cert : s->by != NULL ? s->by->cert : pki->ca_a.cert;
    EVP_PKEY *key = s->by_key != NULL ? s->by_key : s->by != NULL ? s->by->key : pki->ca_a.key;
    OCSP_RESPONSE *resp;
    unsigned char *der = NULL;

    ck_assert(bs != NULL && id != NULL);
    ck_assert(OCSP_basic_add1_status(
                  bs, id, s->status,
                  s->status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0,
                  s->status == V_OCSP_CERTSTATUS_REVOKED ? revtime : NULL, thisupd,
                  nextupd) != NULL);
    if (s->nonce_of != NULL && !s->wrong_nonce)
        ck_assert(OCSP_copy_nonce(bs, s->nonce_of) > 0);
    if (s->wrong_nonce)
        ck_assert(OCSP_basic_add1_nonce(bs, NULL, -1));
    ck_assert(OCSP_basic_sign(bs, signer, key, EVP_sha256(), NULL, 0));
    resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    ck_assert(resp != NULL);
    *len = i2d_OCSP_RESPONSE(resp, &der);
    ck_assert(*len > 0);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    ASN1_TIME_free(revtime);
    return der;
}

static resp_spec good(void)
{
    return (resp_spec){.status = V_OCSP_CERTSTATUS_GOOD, .this_update = -60, .next_update = DAY};
}

/* cs_ocsp_store in its own transaction, committed only on success. */
static cs_status store(const testpki_cred *leaf, const resp_spec *s, OCSP_REQUEST *req,
                       cs_ocsp_result *res)
{
    cs_ocsp_result ignored;
    int len = 0;
    unsigned char *der = make_response(leaf, s, &len);
    cs_status st;

    begin();
    st = cs_ocsp_store(writer, leaf->cert, pki->ca_a.cert, req, der, (size_t)len,
                       "http://127.0.0.1/", now, res != NULL ? res : &ignored);
    if (st == CS_OK)
        commit();
    else
        cs_db_rollback(writer);
    OPENSSL_free(der);
    return st;
}

static int64_t generation(void)
{
    int64_t g = 0;

    ck_ok(cs_db_generation(writer, &g));
    return g;
}

static cs_decision decide_at(const testpki_cred *leaf, int64_t at)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d;

    ck_assert(chain != NULL);
    cs_decide(reader, chain, at, &d);
    sk_X509_pop_free(chain, X509_free);
    return d;
}

static void set_policy(cs_revocation_policy policy, int64_t grace)
{
    begin();
    ck_ok(cs_pin_set_revocation(writer, pin_a, policy, grace));
    commit();
}

typedef struct {
    int n;
    cs_ocsp_info last;
    char result[128], url[128];
} listing;

static int note_info(const cs_ocsp_info *info, void *arg)
{
    listing *l = arg;

    l->n++;
    l->last = *info;
    snprintf(l->result, sizeof(l->result), "%s", info->fetch_result ? info->fetch_result : "");
    snprintf(l->url, sizeof(l->url), "%s", info->url ? info->url : "");
    l->last.url = l->last.fetch_result = l->last.subject = NULL; /* valid in the callback only */
    return 0;
}

static listing list(void)
{
    listing l = {0};

    ck_ok(cs_ocsp_foreach(writer, now, note_info, &l));
    return l;
}

/* ---- stored and decided ------------------------------------------------------------ */

/* The CLI on the test's store; stdout and stderr in out. */
static int cli(char *out, size_t len, const char *first, ...)
{
    va_list ap;
    int rc;

    va_start(ap, first);
    rc = us_cli_v(tstore.db, 1, out, len, first, ap);
    va_end(ap);
    return rc;
}

/* A good answer past its nextUpdate vouches for nothing: expiring lists it (exit 1). */
START_TEST(test_stale_good_answer_is_due)
{
    resp_spec s = good();
    char out[8192];

    s.this_update = -600;
    s.next_update = -120; /* stored within the five minutes of clock skew, stale now */
    ck_ok(store(&pki->alice, &s, NULL, NULL));
    ck_assert_int_eq(cli(out, sizeof(out), "expiring", NULL), 1);
    ck_assert_msg(strstr(out, "ocsp answer of pin ") != NULL &&
                      strstr(out, " stale next-update=") != NULL,
                  "%s", out);
    ck_assert_int_eq(cli(out, sizeof(out), "expiring", "--json", NULL), 1);
    ck_assert_msg(strstr(out, "\"what\":\"ocsp\"") != NULL, "%s", out);
    s = good(); /* refreshed: nothing due */
    ck_ok(store(&pki->alice, &s, NULL, NULL));
    ck_assert_msg(cli(out, sizeof(out), "expiring", NULL) == 0, "%s", out);
}
END_TEST

START_TEST(test_good_answer_stored_and_accepted)
{
    resp_spec s = good();
    cs_ocsp_result res;
    int64_t g = generation();
    cs_decision d;
    listing l;

    ck_ok(store(&pki->alice, &s, NULL, &res));
    ck_assert_int_eq(res.status, CS_OCSP_GOOD);
    ck_assert_int_eq(res.old_status, CS_OCSP_NONE);
    ck_assert(!res.generation_bumped);
    ck_assert_int_eq(generation(), g); /* less strict: nothing to decide again */
    l = list();
    ck_assert_int_eq(l.n, 1);
    ck_assert_int_eq(l.last.status, CS_OCSP_GOOD);
    ck_assert(l.last.current);
    ck_assert_str_eq(l.url, "http://127.0.0.1/");
    ck_assert_str_eq(l.result, "ok: updated");
    d = decide_at(&pki->alice, now);
    ck_assert_msg(d.accept, "rejected %s (%s)", cs_reason_token(d.reason), d.detail);
    ck_assert_int_eq(d.revocation, CS_REVSTATE_GOOD); /* default policy: soft once answered */
    ck_assert_int_eq(d.ocsp, CS_OCSP_GOOD);
}
END_TEST

START_TEST(test_revoked_answer_rejects_and_bumps)
{
    resp_spec s = good();
    cs_ocsp_result res;
    int64_t g;
    cs_decision d;

    ck_ok(store(&pki->alice, &s, NULL, NULL));
    g = generation();
    s.status = V_OCSP_CERTSTATUS_REVOKED;
    s.this_update = -30;
    ck_ok(store(&pki->alice, &s, NULL, &res));
    ck_assert_int_eq(res.old_status, CS_OCSP_GOOD);
    ck_assert_int_eq(res.status, CS_OCSP_REVOKED);
    ck_assert(res.generation_bumped);
    ck_assert_int_gt(generation(), g);
    d = decide_at(&pki->alice, now);
    ck_assert(!d.accept);
    ck_assert_int_eq(d.reason, CS_REASON_REVOKED);
    ck_assert_ptr_nonnull(strstr(d.detail, "keyCompromise) by the OCSP answer"));
    /* Revoked stays revoked past its nextUpdate, as a listed serial on an old CRL does. */
    ck_assert_int_eq(decide_at(&pki->alice, now + 30 * DAY).reason, CS_REASON_REVOKED);
    /* bob has no answer: the default policy with no CRL has nothing to check. */
    ck_assert_int_eq(decide_at(&pki->bob, now).reason, CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_unchanged_refresh_does_not_bump)
{
    resp_spec s = good();
    cs_ocsp_result res;
    int64_t g;

    ck_ok(store(&pki->alice, &s, NULL, NULL));
    g = generation();
    s.this_update = -10;
    s.next_update = 2 * DAY; /* a renewal: later validity, same status */
    ck_ok(store(&pki->alice, &s, NULL, &res));
    ck_assert(res.unchanged);
    ck_assert(!res.generation_bumped);
    ck_assert_int_eq(generation(), g);
}
END_TEST

START_TEST(test_stale_answer_follows_the_policy)
{
    resp_spec s = good();

    ck_ok(store(&pki->alice, &s, NULL, NULL));
    set_policy(CS_REVOCATION_SOFT, DAY);
    ck_assert_int_eq(decide_at(&pki->alice, now + DAY + DAY / 2).revocation, CS_REVSTATE_GRACE);
    ck_assert(decide_at(&pki->alice, now + 3 * DAY).accept);
    ck_assert_int_eq(decide_at(&pki->alice, now + 3 * DAY).revocation, CS_REVSTATE_STALE);
    set_policy(CS_REVOCATION_HARD, DAY);
    ck_assert(decide_at(&pki->alice, now).accept);
    ck_assert_int_eq(decide_at(&pki->alice, now + 3 * DAY).reason, CS_REASON_REVOCATION_UNKNOWN);
    /* An acceptance holds no longer than the answer stays current within the grace. */
    ck_assert_int_le(decide_at(&pki->alice, now).valid_until, now + 2 * DAY + 1);
}
END_TEST

START_TEST(test_unknown_status_is_no_evidence)
{
    resp_spec s = good();

    s.status = V_OCSP_CERTSTATUS_UNKNOWN;
    ck_ok(store(&pki->alice, &s, NULL, NULL));
    set_policy(CS_REVOCATION_HARD, CS_TIME_NONE);
    ck_assert_int_eq(decide_at(&pki->alice, now).reason, CS_REASON_REVOCATION_UNKNOWN);
    set_policy(CS_REVOCATION_SOFT, CS_TIME_NONE);
    ck_assert_int_eq(decide_at(&pki->alice, now).revocation, CS_REVSTATE_MISSING);
}
END_TEST

/* ---- refused, the store as it was -------------------------------------------------- */

static void expect_refused(const resp_spec *s, OCSP_REQUEST *req, const char *words)
{
    int64_t g = generation();
    int before = list().n;
    cs_status st = store(&pki->alice, s, req, NULL);

    ck_assert_int_eq(st, CS_INVALID);
    ck_assert_msg(strstr(cs_db_errmsg(writer), words) != NULL, "message: %s", cs_db_errmsg(writer));
    ck_assert_int_eq(generation(), g);
    ck_assert_int_eq(list().n, before);
}

START_TEST(test_signed_by_another_ca_refused)
{
    resp_spec s = good();

    s.by = &pki->ca_b;
    expect_refused(&s, NULL, "not signed by the issuing CA");
    s.by = &pki->ca_twin; /* the same name, another key */
    expect_refused(&s, NULL, "not signed by the issuing CA");
    s.by = &pki->bob; /* issued by ca_a, but no OCSP-signing EKU */
    expect_refused(&s, NULL, "not signed by the issuing CA");
}
END_TEST

START_TEST(test_delegated_responder_accepted)
{
    resp_spec s = good();
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    ck_assert(key != NULL && cert != NULL);
    ck_assert(X509_set_version(cert, 2));
    ck_assert(ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242));
    ck_assert(X509_set_issuer_name(cert, X509_get_subject_name(pki->ca_a.cert)));
    ck_assert(X509_set_subject_name(cert, X509_get_subject_name(pki->bob.cert)));
    ck_assert(X509_gmtime_adj(X509_getm_notBefore(cert), -DAY));
    ck_assert(X509_gmtime_adj(X509_getm_notAfter(cert), DAY));
    ck_assert(X509_set_pubkey(cert, key));
    X509V3_set_ctx(&v3, pki->ca_a.cert, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "OCSPSigning");
    ck_assert(ext != NULL && X509_add_ext(cert, ext, -1));
    X509_EXTENSION_free(ext);
    ck_assert(X509_sign(cert, pki->ca_a.key, EVP_sha256()));
    s.by_cert = cert;
    s.by_key = key;
    ck_ok(store(&pki->alice, &s, NULL, NULL));
    ck_assert_int_eq(list().last.status, CS_OCSP_GOOD);
    X509_free(cert);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_nonce_checked_when_echoed)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    resp_spec s = good();

    ck_assert(req != NULL && OCSP_request_add1_nonce(req, NULL, -1));
    s.nonce_of = req;
    s.wrong_nonce = 1;
    expect_refused(&s, req, "nonce");
    s.wrong_nonce = 0;
    ck_ok(store(&pki->alice, &s, req, NULL)); /* echoed */
    s.nonce_of = NULL;
    s.this_update = -30;
    ck_ok(store(&pki->alice, &s, req, NULL)); /* not echoed: optional */
    OCSP_REQUEST_free(req);
}
END_TEST

START_TEST(test_not_current_or_older_refused)
{
    resp_spec s = good();

    s.this_update = -3 * DAY;
    s.next_update = -DAY;
    expect_refused(&s, NULL, "not current");
    s.this_update = DAY; /* ahead of the clock */
    s.next_update = 2 * DAY;
    expect_refused(&s, NULL, "not current");
    s = good();
    ck_ok(store(&pki->alice, &s, NULL, NULL));
    s.this_update = -600;
    expect_refused(&s, NULL, "older than the stored one");
}
END_TEST

START_TEST(test_garbage_refused)
{
    unsigned char junk[] = {0x30, 0x03, 0x0a, 0x01, 0x00, 0xff};
    cs_ocsp_result res;
    int64_t g = generation();

    begin();
    ck_assert_int_eq(cs_ocsp_store(writer, pki->alice.cert, pki->ca_a.cert, NULL, junk,
                                   sizeof(junk), NULL, now, &res),
                     CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "not an OCSP response"));
    /* An unpinned issuer is refused before anything is read. */
    ck_assert_int_eq(cs_ocsp_store(writer, pki->carol.cert, pki->ca_b.cert, NULL, junk,
                                   sizeof(junk), NULL, now, &res),
                     CS_NOTFOUND);
    cs_db_rollback(writer);
    ck_assert_int_eq(generation(), g);
    ck_assert_int_eq(list().n, 0);
}
END_TEST

START_TEST(test_failure_keeps_the_last_answer)
{
    resp_spec s = good();
    int64_t g;
    listing l;

    ck_ok(store(&pki->alice, &s, NULL, NULL));
    g = generation();
    begin();
    ck_ok(cs_ocsp_note_failure(writer, pki->alice.cert, pki->ca_a.cert, "http://127.0.0.1/", now,
                               "connection refused"));
    commit();
    l = list();
    ck_assert_int_eq(l.n, 1);
    ck_assert_int_eq(l.last.status, CS_OCSP_GOOD);
    ck_assert_str_eq(l.result, "failed: connection refused");
    ck_assert_int_eq(generation(), g);
    ck_assert(decide_at(&pki->alice, now).accept);
}
END_TEST

/* ---- which certificates ------------------------------------------------------------- */

static int count_target(const cs_ocsp_target *t, void *arg)
{
    ck_assert_str_eq(t->pin_fp, pin_a);
    ++*(int *)arg;
    return 0;
}

START_TEST(test_targets_are_mapped_certificates_of_pins)
{
    cs_mapping_spec spec = {0};
    int n = 0;

    /* carol's issuer is not pinned: not a target. */
    ck_ok(cs_mapping_spec_from_cert(&spec, pki->carol.cert, CS_KIND_CERT));
    spec.account = "carol";
    spec.not_before = spec.not_after = CS_TIME_NONE;
    begin();
    ck_ok(cs_mapping_add(writer, &spec, 1, NULL));
    commit();
    ck_ok(cs_ocsp_targets(writer, NULL, count_target, &n));
    ck_assert_int_eq(n, 1);
}
END_TEST

static Suite *ocsp_suite(void)
{
    Suite *s = suite_create("ocsp");
    TCase *decision = tcase_create("decision");
    TCase *refused = tcase_create("refused");

    tcase_add_checked_fixture(decision, setup, teardown);
    tcase_add_test(decision, test_good_answer_stored_and_accepted);
    tcase_add_test(decision, test_stale_good_answer_is_due);
    tcase_add_test(decision, test_revoked_answer_rejects_and_bumps);
    tcase_add_test(decision, test_unchanged_refresh_does_not_bump);
    tcase_add_test(decision, test_stale_answer_follows_the_policy);
    tcase_add_test(decision, test_unknown_status_is_no_evidence);
    tcase_add_test(decision, test_failure_keeps_the_last_answer);
    tcase_add_test(decision, test_targets_are_mapped_certificates_of_pins);
    suite_add_tcase(s, decision);
    tcase_add_checked_fixture(refused, setup, teardown);
    tcase_add_test(refused, test_signed_by_another_ca_refused);
    tcase_add_test(refused, test_delegated_responder_accepted);
    tcase_add_test(refused, test_nonce_checked_when_echoed);
    tcase_add_test(refused, test_not_current_or_older_refused);
    tcase_add_test(refused, test_garbage_refused);
    suite_add_tcase(s, refused);
    return s;
}

int main(void)
{
    return us_run_suite(ocsp_suite(), "check_ocsp", &pki, &tmp_root);
}
