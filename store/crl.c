/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRLs of pinned CAs: one per pin, its serials in the revoked table keyed by
 * (crl, serial), so the decision's lookup is one B-tree probe whatever the
 * CRL's size. A CRL is stored only when its pin issued it (name and
 * signature), and only over an older one. Writes are quiet (meta.bulk_write)
 * and bump the generation explicitly when a decision can become stricter:
 * a serial newly revoked, a nextUpdate moved earlier, a CRL removed. The
 * judgement of a pin's state at a time lives here too, for policy.c.
 * OpenSSL's crypto/x509/x509_vfy.c (check_crl, crl_akid_check) shows what a
 * verifier asks of a CRL.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cs_internal.h"

/* A CRL issued a little ahead of our clock is fine; more is a wrong clock or a forgery. */
#define CRL_CLOCK_SKEW 300

static const char *const policy_names[] = {"off", "soft", "hard"};
static const char *const state_names[CS_REVSTATE_COUNT] = {
    [CS_REVSTATE_NONE] = "none",       [CS_REVSTATE_OFF] = "off",
    [CS_REVSTATE_GOOD] = "good",       [CS_REVSTATE_GRACE] = "grace",
    [CS_REVSTATE_STALE] = "stale",     [CS_REVSTATE_MISSING] = "missing",
    [CS_REVSTATE_REVOKED] = "revoked", [CS_REVSTATE_UNKNOWN] = "unknown",
};

const char *cs_revocation_policy_name(cs_revocation_policy policy)
{
    if (policy >= CS_REVOCATION_OFF && policy <= CS_REVOCATION_HARD)
        return policy_names[policy];
    return "default";
}

int cs_revocation_policy_parse(const char *name, cs_revocation_policy *out)
{
    for (int i = CS_REVOCATION_OFF; i <= CS_REVOCATION_HARD; i++)
        if (name != NULL && strcmp(name, policy_names[i]) == 0) {
            *out = (cs_revocation_policy)i;
            return 1;
        }
    return 0;
}

const char *cs_revocation_state_name(cs_revocation_state state)
{
    if ((int)state < 0 || state >= CS_REVSTATE_COUNT)
        return "unknown";
    return state_names[state];
}

int cs_revocation_state_alarming(cs_revocation_state state)
{
    return state == CS_REVSTATE_STALE || state == CS_REVSTATE_MISSING ||
           state == CS_REVSTATE_UNKNOWN;
}

int cs_serial_key(const ASN1_INTEGER *serial, unsigned char *buf, size_t *len)
{
    const unsigned char *data = ASN1_STRING_get0_data(serial);
    int n = ASN1_STRING_length(serial);
    size_t at = 0;

    if (data == NULL || n < 0 || (size_t)n + 1 > CS_SERIAL_MAX)
        return 0;
    /*
     * OpenSSL keeps the magnitude without leading zeros (it refuses padded
     * encodings) and the sign in the type. A negative serial (RFC 5280
     * forbids them; OpenSSL parses them) gets a 0x00 first, which no
     * positive magnitude but zero's starts with: two serials never share a
     * key.
     */
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
        buf[at++] = 0x00;
    memcpy(buf + at, data, (size_t)n);
    *len = at + (size_t)n;
    return 1;
}

/*
 * The evidence that the leaf is not revoked: the pin's CRL and the leaf's
 * good OCSP answer; the fresher one counts. A revocation by either rejects
 * whatever its age, as a listed serial on an old CRL does: revocation is
 * final, and a stale answer is no reason to forget one.
 */
cs_revocation_state cs_revocation_judge(const cs_revocation_input *in, int64_t now, int64_t *until)
{
    cs_revocation_policy policy = in->policy;
    int have_good_ocsp = in->ocsp == CS_OCSP_GOOD;
    int64_t next_update, stale_at;

    *until = CS_TIME_FOREVER;
    if (policy == CS_REVOCATION_DEFAULT)
        policy = in->have_crl || in->ocsp != CS_OCSP_NONE ? CS_REVOCATION_SOFT : CS_REVOCATION_OFF;
    if (policy == CS_REVOCATION_OFF)
        return in->policy == CS_REVOCATION_OFF ? CS_REVSTATE_OFF : CS_REVSTATE_NONE;
    if (in->listed || in->ocsp == CS_OCSP_REVOKED)
        return CS_REVSTATE_REVOKED;
    if (!in->have_crl && !have_good_ocsp)
        return policy == CS_REVOCATION_HARD ? CS_REVSTATE_UNKNOWN : CS_REVSTATE_MISSING;
    if (in->have_crl && in->next_update == CS_TIME_NONE)
        return CS_REVSTATE_GOOD;
    next_update = in->have_crl ? in->next_update : CS_TIME_NONE;
    if (have_good_ocsp && (next_update == CS_TIME_NONE || in->ocsp_next_update > next_update))
        next_update = in->ocsp_next_update;
    stale_at =
        next_update > CS_TIME_FOREVER - in->grace ? CS_TIME_FOREVER : next_update + in->grace;
    if (now <= stale_at)
        *until = stale_at; /* the decision (or its log line) changes then */
    if (now <= next_update)
        return CS_REVSTATE_GOOD;
    if (now <= stale_at)
        return CS_REVSTATE_GRACE;
    return policy == CS_REVOCATION_HARD ? CS_REVSTATE_UNKNOWN : CS_REVSTATE_STALE;
}

/* ---- checking a CRL -------------------------------------------------------------- */

/* CRL extensions we understand; any other critical one refuses the CRL (RFC 5280 5.2). */
static int crl_extension_known(int nid)
{
    return nid == NID_crl_number || nid == NID_authority_key_identifier ||
           nid == NID_issuing_distribution_point || nid == NID_issuer_alt_name ||
           nid == NID_freshest_crl || nid == NID_info_access;
}

static cs_status check_scope(cs_db *db, X509_CRL *crl)
{
    ISSUING_DIST_POINT *idp;
    int crit = -1;
    cs_status status = CS_OK;

    if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0)
        return cs_fail(db, CS_INVALID,
                       "a delta CRL (deltaCRLIndicator): certstore stores full CRLs only; add "
                       "the base CRL");
    for (int i = 0; i < X509_CRL_get_ext_count(crl); i++) {
        X509_EXTENSION *ext = X509_CRL_get_ext(crl, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));

        if (X509_EXTENSION_get_critical(ext) && !crl_extension_known(nid))
            return cs_fail(db, CS_INVALID, "the CRL has an unknown critical extension (%s)",
                           nid != NID_undef ? OBJ_nid2sn(nid) : "unnamed");
    }
    idp = X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, NULL);
    if (idp == NULL && crit != -1) {
        ERR_clear_error();
        return cs_fail(db, CS_INVALID, "the CRL's issuingDistributionPoint cannot be read");
    }
    if (idp != NULL) {
        if (idp->indirectCRL)
            status = cs_fail(db, CS_INVALID,
                             "an indirect CRL (entries of other issuers): not supported");
        else if (idp->onlyCA || idp->onlyattr)
            status = cs_fail(db, CS_INVALID,
                             "the CRL covers only %s certificates, not client certificates",
                             idp->onlyCA ? "CA" : "attribute");
        else if (idp->onlysomereasons != NULL)
            status = cs_fail(db, CS_INVALID,
                             "the CRL covers only some revocation reasons (a partitioned CRL)");
        /*
         * A distribution point's CRL covers only the certificates naming it:
         * stored as the pin's whole CRL, the next partition would replace it
         * and lift its revocations, and certificates of other partitions
         * would count as checked.
         */
        else if (idp->distpoint != NULL)
            status = cs_fail(db, CS_INVALID,
                             "the CRL covers one distribution point only (issuingDistributionPoint "
                             "names one: a partitioned CRL); add the CA's full CRL");
        ISSUING_DIST_POINT_free(idp);
    }
    return status;
}

/* Entries: a critical extension (certificateIssuer, ...) would change what an entry means. */
static cs_status check_entries(cs_db *db, X509_CRL *crl)
{
    STACK_OF(X509_REVOKED) *entries = X509_CRL_get_REVOKED(crl);

    for (int i = 0; i < sk_X509_REVOKED_num(entries); i++) {
        const STACK_OF(X509_EXTENSION) *exts =
            X509_REVOKED_get0_extensions(sk_X509_REVOKED_value(entries, i));

        for (int j = 0; j < sk_X509_EXTENSION_num(exts); j++) {
            X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, j);
            int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));

            if (nid == NID_certificate_issuer)
                return cs_fail(db, CS_INVALID,
                               "entry %d names another issuer (certificateIssuer): an indirect "
                               "CRL is not supported",
                               i + 1);
            if (X509_EXTENSION_get_critical(ext) && nid != NID_crl_reason &&
                nid != NID_invalidity_date)
                return cs_fail(db, CS_INVALID, "entry %d has an unknown critical extension", i + 1);
        }
    }
    return CS_OK;
}

/* CRL number as lowercase hex without leading zeros; "" when absent. */
static cs_status crl_number(cs_db *db, X509_CRL *crl, char *hex, size_t hexlen)
{
    int crit = -1;
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    BIGNUM *bn;
    char *text;

    hex[0] = '\0';
    if (num == NULL) {
        ERR_clear_error();
        return crit == -1 ? CS_OK : cs_fail(db, CS_INVALID, "the CRL number cannot be read");
    }
    bn = ASN1_INTEGER_to_BN(num, NULL);
    ASN1_INTEGER_free(num);
    text = bn != NULL && !BN_is_negative(bn) ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    if (text == NULL || strlen(text) >= hexlen) {
        OPENSSL_free(text);
        ERR_clear_error();
        return cs_fail(db, CS_INVALID, "the CRL number is negative or too long");
    }
    for (size_t i = 0; text[i] != '\0'; i++)
        hex[i] = (char)(text[i] >= 'A' && text[i] <= 'F' ? text[i] - 'A' + 'a' : text[i]);
    hex[strlen(text)] = '\0';
    /* BN_bn2hex writes zero as "0" and never pads more than a byte. */
    if (hex[0] == '0' && hex[1] != '\0')
        memmove(hex, hex + 1, strlen(hex));
    OPENSSL_free(text);
    return CS_OK;
}

/* -1, 0, 1 as a < b for hex numbers without leading zeros. */
static int hex_number_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int c;

    if (la != lb)
        return la < lb ? -1 : 1;
    c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

/* ---- which pin issued it ---------------------------------------------------------- */

typedef struct {
    X509_CRL *crl;
    const char *want; /* NULL: any */
    int signed_by;    /* pins that issued it */
    int same_name;    /* pins whose subject is its issuer but whose key does not verify it */
    int no_crl_sign;  /* issued by a pin whose keyUsage lacks cRLSign */
    char fp[CS_FP_HEX_LEN + 1];
    int64_t pin_id;
} crl_issuer_search;

static int note_crl_issuer(const cs_pin *pin, void *arg)
{
    crl_issuer_search *s = arg;
    const unsigned char *p = pin->der;
    X509 *ca;
    EVP_PKEY *key;

    if (s->want != NULL && strcmp(s->want, pin->fp) != 0)
        return 0;
    if ((ca = d2i_X509(NULL, &p, (long)pin->der_len)) == NULL) {
        ERR_clear_error();
        return 0;
    }
    key = X509_get0_pubkey(ca);
    if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(s->crl)) == 0) {
        if (key == NULL || X509_CRL_verify(s->crl, key) != 1) {
            s->same_name++;
        } else if (!(X509_get_key_usage(ca) & KU_CRL_SIGN)) {
            s->no_crl_sign++;
        } else if (s->signed_by++ == 0) {
            memcpy(s->fp, pin->fp, sizeof(s->fp));
            s->pin_id = pin->id;
        }
    }
    X509_free(ca);
    ERR_clear_error();
    return 0;
}

/* The CRL's issuer as one RFC 2253 line, as pins show subjects; caller frees. */
static char *issuer_text(X509_CRL *crl)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = NULL, *data = NULL;
    long len;

    if (bio != NULL && X509_NAME_print_ex(bio, X509_CRL_get_issuer(crl), 0, XN_FLAG_RFC2253) >= 0 &&
        (len = BIO_get_mem_data(bio, &data)) >= 0 &&
        (text = OPENSSL_malloc((size_t)len + 1)) != NULL) {
        memcpy(text, data, (size_t)len);
        text[len] = '\0';
    }
    BIO_free(bio);
    ERR_clear_error();
    return text;
}

static cs_status find_crl_pin(cs_db *db, X509_CRL *crl, const char *want, crl_issuer_search *s)
{
    cs_status status;
    char *issuer = issuer_text(crl);

    memset(s, 0, sizeof(*s));
    s->crl = crl;
    s->want = want;
    if ((status = cs_pin_foreach(db, note_crl_issuer, s)) != CS_OK) {
        OPENSSL_free(issuer);
        return status;
    }
    if (s->signed_by == 1)
        status = CS_OK;
    else if (s->signed_by > 1)
        status = cs_fail(db, CS_EXISTS,
                         "%d pinned CAs (same name and key) issued this CRL: name one with --pin",
                         s->signed_by);
    else if (s->no_crl_sign > 0)
        status = cs_fail(db, CS_INVALID,
                         "the pinned CA %s signed this CRL but its keyUsage does not allow cRLSign",
                         issuer != NULL ? issuer : "?");
    else if (s->same_name > 0)
        status = cs_fail(db, CS_INVALID,
                         "the CRL's signature does not verify with the key of the pinned CA named "
                         "%s: another CA with the same name issued it",
                         issuer != NULL ? issuer : "?");
    else if (want != NULL)
        status = cs_fail(db, CS_INVALID, "pin %s did not issue this CRL (its issuer is %s)", want,
                         issuer != NULL ? issuer : "?");
    else
        status = cs_fail(db, CS_INVALID, "no pinned CA issued this CRL (its issuer is %s)",
                         issuer != NULL ? issuer : "?");
    OPENSSL_free(issuer);
    return status;
}

/* ---- storing it ------------------------------------------------------------------- */

typedef struct {
    char fp[CS_FP_HEX_LEN + 1];
    char number[80];
    int64_t this_update, next_update, entries;
} crl_facts;

static cs_status read_facts(cs_db *db, X509_CRL *crl, int64_t now, crl_facts *f)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int der_len = i2d_X509_CRL(crl, &der), ok = 0;
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    cs_status status;

    if (der_len <= 0 || !EVP_Digest(der, (size_t)der_len, md, &mdlen, EVP_sha256(), NULL)) {
        OPENSSL_free(der);
        ERR_clear_error();
        return cs_fail(db, CS_INVALID, "cannot encode the CRL");
    }
    OPENSSL_free(der);
    for (unsigned int i = 0; i < mdlen && i < CS_FP_HEX_LEN / 2; i++)
        snprintf(f->fp + 2 * i, 3, "%02x", md[i]);
    if ((status = crl_number(db, crl, f->number, sizeof(f->number))) != CS_OK)
        return status;
    f->this_update = cs_asn1_time_to_unix(X509_CRL_get0_lastUpdate(crl), &ok);
    if (!ok)
        return cs_fail(db, CS_INVALID, "the CRL's thisUpdate cannot be read");
    if (f->this_update > now + CRL_CLOCK_SKEW)
        return cs_fail(db, CS_INVALID, "the CRL's thisUpdate is in the future (check the clock)");
    f->next_update = CS_TIME_NONE;
    if (next != NULL) {
        f->next_update = cs_asn1_time_to_unix(next, &ok);
        if (!ok || f->next_update < f->this_update)
            return cs_fail(db, CS_INVALID,
                           "the CRL's nextUpdate cannot be read or is before "
                           "its thisUpdate");
    }
    f->entries = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
    if (f->entries < 0)
        f->entries = 0;
    return CS_OK;
}

typedef struct {
    int64_t id; /* 0: none */
    char fp[CS_FP_HEX_LEN + 1];
    char number[80];
    int64_t this_update, next_update;
} stored_crl;

static const char sql_current[] =
    "SELECT id, fp, number, this_update, next_update FROM crls WHERE pin_id = ?1";

static cs_status read_stored(cs_db *db, int64_t pin_id, stored_crl *c)
{
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_CRL_CURRENT, sql_current);
    int rc;

    memset(c, 0, sizeof(*c));
    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, pin_id);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *fp = sqlite3_column_text(stmt, 1);
        const unsigned char *num = sqlite3_column_text(stmt, 2);

        c->id = sqlite3_column_int64(stmt, 0);
        snprintf(c->fp, sizeof(c->fp), "%s", fp ? (const char *)fp : "");
        snprintf(c->number, sizeof(c->number), "%s", num ? (const char *)num : "");
        c->this_update = sqlite3_column_int64(stmt, 3);
        c->next_update = cs_column_time(stmt, 4);
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading the CRL");
}

static cs_status check_newer(cs_db *db, const stored_crl *old, const crl_facts *f)
{
    char when[32];

    if (old->number[0] != '\0' && f->number[0] != '\0') {
        if (hex_number_cmp(f->number, old->number) <= 0)
            return cs_fail(db, CS_INVALID,
                           "CRL number %s is not newer than the stored CRL's (%s): refusing "
                           "to go back",
                           f->number, old->number);
        return CS_OK;
    }
    if (f->this_update <= old->this_update) {
        cs_time_format(old->this_update, when);
        return cs_fail(db, CS_INVALID,
                       "the CRL's thisUpdate is not newer than the stored CRL's (%s): refusing "
                       "to go back",
                       when);
    }
    return CS_OK;
}

/* The incoming serials, in a temporary table the merge reads from. */
static const char sql_incoming_table[] =
    "CREATE TEMP TABLE IF NOT EXISTS crl_incoming ("
    "  serial BLOB PRIMARY KEY, revoked_at INTEGER, reason INTEGER) WITHOUT ROWID";
static const char sql_incoming_clear[] = "DELETE FROM temp.crl_incoming";
static const char sql_incoming_add[] =
    "INSERT OR IGNORE INTO temp.crl_incoming (serial, revoked_at, reason) VALUES (?1, ?2, ?3)";

static int entry_reason(X509_REVOKED *entry)
{
    int crit = -1, reason = -1;
    ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, &crit, NULL);

    if (e != NULL)
        reason = (int)ASN1_ENUMERATED_get(e);
    ASN1_ENUMERATED_free(e);
    ERR_clear_error();
    return reason;
}

static cs_status load_incoming(cs_db *db, X509_CRL *crl)
{
    STACK_OF(X509_REVOKED) *entries = X509_CRL_get_REVOKED(crl);
    sqlite3_stmt *stmt;
    cs_status status;

    if (sqlite3_exec(db->sql, sql_incoming_table, NULL, NULL, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "preparing the CRL's serials");
    if ((stmt = cs_stmt_sql(db, STMT_CRL_INCOMING_CLEAR, sql_incoming_clear)) == NULL ||
        (status = cs_stmt_exec(db, stmt, "preparing the CRL's serials")) != CS_OK)
        return CS_ERR;
    for (int i = 0; i < sk_X509_REVOKED_num(entries); i++) {
        X509_REVOKED *entry = sk_X509_REVOKED_value(entries, i);
        unsigned char key[CS_SERIAL_MAX];
        size_t len = 0;
        int ok = 0, reason;
        int64_t at = cs_asn1_time_to_unix(X509_REVOKED_get0_revocationDate(entry), &ok);

        if (!cs_serial_key(X509_REVOKED_get0_serialNumber(entry), key, &len))
            return cs_fail(db, CS_INVALID, "entry %d: serial number longer than %d bytes", i + 1,
                           CS_SERIAL_MAX - 1);
        if ((reason = entry_reason(entry)) == 8) /* removeFromCRL: delta CRLs only */
            return cs_fail(db, CS_INVALID, "entry %d: reason removeFromCRL belongs in delta CRLs",
                           i + 1);
        if ((stmt = cs_stmt_sql(db, STMT_CRL_INCOMING_ADD, sql_incoming_add)) == NULL)
            return CS_ERR;
        sqlite3_bind_blob(stmt, 1, key, (int)len, SQLITE_STATIC);
        if (ok)
            sqlite3_bind_int64(stmt, 2, at);
        if (reason >= 0)
            sqlite3_bind_int(stmt, 3, reason);
        if ((status = cs_stmt_exec(db, stmt, "storing the CRL's serials")) != CS_OK)
            return status;
    }
    return CS_OK;
}

static const char sql_newly_revoked[] =
    "SELECT (SELECT count(*) FROM temp.crl_incoming i WHERE NOT EXISTS"
    "  (SELECT 1 FROM revoked r WHERE r.crl_id = ?1 AND r.serial = i.serial)),"
    " (SELECT count(*) FROM revoked r WHERE r.crl_id = ?1 AND NOT EXISTS"
    "  (SELECT 1 FROM temp.crl_incoming i WHERE i.serial = r.serial))";
static const char sql_drop_unlisted[] = "DELETE FROM revoked WHERE crl_id = ?1 AND serial NOT IN"
                                        " (SELECT serial FROM temp.crl_incoming)";
/* Only what differs is written: a refresh of a large CRL touches a few pages. */
static const char sql_merge[] =
    "INSERT INTO revoked (crl_id, serial, revoked_at, reason)"
    " SELECT ?1, serial, revoked_at, reason FROM temp.crl_incoming WHERE true"
    " ON CONFLICT (crl_id, serial) DO UPDATE SET revoked_at = excluded.revoked_at,"
    " reason = excluded.reason WHERE revoked_at IS NOT excluded.revoked_at"
    " OR reason IS NOT excluded.reason";

static cs_status merge_serials(cs_db *db, int64_t crl_id, cs_crl_add_result *res)
{
    sqlite3_stmt *stmt = cs_stmt_sql(db, STMT_CRL_NEWLY_REVOKED, sql_newly_revoked);
    cs_status status;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, crl_id);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        status = cs_sql_fail(db, "comparing the CRLs");
        sqlite3_reset(stmt);
        return status;
    }
    res->newly_revoked = sqlite3_column_int64(stmt, 0);
    res->unrevoked = sqlite3_column_int64(stmt, 1);
    sqlite3_reset(stmt);
    if ((stmt = cs_stmt_sql(db, STMT_CRL_DROP_UNLISTED, sql_drop_unlisted)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, crl_id);
    if ((status = cs_stmt_exec(db, stmt, "storing the CRL's serials")) != CS_OK)
        return status;
    if ((stmt = cs_stmt_sql(db, STMT_CRL_MERGE, sql_merge)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, crl_id);
    if ((status = cs_stmt_exec(db, stmt, "storing the CRL's serials")) != CS_OK)
        return status;
    if ((stmt = cs_stmt_sql(db, STMT_CRL_INCOMING_CLEAR, sql_incoming_clear)) == NULL)
        return CS_ERR;
    return cs_stmt_exec(db, stmt, "storing the CRL's serials");
}

static const char sql_insert[] =
    "INSERT INTO crls (pin_id, fp, number, this_update, next_update, entries, updated, url)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_update[] =
    "UPDATE crls SET fp = ?2, number = ?3, this_update = ?4, next_update = ?5, entries = ?6,"
    " updated = ?7, url = coalesce(?8, url) WHERE id = ?1";

static cs_status write_crl_row(cs_db *db, int64_t pin_id, stored_crl *old, const crl_facts *f,
                               const char *url, int64_t now)
{
    sqlite3_stmt *stmt = old->id != 0 ? cs_stmt_sql(db, STMT_CRL_UPDATE, sql_update)
                                      : cs_stmt_sql(db, STMT_CRL_INSERT, sql_insert);
    cs_status status;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, old->id != 0 ? old->id : pin_id);
    sqlite3_bind_text(stmt, 2, f->fp, -1, SQLITE_STATIC);
    cs_bind_text_or_null(stmt, 3, f->number[0] != '\0' ? f->number : NULL);
    sqlite3_bind_int64(stmt, 4, f->this_update);
    cs_bind_time(stmt, 5, f->next_update);
    sqlite3_bind_int64(stmt, 6, f->entries);
    sqlite3_bind_int64(stmt, 7, now);
    cs_bind_text_or_null(stmt, 8, url);
    status = cs_stmt_exec(db, stmt, "storing the CRL");
    if (status == CS_OK && old->id == 0)
        old->id = sqlite3_last_insert_rowid(db->sql);
    return status;
}

/* A later nextUpdate, or none: no acceptance made under the old CRL outlives it. */
static int next_update_earlier(int64_t now_next, int64_t old_next)
{
    if (now_next == CS_TIME_NONE)
        return 0;
    return old_next == CS_TIME_NONE || now_next < old_next;
}

static cs_status store_crl(cs_db *db, X509_CRL *crl, const crl_issuer_search *pin,
                           const crl_facts *f, const char *url, int64_t now, cs_crl_add_result *res)
{
    stored_crl old;
    int64_t old_next;
    int had_old;
    cs_status status = read_stored(db, pin->pin_id, &old);

    if (status != CS_OK)
        return status;
    if (old.id != 0 && strcmp(old.fp, f->fp) == 0) {
        res->unchanged = 1;
        return CS_OK;
    }
    if (old.id != 0 && (status = check_newer(db, &old, f)) != CS_OK)
        return status;
    had_old = old.id != 0;
    old_next = old.next_update;
    if ((status = cs_quiet_writes_begin(db)) != CS_OK ||
        (status = load_incoming(db, crl)) != CS_OK ||
        (status = write_crl_row(db, pin->pin_id, &old, f, url, now)) != CS_OK ||
        (status = merge_serials(db, old.id, res)) != CS_OK)
        return status;
    /* A first CRL only adds what it lists: there was no freshness to shorten. */
    if (res->newly_revoked > 0 || (had_old && next_update_earlier(f->next_update, old_next))) {
        res->generation_bumped = 1;
        status = cs_generation_bump(db);
    }
    if (status == CS_OK)
        status =
            cs_log_change(db,
                          "crl add pin=%s crl=%s number=%s entries=%lld newly_revoked=%lld "
                          "unrevoked=%lld",
                          pin->fp, f->fp, f->number[0] ? f->number : "-", (long long)f->entries,
                          (long long)res->newly_revoked, (long long)res->unrevoked);
    return status;
}

cs_status cs_crl_add(cs_db *db, X509_CRL *crl, const char *pin_fp, const char *url, int64_t now,
                     cs_crl_add_result *res)
{
    char want[CS_FP_HEX_LEN + 1];
    crl_issuer_search pin;
    crl_facts f;
    cs_status status = cs_require_write(db);

    memset(res, 0, sizeof(*res));
    memset(&f, 0, sizeof(f));
    if (status != CS_OK)
        return status;
    if (crl == NULL)
        return cs_fail(db, CS_INVALID, "no CRL given");
    if (pin_fp != NULL && !cs_fp_normalise(pin_fp, want))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)", pin_fp);
    if (url != NULL && strlen(url) > 4096)
        return cs_fail(db, CS_INVALID, "URL longer than 4096 bytes");
    if ((status = check_scope(db, crl)) != CS_OK || (status = check_entries(db, crl)) != CS_OK ||
        (status = find_crl_pin(db, crl, pin_fp != NULL ? want : NULL, &pin)) != CS_OK ||
        (status = read_facts(db, crl, now, &f)) != CS_OK)
        return status;
    memcpy(res->pin_fp, pin.fp, sizeof(res->pin_fp));
    res->entries = f.entries;
    return store_crl(db, crl, &pin, &f, url, now, res);
}

static const char sql_remove[] =
    "DELETE FROM crls WHERE pin_id = (SELECT id FROM pins WHERE fp = ?1)";

cs_status cs_crl_remove(cs_db *db, const char *pin_fp)
{
    char hex[CS_FP_HEX_LEN + 1];
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status != CS_OK)
        return status;
    if (!cs_fp_normalise(pin_fp, hex))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                       pin_fp ? pin_fp : "");
    /* Without its CRL a hard pin rejects everyone: stricter, so bump once, not per serial. */
    if ((status = cs_quiet_writes_begin(db)) != CS_OK)
        return status;
    if ((stmt = cs_stmt_sql(db, STMT_CRL_REMOVE, sql_remove)) == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
    if ((status = cs_stmt_exec(db, stmt, "removing the CRL")) != CS_OK)
        return status;
    if (sqlite3_changes(db->sql) == 0)
        return cs_fail(db, CS_NOTFOUND, "pin %s has no CRL", hex);
    if ((status = cs_generation_bump(db)) != CS_OK)
        return status;
    return cs_log_change(db, "crl rm pin=%s", hex);
}

static const char sql_note_fetch[] =
    "UPDATE crls SET url = coalesce(?2, url), fetched = ?3, fetch_result = ?4,"
    " etag = CASE WHEN ?7 THEN ?5 ELSE etag END,"
    " last_modified = CASE WHEN ?7 THEN ?6 ELSE last_modified END"
    " WHERE pin_id = (SELECT id FROM pins WHERE fp = ?1)";

cs_status cs_crl_note_fetch(cs_db *db, const char *pin_fp, const char *url, int64_t when,
                            const char *result, int set_validators, const char *etag,
                            const char *last_modified)
{
    char hex[CS_FP_HEX_LEN + 1];
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status != CS_OK)
        return status;
    if (!cs_fp_normalise(pin_fp, hex))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                       pin_fp ? pin_fp : "");
    if ((url != NULL && strlen(url) > 4096) || (etag != NULL && strlen(etag) > 1024) ||
        (last_modified != NULL && strlen(last_modified) > 128) ||
        (result != NULL && strlen(result) > 1024))
        return cs_fail(db, CS_INVALID, "fetch details too long");
    if ((status = cs_quiet_writes_begin(db)) != CS_OK)
        return status;
    if ((stmt = cs_stmt_sql(db, STMT_CRL_NOTE_FETCH, sql_note_fetch)) == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
    cs_bind_text_or_null(stmt, 2, url);
    sqlite3_bind_int64(stmt, 3, when);
    cs_bind_text_or_null(stmt, 4, result);
    cs_bind_text_or_null(stmt, 5, etag);
    cs_bind_text_or_null(stmt, 6, last_modified);
    sqlite3_bind_int(stmt, 7, set_validators != 0);
    if ((status = cs_stmt_exec(db, stmt, "recording the fetch")) != CS_OK)
        return status;
    if (sqlite3_changes(db->sql) == 0)
        return cs_fail(db, CS_NOTFOUND, "pin %s has no CRL", hex);
    return CS_OK;
}

/* ---- listing ------------------------------------------------------------------------ */

static const char sql_list[] =
    "SELECT p.fp, p.subject, p.enabled, p.revocation, p.revocation_grace, c.id, c.fp, c.number,"
    " c.this_update, c.next_update, c.entries, c.updated, c.url, c.fetched, c.fetch_result,"
    " c.etag, c.last_modified"
    " FROM pins p LEFT JOIN crls c ON c.pin_id = p.id"
    " WHERE c.id IS NOT NULL OR p.revocation IS NOT NULL OR p.revocation_grace IS NOT NULL"
    " ORDER BY p.id";

static void info_from_row(sqlite3_stmt *stmt, int64_t now, cs_crl_info *info)
{
    const unsigned char *fp = sqlite3_column_text(stmt, 0);
    const unsigned char *crl_fp = sqlite3_column_text(stmt, 6);
    cs_revocation_input in;
    int64_t until;

    memset(info, 0, sizeof(*info));
    snprintf(info->pin_fp, sizeof(info->pin_fp), "%s", fp ? (const char *)fp : "");
    info->subject = (const char *)sqlite3_column_text(stmt, 1);
    info->pin_enabled = sqlite3_column_int(stmt, 2) != 0;
    info->policy = sqlite3_column_type(stmt, 3) == SQLITE_NULL
                       ? CS_REVOCATION_DEFAULT
                       : (cs_revocation_policy)sqlite3_column_int(stmt, 3);
    info->grace = sqlite3_column_type(stmt, 4) == SQLITE_NULL ? CS_REVOCATION_GRACE_DEFAULT
                                                              : sqlite3_column_int64(stmt, 4);
    info->have_crl = sqlite3_column_type(stmt, 5) != SQLITE_NULL;
    snprintf(info->crl_fp, sizeof(info->crl_fp), "%s", crl_fp ? (const char *)crl_fp : "");
    info->number = (const char *)sqlite3_column_text(stmt, 7);
    info->this_update = info->have_crl ? sqlite3_column_int64(stmt, 8) : CS_TIME_NONE;
    info->next_update = cs_column_time(stmt, 9);
    info->entries = sqlite3_column_int64(stmt, 10);
    info->updated = info->have_crl ? sqlite3_column_int64(stmt, 11) : CS_TIME_NONE;
    info->url = (const char *)sqlite3_column_text(stmt, 12);
    info->fetched = cs_column_time(stmt, 13);
    info->fetch_result = (const char *)sqlite3_column_text(stmt, 14);
    info->etag = (const char *)sqlite3_column_text(stmt, 15);
    info->last_modified = (const char *)sqlite3_column_text(stmt, 16);
    in = (cs_revocation_input){.policy = info->policy,
                               .grace = info->grace,
                               .have_crl = info->have_crl,
                               .next_update = info->next_update,
                               .listed = 0,
                               .ocsp = CS_OCSP_NONE,
                               .ocsp_next_update = CS_TIME_NONE};
    info->state = cs_revocation_judge(&in, now, &until);
    if (info->subject == NULL)
        info->subject = "";
}

cs_status cs_crl_foreach(cs_db *db, int64_t now, cs_crl_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    cs_crl_info info;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt_sql(db, STMT_CRL_LIST, sql_list)) == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        info_from_row(stmt, now, &info);
        if (cb(&info, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading the CRLs");
}
