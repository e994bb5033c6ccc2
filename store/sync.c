/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directory sync: make the rows of one source (pins, accounts, mappings,
 * rules whose `source` column names it) equal to a snapshot of the
 * directory, in the caller's transaction. Rows with another source or none
 * (made with the CLI) are never changed; where the directory names one of
 * them, that is a conflict, told and left alone. Values go through the
 * altSecurityIdentities parser of `import --format altsecid`.
 * Rows that stay as they were are not rewritten, so their creation time
 * (the backdating check) survives every sync.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "cs_internal.h"

#define SYNC_NOTE "synced from the directory"
#define SYNC_PERCENT_DEFAULT 10
#define SYNC_STMT_MAX 32

typedef struct {
    unsigned char *der;
    size_t len;
} sync_blob;

typedef struct {
    char *account;
    int disabled;
    char **values;
    size_t nvalues;
    sync_blob *certs;
    size_t ncerts;
    int nul_in_value; /* a value held a NUL byte: malformed */
} sync_user;

struct cs_sync_snapshot {
    sync_blob *pins;
    size_t npins;
    sync_user *users;
    size_t nusers;
    char **gone; /* incremental: accounts of users the directory no longer holds */
    size_t ngone;
    int keep_pins; /* incremental: the pins' object did not change */
};

/* ---- the snapshot --------------------------------------------------------- */

cs_sync_snapshot *cs_sync_snapshot_new(void)
{
    return calloc(1, sizeof(cs_sync_snapshot));
}

void cs_sync_snapshot_free(cs_sync_snapshot *snap)
{
    if (snap == NULL)
        return;
    for (size_t i = 0; i < snap->npins; i++)
        free(snap->pins[i].der);
    for (size_t i = 0; i < snap->nusers; i++) {
        sync_user *u = &snap->users[i];

        for (size_t j = 0; j < u->nvalues; j++)
            free(u->values[j]);
        for (size_t j = 0; j < u->ncerts; j++)
            free(u->certs[j].der);
        free(u->values);
        free(u->certs);
        free(u->account);
    }
    for (size_t i = 0; i < snap->ngone; i++)
        free(snap->gone[i]);
    free(snap->gone);
    free(snap->pins);
    free(snap->users);
    free(snap);
}

/* Grow an array by one element (zeroed); NULL when out of memory. */
static void *grow(void **array, size_t *count, size_t size)
{
    unsigned char *p = realloc(*array, (*count + 1) * size);

    if (p == NULL)
        return NULL;
    *array = p;
    memset(p + *count * size, 0, size);
    return p + (*count)++ * size;
}

static int add_blob(sync_blob **array, size_t *count, const unsigned char *der, size_t len)
{
    unsigned char *copy = malloc(len > 0 ? len : 1);
    sync_blob *b;

    if (copy == NULL)
        return 0;
    if ((b = grow((void **)array, count, sizeof(**array))) == NULL) {
        free(copy);
        return 0;
    }
    memcpy(copy, der, len);
    b->der = copy;
    b->len = len;
    return 1;
}

int cs_sync_snapshot_add_pin(cs_sync_snapshot *snap, const unsigned char *der, size_t len)
{
    return add_blob(&snap->pins, &snap->npins, der, len);
}

int cs_sync_snapshot_add_user(cs_sync_snapshot *snap, const char *account, int disabled)
{
    char *copy = strdup(account);
    sync_user *u;

    if (copy == NULL)
        return 0;
    if ((u = grow((void **)&snap->users, &snap->nusers, sizeof(*u))) == NULL) {
        free(copy);
        return 0;
    }
    u->account = copy;
    u->disabled = disabled != 0;
    return 1;
}

int cs_sync_snapshot_add_value(cs_sync_snapshot *snap, const char *value, size_t len)
{
    sync_user *u = snap->nusers > 0 ? &snap->users[snap->nusers - 1] : NULL;
    char *copy, **slot;

    if (u == NULL || (copy = malloc(len + 1)) == NULL)
        return 0;
    if ((slot = grow((void **)&u->values, &u->nvalues, sizeof(*slot))) == NULL) {
        free(copy);
        return 0;
    }
    if (memchr(value, '\0', len) != NULL)
        u->nul_in_value = 1;
    memcpy(copy, value, len);
    copy[len] = '\0';
    *slot = copy;
    return 1;
}

int cs_sync_snapshot_add_cert(cs_sync_snapshot *snap, const unsigned char *der, size_t len)
{
    sync_user *u = snap->nusers > 0 ? &snap->users[snap->nusers - 1] : NULL;

    return u != NULL && add_blob(&u->certs, &u->ncerts, der, len);
}

int cs_sync_snapshot_add_gone(cs_sync_snapshot *snap, const char *account)
{
    char *copy = strdup(account), **slot;

    if (copy == NULL)
        return 0;
    if ((slot = grow((void **)&snap->gone, &snap->ngone, sizeof(*slot))) == NULL) {
        free(copy);
        return 0;
    }
    *slot = copy;
    return 1;
}

void cs_sync_snapshot_keep_pins(cs_sync_snapshot *snap)
{
    snap->keep_pins = 1;
}

size_t cs_sync_snapshot_users(const cs_sync_snapshot *snap)
{
    return snap->nusers;
}

/* ---- applying it ---------------------------------------------------------- */

typedef struct {
    cs_db *db;
    const cs_sync_opts *opts;
    cs_foreign_note_cb note;
    void *arg;
    cs_sync_result *res;
    int64_t where;             /* 1-based user number, for notes */
    int pins_kept_as_they_are; /* incremental, pins' object unchanged */
    /* Statements prepared once per sync (keyed by their SQL's address). */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[SYNC_STMT_MAX];
    int ncache;
} sync_ctx;

/* A statement for sql, prepared on first use, reset with no bindings; NULL on failure. */
static sqlite3_stmt *sync_stmt(sync_ctx *s, const char *sql)
{
    sqlite3_stmt *stmt = NULL;

    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].sql == sql) {
            sqlite3_reset(s->cache[i].stmt);
            sqlite3_clear_bindings(s->cache[i].stmt);
            return s->cache[i].stmt;
        }
    if (s->ncache == SYNC_STMT_MAX) {
        cs_fail(s->db, CS_ERR, "sync: too many statements");
        return NULL;
    }
    if (sqlite3_prepare_v2(s->db->sql, sql, -1, &stmt, NULL) != SQLITE_OK) {
        cs_sql_fail(s->db, "sync");
        return NULL;
    }
    s->cache[s->ncache].sql = sql;
    s->cache[s->ncache++].stmt = stmt;
    return stmt;
}

static void sync_stmts_free(sync_ctx *s)
{
    for (int i = 0; i < s->ncache; i++)
        sqlite3_finalize(s->cache[i].stmt);
    s->ncache = 0;
}

__attribute__((format(printf, 2, 3))) static void tell(sync_ctx *s, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (s->note != NULL)
        s->note(s->where, why, s->arg);
}

/* Run sql with ?1 = text (may be NULL: unbound) and ?2 = id (0: unbound). */
static cs_status exec_bound(sync_ctx *s, const char *sql, const char *text, int64_t id)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status;

    if ((stmt = sync_stmt(s, sql)) == NULL)
        return cs_sql_fail(s->db, "sync");
    if (text != NULL)
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    if (id != 0)
        sqlite3_bind_int64(stmt, 2, id);
    status = cs_stmt_exec(s->db, stmt, "sync");
    sqlite3_reset(stmt);
    return status;
}

/* Claim a row just made: ?1 = the source, ?2 = the key (text). */
static cs_status claim_text(sync_ctx *s, const char *sql, const char *key)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status;

    if ((stmt = sync_stmt(s, sql)) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, s->opts->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
    status = cs_stmt_exec(s->db, stmt, "sync");
    sqlite3_reset(stmt);
    return status;
}

/* The one row's source by a text or id key; "" local; CS_NOTFOUND if none. */
static cs_status row_source(sync_ctx *s, const char *sql, const char *text, int64_t id,
                            char source[CS_SOURCE_MAX], int *enabled)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_NOTFOUND;
    int rc;

    source[0] = '\0';
    if ((stmt = sync_stmt(s, sql)) == NULL)
        return cs_sql_fail(s->db, "sync");
    if (text != NULL)
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, id);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *src = sqlite3_column_text(stmt, 0);

        snprintf(source, CS_SOURCE_MAX, "%s", src != NULL ? (const char *)src : "");
        if (enabled != NULL)
            *enabled = sqlite3_column_int(stmt, 1) != 0;
        status = CS_OK;
    } else if (rc != SQLITE_DONE) {
        status = cs_sql_fail(s->db, "sync");
    }
    sqlite3_reset(stmt);
    return status;
}

static int owned(const sync_ctx *s, const char *source)
{
    return strcmp(source, s->opts->source) == 0;
}

static cs_status mark_seen(sync_ctx *s, const char *table, int64_t id)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status;

    if ((stmt = sync_stmt(s, "INSERT OR IGNORE INTO temp.sync_seen (tbl, id) VALUES (?1, ?2)")) ==
        NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    status = cs_stmt_exec(s->db, stmt, "sync");
    sqlite3_reset(stmt);
    return status;
}

static cs_status seen_before(sync_ctx *s, const char *table, int64_t id, int *seen)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    if ((stmt = sync_stmt(s, "SELECT 1 FROM temp.sync_seen WHERE tbl = ?1 AND id = ?2")) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cs_sql_fail(s->db, "sync");
    *seen = rc == SQLITE_ROW;
    return CS_OK;
}

static int64_t count_owned(sync_ctx *s, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int64_t n = -1;

    if ((stmt = sync_stmt(s, sql)) == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, s->opts->source, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return n;
}

/* ---- pins ---- */

/* *id of the pin when this source owns it, else 0. */
static cs_status pin_id_if_ours(sync_ctx *s, const char *fp, int64_t *id)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    *id = 0;
    if ((stmt = sync_stmt(s, "SELECT id FROM pins WHERE fp = ?1 AND source = ?2")) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, fp, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, s->opts->source, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        *id = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CS_OK : cs_sql_fail(s->db, "sync");
}

static cs_status sync_pin(sync_ctx *s, const sync_blob *b)
{
    const unsigned char *p = b->der;
    X509 *ca = d2i_X509(NULL, &p, (long)b->len);
    char fp[CS_FP_HEX_LEN + 1], source[CS_SOURCE_MAX];
    int enabled = 1;
    cs_status status;
    int64_t id = 0;

    if (ca == NULL || p != b->der + b->len) {
        X509_free(ca);
        return cs_fail(s->db, CS_INVALID, "a CA certificate in the directory cannot be decoded");
    }
    if (!cs_fp_of_cert(ca, fp)) {
        X509_free(ca);
        return cs_fail(s->db, CS_ERR, "cannot hash a CA certificate");
    }
    status =
        row_source(s, "SELECT source, enabled FROM pins WHERE fp = ?1", fp, 0, source, &enabled);
    if (status == CS_OK && !owned(s, source)) {
        s->res->conflicts++;
        tell(s, "pin %s is %s: left as it is", fp,
             source[0] == '\0' ? "pinned locally" : "owned by another source");
    } else if (status == CS_OK) {
        s->res->pins_kept++;
        if (!enabled) /* the directory says pinned: a local disable does not last */
            status = cs_pin_set_enabled(s->db, fp, 1);
    } else if (status == CS_NOTFOUND) {
        status = cs_pin_add(s->db, ca, SYNC_NOTE, fp);
        if (status == CS_INVALID) { /* not a CA: told, not pinned */
            s->res->refused++;
            tell(s, "%s", cs_db_errmsg(s->db));
            status = CS_OK;
        } else if (status == CS_OK) {
            s->res->pins_added++;
            status = claim_text(s, "UPDATE pins SET source = ?1 WHERE fp = ?2", fp);
        }
    }
    if (status == CS_OK && (status = pin_id_if_ours(s, fp, &id)) == CS_OK && id > 0)
        status = mark_seen(s, "pins", id);
    X509_free(ca);
    return status;
}

/* ---- accounts ---- */

/* 1 when the user's values may be synced, 0 when the account is not ours. */
static cs_status sync_account(sync_ctx *s, const sync_user *u, int *ours)
{
    char source[CS_SOURCE_MAX];
    int enabled = 1;
    int64_t id = 0;
    cs_status status;

    *ours = 0;
    if (!cs_account_name_valid(u->account))
        return cs_fail(s->db, CS_INVALID, "user %lld: invalid account name", (long long)s->where);
    status = row_source(s, "SELECT source, enabled FROM accounts WHERE name = ?1", u->account, 0,
                        source, &enabled);
    if (status == CS_OK && owned(s, source) && cs_account_id(s->db, u->account, &id) == CS_OK) {
        int twice = 0;

        if ((status = seen_before(s, "accounts", id, &twice)) != CS_OK)
            return status;
        if (twice)
            return cs_fail(s->db, CS_INVALID, "two directory entries name account %s", u->account);
    }
    if (status == CS_NOTFOUND) {
        status = cs_account_add(s->db, u->account, SYNC_NOTE);
        if (status == CS_OK)
            status = claim_text(s, "UPDATE accounts SET source = ?1 WHERE name = ?2", u->account);
        if (status == CS_OK)
            s->res->accounts_added++;
        if (status == CS_OK && u->disabled)
            status = cs_account_set_enabled(s->db, u->account, 0);
        if (status != CS_OK)
            return status;
    } else if (status != CS_OK) {
        return status;
    } else if (!owned(s, source)) {
        s->res->conflicts++;
        tell(s, "account %s was made %s: its directory values are not synced", u->account,
             source[0] == '\0' ? "locally" : "by another source");
        return CS_OK;
    } else if (enabled == u->disabled) {
        status = cs_account_set_enabled(s->db, u->account, !u->disabled);
        if (status != CS_OK)
            return status;
        if (u->disabled)
            s->res->accounts_disabled++;
        else
            s->res->accounts_enabled++;
    }
    if ((status = cs_account_id(s->db, u->account, &id)) != CS_OK)
        return status;
    status = mark_seen(s, "accounts", id);
    if (status == CS_OK)
        *ours = 1;
    return status;
}

/* ---- mappings ---- */

static cs_status find_mapping_row(sync_ctx *s, cs_kind kind, const cs_key *key, int64_t *id,
                                  char source[CS_SOURCE_MAX], char *account, size_t account_len,
                                  char pin[CS_FP_HEX_LEN + 1])
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_NOTFOUND;
    int rc;

    if ((stmt = sync_stmt(s, "SELECT m.id, m.source, a.name, m.pin_fp FROM mappings m"
                             " JOIN accounts a ON a.id = m.account_id"
                             " WHERE m.kind = ?1 AND m.key = ?2")) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_int(stmt, 1, (int)kind);
    sqlite3_bind_blob(stmt, 2, key->bytes, (int)key->len, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *src = sqlite3_column_text(stmt, 1);
        const unsigned char *name = sqlite3_column_text(stmt, 2);
        const unsigned char *fp = sqlite3_column_text(stmt, 3);

        *id = sqlite3_column_int64(stmt, 0);
        snprintf(source, CS_SOURCE_MAX, "%s", src != NULL ? (const char *)src : "");
        snprintf(account, account_len, "%s", name != NULL ? (const char *)name : "");
        snprintf(pin, CS_FP_HEX_LEN + 1, "%s", fp != NULL ? (const char *)fp : "");
        status = CS_OK;
    } else if (rc != SQLITE_DONE) {
        status = cs_sql_fail(s->db, "sync");
    }
    sqlite3_reset(stmt);
    return status;
}

static cs_status want_mapping(const cs_mapping_spec *want, void *arg)
{
    sync_ctx *s = arg;
    char source[CS_SOURCE_MAX], account[CS_ACCOUNT_MAX + 1], pin[CS_FP_HEX_LEN + 1];
    char keytext[64];
    cs_mapping_spec spec = *want;
    cs_mapping_ref ref = {.id = 0};
    int64_t id = 0;
    int seen = 0;
    cs_status status =
        find_mapping_row(s, spec.kind, &spec.key, &id, source, account, sizeof(account), pin);

    spec.note = SYNC_NOTE;
    cs_key_abbrev(spec.kind, &spec.key, keytext, sizeof(keytext));
    if (status == CS_OK && !owned(s, source)) {
        s->res->conflicts++;
        tell(s, "%s mapping %s was made %s: left as it is", cs_kind_name(spec.kind), keytext,
             source[0] == '\0' ? "locally" : "by another source");
        return CS_OK;
    }
    if (status == CS_OK) {
        if ((status = seen_before(s, "mappings", id, &seen)) != CS_OK)
            return status;
        if (seen) { /* two users name one certificate: the first keeps it */
            s->res->conflicts++;
            tell(s, "%s mapping %s is named by %s and %s: kept for %s", cs_kind_name(spec.kind),
                 keytext, account, spec.account, account);
            return CS_OK;
        }
        if (strcmp(account, spec.account) == 0 &&
            strcmp(pin, spec.pin_fp != NULL ? spec.pin_fp : "") == 0) {
            s->res->mappings_kept++;
            return mark_seen(s, "mappings", id);
        }
        /* Moved to another user or CA: the old row goes, a new one comes. */
        ref.id = id;
        if ((status = cs_mapping_remove(s->db, &ref)) != CS_OK)
            return status;
        s->res->mappings_removed++;
    } else if (status != CS_NOTFOUND) {
        return status;
    }
    if ((status = cs_mapping_add(s->db, &spec, 0, &id)) != CS_OK)
        return status;
    s->res->mappings_added++;
    status = exec_bound(s, "UPDATE mappings SET source = ?1 WHERE id = ?2", s->opts->source, id);
    return status == CS_OK ? mark_seen(s, "mappings", id) : status;
}

static cs_status sync_cert(sync_ctx *s, const sync_user *u, const sync_blob *b)
{
    const unsigned char *p = b->der;
    X509 *leaf = d2i_X509(NULL, &p, (long)b->len);
    cs_mapping_spec spec;
    cs_status status;

    if (leaf == NULL || p != b->der + b->len) {
        X509_free(leaf);
        return cs_fail(s->db, CS_INVALID, "user %s: a certificate cannot be decoded", u->account);
    }
    memset(&spec, 0, sizeof(spec));
    spec.account = u->account;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    status = cs_mapping_spec_from_cert(&spec, leaf, CS_KIND_CERT);
    if (status == CS_OK)
        status = want_mapping(&spec, s);
    X509_free(leaf);
    return status;
}

/* ---- rules (weak forms, only with allow_weak) ---- */

static int same_text(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static cs_status want_rule(const cs_rule_spec *want, void *arg)
{
    sync_ctx *s = arg;
    sqlite3_stmt *stmt = NULL;
    cs_rule_spec spec = *want;
    int64_t id = 0;
    cs_status status;
    int rc;

    /* Ours with the same meaning: kept (with its creation time). */
    if ((stmt = sync_stmt(s, "SELECT r.id, r.subject, r.san FROM rules r"
                             " JOIN accounts a ON a.id = r.account_id"
                             " WHERE r.source = ?1 AND a.name = ?2 AND r.pin_fp = ?3"
                             " AND r.action = 0 AND r.subject_exact = ?4")) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, s->opts->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, spec.account, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, spec.pin_fp, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, spec.subject_exact != 0);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if (same_text((const char *)sqlite3_column_text(stmt, 1), spec.subject) &&
            same_text((const char *)sqlite3_column_text(stmt, 2), spec.san)) {
            id = sqlite3_column_int64(stmt, 0);
            break;
        }
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cs_sql_fail(s->db, "sync");
    if (id > 0)
        return mark_seen(s, "rules", id);
    spec.note = SYNC_NOTE " (weak)";
    if ((status = cs_rule_add(s->db, &spec, 0, &id)) != CS_OK)
        return status;
    s->res->rules_added++;
    status = exec_bound(s, "UPDATE rules SET source = ?1 WHERE id = ?2", s->opts->source, id);
    return status == CS_OK ? mark_seen(s, "rules", id) : status;
}

/* ---- what the directory no longer names ---- */

/*
 * Ids of the source's rows in table not seen this time; scope (SQL, may be
 * "") narrows them (an incremental sync: the rows of the users it read).
 */
static cs_status unseen_ids(sync_ctx *s, const char *table, const char *scope, int64_t **ids,
                            size_t *n)
{
    char *sql = sqlite3_mprintf("SELECT id FROM \"%w\" WHERE source = ?1 AND id NOT IN"
                                " (SELECT id FROM temp.sync_seen WHERE tbl = %Q)%s ORDER BY id",
                                table, table, scope);
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_OK;
    int rc;

    *ids = NULL;
    *n = 0;
    if (sql == NULL)
        return cs_fail(s->db, CS_ERR, "out of memory");
    rc = sqlite3_prepare_v2(s->db->sql, sql, -1, &stmt, NULL);
    sqlite3_free(sql);
    if (rc != SQLITE_OK)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_text(stmt, 1, s->opts->source, -1, SQLITE_STATIC);
    while (status == CS_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t *slot = grow((void **)ids, n, sizeof(**ids));

        if (slot == NULL)
            status = cs_fail(s->db, CS_ERR, "out of memory");
        else
            *slot = sqlite3_column_int64(stmt, 0);
    }
    if (status == CS_OK && rc != SQLITE_DONE)
        status = cs_sql_fail(s->db, "sync");
    sqlite3_finalize(stmt);
    if (status != CS_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return status;
}

static cs_status text_of_id(sync_ctx *s, const char *sql, int64_t id, char *out, size_t len)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_NOTFOUND;

    if ((stmt = sync_stmt(s, sql)) == NULL)
        return cs_sql_fail(s->db, "sync");
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(stmt, 0);

        snprintf(out, len, "%s", t != NULL ? (const char *)t : "");
        status = CS_OK;
    }
    sqlite3_reset(stmt);
    return status;
}

static cs_status remove_unseen(sync_ctx *s, int64_t owned_mappings, int64_t owned_pins)
{
    /* Incremental: only the rows of the users read or gone; pins only when read. */
    static const char users_read[] =
        " AND account_id IN (SELECT id FROM temp.sync_seen WHERE tbl = 'accounts'"
        " UNION ALL SELECT id FROM temp.sync_gone)";
    int incremental = s->opts->incremental;
    int64_t *maps = NULL, *rules = NULL, *pins = NULL, *accts = NULL;
    size_t nmaps = 0, nrules = 0, npins = 0, naccts = 0;
    cs_status status = unseen_ids(s, "mappings", incremental ? users_read : "", &maps, &nmaps);
    int max =
        s->opts->max_removal_percent > 0 ? s->opts->max_removal_percent : SYNC_PERCENT_DEFAULT;

    if (status == CS_OK)
        status = unseen_ids(s, "rules", incremental ? users_read : "", &rules, &nrules);
    if (status == CS_OK && !s->pins_kept_as_they_are)
        status = unseen_ids(s, "pins", "", &pins, &npins);
    if (status == CS_OK)
        status = unseen_ids(s, "accounts",
                            incremental ? " AND id IN (SELECT id FROM temp.sync_gone)" : "", &accts,
                            &naccts);
    /* A wrong base DN or lost read rights look like mass deletion. */
    if (status == CS_OK && !s->opts->allow_mass_removal) {
        if (owned_mappings > 0 && (int64_t)nmaps * 100 > owned_mappings * max)
            status = cs_fail(s->db, CS_INVALID,
                             "refused: the directory no longer names %lld of the %lld mappings "
                             "synced from it (more than %d%%); check the base DN and the "
                             "bind's rights, or use --allow-mass-removal",
                             (long long)nmaps, (long long)owned_mappings, max);
        else if (owned_pins > 0 && npins > 0 && npins == (size_t)owned_pins &&
                 s->res->pins_kept == 0)
            status = cs_fail(s->db, CS_INVALID,
                             "refused: the directory no longer names any of the %lld CAs "
                             "pinned from it; check the pins' DN, or use --allow-mass-removal",
                             (long long)owned_pins);
    }
    for (size_t i = 0; status == CS_OK && i < nmaps; i++) {
        cs_mapping_ref ref = {.id = maps[i]};

        if ((status = cs_mapping_remove(s->db, &ref)) == CS_OK)
            s->res->mappings_removed++;
    }
    for (size_t i = 0; status == CS_OK && i < nrules; i++)
        if ((status = cs_rule_remove(s->db, rules[i])) == CS_OK)
            s->res->rules_removed++;
    for (size_t i = 0; status == CS_OK && i < npins; i++) {
        char fp[CS_FP_HEX_LEN + 1];

        status = text_of_id(s, "SELECT fp FROM pins WHERE id = ?1", pins[i], fp, sizeof(fp));
        if (status == CS_OK && (status = cs_pin_remove(s->db, fp)) == CS_OK)
            s->res->pins_removed++;
    }
    /* A user gone: the account goes, or is disabled while local rows still use it. */
    for (size_t i = 0; status == CS_OK && i < naccts; i++) {
        char name[CS_ACCOUNT_MAX + 1];

        status =
            text_of_id(s, "SELECT name FROM accounts WHERE id = ?1", accts[i], name, sizeof(name));
        if (status == CS_OK) {
            status = cs_account_remove(s->db, name, 0);
            if (status == CS_OK) {
                s->res->accounts_removed++;
            } else if (status == CS_INUSE) {
                int enabled = 0;
                char source[CS_SOURCE_MAX];

                status = row_source(s, "SELECT source, enabled FROM accounts WHERE id = ?1", NULL,
                                    accts[i], source, &enabled);
                if (status == CS_OK && enabled &&
                    (status = cs_account_set_enabled(s->db, name, 0)) == CS_OK)
                    s->res->accounts_disabled++;
            }
        }
    }
    free(maps);
    free(rules);
    free(pins);
    free(accts);
    return status;
}

static cs_status record_success(sync_ctx *s)
{
    const cs_sync_mark *m = s->opts->mark;
    sqlite3_stmt *stmt = NULL;
    cs_status status;
    char detail[256];

    snprintf(detail, sizeof(detail), "%s users=%lld mappings+%lld-%lld pins+%lld-%lld",
             s->opts->incremental ? "incremental" : "full", (long long)s->where,
             (long long)s->res->mappings_added, (long long)s->res->mappings_removed,
             (long long)s->res->pins_added, (long long)s->res->pins_removed);
    if ((stmt = sync_stmt(
             s, "INSERT INTO sync_state (source, last_success, detail, server, invocation_id, usn,"
                " pins_usn, last_full, settings) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                " ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success,"
                " detail = excluded.detail, server = excluded.server,"
                " invocation_id = excluded.invocation_id, usn = excluded.usn,"
                " pins_usn = excluded.pins_usn, last_full = excluded.last_full,"
                " settings = excluded.settings")) == NULL)
        return cs_sql_fail(s->db, "recording the sync");
    sqlite3_bind_text(stmt, 1, s->opts->source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, cs_now());
    sqlite3_bind_text(stmt, 3, detail, -1, SQLITE_TRANSIENT);
    if (m != NULL) {
        sqlite3_bind_text(stmt, 4, m->server, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, m->invocation_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 6, m->usn);
        sqlite3_bind_int64(stmt, 7, m->pins_usn);
        sqlite3_bind_int64(stmt, 8, m->last_full);
        sqlite3_bind_text(stmt, 9, m->settings, -1, SQLITE_STATIC);
    }
    status = cs_stmt_exec(s->db, stmt, "recording the sync");
    sqlite3_reset(stmt);
    /* `sync --follow` syncs often: the change log keeps the syncs that changed something. */
    if (status == CS_OK && (!s->opts->incremental || cs_sync_changed(s->res)))
        status = cs_log_change(s->db, "sync source=%s %s", s->opts->source, detail);
    return status;
}

int cs_sync_changed(const cs_sync_result *r)
{
    return r->pins_added + r->pins_removed + r->accounts_added + r->accounts_removed +
               r->accounts_disabled + r->accounts_enabled + r->mappings_added +
               r->mappings_removed + r->rules_added + r->rules_removed >
           0;
}

/* Incremental: the owned accounts of gone users (unless read again this time) into sync_gone. */
static cs_status collect_gone(sync_ctx *s, const cs_sync_snapshot *snap)
{
    cs_status status = exec_bound(s,
                                  "CREATE TEMP TABLE IF NOT EXISTS sync_gone"
                                  " (id INTEGER PRIMARY KEY)",
                                  NULL, 0);

    if (status == CS_OK)
        status = exec_bound(s, "DELETE FROM temp.sync_gone", NULL, 0);
    for (size_t i = 0; status == CS_OK && i < snap->ngone; i++) {
        sqlite3_stmt *stmt =
            sync_stmt(s, "INSERT OR IGNORE INTO temp.sync_gone (id) SELECT id FROM accounts"
                         " WHERE name = ?1 AND source = ?2 AND id NOT IN"
                         " (SELECT id FROM temp.sync_seen WHERE tbl = 'accounts')");

        if (stmt == NULL)
            return cs_sql_fail(s->db, "sync");
        sqlite3_bind_text(stmt, 1, snap->gone[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, s->opts->source, -1, SQLITE_STATIC);
        status = cs_stmt_exec(s->db, stmt, "sync");
        sqlite3_reset(stmt);
    }
    return status;
}

static cs_status sync_users(sync_ctx *s, const cs_sync_snapshot *snap)
{
    cs_altsec_sink sink = {.mapping = want_mapping, .rule = want_rule, .arg = s};
    cs_foreign_result parsed;
    cs_altsec *parser = NULL;
    cs_status status;

    memset(&parsed, 0, sizeof(parsed));
    status =
        cs_altsec_open(s->db, NULL, s->opts->allow_weak, s->note, s->arg, &sink, &parsed, &parser);
    for (size_t i = 0; status == CS_OK && i < snap->nusers; i++) {
        const sync_user *u = &snap->users[i];
        int ours = 0;

        s->where = (int64_t)i + 1;
        if (u->nul_in_value)
            status = cs_fail(s->db, CS_INVALID, "user %s: a value holds a NUL byte", u->account);
        else
            status = sync_account(s, u, &ours);
        for (size_t j = 0; status == CS_OK && ours && j < u->nvalues; j++) {
            status =
                cs_altsec_value(parser, s->where, u->account, u->values[j], strlen(u->values[j]));
            if (status == CS_INVALID) {
                char why[256];

                snprintf(why, sizeof(why), "%s", cs_db_errmsg(s->db));
                status = cs_fail(s->db, CS_INVALID, "user %s: %.200s: %s", u->account, u->values[j],
                                 why);
            }
        }
        for (size_t j = 0; status == CS_OK && ours && j < u->ncerts; j++)
            status = sync_cert(s, u, &u->certs[j]);
    }
    s->res->refused += parsed.refused;
    cs_altsec_close(parser);
    return status;
}

cs_status cs_sync_apply(cs_db *db, const cs_sync_snapshot *snap, const cs_sync_opts *opts,
                        cs_foreign_note_cb note, void *arg, cs_sync_result *res)
{
    sync_ctx s = {.db = db, .opts = opts, .note = note, .arg = arg, .res = res};
    cs_status status = cs_require_write(db);
    int64_t owned_mappings, owned_pins;

    memset(res, 0, sizeof(*res));
    if (status != CS_OK)
        return status;
    if (opts->source == NULL || opts->source[0] == '\0' || strlen(opts->source) >= CS_SOURCE_MAX)
        return cs_fail(db, CS_INVALID, "a sync needs a source name (1..%d bytes)",
                       CS_SOURCE_MAX - 1);
    status = exec_bound(&s,
                        "CREATE TEMP TABLE IF NOT EXISTS sync_seen"
                        " (tbl TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (tbl, id))",
                        NULL, 0);
    if (status == CS_OK)
        status = exec_bound(&s, "DELETE FROM temp.sync_seen", NULL, 0);
    owned_mappings = count_owned(&s, "SELECT count(*) FROM mappings WHERE source = ?1");
    owned_pins = count_owned(&s, "SELECT count(*) FROM pins WHERE source = ?1");
    if (status == CS_OK && (owned_mappings < 0 || owned_pins < 0))
        status = cs_sql_fail(db, "counting the synced rows");
    s.pins_kept_as_they_are = opts->incremental && snap->keep_pins;
    for (size_t i = 0; status == CS_OK && !s.pins_kept_as_they_are && i < snap->npins; i++)
        status = sync_pin(&s, &snap->pins[i]);
    if (status == CS_OK)
        status = sync_users(&s, snap);
    if (status == CS_OK)
        status = collect_gone(&s, snap);
    if (status == CS_OK)
        status = remove_unseen(&s, owned_mappings, owned_pins);
    s.where = (int64_t)snap->nusers;
    if (status == CS_OK)
        status = record_success(&s);
    sync_stmts_free(&s);
    return status;
}

cs_status cs_sync_last_success(cs_db *db, const char *source, int64_t *when)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_NOTFOUND;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (sqlite3_prepare_v2(db->sql,
                           source != NULL
                               ? "SELECT max(last_success) FROM sync_state WHERE source = ?1"
                               : "SELECT max(last_success) FROM sync_state",
                           -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "reading the last sync");
    if (source != NULL)
        sqlite3_bind_text(stmt, 1, source, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        *when = sqlite3_column_int64(stmt, 0);
        status = CS_OK;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        status = cs_sql_fail(db, "reading the last sync");
    }
    sqlite3_finalize(stmt);
    return status;
}

cs_status cs_sync_mark_get(cs_db *db, const char *source, cs_sync_mark *out)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_NOTFOUND;
    int rc;

    memset(out, 0, sizeof(*out));
    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT server, invocation_id, usn, pins_usn, last_full, settings"
                           " FROM sync_state"
                           " WHERE source = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "reading the sync state");
    sqlite3_bind_text(stmt, 1, source, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *server = sqlite3_column_text(stmt, 0);
        const unsigned char *id = sqlite3_column_text(stmt, 1);

        snprintf(out->server, sizeof(out->server), "%s", server ? (const char *)server : "");
        snprintf(out->invocation_id, sizeof(out->invocation_id), "%s", id ? (const char *)id : "");
        out->usn = sqlite3_column_int64(stmt, 2);
        out->pins_usn = sqlite3_column_int64(stmt, 3);
        out->last_full = sqlite3_column_int64(stmt, 4);
        snprintf(out->settings, sizeof(out->settings), "%s",
                 sqlite3_column_text(stmt, 5) ? (const char *)sqlite3_column_text(stmt, 5) : "");
        status = CS_OK;
    } else if (rc != SQLITE_DONE) {
        status = cs_sql_fail(db, "reading the sync state");
    }
    sqlite3_finalize(stmt);
    return status;
}
