/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the IIS and altSecurityIdentities imports write, so that running
 * one again is safe: an entry the store already has (a mapping of the same
 * kind and key, a rule of the same pin and conditions) is refused naming
 * it, or with update changed in place; the rest is added. Everything runs
 * in the caller's transaction.
 *
 * Rows this import wrote are remembered (by id) and never matched again:
 * a file that names one certificate twice is refused with both lines, and
 * a file with two rules of the same conditions (IIS keeps both; the first
 * decides) gets two rules, on the first run and on every re-run.
 */
#include <stdlib.h>
#include <string.h>

#include "cs_internal.h"

typedef struct {
    int64_t id; /* 0: free */
    int64_t line;
} written_slot;

/* Ids written by this import, with the line that wrote them. */
typedef struct {
    written_slot *slots;
    size_t cap, used;
} written_set;

struct cs_foreign_writer {
    cs_db *db;
    int update;
    cs_foreign_result *res;
    sqlite3_stmt *mapping_find, *mapping_update, *rule_find, *rule_update;
    written_set mappings, rules;
};

static size_t slot_of(const written_set *s, int64_t id)
{
    size_t i = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ULL >> 32) & (s->cap - 1);

    while (s->slots[i].id != 0 && s->slots[i].id != id)
        i = (i + 1) & (s->cap - 1);
    return i;
}

/* The line that wrote id in this import; 0 when it did not. */
static int64_t written_line(const written_set *s, int64_t id)
{
    return s->cap == 0 ? 0 : s->slots[slot_of(s, id)].line;
}

static int remember(written_set *s, int64_t id, int64_t line)
{
    if ((s->used + 1) * 2 > s->cap) {
        written_set bigger = {.cap = s->cap ? s->cap * 2 : 256};

        if ((bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots))) == NULL)
            return 0;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i].id != 0)
                bigger.slots[slot_of(&bigger, s->slots[i].id)] = s->slots[i];
        bigger.used = s->used;
        free(s->slots);
        *s = bigger;
    }
    size_t i = slot_of(s, id);
    if (s->slots[i].id == 0)
        s->used++;
    s->slots[i] = (written_slot){.id = id, .line = line > 0 ? line : 1};
    return 1;
}

/* A statement of the writer's own, prepared on first use and reused. */
static sqlite3_stmt *writer_stmt(cs_foreign_writer *w, sqlite3_stmt **slot, const char *sql)
{
    if (*slot != NULL) {
        sqlite3_reset(*slot);
        sqlite3_clear_bindings(*slot);
        return *slot;
    }
    if (sqlite3_prepare_v2(w->db->sql, sql, -1, slot, NULL) != SQLITE_OK) {
        cs_sql_fail(w->db, "preparing the import");
        return NULL;
    }
    return *slot;
}

cs_status cs_foreign_writer_new(cs_db *db, int update, cs_foreign_result *res,
                                cs_foreign_writer **out)
{
    if ((*out = calloc(1, sizeof(**out))) == NULL)
        return cs_fail(db, CS_ERR, "out of memory");
    (*out)->db = db;
    (*out)->update = update;
    (*out)->res = res;
    return CS_OK;
}

void cs_foreign_writer_free(cs_foreign_writer *w)
{
    if (w == NULL)
        return;
    sqlite3_finalize(w->mapping_find);
    sqlite3_finalize(w->mapping_update);
    sqlite3_finalize(w->rule_find);
    sqlite3_finalize(w->rule_update);
    free(w->mappings.slots);
    free(w->rules.slots);
    free(w);
}

/* The account's id, created (and counted) when it does not exist. */
static cs_status account_for(cs_foreign_writer *w, const char *name, int64_t *id)
{
    cs_status status = cs_account_id(w->db, name, id);

    if (status != CS_NOTFOUND)
        return status;
    status = cs_account_insert(w->db, name, NULL, id);
    if (status == CS_OK)
        status = cs_log_change(w->db, "account add name=%s", name);
    if (status == CS_OK)
        w->res->accounts_created++;
    return status;
}

/* What the store has for a kind and key, or for a rule's pin and conditions. */
typedef struct {
    int64_t id;
    char account[CS_ACCOUNT_MAX + 1]; /* "" for a deny rule */
    char source[CS_SOURCE_MAX];       /* "" for a local row */
} existing_row;

static void read_existing(sqlite3_stmt *stmt, existing_row *row)
{
    const char *account = (const char *)sqlite3_column_text(stmt, 1);
    const char *source = (const char *)sqlite3_column_text(stmt, 2);

    row->id = sqlite3_column_int64(stmt, 0);
    snprintf(row->account, sizeof(row->account), "%s", account != NULL ? account : "");
    snprintf(row->source, sizeof(row->source), "%s", source != NULL ? source : "");
}

static cs_status find_mapping(cs_foreign_writer *w, const cs_mapping_spec *spec, existing_row *row)
{
    sqlite3_stmt *stmt =
        writer_stmt(w, &w->mapping_find,
                    "SELECT m.id, a.name, m.source FROM mappings m"
                    " JOIN accounts a ON a.id = m.account_id WHERE m.kind = ?1 AND m.key = ?2");
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int(stmt, 1, (int)spec->kind);
    sqlite3_bind_blob(stmt, 2, spec->key.bytes, (int)spec->key.len, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        read_existing(stmt, row);
    sqlite3_reset(stmt);
    if (rc == SQLITE_ROW)
        return CS_OK;
    return rc == SQLITE_DONE ? CS_NOTFOUND : cs_sql_fail(w->db, "reading mappings");
}

static cs_status add_mapping(cs_foreign_writer *w, const cs_mapping_spec *spec, int enabled,
                             int64_t line)
{
    int64_t id = 0, account_id = 0;
    cs_status status = account_for(w, spec->account, &account_id);

    if (status == CS_OK)
        status = cs_mapping_add(w->db, spec, 0, &id);
    if (status == CS_OK && !enabled) {
        cs_mapping_ref ref = {.id = id};
        status = cs_mapping_set_enabled(w->db, &ref, 0);
    }
    if (status == CS_OK && !remember(&w->mappings, id, line))
        status = cs_fail(w->db, CS_ERR, "out of memory");
    return status;
}

static cs_status update_mapping(cs_foreign_writer *w, const cs_mapping_spec *spec, int enabled,
                                const char *pin_hex, const existing_row *row, int64_t line)
{
    char key[48];
    int64_t account_id = 0;
    sqlite3_stmt *stmt;
    cs_status status = account_for(w, spec->account, &account_id);

    if (status != CS_OK)
        return status;
    stmt = writer_stmt(w, &w->mapping_update,
                       "UPDATE mappings SET account_id = ?2, pin_fp = ?3, not_before = ?4,"
                       " not_after = ?5, enabled = ?6, note = ?7 WHERE id = ?1");
    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, row->id);
    sqlite3_bind_int64(stmt, 2, account_id);
    cs_bind_text_or_null(stmt, 3, pin_hex);
    cs_bind_time(stmt, 4, spec->not_before);
    cs_bind_time(stmt, 5, spec->not_after);
    sqlite3_bind_int(stmt, 6, enabled != 0);
    cs_bind_text_or_null(stmt, 7, spec->note);
    if ((status = cs_stmt_exec(w->db, stmt, "updating the mapping")) != CS_OK)
        return status;
    if (!remember(&w->mappings, row->id, line))
        return cs_fail(w->db, CS_ERR, "out of memory");
    cs_key_abbrev(spec->kind, &spec->key, key, sizeof(key));
    return cs_log_change(w->db, "map update id=%lld kind=%s key=%s account=%s%s%s",
                         (long long)row->id, cs_kind_name(spec->kind), key, spec->account,
                         pin_hex[0] ? " pin=" : "", pin_hex);
}

cs_status cs_foreign_put_mapping(cs_foreign_writer *w, const cs_mapping_spec *spec, int enabled,
                                 int64_t line)
{
    char pin_hex[CS_FP_HEX_LEN + 1];
    existing_row row;
    int64_t earlier;
    cs_status status = cs_mapping_spec_check(w->db, spec, pin_hex);

    if (status == CS_OK)
        status = find_mapping(w, spec, &row);
    if (status == CS_NOTFOUND)
        status = add_mapping(w, spec, enabled, line);
    else if (status != CS_OK)
        return status;
    else if ((earlier = written_line(&w->mappings, row.id)) != 0)
        return cs_fail(w->db, CS_INVALID, "same kind and key as line %lld", (long long)earlier);
    else if (!w->update)
        return cs_fail(w->db, CS_EXISTS, "a %s mapping %s already exists: mapping %lld -> %s",
                       cs_kind_name(spec->kind),
                       spec->kind == CS_KIND_CERT ? "for this certificate" : "with this key",
                       (long long)row.id, row.account);
    else if (row.source[0] != '\0')
        return cs_fail(w->db, CS_INVALID,
                       "mapping %lld -> %s is owned by %s: an import does not change it "
                       "(change it in the directory)",
                       (long long)row.id, row.account, row.source);
    else if ((status = update_mapping(w, spec, enabled, pin_hex, &row, line)) == CS_OK)
        w->res->mappings_updated++;
    if (status == CS_OK)
        w->res->mappings++;
    return status;
}

/*
 * The first rule of this pin with exactly these conditions that this import
 * has not written; CS_NOTFOUND when there is none.
 */
static cs_status find_rule(cs_foreign_writer *w, const cs_rule_spec *spec, const char *pin,
                           existing_row *row)
{
    sqlite3_stmt *stmt = writer_stmt(
        w, &w->rule_find,
        "SELECT r.id, a.name, r.source FROM rules r LEFT JOIN accounts a ON a.id = r.account_id"
        " WHERE r.pin_fp = ?1 AND coalesce(r.subject, '') = ?2 AND coalesce(r.issuer, '') = ?3"
        " AND coalesce(r.san, '') = ?4 AND coalesce(r.eku, '') = ?5"
        " AND coalesce(r.policy, '') = ?6 AND r.case_sensitive = ?7 AND r.subject_exact = ?8"
        " AND r.issuer_exact = ?9 AND r.not_issued_before_created = ?10 ORDER BY r.id");
    const char *fields[] = {spec->subject, spec->issuer, spec->san, spec->eku, spec->policy};
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, pin, -1, SQLITE_STATIC);
    for (int i = 0; i < 5; i++)
        sqlite3_bind_text(stmt, 2 + i, fields[i] != NULL ? fields[i] : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 7, spec->case_sensitive != 0);
    sqlite3_bind_int(stmt, 8, spec->subject_exact != 0);
    sqlite3_bind_int(stmt, 9, spec->issuer_exact != 0);
    sqlite3_bind_int(stmt, 10, spec->not_issued_before_created != 0);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if (written_line(&w->rules, sqlite3_column_int64(stmt, 0)) == 0)
            break;
    if (rc == SQLITE_ROW)
        read_existing(stmt, row);
    sqlite3_reset(stmt);
    if (rc == SQLITE_ROW)
        return CS_OK;
    return rc == SQLITE_DONE ? CS_NOTFOUND : cs_sql_fail(w->db, "reading rules");
}

static cs_status add_rule(cs_foreign_writer *w, const cs_rule_spec *spec, int enabled, int64_t line)
{
    int64_t id = 0, account_id = 0;
    cs_status status =
        spec->action == CS_RULE_DENY ? CS_OK : account_for(w, spec->account, &account_id);

    if (status == CS_OK)
        status = cs_rule_add(w->db, spec, 0, &id);
    if (status == CS_OK && !enabled)
        status = cs_rule_set_enabled(w->db, id, 0);
    if (status == CS_OK && !remember(&w->rules, id, line))
        status = cs_fail(w->db, CS_ERR, "out of memory");
    return status;
}

static cs_status update_rule(cs_foreign_writer *w, const cs_rule_spec *spec, int enabled,
                             const char *pin, const existing_row *row, int64_t line)
{
    int64_t account_id = 0;
    sqlite3_stmt *stmt;
    cs_status status =
        spec->action == CS_RULE_DENY ? CS_OK : account_for(w, spec->account, &account_id);

    if (status != CS_OK)
        return status;
    stmt = writer_stmt(w, &w->rule_update,
                       "UPDATE rules SET action = ?2, account_id = ?3, priority = ?4,"
                       " enabled = ?5, note = ?6 WHERE id = ?1");
    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, row->id);
    sqlite3_bind_int(stmt, 2, (int)spec->action);
    if (account_id > 0)
        sqlite3_bind_int64(stmt, 3, account_id);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_int64(stmt, 4, spec->priority);
    sqlite3_bind_int(stmt, 5, enabled != 0);
    cs_bind_text_or_null(stmt, 6, spec->note);
    if ((status = cs_stmt_exec(w->db, stmt, "updating the rule")) != CS_OK)
        return status;
    if (!remember(&w->rules, row->id, line))
        return cs_fail(w->db, CS_ERR, "out of memory");
    return cs_log_change(w->db, "rule update id=%lld action=%s account=%s pin=%.16s priority=%lld",
                         (long long)row->id, spec->action == CS_RULE_DENY ? "deny" : "allow",
                         spec->action == CS_RULE_DENY ? "-" : spec->account, pin,
                         (long long)spec->priority);
}

cs_status cs_foreign_put_rule(cs_foreign_writer *w, const cs_rule_spec *spec, int enabled,
                              int64_t line)
{
    char pin[CS_FP_HEX_LEN + 1], msg[256];
    existing_row row;
    cs_status status;

    if (cs_rule_check(spec, msg, sizeof(msg)) != CS_OK)
        return cs_fail(w->db, CS_INVALID, "%s", msg);
    cs_fp_normalise(spec->pin_fp, pin);
    status = find_rule(w, spec, pin, &row);
    if (status == CS_NOTFOUND)
        status = add_rule(w, spec, enabled, line);
    else if (status != CS_OK)
        return status;
    else if (!w->update)
        return cs_fail(w->db, CS_EXISTS,
                       "a rule with the same pin and conditions already exists: rule %lld %s%s",
                       (long long)row.id, row.account[0] ? "-> " : "(deny)", row.account);
    else if (row.source[0] != '\0')
        return cs_fail(w->db, CS_INVALID,
                       "rule %lld %s%s is owned by %s: an import does not change it (change it "
                       "in the directory)",
                       (long long)row.id, row.account[0] ? "-> " : "(deny)", row.account,
                       row.source);
    else if ((status = update_rule(w, spec, enabled, pin, &row, line)) == CS_OK)
        w->res->rules_updated++;
    if (status == CS_OK)
        w->res->rules++;
    return status;
}
