/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pin store: issuing CAs that may vouch for clients, by fingerprint.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cs_internal.h"

#define SUBJECT_MAX 1024

static int is_ca_certificate(X509 *cert)
{
    uint32_t flags = X509_get_extension_flags(cert);

    return !(flags & EXFLAG_INVALID) && (flags & EXFLAG_BCONS) && (flags & EXFLAG_CA);
}

static void subject_text(const X509 *cert, char *buf, size_t buflen)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int n = 0;

    buf[0] = '\0';
    if (bio == NULL)
        return;
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0)
        n = BIO_read(bio, buf, (int)buflen - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
}

static cs_status insert_pin(cs_db *db, X509 *ca, const char *fp, const char *subject,
                            int64_t not_after, const char *note)
{
    unsigned char *der = NULL;
    int der_len = i2d_X509(ca, &der);
    sqlite3_stmt *stmt;
    int rc;

    if (der_len <= 0)
        return cs_fail(db, CS_INVALID, "cannot encode the CA certificate");
    if ((stmt = cs_stmt(db, STMT_PIN_ADD)) == NULL) {
        OPENSSL_free(der);
        return CS_ERR;
    }
    sqlite3_bind_text(stmt, 1, fp, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 2, der, der_len, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, not_after);
    sqlite3_bind_text(stmt, 5, note ? note : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, cs_now());
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    OPENSSL_free(der);
    if (rc == SQLITE_DONE)
        return CS_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return cs_fail(db, CS_EXISTS, "pin %s already exists", fp);
    return cs_sql_fail(db, "adding the pin");
}

cs_status cs_pin_add(cs_db *db, X509 *ca, const char *note, char fp_out[CS_FP_HEX_LEN + 1])
{
    char fp[CS_FP_HEX_LEN + 1], subject[SUBJECT_MAX];
    int64_t not_after;
    int ok;
    cs_status status = cs_require_write(db);

    if (status != CS_OK)
        return status;
    if (ca == NULL)
        return cs_fail(db, CS_INVALID, "no certificate given");
    if (!is_ca_certificate(ca))
        return cs_fail(db, CS_INVALID,
                       "not a CA certificate (no basicConstraints CA:TRUE): only issuing CAs "
                       "can be pinned");
    if (note != NULL && strlen(note) > CS_NOTE_MAX)
        return cs_fail(db, CS_INVALID, "note longer than %d bytes", CS_NOTE_MAX);
    not_after = cs_asn1_time_to_unix(X509_get0_notAfter(ca), &ok);
    if (!ok || !cs_fp_of_cert(ca, fp))
        return cs_fail(db, CS_INVALID, "cannot read the CA certificate");
    subject_text(ca, subject, sizeof(subject));
    status = insert_pin(db, ca, fp, subject, not_after, note);
    if (status == CS_OK)
        status = cs_log_change(db, "pin add fp=%s subject=%s", fp, subject);
    if (status == CS_OK && fp_out != NULL)
        memcpy(fp_out, fp, sizeof(fp));
    return status;
}

static cs_status normalise_fp_arg(cs_db *db, const char *fp, char hex[CS_FP_HEX_LEN + 1])
{
    if (!cs_fp_normalise(fp, hex))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                       fp ? fp : "");
    return CS_OK;
}

/* 1 enabled, 0 disabled; CS_NOTFOUND when there is no such pin. */
static cs_status pin_enabled(cs_db *db, const char *fp, int *enabled)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_PIN_ENABLED_GET);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, fp, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *enabled = sqlite3_column_int(stmt, 0) != 0;
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no pin %s", fp);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the pin");
}

cs_status cs_pin_remove(cs_db *db, const char *fp)
{
    char hex[CS_FP_HEX_LEN + 1];
    int enabled = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = normalise_fp_arg(db, fp, hex);
    if (status == CS_OK)
        status = pin_enabled(db, hex, &enabled);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_PIN_REMOVE)) == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
    status = cs_stmt_exec(db, stmt, "removing the pin");
    if (status == CS_OK)
        status = cs_log_change(db, "pin rm fp=%s", hex);
    return status;
}

cs_status cs_pin_set_enabled(cs_db *db, const char *fp, int enabled)
{
    char hex[CS_FP_HEX_LEN + 1];
    int was = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    enabled = enabled != 0;
    if (status == CS_OK)
        status = normalise_fp_arg(db, fp, hex);
    if (status == CS_OK)
        status = pin_enabled(db, hex, &was);
    if (status != CS_OK)
        return status;
    if (was != enabled) {
        if ((stmt = cs_stmt(db, STMT_PIN_SET_ENABLED)) == NULL)
            return CS_ERR;
        sqlite3_bind_int(stmt, 1, enabled);
        sqlite3_bind_text(stmt, 2, hex, -1, SQLITE_STATIC);
        status = cs_stmt_exec(db, stmt, "updating the pin");
    }
    if (status == CS_OK)
        status = cs_log_change(db, "pin %s fp=%s", enabled ? "enable" : "disable", hex);
    return status;
}

static void pin_from_row(sqlite3_stmt *stmt, cs_pin *pin)
{
    const unsigned char *fp = sqlite3_column_text(stmt, 1);

    memset(pin, 0, sizeof(*pin));
    pin->id = sqlite3_column_int64(stmt, 0);
    snprintf(pin->fp, sizeof(pin->fp), "%s", fp ? (const char *)fp : "");
    pin->subject = (const char *)sqlite3_column_text(stmt, 2);
    pin->not_after = sqlite3_column_int64(stmt, 3);
    pin->enabled = sqlite3_column_int(stmt, 4) != 0;
    pin->note = (const char *)sqlite3_column_text(stmt, 5);
    pin->created = sqlite3_column_int64(stmt, 6);
    pin->der = sqlite3_column_blob(stmt, 7);
    pin->der_len = (size_t)sqlite3_column_bytes(stmt, 7);
    pin->source = (const char *)sqlite3_column_text(stmt, 8);
    if (pin->subject == NULL)
        pin->subject = "";
    if (pin->note == NULL)
        pin->note = "";
}

/* Feed every row to cb; CS_NOTFOUND if there were none and want_one. */
static cs_status pin_rows(cs_db *db, sqlite3_stmt *stmt, int want_one, cs_pin_cb cb, void *arg)
{
    int rc, rows = 0;
    cs_pin pin;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        rows++;
        pin_from_row(stmt, &pin);
        if (cb(&pin, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        cs_status status = cs_sql_fail(db, "reading pins");

        sqlite3_reset(stmt);
        return status;
    }
    sqlite3_reset(stmt);
    if (want_one && rows == 0)
        return CS_NOTFOUND;
    return CS_OK;
}

cs_status cs_pin_get(cs_db *db, const char *fp, cs_pin_cb cb, void *arg)
{
    char hex[CS_FP_HEX_LEN + 1];
    sqlite3_stmt *stmt;
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((status = normalise_fp_arg(db, fp, hex)) != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_PIN_GET)) == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_TRANSIENT);
    status = pin_rows(db, stmt, 1, cb, arg);
    if (status == CS_NOTFOUND)
        cs_fail(db, CS_NOTFOUND, "no pin %s", hex);
    return status;
}

cs_status cs_pin_foreach(cs_db *db, cs_pin_cb cb, void *arg)
{
    sqlite3_stmt *stmt;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_PIN_LIST)) == NULL)
        return CS_ERR;
    return pin_rows(db, stmt, 0, cb, arg);
}

/* ---- which pin issued a leaf ------------------------------------------------ */

typedef struct {
    X509 *leaf;
    int found;
    char fp[CS_FP_HEX_LEN + 1];
} issuer_search;

/* As chain building would take it: the leaf's issuer name and AKI, and its signature. */
static int pin_issued(const cs_pin *pin, X509 *leaf)
{
    const unsigned char *p = pin->der;
    X509 *ca = d2i_X509(NULL, &p, (long)pin->der_len);
    EVP_PKEY *key = ca != NULL ? X509_get0_pubkey(ca) : NULL;
    int issued =
        key != NULL && X509_check_issued(ca, leaf) == X509_V_OK && X509_verify(leaf, key) == 1;

    X509_free(ca);
    ERR_clear_error();
    return issued;
}

static int note_issuer(const cs_pin *pin, void *arg)
{
    issuer_search *s = arg;

    if (pin_issued(pin, s->leaf) && s->found++ == 0)
        memcpy(s->fp, pin->fp, sizeof(s->fp));
    return 0;
}

cs_status cs_pin_find_issuer(cs_db *db, X509 *leaf, char fp_out[CS_FP_HEX_LEN + 1])
{
    issuer_search s = {.leaf = leaf};
    cs_status status;

    if (db == NULL || db->sql == NULL || leaf == NULL)
        return CS_ERR;
    if ((status = cs_pin_foreach(db, note_issuer, &s)) != CS_OK)
        return status;
    if (s.found == 0)
        return cs_fail(db, CS_NOTFOUND, "no pinned CA issued this certificate");
    if (s.found > 1)
        return cs_fail(db, CS_EXISTS, "%d pinned CAs (same name and key) verify this certificate",
                       s.found);
    memcpy(fp_out, s.fp, sizeof(s.fp));
    return CS_OK;
}

/* ---- revocation policy ------------------------------------------------------ */

cs_status cs_pin_set_revocation(cs_db *db, const char *fp, cs_revocation_policy policy,
                                int64_t grace)
{
    static const char sql[] =
        "UPDATE pins SET revocation = ?1, revocation_grace = ?2 WHERE fp = ?3";
    char hex[CS_FP_HEX_LEN + 1], grace_text[32];
    int enabled = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = normalise_fp_arg(db, fp, hex);
    if (status == CS_OK && (policy < CS_REVOCATION_DEFAULT || policy > CS_REVOCATION_HARD))
        status = cs_fail(db, CS_INVALID, "unknown revocation policy %d", (int)policy);
    if (status == CS_OK && grace != CS_TIME_NONE && (grace < 0 || grace > 3650LL * 86400))
        status = cs_fail(db, CS_INVALID, "grace must be between 0 and 3650 days");
    if (status == CS_OK)
        status = pin_enabled(db, hex, &enabled);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt_sql(db, STMT_PIN_SET_REVOCATION, sql)) == NULL)
        return CS_ERR;
    if (policy != CS_REVOCATION_DEFAULT)
        sqlite3_bind_int(stmt, 1, (int)policy);
    cs_bind_time(stmt, 2, grace);
    sqlite3_bind_text(stmt, 3, hex, -1, SQLITE_STATIC);
    /* Through the pins triggers: any change of policy makes sessions decide again. */
    if ((status = cs_stmt_exec(db, stmt, "updating the pin")) != CS_OK)
        return status;
    if (grace == CS_TIME_NONE)
        snprintf(grace_text, sizeof(grace_text), "default");
    else
        snprintf(grace_text, sizeof(grace_text), "%llds", (long long)grace);
    return cs_log_change(db, "pin revocation fp=%s policy=%s grace=%s", hex,
                         cs_revocation_policy_name(policy), grace_text);
}
