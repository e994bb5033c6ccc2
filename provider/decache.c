/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Acceptances kept per thread, valid while nothing is committed.
 *
 * Inside a handshake the store read is the costly part of a decision, and
 * not for SQLite's work: the handshake's own cryptography has evicted
 * SQLite's code and pages from the CPU caches since the last connection.
 * A partner reconnecting with the same certificate gets the same answer as
 * long as the store has not changed, and the wal-index header says whether
 * it has (csp_dbpool_mark). So an acceptance is kept with the mark taken
 * before it was read, and reused only when:
 *   - exactly the same leaf and issuer ask again on this thread (below);
 *   - through the same database handle (a reopen after a replaced,
 *     changed or unreadable file, or a fork, forgets everything);
 *   - nothing has been committed since the mark, by the CLI or anything
 *     else writing the file through SQLite;
 *   - and the time is within what the acceptance allowed: not before it was
 *     made, not after its valid_until (mapping not_after, certificate ends).
 * Rejections are never kept: each one is decided and logged anew. A thread
 * keeps CSP_DECACHE_SLOTS entries, direct-mapped by signature bytes.
 *
 * "Exactly the same" without a digest per handshake: the entry holds the
 * certificates it was decided for, and csp_same_cert compares what their
 * DER is made of (the to-be-signed bytes, the signature algorithm and
 * value). The fingerprints the decision logs are those of the entry.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "csp.h"

#define CSP_DECACHE_SLOTS 32

typedef struct {
    X509 *leaf, *issuer; /* held: the certificates the acceptance is for */
    int64_t decided_at;
    cs_decision decision;
    csp_policy_state state;
    csp_store_mark mark;
} csp_decache_entry;

typedef struct {
    csp_decache_entry slots[CSP_DECACHE_SLOTS];
    X509 *issuer; /* the issuer fingerprinted last, and its fingerprint */
    char issuer_fp[CS_FP_HEX_LEN + 1];
} csp_decache_table;

static pthread_key_t csp_decache_key;
static pthread_once_t csp_decache_once = PTHREAD_ONCE_INIT;
static int csp_decache_key_ok;

static void csp_decache_entry_clear(csp_decache_entry *e)
{
    X509_free(e->leaf);
    X509_free(e->issuer);
    e->leaf = e->issuer = NULL;
}

static void csp_decache_table_free(void *p)
{
    csp_decache_table *table = p;

    for (int i = 0; i < CSP_DECACHE_SLOTS; i++)
        csp_decache_entry_clear(&table->slots[i]);
    X509_free(table->issuer);
    free(table);
}

static void csp_decache_key_create(void)
{
    csp_decache_key_ok = pthread_key_create(&csp_decache_key, csp_decache_table_free) == 0;
}

/* This thread's table; created on first use when `create`, else NULL until then. */
static csp_decache_table *csp_decache_table_get(int create)
{
    csp_decache_table *table;

    pthread_once(&csp_decache_once, csp_decache_key_create);
    if (!csp_decache_key_ok)
        return NULL;
    table = pthread_getspecific(csp_decache_key);
    if (table != NULL || !create)
        return table;
    table = calloc(1, sizeof(*table));
    if (table != NULL && pthread_setspecific(csp_decache_key, table) != 0) {
        free(table);
        table = NULL;
    }
    return table;
}

/*
 * 1 when a and b have the same DER, so the same SHA-256 fingerprint.
 * X509_cmp compares the SHA-1 of the DER that OpenSSL cached when it
 * decoded each certificate and then the to-be-signed bytes themselves;
 * the DER is those bytes, the signature algorithm and the signature value.
 */
int csp_same_cert(const X509 *a, const X509 *b)
{
    const ASN1_BIT_STRING *sig_a, *sig_b;
    const X509_ALGOR *alg_a, *alg_b;

    if (a == b)
        return a != NULL;
    if (a == NULL || b == NULL || X509_cmp(a, b) != 0)
        return 0;
    X509_get0_signature(&sig_a, &alg_a, a);
    X509_get0_signature(&sig_b, &alg_b, b);
    return sig_a != NULL && sig_b != NULL && ASN1_STRING_cmp(sig_a, sig_b) == 0 &&
           (sig_a->flags & 0x07) == (sig_b->flags & 0x07) && alg_a != NULL && alg_b != NULL &&
           X509_ALGOR_cmp(alg_a, alg_b) == 0;
}

/* The signature's last bytes: as good as random, and no digest to compute. */
static unsigned csp_cert_hash(const X509 *cert)
{
    const ASN1_BIT_STRING *sig = NULL;
    const unsigned char *p;
    unsigned h = 2166136261u;
    int len;

    X509_get0_signature(&sig, NULL, cert);
    if (sig == NULL || (len = ASN1_STRING_length(sig)) <= 0)
        return 0;
    p = ASN1_STRING_get0_data(sig) + len;
    for (int i = 0; i < 8 && i < len; i++)
        h = (h ^ *--p) * 16777619u;
    return h;
}

static unsigned csp_decache_slot(const X509 *leaf, const X509 *issuer)
{
    return (csp_cert_hash(leaf) ^ (csp_cert_hash(issuer) * 31u)) % CSP_DECACHE_SLOTS;
}

int csp_decache_get(const X509 *leaf, const X509 *issuer, int64_t now, cs_decision *d,
                    csp_policy_state *state)
{
    csp_decache_table *table = csp_decache_table_get(0);
    csp_decache_entry *e;

    if (table == NULL)
        return 0;
    e = &table->slots[csp_decache_slot(leaf, issuer)];
    if (e->leaf == NULL || !csp_same_cert(e->leaf, leaf) || !csp_same_cert(e->issuer, issuer))
        return 0;
    if (now < e->decided_at || now > e->decision.valid_until || !csp_dbpool_unchanged(&e->mark)) {
        csp_decache_entry_clear(e);
        return 0;
    }
    *d = e->decision;
    *state = e->state;
    return 1;
}

void csp_decache_put(X509 *leaf, X509 *issuer, const cs_decision *d, const csp_policy_state *state,
                     const csp_store_mark *mark, int64_t now)
{
    csp_decache_table *table;
    csp_decache_entry *e;

    if (!d->accept || !mark->valid || d->leaf_fp[0] == '\0' || d->issuer_fp[0] == '\0' ||
        (table = csp_decache_table_get(1)) == NULL)
        return;
    e = &table->slots[csp_decache_slot(leaf, issuer)];
    csp_decache_entry_clear(e);
    if (!X509_up_ref(leaf))
        return;
    if (!X509_up_ref(issuer)) {
        X509_free(leaf);
        return;
    }
    e->leaf = leaf;
    e->issuer = issuer;
    e->decided_at = now;
    e->decision = *d;
    e->state = *state;
    e->mark = *mark;
}

int csp_issuer_fp(X509 *issuer, char fp[CS_FP_HEX_LEN + 1])
{
    csp_decache_table *table = csp_decache_table_get(1);

    if (table != NULL && table->issuer != NULL && csp_same_cert(table->issuer, issuer)) {
        memcpy(fp, table->issuer_fp, sizeof(table->issuer_fp));
        return 1;
    }
    if (!cs_fp_of_cert(issuer, fp))
        return 0;
    if (table != NULL && X509_up_ref(issuer)) {
        X509_free(table->issuer);
        table->issuer = issuer;
        memcpy(table->issuer_fp, fp, sizeof(table->issuer_fp));
    }
    return 1;
}
