/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Accounts: the identities that mappings hand on.
 */
#include <string.h>

#include "cs_internal.h"

/* Length of the UTF-8 sequence at s (strict: no overlongs, surrogates, > U+10FFFF); 0 if bad. */
static size_t utf8_sequence(const unsigned char *s, size_t avail, uint32_t *cp)
{
    size_t len;
    uint32_t min;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, min = 0x80, *cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, min = 0x800, *cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, *cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > avail)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return len;
}

static int is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

int cs_account_name_valid(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t len, i = 0;

    if (name == NULL)
        return 0;
    len = strlen(name);
    if (len == 0 || len > CS_ACCOUNT_MAX)
        return 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_sequence(s + i, len - i, &cp);

        if (n == 0 || is_control(cp))
            return 0;
        i += n;
    }
    return 1;
}

static cs_status check_name(cs_db *db, const char *name)
{
    if (!cs_account_name_valid(name))
        return cs_fail(db, CS_INVALID,
                       "invalid account name: 1 to %d bytes of UTF-8 without control characters",
                       CS_ACCOUNT_MAX);
    return CS_OK;
}

static cs_status check_note(cs_db *db, const char *note)
{
    if (note != NULL && strlen(note) > CS_NOTE_MAX)
        return cs_fail(db, CS_INVALID, "note longer than %d bytes", CS_NOTE_MAX);
    return CS_OK;
}

/* id and enabled flag of an account; CS_NOTFOUND if none. */
static cs_status account_find(cs_db *db, const char *name, int64_t *id, int *enabled)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_ACCOUNT_FIND);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(stmt, 0);
        if (enabled != NULL)
            *enabled = sqlite3_column_int(stmt, 1) != 0;
    }
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no account '%s'", name);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the account");
}

cs_status cs_account_id(cs_db *db, const char *name, int64_t *id)
{
    return account_find(db, name, id, NULL);
}

cs_status cs_account_insert(cs_db *db, const char *name, const char *note, int64_t *id)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_ACCOUNT_ADD);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, note ? note : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, cs_now());
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE) {
        if (id != NULL)
            *id = sqlite3_last_insert_rowid(db->sql);
        return CS_OK;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return cs_fail(db, CS_EXISTS, "account '%s' already exists", name);
    return cs_sql_fail(db, "adding the account");
}

cs_status cs_account_add(cs_db *db, const char *name, const char *note)
{
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = check_name(db, name);
    if (status == CS_OK)
        status = check_note(db, note);
    if (status == CS_OK)
        status = cs_account_insert(db, name, note, NULL);
    if (status == CS_OK)
        status = cs_log_change(db, "account add name=%s", name);
    return status;
}

cs_status cs_account_set_enabled(cs_db *db, const char *name, int enabled)
{
    int64_t id = 0;
    int was = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    enabled = enabled != 0;
    if (status == CS_OK)
        status = check_name(db, name);
    if (status == CS_OK)
        status = account_find(db, name, &id, &was);
    if (status != CS_OK)
        return status;
    if (was != enabled) {
        if ((stmt = cs_stmt(db, STMT_ACCOUNT_SET_ENABLED)) == NULL)
            return CS_ERR;
        sqlite3_bind_int(stmt, 1, enabled);
        sqlite3_bind_int64(stmt, 2, id);
        status = cs_stmt_exec(db, stmt, "updating the account");
    }
    if (status == CS_OK)
        status = cs_log_change(db, "account %s name=%s", enabled ? "enable" : "disable", name);
    return status;
}

static cs_status count_by_account(cs_db *db, cs_stmt_id which, int64_t id, int64_t *count)
{
    sqlite3_stmt *stmt = cs_stmt(db, which);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "counting what uses the account");
}

static cs_status delete_by_id(cs_db *db, cs_stmt_id which, int64_t id, const char *what)
{
    sqlite3_stmt *stmt = cs_stmt(db, which);

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, id);
    return cs_stmt_exec(db, stmt, what);
}

/* "1, 4, 9" (the first few ids of a table's rows for the account, "..." past them). */
static cs_status ids_by_account(cs_db *db, const char *table, int64_t id, char *buf, size_t len)
{
    char sql[96];
    sqlite3_stmt *stmt = NULL;
    size_t used = 0;
    int rc, n = 0;

    buf[0] = '\0';
    snprintf(sql, sizeof(sql), "SELECT id FROM %s WHERE account_id = ?1 ORDER BY id LIMIT 11",
             table);
    if (sqlite3_prepare_v2(db->sql, sql, -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "listing what uses the account");
    sqlite3_bind_int64(stmt, 1, id);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && used < len) {
        int w = n++ == 10 ? snprintf(buf + used, len - used, ", ...")
                          : snprintf(buf + used, len - used, "%s%lld", n > 1 ? ", " : "",
                                     (long long)sqlite3_column_int64(stmt, 0));
        used += w > 0 ? (size_t)w : 0;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CS_OK
                                                 : cs_fail(db, CS_ERR,
                                                           "listing what uses the "
                                                           "account failed");
}

/* "3 mappings (1, 2, 5) and 1 rule (4)", or the part that is not zero. */
static cs_status describe_users(cs_db *db, int64_t id, int64_t mappings, int64_t rules, char *buf,
                                size_t len)
{
    char mids[96], rids[96];
    cs_status status = ids_by_account(db, "mappings", id, mids, sizeof(mids));

    if (status == CS_OK)
        status = ids_by_account(db, "rules", id, rids, sizeof(rids));
    if (status != CS_OK)
        return status;
    buf[0] = '\0';
    if (mappings > 0)
        snprintf(buf, len, "%lld mapping%s (%s)", (long long)mappings, mappings == 1 ? "" : "s",
                 mids);
    if (rules > 0)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%lld rule%s (%s)",
                 mappings > 0 ? " and " : "", (long long)rules, rules == 1 ? "" : "s", rids);
    return CS_OK;
}

cs_status cs_account_remove_counted(cs_db *db, const char *name, int cascade, int64_t *mappings_out,
                                    int64_t *rules_out)
{
    int64_t id = 0, mappings = 0, rules = 0;
    char users[256] = "";
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = check_name(db, name);
    if (status == CS_OK)
        status = account_find(db, name, &id, NULL);
    if (status == CS_OK)
        status = count_by_account(db, STMT_ACCOUNT_COUNT_MAPPINGS, id, &mappings);
    if (status == CS_OK)
        status = count_by_account(db, STMT_ACCOUNT_COUNT_RULES, id, &rules);
    if (status == CS_OK && mappings + rules > 0)
        status = describe_users(db, id, mappings, rules, users, sizeof(users));
    if (status != CS_OK)
        return status;
    if (mappings + rules > 0 && !cascade)
        return cs_fail(db, CS_INUSE, "account '%s' is used by %s", name, users);
    if (mappings > 0)
        status = delete_by_id(db, STMT_ACCOUNT_DELETE_MAPPINGS, id, "removing mappings");
    if (status == CS_OK && rules > 0)
        status = delete_by_id(db, STMT_ACCOUNT_DELETE_RULES, id, "removing rules");
    if (status == CS_OK)
        status = delete_by_id(db, STMT_ACCOUNT_REMOVE, id, "removing the account");
    /* The change log names what a cascade took with it. */
    if (status == CS_OK)
        status = cs_log_change(db, "account rm name=%s mappings=%lld rules=%lld%s%s", name,
                               (long long)mappings, (long long)rules,
                               mappings + rules > 0 ? " removed: " : "", users);
    if (status == CS_OK && mappings_out != NULL)
        *mappings_out = mappings;
    if (status == CS_OK && rules_out != NULL)
        *rules_out = rules;
    return status;
}

cs_status cs_account_remove(cs_db *db, const char *name, int cascade)
{
    return cs_account_remove_counted(db, name, cascade, NULL, NULL);
}

cs_status cs_account_foreach(cs_db *db, cs_account_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_ACCOUNT_LIST)) == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *note = (const char *)sqlite3_column_text(stmt, 3);
        cs_account acct = {
            .id = sqlite3_column_int64(stmt, 0),
            .name = (const char *)sqlite3_column_text(stmt, 1),
            .enabled = sqlite3_column_int(stmt, 2) != 0,
            .note = note ? note : "",
            .created = sqlite3_column_int64(stmt, 4),
            .mappings = sqlite3_column_int64(stmt, 5),
        };
        if (cb(&acct, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading accounts");
}
