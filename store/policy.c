/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one policy function: a verified chain -> accept + account, or reject
 * + reason. The provider and `certstore check` both call it, so a decision
 * is the same everywhere. It runs on the verify path: fixed buffers only.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_internal.h"

static const char *const reason_tokens[CS_REASON_COUNT] = {
    [CS_REASON_NONE] = "accept",
    [CS_REASON_CHAIN_INVALID] = "chain-invalid",
    [CS_REASON_ISSUER_NOT_PINNED] = "issuer-not-pinned",
    [CS_REASON_PIN_DISABLED] = "pin-disabled",
    [CS_REASON_NO_MAPPING] = "no-mapping",
    [CS_REASON_MAPPING_DISABLED] = "mapping-disabled",
    [CS_REASON_MAPPING_NOT_YET_VALID] = "mapping-not-yet-valid",
    [CS_REASON_MAPPING_EXPIRED] = "mapping-expired",
    [CS_REASON_ACCOUNT_DISABLED] = "account-disabled",
    [CS_REASON_STORE_UNAVAILABLE] = "store-unavailable",
    [CS_REASON_DENIED_BY_RULE] = "denied-by-rule",
    [CS_REASON_WEAK_MAPPING_REFUSED] = "weak-mapping-refused",
    [CS_REASON_ISSUED_BEFORE_MAPPING] = "issued-before-mapping",
    [CS_REASON_REVOKED] = "revoked",
    [CS_REASON_REVOCATION_UNKNOWN] = "revocation-unknown",
};

/* Lookup order of rule 3: the first mapping that applies to the chain decides. */
static const cs_kind lookup_order[] = {CS_KIND_CERT, CS_KIND_ISSUER_SERIAL, CS_KIND_SKI,
                                       CS_KIND_SPKI};

const char *cs_reason_token(cs_reason reason)
{
    if ((int)reason < 0 || reason >= CS_REASON_COUNT)
        return "store-unavailable";
    return reason_tokens[reason];
}

/* KB5014754: issuer+serial, SKI and key hashes are strong; so is the whole certificate. */
int cs_kind_is_strong(cs_kind kind)
{
    return kind >= CS_KIND_CERT && kind < CS_KIND_COUNT;
}

static int reject(cs_decision *out, cs_reason reason)
{
    out->accept = 0;
    out->reason = reason;
    out->account[0] = '\0';
    return 0;
}

static int store_unavailable(cs_decision *out, cs_db *db, const char *what)
{
    if (db != NULL && db->sql != NULL)
        snprintf(out->detail, sizeof(out->detail), "%s: %s", what, sqlite3_errmsg(db->sql));
    else
        snprintf(out->detail, sizeof(out->detail), "%s", what);
    return reject(out, CS_REASON_STORE_UNAVAILABLE);
}

/* The raw step result, so SQLite errors become store-unavailable. */
typedef enum { LOOKUP_FOUND, LOOKUP_NONE, LOOKUP_ERROR } lookup_result;

static lookup_result step_lookup(sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);

    if (rc == SQLITE_ROW)
        return LOOKUP_FOUND;
    return rc == SQLITE_DONE ? LOOKUP_NONE : LOOKUP_ERROR;
}

static lookup_result read_generation(cs_db *db, int64_t *generation)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_GENERATION_GET);
    lookup_result r;

    if (stmt == NULL)
        return LOOKUP_ERROR;
    r = step_lookup(stmt);
    if (r == LOOKUP_FOUND)
        *generation = sqlite3_column_int64(stmt, 0);
    if (r != LOOKUP_ERROR)
        sqlite3_reset(stmt);
    return r;
}

static lookup_result read_pin(cs_db *db, const char *fp, int *enabled)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_DECIDE_PIN);
    lookup_result r;

    if (stmt == NULL)
        return LOOKUP_ERROR;
    sqlite3_bind_text(stmt, 1, fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    r = step_lookup(stmt);
    if (r == LOOKUP_FOUND)
        *enabled = sqlite3_column_int(stmt, 0) != 0;
    if (r != LOOKUP_ERROR)
        sqlite3_reset(stmt);
    return r;
}

typedef struct {
    int64_t id;
    int enabled;
    int64_t not_before, not_after;
    int bound; /* pin_fp set: applies only when that pin issued the leaf */
    int pin_matches;
    int account_enabled;
    char account[CS_ACCOUNT_MAX + 1];
    int64_t created;
    int not_issued_before_created;
} mapping_row;

/*
 * The mapping columns of STMT_DECIDE_MAPPING, or of STMT_DECIDE_FAST from
 * column `at` on: id, enabled, not_before, not_after, pin_fp, account
 * enabled, account name, created, not_issued_before_created.
 */
static void mapping_row_read(sqlite3_stmt *stmt, int at, const char *issuer_fp, mapping_row *row)
{
    const unsigned char *pin = sqlite3_column_text(stmt, at + 4);
    const unsigned char *name = sqlite3_column_text(stmt, at + 6);

    row->id = sqlite3_column_int64(stmt, at);
    row->enabled = sqlite3_column_int(stmt, at + 1) != 0;
    row->not_before = cs_column_time(stmt, at + 2);
    row->not_after = cs_column_time(stmt, at + 3);
    row->bound = pin != NULL;
    row->pin_matches = pin != NULL && strcmp((const char *)pin, issuer_fp) == 0;
    row->account_enabled = sqlite3_column_int(stmt, at + 5) != 0;
    snprintf(row->account, sizeof(row->account), "%s", name ? (const char *)name : "");
    row->created = sqlite3_column_int64(stmt, at + 7);
    row->not_issued_before_created = sqlite3_column_int(stmt, at + 8) != 0;
}

static lookup_result read_mapping(cs_db *db, cs_kind kind, const cs_key *key, const char *issuer_fp,
                                  mapping_row *row)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_DECIDE_MAPPING);
    lookup_result r;

    if (stmt == NULL)
        return LOOKUP_ERROR;
    sqlite3_bind_int(stmt, 1, (int)kind);
    sqlite3_bind_blob(stmt, 2, key->bytes, (int)key->len, SQLITE_STATIC);
    r = step_lookup(stmt);
    if (r == LOOKUP_FOUND)
        mapping_row_read(stmt, 0, issuer_fp, row);
    if (r != LOOKUP_ERROR)
        sqlite3_reset(stmt);
    return r;
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/*
 * Windows' event 40: a certificate issued before the mapping (or rule) that
 * admits it was made may predate the operator's decision. A notBefore that
 * cannot be read is treated as too early.
 */
static int issued_before(const X509 *leaf, int64_t created)
{
    int ok = 0;
    int64_t not_before = cs_asn1_time_to_unix(X509_get0_notBefore(leaf), &ok);

    return !ok || not_before < created;
}

/*
 * Whether a mapping speaks for this chain at all. One bound to a pin applies
 * only when that pin issued the leaf. An unbound ski or issuer-serial mapping
 * applies nowhere: any pinned CA can write a chosen SKI into a leaf of its own
 * key, and a CA with a twin DN can repeat a DN and serial (only a database from
 * before binding holds such rows; cs_mapping_add refuses them). A mapping that
 * does not apply is as if absent: the next kind decides.
 */
static int mapping_applies(cs_kind kind, const mapping_row *row)
{
    if (row->bound)
        return row->pin_matches;
    return !cs_kind_needs_pin(kind);
}

/* Rule 3's checks on the mapping that decides. */
static int judge_mapping(const mapping_row *row, cs_kind kind, const X509 *leaf, int64_t now,
                         int64_t cert_limit, cs_decision *out)
{
    out->mapping_id = row->id;
    out->kind = kind;
    if (!row->enabled)
        return reject(out, CS_REASON_MAPPING_DISABLED);
    /* Without the certificate (cs_decide_keys) its notBefore is unknown: too early. */
    if (row->not_issued_before_created && (leaf == NULL || issued_before(leaf, row->created)))
        return reject(out, CS_REASON_ISSUED_BEFORE_MAPPING);
    if (row->not_before != CS_TIME_NONE && now < row->not_before)
        return reject(out, CS_REASON_MAPPING_NOT_YET_VALID);
    if (row->not_after != CS_TIME_NONE && now > row->not_after)
        return reject(out, CS_REASON_MAPPING_EXPIRED);
    if (!row->account_enabled)
        return reject(out, CS_REASON_ACCOUNT_DISABLED);
    out->accept = 1;
    out->reason = CS_REASON_NONE;
    memcpy(out->account, row->account, sizeof(out->account));
    out->valid_until =
        row->not_after == CS_TIME_NONE ? cert_limit : earliest(row->not_after, cert_limit);
    return 1;
}

/* Earliest notAfter of leaf and issuer; a time that cannot be read limits to now. */
static int64_t certificate_limit(X509 *leaf, X509 *issuer, int64_t now)
{
    int ok_leaf = 0, ok_issuer = 0;
    int64_t leaf_end = cs_asn1_time_to_unix(X509_get0_notAfter(leaf), &ok_leaf);
    int64_t issuer_end = cs_asn1_time_to_unix(X509_get0_notAfter(issuer), &ok_issuer);

    if (!ok_leaf || !ok_issuer)
        return now;
    return earliest(leaf_end, issuer_end);
}

/* Whether a step of the evaluation order decided (out filled) or passes on. */
typedef enum { STEP_DECIDED, STEP_NEXT } step_result;

static step_result decided(int accepted)
{
    (void)accepted;
    return STEP_DECIDED;
}

/* The cert key is the leaf fingerprint cs_decide already has: never hash it twice. */
static cs_status mapping_key(X509 *leaf, cs_kind kind, const cs_decision *out, cs_key *key)
{
    if (kind == CS_KIND_CERT && out->leaf_fp[0] != '\0' && cs_key_parse(kind, out->leaf_fp, key))
        return CS_OK;
    return cs_key_from_cert(leaf, kind, key);
}

static step_result decide_mappings(cs_db *db, X509 *leaf, int64_t now, int64_t cert_limit,
                                   cs_decision *out)
{
    for (size_t i = 0; i < sizeof(lookup_order) / sizeof(lookup_order[0]); i++) {
        cs_key key;
        mapping_row row;
        lookup_result r;
        cs_status status = mapping_key(leaf, lookup_order[i], out, &key);

        if (status == CS_NOTFOUND)
            continue;
        if (status != CS_OK) {
            snprintf(out->detail, sizeof(out->detail), "cannot compute the %s key",
                     cs_kind_name(lookup_order[i]));
            return decided(reject(out, CS_REASON_NO_MAPPING));
        }
        r = read_mapping(db, lookup_order[i], &key, out->issuer_fp, &row);
        if (r == LOOKUP_ERROR)
            return decided(store_unavailable(out, db, "looking up mappings"));
        /* One that does not apply is as if absent (its state stays unrevealed): next kind. */
        if (r == LOOKUP_FOUND && mapping_applies(lookup_order[i], &row))
            return decided(judge_mapping(&row, lookup_order[i], leaf, now, cert_limit, out));
    }
    return STEP_NEXT;
}

/* One rule row of STMT_DECIDE_RULES; strings valid until the next step. */
static void rule_spec_from_row(sqlite3_stmt *stmt, cs_rule_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->action = sqlite3_column_int(stmt, 1) == CS_RULE_DENY ? CS_RULE_DENY : CS_RULE_ALLOW;
    spec->subject = (const char *)sqlite3_column_text(stmt, 2);
    spec->issuer = (const char *)sqlite3_column_text(stmt, 3);
    spec->san = (const char *)sqlite3_column_text(stmt, 4);
    spec->eku = (const char *)sqlite3_column_text(stmt, 5);
    spec->policy = (const char *)sqlite3_column_text(stmt, 6);
    spec->case_sensitive = sqlite3_column_int(stmt, 7) != 0;
    spec->not_issued_before_created = sqlite3_column_int(stmt, 8) != 0;
    spec->subject_exact = sqlite3_column_int(stmt, 12) != 0;
    spec->issuer_exact = sqlite3_column_int(stmt, 13) != 0;
}

/* The first matching rule decides: deny, or allow subject to its account. */
static int judge_rule(sqlite3_stmt *stmt, const cs_rule_spec *spec, const X509 *leaf,
                      int64_t cert_limit, cs_decision *out)
{
    const unsigned char *name = sqlite3_column_text(stmt, 11);

    out->rule_id = sqlite3_column_int64(stmt, 0);
    out->weak = 1;
    /* Logs say which rule decided: the operator's first question. */
    snprintf(out->detail, sizeof(out->detail), "rule %lld", (long long)out->rule_id);
    if (spec->action == CS_RULE_DENY)
        return reject(out, CS_REASON_DENIED_BY_RULE);
    if (spec->not_issued_before_created && issued_before(leaf, sqlite3_column_int64(stmt, 9)))
        return reject(out, CS_REASON_ISSUED_BEFORE_MAPPING);
    if (name == NULL || sqlite3_column_int(stmt, 10) == 0)
        return reject(out, CS_REASON_ACCOUNT_DISABLED);
    out->accept = 1;
    out->reason = CS_REASON_NONE;
    snprintf(out->account, sizeof(out->account), "%s", (const char *)name);
    out->valid_until = cert_limit;
    return 1;
}

static int decide_rules(cs_db *db, const X509 *leaf, int64_t cert_limit, cs_decision *out)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_DECIDE_RULES);
    int rc = SQLITE_DONE, accepted = -1;

    if (stmt == NULL)
        return store_unavailable(out, db, "looking up rules");
    sqlite3_bind_text(stmt, 1, out->issuer_fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    while (accepted < 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        cs_rule_spec spec;
        int match;

        rule_spec_from_row(stmt, &spec);
        match = cs_rule_matches(&spec, leaf);
        if (match < 0) {
            /* A deny that cannot be read must not be skipped: refuse. */
            snprintf(out->detail, sizeof(out->detail), "rule %lld cannot be read",
                     (long long)sqlite3_column_int64(stmt, 0));
            accepted = reject(out, CS_REASON_STORE_UNAVAILABLE);
        } else if (match) {
            accepted = judge_rule(stmt, &spec, leaf, cert_limit, out);
        }
    }
    if (accepted < 0 && rc != SQLITE_DONE)
        return store_unavailable(out, db, "looking up rules");
    sqlite3_reset(stmt);
    return accepted < 0 ? reject(out, CS_REASON_NO_MAPPING) : accepted;
}

/* The leaf's serial as the revoked table keys it. */
typedef struct {
    unsigned char bytes[CS_SERIAL_MAX];
    size_t len;
    int ok; /* 0: longer than any stored serial can be */
} serial_key;

/*
 * The columns from `at` on: revocation, revocation_grace, crl id, next_update,
 * listed, then the leaf's OCSP answer: status and effective nextUpdate.
 */
static void revocation_input_read(sqlite3_stmt *stmt, int at, cs_revocation_input *in)
{
    in->policy = sqlite3_column_type(stmt, at) == SQLITE_NULL
                     ? CS_REVOCATION_DEFAULT
                     : (cs_revocation_policy)sqlite3_column_int(stmt, at);
    in->grace = sqlite3_column_type(stmt, at + 1) == SQLITE_NULL
                    ? CS_REVOCATION_GRACE_DEFAULT
                    : sqlite3_column_int64(stmt, at + 1);
    in->have_crl = sqlite3_column_type(stmt, at + 2) != SQLITE_NULL;
    in->next_update = cs_column_time(stmt, at + 3);
    in->listed = sqlite3_column_int(stmt, at + 4) != 0;
    in->ocsp = sqlite3_column_type(stmt, at + 5) == SQLITE_NULL
                   ? CS_OCSP_NONE
                   : (cs_ocsp_status)sqlite3_column_int(stmt, at + 5);
    in->ocsp_next_update = cs_column_time(stmt, at + 6);
}

/* What check shows of the OCSP answer the step read. */
static void note_ocsp(const cs_revocation_input *in, cs_decision *out)
{
    out->ocsp = in->ocsp;
    out->ocsp_next_update = in->ocsp != CS_OCSP_NONE ? in->ocsp_next_update : CS_TIME_NONE;
}

/* An OCSP answer without nextUpdate is current for a day after its thisUpdate. */
_Static_assert(CS_OCSP_NO_NEXT_UPDATE_VALIDITY == 86400, "the SQL below and STMT_DECIDE_FAST");
static const char sql_decide_revocation[] =
    "SELECT p.revocation, p.revocation_grace, c.id, c.next_update, r.crl_id IS NOT NULL,"
    " o.status, coalesce(o.next_update, o.this_update + 86400),"
    " r.revoked_at, r.reason, o.revoked_at, o.reason"
    " FROM pins p LEFT JOIN crls c ON c.pin_id = p.id"
    " LEFT JOIN revoked r ON r.crl_id = c.id AND r.serial = ?2"
    " LEFT JOIN ocsp_answers o ON o.pin_id = p.id AND o.serial = ?2"
    " WHERE p.fp = ?1";

/* RFC 5280 5.3.1 CRLReason names, for the detail of a rejection. */
static const char *crl_reason_name(int reason)
{
    static const char *const names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", "7",
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
    };
    return reason >= 0 && reason < (int)(sizeof(names) / sizeof(names[0])) ? names[reason]
                                                                           : "no reason given";
}

/* Columns 7, 8: the CRL entry's date and reason; 9, 10: the OCSP answer's. */
static void revoked_detail(sqlite3_stmt *stmt, const cs_revocation_input *in, cs_decision *out)
{
    int at = in->listed ? 7 : 9;
    char when[32] = "-";

    if (sqlite3_column_type(stmt, at) != SQLITE_NULL)
        cs_time_format(sqlite3_column_int64(stmt, at), when);
    snprintf(out->detail, sizeof(out->detail), "revoked %s (%s) by the %s of pin %.16s", when,
             sqlite3_column_type(stmt, at + 1) == SQLITE_NULL
                 ? "no reason given"
                 : crl_reason_name(sqlite3_column_int(stmt, at + 1)),
             in->listed ? "CRL" : "OCSP answer", out->issuer_fp);
}

static void unknown_detail(const cs_revocation_input *in, cs_decision *out)
{
    int ocsp_good = in->ocsp == CS_OCSP_GOOD;
    char when[32];

    if (!in->have_crl && !ocsp_good) {
        snprintf(out->detail, sizeof(out->detail),
                 "policy hard, pin %.16s has no CRL and the leaf no good OCSP answer (%s)",
                 out->issuer_fp, cs_ocsp_status_name(in->ocsp));
        return;
    }
    cs_time_format(in->have_crl && (!ocsp_good || in->next_update > in->ocsp_next_update)
                       ? in->next_update
                       : in->ocsp_next_update,
                   when);
    snprintf(out->detail, sizeof(out->detail),
             "policy hard and the %s of pin %.16s is stale (nextUpdate %s, grace %llds)",
             in->have_crl ? (ocsp_good ? "CRL and OCSP answer" : "CRL") : "OCSP answer",
             out->issuer_fp, when, (long long)in->grace);
}

/*
 * A CRL is its issuer's, a name and a key, and `crl add` stores it for one
 * pin. A pin of the same name and key (the CA's renewed certificate) may
 * hold it, or a newer one than the issuing pin's, and the client chooses
 * which of the two certificates its chain goes through: their CRLs speak
 * for this leaf too. The freshest CRL counts for staleness; any of them
 * listing the serial revokes; the issuing pin's policy and grace apply.
 * Rare (twins with CRLs), so the parse of their certificates is affordable.
 */
static const char sql_twin_crl[] =
    "SELECT p2.fp, p2.der, c.next_update, r.crl_id IS NOT NULL, r.revoked_at, r.reason"
    " FROM pins p JOIN pins p2 ON p2.subject = p.subject AND p2.id != p.id"
    " JOIN crls c ON c.pin_id = p2.id"
    " LEFT JOIN revoked r ON r.crl_id = c.id AND r.serial = ?2"
    " WHERE p.fp = ?1";

static int same_name_and_key(const void *der, int der_len, X509 *issuer)
{
    const unsigned char *p = der;
    X509 *ca = der != NULL ? d2i_X509(NULL, &p, der_len) : NULL;
    EVP_PKEY *key = ca != NULL ? X509_get0_pubkey(ca) : NULL;
    EVP_PKEY *issuer_key = X509_get0_pubkey(issuer);
    int same = key != NULL && issuer_key != NULL &&
               X509_NAME_cmp(X509_get_subject_name(ca), X509_get_subject_name(issuer)) == 0 &&
               EVP_PKEY_eq(key, issuer_key) == 1;

    X509_free(ca);
    ERR_clear_error();
    return same;
}

/* Merges the twins' CRLs into in: 0 none, 1 some, -1 a store error. */
static int twin_crl(cs_db *db, X509 *issuer, const serial_key *serial, cs_revocation_input *in,
                    cs_decision *out)
{
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_DECIDE_TWIN_CRL, sql_twin_crl);
    int found = 0, rc;

    if (stmt == NULL || issuer == NULL)
        return stmt == NULL ? -1 : 0;
    sqlite3_bind_text(stmt, 1, out->issuer_fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 2, serial->bytes, (int)serial->len, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t next = cs_column_time(stmt, 2);
        char when[32] = "-";

        if (!same_name_and_key(sqlite3_column_blob(stmt, 1), sqlite3_column_bytes(stmt, 1), issuer))
            continue;
        if (!in->have_crl ||
            (in->next_update != CS_TIME_NONE && (next == CS_TIME_NONE || next > in->next_update)))
            in->next_update = next;
        found = in->have_crl = 1;
        if (sqlite3_column_int(stmt, 3) != 0 && !in->listed) {
            in->listed = 1;
            if (sqlite3_column_type(stmt, 4) != SQLITE_NULL)
                cs_time_format(sqlite3_column_int64(stmt, 4), when);
            snprintf(out->detail, sizeof(out->detail),
                     "revoked %s (%s) by the CRL of pin %.16s (the same CA: name and key)", when,
                     sqlite3_column_type(stmt, 5) == SQLITE_NULL
                         ? "no reason given"
                         : crl_reason_name(sqlite3_column_int(stmt, 5)),
                     (const char *)sqlite3_column_text(stmt, 0));
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? found : -1;
}

/*
 * After the pin, before the mapping: a listed serial is revoked; under a
 * hard policy, no current CRL is revocation-unknown. *until caps an
 * acceptance at the moment the CRL goes stale.
 */
static step_result decide_revocation(cs_db *db, X509 *issuer, const serial_key *serial, int64_t now,
                                     int64_t *until, cs_decision *out)
{
    int own_listed;
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_DECIDE_REVOCATION, sql_decide_revocation);
    cs_revocation_input in = {0};
    lookup_result r;

    *until = CS_TIME_FOREVER;
    if (stmt == NULL)
        return decided(store_unavailable(out, db, "looking up revocation"));
    sqlite3_bind_text(stmt, 1, out->issuer_fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 2, serial->bytes, (int)serial->len, SQLITE_STATIC);
    r = step_lookup(stmt);
    if (r == LOOKUP_ERROR)
        return decided(store_unavailable(out, db, "looking up revocation"));
    if (r == LOOKUP_NONE) {
        sqlite3_reset(stmt);
        return decided(reject(out, CS_REASON_ISSUER_NOT_PINNED)); /* gone since the pin read */
    }
    revocation_input_read(stmt, 0, &in);
    note_ocsp(&in, out);
    own_listed = in.listed;
    if (in.policy != CS_REVOCATION_OFF && twin_crl(db, issuer, serial, &in, out) < 0) {
        sqlite3_reset(stmt);
        return decided(store_unavailable(out, db, "looking up revocation"));
    }
    out->revocation = cs_revocation_judge(&in, now, until);
    if (!serial->ok && out->revocation != CS_REVSTATE_NONE && out->revocation != CS_REVSTATE_OFF) {
        sqlite3_reset(stmt);
        snprintf(out->detail, sizeof(out->detail), "the leaf's serial is too long to look up");
        out->revocation = CS_REVSTATE_UNKNOWN;
        return decided(reject(out, CS_REASON_REVOCATION_UNKNOWN));
    }
    /* Listed only by a pin of the same CA, twin_crl said by which. */
    if (out->revocation == CS_REVSTATE_REVOKED && (own_listed || !in.listed))
        revoked_detail(stmt, &in, out);
    sqlite3_reset(stmt);
    if (out->revocation == CS_REVSTATE_REVOKED)
        return decided(reject(out, CS_REASON_REVOKED));
    if (out->revocation == CS_REVSTATE_UNKNOWN) {
        unknown_detail(&in, out);
        return decided(reject(out, CS_REASON_REVOCATION_UNKNOWN));
    }
    return STEP_NEXT;
}

/* An acceptance holds no longer than the CRL that admitted it stays current. */
static int cap_by_revocation(int accepted, int64_t until, cs_decision *out)
{
    if (accepted && until < out->valid_until)
        out->valid_until = until;
    return accepted;
}

/* Rules 2 and 3, inside the snapshot. */
static int decide_in_snapshot(cs_db *db, X509 *leaf, X509 *issuer, const serial_key *serial,
                              int64_t now, cs_decision *out)
{
    int pin_enabled = 0;
    int64_t cert_limit, until;
    lookup_result r = read_generation(db, &out->generation);

    if (r != LOOKUP_FOUND)
        return store_unavailable(out, db,
                                 r == LOOKUP_NONE ? "policy generation missing"
                                                  : "reading the policy generation");
    r = read_pin(db, out->issuer_fp, &pin_enabled);
    if (r == LOOKUP_ERROR)
        return store_unavailable(out, db, "looking up the pin");
    if (r == LOOKUP_NONE)
        return reject(out, CS_REASON_ISSUER_NOT_PINNED);
    if (!pin_enabled)
        return reject(out, CS_REASON_PIN_DISABLED);
    if (decide_revocation(db, issuer, serial, now, &until, out) == STEP_DECIDED)
        return out->accept;
    cert_limit = certificate_limit(leaf, issuer, now);
    if (decide_mappings(db, leaf, now, cert_limit, out) == STEP_DECIDED)
        return cap_by_revocation(out->accept, until, out);
    return cap_by_revocation(decide_rules(db, leaf, cert_limit, out), until, out);
}

/*
 * The common case, decided by one statement (one implicit snapshot, no
 * BEGIN/COMMIT round): the issuer is not pinned or its pin is disabled, or
 * the whole-certificate mapping exists and applies to this issuer. Anything
 * else (no such mapping, one bound to another pin, a missing account,
 * a missing generation) returns -1 and the full evaluation runs in its own
 * snapshot, from the start. So does a SQLite error, as a second try: a
 * reader can meet a short read of a WAL that a writer's TRUNCATE checkpoint
 * is cutting at that moment. Busy is the exception: it decides at once
 * (store-unavailable), as a retry would wait out the busy timeout again.
 */
static int decide_fast(cs_db *db, X509 *leaf, X509 *issuer, const serial_key *serial, int64_t now,
                       cs_decision *out)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_DECIDE_FAST);
    cs_key key;
    mapping_row row;
    cs_revocation_input rev;
    int64_t until = CS_TIME_FOREVER;
    int decided = -1, rc;

    if (stmt == NULL || !serial->ok || !cs_key_parse(CS_KIND_CERT, out->leaf_fp, &key))
        return -1;
    sqlite3_bind_text(stmt, 1, out->issuer_fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, (int)CS_KIND_CERT);
    sqlite3_bind_blob(stmt, 3, key.bytes, (int)key.len, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, serial->bytes, (int)serial->len, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) != SQLITE_ROW) {
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
            decided = store_unavailable(out, db, "reading the policy");
        sqlite3_reset(stmt);
        return decided;
    }
    if (sqlite3_column_type(stmt, 0) == SQLITE_NULL) {
        sqlite3_reset(stmt);
        return -1;
    }
    out->generation = sqlite3_column_int64(stmt, 0);
    if (sqlite3_column_type(stmt, 1) == SQLITE_NULL) {
        decided = reject(out, CS_REASON_ISSUER_NOT_PINNED);
    } else if (sqlite3_column_int(stmt, 1) == 0) {
        decided = reject(out, CS_REASON_PIN_DISABLED);
    } else {
        /* Revoked or unknown: the full evaluation says by which entry, or why. */
        revocation_input_read(stmt, 11, &rev);
        note_ocsp(&rev, out);
        out->revocation = cs_revocation_judge(&rev, now, &until);
        /* A pin of the same name has a CRL: the full evaluation asks whether it speaks here. */
        if (out->revocation != CS_REVSTATE_REVOKED && out->revocation != CS_REVSTATE_UNKNOWN &&
            sqlite3_column_int(stmt, 18) == 0 && sqlite3_column_type(stmt, 2) != SQLITE_NULL &&
            sqlite3_column_type(stmt, 8) != SQLITE_NULL) {
            mapping_row_read(stmt, 2, out->issuer_fp, &row);
            if (mapping_applies(CS_KIND_CERT, &row))
                decided =
                    cap_by_revocation(judge_mapping(&row, CS_KIND_CERT, leaf, now,
                                                    certificate_limit(leaf, issuer, now), out),
                                      until, out);
        }
        if (decided < 0) {
            out->revocation = CS_REVSTATE_NONE;
            out->ocsp = CS_OCSP_NONE;
            out->ocsp_next_update = CS_TIME_NONE;
        }
    }
    sqlite3_reset(stmt);
    return decided;
}

static int begin_snapshot(cs_db *db, int *own)
{
    sqlite3_stmt *stmt;

    /* Inside a caller's transaction the snapshot is already that one. */
    *own = sqlite3_get_autocommit(db->sql);
    if (!*own)
        return 1;
    stmt = cs_stmt(db, STMT_BEGIN_READ);
    return stmt != NULL && sqlite3_step(stmt) == SQLITE_DONE;
}

static void end_snapshot(cs_db *db, int own)
{
    sqlite3_stmt *stmt;

    if (!own)
        return;
    if ((stmt = cs_stmt(db, STMT_COMMIT)) == NULL || sqlite3_step(stmt) != SQLITE_DONE) {
        /* A read-only transaction: rolling back loses nothing. */
        for (int i = 0; i < STMT_COUNT; i++)
            if (db->stmts[i] != NULL)
                sqlite3_reset(db->stmts[i]);
        if (!sqlite3_get_autocommit(db->sql))
            sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    }
    if (stmt != NULL)
        sqlite3_reset(stmt);
}

static void reset_all(cs_db *db)
{
    for (int i = 0; i < STMT_COUNT; i++)
        if (db->stmts[i] != NULL)
            sqlite3_reset(db->stmts[i]);
}

/* require_strong: an acceptance through a weak way in is refused. */
static int apply_options(const cs_policy_opts *opts, cs_decision *out)
{
    if (opts == NULL || !opts->require_strong || !out->accept || !out->weak)
        return out->accept;
    snprintf(out->detail, sizeof(out->detail), "rule %lld maps it to account %.100s",
             (long long)out->rule_id, out->account);
    return reject(out, CS_REASON_WEAK_MAPPING_REFUSED);
}

static int decide_chain(cs_db *db, STACK_OF(X509) * chain, int64_t now, const char *leaf_fp,
                        const char *issuer_fp, cs_decision *out);

int cs_decide_ex(cs_db *db, STACK_OF(X509) * chain, int64_t now, const cs_policy_opts *opts,
                 cs_decision *out)
{
    decide_chain(db, chain, now, opts != NULL ? opts->leaf_fp : NULL,
                 opts != NULL ? opts->issuer_fp : NULL, out);
    return apply_options(opts, out);
}

int cs_decide(cs_db *db, STACK_OF(X509) * chain, int64_t now, cs_decision *out)
{
    return decide_chain(db, chain, now, NULL, NULL, out);
}

/* The mapping step alone, on keys instead of a leaf, in its own snapshot. */
static int decide_keys_in_snapshot(cs_db *db, const cs_key keys[CS_KIND_COUNT], int64_t now,
                                   cs_decision *out)
{
    int pin_enabled = 0;
    lookup_result r = read_generation(db, &out->generation);

    if (r != LOOKUP_FOUND)
        return store_unavailable(out, db, "reading the policy generation");
    if (out->issuer_fp[0] != '\0') {
        r = read_pin(db, out->issuer_fp, &pin_enabled);
        if (r == LOOKUP_ERROR)
            return store_unavailable(out, db, "looking up the pin");
        if (r == LOOKUP_NONE)
            return reject(out, CS_REASON_ISSUER_NOT_PINNED);
        if (!pin_enabled)
            return reject(out, CS_REASON_PIN_DISABLED);
    }
    for (size_t i = 0; i < sizeof(lookup_order) / sizeof(lookup_order[0]); i++) {
        const cs_key *key = &keys[lookup_order[i]];
        mapping_row row;

        if (key->len == 0)
            continue;
        r = read_mapping(db, lookup_order[i], key, out->issuer_fp, &row);
        if (r == LOOKUP_ERROR)
            return store_unavailable(out, db, "looking up mappings");
        if (r == LOOKUP_FOUND && mapping_applies(lookup_order[i], &row))
            return judge_mapping(&row, lookup_order[i], NULL, now, CS_TIME_FOREVER, out);
    }
    snprintf(out->detail, sizeof(out->detail), "no mapping decides; rules need the certificate");
    return reject(out, CS_REASON_NO_MAPPING);
}

int cs_decide_keys(cs_db *db, const cs_key keys[CS_KIND_COUNT], const char *issuer_fp, int64_t now,
                   cs_decision *out)
{
    int own = 0, accepted;

    memset(out, 0, sizeof(*out));
    out->reason = CS_REASON_STORE_UNAVAILABLE;
    out->ocsp = CS_OCSP_NONE;
    out->ocsp_next_update = CS_TIME_NONE;
    if (db == NULL || db->sql == NULL)
        return store_unavailable(out, NULL, "no database open");
    if (issuer_fp != NULL)
        snprintf(out->issuer_fp, sizeof(out->issuer_fp), "%s", issuer_fp);
    if (!begin_snapshot(db, &own)) {
        accepted = store_unavailable(out, db, "starting a read");
        reset_all(db);
        return accepted;
    }
    accepted = decide_keys_in_snapshot(db, keys, now, out);
    if (out->reason == CS_REASON_STORE_UNAVAILABLE)
        reset_all(db);
    end_snapshot(db, own);
    return accepted;
}

/* A fingerprint the caller computed, else computed here; 0 if neither. */
static int fingerprint(X509 *cert, const char *given, char hex[CS_FP_HEX_LEN + 1])
{
    if (given != NULL && strlen(given) == CS_FP_HEX_LEN) {
        memcpy(hex, given, CS_FP_HEX_LEN + 1);
        return 1;
    }
    return cs_fp_of_cert(cert, hex);
}

static int decide_chain(cs_db *db, STACK_OF(X509) * chain, int64_t now, const char *leaf_fp,
                        const char *issuer_fp, cs_decision *out)
{
    X509 *leaf, *issuer;
    serial_key serial;
    int own = 0, accepted;

    memset(out, 0, sizeof(*out));
    out->reason = CS_REASON_STORE_UNAVAILABLE;
    out->ocsp = CS_OCSP_NONE;
    out->ocsp_next_update = CS_TIME_NONE;
    if (chain == NULL || sk_X509_num(chain) < 1 || (leaf = sk_X509_value(chain, 0)) == NULL) {
        snprintf(out->detail, sizeof(out->detail), "no certificate chain");
        return reject(out, CS_REASON_CHAIN_INVALID);
    }
    fingerprint(leaf, leaf_fp, out->leaf_fp);
    if (db == NULL || db->sql == NULL)
        return store_unavailable(out, NULL, "no database open");
    /* Rule 1: a chain of one has no issuing CA that could be pinned. */
    if (sk_X509_num(chain) < 2 || (issuer = sk_X509_value(chain, 1)) == NULL)
        return reject(out, CS_REASON_ISSUER_NOT_PINNED);
    if (!fingerprint(issuer, issuer_fp, out->issuer_fp)) {
        snprintf(out->detail, sizeof(out->detail), "cannot fingerprint the issuer");
        return reject(out, CS_REASON_ISSUER_NOT_PINNED);
    }
    serial.ok = cs_serial_key(X509_get0_serialNumber(leaf), serial.bytes, &serial.len);
    if (!serial.ok)
        serial.len = 0;
    /* Inside a caller's transaction, that one is the snapshot: no fast path. */
    if (sqlite3_get_autocommit(db->sql) &&
        (accepted = decide_fast(db, leaf, issuer, &serial, now, out)) >= 0)
        return accepted;
    if (!begin_snapshot(db, &own)) {
        accepted = store_unavailable(out, db, "starting a read");
        reset_all(db);
        return accepted;
    }
    accepted = decide_in_snapshot(db, leaf, issuer, &serial, now, out);
    if (out->reason == CS_REASON_STORE_UNAVAILABLE)
        reset_all(db);
    end_snapshot(db, own);
    return accepted;
}

/* ---- explaining a decision (certstore check --explain) -------------------- */

static void explain_pin(cs_db *db, const cs_decision *d, cs_explain_cb cb, void *arg)
{
    cs_explain_step step = {.what = CS_EXPLAIN_PIN, .account = "", .why = ""};
    int enabled = 0;
    lookup_result r = read_pin(db, d->issuer_fp, &enabled);

    step.applies = r == LOOKUP_FOUND && enabled;
    step.decided = d->reason == CS_REASON_ISSUER_NOT_PINNED || d->reason == CS_REASON_PIN_DISABLED;
    step.reason = step.decided ? d->reason : CS_REASON_NONE;
    if (r == LOOKUP_ERROR)
        step.why = "the pin could not be read";
    else if (r == LOOKUP_NONE)
        step.why = "the issuing CA is not pinned";
    else if (!enabled)
        step.why = "the issuing CA's pin is disabled";
    else
        step.why = "the issuing CA is pinned and enabled";
    cb(&step, arg);
}

static void explain_mapping(cs_db *db, X509 *leaf, X509 *issuer, int64_t now, cs_kind kind,
                            const cs_decision *d, cs_explain_cb cb, void *arg)
{
    cs_explain_step step = {.what = CS_EXPLAIN_MAPPING, .kind = kind, .account = ""};
    cs_decision alone;
    cs_key key;
    mapping_row row;
    lookup_result r;

    memset(&alone, 0, sizeof(alone));
    memcpy(alone.leaf_fp, d->leaf_fp, sizeof(alone.leaf_fp));
    if (mapping_key(leaf, kind, &alone, &key) != CS_OK) {
        step.why = "the certificate has no key of this kind";
        cb(&step, arg);
        return;
    }
    r = read_mapping(db, kind, &key, d->issuer_fp, &row);
    if (r != LOOKUP_FOUND) {
        step.why = r == LOOKUP_NONE ? "no mapping of this kind" : "mappings could not be read";
        cb(&step, arg);
        return;
    }
    step.id = row.id;
    step.account = row.account;
    step.applies = mapping_applies(kind, &row);
    if (!step.applies) {
        step.why = row.bound ? "bound to another pin: it applies only to certificates that CA "
                               "issued"
                             : "bound to no pin (made before binding was required): never applies";
        cb(&step, arg);
        return;
    }
    step.accept =
        judge_mapping(&row, kind, leaf, now, certificate_limit(leaf, issuer, now), &alone);
    step.reason = alone.reason;
    step.decided = d->rule_id == 0 && d->mapping_id == row.id;
    step.why = step.accept ? "it admits the certificate" : "it rejects the certificate";
    cb(&step, arg);
}

static void explain_rules(cs_db *db, X509 *leaf, X509 *issuer, int64_t now, const cs_decision *d,
                          cs_explain_cb cb, void *arg)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_DECIDE_RULES);
    int rc;

    if (stmt == NULL)
        return;
    sqlite3_bind_text(stmt, 1, d->issuer_fp, CS_FP_HEX_LEN, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        cs_explain_step step = {.what = CS_EXPLAIN_RULE, .account = ""};
        cs_rule_spec spec;
        cs_decision alone;
        const unsigned char *name = sqlite3_column_text(stmt, 11);
        int match;

        memset(&alone, 0, sizeof(alone));
        rule_spec_from_row(stmt, &spec);
        step.id = sqlite3_column_int64(stmt, 0);
        step.rule = &spec;
        step.account = name != NULL ? (const char *)name : "";
        step.decided = d->rule_id == step.id;
        match = cs_rule_matches(&spec, leaf);
        if (match < 0) {
            step.applies = 1;
            step.reason = CS_REASON_STORE_UNAVAILABLE;
            step.why = "the rule cannot be read: it refuses";
        } else if (!match) {
            step.why = "its conditions do not match the certificate";
        } else {
            step.applies = 1;
            step.accept =
                judge_rule(stmt, &spec, leaf, certificate_limit(leaf, issuer, now), &alone);
            step.reason = alone.reason;
            step.why = step.accept ? "its conditions match: it admits the certificate"
                                   : "its conditions match: it rejects the certificate";
        }
        cb(&step, arg);
    }
    sqlite3_reset(stmt);
}

int cs_decide_explain(cs_db *db, STACK_OF(X509) * chain, int64_t now, const cs_policy_opts *opts,
                      cs_decision *out, cs_explain_cb cb, void *arg)
{
    int accepted, own = 0;

    if (cb == NULL || db == NULL || db->sql == NULL)
        return cs_decide_ex(db, chain, now, opts, out);
    /* The decision and its explanation read one snapshot. */
    if (!begin_snapshot(db, &own)) {
        reset_all(db);
        return cs_decide_ex(db, chain, now, opts, out);
    }
    accepted = cs_decide_ex(db, chain, now, opts, out);
    if (out->reason != CS_REASON_CHAIN_INVALID && out->issuer_fp[0] != '\0' &&
        sk_X509_num(chain) >= 2) {
        X509 *leaf = sk_X509_value(chain, 0), *issuer = sk_X509_value(chain, 1);

        explain_pin(db, out, cb, arg);
        for (size_t i = 0; i < sizeof(lookup_order) / sizeof(lookup_order[0]); i++)
            explain_mapping(db, leaf, issuer, now, lookup_order[i], out, cb, arg);
        explain_rules(db, leaf, issuer, now, out, cb, arg);
    }
    reset_all(db);
    end_snapshot(db, own);
    return accepted;
}
