/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prefetched OCSP answers: one per (issuing pin, serial) of a certificate a
 * mapping keeps, stored only after the response verified against that pin
 * alone (the CA itself, or a responder it issued with the OCSP-signing EKU).
 * The decision reads the stored answer (policy.c, cs_revocation_judge in
 * crl.c); nothing here runs on the handshake path. Writes are quiet
 * (meta.bulk_write) and bump the generation explicitly when a decision can
 * become stricter, as crl.c does. OpenSSL's apps/ocsp.c shows the API.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "cs_internal.h"

/* thisUpdate a little ahead of our clock is fine (RFC 6960 4.2.2.1 leaves it to us). */
#define OCSP_CLOCK_SKEW 300
#define OCSP_SUBJECT_MAX 1024

const char *cs_ocsp_status_name(cs_ocsp_status status)
{
    switch (status) {
    case CS_OCSP_GOOD:
        return "good";
    case CS_OCSP_REVOKED:
        return "revoked";
    case CS_OCSP_UNKNOWN:
        return "unknown";
    case CS_OCSP_NONE:
        break;
    }
    return "none";
}

/* ---- which certificates -------------------------------------------------------- */

typedef struct {
    X509 *ca;
    int64_t id;
    char fp[CS_FP_HEX_LEN + 1];
} loaded_pin;

typedef struct {
    loaded_pin *pins;
    int count, cap;
    int failed;
} pin_set;

static int load_pin(const cs_pin *pin, void *arg)
{
    pin_set *set = arg;
    const unsigned char *p = pin->der;
    X509 *ca;

    if (!pin->enabled)
        return 0;
    if ((ca = d2i_X509(NULL, &p, (long)pin->der_len)) == NULL) {
        ERR_clear_error();
        return 0;
    }
    if (set->count == set->cap) {
        int cap = set->cap != 0 ? 2 * set->cap : 16;
        loaded_pin *grown = OPENSSL_realloc(set->pins, (size_t)cap * sizeof(*grown));

        if (grown == NULL) {
            X509_free(ca);
            set->failed = 1;
            return 1;
        }
        set->pins = grown;
        set->cap = cap;
    }
    set->pins[set->count].ca = ca;
    set->pins[set->count].id = pin->id;
    memcpy(set->pins[set->count].fp, pin->fp, sizeof(set->pins[0].fp));
    set->count++;
    return 0;
}

static void free_pins(pin_set *set)
{
    for (int i = 0; i < set->count; i++)
        X509_free(set->pins[i].ca);
    OPENSSL_free(set->pins);
}

/* The pin that issued cert: its name and its signature, and the bound pin if any. */
static const loaded_pin *issuing_pin(const pin_set *set, X509 *cert, const char *bound)
{
    for (int i = 0; i < set->count; i++) {
        const loaded_pin *pin = &set->pins[i];
        EVP_PKEY *key = X509_get0_pubkey(pin->ca);

        if (bound != NULL && strcmp(bound, pin->fp) != 0)
            continue;
        if (X509_NAME_cmp(X509_get_subject_name(pin->ca), X509_get_issuer_name(cert)) == 0 &&
            key != NULL && X509_verify(cert, key) == 1)
            return pin;
        ERR_clear_error();
    }
    return NULL;
}

typedef struct {
    int64_t pin_id;
    unsigned char serial[CS_SERIAL_MAX];
    size_t len;
} seen_key;

/* (pin, serial) pairs already handed out: open addressing, so an IIS-sized store stays linear. */
typedef struct {
    seen_key *slots; /* len 0: empty (a serial key is never empty) */
    size_t cap, count;
} seen_set;

static uint64_t seen_hash(const seen_key *k)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)k->pin_id;

    for (size_t i = 0; i < k->len; i++)
        h = (h ^ k->serial[i]) * 1099511628211ULL;
    return h;
}

static seen_key *seen_slot(seen_key *slots, size_t cap, const seen_key *k)
{
    size_t i = (size_t)seen_hash(k) & (cap - 1);

    while (slots[i].len != 0 && !(slots[i].pin_id == k->pin_id && slots[i].len == k->len &&
                                  memcmp(slots[i].serial, k->serial, k->len) == 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* 1: added, 0: seen before, -1: out of memory. */
static int seen_add(seen_set *set, const seen_key *k)
{
    seen_key *slot;

    if (2 * (set->count + 1) > set->cap) {
        size_t cap = set->cap != 0 ? 2 * set->cap : 256;
        seen_key *slots = OPENSSL_zalloc(cap * sizeof(*slots));

        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i].len != 0)
                *seen_slot(slots, cap, &set->slots[i]) = set->slots[i];
        OPENSSL_free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    slot = seen_slot(set->slots, set->cap, k);
    if (slot->len != 0)
        return 0;
    *slot = *k;
    set->count++;
    return 1;
}

static const char sql_targets[] =
    "SELECT c.mapping_id, c.der, m.pin_fp FROM mapping_certs c"
    " JOIN mappings m ON m.id = c.mapping_id WHERE m.enabled ORDER BY c.mapping_id";

cs_status cs_ocsp_targets(cs_db *db, const char *pin_fp, cs_ocsp_target_cb cb, void *arg)
{
    pin_set set = {0};
    seen_set seen = {0};
    int rc = SQLITE_DONE, added;
    sqlite3_stmt *stmt;
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((status = cs_pin_foreach(db, load_pin, &set)) != CS_OK || set.failed) {
        free_pins(&set);
        return status != CS_OK ? status : cs_fail(db, CS_ERR, "out of memory");
    }
    if ((stmt = cs_stmt_sql(db, STMT_OCSP_TARGETS, sql_targets)) == NULL) {
        free_pins(&set);
        return CS_ERR;
    }
    status = CS_OK;
    while (status == CS_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *der = sqlite3_column_blob(stmt, 1);
        const unsigned char *bound = sqlite3_column_text(stmt, 2);
        int der_len = sqlite3_column_bytes(stmt, 1);
        X509 *cert = der != NULL ? d2i_X509(NULL, &der, der_len) : NULL;
        const loaded_pin *pin = cert != NULL ? issuing_pin(&set, cert, (const char *)bound) : NULL;
        seen_key k = {0};

        ERR_clear_error();
        if (pin == NULL || (pin_fp != NULL && strcmp(pin_fp, pin->fp) != 0) ||
            !cs_serial_key(X509_get0_serialNumber(cert), k.serial, &k.len)) {
            X509_free(cert);
            continue;
        }
        k.pin_id = pin->id;
        if ((added = seen_add(&seen, &k)) < 0) {
            status = cs_fail(db, CS_ERR, "out of memory");
        } else if (added) {
            cs_ocsp_target t = {
                .mapping_id = sqlite3_column_int64(stmt, 0), .cert = cert, .issuer = pin->ca};

            memcpy(t.pin_fp, pin->fp, sizeof(t.pin_fp));
            if (cb(&t, arg) != 0)
                rc = SQLITE_DONE;
        }
        X509_free(cert);
        if (rc == SQLITE_DONE)
            break;
    }
    if (status == CS_OK && rc != SQLITE_DONE)
        status = cs_sql_fail(db, "reading the mapped certificates");
    sqlite3_reset(stmt);
    OPENSSL_free(seen.slots);
    free_pins(&set);
    return status;
}

/* ---- verifying a response ----------------------------------------------------- */

typedef struct {
    cs_ocsp_status status;
    int reason;
    int64_t revoked_at, this_update, next_update;
} ocsp_answer;

/* Signed by the issuer or its delegated responder, chained to the issuer alone. */
static cs_status verify_signature(cs_db *db, OCSP_BASICRESP *bs, X509 *issuer)
{
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *certs = sk_X509_new_null();
    int ok = 0;

    if (store != NULL && certs != NULL && X509_STORE_add_cert(store, issuer) &&
        sk_X509_push(certs, issuer) > 0)
        /*
         * NOEXPLICIT: a responder certificate the CA issued without the
         * OCSP-signing EKU must not pass on the trust anchor's trust alone.
         * PARTIAL_CHAIN: the pin may be an intermediate; it is the anchor.
         */
        ok = OCSP_basic_verify(bs, certs, store, OCSP_NOEXPLICIT | OCSP_PARTIAL_CHAIN) == 1;
    sk_X509_free(certs);
    X509_STORE_free(store);
    if (ok)
        return CS_OK;
    {
        unsigned long e = ERR_peek_last_error();
        char why[160] = "";

        if (e != 0)
            ERR_error_string_n(e, why, sizeof(why));
        ERR_clear_error();
        return cs_fail(db, CS_INVALID,
                       "the response is not signed by the issuing CA or a responder it "
                       "authorised (OCSP-signing EKU)%s%s",
                       why[0] != '\0' ? ": " : "", why);
    }
}

static cs_status read_times(cs_db *db, ASN1_GENERALIZEDTIME *thisupd, ASN1_GENERALIZEDTIME *nextupd,
                            ASN1_GENERALIZEDTIME *revtime, ocsp_answer *a)
{
    int ok = 0;

    a->this_update = cs_asn1_time_to_unix(thisupd, &ok);
    if (!ok)
        return cs_fail(db, CS_INVALID, "the answer's thisUpdate cannot be read");
    a->next_update = CS_TIME_NONE;
    if (nextupd != NULL) {
        a->next_update = cs_asn1_time_to_unix(nextupd, &ok);
        if (!ok || a->next_update < a->this_update)
            return cs_fail(db, CS_INVALID,
                           "the answer's nextUpdate cannot be read or is before its thisUpdate");
    }
    a->revoked_at = CS_TIME_NONE;
    if (revtime != NULL) {
        int64_t t = cs_asn1_time_to_unix(revtime, &ok);

        if (ok)
            a->revoked_at = t;
    }
    return CS_OK;
}

static cs_status check_response(cs_db *db, X509 *cert, X509 *issuer, OCSP_REQUEST *req,
                                const unsigned char *der, size_t len, ocsp_answer *a)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *id = NULL;
    ASN1_GENERALIZEDTIME *revtime = NULL, *thisupd = NULL, *nextupd = NULL;
    int status = -1, reason = -1, rstatus;
    cs_status st = CS_INVALID;

    if (len == 0 || len > (size_t)INT32_MAX ||
        (resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) == NULL || p != der + len) {
        cs_fail(db, CS_INVALID, "not an OCSP response (DER)");
        goto done;
    }
    if ((rstatus = OCSP_response_status(resp)) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        cs_fail(db, CS_INVALID, "the responder answered %s", OCSP_response_status_str(rstatus));
        goto done;
    }
    if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
        cs_fail(db, CS_INVALID, "not a basic OCSP response");
        goto done;
    }
    /* 1 echoed, 2 none sent, -1 not echoed (optional), 3 only in the response. */
    if (req != NULL && OCSP_check_nonce(req, bs) == 0) {
        cs_fail(db, CS_INVALID, "the response's nonce is not the one sent (a replay?)");
        goto done;
    }
    if (verify_signature(db, bs, issuer) != CS_OK)
        goto done;
    if ((id = OCSP_cert_to_id(NULL, cert, issuer)) == NULL ||
        !OCSP_resp_find_status(bs, id, &status, &reason, &revtime, &thisupd, &nextupd)) {
        cs_fail(db, CS_INVALID, "the response has no answer for this certificate");
        goto done;
    }
    if (!OCSP_check_validity(thisupd, nextupd, OCSP_CLOCK_SKEW, -1)) {
        cs_fail(db, CS_INVALID,
                "the answer is not current (thisUpdate ahead of the clock or nextUpdate passed)");
        goto done;
    }
    if (status != V_OCSP_CERTSTATUS_GOOD && status != V_OCSP_CERTSTATUS_REVOKED &&
        status != V_OCSP_CERTSTATUS_UNKNOWN) {
        cs_fail(db, CS_INVALID, "the answer's status %d is not good, revoked or unknown", status);
        goto done;
    }
    a->status = status == V_OCSP_CERTSTATUS_GOOD      ? CS_OCSP_GOOD
                : status == V_OCSP_CERTSTATUS_REVOKED ? CS_OCSP_REVOKED
                                                      : CS_OCSP_UNKNOWN;
    a->reason = status == V_OCSP_CERTSTATUS_REVOKED ? reason : -1;
    st = read_times(db, thisupd, nextupd, status == V_OCSP_CERTSTATUS_REVOKED ? revtime : NULL, a);
done:
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return st;
}

/* ---- storing ------------------------------------------------------------------ */

typedef struct {
    int64_t pin_id;
    unsigned char serial[CS_SERIAL_MAX];
    size_t serial_len;
    char pin_fp[CS_FP_HEX_LEN + 1];
    char subject[OCSP_SUBJECT_MAX];
} answer_key;

static const char sql_pin_id[] = "SELECT id FROM pins WHERE fp = ?1";

/* The pin of issuer (it must be pinned) and cert's serial. */
static cs_status key_of(cs_db *db, X509 *cert, X509 *issuer, answer_key *k)
{
    sqlite3_stmt *stmt;
    int rc;

    memset(k, 0, sizeof(*k));
    if (cert == NULL || issuer == NULL)
        return cs_fail(db, CS_INVALID, "no certificate given");
    if (!cs_fp_of_cert(issuer, k->pin_fp))
        return cs_fail(db, CS_INVALID, "cannot fingerprint the issuer");
    if (!cs_serial_key(X509_get0_serialNumber(cert), k->serial, &k->serial_len))
        return cs_fail(db, CS_INVALID, "serial number longer than %d bytes", CS_SERIAL_MAX - 1);
    if ((stmt = cs_stmt_sql(db, STMT_OCSP_PIN_ID, sql_pin_id)) == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, k->pin_fp, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        k->pin_id = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "the issuer %s is not pinned", k->pin_fp);
    if (rc != SQLITE_ROW)
        return cs_sql_fail(db, "looking up the pin");
    cs_name_text(X509_get_subject_name(cert), k->subject, sizeof(k->subject));
    return CS_OK;
}

static const char sql_current[] = "SELECT status, this_update, next_update, revoked_at"
                                  " FROM ocsp_answers WHERE pin_id = ?1 AND serial = ?2";

static cs_status read_current(cs_db *db, const answer_key *k, ocsp_answer *old)
{
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_OCSP_CURRENT, sql_current);
    int rc;

    memset(old, 0, sizeof(*old));
    old->status = CS_OCSP_NONE;
    old->next_update = old->this_update = old->revoked_at = CS_TIME_NONE;
    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, k->pin_id);
    sqlite3_bind_blob(stmt, 2, k->serial, (int)k->serial_len, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        old->status = (cs_ocsp_status)sqlite3_column_int(stmt, 0);
        old->this_update = cs_column_time(stmt, 1);
        old->next_update = cs_column_time(stmt, 2);
        old->revoked_at = cs_column_time(stmt, 3);
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading the answer");
}

static const char sql_put[] =
    "INSERT INTO ocsp_answers (pin_id, serial, subject, status, revoked_at, reason, this_update,"
    " next_update, updated, url, fetched, fetch_result)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?9, ?11)"
    " ON CONFLICT (pin_id, serial) DO UPDATE SET subject = excluded.subject,"
    " status = excluded.status, revoked_at = excluded.revoked_at, reason = excluded.reason,"
    " this_update = excluded.this_update, next_update = excluded.next_update,"
    " updated = excluded.updated, url = excluded.url, fetched = excluded.fetched,"
    " fetch_result = excluded.fetch_result";

static cs_status put_answer(cs_db *db, const answer_key *k, const ocsp_answer *a, const char *url,
                            int64_t now, const char *result)
{
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_OCSP_PUT, sql_put);

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, k->pin_id);
    sqlite3_bind_blob(stmt, 2, k->serial, (int)k->serial_len, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, k->subject, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, (int)a->status);
    cs_bind_time(stmt, 5, a->revoked_at);
    if (a->reason >= 0)
        sqlite3_bind_int(stmt, 6, a->reason);
    sqlite3_bind_int64(stmt, 7, a->this_update);
    cs_bind_time(stmt, 8, a->next_update);
    sqlite3_bind_int64(stmt, 9, now);
    cs_bind_text_or_null(stmt, 10, url);
    sqlite3_bind_text(stmt, 11, result, -1, SQLITE_STATIC);
    return cs_stmt_exec(db, stmt, "storing the OCSP answer");
}

/* When the decision can become stricter: revoked now, good no more, or good for less long. */
static int stricter(const ocsp_answer *old, const ocsp_answer *a)
{
    if (a->status == CS_OCSP_REVOKED)
        return old->status != CS_OCSP_REVOKED;
    if (old->status == CS_OCSP_GOOD && a->status != CS_OCSP_GOOD)
        return 1;
    return old->status == CS_OCSP_GOOD && old->next_update != CS_TIME_NONE &&
           a->next_update != CS_TIME_NONE && a->next_update < old->next_update;
}

cs_status cs_ocsp_store(cs_db *db, X509 *cert, X509 *issuer, OCSP_REQUEST *req,
                        const unsigned char *der, size_t len, const char *url, int64_t now,
                        cs_ocsp_result *res)
{
    answer_key k;
    ocsp_answer a = {.status = CS_OCSP_NONE}, old;
    cs_status status = cs_require_write(db);

    memset(res, 0, sizeof(*res));
    res->old_status = res->status = CS_OCSP_NONE;
    if (status != CS_OK)
        return status;
    if (url != NULL && strlen(url) > 4096)
        return cs_fail(db, CS_INVALID, "URL longer than 4096 bytes");
    if ((status = key_of(db, cert, issuer, &k)) != CS_OK ||
        (status = check_response(db, cert, issuer, req, der, len, &a)) != CS_OK ||
        (status = read_current(db, &k, &old)) != CS_OK)
        return status;
    if (old.status != CS_OCSP_NONE && a.this_update < old.this_update)
        return cs_fail(db, CS_INVALID, "the answer is older than the stored one (thisUpdate)");
    res->old_status = old.status;
    res->status = a.status;
    res->revoked_at = a.revoked_at;
    res->this_update = a.this_update;
    res->next_update = a.next_update;
    /* A later thisUpdate/nextUpdate for the same status is a renewal, not a change. */
    res->unchanged = old.status == a.status && old.revoked_at == a.revoked_at;
    if ((status = cs_quiet_writes_begin(db)) != CS_OK ||
        (status = put_answer(db, &k, &a, url, now,
                             res->unchanged ? "ok: unchanged" : "ok: updated")) != CS_OK)
        return status;
    if (stricter(&old, &a)) {
        res->generation_bumped = 1;
        if ((status = cs_generation_bump(db)) != CS_OK)
            return status;
    }
    if (res->unchanged)
        return CS_OK;
    return cs_log_change(db, "ocsp refresh pin=%s subject=%s status=%s (was %s)", k.pin_fp,
                         k.subject, cs_ocsp_status_name(a.status), cs_ocsp_status_name(old.status));
}

static const char sql_note_failure[] =
    "INSERT INTO ocsp_answers (pin_id, serial, subject, url, fetched, fetch_result)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT (pin_id, serial) DO UPDATE SET fetched = excluded.fetched,"
    " fetch_result = excluded.fetch_result";

cs_status cs_ocsp_note_failure(cs_db *db, X509 *cert, X509 *issuer, const char *url, int64_t now,
                               const char *why)
{
    char result[600];
    answer_key k;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status != CS_OK)
        return status;
    if ((url != NULL && strlen(url) > 4096) || why == NULL)
        return cs_fail(db, CS_INVALID, "fetch details too long or missing");
    if ((status = key_of(db, cert, issuer, &k)) != CS_OK ||
        (status = cs_quiet_writes_begin(db)) != CS_OK)
        return status;
    snprintf(result, sizeof(result), "failed: %.500s", why);
    if ((stmt = cs_stmt_sql(db, STMT_OCSP_NOTE_FAILURE, sql_note_failure)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, k.pin_id);
    sqlite3_bind_blob(stmt, 2, k.serial, (int)k.serial_len, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, k.subject, -1, SQLITE_STATIC);
    cs_bind_text_or_null(stmt, 4, url);
    sqlite3_bind_int64(stmt, 5, now);
    sqlite3_bind_text(stmt, 6, result, -1, SQLITE_STATIC);
    return cs_stmt_exec(db, stmt, "recording the OCSP query");
}

/* ---- listing --------------------------------------------------------------------- */

static const char sql_list[] =
    "SELECT p.fp, o.serial, o.subject, o.status, o.revoked_at, o.reason, o.this_update,"
    " o.next_update, o.updated, o.url, o.fetched, o.fetch_result"
    " FROM ocsp_answers o JOIN pins p ON p.id = o.pin_id ORDER BY p.id, o.serial";

/* A serial key (cs_serial_key) as hex; a negative serial's leading 0x00 as "-". */
static void serial_hex(const unsigned char *key, int len, char *buf, size_t buflen)
{
    size_t at = 0;
    int i = 0;

    buf[0] = '\0';
    if (len > 1 && key[0] == 0x00 && buflen > 1) {
        buf[at++] = '-';
        buf[at] = '\0';
        i = 1;
    }
    for (; i < len && at + 3 <= buflen; i++, at += 2)
        snprintf(buf + at, buflen - at, "%02X", key[i]);
}

cs_status cs_ocsp_foreach(cs_db *db, int64_t now, cs_ocsp_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt_sql(db, STMT_OCSP_LIST, sql_list)) == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *fp = sqlite3_column_text(stmt, 0);
        const unsigned char *subject = sqlite3_column_text(stmt, 2);
        cs_ocsp_info info;
        int64_t until;

        memset(&info, 0, sizeof(info));
        snprintf(info.pin_fp, sizeof(info.pin_fp), "%s", fp ? (const char *)fp : "");
        serial_hex(sqlite3_column_blob(stmt, 1), sqlite3_column_bytes(stmt, 1), info.serial,
                   sizeof(info.serial));
        info.subject = subject ? (const char *)subject : "";
        info.status = sqlite3_column_type(stmt, 3) == SQLITE_NULL
                          ? CS_OCSP_NONE
                          : (cs_ocsp_status)sqlite3_column_int(stmt, 3);
        info.revoked_at = cs_column_time(stmt, 4);
        info.reason =
            sqlite3_column_type(stmt, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(stmt, 5);
        info.this_update = cs_column_time(stmt, 6);
        info.next_update = cs_column_time(stmt, 7);
        info.updated = cs_column_time(stmt, 8);
        info.url = (const char *)sqlite3_column_text(stmt, 9);
        info.fetched = cs_column_time(stmt, 10);
        info.fetch_result = (const char *)sqlite3_column_text(stmt, 11);
        until = info.next_update != CS_TIME_NONE ? info.next_update
                : info.this_update != CS_TIME_NONE
                    ? info.this_update + CS_OCSP_NO_NEXT_UPDATE_VALIDITY
                    : CS_TIME_NONE;
        info.current = info.status != CS_OCSP_NONE && info.status != CS_OCSP_UNKNOWN &&
                       until != CS_TIME_NONE && now <= until;
        if (cb(&info, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading the OCSP answers");
}
