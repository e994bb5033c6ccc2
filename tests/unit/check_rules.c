/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Many-to-one rules: every operator and field, DN injection and
 * normalisation, the order of evaluation, strong/weak, backdating, the v1 ->
 * v2 migration, and the CLI (rule, check, map --not-issued-before,
 * expiring). Leaves with the subjects and extensions each case needs are
 * made here, signed by the shared test PKI's "Partner CA A".
 */
#include <check.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/x509v3.h>

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

/* ---- leaves made to order -------------------------------------------------- */

typedef struct {
    const char *subject[8]; /* "CN=x", "+O=y" adds to the previous RDN */
    const char *san, *eku, *policy;
    long not_before_secs; /* relative to now */
    const testpki_cred *issuer;
} leaf_spec;

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    if (value != NULL)
        ck_assert_msg(testpki_add_ext(cert, issuer, nid, value), "extension %d '%s'", nid, value);
}

/* certificatePolicies needs a config database in X509V3_EXT_conf: build it directly. */
static void add_policy(X509 *cert, const char *oid)
{
    CERTIFICATEPOLICIES *pols;
    POLICYINFO *info;

    if (oid == NULL)
        return;
    pols = sk_POLICYINFO_new_null();
    info = POLICYINFO_new();
    ck_assert(pols && info);
    ASN1_OBJECT_free(info->policyid);
    info->policyid = OBJ_txt2obj(oid, 1);
    ck_assert_ptr_nonnull(info->policyid);
    ck_assert(sk_POLICYINFO_push(pols, info));
    ck_assert(X509_add1_ext_i2d(cert, NID_certificate_policies, pols, 0, 0) == 1);
    CERTIFICATEPOLICIES_free(pols);
}

static X509 *make_leaf(const leaf_spec *spec)
{
    const testpki_cred *ca = spec->issuer ? spec->issuer : &pki->ca_a;
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    static long next_serial = 5000;

    ck_assert(cert && name && serial);
    ck_assert(X509_set_version(cert, 2));
    ck_assert(ASN1_INTEGER_set(serial, next_serial++));
    ck_assert(X509_set_serialNumber(cert, serial));
    ASN1_INTEGER_free(serial);
    for (int i = 0; i < 8 && spec->subject[i] != NULL; i++) {
        const char *entry = spec->subject[i];
        int multi = entry[0] == '+';
        const char *eq = strchr(entry + multi, '=');
        char field[64];

        ck_assert_ptr_nonnull(eq);
        snprintf(field, sizeof(field), "%.*s", (int)(eq - entry - multi), entry + multi);
        ck_assert_int_eq(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                                    (const unsigned char *)eq + 1, -1, -1,
                                                    multi ? -1 : 0),
                         1);
    }
    ck_assert(X509_set_subject_name(cert, name));
    X509_NAME_free(name);
    ck_assert(X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)));
    ck_assert(X509_time_adj_ex(X509_getm_notBefore(cert), 0, spec->not_before_secs - 60, NULL));
    ck_assert(X509_time_adj_ex(X509_getm_notAfter(cert), 30, 0, NULL));
    ck_assert(X509_set_pubkey(cert, pki->alice.key));
    add_ext(cert, ca->cert, NID_subject_alt_name, spec->san);
    add_ext(cert, ca->cert, NID_ext_key_usage, spec->eku ? spec->eku : "clientAuth");
    add_policy(cert, spec->policy);
    ck_assert(X509_sign(cert, ca->key, EVP_sha256()) > 0);
    return cert;
}

/* A leaf with one raw-typed subject value (BMPString, invalid UTF-8...). */
static X509 *make_raw_leaf(int nid, int type, const unsigned char *bytes, int len)
{
    leaf_spec spec = {.subject = {"O=Acme"}};
    X509 *cert = make_leaf(&spec);
    X509_NAME *name = X509_NAME_dup(X509_get_subject_name(cert));

    ck_assert(X509_NAME_add_entry_by_NID(name, nid, type, bytes, len, -1, 0));
    ck_assert(X509_set_subject_name(cert, name));
    X509_NAME_free(name);
    ck_assert(X509_sign(cert, pki->ca_a.key, EVP_sha256()) > 0);
    return cert;
}

/* ---- helpers --------------------------------------------------------------- */

static void begin(void)
{
    ck_ok(cs_db_begin(writer, "check_rules"));
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

static char ca_a_fp[CS_FP_HEX_LEN + 1];

static cs_rule_spec allow_rule(const char *account)
{
    cs_rule_spec r = {.action = CS_RULE_ALLOW,
                      .account = account,
                      .pin_fp = ca_a_fp,
                      .priority = CS_RULE_PRIORITY_DEFAULT};
    fp_of(&pki->ca_a, ca_a_fp);
    return r;
}

static cs_rule_spec deny_rule(void)
{
    cs_rule_spec r = allow_rule(NULL);
    r.action = CS_RULE_DENY;
    return r;
}

static int64_t add_rule(const cs_rule_spec *r)
{
    int64_t id = 0;

    begin();
    ck_ok(cs_rule_add(writer, r, 1, &id));
    commit();
    ck_assert_int_gt(id, 0);
    return id;
}

static int64_t map_cert(X509 *leaf, const char *account)
{
    cs_mapping_spec spec = {0};
    int64_t id = 0;

    ck_ok(cs_mapping_spec_from_cert(&spec, leaf, CS_KIND_CERT));
    spec.account = account;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    begin();
    ck_ok(cs_mapping_add(writer, &spec, 1, &id));
    commit();
    return id;
}

static cs_decision decide_cert_opts(X509 *leaf, const cs_policy_opts *opts)
{
    STACK_OF(X509) *chain = testpki_chain(leaf, pki->ca_a.cert, pki->root.cert, (X509 *)NULL);
    cs_decision d;
    int accepted;

    ck_assert_ptr_nonnull(chain);
    accepted = cs_decide_ex(reader, chain, now, opts, &d);
    sk_X509_pop_free(chain, X509_free);
    ck_assert_int_eq(accepted, d.accept);
    if (!d.accept)
        ck_assert_str_eq(d.account, "");
    return d;
}

static cs_decision decide_cert(X509 *leaf)
{
    return decide_cert_opts(leaf, NULL);
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
        ck_assert_str_eq(d_.account, (acct));                                                      \
    } while (0)

/* Match one leaf against one condition set. */
static int matches(const cs_rule_spec *r, X509 *leaf)
{
    char msg[256];

    ck_assert_msg(cs_rule_check(r, msg, sizeof(msg)) == CS_OK, "rule refused: %s", msg);
    return cs_rule_matches(r, leaf);
}

static int subject_matches(const char *cond, const leaf_spec *ls)
{
    cs_rule_spec r = allow_rule("x");
    X509 *leaf = make_leaf(ls);
    int m;

    r.subject = cond;
    m = matches(&r, leaf);
    X509_free(leaf);
    return m;
}

static void assert_refused(const cs_rule_spec *r, const char *why_part)
{
    char msg[256] = "";

    ck_assert_int_eq(cs_rule_check(r, msg, sizeof(msg)), CS_INVALID);
    ck_assert_msg(strstr(msg, why_part) != NULL, "message '%s' lacks '%s'", msg, why_part);
}

/* ---- syntax ---------------------------------------------------------------- */

START_TEST(test_condition_syntax_refused)
{
    cs_rule_spec r = allow_rule("acme");

    r.subject = "XX=1";
    assert_refused(&r, "unknown attribute");
    r.subject = "CN=a\\q";
    assert_refused(&r, "bad escape");
    r.subject = "CN=a;b";
    assert_refused(&r, "must be escaped");
    r.subject = "CN=";
    assert_refused(&r, "empty value");
    r.subject = "CN=\\ff";
    assert_refused(&r, "not valid UTF-8");
    r.subject = "CN=\\00";
    assert_refused(&r, "NUL");
    r.subject = "CN";
    assert_refused(&r, "ATTR=VALUE");
    r.subject = NULL;
    r.san = "FTP:x";
    assert_refused(&r, "TYPE:PATTERN");
    r.san = "IP:300.1.1.1";
    assert_refused(&r, "not an IPv4");
    r.san = NULL;
    r.eku = "noSuchUsage";
    assert_refused(&r, "OID");
    r.eku = NULL;
    r.policy = "1..2";
    assert_refused(&r, "OID");
    r.policy = NULL;
    r.pin_fp = NULL;
    assert_refused(&r, "issuer pin");
}
END_TEST

START_TEST(test_allow_needs_account_deny_has_none)
{
    cs_rule_spec r = allow_rule(NULL);

    assert_refused(&r, "needs a valid account");
    r = deny_rule();
    r.account = "acme";
    assert_refused(&r, "deny rule has no account");
}
END_TEST

START_TEST(test_rule_needs_existing_pin)
{
    cs_rule_spec r = allow_rule("acme");

    begin();
    ck_assert_int_eq(cs_rule_add(writer, &r, 1, NULL), CS_NOTFOUND);
    cs_db_rollback(writer);
}
END_TEST

/* ---- subject and issuer ------------------------------------------------------ */

START_TEST(test_subject_glob_and_exact)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};

    ck_assert_int_eq(subject_matches("O=Acme,CN=gw-*", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=gw-0?", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=gw-?", &ls), 0);
    ck_assert_int_eq(subject_matches("O=Acme,CN=web-*", &ls), 0);
    ck_assert_int_eq(subject_matches("O=Acm", &ls), 0);
    ck_assert_int_eq(subject_matches("OU=*", &ls), 0); /* absent attribute never holds */
}
END_TEST

START_TEST(test_case_insensitive_unless_asked)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=GW-01"}};
    cs_rule_spec r = allow_rule("x");
    X509 *leaf = make_leaf(&ls);

    r.subject = "o=ACME,cn=gw-01";
    ck_assert_int_eq(matches(&r, leaf), 1);
    r.case_sensitive = 1;
    ck_assert_int_eq(matches(&r, leaf), 0);
    r.subject = "O=Acme,CN=GW-01";
    ck_assert_int_eq(matches(&r, leaf), 1);
    X509_free(leaf);
}
END_TEST

START_TEST(test_cn_with_comma_cannot_inject_o)
{
    leaf_spec ls = {.subject = {"O=Good", "CN=gw,O=Evil"}};

    ck_assert_int_eq(subject_matches("O=Evil", &ls), 0);
    ck_assert_int_eq(subject_matches("O=Good,CN=gw", &ls), 0);
    ck_assert_int_eq(subject_matches("CN=gw\\,O=Evil", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=gw\\2CO=Evil", &ls), 1);
}
END_TEST

START_TEST(test_escapes_and_literal_globs)
{
    leaf_spec ls = {.subject = {"CN=a*b+c\"d\\e"}};
    leaf_spec other = {.subject = {"CN=aXb+c\"d\\e"}};

    ck_assert_int_eq(subject_matches("CN=a\\*b\\+c\\\"d\\\\e", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=a\\*b\\+c\\\"d\\\\e", &other), 0);
    ck_assert_int_eq(subject_matches("CN=a*b\\+c\\\"d\\\\e", &other), 1);
}
END_TEST

START_TEST(test_multi_valued_rdn)
{
    leaf_spec ls = {.subject = {"CN=gw", "+O=Acme", "C=DE"}};
    X509 *leaf = make_leaf(&ls);

    /* The test builds what it claims: O shares CN's RDN. */
    ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(leaf)), 3);
    ck_assert_int_eq(X509_NAME_ENTRY_set(X509_NAME_get_entry(X509_get_subject_name(leaf), 1)),
                     X509_NAME_ENTRY_set(X509_NAME_get_entry(X509_get_subject_name(leaf), 0)));
    X509_free(leaf);
    ck_assert_int_eq(subject_matches("O=Acme,CN=gw,C=de", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=gw+O=Acme", &ls), 1);
}
END_TEST

/* Allow: every value of a named attribute must be matched; deny: any value. */
START_TEST(test_repeated_attribute_allow_all_deny_any)
{
    leaf_spec ls = {.subject = {"OU=Sales", "OU=Gateways", "CN=x"}};
    leaf_spec two_cns = {.subject = {"O=Acme", "CN=gw-01", "CN=admin"}};
    cs_rule_spec deny = deny_rule();
    X509 *leaf = make_leaf(&two_cns);

    ck_assert_int_eq(subject_matches("OU=Gateways", &ls), 0);
    ck_assert_int_eq(subject_matches("OU=Sales,OU=Gate*", &ls), 1);
    ck_assert_int_eq(subject_matches("OU=*", &ls), 1);
    ck_assert_int_eq(subject_matches("OU=Marketing", &ls), 0);
    ck_assert_int_eq(subject_matches("CN=gw-*", &two_cns), 0);
    ck_assert_int_eq(subject_matches("CN=gw-*,CN=admin", &two_cns), 1);
    ck_assert_int_eq(subject_matches("O=Acme", &two_cns), 1); /* CN is not named */
    deny.subject = "CN=admin";
    ck_assert_int_eq(matches(&deny, leaf), 1);
    deny.subject = "CN=gw-*";
    ck_assert_int_eq(matches(&deny, leaf), 1);
    deny.subject = "CN=root";
    ck_assert_int_eq(matches(&deny, leaf), 0);
    X509_free(leaf);
}
END_TEST

START_TEST(test_every_attribute)
{
    leaf_spec ls = {.subject = {"DC=example", "C=DE", "ST=Bayern", "L=M\xc3\xbcnchen", "O=Acme",
                                "OU=Ops", "CN=gw", "emailAddress=ops@acme.example"}};
    leaf_spec ls2 = {.subject = {"serialNumber=12345", "UID=u42", "CN=x"}};

    ck_assert_int_eq(subject_matches("DC=EXAMPLE,C=de,ST=bayern,L=m\xc3\xbcnchen,O=acme,OU=ops,"
                                     "CN=GW,emailAddress=*@acme.example",
                                     &ls),
                     1);
    ck_assert_int_eq(subject_matches("E=ops@*,S=Bayern", &ls), 1);
    ck_assert_int_eq(subject_matches("serialNumber=123*,UID=u42", &ls2), 1);
    ck_assert_int_eq(subject_matches("UID=u43", &ls2), 0);
}
END_TEST

START_TEST(test_non_ascii_byte_compare_and_question_mark)
{
    leaf_spec ls = {.subject = {"CN=Jos\xc3\xa9"}};

    ck_assert_int_eq(subject_matches("CN=jos\xc3\xa9", &ls), 1);
    ck_assert_int_eq(subject_matches("CN=Jos?", &ls), 1); /* one character, two bytes */
    ck_assert_int_eq(subject_matches("CN=Jos??", &ls), 0);
    ck_assert_int_eq(subject_matches("CN=JOS\xc3\x89", &ls), 1); /* Unicode case folding */
    ck_assert_int_eq(subject_matches("CN=Jose", &ls), 0);        /* accents still count */
}
END_TEST

START_TEST(test_bmpstring_converted)
{
    static const unsigned char bmp[] = {0, 'G', 0, 'w', 0, 0xe9};
    X509 *leaf = make_raw_leaf(NID_commonName, V_ASN1_BMPSTRING, bmp, sizeof(bmp));
    cs_rule_spec r = allow_rule("x");

    r.subject = "CN=gw\xc3\xa9";
    ck_assert_int_eq(matches(&r, leaf), 1);
    X509_free(leaf);
}
END_TEST

/*
 * OpenSSL itself refuses to parse a name whose UTF8String is malformed, so
 * what reaches the matcher is an IA5String or PrintableString holding bytes
 * that are not ASCII, or a NUL: neither ever matches, not even '*'.
 */
START_TEST(test_invalid_utf8_never_matches)
{
    static const unsigned char high[] = {'g', 'w', 0xff};
    static const unsigned char nul[] = {'g', 'w', 0, 'x'};
    X509 *leaf = make_raw_leaf(NID_commonName, V_ASN1_IA5STRING, high, sizeof(high));
    X509 *leaf2 = make_raw_leaf(NID_organizationalUnitName, V_ASN1_UTF8STRING, nul, sizeof(nul));
    cs_rule_spec r = allow_rule("x");

    r.subject = "CN=*";
    ck_assert_int_eq(matches(&r, leaf), 0);
    r.subject = "OU=*";
    ck_assert_int_eq(matches(&r, leaf2), 0);
    r.subject = "O=Acme"; /* the valid values still match */
    ck_assert_int_eq(matches(&r, leaf), 1);
    X509_free(leaf);
    X509_free(leaf2);
}
END_TEST

/* ---- Unicode normalisation and case folding -------------------------------- */

#define A_UML "\xc3\x84"         /* U+00C4, composed */
#define A_UML_LOWER "\xc3\xa4"   /* U+00E4 */
#define A_UML_DECOMP "A\xcc\x88" /* 'A' + U+0308 COMBINING DIAERESIS */
#define A_UML_DECOMP_LOWER "a\xcc\x88"
#define SHARP_S "\xc3\x9f"      /* U+00DF */
#define LOCK "\xf0\x9f\x94\x92" /* U+1F512, four bytes */

static int subject_matches_cs(const char *cond, const char *cn, int case_sensitive)
{
    leaf_spec ls = {.subject = {NULL}};
    char entry[128];
    cs_rule_spec r = allow_rule("x");
    X509 *leaf;
    int m;

    snprintf(entry, sizeof(entry), "CN=%s", cn);
    ls.subject[0] = entry;
    leaf = make_leaf(&ls);
    r.subject = cond;
    r.case_sensitive = case_sensitive;
    m = matches(&r, leaf);
    X509_free(leaf);
    return m;
}

START_TEST(test_composed_and_decomposed_are_equal)
{
    for (int cs = 0; cs <= 1; cs++) {
        ck_assert_int_eq(subject_matches_cs("CN=" A_UML_DECOMP "rger", A_UML "rger", 0), 1);
        ck_assert_int_eq(subject_matches_cs("CN=" A_UML "rger", A_UML_DECOMP "rger", 0), 1);
        ck_assert_int_eq(subject_matches_cs("CN=Argers", A_UML_DECOMP "rger", cs), 0);
        ck_assert_int_eq(subject_matches_cs("CN=" A_UML "rger", "Arger", cs), 0);
    }
}
END_TEST

#define KELVIN "\xe2\x84\xaa"      /* U+212A, canonically equivalent to 'K' */
#define LONG_S "\xc5\xbf"          /* U+017F, folds to 's' */
#define FF_LIGATURE "\xef\xac\x80" /* U+FB00, folds to "ff" */

/* Case-sensitive means the code points as they are: no normalisation at all. */
START_TEST(test_case_sensitive_compares_code_points_exactly)
{
    ck_assert_int_eq(subject_matches_cs("CN=" KELVIN "elvin", "Kelvin", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=Kelvin", KELVIN "elvin", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=staff", LONG_S "ta" FF_LIGATURE, 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=" LONG_S "ta" FF_LIGATURE, "staff", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML "rger", A_UML_DECOMP "rger", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_DECOMP "rger", A_UML "rger", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_DECOMP "rger", A_UML_DECOMP "rger", 1), 1);
    ck_assert_int_eq(subject_matches_cs("CN=" KELVIN "*", KELVIN "elvin", 1), 1);
    /* caselessly they are the same name, as documented */
    ck_assert_int_eq(subject_matches_cs("CN=kelvin", KELVIN "elvin", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=staff", LONG_S "ta" FF_LIGATURE, 0), 1);
}
END_TEST

START_TEST(test_case_insensitive_folds_unicode)
{
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_LOWER "rger", A_UML "RGER", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML "rger", A_UML_DECOMP_LOWER "rger", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_LOWER "rger", A_UML_DECOMP "rger", 0), 1);
    /* full folding: sharp s is "ss", so a rule cannot be dodged either way */
    ck_assert_int_eq(subject_matches_cs("CN=Hauptstra" SHARP_S "e", "HAUPTSTRASSE", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=HAUPTSTRASSE", "hauptstra" SHARP_S "e", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=HAUPTSTRASE", "hauptstra" SHARP_S "e", 0), 0);
}
END_TEST

START_TEST(test_case_sensitive_does_not_fold)
{
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_LOWER "rger", A_UML "rger", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=" A_UML_DECOMP_LOWER "rger", A_UML "rger", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=Hauptstra" SHARP_S "e", "HAUPTSTRASSE", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=Hauptstra" SHARP_S "e", "Hauptstra" SHARP_S "e", 1), 1);
}
END_TEST

START_TEST(test_question_mark_is_one_code_point)
{
    for (int cs = 0; cs <= 1; cs++) {
        ck_assert_int_eq(subject_matches_cs("CN=?rger", A_UML "rger", cs), 1);
        ck_assert_int_eq(subject_matches_cs("CN=??rger", A_UML "rger", cs), 0);
        /* decomposed in the certificate: one code point after NFC, two exactly */
        ck_assert_int_eq(subject_matches_cs("CN=?rger", A_UML_DECOMP "rger", cs), !cs);
        ck_assert_int_eq(subject_matches_cs("CN=lock-?", "lock-" LOCK, cs), 1);
        ck_assert_int_eq(subject_matches_cs("CN=lock-??", "lock-" LOCK, cs), 0);
        ck_assert_int_eq(subject_matches_cs("CN=lock?", "lock-" LOCK, cs), 0);
    }
    /* case-sensitive: sharp s is one code point; folded it is two ("ss") */
    ck_assert_int_eq(subject_matches_cs("CN=stra?e", "stra" SHARP_S "e", 1), 1);
    ck_assert_int_eq(subject_matches_cs("CN=stra??e", "stra" SHARP_S "e", 0), 1);
}
END_TEST

START_TEST(test_glob_over_non_ascii)
{
    ck_assert_int_eq(
        subject_matches_cs("CN=*" A_UML "*GmbH", "M" A_UML_DECOMP_LOWER "ller GmbH", 0), 1);
    ck_assert_int_eq(
        subject_matches_cs("CN=*" A_UML "*GmbH", "M" A_UML_DECOMP_LOWER "ller GmbH", 1), 0);
    ck_assert_int_eq(subject_matches_cs("CN=*" LOCK "*", "vault " LOCK " 7", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=*" LOCK "*", "vault 7", 0), 0);
    ck_assert_int_eq(subject_matches_cs("CN=M*GMBH", "M" A_UML "ller GmbH", 0), 1);
    ck_assert_int_eq(subject_matches_cs("CN=\\*" A_UML, "*" A_UML_LOWER, 0), 1); /* literal '*' */
    ck_assert_int_eq(subject_matches_cs("CN=\\*" A_UML, "x" A_UML_LOWER, 0), 0);
}
END_TEST

/*
 * Malformed UTF-8 in the certificate never matches, whatever the rule says.
 * OpenSSL will not encode such a name, so the leaf's CN is overwritten in
 * memory after signing: the matcher reads the parsed value as it is.
 */
static X509 *leaf_with_raw_cn_len(int type, const unsigned char *bytes, int len)
{
    leaf_spec ls = {.subject = {"CN=placeholder"}};
    X509 *leaf = make_leaf(&ls);
    X509_NAME *name = X509_get_subject_name(leaf);
    int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    ASN1_STRING *value;

    ck_assert_int_ge(at, 0);
    value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    ck_assert(ASN1_STRING_set(value, bytes, len));
    value->type = type;
    return leaf;
}

static X509 *leaf_with_raw_cn(int type, const unsigned char *bytes)
{
    return leaf_with_raw_cn_len(type, bytes, (int)strlen((const char *)bytes));
}

START_TEST(test_invalid_utf8_never_matches_any_rule)
{
    static const unsigned char *const bad[] = {
        (const unsigned char *)"A\xcc",            /* truncated combining mark */
        (const unsigned char *)"\xc0\x80",         /* overlong NUL */
        (const unsigned char *)"x\xed\xa0\x80",    /* surrogate */
        (const unsigned char *)"\xf4\x90\x80\x80", /* above U+10FFFF */
        (const unsigned char *)"A\xcc\x88\xff",    /* valid start, stray byte */
    };
    static const char *const conds[] = {"CN=*", "CN=?*", "CN=A*", "CN=" A_UML "*"};

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        X509 *leaf = leaf_with_raw_cn(V_ASN1_UTF8STRING, bad[b]);
        cs_rule_spec r = allow_rule("x");

        for (int cs = 0; cs <= 1; cs++) {
            r.case_sensitive = cs;
            for (size_t c = 0; c < sizeof(conds) / sizeof(conds[0]); c++) {
                r.subject = conds[c];
                ck_assert_msg(matches(&r, leaf) == 0, "bad value %zu matched %s", b, conds[c]);
            }
        }
        X509_free(leaf);
    }
    /* the same fixture with valid UTF-8 does match, so the test can fail */
    {
        X509 *leaf = leaf_with_raw_cn(V_ASN1_UTF8STRING, (const unsigned char *)A_UML_DECOMP);
        cs_rule_spec r = allow_rule("x");

        r.subject = "CN=" A_UML "*";
        ck_assert_int_eq(matches(&r, leaf), 1);
        X509_free(leaf);
    }
}
END_TEST

START_TEST(test_issuer_condition)
{
    leaf_spec ls = {.subject = {"CN=x"}};
    cs_rule_spec r = allow_rule("x");
    X509 *leaf = make_leaf(&ls);
    X509_NAME *issuer = X509_get_subject_name(pki->ca_a.cert);
    char cn[128], cond[160];

    ck_assert_int_gt(X509_NAME_get_text_by_NID(issuer, NID_commonName, cn, sizeof(cn)), 0);
    snprintf(cond, sizeof(cond), "CN=%s", cn);
    r.issuer = cond;
    ck_assert_int_eq(matches(&r, leaf), 1);
    r.issuer = "CN=Someone Else";
    ck_assert_int_eq(matches(&r, leaf), 0);
    X509_free(leaf);
}
END_TEST

/* ---- SAN, EKU, policy --------------------------------------------------------- */

static int san_matches(const char *cond, const char *san)
{
    leaf_spec ls = {.subject = {"CN=x"}, .san = san};
    cs_rule_spec r = allow_rule("x");
    X509 *leaf = make_leaf(&ls);
    int m;

    r.san = cond;
    m = matches(&r, leaf);
    X509_free(leaf);
    return m;
}

START_TEST(test_san_types)
{
    const char *san = "DNS:gw1.acme.example,email:ops@acme.example,URI:https://acme.example/gw,"
                      "IP:192.0.2.7,IP:2001:db8::7,"
                      "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:gw1@corp.acme.example";

    ck_assert_int_eq(san_matches("DNS:*.acme.example", san), 1);
    ck_assert_int_eq(san_matches("DNS:*.evil.example", san), 0);
    ck_assert_int_eq(san_matches("email:*@ACME.example", san), 1);
    ck_assert_int_eq(san_matches("URI:https://acme.example/*", san), 1);
    ck_assert_int_eq(san_matches("IP:192.0.2.7", san), 1);
    ck_assert_int_eq(san_matches("IP:192.0.2.8", san), 0);
    ck_assert_int_eq(san_matches("IP:2001:db8:0::7", san), 1);
    ck_assert_int_eq(san_matches("UPN:gw1@corp.acme.example", san), 1);
    ck_assert_int_eq(san_matches("UPN:gw2@*", san), 0);
    ck_assert_int_eq(san_matches("DNS:gw1.acme.example\nIP:192.0.2.7", san), 1);
    ck_assert_int_eq(san_matches("DNS:gw1.acme.example\nIP:192.0.2.9", san), 0);
    /* A type's pattern only looks at entries of that type. */
    ck_assert_int_eq(san_matches("DNS:ops@acme.example", san), 0);
    ck_assert_int_eq(san_matches("DNS:*", "email:ops@acme.example"), 0);
}
END_TEST

START_TEST(test_san_condition_without_san_extension)
{
    ck_assert_int_eq(san_matches("DNS:*", NULL), 0);
}
END_TEST

START_TEST(test_eku_and_policy)
{
    leaf_spec ls = {.subject = {"CN=x"},
                    .eku = "clientAuth,emailProtection",
                    .policy = "1.3.6.1.4.1.99999.1.2"};
    leaf_spec server_only = {.subject = {"CN=x"}, .eku = "serverAuth"};
    cs_rule_spec r = allow_rule("x");
    X509 *leaf = make_leaf(&ls), *srv = make_leaf(&server_only);

    r.eku = "clientAuth";
    ck_assert_int_eq(matches(&r, leaf), 1);
    ck_assert_int_eq(matches(&r, srv), 0);
    r.eku = "1.3.6.1.5.5.7.3.2\nemailProtection";
    ck_assert_int_eq(matches(&r, leaf), 1);
    r.eku = "codeSigning";
    ck_assert_int_eq(matches(&r, leaf), 0);
    r.eku = NULL;
    r.policy = "1.3.6.1.4.1.99999.1.2";
    ck_assert_int_eq(matches(&r, leaf), 1);
    r.policy = "1.3.6.1.4.1.99999.1";
    ck_assert_int_eq(matches(&r, leaf), 0);
    ck_assert_int_eq(matches(&r, srv), 0);
    X509_free(leaf);
    X509_free(srv);
}
END_TEST

/* ---- unreadable values and canonical forms ------------------------------------- */

/* 1 when a deny rule with this condition matches, for each of deny, allow. */
static void ck_deny_allow(X509 *leaf, cs_rule_spec cond, int deny_expected, int allow_expected)
{
    cs_rule_spec deny = deny_rule(), allow = allow_rule("x");

    deny.subject = allow.subject = cond.subject;
    deny.san = allow.san = cond.san;
    deny.eku = allow.eku = cond.eku;
    deny.policy = allow.policy = cond.policy;
    deny.case_sensitive = allow.case_sensitive = cond.case_sensitive;
    ck_assert_int_eq(matches(&deny, leaf), deny_expected);
    ck_assert_int_eq(matches(&allow, leaf), allow_expected);
}

START_TEST(test_unreadable_name_value_denied_never_allowed)
{
    static const unsigned char nul[] = {'a', 0, 't', 'e', 's', 't'};
    static const unsigned char t61_high[] = {'c', 'a', 'f', 0xe9};
    static const unsigned char t61_ascii[] = {'t', 'e', 's', 't'};
    static const unsigned char odd_bmp[] = {0, 't', 0};
    static const unsigned char bmp_nul[] = {0, 't', 0, 0};
    X509 *with_nul = make_raw_leaf(NID_commonName, V_ASN1_UTF8STRING, nul, sizeof(nul));
    X509 *t61 = make_raw_leaf(NID_commonName, V_ASN1_T61STRING, t61_high, sizeof(t61_high));
    X509 *t61_ok = make_raw_leaf(NID_commonName, V_ASN1_T61STRING, t61_ascii, sizeof(t61_ascii));
    X509 *bmp = leaf_with_raw_cn_len(V_ASN1_BMPSTRING, odd_bmp, sizeof(odd_bmp));
    X509 *bmp0 = leaf_with_raw_cn_len(V_ASN1_BMPSTRING, bmp_nul, sizeof(bmp_nul));
    cs_rule_spec c = {.subject = "CN=*test*"};

    ck_deny_allow(with_nul, c, 1, 0);
    ck_deny_allow(t61, c, 1, 0);
    ck_deny_allow(bmp, c, 1, 0);
    ck_deny_allow(bmp0, c, 1, 0); /* converted, but holds a NUL */
    ck_deny_allow(t61_ok, c, 1, 1);
    c.subject = "CN=caf*";
    ck_deny_allow(t61, c, 1, 0); /* T61String is not read as Latin-1 */
    c.subject = "O=Acme";        /* a rule that does not look at CN is not affected */
    ck_deny_allow(with_nul, c, 1, 1);
    c.subject = "O=Other";
    ck_deny_allow(with_nul, c, 0, 0);
    X509_free(with_nul);
    X509_free(t61);
    X509_free(t61_ok);
    X509_free(bmp);
    X509_free(bmp0);
}
END_TEST

START_TEST(test_upn_from_ia5string_and_utf8string)
{
    leaf_spec ia5 = {.subject = {"CN=x"},
                     .san = "otherName:1.3.6.1.4.1.311.20.2.3;IA5:boss@admin.corp"};
    leaf_spec bmp = {.subject = {"CN=x"},
                     .san = "otherName:1.3.6.1.4.1.311.20.2.3;BMP:boss@admin.corp"};
    leaf_spec utf8 = {.subject = {"CN=x"},
                      .san = "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:boss@admin.corp"};
    X509 *l_ia5 = make_leaf(&ia5), *l_bmp = make_leaf(&bmp), *l_utf8 = make_leaf(&utf8);
    cs_rule_spec c = {.san = "UPN:*@admin.corp"};

    ck_deny_allow(l_utf8, c, 1, 1);
    ck_deny_allow(l_ia5, c, 1, 1);
    ck_deny_allow(l_bmp, c, 1, 0); /* a UPN of another string type cannot be read */
    c.san = "UPN:*@other.corp";
    ck_deny_allow(l_ia5, c, 0, 0);
    X509_free(l_ia5);
    X509_free(l_bmp);
    X509_free(l_utf8);
}
END_TEST

START_TEST(test_dns_and_ip_canonical)
{
    leaf_spec dot = {.subject = {"CN=x"}, .san = "DNS:Host.TEST."};
    leaf_spec mapped = {.subject = {"CN=x"}, .san = "IP:::ffff:10.9.9.9"};
    leaf_spec v4 = {.subject = {"CN=x"}, .san = "IP:10.9.9.9"};
    X509 *l_dot = make_leaf(&dot), *l_mapped = make_leaf(&mapped), *l_v4 = make_leaf(&v4);
    cs_rule_spec c = {.san = "DNS:*.test"};

    ck_deny_allow(l_dot, c, 1, 1);
    c.case_sensitive = 1; /* DNS is caseless whatever the rule says */
    ck_deny_allow(l_dot, c, 1, 1);
    c.case_sensitive = 0;
    c.san = "DNS:host.test.";
    ck_deny_allow(l_dot, c, 1, 1);
    c.san = "DNS:*.test.evil";
    ck_deny_allow(l_dot, c, 0, 0);
    c.san = "IP:10.9.9.9";
    ck_deny_allow(l_mapped, c, 1, 1);
    ck_deny_allow(l_v4, c, 1, 1);
    c.san = "IP:::ffff:10.9.9.9";
    ck_deny_allow(l_v4, c, 1, 1);
    c.san = "IP:10.9.9.8";
    ck_deny_allow(l_mapped, c, 0, 0);
    X509_free(l_dot);
    X509_free(l_mapped);
    X509_free(l_v4);
}
END_TEST

/* The same extension twice (RFC 5280 forbids it): no allow rule may read either. */
static void add_ext_again(X509 *leaf, int nid)
{
    X509_EXTENSION *ext = X509_get_ext(leaf, X509_get_ext_by_NID(leaf, nid, -1));

    ck_assert_ptr_nonnull(ext);
    ext = X509_EXTENSION_dup(ext);
    ck_assert(X509_add_ext(leaf, ext, -1));
    X509_EXTENSION_free(ext);
    ck_assert(X509_sign(leaf, pki->ca_a.key, EVP_sha256()) > 0);
}

START_TEST(test_duplicated_extensions_denied_never_allowed)
{
    leaf_spec ls = {.subject = {"CN=x"},
                    .san = "DNS:gw.test",
                    .eku = "clientAuth",
                    .policy = "1.3.6.1.4.1.99999.1.2"};
    X509 *pol = make_leaf(&ls), *san = make_leaf(&ls), *eku = make_leaf(&ls);
    X509 *plain = make_leaf(&ls);
    cs_rule_spec c = {.policy = "1.3.6.1.4.1.99999.1.2"};

    add_ext_again(pol, NID_certificate_policies);
    add_ext_again(san, NID_subject_alt_name);
    add_ext_again(eku, NID_ext_key_usage);
    ck_deny_allow(plain, c, 1, 1);
    ck_deny_allow(pol, c, 1, 0);
    c.policy = NULL;
    c.san = "DNS:*.test";
    ck_deny_allow(plain, c, 1, 1);
    ck_deny_allow(san, c, 1, 0);
    c.san = NULL;
    c.eku = "clientAuth";
    ck_deny_allow(plain, c, 1, 1);
    ck_deny_allow(eku, c, 1, 0);
    X509_free(pol);
    X509_free(san);
    X509_free(eku);
    X509_free(plain);
}
END_TEST

/*
 * A certificate without extendedKeyUsage, or with anyExtendedKeyUsage, may be
 * used for every purpose, and anyPolicy stands for every policy: each
 * spells the value a deny rule names. An allow rule needs it written out.
 */
START_TEST(test_any_eku_and_any_policy_count_for_deny_only)
{
    leaf_spec any_eku = {.subject = {"CN=x"}, .eku = "anyExtendedKeyUsage"};
    leaf_spec any_policy = {.subject = {"CN=x"}, .policy = "2.5.29.32.0"};
    X509 *l_any = make_leaf(&any_eku), *l_pol = make_leaf(&any_policy);
    X509 *l_none = make_leaf(&any_eku);
    cs_rule_spec c = {.eku = "clientAuth"};
    int at;

    /* make_leaf always adds an EKU: take it off this one */
    at = X509_get_ext_by_NID(l_none, NID_ext_key_usage, -1);
    ck_assert_int_ge(at, 0);
    X509_EXTENSION_free(X509_delete_ext(l_none, at));
    ck_assert(X509_sign(l_none, pki->ca_a.key, EVP_sha256()) > 0);
    ck_deny_allow(l_any, c, 1, 0);
    ck_deny_allow(l_none, c, 1, 0);
    c.eku = "anyExtendedKeyUsage";
    ck_deny_allow(l_any, c, 1, 1);
    c.eku = NULL;
    c.policy = "1.3.6.1.4.1.99999.1.2";
    ck_deny_allow(l_pol, c, 1, 0);
    ck_deny_allow(l_none, c, 0, 0); /* no policy at all asserts none */
    c.policy = "anyPolicy";
    ck_deny_allow(l_pol, c, 1, 1);
    X509_free(l_any);
    X509_free(l_pol);
    X509_free(l_none);
}
END_TEST

/* Through the policy: a broad allow behind a narrow deny, each variant and its plain twin. */
START_TEST(test_variants_denied_like_their_plain_twin)
{
    static const unsigned char nul[] = {'a', 0, 't', 'e', 's', 't'};
    leaf_spec twins[][2] = {
        {{.subject = {"O=Acme", "CN=x"}, .san = "DNS:gw.test"},
         {.subject = {"O=Acme", "CN=x"}, .san = "DNS:gw.test."}},
        {{.subject = {"O=Acme", "CN=x"}, .san = "IP:10.9.9.9"},
         {.subject = {"O=Acme", "CN=x"}, .san = "IP:::ffff:10.9.9.9"}},
        {{.subject = {"O=Acme", "CN=x"},
          .san = "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:a@admin.corp"},
         {.subject = {"O=Acme", "CN=x"},
          .san = "otherName:1.3.6.1.4.1.311.20.2.3;IA5:a@admin.corp"}},
    };
    cs_rule_spec allow = allow_rule("partner"), deny = deny_rule();
    X509 *with_nul = make_raw_leaf(NID_commonName, V_ASN1_UTF8STRING, nul, sizeof(nul));

    pin(&pki->ca_a);
    allow.subject = "O=Acme";
    allow.priority = 200;
    add_rule(&allow);
    deny.subject = "CN=*test*";
    add_rule(&deny);
    deny.subject = NULL;
    deny.san = "DNS:*.test";
    add_rule(&deny);
    deny.san = "IP:10.9.9.9";
    add_rule(&deny);
    deny.san = "UPN:*@admin.corp";
    add_rule(&deny);
    for (size_t i = 0; i < sizeof(twins) / sizeof(twins[0]); i++) {
        for (int v = 0; v < 2; v++) {
            X509 *leaf = make_leaf(&twins[i][v]);

            ck_rejected(decide_cert(leaf), CS_REASON_DENIED_BY_RULE);
            X509_free(leaf);
        }
    }
    ck_rejected(decide_cert(with_nul), CS_REASON_DENIED_BY_RULE);
    X509_free(with_nul);
    {
        leaf_spec ok = {.subject = {"O=Acme", "CN=gw"}, .san = "DNS:gw.example"};
        X509 *leaf = make_leaf(&ok);

        ck_accepted(decide_cert(leaf), "partner");
        X509_free(leaf);
    }
}
END_TEST

/* ---- exact names ---------------------------------------------------------------- */

static int exact_matches(const char *cond, const leaf_spec *ls, int deny)
{
    cs_rule_spec r = deny ? deny_rule() : allow_rule("x");
    X509 *leaf = make_leaf(ls);
    int m;

    r.subject = cond;
    r.subject_exact = 1;
    m = matches(&r, leaf);
    X509_free(leaf);
    return m;
}

START_TEST(test_subject_exact_is_the_whole_name_in_order)
{
    leaf_spec admin = {.subject = {"DC=com", "DC=contoso", "CN=Users", "CN=Administrator"}};
    leaf_spec child = {
        .subject = {"DC=com", "DC=contoso", "DC=child", "CN=Users", "CN=Administrator"}};
    leaf_spec rdn = {.subject = {"CN=gw", "+O=Acme", "C=DE"}};
    const char *dn = "CN=Administrator,CN=Users,DC=contoso,DC=com";

    /* Not exact, an allow rule still needs every DC value named: DC=child is not. */
    ck_assert_int_eq(subject_matches(dn, &child), 0);
    ck_assert_int_eq(subject_matches("CN=Administrator,CN=Users,DC=*", &child), 1);
    for (int deny = 0; deny <= 1; deny++) {
        ck_assert_int_eq(exact_matches(dn, &admin, deny), 1);
        ck_assert_int_eq(exact_matches(dn, &child, deny), 0);
        ck_assert_int_eq(exact_matches("DC=com,DC=contoso,CN=Users,CN=Administrator", &admin, deny),
                         0);
        ck_assert_int_eq(exact_matches("CN=Administrator,CN=Users,DC=contoso", &admin, deny), 0);
        ck_assert_int_eq(exact_matches("C=DE,O=Acme+CN=gw", &rdn, deny), 1);
        ck_assert_int_eq(exact_matches("C=DE,O=Acme,CN=gw", &rdn, deny), 0);
        ck_assert_int_eq(exact_matches("C=DE+O=Acme,CN=gw", &rdn, deny), 0);
    }
    ck_assert_int_eq(exact_matches("cn=administrator,CN=Users,DC=CONTOSO,DC=com", &admin, 0), 1);
}
END_TEST

/* ---- evaluation order ----------------------------------------------------------- */

START_TEST(test_allow_rule_accepts_weak_with_rule_id)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec r = allow_rule("acme");
    int64_t id;
    cs_decision d;

    pin(&pki->ca_a);
    r.subject = "O=Acme,CN=gw-*";
    id = add_rule(&r);
    d = decide_cert(leaf);
    ck_accepted(d, "acme");
    ck_assert_int_eq(d.rule_id, id);
    ck_assert_int_eq(d.mapping_id, 0);
    ck_assert_int_eq(d.weak, 1);
    X509_free(leaf);
}
END_TEST

START_TEST(test_no_matching_rule_no_mapping)
{
    leaf_spec ls = {.subject = {"O=Other", "CN=gw-01"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec r = allow_rule("acme");

    pin(&pki->ca_a);
    r.subject = "O=Acme";
    add_rule(&r);
    ck_rejected(decide_cert(leaf), CS_REASON_NO_MAPPING);
    X509_free(leaf);
}
END_TEST

START_TEST(test_mapping_decides_before_rules)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec deny = deny_rule();
    cs_mapping_ref ref = {0};
    cs_decision d;

    pin(&pki->ca_a);
    deny.subject = "O=Acme";
    add_rule(&deny);
    ref.id = map_cert(leaf, "gw-one");
    d = decide_cert(leaf);
    ck_accepted(d, "gw-one");
    ck_assert_int_eq(d.weak, 0);
    ck_assert_int_eq(d.rule_id, 0);
    /* A disabled one-to-one mapping rejects; rules do not get a say. */
    begin();
    ck_ok(cs_mapping_set_enabled(writer, &ref, 0));
    commit();
    cs_rule_spec allow = allow_rule("acme");
    allow.priority = 1;
    add_rule(&allow);
    ck_rejected(decide_cert(leaf), CS_REASON_MAPPING_DISABLED);
    X509_free(leaf);
}
END_TEST

START_TEST(test_deny_beats_later_allow)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec allow = allow_rule("acme"), deny = deny_rule();
    int64_t deny_id;
    cs_decision d;

    pin(&pki->ca_a);
    allow.subject = "O=Acme";
    allow.priority = 200;
    add_rule(&allow);
    deny.subject = "CN=gw-01";
    deny.priority = 10;
    deny_id = add_rule(&deny);
    d = decide_cert(leaf);
    ck_rejected(d, CS_REASON_DENIED_BY_RULE);
    ck_assert_int_eq(d.rule_id, deny_id);
    /* Disabled, the deny no longer decides. */
    begin();
    ck_ok(cs_rule_set_enabled(writer, deny_id, 0));
    commit();
    ck_accepted(decide_cert(leaf), "acme");
    X509_free(leaf);
}
END_TEST

START_TEST(test_earlier_allow_beats_deny_and_ties_go_by_id)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec first = allow_rule("first"), deny = deny_rule(), second = allow_rule("second");

    pin(&pki->ca_a);
    add_rule(&first);
    add_rule(&deny);
    add_rule(&second);
    ck_accepted(decide_cert(leaf), "first");
    X509_free(leaf);
}
END_TEST

START_TEST(test_rule_of_other_pin_does_not_apply)
{
    leaf_spec ls = {.subject = {"O=Acme"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec r = allow_rule("acme");
    char fp_b[CS_FP_HEX_LEN + 1];

    pin(&pki->ca_a);
    pin(&pki->ca_b);
    fp_of(&pki->ca_b, fp_b);
    r.pin_fp = fp_b;
    add_rule(&r);
    ck_rejected(decide_cert(leaf), CS_REASON_NO_MAPPING);
    X509_free(leaf);
}
END_TEST

START_TEST(test_rule_account_disabled)
{
    leaf_spec ls = {.subject = {"O=Acme"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec r = allow_rule("acme");

    pin(&pki->ca_a);
    add_rule(&r);
    begin();
    ck_ok(cs_account_set_enabled(writer, "acme", 0));
    commit();
    ck_rejected(decide_cert(leaf), CS_REASON_ACCOUNT_DISABLED);
    X509_free(leaf);
}
END_TEST

START_TEST(test_unreadable_rule_fails_closed)
{
    leaf_spec ls = {.subject = {"O=Acme"}};
    X509 *leaf = make_leaf(&ls);
    cs_rule_spec deny = deny_rule(), allow = allow_rule("acme");
    int64_t deny_id;
    char sql[128];

    pin(&pki->ca_a);
    deny.subject = "O=Acme";
    deny_id = add_rule(&deny);
    allow.priority = 500;
    add_rule(&allow);
    /* Damage the deny behind the library's back. */
    {
        sqlite3 *raw = NULL;
        ck_assert_int_eq(sqlite3_open(tstore.db, &raw), SQLITE_OK);
        snprintf(sql, sizeof(sql), "UPDATE rules SET subject = 'XX=1' WHERE id = %lld",
                 (long long)deny_id);
        ck_assert_int_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(raw);
    }
    ck_rejected(decide_cert(leaf), CS_REASON_STORE_UNAVAILABLE);
    X509_free(leaf);
}
END_TEST

START_TEST(test_deny_rule_bumps_generation)
{
    int64_t before = 0, after = 0;
    cs_rule_spec deny = deny_rule();

    pin(&pki->ca_a);
    ck_ok(cs_db_generation(writer, &before));
    add_rule(&deny);
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_gt(after, before);
}
END_TEST

START_TEST(test_account_removal_respects_rules)
{
    cs_rule_spec r = allow_rule("acme");

    pin(&pki->ca_a);
    add_rule(&r);
    begin();
    ck_assert_int_eq(cs_account_remove(writer, "acme", 0), CS_INUSE);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "1 rule"));
    ck_ok(cs_account_remove(writer, "acme", 1));
    commit();
}
END_TEST

/* ---- strong/weak, backdating -------------------------------------------------------- */

START_TEST(test_require_strong_refuses_rules_only)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}};
    leaf_spec ls2 = {.subject = {"O=Acme", "CN=gw-02"}};
    X509 *by_rule = make_leaf(&ls), *by_map = make_leaf(&ls2);
    cs_rule_spec r = allow_rule("acme");
    cs_policy_opts strong = {.require_strong = 1};
    cs_decision d;

    pin(&pki->ca_a);
    add_rule(&r);
    map_cert(by_map, "gw-two");
    d = decide_cert_opts(by_rule, &strong);
    ck_rejected(d, CS_REASON_WEAK_MAPPING_REFUSED);
    ck_assert_int_gt(d.rule_id, 0);
    ck_assert_ptr_nonnull(strstr(d.detail, "acme"));
    ck_accepted(decide_cert_opts(by_map, &strong), "gw-two");
    ck_accepted(decide_cert(by_rule), "acme");
    for (int k = 0; k < CS_KIND_COUNT; k++)
        ck_assert(cs_kind_is_strong((cs_kind)k));
    X509_free(by_rule);
    X509_free(by_map);
}
END_TEST

START_TEST(test_rule_not_issued_before_created)
{
    leaf_spec old_spec = {.subject = {"O=Acme", "CN=old"}, .not_before_secs = -3600};
    leaf_spec new_spec = {.subject = {"O=Acme", "CN=new"}, .not_before_secs = 3600};
    X509 *old_leaf = make_leaf(&old_spec), *new_leaf = make_leaf(&new_spec);
    cs_rule_spec r = allow_rule("acme");

    pin(&pki->ca_a);
    r.not_issued_before_created = 1;
    add_rule(&r);
    ck_rejected(decide_cert(old_leaf), CS_REASON_ISSUED_BEFORE_MAPPING);
    ck_accepted(decide_cert(new_leaf), "acme");
    X509_free(old_leaf);
    X509_free(new_leaf);
}
END_TEST

START_TEST(test_mapping_not_issued_before_created)
{
    leaf_spec old_spec = {.subject = {"CN=old"}, .not_before_secs = -3600};
    X509 *old_leaf = make_leaf(&old_spec);
    cs_mapping_ref ref = {0};
    int on = 0;
    int64_t before = 0, after = 0;

    pin(&pki->ca_a);
    ref.id = map_cert(old_leaf, "old");
    ck_accepted(decide_cert(old_leaf), "old");
    ck_ok(cs_db_generation(writer, &before));
    begin();
    ck_ok(cs_mapping_set_not_issued_before_created(writer, &ref, 1));
    commit();
    ck_ok(cs_db_generation(writer, &after));
    ck_assert_int_gt(after, before);
    ck_ok(cs_mapping_get_not_issued_before_created(writer, &ref, &on));
    ck_assert_int_eq(on, 1);
    ck_rejected(decide_cert(old_leaf), CS_REASON_ISSUED_BEFORE_MAPPING);
    X509_free(old_leaf);
}
END_TEST

/* ---- schema --------------------------------------------------------------------------- */

static const char v1_schema[] =
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);"
    "INSERT INTO meta VALUES (1, 1);"
    "CREATE TABLE pins (id INTEGER PRIMARY KEY, fp TEXT NOT NULL UNIQUE CHECK (length(fp) = 64),"
    " der BLOB NOT NULL, subject TEXT NOT NULL, not_after INTEGER NOT NULL,"
    " enabled INTEGER NOT NULL DEFAULT 1, note TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL);"
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " enabled INTEGER NOT NULL DEFAULT 1, note TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL);"
    "CREATE TABLE mappings (id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, key BLOB NOT NULL,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id), pin_fp TEXT, not_before INTEGER,"
    " not_after INTEGER, enabled INTEGER NOT NULL DEFAULT 1, note TEXT, created INTEGER NOT NULL,"
    " cert_not_after INTEGER, sha1 BLOB, UNIQUE (kind, key));"
    "CREATE INDEX mappings_by_account ON mappings(account_id);"
    "CREATE TABLE changes (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, user TEXT NOT NULL,"
    " command TEXT NOT NULL, detail TEXT NOT NULL);"
    "PRAGMA user_version = 1;";

START_TEST(test_v1_database_upgrades_in_place)
{
    char path[PATH_MAX + 32], sql[512], fp[CS_FP_HEX_LEN + 1];
    sqlite3 *raw = NULL;
    cs_db *db = NULL;
    cs_key key;
    int version = 0;

    snprintf(path, sizeof(path), "%s/v1.db", tstore.dir);
    ck_assert_int_eq(sqlite3_open(path, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    fp_of(&pki->ca_a, fp);
    ck_ok(cs_key_from_cert(pki->alice.cert, CS_KIND_CERT, &key));
    snprintf(sql, sizeof(sql),
             "INSERT INTO pins VALUES (1, '%s', x'00', 'CN=A', 4000000000, 1, '', 1);"
             "INSERT INTO accounts VALUES (1, 'alice', 1, '', 1);",
             fp);
    ck_assert_int_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    {
        sqlite3_stmt *st = NULL;
        ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                            "INSERT INTO mappings (kind, key, account_id, created)"
                                            " VALUES (0, ?, 1, 1)",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_blob(st, 1, key.bytes, (int)key.len, SQLITE_STATIC);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    sqlite3_close(raw);

    /* A server cannot use it before the upgrade, and says why. */
    ck_assert_int_ne(cs_db_open(&db, path, CS_OPEN_READONLY), CS_OK);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(db), "older"));
    cs_db_close(db);
    ck_assert_int_eq(cs_db_open(&db, path, 0), CS_OK);
    ck_assert_int_eq(cs_db_migrate(db), CS_OK);
    ck_assert_int_eq(cs_db_schema_version(db, &version), CS_OK);
    ck_assert_int_eq(version, CS_SCHEMA_VERSION);
    cs_db_close(db);

    ck_assert_int_eq(cs_db_open(&db, path, CS_OPEN_READONLY), CS_OK);
    {
        STACK_OF(X509) *chain = testpki_chain_for(pki, &pki->alice);
        cs_decision d;
        cs_decide(db, chain, now, &d);
        sk_X509_pop_free(chain, X509_free);
        ck_accepted(d, "alice");
    }
    cs_db_close(db);
}
END_TEST

/* ---- the CLI ---------------------------------------------------------------------------- */

static char cli_out[16384];

/* Run the certstore binary with --db and args; stdout in cli_out; exit status returned. */
static int cli(const char *first, ...)
{
    va_list ap;
    int status;

    va_start(ap, first);
    status = us_cli_v(tstore.db, 0, cli_out, sizeof(cli_out), first, ap);
    va_end(ap);
    return status;
}

#define ck_out_has(s)                                                                              \
    ck_assert_msg(strstr(cli_out, (s)) != NULL, "output lacks '%s':\n%s", (s), cli_out)

static void write_cert(const char *name, X509 *leaf, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", tstore.dir, name);
    ck_assert(testpki_write_pem(path, leaf, pki->ca_a.cert, (X509 *)NULL));
}

START_TEST(test_cli_rule_lifecycle_and_check)
{
    leaf_spec ls = {.subject = {"O=Acme", "CN=gw-01"}, .san = "DNS:gw1.acme.example"};
    X509 *leaf = make_leaf(&ls);
    char chain[PATH_MAX + 64], roots[PATH_MAX + 64], ca[PATH_MAX + 64], fp[CS_FP_HEX_LEN + 1];

    write_cert("gw-chain.pem", leaf, chain, sizeof(chain));
    snprintf(roots, sizeof(roots), "%s/roots.pem", tstore.dir);
    ck_assert(testpki_write_pem(roots, pki->root.cert, (X509 *)NULL));
    snprintf(ca, sizeof(ca), "%s/ca-a.pem", tstore.dir);
    ck_assert(testpki_write_pem(ca, pki->ca_a.cert, (X509 *)NULL));
    fp_of(&pki->ca_a, fp);

    ck_assert_int_eq(cli("pin", "add", ca, NULL), 0);
    ck_assert_int_eq(
        cli("rule", "add", "--pin", fp, "--account", "acme", "--subject", "CN=x", NULL), 1);
    /* An allow rule with no condition admits the whole CA: only with --any. */
    ck_assert_int_eq(cli("rule", "add", "--pin", fp, "--account", "acme", "--create-account", NULL),
                     2);
    ck_assert_int_eq(cli("rule", "add", "--pin", fp, "--account", "acme", "--deny", NULL), 2);
    ck_assert_int_eq(
        cli("rule", "add", "--pin", fp, "--account", "acme", "--subject", "XX=1", NULL), 2);
    ck_assert_int_eq(cli("rule", "add", "--pin", fp, "--account", "acme", "--create-account",
                         "--subject", "O=Acme,CN=gw-*", "--san", "DNS:*.acme.example", "--eku",
                         "clientAuth", "--note", "gateways", NULL),
                     0);
    ck_out_has("rule 1: allow -> acme");
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 0);
    ck_out_has("accept account=acme rule=1\n");
    ck_assert_int_eq(cli("check", chain, "--ca", roots, "--require-strong", NULL), 1);
    ck_out_has("reject weak-mapping-refused rule=1");
    ck_assert_int_eq(cli("check", chain, "--ca", roots, "--json", NULL), 0);
    ck_out_has("\"rule\":1,\"strength\":\"weak\"");

    ck_assert_int_eq(cli("rule", "add", "--pin", fp, "--deny", "--priority", "5", "--san",
                         "DNS:gw1.*", "--san", "DNS:*.example", NULL),
                     0);
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 1);
    ck_out_has("reject denied-by-rule rule=2");
    ck_assert_int_eq(cli("rule", "ls", NULL), 0);
    ck_out_has("2 deny priority=5 enabled");
    ck_out_has("san=\"DNS:gw1.*; DNS:*.example\"");
    ck_out_has("1 allow account=acme priority=100 enabled");
    ck_out_has("subject=\"O=Acme,CN=gw-*\"");
    ck_assert_int_lt(strstr(cli_out, "2 deny") - cli_out, strstr(cli_out, "1 allow") - cli_out);
    ck_assert_int_eq(cli("rule", "ls", "--json", NULL), 0);
    ck_out_has("\"san\":[\"DNS:gw1.*\",\"DNS:*.example\"]");
    ck_out_has("\"eku\":[\"clientAuth\"]");
    ck_assert_int_eq(cli("rule", "disable", "2", NULL), 0);
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 0);
    ck_assert_int_eq(cli("rule", "enable", "2", NULL), 0);
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 1);
    ck_assert_int_eq(cli("rule", "rm", "2", NULL), 0);
    ck_assert_int_eq(cli("rule", "rm", "2", NULL), 1);
    ck_assert_int_eq(cli("rule", "rm", "x", NULL), 2);
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 0);
    ck_assert_int_eq(cli("log", NULL), 0);
    ck_out_has("rule rm id=2");
    X509_free(leaf);
}
END_TEST

START_TEST(test_cli_map_not_issued_before_created)
{
    leaf_spec ls = {.subject = {"CN=old"}, .not_before_secs = -3600};
    X509 *leaf = make_leaf(&ls);
    char chain[PATH_MAX + 64], roots[PATH_MAX + 64], ca[PATH_MAX + 64];

    char single[PATH_MAX + 64];

    write_cert("old-chain.pem", leaf, chain, sizeof(chain));
    snprintf(single, sizeof(single), "%s/old.pem", tstore.dir);
    ck_assert(testpki_write_pem(single, leaf, (X509 *)NULL));
    snprintf(roots, sizeof(roots), "%s/roots.pem", tstore.dir);
    ck_assert(testpki_write_pem(roots, pki->root.cert, (X509 *)NULL));
    snprintf(ca, sizeof(ca), "%s/ca-a.pem", tstore.dir);
    ck_assert(testpki_write_pem(ca, pki->ca_a.cert, (X509 *)NULL));
    ck_assert_int_eq(cli("pin", "add", ca, NULL), 0);
    ck_assert_int_eq(cli("map", "add", single, "--account", "old", "--create-account",
                         "--not-issued-before", "yesterday", NULL),
                     2);
    ck_assert_int_eq(cli("map", "add", single, "--account", "old", "--create-account",
                         "--not-issued-before", "created", NULL),
                     0);
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 1);
    ck_out_has("reject issued-before-mapping mapping=1");
    X509_free(leaf);
}
END_TEST

START_TEST(test_cli_expiring)
{
    char ca[PATH_MAX + 64], alice[PATH_MAX + 64], expired[PATH_MAX + 64];

    snprintf(ca, sizeof(ca), "%s/ca-a.pem", tstore.dir);
    ck_assert(testpki_write_pem(ca, pki->ca_a.cert, (X509 *)NULL));
    snprintf(alice, sizeof(alice), "%s/alice.pem", tstore.dir);
    ck_assert(testpki_write_pem(alice, pki->alice.cert, (X509 *)NULL));
    snprintf(expired, sizeof(expired), "%s/expired.pem", tstore.dir);
    ck_assert(testpki_write_pem(expired, pki->expired.cert, (X509 *)NULL));
    ck_assert_int_eq(cli("pin", "add", ca, NULL), 0);
    ck_assert_int_eq(cli("map", "add", alice, "--account", "alice", "--create-account", NULL), 0);
    ck_assert_int_eq(cli("expiring", NULL), 0);
    ck_out_has("nothing expires within 30 days");
    ck_assert_int_eq(cli("expiring", "--days", "-1", NULL), 2);
    ck_assert_int_eq(cli("expiring", "--days", "36501", NULL), 2);
    /* alice's leaf ends in 825 days: a long horizon reaches it. */
    ck_assert_int_eq(cli("expiring", "--days", "900", NULL), 1);
    ck_out_has("mapping 1 cert account=alice expires ");
    ck_out_has("(in 82");
    ck_assert_int_eq(cli("map", "add", expired, "--account", "old", "--create-account", NULL), 0);
    ck_assert_int_eq(cli("expiring", "--json", NULL), 1);
    ck_out_has("\"what\":\"mapping\",\"mapping\":2,\"kind\":\"cert\",\"account\":\"old\"");
    ck_out_has("\"expired\":true");
    ck_assert_msg(strstr(cli_out, "\"account\":\"alice\"") == NULL, "%s", cli_out);
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    TCase *syntax = tcase_create("syntax");
    TCase *match = tcase_create("match");
    TCase *unicode = tcase_create("unicode");
    TCase *order = tcase_create("order");
    TCase *strength = tcase_create("strength");
    TCase *schema = tcase_create("schema");
    TCase *cli_tc = tcase_create("cli");

    tcase_add_checked_fixture(syntax, setup, teardown);
    tcase_add_test(syntax, test_condition_syntax_refused);
    tcase_add_test(syntax, test_allow_needs_account_deny_has_none);
    tcase_add_test(syntax, test_rule_needs_existing_pin);
    suite_add_tcase(s, syntax);

    tcase_add_checked_fixture(match, setup, teardown);
    tcase_add_test(match, test_subject_glob_and_exact);
    tcase_add_test(match, test_case_insensitive_unless_asked);
    tcase_add_test(match, test_cn_with_comma_cannot_inject_o);
    tcase_add_test(match, test_escapes_and_literal_globs);
    tcase_add_test(match, test_multi_valued_rdn);
    tcase_add_test(match, test_repeated_attribute_allow_all_deny_any);
    tcase_add_test(match, test_every_attribute);
    tcase_add_test(match, test_non_ascii_byte_compare_and_question_mark);
    tcase_add_test(match, test_bmpstring_converted);
    tcase_add_test(match, test_invalid_utf8_never_matches);
    tcase_add_test(match, test_issuer_condition);
    tcase_add_test(match, test_san_types);
    tcase_add_test(match, test_san_condition_without_san_extension);
    tcase_add_test(match, test_eku_and_policy);
    tcase_add_test(match, test_unreadable_name_value_denied_never_allowed);
    tcase_add_test(match, test_upn_from_ia5string_and_utf8string);
    tcase_add_test(match, test_dns_and_ip_canonical);
    tcase_add_test(match, test_duplicated_extensions_denied_never_allowed);
    tcase_add_test(match, test_variants_denied_like_their_plain_twin);
    tcase_add_test(match, test_any_eku_and_any_policy_count_for_deny_only);
    tcase_add_test(match, test_subject_exact_is_the_whole_name_in_order);
    suite_add_tcase(s, match);

    tcase_add_checked_fixture(unicode, setup, teardown);
    tcase_add_test(unicode, test_composed_and_decomposed_are_equal);
    tcase_add_test(unicode, test_case_insensitive_folds_unicode);
    tcase_add_test(unicode, test_case_sensitive_does_not_fold);
    tcase_add_test(unicode, test_case_sensitive_compares_code_points_exactly);
    tcase_add_test(unicode, test_question_mark_is_one_code_point);
    tcase_add_test(unicode, test_glob_over_non_ascii);
    tcase_add_test(unicode, test_invalid_utf8_never_matches_any_rule);
    suite_add_tcase(s, unicode);

    tcase_add_checked_fixture(order, setup, teardown);
    tcase_add_test(order, test_allow_rule_accepts_weak_with_rule_id);
    tcase_add_test(order, test_no_matching_rule_no_mapping);
    tcase_add_test(order, test_mapping_decides_before_rules);
    tcase_add_test(order, test_deny_beats_later_allow);
    tcase_add_test(order, test_earlier_allow_beats_deny_and_ties_go_by_id);
    tcase_add_test(order, test_rule_of_other_pin_does_not_apply);
    tcase_add_test(order, test_rule_account_disabled);
    tcase_add_test(order, test_unreadable_rule_fails_closed);
    tcase_add_test(order, test_deny_rule_bumps_generation);
    tcase_add_test(order, test_account_removal_respects_rules);
    suite_add_tcase(s, order);

    tcase_add_checked_fixture(strength, setup, teardown);
    tcase_add_test(strength, test_require_strong_refuses_rules_only);
    tcase_add_test(strength, test_rule_not_issued_before_created);
    tcase_add_test(strength, test_mapping_not_issued_before_created);
    suite_add_tcase(s, strength);

    tcase_add_checked_fixture(schema, setup, teardown);
    tcase_add_test(schema, test_v1_database_upgrades_in_place);
    suite_add_tcase(s, schema);

    tcase_add_checked_fixture(cli_tc, setup, teardown);
    tcase_add_test(cli_tc, test_cli_rule_lifecycle_and_check);
    tcase_add_test(cli_tc, test_cli_map_not_issued_before_created);
    tcase_add_test(cli_tc, test_cli_expiring);
    suite_add_tcase(s, cli_tc);
    return s;
}

int main(void)
{
    return us_run_suite(rules_suite(), "check_rules", &pki, &tmp_root);
}
