/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared test PKI, built from a table so that the layout written by
 * mkpki and the objects seen by in-process tests can never disagree.
 */
#include "testpki.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

typedef enum {
    ROLE_ROOT,
    ROLE_CA,
    ROLE_SERVER,
    ROLE_CLIENT,      /* clientAuth leaf */
    ROLE_SERVER_ONLY, /* leaf whose EKU lacks clientAuth */
} pki_role;

typedef struct {
    const char *name;   /* file-layout name */
    size_t offset;      /* of its testpki_cred in testpki */
    const char *issuer; /* name of the issuer; NULL: self-signed */
    const char *cn;     /* subject CN */
    pki_role role;
    const char *key_from;    /* reuse this credential's key */
    const char *serial_from; /* reuse this credential's serial */
    const char *ski_from;    /* carry this credential's Subject Key Identifier */
    int expired;
    int writes_chain; /* NAME-chain.pem: leaf + issuing intermediate */
} pki_spec;

#define CRED(member) offsetof(testpki, member)

/* Build order matters: issuers and key/serial donors come first. */
static const pki_spec pki_specs[] = {
    {"root", CRED(root), NULL, "certstore Test Root", ROLE_ROOT, NULL, NULL, NULL, 0, 0},
    {"ca-a", CRED(ca_a), "root", "Partner CA A", ROLE_CA, NULL, NULL, NULL, 0, 0},
    {"ca-b", CRED(ca_b), "root", "Partner CA B", ROLE_CA, NULL, NULL, NULL, 0, 0},
    /* Same subject DN as ca-a: pins must match by fingerprint, not by name. */
    {"ca-twin", CRED(ca_twin), "root", "Partner CA A", ROLE_CA, NULL, NULL, NULL, 0, 0},
    /* ca-a renewed with the same DN and key: it verifies every ca-a leaf too. */
    {"ca-a-renewed", CRED(ca_a_renewed), "root", "Partner CA A", ROLE_CA, "ca-a", NULL, NULL, 0, 0},
    {"server", CRED(server), "root", "localhost", ROLE_SERVER, NULL, NULL, NULL, 0, 0},
    {"alice", CRED(alice), "ca-a", "alice", ROLE_CLIENT, NULL, NULL, NULL, 0, 1},
    {"alice-renewed", CRED(alice_renewed), "ca-a", "alice", ROLE_CLIENT, "alice", NULL, NULL, 0, 1},
    {"bob", CRED(bob), "ca-a", "bob", ROLE_CLIENT, NULL, NULL, NULL, 0, 1},
    {"carol", CRED(carol), "ca-b", "carol", ROLE_CLIENT, NULL, NULL, NULL, 0, 1},
    /* Same issuer DN and serial as alice: issuer-serial alone cannot tell them apart. */
    {"mallory", CRED(mallory), "ca-twin", "mallory", ROLE_CLIENT, NULL, "alice", NULL, 0, 1},
    /* Another partner CA's leaf with its own key and alice's SKI (a CA writes any SKI). */
    {"eve", CRED(eve), "ca-b", "eve", ROLE_CLIENT, NULL, NULL, "alice", 0, 1},
    {"expired", CRED(expired), "ca-a", "expired", ROLE_CLIENT, NULL, NULL, NULL, 1, 1},
    {"noclient", CRED(noclient), "ca-a", "noclient", ROLE_SERVER_ONLY, NULL, NULL, NULL, 0, 1},
    {"selfsigned", CRED(selfsigned), NULL, "selfsigned", ROLE_CLIENT, NULL, NULL, NULL, 0, 0},
    {"direct", CRED(direct), "root", "direct", ROLE_CLIENT, NULL, NULL, NULL, 0, 0},
};
#define PKI_SPEC_COUNT (sizeof(pki_specs) / sizeof(pki_specs[0]))

static testpki_cred *cred_at(testpki *pki, size_t offset)
{
    return (testpki_cred *)((char *)pki + offset);
}

static const pki_spec *spec_by_name(const char *name)
{
    for (size_t i = 0; i < PKI_SPEC_COUNT; i++)
        if (strcmp(pki_specs[i].name, name) == 0)
            return &pki_specs[i];
    return NULL;
}

static const pki_spec *spec_by_cred(const testpki *pki, const testpki_cred *cred)
{
    for (size_t i = 0; i < PKI_SPEC_COUNT; i++)
        if ((const char *)pki + pki_specs[i].offset == (const char *)cred)
            return &pki_specs[i];
    return NULL;
}

const testpki_cred *testpki_get(const testpki *pki, const char *name)
{
    const pki_spec *spec = spec_by_name(name);

    return spec ? (const testpki_cred *)((const char *)pki + spec->offset) : NULL;
}

const testpki_cred *testpki_issuer_of(const testpki *pki, const testpki_cred *cred)
{
    const pki_spec *spec = spec_by_cred(pki, cred);

    if (spec == NULL)
        return NULL;
    return spec->issuer ? testpki_get(pki, spec->issuer) : cred;
}

static EVP_PKEY *generate_key(int rsa)
{
    if (rsa)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* 16 random bytes, top bit clear so the INTEGER is positive, never zero-led. */
static int set_random_serial(X509 *cert)
{
    unsigned char bytes[16];
    BIGNUM *bn = NULL;
    int ok = 0;

    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        return 0;
    bytes[0] = (unsigned char)((bytes[0] & 0x7f) | 0x40);
    bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL)
        ok = 1;
    BN_free(bn);
    return ok;
}

static int set_validity(X509 *cert, int expired)
{
    long start_days = expired ? -400 : -1;
    long end_days = expired ? -10 : 825;

    return X509_time_adj_ex(X509_getm_notBefore(cert), (int)start_days, 0, NULL) != NULL &&
           X509_time_adj_ex(X509_getm_notAfter(cert), (int)end_days, 0, NULL) != NULL;
}

static int set_subject(X509 *cert, const char *cn)
{
    X509_NAME *name = X509_get_subject_name(cert);

    return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                      (const unsigned char *)"certstore tests", -1, -1, 0) &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                      0);
}

int testpki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : cert, cert, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int add_role_extensions(X509 *cert, X509 *issuer, pki_role role)
{
    switch (role) {
    case ROLE_ROOT:
    case ROLE_CA:
        return testpki_add_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE") &&
               testpki_add_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    case ROLE_SERVER:
        return testpki_add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
               testpki_add_ext(cert, issuer, NID_key_usage,
                               "critical,digitalSignature,keyEncipherment") &&
               testpki_add_ext(cert, issuer, NID_ext_key_usage, "serverAuth") &&
               testpki_add_ext(cert, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    case ROLE_CLIENT:
        return testpki_add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
               testpki_add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") &&
               testpki_add_ext(cert, issuer, NID_ext_key_usage, "clientAuth");
    case ROLE_SERVER_ONLY:
        return testpki_add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
               testpki_add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") &&
               testpki_add_ext(cert, issuer, NID_ext_key_usage, "serverAuth");
    }
    return 0;
}

/* The donor's SKI as "AB:CD:..." for the config syntax; "hash" without a donor. */
static int ski_value(const testpki_cred *donor, char *buf, size_t buflen)
{
    const ASN1_OCTET_STRING *ski = donor ? X509_get0_subject_key_id(donor->cert) : NULL;
    char *hex;

    if (donor == NULL) {
        snprintf(buf, buflen, "hash");
        return 1;
    }
    if (ski == NULL ||
        (hex = OPENSSL_buf2hexstr(ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski))) == NULL)
        return 0;
    snprintf(buf, buflen, "%s", hex);
    OPENSSL_free(hex);
    return 1;
}

/* SKI first: a self-signed certificate's AKI is computed from its own SKI. */
static int add_extensions(X509 *cert, X509 *issuer, pki_role role, const testpki_cred *ski_donor)
{
    char ski[3 * 64 + 8];

    return ski_value(ski_donor, ski, sizeof(ski)) &&
           testpki_add_ext(cert, issuer, NID_subject_key_identifier, ski) &&
           testpki_add_ext(cert, issuer, NID_authority_key_identifier, "keyid:always") &&
           add_role_extensions(cert, issuer, role);
}

static int set_serial(X509 *cert, const testpki_cred *donor)
{
    if (donor == NULL)
        return set_random_serial(cert);
    return X509_set_serialNumber(cert, X509_get_serialNumber(donor->cert));
}

/*
 * libcrypto decodes a certificate's extensions on first use and publishes them
 * behind a lock-free acquire flag. Suites share these certificates between
 * handshake threads, and ThreadSanitizer cannot see that flag in an
 * uninstrumented libcrypto: two threads making the first use at once read as a
 * data race. Decoding them here, before any thread exists, keeps the first use
 * out of the threads.
 */
static int cache_extensions(X509 *cert)
{
    return X509_check_purpose(cert, -1, 0) == 1;
}

static int build_cred(testpki *pki, const pki_spec *spec, int rsa)
{
    testpki_cred *cred = cred_at(pki, spec->offset);
    const testpki_cred *issuer = spec->issuer ? testpki_get(pki, spec->issuer) : NULL;
    const testpki_cred *key_donor = spec->key_from ? testpki_get(pki, spec->key_from) : NULL;
    const testpki_cred *serial_donor =
        spec->serial_from ? testpki_get(pki, spec->serial_from) : NULL;
    const testpki_cred *ski_donor = spec->ski_from ? testpki_get(pki, spec->ski_from) : NULL;
    EVP_PKEY *sign_key;

    if (key_donor != NULL) {
        if (!EVP_PKEY_up_ref(key_donor->key))
            return 0;
        cred->key = key_donor->key;
    } else if ((cred->key = generate_key(rsa)) == NULL) {
        return 0;
    }
    sign_key = issuer ? issuer->key : cred->key;
    if ((cred->cert = X509_new()) == NULL)
        return 0;
    return X509_set_version(cred->cert, X509_VERSION_3) && set_serial(cred->cert, serial_donor) &&
           set_validity(cred->cert, spec->expired) && set_subject(cred->cert, spec->cn) &&
           X509_set_issuer_name(cred->cert, issuer ? X509_get_subject_name(issuer->cert)
                                                   : X509_get_subject_name(cred->cert)) &&
           X509_set_pubkey(cred->cert, cred->key) &&
           add_extensions(cred->cert, issuer ? issuer->cert : NULL, spec->role, ski_donor) &&
           X509_sign(cred->cert, sign_key, EVP_sha256()) > 0 && cache_extensions(cred->cert);
}

testpki *testpki_new(int rsa)
{
    testpki *pki = calloc(1, sizeof(*pki));

    if (pki == NULL)
        return NULL;
    for (size_t i = 0; i < PKI_SPEC_COUNT; i++) {
        if (!build_cred(pki, &pki_specs[i], rsa)) {
            testpki_free(pki);
            return NULL;
        }
    }
    return pki;
}

void testpki_free(testpki *pki)
{
    if (pki == NULL)
        return;
    for (size_t i = 0; i < PKI_SPEC_COUNT; i++) {
        testpki_cred *cred = cred_at(pki, pki_specs[i].offset);

        X509_free(cred->cert);
        EVP_PKEY_free(cred->key);
    }
    free(pki);
}

static int push_up_ref(STACK_OF(X509) * chain, X509 *cert)
{
    if (!X509_up_ref(cert))
        return 0;
    if (sk_X509_push(chain, cert) <= 0) {
        X509_free(cert);
        return 0;
    }
    return 1;
}

STACK_OF(X509) * testpki_chain(X509 *first, ...)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    va_list ap;
    int ok = chain != NULL;

    va_start(ap, first);
    for (X509 *cert = first; ok && cert != NULL; cert = va_arg(ap, X509 *))
        ok = push_up_ref(chain, cert);
    va_end(ap);
    if (!ok) {
        sk_X509_pop_free(chain, X509_free);
        return NULL;
    }
    return chain;
}

STACK_OF(X509) * testpki_chain_for(const testpki *pki, const testpki_cred *leaf)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    const testpki_cred *cur = leaf;

    if (chain == NULL)
        return NULL;
    /* At most leaf, intermediate, root: the bound guards a malformed table. */
    for (int depth = 0; cur != NULL && depth < 4; depth++) {
        const testpki_cred *next = testpki_issuer_of(pki, cur);

        if (!push_up_ref(chain, cur->cert)) {
            sk_X509_pop_free(chain, X509_free);
            return NULL;
        }
        if (next == cur)
            return chain;
        cur = next;
    }
    sk_X509_pop_free(chain, X509_free);
    return NULL;
}

static FILE *open_for_write(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FILE *fp;

    if (fd < 0)
        return NULL;
    fp = fdopen(fd, "w");
    if (fp == NULL)
        close(fd);
    return fp;
}

static int write_certs_va(const char *path, X509 *first, va_list ap)
{
    FILE *fp = open_for_write(path, 0644);
    int ok = fp != NULL;

    for (X509 *cert = first; ok && cert != NULL; cert = va_arg(ap, X509 *))
        ok = PEM_write_X509(fp, cert) == 1;
    if (fp != NULL && fclose(fp) != 0)
        ok = 0;
    return ok;
}

int testpki_write_pem(const char *path, X509 *first, ...)
{
    va_list ap;
    int ok;

    va_start(ap, first);
    ok = write_certs_va(path, first, ap);
    va_end(ap);
    return ok;
}

/* Keys are readable by all: the test directory (mkdtemp, 0700) guards them,
 * and servers under test may read them after dropping privileges. */
static int write_key(const char *path, EVP_PKEY *key)
{
    FILE *fp = open_for_write(path, 0644);
    int ok = fp != NULL && PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1;

    if (fp != NULL && fclose(fp) != 0)
        ok = 0;
    return ok;
}

static int write_one(const testpki *pki, const pki_spec *spec, const char *dir)
{
    const testpki_cred *cred = testpki_get(pki, spec->name);
    char path[PATH_MAX];

    if (snprintf(path, sizeof(path), "%s/%s.pem", dir, spec->name) >= (int)sizeof(path) ||
        !testpki_write_pem(path, cred->cert, (X509 *)NULL))
        return 0;
    if (snprintf(path, sizeof(path), "%s/%s.key", dir, spec->name) >= (int)sizeof(path) ||
        !write_key(path, cred->key))
        return 0;
    if (spec->writes_chain) {
        const testpki_cred *issuer = testpki_get(pki, spec->issuer);

        if (snprintf(path, sizeof(path), "%s/%s-chain.pem", dir, spec->name) >= (int)sizeof(path) ||
            !testpki_write_pem(path, cred->cert, issuer->cert, (X509 *)NULL))
            return 0;
    }
    return 1;
}

int testpki_write(const testpki *pki, const char *dir)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < PKI_SPEC_COUNT; i++)
        if (!write_one(pki, &pki_specs[i], dir))
            return 0;
    if (snprintf(path, sizeof(path), "%s/roots.pem", dir) >= (int)sizeof(path))
        return 0;
    return testpki_write_pem(path, pki->root.cert, (X509 *)NULL);
}

char *testpki_tmpdir(void)
{
    char *dir = strdup("/tmp/certstore-test-XXXXXX");

    if (dir != NULL && mkdtemp(dir) == NULL) {
        free(dir);
        return NULL;
    }
    return dir;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int testpki_rmtree(const char *dir)
{
    if (dir == NULL)
        return 1;
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}
