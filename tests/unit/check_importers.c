/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Migration from Windows: the IIS importer (applicationHost.config /
 * web.config mappings) and the AD altSecurityIdentities importer, on
 * realistic files the tests write, judged by the decisions the policy
 * then makes and by what the database holds (never a password).
 */
#include <check.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cs_store.h"
#include "testpki.h"
#include "unit_support.h"

#define PASSWORD "S3cr3t-P4ss!"

static testpki *pki;
static char *tmp_root;
static us_store tstore; /* this test's store: tstore.dir, tstore.db */
static cs_db *writer;
static cs_db *reader;
static int64_t now;
static char notes[8192];

#define ck_ok(expr) ck_assert_msg((expr) == CS_OK, "%s failed: %s", #expr, cs_db_errmsg(writer))

static void setup(void)
{
    us_store_open(&tstore, tmp_root);
    writer = tstore.writer;
    reader = tstore.reader;
    now = (int64_t)time(NULL);
    notes[0] = '\0';
}

static void teardown(void)
{
    /* Tests may have closed or reopened them. */
    tstore.writer = writer;
    tstore.reader = reader;
    us_store_close(&tstore);
    reader = writer = NULL;
}

static void collect_note(int64_t line, const char *why, void *arg)
{
    size_t used = strlen(notes);

    (void)arg;
    snprintf(notes + used, sizeof(notes) - used, "%lld: %s\n", (long long)line, why);
}

static void pin(const testpki_cred *ca)
{
    ck_ok(cs_db_begin(writer, "check_importers"));
    ck_ok(cs_pin_add(writer, ca->cert, NULL, NULL));
    ck_ok(cs_db_commit(writer));
}

static void fp_of(const testpki_cred *cred, char fp[CS_FP_HEX_LEN + 1])
{
    ck_assert(cs_fp_of_cert(cred->cert, fp));
}

static cs_decision decide(const testpki_cred *leaf)
{
    STACK_OF(X509) *chain = testpki_chain_for(pki, leaf);
    cs_decision d;

    ck_assert_ptr_nonnull(chain);
    cs_decide(reader, chain, now, &d);
    sk_X509_pop_free(chain, X509_free);
    return d;
}

#define ck_accepted(d, acct)                                                                       \
    do {                                                                                           \
        cs_decision d_ = (d);                                                                      \
        ck_assert_msg(d_.accept, "rejected: %s %s", cs_reason_token(d_.reason), d_.detail);        \
        ck_assert_str_eq(d_.account, (acct));                                                      \
    } while (0)

#define ck_rejected(d, why)                                                                        \
    do {                                                                                           \
        cs_decision d_ = (d);                                                                      \
        ck_assert_msg(!d_.accept, "accepted, expected %s", cs_reason_token(why));                  \
        ck_assert_str_eq(cs_reason_token(d_.reason), cs_reason_token(why));                        \
    } while (0)

/* Base64 of a certificate's DER, as IIS writes it (one line). */
static char *cert_base64(X509 *cert)
{
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    char *out;

    ck_assert_int_gt(len, 0);
    out = malloc((size_t)len * 2 + 8);
    ck_assert_ptr_nonnull(out);
    EVP_EncodeBlock((unsigned char *)out, der, len);
    OPENSSL_free(der);
    return out;
}

/* ---- IIS -------------------------------------------------------------------------- */

static char *iis_config(void)
{
    char *alice = cert_base64(pki->alice.cert), *bob = cert_base64(pki->bob.cert);
    size_t cap = strlen(alice) + strlen(bob) + 8192;
    char *xml = malloc(cap);

    ck_assert_ptr_nonnull(xml);
    snprintf(
        xml, cap,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
        "<configuration>\r\n"
        "  <!-- exported from IIS Manager; <add> in a comment is ignored -->\r\n"
        "  <location path=\"Default Web Site/partners\">\r\n"
        "    <system.webServer>\r\n"
        "      <security>\r\n"
        "        <access sslFlags=\"Ssl, SslNegotiateCert, SslRequireCert\" />\r\n"
        "        <authentication>\r\n"
        "          <iisClientCertificateMappingAuthentication enabled=\"true\"\r\n"
        "              oneToOneCertificateMappingsEnabled=\"true\"\r\n"
        "              manyToOneCertificateMappingsEnabled=\"true\">\r\n"
        "            <oneToOneMappings>\r\n"
        "              <add enabled=\"true\" userName=\"CORP\\alice\" password=\"" PASSWORD "\"\r\n"
        "                   certificate=\"%s\" />\r\n"
        "              <add enabled=\"false\" userName='CORP\\bob' password='" PASSWORD
        "' certificate='%s'/>\r\n"
        "            </oneToOneMappings>\r\n"
        "            <manyToOneMappings>\r\n"
        "              <add name=\"Blocked\" enabled=\"true\" permissionMode=\"Deny\"\r\n"
        "                   userName=\"ignored\" password=\"" PASSWORD "\">\r\n"
        "                <rules>\r\n"
        "                  <add certificateField=\"Subject\" certificateSubField=\"CN\"\r\n"
        "                       matchCriteria=\"NOCLIENT*\" compareCaseSensitive=\"false\" />\r\n"
        "                </rules>\r\n"
        "              </add>\r\n"
        "              <add name=\"Tests &amp; gateways\" enabled=\"true\" "
        "permissionMode=\"Allow\"\r\n"
        "                   userName=\"CORP\\svc-tests\" password=\"" PASSWORD "\">\r\n"
        "                <rules>\r\n"
        "                  <add certificateField=\"Subject\" certificateSubField=\"O\"\r\n"
        "                       matchCriteria=\"certstore tests\" compareCaseSensitive=\"true\" "
        "/>\r\n"
        "                  <add certificateField=\"Subject\" certificateSubField=\"CN\"\r\n"
        "                       matchCriteria=\"*\" compareCaseSensitive=\"true\" />\r\n"
        "                </rules>\r\n"
        "              </add>\r\n"
        "              <add name=\"Everyone\" permissionMode=\"Allow\" userName=\"x\" "
        "password=\"" PASSWORD "\" />\r\n"
        "              <add name=\"Mixed\" permissionMode=\"Allow\" userName=\"y\">\r\n"
        "                <rules>\r\n"
        "                  <add certificateField=\"Subject\" certificateSubField=\"CN\" "
        "matchCriteria=\"a\" compareCaseSensitive=\"true\"/>\r\n"
        "                  <add certificateField=\"Subject\" certificateSubField=\"O\" "
        "matchCriteria=\"b\" compareCaseSensitive=\"false\"/>\r\n"
        "                </rules>\r\n"
        "              </add>\r\n"
        "            </manyToOneMappings>\r\n"
        "          </iisClientCertificateMappingAuthentication>\r\n"
        "        </authentication>\r\n"
        "      </security>\r\n"
        "    </system.webServer>\r\n"
        "  </location>\r\n"
        "</configuration>\r\n",
        alice, bob);
    free(alice);
    free(bob);
    return xml;
}

static cs_status import_iis(const char *xml, const char *pin_fp, cs_foreign_result *res)
{
    cs_status st;

    ck_ok(cs_db_begin(writer, "check_importers"));
    st = cs_import_iis(writer, xml, strlen(xml), pin_fp, NULL, collect_note, NULL, res);
    if (st == CS_OK)
        ck_ok(cs_db_commit(writer));
    else
        cs_db_rollback(writer);
    return st;
}

/* The bytes of a file contain needle? */
static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    static char buf[1 << 20];
    size_t n;
    int found = 0;

    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    for (size_t i = 0; i + strlen(needle) <= n && !found; i++)
        found = memcmp(buf + i, needle, strlen(needle)) == 0;
    return found;
}

START_TEST(test_iis_one_to_one_and_many_to_one)
{
    char fp[CS_FP_HEX_LEN + 1], wal[PATH_MAX + 40];
    char *xml = iis_config();
    cs_foreign_result res;
    cs_decision d;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ck_ok(import_iis(xml, fp, &res));
    free(xml);
    ck_assert_int_eq(res.mappings, 2);
    ck_assert_int_eq(res.rules, 2);
    ck_assert_int_eq(res.refused, 2);
    ck_assert_ptr_nonnull(strstr(notes, "has no rules (it would match every certificate"));
    ck_assert_ptr_nonnull(strstr(notes, "mix compareCaseSensitive"));

    ck_accepted(decide(&pki->alice), "CORP\\alice");
    ck_assert_int_eq(decide(&pki->alice).weak, 0);
    /* enabled="false" came across as a disabled mapping: no rule may rescue it. */
    ck_rejected(decide(&pki->bob), CS_REASON_MAPPING_DISABLED);
    /* The deny comes first in the file, so it is tried first. */
    d = decide(&pki->noclient);
    ck_rejected(d, CS_REASON_DENIED_BY_RULE);
    d = decide(&pki->alice_renewed);
    ck_accepted(d, "CORP\\svc-tests");
    ck_assert_int_eq(d.weak, 1);
    ck_rejected(decide(&pki->carol), CS_REASON_ISSUER_NOT_PINNED);

    /* Passwords never reach the database, its WAL or the change log. */
    cs_db_close(reader);
    cs_db_close(writer);
    reader = writer = NULL;
    snprintf(wal, sizeof(wal), "%s-wal", tstore.db);
    ck_assert(!file_contains(tstore.db, PASSWORD));
    ck_assert(!file_contains(wal, PASSWORD));
    ck_assert(!file_contains(tstore.db, "S3cr3t"));
}
END_TEST

START_TEST(test_iis_case_sensitivity_kept)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;
    const char *xml =
        "<configuration><iisClientCertificateMappingAuthentication enabled='true'>"
        "<manyToOneMappings><add name='n' userName='u'><rules>"
        "<add certificateField='Subject' certificateSubField='CN' matchCriteria='ALICE'/>"
        "</rules></add></manyToOneMappings></iisClientCertificateMappingAuthentication>"
        "</configuration>";
    const char *xml_ci =
        "<configuration><iisClientCertificateMappingAuthentication enabled='true'>"
        "<manyToOneMappings><add name='n' userName='u'><rules>"
        "<add certificateField='Subject' certificateSubField='CN' matchCriteria='ALICE'"
        " compareCaseSensitive='false'/>"
        "</rules></add></manyToOneMappings></iisClientCertificateMappingAuthentication>"
        "</configuration>";

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    /* IIS compares case-sensitively unless told otherwise. */
    ck_ok(import_iis(xml, fp, &res));
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    ck_ok(import_iis(xml_ci, fp, &res));
    ck_accepted(decide(&pki->alice), "u");
}
END_TEST

START_TEST(test_iis_malformed_refused_with_line)
{
    static const char *const bad[] = {
        "<!DOCTYPE x [<!ENTITY e 'x'>]><configuration/>",
        "<configuration>\n<a>\n</b></configuration>",
        "<configuration>\n<a x=1/></configuration>",
        "<configuration>\n<a x='&bogus;'/></configuration>",
        "<configuration><a>",
        "<configuration><!-- never closed",
    };
    char fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(import_iis(bad[i], fp, &res) == CS_INVALID, "accepted: %s", bad[i]);
        ck_assert_int_ge(res.bad_line, 1);
    }
    ck_assert_int_eq(import_iis("<configuration>\n<a>\n</b></configuration>", fp, &res),
                     CS_INVALID);
    ck_assert_int_eq(res.bad_line, 3);
}
END_TEST

START_TEST(test_iis_many_to_one_needs_pin)
{
    char *xml = iis_config();
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_assert_int_eq(import_iis(xml, NULL, &res), CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "--pin"));
    free(xml);
    /* All or nothing: the one-to-one mappings before it were rolled back. */
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
}
END_TEST

/* The section around some mappings, and one many-to-one mapping with one rule. */
#define IIS_SECTION(attrs, body)                                                                   \
    "<system.webServer><security><authentication>"                                                 \
    "<iisClientCertificateMappingAuthentication " attrs ">" body                                   \
    "</iisClientCertificateMappingAuthentication></authentication></security></system.webServer>"
#define IIS_MANY(name, mode, user, sub, criteria)                                                  \
    "<add name='" name "' permissionMode='" mode "' userName='" user "'><rules>"                   \
    "<add certificateField='Subject' certificateSubField='" sub "' matchCriteria='" criteria       \
    "' compareCaseSensitive='false'/></rules></add>"

static cs_status import_iis_at(const char *xml, const char *location, cs_foreign_result *res)
{
    char fp[CS_FP_HEX_LEN + 1];
    cs_status st;

    fp_of(&pki->ca_a, fp);
    ck_ok(cs_db_begin(writer, "check_importers"));
    st = cs_import_iis(writer, xml, strlen(xml), fp, location, collect_note, NULL, res);
    if (st == CS_OK)
        ck_ok(cs_db_commit(writer));
    else
        cs_db_rollback(writer);
    return st;
}

/* alice one-to-one, and every certificate of the tests' O many-to-one, under these switches. */
static cs_status import_iis_switched(const char *section_attrs, cs_foreign_result *res)
{
    char *alice = cert_base64(pki->alice.cert), xml[8192];

    snprintf(
        xml, sizeof(xml),
        "<configuration>"
        "<system.webServer><security><authentication>"
        "<iisClientCertificateMappingAuthentication %s>"
        "<oneToOneMappings><add userName='CORP\\alice' certificate='%s'/></oneToOneMappings>"
        "<manyToOneMappings>" IIS_MANY(
            "All", "Allow", "svc", "O",
            "certstore tests") "</manyToOneMappings></iisClientCertificateMappingAuthentication>"
                               "</authentication></security></system.webServer></configuration>",
        section_attrs, alice);
    free(alice);
    return import_iis_at(xml, NULL, res);
}

START_TEST(test_iis_section_disabled_by_default_imports_nothing)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_ok(import_iis_switched("", &res));
    ck_assert_int_eq(res.mappings, 0);
    ck_assert_int_eq(res.rules, 0);
    ck_assert_int_eq(res.refused, 2);
    ck_assert_ptr_nonnull(strstr(notes, "enabled is false"));
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
    ck_ok(import_iis_switched("enabled='false' oneToOneCertificateMappingsEnabled='true'", &res));
    ck_assert_int_eq(res.mappings + res.rules, 0);
}
END_TEST

START_TEST(test_iis_many_to_one_switch_off)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_ok(import_iis_switched("enabled='true' manyToOneCertificateMappingsEnabled='false'", &res));
    ck_assert_int_eq(res.mappings, 1);
    ck_assert_int_eq(res.rules, 0);
    ck_assert_ptr_nonnull(strstr(notes, "manyToOneCertificateMappingsEnabled is false"));
    ck_accepted(decide(&pki->alice), "CORP\\alice");
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_iis_one_to_one_switch_off)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_ok(import_iis_switched("enabled='true' oneToOneCertificateMappingsEnabled='false'", &res));
    ck_assert_int_eq(res.mappings, 0);
    ck_assert_int_eq(res.rules, 1);
    ck_assert_ptr_nonnull(strstr(notes, "oneToOneCertificateMappingsEnabled is false"));
    /* IIS would not map alice one-to-one; its many-to-one mapping applies. */
    ck_accepted(decide(&pki->alice), "svc");
}
END_TEST

START_TEST(test_iis_clear_and_remove_apply)
{
    char *alice = cert_base64(pki->alice.cert), *bob = cert_base64(pki->bob.cert), xml[16384];
    cs_foreign_result res;

    pin(&pki->ca_a);
    snprintf(xml, sizeof(xml),
             "<configuration>" IIS_SECTION(
                 "enabled='true'",
                 "<oneToOneMappings><add userName='CORP\\alice' certificate='%s'/><clear/>"
                 "<add userName='CORP\\bob' certificate='%s'/></oneToOneMappings>"
                 "<manyToOneMappings>" IIS_MANY("All", "Allow", "svc-all", "O", "certstore tests")
                     IIS_MANY("Bob", "Allow", "svc-bob", "CN",
                              "bob") "<remove name='All'/></manyToOneMappings>") "</configuration>",
             alice, bob);
    free(alice);
    free(bob);
    ck_ok(import_iis_at(xml, NULL, &res));
    ck_assert_int_eq(res.mappings, 1);
    ck_assert_int_eq(res.rules, 1);
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
    ck_accepted(decide(&pki->bob), "CORP\\bob");
}
END_TEST

static const char iis_scoped[] = "<configuration>" IIS_SECTION(
    "enabled='true'",
    "<manyToOneMappings>" IIS_MANY(
        "No bob", "Deny", "x", "CN",
        "bob") "</manyToOneMappings>") "<location path='Default Web "
                                       "Site/a'>" IIS_SECTION(
                                           "",
                                           "<manyToOneMappings"
                                           ">" IIS_MANY(
                                               "A", "Allow", "a-user", "CN",
                                               "alice") "</"
                                                        "manyToOne"
                                                        "Mappings"
                                                        ">") "</"
                                                             "loca"
                                                             "tion"
                                                             ">"
                                                             "<loc"
                                                             "atio"
                                                             "n "
                                                             "path"
                                                             "='"
                                                             "Defa"
                                                             "ult "
                                                             "Web "
                                                             "Site"
                                                             "/b'"
                                                             ">" IIS_SECTION(
                                                                 "",
                                                                 "<manyToOneMappings><clear/"
                                                                 ">" IIS_MANY(
                                                                     "B", "Allow", "b-user",
                                                                     "CN", "*") "</"
                                                                                "manyToOneMappings"
                                                                                ">") "</location>"
                                                                                     "</"
                                                                                     "configuration"
                                                                                     ">";

START_TEST(test_iis_locations_refused_unless_one_chosen)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_assert_int_eq(import_iis_at(iis_scoped, NULL, &res), CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "--location"));
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "Default Web Site/b"));
    ck_assert_int_eq(import_iis_at(iis_scoped, "Default Web Site/c", &res), CS_INVALID);
    /* a: the root's deny, then its own allow */
    ck_ok(import_iis_at(iis_scoped, "Default Web Site/a", &res));
    ck_assert_int_eq(res.rules, 2);
    ck_accepted(decide(&pki->alice_renewed), "a-user");
    ck_rejected(decide(&pki->bob), CS_REASON_DENIED_BY_RULE);
}
END_TEST

START_TEST(test_iis_location_clear_drops_inherited)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    /* b clears what the root configured: bob is no longer denied there. */
    ck_ok(import_iis_at(iis_scoped, "Default Web Site/b", &res));
    ck_assert_int_eq(res.rules, 1);
    ck_accepted(decide(&pki->bob), "b-user");
}
END_TEST

/* IIS documents '*' as its one wildcard: '?' is a literal character. */
START_TEST(test_iis_question_mark_is_literal)
{
    cs_foreign_result res;
    static const char xml[] = "<configuration>" IIS_SECTION(
        "enabled='true'",
        "<manyToOneMappings>" IIS_MANY("Q", "Allow", "q", "CN", "alic?")
            IIS_MANY("S", "Allow", "s", "CN", "ali*") "</manyToOneMappings>") "</configuration>";

    pin(&pki->ca_a);
    ck_ok(import_iis_at(xml, NULL, &res));
    ck_accepted(decide(&pki->alice_renewed), "s");
}
END_TEST

/* Dropping a Deny that certstore cannot express would admit more than IIS: refuse the file. */
START_TEST(test_iis_unexpressible_deny_refuses_import)
{
    cs_foreign_result res;
    static const char xml[] = "<configuration>" IIS_SECTION(
        "enabled='true'",
        "<manyToOneMappings>" IIS_MANY("No titles", "Deny", "x", "T", "Boss")
            IIS_MANY("All", "Allow", "svc", "O",
                     "certstore tests") "</manyToOneMappings>") "</configuration>";

    pin(&pki->ca_a);
    ck_assert_int_eq(import_iis_at(xml, NULL, &res), CS_INVALID);
    ck_assert_ptr_nonnull(strstr(cs_db_errmsg(writer), "Deny"));
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
}
END_TEST

/* ---- altSecurityIdentities ------------------------------------------------------------ */

/* A DN as AD tools write it: RFC 2253 order (most specific first), or the certificate's (der). */
static void ad_dn_order(X509_NAME *name, char *out, size_t len, int der)
{
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
    int n;

    ck_assert(X509_NAME_print_ex(bio, name, 0, der ? flags & ~XN_FLAG_DN_REV : flags) >= 0);
    n = BIO_read(bio, out, (int)len - 1);
    ck_assert_int_gt(n, 0);
    out[n] = '\0';
    BIO_free(bio);
}

static void ad_dn(X509_NAME *name, char *out, size_t len)
{
    ad_dn_order(name, out, len, 0);
}

/* Serial as AD keeps it: hex, least significant byte first. */
static void ad_serial(X509 *cert, char *out)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    unsigned char bytes[64];
    int n = BN_bn2bin(bn, bytes);

    for (int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", bytes[n - 1 - i]);
    BN_free(bn);
}

static char *altsec_file(void)
{
    char issuer[512], serial[160], ski[160] = "", *out = malloc(8192);
    const ASN1_OCTET_STRING *bob_ski = X509_get0_subject_key_id(pki->bob.cert);

    ck_assert_ptr_nonnull(out);
    ad_dn(X509_get_subject_name(pki->ca_a.cert), issuer, sizeof(issuer));
    ad_serial(pki->alice.cert, serial);
    ck_assert_ptr_nonnull(bob_ski);
    for (int i = 0; i < ASN1_STRING_length(bob_ski); i++)
        sprintf(ski + 2 * i, "%02X", ASN1_STRING_get0_data(bob_ski)[i]);
    snprintf(out, 8192,
             "# account<TAB>altSecurityIdentities value\r\n"
             "alice\tX509:<I>%s<SR>%s\r\n"
             "bob\tX509:<SKI>%s\r\n"
             "carol\tX509:<SHA1-PUKEY>3f2a9c0d5e6b7a8c9d0e1f2a3b4c5d6e7f8091a2\r\n"
             "dave\tX509:<I>%s<S>CN=nobody,O=certstore tests\r\n"
             "\r\n"
             "erin\tX509:<S>CN=alice,O=certstore tests\r\n"
             "frank\tX509:<RFC822>alice*@example.com\r\n",
             issuer, serial, ski, issuer);
    return out;
}

static cs_status import_altsec(const char *text, const char *pin_fp, int allow_weak,
                               cs_foreign_result *res)
{
    cs_status st;

    ck_ok(cs_db_begin(writer, "check_importers"));
    st =
        cs_import_altsecid(writer, text, strlen(text), pin_fp, allow_weak, collect_note, NULL, res);
    if (st == CS_OK)
        ck_ok(cs_db_commit(writer));
    else
        cs_db_rollback(writer);
    return st;
}

START_TEST(test_altsecid_strong_only_by_default)
{
    char *text = altsec_file(), fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;
    cs_decision d;

    pin(&pki->ca_a);
    pin(&pki->ca_b);
    fp_of(&pki->ca_a, fp); /* <SKI> names no issuer */
    ck_ok(import_altsec(text, fp, 0, &res));
    free(text);
    ck_assert_int_eq(res.mappings, 2);
    ck_assert_int_eq(res.rules, 0);
    ck_assert_int_eq(res.refused, 4);
    ck_assert_ptr_nonnull(strstr(notes, "4: <SHA1-PUKEY>: a SHA-1 cannot become a SHA-256 key"));
    ck_assert_ptr_nonnull(strstr(notes, "5: <I>..<S>.. is a weak mapping"));
    ck_assert_ptr_nonnull(strstr(notes, "7: <S> is a weak mapping"));
    ck_assert_ptr_nonnull(strstr(notes, "8: <RFC822> is a weak mapping"));

    d = decide(&pki->alice);
    ck_accepted(d, "alice");
    ck_assert_int_eq(d.kind, CS_KIND_ISSUER_SERIAL);
    ck_assert_int_eq(d.weak, 0);
    /* Same issuer DN and serial from the twin CA: the mapping is bound to CA A's pin. */
    pin(&pki->ca_twin);
    ck_rejected(decide(&pki->mallory), CS_REASON_NO_MAPPING);
    d = decide(&pki->bob);
    ck_accepted(d, "bob");
    ck_assert_int_eq(d.kind, CS_KIND_SKI);
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_altsecid_weak_as_rules_when_allowed)
{
    char *text = altsec_file(), fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;
    cs_decision d;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ck_ok(import_altsec(text, fp, 1, &res));
    free(text);
    ck_assert_int_eq(res.mappings, 2);
    ck_assert_int_eq(res.rules, 3);
    ck_assert_int_eq(res.refused, 1);
    /* alice-renewed has a new serial: only erin's <S> rule matches it. */
    d = decide(&pki->alice_renewed);
    ck_accepted(d, "erin");
    ck_assert_int_eq(d.weak, 1);
}
END_TEST

START_TEST(test_altsecid_weak_without_issuer_needs_pin)
{
    cs_foreign_result res;

    pin(&pki->ca_a);
    ck_ok(import_altsec("erin\tX509:<S>CN=alice\n", NULL, 1, &res));
    ck_assert_int_eq(res.refused, 1);
    ck_assert_ptr_nonnull(strstr(notes, "give --pin"));
}
END_TEST

START_TEST(test_altsecid_issuer_must_be_one_pin)
{
    char *text = altsec_file();
    cs_foreign_result res;

    /* No pin with that subject. */
    pin(&pki->ca_b);
    ck_ok(import_altsec(text, NULL, 0, &res));
    ck_assert_int_eq(res.mappings, 0); /* the SKI line has no --pin either */
    ck_assert_ptr_nonnull(strstr(notes, "no pinned CA has this subject"));
    /* Two pins with that subject: ambiguous, refused. */
    pin(&pki->ca_a);
    pin(&pki->ca_twin);
    notes[0] = '\0';
    ck_ok(import_altsec(text, NULL, 0, &res));
    ck_assert_ptr_nonnull(strstr(notes, "several pinned CAs have this subject"));
    free(text);
}
END_TEST

/* <SKI> names no issuer and any pinned CA can write any SKI: bound to --pin, or refused. */
START_TEST(test_altsecid_ski_bound_to_pin_or_refused)
{
    const ASN1_OCTET_STRING *alice_ski = X509_get0_subject_key_id(pki->alice.cert);
    char line[256], fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;
    int n;

    pin(&pki->ca_a);
    pin(&pki->ca_b);
    fp_of(&pki->ca_a, fp);
    ck_assert_ptr_nonnull(alice_ski);
    n = snprintf(line, sizeof(line), "alice\tX509:<SKI>");
    for (int i = 0; i < ASN1_STRING_length(alice_ski); i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%02X",
                      ASN1_STRING_get0_data(alice_ski)[i]);
    snprintf(line + n, sizeof(line) - (size_t)n, "\n");
    ck_ok(import_altsec(line, NULL, 0, &res));
    ck_assert_int_eq(res.mappings, 0);
    ck_assert_int_eq(res.refused, 1);
    ck_assert_ptr_nonnull(strstr(notes, "1: <SKI> names no issuer: give --pin"));
    ck_ok(import_altsec(line, fp, 0, &res));
    ck_assert_int_eq(res.mappings, 1);
    ck_accepted(decide(&pki->alice), "alice");
    /* ca-b's leaf with alice's SKI and its own key. */
    ck_rejected(decide(&pki->eve), CS_REASON_NO_MAPPING);
}
END_TEST

START_TEST(test_altsecid_malformed_refused_with_line)
{
    static const char *const bad[] = {
        "alice X509:<SKI>00\n",        "alice\tX509:<SKI>zz\n", "alice\tX509:<XYZ>1\n",
        "alice\tSMTP:a@b\n",           "\tX509:<SKI>00\n",      "alice\tX509:<I>CN=x\n",
        "alice\tX509:<I>CN=x<SR>0g\n",
    };
    cs_foreign_result res;

    pin(&pki->ca_a);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(import_altsec(bad[i], NULL, 0, &res) == CS_INVALID, "accepted: %s", bad[i]);
        ck_assert_int_eq(res.bad_line, 1);
    }
    ck_assert_int_eq(import_altsec("# ok\nbob\tX509:<SKI>0102\nbad line\n", NULL, 0, &res),
                     CS_INVALID);
    ck_assert_int_eq(res.bad_line, 3);
}
END_TEST

/* AD maps <S> (empty) only to certificates with an empty subject: never a rule for all. */
START_TEST(test_altsecid_empty_subject_refused)
{
    char issuer[512], fp[CS_FP_HEX_LEN + 1], text[2048];
    cs_foreign_result res;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ad_dn(X509_get_subject_name(pki->ca_a.cert), issuer, sizeof(issuer));
    snprintf(text, sizeof(text),
             "Administrator\tX509:<I>%s<S>\n"
             "Administrator\tX509:<I>%s<S>   \n"
             "root\tX509:<S> \t\n"
             "mail\tX509:<RFC822>\n",
             issuer, issuer);
    ck_ok(import_altsec(text, fp, 1, &res));
    ck_assert_int_eq(res.rules, 0);
    ck_assert_int_eq(res.refused, 4);
    ck_assert_ptr_nonnull(strstr(notes, "1: <I>..<S>.. is empty"));
    ck_assert_ptr_nonnull(strstr(notes, "3: <S> is empty"));
    ck_assert_ptr_nonnull(strstr(notes, "4: <RFC822> is empty"));
    ck_rejected(decide(&pki->alice), CS_REASON_NO_MAPPING);
}
END_TEST

/* <S> is the whole subject, in order, as AD compares it: not a subset of attributes. */
START_TEST(test_altsecid_subject_is_exact)
{
    char issuer_der[512], fp[CS_FP_HEX_LEN + 1], text[2048];
    cs_foreign_result res;

    pin(&pki->ca_a);
    fp_of(&pki->ca_a, fp);
    ad_dn_order(X509_get_subject_name(pki->ca_a.cert), issuer_der, sizeof(issuer_der), 1);
    snprintf(text, sizeof(text),
             "erin\tX509:<S>CN=alice\n"
             "frank\tX509:<I>%s<S>O=certstore tests,CN=bob\n"
             "gina\tX509:<S>O=certstore tests,CN=alice\n",
             issuer_der);
    ck_ok(import_altsec(text, fp, 1, &res));
    ck_assert_int_eq(res.rules, 3);
    /* CN=alice alone is not alice's subject; nor is it in the certificate's order without <I>. */
    ck_rejected(decide(&pki->alice_renewed), CS_REASON_NO_MAPPING);
    /* With <I> written in the certificate's order, <S> is read the same way. */
    ck_accepted(decide(&pki->bob), "frank");
}
END_TEST

/* ---- through the CLI ----------------------------------------------------------------- */

static char cli_out[65536];

/* Run certstore with --db; stdout and stderr together in cli_out. */
static int cli(const char *first, ...)
{
    va_list ap;
    int status;

    va_start(ap, first);
    status = us_cli_v(tstore.db, 1, cli_out, sizeof(cli_out), first, ap);
    va_end(ap);
    return status;
}

START_TEST(test_cli_import_iis_and_altsecid)
{
    char path[PATH_MAX + 40], ca[PATH_MAX + 40], fp[CS_FP_HEX_LEN + 1];
    char *xml = iis_config(), *text = altsec_file();
    FILE *f;

    snprintf(ca, sizeof(ca), "%s/ca-a.pem", tstore.dir);
    ck_assert(testpki_write_pem(ca, pki->ca_a.cert, (X509 *)NULL));
    fp_of(&pki->ca_a, fp);
    ck_assert_int_eq(cli("pin", "add", ca, NULL), 0);

    snprintf(path, sizeof(path), "%s/applicationHost.config", tstore.dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(xml, f);
    fclose(f);
    ck_assert_int_eq(cli("import", "--format", "iis", path, NULL), 1);
    ck_assert_ptr_nonnull(strstr(cli_out, "need --pin"));
    ck_assert_int_eq(cli("import", "--format", "iis", path, "--allow-weak", NULL), 2);
    /* One entry cannot be imported: nothing is, unless --allow-partial. */
    ck_assert_int_eq(cli("import", "--format", "iis", path, "--pin", fp, "--create-accounts", NULL),
                     1);
    ck_assert_ptr_nonnull(strstr(cli_out, "--allow-partial"));
    ck_assert_int_eq(cli("rule", "ls", NULL), 0);
    ck_assert_ptr_null(strstr(cli_out, "priority="));
    ck_assert_int_eq(cli("import", "--format", "iis", path, "--pin", fp, "--create-accounts",
                         "--allow-partial", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(cli_out, "imported 2 mappings and 2 rules"));
    ck_assert_ptr_nonnull(
        strstr(cli_out, "not imported: many-to-one mapping 'Everyone' has no rules"));
    ck_assert_ptr_null(strstr(cli_out, "S3cr3t"));
    ck_assert_int_eq(cli("rule", "ls", NULL), 0);
    ck_assert_ptr_nonnull(strstr(cli_out, "1 deny priority=10"));
    ck_assert_ptr_nonnull(strstr(cli_out, "subject=\"CN=NOCLIENT*\""));
    ck_assert_ptr_nonnull(strstr(cli_out, "account=CORP\\svc-tests priority=20"));
    ck_assert_ptr_null(strstr(cli_out, "S3cr3t"));
    ck_assert_int_eq(cli("log", NULL), 0);
    ck_assert_ptr_null(strstr(cli_out, "S3cr3t"));

    snprintf(path, sizeof(path), "%s/altsec.tsv", tstore.dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
    /* alice's certificate is already mapped (from IIS); the issuer-serial key is new. */
    ck_assert_int_eq(cli("import", "--format", "altsecid", path, "--pin", fp, "--create-accounts",
                         "--allow-partial", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(cli_out, "imported 2 mappings and 0 rules"));
    ck_assert_ptr_nonnull(strstr(cli_out, "line 8: not imported: <RFC822> is a weak mapping"));
    free(xml);
    free(text);
}
END_TEST

/* What the operator sees: the import refuses the empty subject, check rejects. */
START_TEST(test_cli_altsecid_empty_and_partial_subject_do_not_map)
{
    char path[PATH_MAX + 40], ca[PATH_MAX + 40], roots[PATH_MAX + 40], chain[PATH_MAX + 40];
    char fp[CS_FP_HEX_LEN + 1];
    FILE *f;

    snprintf(ca, sizeof(ca), "%s/ca-a.pem", tstore.dir);
    snprintf(roots, sizeof(roots), "%s/roots.pem", tstore.dir);
    snprintf(chain, sizeof(chain), "%s/alice-chain.pem", tstore.dir);
    ck_assert(testpki_write_pem(ca, pki->ca_a.cert, (X509 *)NULL));
    ck_assert(testpki_write_pem(roots, pki->root.cert, (X509 *)NULL));
    ck_assert(testpki_write_pem(chain, pki->alice.cert, pki->ca_a.cert, (X509 *)NULL));
    fp_of(&pki->ca_a, fp);
    ck_assert_int_eq(cli("pin", "add", ca, NULL), 0);

    snprintf(path, sizeof(path), "%s/altsec.tsv", tstore.dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs("Administrator\tX509:<I>CN=Partner CA A,O=certstore tests<S>\n"
          "erin\tX509:<S>CN=alice\n",
          f);
    fclose(f);
    ck_assert_int_eq(cli("import", "--format", "altsecid", path, "--allow-weak", "--pin", fp,
                         "--create-accounts", "--allow-partial", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(cli_out, "line 1: not imported: <I>..<S>.. is empty"));
    ck_assert_ptr_nonnull(strstr(cli_out, "imported 0 mappings and 1 rules"));
    ck_assert_int_eq(cli("check", chain, "--ca", roots, NULL), 1);
    ck_assert_ptr_nonnull(strstr(cli_out, "reject no-mapping"));
    ck_assert_int_eq(cli("rule", "ls", NULL), 0);
    ck_assert_ptr_nonnull(strstr(cli_out, "subject-exact=\"CN=alice\""));
}
END_TEST

static Suite *importers_suite(void)
{
    Suite *s = suite_create("importers");
    TCase *iis = tcase_create("iis");
    TCase *altsec = tcase_create("altsecid");
    TCase *cli_tc = tcase_create("cli");

    tcase_add_checked_fixture(iis, setup, teardown);
    tcase_add_test(iis, test_iis_one_to_one_and_many_to_one);
    tcase_add_test(iis, test_iis_case_sensitivity_kept);
    tcase_add_test(iis, test_iis_malformed_refused_with_line);
    tcase_add_test(iis, test_iis_many_to_one_needs_pin);
    tcase_add_test(iis, test_iis_section_disabled_by_default_imports_nothing);
    tcase_add_test(iis, test_iis_many_to_one_switch_off);
    tcase_add_test(iis, test_iis_one_to_one_switch_off);
    tcase_add_test(iis, test_iis_clear_and_remove_apply);
    tcase_add_test(iis, test_iis_locations_refused_unless_one_chosen);
    tcase_add_test(iis, test_iis_location_clear_drops_inherited);
    tcase_add_test(iis, test_iis_question_mark_is_literal);
    tcase_add_test(iis, test_iis_unexpressible_deny_refuses_import);
    suite_add_tcase(s, iis);

    tcase_add_checked_fixture(altsec, setup, teardown);
    tcase_add_test(altsec, test_altsecid_strong_only_by_default);
    tcase_add_test(altsec, test_altsecid_weak_as_rules_when_allowed);
    tcase_add_test(altsec, test_altsecid_weak_without_issuer_needs_pin);
    tcase_add_test(altsec, test_altsecid_issuer_must_be_one_pin);
    tcase_add_test(altsec, test_altsecid_ski_bound_to_pin_or_refused);
    tcase_add_test(altsec, test_altsecid_malformed_refused_with_line);
    tcase_add_test(altsec, test_altsecid_empty_subject_refused);
    tcase_add_test(altsec, test_altsecid_subject_is_exact);
    suite_add_tcase(s, altsec);

    tcase_add_checked_fixture(cli_tc, setup, teardown);
    tcase_add_test(cli_tc, test_cli_import_iis_and_altsecid);
    tcase_add_test(cli_tc, test_cli_altsecid_empty_and_partial_subject_do_not_map);
    suite_add_tcase(s, cli_tc);
    return s;
}

int main(void)
{
    return us_run_suite(importers_suite(), "check_importers", &pki, &tmp_root);
}
