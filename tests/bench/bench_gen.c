/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Input generators for the benchmarks.
 *
 *   bench_gen leaves --pki DIR --count N --out FILE [--keys FILE]
 *       N real client certificates issued by the pinned "Partner CA A" of
 *       the test PKI in DIR (each with its own P-256 key), PEM, for the
 *       decision benchmark: distinct leaves touch distinct database pages.
 *       With --keys, the private keys too, in the same order (the pool of
 *       first-seen clients of bench_load pool).
 *   bench_gen csv --count N --issuer CA.pem --out FILE [--real PEM:ACCOUNT]...
 *       An import CSV (kind,key,account,pin) with a cert mapping for every
 *       certificate of each --real file, then N synthetic mappings with
 *       deterministic pseudo-random keys: 60% cert, 20% spki, 10%
 *       issuer-serial (under CA.pem, as a real partner CA's would be), 10%
 *       ski; eight mappings per account. issuer-serial and ski rows are
 *       bound to CA.pem's pin, as import requires.
 *   bench_gen crl --pki DIR --count N --out FILE
 *       A DER CRL of "Partner CA A" in DIR listing N pseudo-random 16-byte
 *       serials (none of them a real leaf's), CRL number 1, next update in
 *       7 days: the revocation benchmark's large CRL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "bench_util.h"

#define MAPPINGS_PER_ACCOUNT 8

static int usage(void)
{
    fputs("usage: bench_gen leaves --pki DIR --count N --out FILE [--keys FILE]\n"
          "       bench_gen csv --count N --issuer CA.pem --out FILE [--real PEM:ACCOUNT]...\n"
          "       bench_gen crl --pki DIR --count N --out FILE\n",
          stderr);
    return 2;
}

/* ---- leaves -------------------------------------------------------------- */

static int add_ext(X509 *leaf, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, leaf, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(leaf, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int random_serial(X509 *cert)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        return 0;
    bytes[0] = (unsigned char)((bytes[0] & 0x7f) | 0x01); /* positive, full length */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

static X509 *make_leaf(X509 *ca, EVP_PKEY *ca_key, int index, EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *leaf = X509_new();
    X509_NAME *name = X509_NAME_new();
    char cn[64];
    snprintf(cn, sizeof(cn), "bench-leaf-%05d", index);
    int ok = key != NULL && leaf != NULL && name != NULL && X509_set_version(leaf, 2) &&
             random_serial(leaf) &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                        (const unsigned char *)"certstore bench", -1, -1, 0) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                        0) &&
             X509_set_subject_name(leaf, name) &&
             X509_set_issuer_name(leaf, X509_get_subject_name(ca)) &&
             X509_gmtime_adj(X509_getm_notBefore(leaf), -86400) &&
             X509_gmtime_adj(X509_getm_notAfter(leaf), 2L * 365 * 86400) &&
             X509_set_pubkey(leaf, key) &&
             add_ext(leaf, ca, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(leaf, ca, NID_key_usage, "critical,digitalSignature") &&
             add_ext(leaf, ca, NID_ext_key_usage, "clientAuth") &&
             add_ext(leaf, ca, NID_subject_key_identifier, "hash") &&
             add_ext(leaf, ca, NID_authority_key_identifier, "keyid:always") &&
             X509_sign(leaf, ca_key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (ok && key_out != NULL) {
        *key_out = key;
        key = NULL;
    }
    EVP_PKEY_free(key);
    if (!ok) {
        X509_free(leaf);
        return NULL;
    }
    return leaf;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return key;
}

static int gen_leaves(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *out = bench_opt(argc, argv, "--out");
    const char *keys_out = bench_opt(argc, argv, "--keys");
    long count = bench_opt_long(argc, argv, "--count", 1000);
    if (pki == NULL || out == NULL || count < 1)
        return usage();
    char path[4096];
    snprintf(path, sizeof(path), "%s/ca-a.pem", pki);
    STACK_OF(X509) *ca_certs = bench_load_certs(path);
    snprintf(path, sizeof(path), "%s/ca-a.key", pki);
    EVP_PKEY *ca_key = load_key(path);
    FILE *f = fopen(out, "w");
    FILE *kf = keys_out != NULL ? fopen(keys_out, "w") : NULL;
    int ok = ca_certs != NULL && ca_key != NULL && f != NULL && (keys_out == NULL || kf != NULL);
    for (long i = 0; ok && i < count; i++) {
        EVP_PKEY *key = NULL;
        X509 *leaf = make_leaf(sk_X509_value(ca_certs, 0), ca_key, (int)i, kf ? &key : NULL);
        ok = leaf != NULL && PEM_write_X509(f, leaf) == 1 &&
             (kf == NULL || PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) == 1);
        EVP_PKEY_free(key);
        X509_free(leaf);
    }
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (kf != NULL && fclose(kf) != 0)
        ok = 0;
    EVP_PKEY_free(ca_key);
    sk_X509_pop_free(ca_certs, X509_free);
    if (!ok) {
        bench_ssl_fail("generating leaves");
        return 1;
    }
    return 0;
}

/* ---- csv ----------------------------------------------------------------- */

/* splitmix64: fast, deterministic, good enough to spread B-tree keys. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void put_random_hex(FILE *out, uint64_t *state, size_t bytes, int first_byte_positive)
{
    static const char digits[] = "0123456789abcdef";
    char buf[2 * 64];
    size_t n = 0;
    while (n < 2 * bytes) {
        uint64_t r = next_random(state);
        for (int k = 0; k < 8 && n < 2 * bytes; k++, r >>= 8) {
            unsigned b = (unsigned)(r & 0xff);
            if (n == 0 && first_byte_positive)
                b = (b & 0x7f) | 0x01;
            buf[n++] = digits[b >> 4];
            buf[n++] = digits[b & 0xf];
        }
    }
    fwrite(buf, 1, n, out);
}

static void put_hex(FILE *out, const unsigned char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fprintf(out, "%02x", bytes[i]);
}

static int write_real(FILE *out, const char *spec)
{
    char path[4096];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof(path))
        return 0;
    memcpy(path, spec, (size_t)(colon - spec));
    path[colon - spec] = '\0';
    STACK_OF(X509) *certs = bench_load_certs(path);
    if (certs == NULL) {
        fprintf(stderr, "bench_gen: no certificates in %s\n", path);
        return 0;
    }
    int n = sk_X509_num(certs);
    for (int i = 0; i < n; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!X509_digest(sk_X509_value(certs, i), EVP_sha256(), md, &md_len))
            break;
        fputs("cert,", out);
        put_hex(out, md, md_len);
        if (n == 1)
            fprintf(out, ",%s,\n", colon + 1);
        else
            fprintf(out, ",%s-%05d,\n", colon + 1, i);
    }
    sk_X509_pop_free(certs, X509_free);
    return 1;
}

static void sha256_hex(const unsigned char *data, size_t len,
                       char hex[2 * SHA256_DIGEST_LENGTH + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The SHA-256 of CA.pem's subject name (issuer-serial keys) and of its DER (its pin). */
static int issuer_hex(const char *ca_pem, char name_hex[2 * SHA256_DIGEST_LENGTH + 1],
                      char pin_hex[2 * SHA256_DIGEST_LENGTH + 1])
{
    STACK_OF(X509) *certs = bench_load_certs(ca_pem);
    X509 *ca = certs != NULL ? sk_X509_value(certs, 0) : NULL;
    const unsigned char *der = NULL;
    size_t der_len = 0;
    unsigned char *ca_der = NULL;
    int ca_len = ca != NULL ? i2d_X509(ca, &ca_der) : -1;
    int ok = ca_len > 0 && X509_NAME_get0_der(X509_get_subject_name(ca), &der, &der_len);
    if (ok) {
        sha256_hex(der, der_len, name_hex);
        sha256_hex(ca_der, (size_t)ca_len, pin_hex);
    }
    OPENSSL_free(ca_der);
    sk_X509_pop_free(certs, X509_free);
    return ok;
}

static void write_synthetic(FILE *out, long count, const char *issuer_hex, const char *pin_hex)
{
    uint64_t state = 0x5eedc0de2024ULL;
    for (long i = 0; i < count; i++) {
        switch (i % 10) {
        case 6:
        case 7:
            fputs("spki,", out);
            put_random_hex(out, &state, 32, 0);
            break;
        case 8:
            fprintf(out, "issuer-serial,%s:", issuer_hex);
            put_random_hex(out, &state, 16, 1);
            break;
        case 9:
            fputs("ski,", out);
            put_random_hex(out, &state, 20, 0);
            break;
        default:
            fputs("cert,", out);
            put_random_hex(out, &state, 32, 0);
            break;
        }
        fprintf(out, ",partner-%07ld,%s\n", i / MAPPINGS_PER_ACCOUNT, i % 10 >= 8 ? pin_hex : "");
    }
}

static int gen_csv(int argc, char **argv)
{
    const char *out_path = bench_opt(argc, argv, "--out");
    const char *issuer = bench_opt(argc, argv, "--issuer");
    const char *count_text = bench_opt(argc, argv, "--count");
    long count = count_text != NULL && strcmp(count_text, "0") == 0
                     ? 0
                     : bench_opt_long(argc, argv, "--count", -1);
    char name_hex[2 * SHA256_DIGEST_LENGTH + 1], pin_hex[2 * SHA256_DIGEST_LENGTH + 1];
    if (out_path == NULL || issuer == NULL || count < 0)
        return usage();
    if (!issuer_hex(issuer, name_hex, pin_hex)) {
        fprintf(stderr, "bench_gen: cannot read %s\n", issuer);
        return 1;
    }
    FILE *out = fopen(out_path, "w");
    if (out == NULL) {
        perror(out_path);
        return 1;
    }
    static char buffer[1 << 20];
    setvbuf(out, buffer, _IOFBF, sizeof(buffer));
    fputs("kind,key,account,pin\n", out);
    int ok = 1;
    for (int i = 1; ok && i + 1 < argc; i++) {
        if (strcmp(argv[i], "--real") == 0)
            ok = write_real(out, argv[++i]);
    }
    if (ok)
        write_synthetic(out, count, name_hex, pin_hex);
    if (fclose(out) != 0 || !ok) {
        fprintf(stderr, "bench_gen: writing %s failed\n", out_path);
        return 1;
    }
    return 0;
}

static int add_random_entry(X509_CRL *crl, const ASN1_TIME *when)
{
    unsigned char bytes[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    X509_REVOKED *r = X509_REVOKED_new();
    int ok = r != NULL && RAND_bytes(bytes, sizeof(bytes)) == 1;

    bytes[0] &= 0x7f; /* positive, as CAs make them */
    bytes[0] |= 0x40; /* always 16 bytes */
    ok = ok && (bn = BN_bin2bn(bytes, sizeof(bytes), NULL)) != NULL &&
         (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
         X509_REVOKED_set_serialNumber(r, serial) &&
         X509_REVOKED_set_revocationDate(r, (ASN1_TIME *)when) && X509_CRL_add0_revoked(crl, r);
    if (!ok)
        X509_REVOKED_free(r);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok;
}

static int gen_crl(int argc, char **argv)
{
    const char *pki = bench_opt(argc, argv, "--pki");
    const char *out = bench_opt(argc, argv, "--out");
    long count = bench_opt_long(argc, argv, "--count", 1000);
    char path[4096];
    int ok;

    if (pki == NULL || out == NULL || count < 0)
        return usage();
    snprintf(path, sizeof(path), "%s/ca-a.pem", pki);
    STACK_OF(X509) *ca_certs = bench_load_certs(path);
    snprintf(path, sizeof(path), "%s/ca-a.key", pki);
    EVP_PKEY *ca_key = load_key(path);
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *now = ASN1_TIME_adj(NULL, time(NULL), 0, -60);
    ASN1_TIME *next = ASN1_TIME_adj(NULL, time(NULL), 7, 0);
    ASN1_INTEGER *number = ASN1_INTEGER_new();

    ok = ca_certs != NULL && sk_X509_num(ca_certs) > 0 && ca_key != NULL && crl != NULL &&
         now != NULL && next != NULL && number != NULL && ASN1_INTEGER_set(number, 1) &&
         X509_CRL_set_version(crl, 1) &&
         X509_CRL_set_issuer_name(crl, X509_get_subject_name(sk_X509_value(ca_certs, 0))) &&
         X509_CRL_set1_lastUpdate(crl, now) && X509_CRL_set1_nextUpdate(crl, next) &&
         X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0);
    for (long i = 0; ok && i < count; i++)
        ok = add_random_entry(crl, now);
    ok = ok && X509_CRL_sort(crl) && X509_CRL_sign(crl, ca_key, EVP_sha256()) > 0;
    if (ok) {
        FILE *f = fopen(out, "wb");
        ok = f != NULL && i2d_X509_CRL_fp(f, crl) == 1;
        if (f != NULL && fclose(f) != 0)
            ok = 0;
    }
    if (!ok) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "bench_gen crl: failed\n");
    }
    ASN1_INTEGER_free(number);
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    EVP_PKEY_free(ca_key);
    sk_X509_pop_free(ca_certs, X509_free);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "leaves") == 0)
        return gen_leaves(argc, argv);
    if (strcmp(argv[1], "csv") == 0)
        return gen_csv(argc, argv);
    if (strcmp(argv[1], "crl") == 0)
        return gen_crl(argc, argv);
    return usage();
}
