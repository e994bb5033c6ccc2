/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mappings: certificate key of one kind -> account.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "cs_internal.h"

#define SHA256_LEN 32

static int key_length_ok(cs_kind kind, size_t len)
{
    switch (kind) {
    case CS_KIND_CERT:
    case CS_KIND_SPKI:
        return len == SHA256_LEN;
    case CS_KIND_ISSUER_SERIAL:
        return len >= SHA256_LEN && len <= CS_KEY_MAX;
    case CS_KIND_SKI:
        return len >= 1 && len <= CS_KEY_MAX;
    case CS_KIND_COUNT:
        break;
    }
    return 0;
}

/*
 * The handshake proves the key behind cert and spki; a SKI, an issuer DN and a
 * serial are whatever the issuing CA wrote, so they identify a leaf only
 * together with that CA.
 */
int cs_kind_needs_pin(cs_kind kind)
{
    return kind == CS_KIND_SKI || kind == CS_KIND_ISSUER_SERIAL;
}

int cs_mapping_unbound(const cs_mapping *m)
{
    return m->pin_fp == NULL && cs_kind_needs_pin(m->kind);
}

cs_status cs_mapping_spec_check(cs_db *db, const cs_mapping_spec *spec, char *pin_hex)
{
    pin_hex[0] = '\0';
    if ((int)spec->kind < 0 || spec->kind >= CS_KIND_COUNT)
        return cs_fail(db, CS_INVALID, "unknown mapping kind %d", (int)spec->kind);
    if (!key_length_ok(spec->kind, spec->key.len))
        return cs_fail(db, CS_INVALID, "a %s key cannot be %zu bytes long",
                       cs_kind_name(spec->kind), spec->key.len);
    if (!cs_account_name_valid(spec->account))
        return cs_fail(db, CS_INVALID,
                       "invalid account name: 1 to %d bytes of UTF-8 without control characters",
                       CS_ACCOUNT_MAX);
    if (spec->note != NULL && strlen(spec->note) > CS_NOTE_MAX)
        return cs_fail(db, CS_INVALID, "note longer than %d bytes", CS_NOTE_MAX);
    if (spec->not_before != CS_TIME_NONE && spec->not_after != CS_TIME_NONE &&
        spec->not_before > spec->not_after)
        return cs_fail(db, CS_INVALID, "not-before is after not-after");
    if (spec->pin_fp != NULL && spec->pin_fp[0] != '\0' && !cs_fp_normalise(spec->pin_fp, pin_hex))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                       spec->pin_fp);
    if (pin_hex[0] == '\0' && cs_kind_needs_pin(spec->kind))
        return cs_fail(db, CS_INVALID,
                       "kind %s: the mapping must be bound to the pin of the CA that issued "
                       "the certificate",
                       cs_kind_name(spec->kind));
    return CS_OK;
}

int cs_bind_time(sqlite3_stmt *stmt, int index, int64_t t)
{
    if (t == CS_TIME_NONE)
        return sqlite3_bind_null(stmt, index);
    return sqlite3_bind_int64(stmt, index, t);
}

int cs_bind_text_or_null(sqlite3_stmt *stmt, int index, const char *text)
{
    if (text == NULL || text[0] == '\0')
        return sqlite3_bind_null(stmt, index);
    return sqlite3_bind_text(stmt, index, text, -1, SQLITE_STATIC);
}

int64_t cs_column_time(sqlite3_stmt *stmt, int col)
{
    if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
        return CS_TIME_NONE;
    return sqlite3_column_int64(stmt, col);
}

cs_status cs_mapping_insert(cs_db *db, const cs_mapping_spec *spec, int64_t account_id,
                            int64_t *id_out)
{
    char pin_hex[CS_FP_HEX_LEN + 1];
    sqlite3_stmt *stmt;
    int rc;
    cs_status status = cs_mapping_spec_check(db, spec, pin_hex);

    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_ADD)) == NULL)
        return CS_ERR;
    sqlite3_bind_int(stmt, 1, (int)spec->kind);
    sqlite3_bind_blob(stmt, 2, spec->key.bytes, (int)spec->key.len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, account_id);
    cs_bind_text_or_null(stmt, 4, pin_hex);
    cs_bind_time(stmt, 5, spec->not_before);
    cs_bind_time(stmt, 6, spec->not_after);
    cs_bind_text_or_null(stmt, 7, spec->note);
    sqlite3_bind_int64(stmt, 8, cs_now());
    cs_bind_time(stmt, 9, spec->cert_not_after);
    if (spec->have_sha1)
        sqlite3_bind_blob(stmt, 10, spec->sha1, sizeof(spec->sha1), SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE) {
        if (id_out != NULL)
            *id_out = sqlite3_last_insert_rowid(db->sql);
        return CS_OK;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        char key[48];

        cs_key_abbrev(spec->kind, &spec->key, key, sizeof(key));
        return cs_fail(db, CS_EXISTS, "a %s mapping for %s already exists",
                       cs_kind_name(spec->kind), key);
    }
    return cs_sql_fail(db, "adding the mapping");
}

cs_status cs_mapping_spec_from_cert(cs_mapping_spec *spec, const X509 *leaf, cs_kind kind)
{
    unsigned int sha1_len = 0;
    int ok = 0;
    int64_t not_after;
    cs_status status = cs_key_from_cert(leaf, kind, &spec->key);

    if (status != CS_OK)
        return status;
    spec->kind = kind;
    not_after = cs_asn1_time_to_unix(X509_get0_notAfter(leaf), &ok);
    spec->cert_not_after = ok ? not_after : CS_TIME_NONE;
    spec->have_sha1 =
        X509_digest(leaf, EVP_sha1(), spec->sha1, &sha1_len) == 1 && sha1_len == sizeof(spec->sha1);
    spec->cert = leaf;
    return CS_OK;
}

#define NAME_TEXT_MAX 1024

void cs_name_text(const X509_NAME *name, char *buf, size_t buflen)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int n = 0;

    buf[0] = '\0';
    if (bio == NULL || buflen == 0) {
        BIO_free(bio);
        return;
    }
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        n = BIO_read(bio, buf, (int)buflen - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
}

static void serial_text(const X509 *cert, char *buf, size_t buflen)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

    snprintf(buf, buflen, "%s", hex != NULL ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
}

/* Keep the certificate a mapping was made from beside it. */
static cs_status insert_mapping_cert(cs_db *db, int64_t id, const X509 *cert)
{
    char subject[NAME_TEXT_MAX], issuer[NAME_TEXT_MAX], serial[2 * CS_KEY_MAX + 2];
    unsigned char *der = NULL;
    int der_len = i2d_X509(cert, &der), ok = 0;
    int64_t t;
    sqlite3_stmt *stmt;
    cs_status status;

    if (der_len <= 0)
        return cs_fail(db, CS_ERR, "cannot encode the mapping's certificate");
    cs_name_text(X509_get_subject_name(cert), subject, sizeof(subject));
    cs_name_text(X509_get_issuer_name(cert), issuer, sizeof(issuer));
    serial_text(cert, serial, sizeof(serial));
    if ((stmt = cs_stmt(db, STMT_MAPPING_CERT_ADD)) == NULL) {
        OPENSSL_free(der);
        return CS_ERR;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_blob(stmt, 2, der, der_len, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, issuer, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, serial, -1, SQLITE_STATIC);
    t = cs_asn1_time_to_unix(X509_get0_notBefore(cert), &ok);
    cs_bind_time(stmt, 6, ok ? t : CS_TIME_NONE);
    t = cs_asn1_time_to_unix(X509_get0_notAfter(cert), &ok);
    cs_bind_time(stmt, 7, ok ? t : CS_TIME_NONE);
    status = cs_stmt_exec(db, stmt, "keeping the mapping's certificate");
    OPENSSL_free(der);
    return status;
}

cs_status cs_mapping_add(cs_db *db, const cs_mapping_spec *spec, int create_account,
                         int64_t *id_out)
{
    char key[48], pin_hex[CS_FP_HEX_LEN + 1];
    int64_t account_id = 0, id = 0;
    cs_status status = cs_require_write(db);

    if (status == CS_OK && spec == NULL)
        status = cs_fail(db, CS_INVALID, "no mapping given");
    if (status == CS_OK)
        status = cs_mapping_spec_check(db, spec, pin_hex);
    if (status == CS_OK)
        status = cs_account_id(db, spec->account, &account_id);
    if (status == CS_NOTFOUND && create_account) {
        status = cs_account_insert(db, spec->account, NULL, &account_id);
        if (status == CS_OK)
            status = cs_log_change(db, "account add name=%s", spec->account);
    }
    if (status == CS_OK)
        status = cs_mapping_insert(db, spec, account_id, &id);
    if (status == CS_OK && spec->cert != NULL)
        status = insert_mapping_cert(db, id, spec->cert);
    if (status != CS_OK)
        return status;
    cs_key_abbrev(spec->kind, &spec->key, key, sizeof(key));
    status = cs_log_change(db, "map add id=%lld kind=%s key=%s account=%s%s%s", (long long)id,
                           cs_kind_name(spec->kind), key, spec->account, pin_hex[0] ? " pin=" : "",
                           pin_hex);
    if (status == CS_OK && id_out != NULL)
        *id_out = id;
    return status;
}

/* What a mapping ref points at, enough to change it and to log it. */
typedef struct {
    int64_t id;
    cs_kind kind;
    cs_key key;
    char account[CS_ACCOUNT_MAX + 1];
    int enabled;
    int64_t not_before, not_after;
} found_mapping;

static cs_status find_mapping(cs_db *db, const cs_mapping_ref *ref, found_mapping *out)
{
    sqlite3_stmt *stmt;
    int rc;

    if (ref == NULL)
        return cs_fail(db, CS_INVALID, "no mapping given");
    if (ref->id <= 0 && !key_length_ok(ref->kind, ref->key.len))
        return cs_fail(db, CS_INVALID, "no mapping id or valid key given");
    stmt = cs_stmt(db, ref->id > 0 ? STMT_MAPPING_FIND_ID : STMT_MAPPING_FIND_KEY);
    if (stmt == NULL)
        return CS_ERR;
    if (ref->id > 0) {
        sqlite3_bind_int64(stmt, 1, ref->id);
    } else {
        sqlite3_bind_int(stmt, 1, (int)ref->kind);
        sqlite3_bind_blob(stmt, 2, ref->key.bytes, (int)ref->key.len, SQLITE_STATIC);
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const void *key = sqlite3_column_blob(stmt, 2);
        int key_len = sqlite3_column_bytes(stmt, 2);
        const unsigned char *account = sqlite3_column_text(stmt, 3);

        out->id = sqlite3_column_int64(stmt, 0);
        out->kind = (cs_kind)sqlite3_column_int(stmt, 1);
        out->key.len = key_len > 0 && key_len <= CS_KEY_MAX ? (size_t)key_len : 0;
        if (out->key.len > 0)
            memcpy(out->key.bytes, key, out->key.len);
        snprintf(out->account, sizeof(out->account), "%s", account ? (const char *)account : "");
        out->enabled = sqlite3_column_int(stmt, 4) != 0;
        out->not_before = cs_column_time(stmt, 5);
        out->not_after = cs_column_time(stmt, 6);
    }
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE) {
        if (ref->id > 0)
            return cs_fail(db, CS_NOTFOUND, "no mapping with id %lld", (long long)ref->id);
        return cs_fail(db, CS_NOTFOUND, "no %s mapping with that key", cs_kind_name(ref->kind));
    }
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the mapping");
}

static cs_status log_mapping_change(cs_db *db, const char *verb, const found_mapping *m)
{
    char key[48];

    cs_key_abbrev(m->kind, &m->key, key, sizeof(key));
    return cs_log_change(db, "map %s id=%lld kind=%s key=%s account=%s", verb, (long long)m->id,
                         cs_kind_name(m->kind), key, m->account);
}

cs_status cs_mapping_remove(cs_db *db, const cs_mapping_ref *ref)
{
    found_mapping m;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = find_mapping(db, ref, &m);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_REMOVE)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, m.id);
    status = cs_stmt_exec(db, stmt, "removing the mapping");
    if (status == CS_OK)
        status = log_mapping_change(db, "rm", &m);
    return status;
}

cs_status cs_mapping_set_enabled(cs_db *db, const cs_mapping_ref *ref, int enabled)
{
    found_mapping m;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    enabled = enabled != 0;
    if (status == CS_OK)
        status = find_mapping(db, ref, &m);
    if (status != CS_OK)
        return status;
    if (m.enabled != enabled) {
        if ((stmt = cs_stmt(db, STMT_MAPPING_SET_ENABLED)) == NULL)
            return CS_ERR;
        sqlite3_bind_int(stmt, 1, enabled);
        sqlite3_bind_int64(stmt, 2, m.id);
        status = cs_stmt_exec(db, stmt, "updating the mapping");
    }
    if (status == CS_OK)
        status = log_mapping_change(db, enabled ? "enable" : "disable", &m);
    return status;
}

cs_status cs_mapping_set_window(cs_db *db, const cs_mapping_ref *ref, int64_t not_before,
                                int64_t not_after)
{
    found_mapping m;
    char nb[32], na[32];
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK && not_before != CS_TIME_NONE && not_after != CS_TIME_NONE &&
        not_before > not_after)
        status = cs_fail(db, CS_INVALID, "not-before is after not-after");
    if (status == CS_OK)
        status = find_mapping(db, ref, &m);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_SET_WINDOW)) == NULL)
        return CS_ERR;
    cs_bind_time(stmt, 1, not_before);
    cs_bind_time(stmt, 2, not_after);
    sqlite3_bind_int64(stmt, 3, m.id);
    status = cs_stmt_exec(db, stmt, "updating the mapping");
    cs_time_format(not_before, nb);
    cs_time_format(not_after, na);
    if (status == CS_OK)
        status = cs_log_change(db, "map window id=%lld account=%s not_before=%s not_after=%s",
                               (long long)m.id, m.account, nb, na);
    return status;
}

static void mapping_from_row(sqlite3_stmt *stmt, cs_mapping *m)
{
    int key_len = sqlite3_column_bytes(stmt, 2);
    const void *key = sqlite3_column_blob(stmt, 2);
    const void *sha1 = sqlite3_column_blob(stmt, 11);

    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(stmt, 0);
    m->kind = (cs_kind)sqlite3_column_int(stmt, 1);
    if (key_len > 0 && key_len <= CS_KEY_MAX) {
        memcpy(m->key.bytes, key, (size_t)key_len);
        m->key.len = (size_t)key_len;
    }
    m->account = (const char *)sqlite3_column_text(stmt, 3);
    m->pin_fp = (const char *)sqlite3_column_text(stmt, 4);
    m->not_before = cs_column_time(stmt, 5);
    m->not_after = cs_column_time(stmt, 6);
    m->enabled = sqlite3_column_int(stmt, 7) != 0;
    m->note = (const char *)sqlite3_column_text(stmt, 8);
    m->created = sqlite3_column_int64(stmt, 9);
    m->cert_not_after = cs_column_time(stmt, 10);
    m->source = (const char *)sqlite3_column_text(stmt, 12);
    if (sha1 != NULL && sqlite3_column_bytes(stmt, 11) == (int)sizeof(m->sha1)) {
        memcpy(m->sha1, sha1, sizeof(m->sha1));
        m->have_sha1 = 1;
    }
    if (m->note == NULL)
        m->note = "";
    m->subject = (const char *)sqlite3_column_text(stmt, 13);
}

cs_status cs_mapping_foreach(cs_db *db, const char *account, cs_mapping_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    cs_mapping m;
    int64_t account_id;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (account != NULL) {
        cs_status status = cs_account_id(db, account, &account_id);

        if (status != CS_OK)
            return status;
    }
    stmt = cs_stmt(db, account ? STMT_MAPPING_LIST_ACCOUNT : STMT_MAPPING_LIST);
    if (stmt == NULL)
        return CS_ERR;
    if (account != NULL)
        sqlite3_bind_text(stmt, 1, account, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        mapping_from_row(stmt, &m);
        if (cb(&m, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading mappings");
}

cs_status cs_mapping_ref_id(cs_db *db, const cs_mapping_ref *ref, int64_t *id)
{
    found_mapping m;
    cs_status status = find_mapping(db, ref, &m);

    if (status == CS_OK)
        *id = m.id;
    return status;
}

cs_status cs_mapping_set_not_issued_before_created(cs_db *db, const cs_mapping_ref *ref, int on)
{
    found_mapping m;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = find_mapping(db, ref, &m);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_SET_NIBC)) == NULL)
        return CS_ERR;
    sqlite3_bind_int(stmt, 1, on != 0);
    sqlite3_bind_int64(stmt, 2, m.id);
    status = cs_stmt_exec(db, stmt, "updating the mapping");
    if (status == CS_OK)
        status = cs_log_change(db, "map not-issued-before id=%lld account=%s check=%s",
                               (long long)m.id, m.account, on ? "created" : "off");
    return status;
}

cs_status cs_mapping_get_not_issued_before_created(cs_db *db, const cs_mapping_ref *ref, int *on)
{
    found_mapping m;
    sqlite3_stmt *stmt;
    int rc;
    cs_status status = find_mapping(db, ref, &m);

    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_GET_NIBC)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, m.id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *on = sqlite3_column_int(stmt, 0) != 0;
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no mapping with id %lld", (long long)m.id);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the mapping");
}

cs_status cs_mapping_get(cs_db *db, const cs_mapping_ref *ref, cs_mapping_cb cb, void *arg)
{
    found_mapping found;
    sqlite3_stmt *stmt;
    cs_mapping m;
    int rc;
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((status = find_mapping(db, ref, &found)) != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_MAPPING_GET)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, found.id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        mapping_from_row(stmt, &m);
        cb(&m, arg);
    }
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no mapping with id %lld", (long long)found.id);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the mapping");
}

static const char *column_text_or_empty(sqlite3_stmt *stmt, int col)
{
    const char *text = (const char *)sqlite3_column_text(stmt, col);

    return text != NULL ? text : "";
}

cs_status cs_mapping_cert_get(cs_db *db, int64_t mapping_id, cs_mapping_cert_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    cs_mapping_cert c;
    unsigned char md[SHA256_LEN];
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_MAPPING_CERT_GET)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, mapping_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        memset(&c, 0, sizeof(c));
        c.mapping_id = sqlite3_column_int64(stmt, 0);
        c.der = sqlite3_column_blob(stmt, 1);
        c.der_len = (size_t)sqlite3_column_bytes(stmt, 1);
        c.subject = column_text_or_empty(stmt, 2);
        c.issuer = column_text_or_empty(stmt, 3);
        c.serial = column_text_or_empty(stmt, 4);
        c.not_before = cs_column_time(stmt, 5);
        c.not_after = cs_column_time(stmt, 6);
        if (c.der == NULL || EVP_Digest(c.der, c.der_len, md, NULL, EVP_sha256(), NULL) != 1) {
            sqlite3_reset(stmt);
            return cs_fail(db, CS_ERR, "mapping %lld: its kept certificate cannot be read",
                           (long long)mapping_id);
        }
        for (int i = 0; i < SHA256_LEN; i++)
            snprintf(c.fp + 2 * i, 3, "%02x", md[i]);
        cb(&c, arg);
    }
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "mapping %lld keeps no certificate", (long long)mapping_id);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the mapping's certificate");
}

static int decode_kept_cert(const cs_mapping_cert *c, void *arg)
{
    const unsigned char *p = c->der;
    X509 **out = arg;

    *out = d2i_X509(NULL, &p, (long)c->der_len);
    if (*out != NULL && p != c->der + c->der_len) {
        X509_free(*out);
        *out = NULL;
    }
    return 0;
}

cs_status cs_mapping_cert_x509(cs_db *db, int64_t mapping_id, X509 **out)
{
    cs_status status;

    if (out == NULL)
        return cs_fail(db, CS_INVALID, "no place for the certificate");
    *out = NULL;
    status = cs_mapping_cert_get(db, mapping_id, decode_kept_cert, out);
    if (status == CS_OK && *out == NULL)
        return cs_fail(db, CS_ERR, "mapping %lld: its kept certificate is not DER",
                       (long long)mapping_id);
    return status;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The lowest and highest keys that start with the prefix's nibbles. */
static int prefix_bounds(const char *prefix, unsigned char lo[CS_KEY_MAX],
                         unsigned char hi[CS_KEY_MAX], size_t *lo_len)
{
    size_t nibbles = 0;

    memset(lo, 0, CS_KEY_MAX);
    memset(hi, 0xff, CS_KEY_MAX);
    for (const char *p = prefix; *p != '\0'; p++) {
        int v = hex_nibble(*p);

        if (*p == ':' && nibbles % 2 == 0 && nibbles > 0 && p[1] != '\0')
            continue;
        if (v < 0 || nibbles == 2 * CS_KEY_MAX)
            return 0;
        if (nibbles % 2 == 0) {
            lo[nibbles / 2] = (unsigned char)(v << 4);
            hi[nibbles / 2] = (unsigned char)(v << 4 | 0x0f);
        } else {
            lo[nibbles / 2] |= (unsigned char)v;
            hi[nibbles / 2] = (unsigned char)(lo[nibbles / 2]);
        }
        nibbles++;
    }
    *lo_len = (nibbles + 1) / 2;
    return nibbles >= CS_PREFIX_MIN;
}

cs_status cs_mapping_foreach_prefix(cs_db *db, cs_kind kind, const char *prefix, cs_mapping_cb cb,
                                    void *arg)
{
    unsigned char lo[CS_KEY_MAX], hi[CS_KEY_MAX];
    size_t lo_len = 0;
    cs_mapping m;
    int rc = SQLITE_DONE, stop = 0;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (prefix == NULL || !prefix_bounds(prefix, lo, hi, &lo_len))
        return cs_fail(db, CS_INVALID, "not a key prefix: at least %d hex digits", CS_PREFIX_MIN);
    for (int k = 0; !stop && k < CS_KIND_COUNT; k++) {
        sqlite3_stmt *stmt;

        if (kind != CS_KIND_COUNT && k != (int)kind)
            continue;
        if ((stmt = cs_stmt(db, STMT_MAPPING_PREFIX)) == NULL)
            return CS_ERR;
        sqlite3_bind_int(stmt, 1, k);
        sqlite3_bind_blob(stmt, 2, lo, (int)lo_len, SQLITE_STATIC);
        sqlite3_bind_blob(stmt, 3, hi, CS_KEY_MAX, SQLITE_STATIC);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            mapping_from_row(stmt, &m);
            if (cb(&m, arg) != 0) {
                stop = 1;
                rc = SQLITE_DONE;
                break;
            }
        }
        sqlite3_reset(stmt);
        if (rc != SQLITE_DONE)
            return cs_sql_fail(db, "reading mappings");
    }
    return CS_OK;
}

cs_status cs_mapping_foreach_unpinned(cs_db *db, cs_unpinned_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_MAPPING_UNPINNED)) == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (cb((const char *)sqlite3_column_text(stmt, 0), sqlite3_column_int64(stmt, 1), arg)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading mappings");
}
