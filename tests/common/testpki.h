/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared test PKI: a fixed set of CAs and leaves, built in memory with
 * the OpenSSL 3 API, for in-process tests and (through mkpki) as PEM files
 * for tests that drive real servers.
 *
 * Layout written by testpki_write() (all PEM):
 *   root.pem/.key, roots.pem (copy of root.pem)
 *   ca-a, ca-b, ca-twin, ca-a-renewed (.pem/.key)  intermediates under root
 *   server.pem/.key                   CN=localhost, issued by root
 *   NAME.pem, NAME.key, NAME-chain.pem for the client leaves
 *   selfsigned.pem/.key, direct.pem/.key
 */
#ifndef CERTSTORE_TESTPKI_H
#define CERTSTORE_TESTPKI_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    X509 *cert;
    EVP_PKEY *key;
} testpki_cred;

typedef struct {
    testpki_cred root;          /* trust anchor */
    testpki_cred ca_a;          /* "Partner CA A": the one tests pin */
    testpki_cred ca_b;          /* another intermediate under root, not pinned */
    testpki_cred ca_twin;       /* same subject DN as ca_a, different key */
    testpki_cred ca_a_renewed;  /* ca_a renewed: same subject DN and key */
    testpki_cred server;        /* CN=localhost, SAN localhost + 127.0.0.1 */
    testpki_cred alice;         /* ca_a, clientAuth */
    testpki_cred alice_renewed; /* ca_a, alice's key, new serial */
    testpki_cred bob;           /* ca_a, clientAuth */
    testpki_cred carol;         /* ca_b, clientAuth */
    testpki_cred mallory;       /* ca_twin, alice's issuer DN and serial */
    testpki_cred eve;           /* ca_b, its own key but alice's SKI */
    testpki_cred expired;       /* ca_a, notAfter in the past */
    testpki_cred noclient;      /* ca_a, EKU serverAuth only */
    testpki_cred selfsigned;    /* self-signed, clientAuth */
    testpki_cred direct;        /* issued by root directly, clientAuth */
} testpki;

/* Build the whole PKI; ECDSA P-256 leaves, or RSA-2048 when rsa != 0. NULL on failure. */
testpki *testpki_new(int rsa);
void testpki_free(testpki *pki);

/* Write the fixed file layout into an existing directory. 1 on success. */
int testpki_write(const testpki *pki, const char *dir);

/*
 * A credential by its file-layout name ("root", "ca-a", "alice-renewed", ...);
 * NULL if unknown.
 */
const testpki_cred *testpki_get(const testpki *pki, const char *name);

/* The credential that issued `cred` (itself for root and selfsigned); NULL if unknown. */
const testpki_cred *testpki_issuer_of(const testpki *pki, const testpki_cred *cred);

/*
 * The chain OpenSSL would build and verify for a leaf, leaf first, up to and
 * including the self-signed top (leaf, issuing CA, root). Each element is
 * up-referenced: free with sk_X509_pop_free(chain, X509_free).
 */
STACK_OF(X509) * testpki_chain_for(const testpki *pki, const testpki_cred *leaf);

/* A chain of exactly the given certificates, NULL-terminated, each up-referenced. */
STACK_OF(X509) * testpki_chain(X509 *first, ...);

/*
 * Add one extension in OpenSSL's config syntax ("critical,CA:FALSE"), with
 * `issuer` (the certificate itself when NULL) for the key identifiers.
 * 1 on success.
 */
int testpki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);

/* Write one certificate (or several, NULL-terminated) as PEM to path. 1 on success. */
int testpki_write_pem(const char *path, X509 *first, ...);

/* mkdtemp("/tmp/certstore-test-XXXXXX"); caller frees. NULL on failure. */
char *testpki_tmpdir(void);
/* Remove a directory tree (for cleanup); 1 on success. */
int testpki_rmtree(const char *dir);

#ifdef __cplusplus
}
#endif
#endif /* CERTSTORE_TESTPKI_H */
