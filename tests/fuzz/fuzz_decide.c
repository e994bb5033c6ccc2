/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the policy function: the input is split into up to CHAIN_MAX DER
 * certificates (each decoded where the previous one ended), and that chain
 * is decided by cs_decide against a real SQLite store in a temp dir.
 *
 * The store is built from the committed certificates in tests/fuzz/pki
 * (the same PKI the seed chains were cut from, so accepting paths are
 * reachable): it pins Partner CA A (enabled) and CA B (disabled) and maps
 * alice by certificate, bob by issuer+serial, alice-renewed by SPKI and
 * carol by SKI. Decisions are made at a fixed time inside the PKI's
 * validity (a day after alice's notBefore), so the seeds never go stale. Whatever the input, an
 * acceptance must name a known account and come from a chain whose element
 * 1 is exactly the enabled pin; a rejection must carry a reason and no
 * account; without a store everything is rejected (store-unavailable, or
 * chain-invalid when there is no leaf to decide).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "cs_store.h"

#define CHAIN_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle failure is a crash libFuzzer keeps, with the broken promise named. */
#define require(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static cs_db *db;
static char tmpdir[512];
static char db_path[sizeof(tmpdir) + 16];
static char pinned_fp[CS_FP_HEX_LEN + 1];
static int64_t decision_time;

static void remove_store(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[sizeof(db_path) + 8];
    size_t i;

    cs_db_close(db);
    db = NULL;
    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

static X509 *load_cert(const char *name)
{
    char path[1024];
    FILE *f;
    X509 *cert;

    snprintf(path, sizeof(path), "%s/%s.der", FUZZ_PKI_DIR, name);
    f = fopen(path, "rb");
    require(f != NULL);
    cert = d2i_X509_fp(f, NULL);
    fclose(f);
    require(cert != NULL);
    return cert;
}

static void map_leaf(const char *leaf_name, cs_kind kind, const char *account)
{
    X509 *leaf = load_cert(leaf_name);
    cs_mapping_spec spec;
    char issuer_fp[CS_FP_HEX_LEN + 1];

    memset(&spec, 0, sizeof(spec));
    require(cs_mapping_spec_from_cert(&spec, leaf, kind) == CS_OK);
    spec.account = account;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    /* ski and issuer-serial: bound to the pin that issued the leaf, as `map add` binds them. */
    if (cs_kind_needs_pin(kind)) {
        require(cs_pin_find_issuer(db, leaf, issuer_fp) == CS_OK);
        spec.pin_fp = issuer_fp;
    }
    require(cs_mapping_add(db, &spec, 1, NULL) == CS_OK);
    X509_free(leaf);
}

static void pin_ca(const char *name, char fp[CS_FP_HEX_LEN + 1])
{
    X509 *ca = load_cert(name);

    require(cs_pin_add(db, ca, name, fp) == CS_OK);
    X509_free(ca);
}

static int64_t day_after_not_before(const char *name)
{
    X509 *cert = load_cert(name);
    struct tm tm;

    require(ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm) == 1);
    X509_free(cert);
    return (int64_t)timegm(&tm) + 86400;
}

static void make_store(void)
{
    char fp[CS_FP_HEX_LEN + 1];

    /*
     * libFuzzer ends a timed run with _exit (no atexit handlers): run.sh
     * points TMPDIR at a directory it removes itself.
     */
    snprintf(tmpdir, sizeof(tmpdir), "%s/certstore-fuzz-decide-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    require(mkdtemp(tmpdir) != NULL);
    atexit(remove_store);
    snprintf(db_path, sizeof(db_path), "%s/fuzz.db", tmpdir);
    require(cs_db_open(&db, db_path, CS_OPEN_CREATE) == CS_OK);
    require(cs_db_migrate(db) == CS_OK);
    require(cs_db_begin(db, "fuzz_decide setup") == CS_OK);
    pin_ca("ca-a", pinned_fp);
    pin_ca("ca-b", fp);
    require(cs_pin_set_enabled(db, fp, 0) == CS_OK);
    map_leaf("alice", CS_KIND_CERT, "alice");
    map_leaf("bob", CS_KIND_ISSUER_SERIAL, "bob");
    map_leaf("alice-renewed", CS_KIND_SPKI, "alice-key");
    map_leaf("carol", CS_KIND_SKI, "carol");
    require(cs_db_commit(db) == CS_OK);
    cs_db_close(db);
    /* Decide as the servers do: through a read-only handle. */
    require(cs_db_open(&db, db_path, CS_OPEN_READONLY) == CS_OK);
    decision_time = day_after_not_before("alice");
}

static STACK_OF(X509) * chain_from(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    const unsigned char *p = data, *end = data + size;

    require(chain != NULL);
    while (p < end && sk_X509_num(chain) < CHAIN_MAX) {
        X509 *cert = d2i_X509(NULL, &p, (long)(end - p));

        if (cert == NULL)
            break;
        require(sk_X509_push(chain, cert) > 0);
    }
    ERR_clear_error();
    return chain;
}

static int known_account(const char *name)
{
    static const char *const accounts[] = {"alice", "bob", "alice-key", "carol"};
    size_t i;

    for (i = 0; i < sizeof(accounts) / sizeof(accounts[0]); i++)
        if (strcmp(name, accounts[i]) == 0)
            return 1;
    return 0;
}

static void check_decision(STACK_OF(X509) * chain, const cs_decision *d)
{
    char fp[CS_FP_HEX_LEN + 1];

    if (!d->accept) {
        require(d->reason != CS_REASON_NONE && d->reason < CS_REASON_COUNT);
        require(d->account[0] == '\0');
        require(cs_reason_token(d->reason) != NULL);
        return;
    }
    require(d->reason == CS_REASON_NONE);
    require(known_account(d->account));
    require(sk_X509_num(chain) >= 2);
    require(cs_fp_of_cert(sk_X509_value(chain, 1), fp) == 1);
    require(strcmp(fp, pinned_fp) == 0);
    require(strcmp(d->issuer_fp, pinned_fp) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509) * chain;
    cs_decision d;

    if (db == NULL)
        make_store();
    chain = chain_from(data, size);
    cs_decide(db, chain, decision_time, &d);
    check_decision(chain, &d);
    cs_decide(NULL, chain, decision_time, &d);
    require(!d.accept);
    require(d.reason == CS_REASON_STORE_UNAVAILABLE || d.reason == CS_REASON_CHAIN_INVALID);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return 0;
}
