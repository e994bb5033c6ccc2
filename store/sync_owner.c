/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who owns a row: a directory sync (source "sync:<base DN>") or the CLI
 * (source NULL). Schema 8 adds the column; see sync.c for the writer.
 */
#include <string.h>

#include "cs_internal.h"

/* One-off lookups: the CLI asks once per command, so nothing is cached. */
static cs_status source_of(cs_db *db, const char *sql, const char *text, int64_t id,
                           char source[CS_SOURCE_MAX])
{
    sqlite3_stmt *stmt = NULL;
    cs_status status;
    int rc;

    source[0] = '\0';
    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "reading a row's source");
    if (text != NULL)
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const unsigned char *s = sqlite3_column_text(stmt, 0);

        snprintf(source, CS_SOURCE_MAX, "%s", s != NULL ? (const char *)s : "");
        status = CS_OK;
    } else if (rc == SQLITE_DONE) {
        status = CS_NOTFOUND;
    } else {
        status = cs_sql_fail(db, "reading a row's source");
    }
    sqlite3_finalize(stmt);
    return status;
}

cs_status cs_pin_source(cs_db *db, const char *fp, char source[CS_SOURCE_MAX])
{
    char hex[CS_FP_HEX_LEN + 1];

    source[0] = '\0';
    if (!cs_fp_normalise(fp, hex))
        return cs_fail(db, CS_INVALID, "not a SHA-256 fingerprint: %s", fp);
    return source_of(db, "SELECT source FROM pins WHERE fp = ?1", hex, 0, source);
}

cs_status cs_account_source(cs_db *db, const char *name, char source[CS_SOURCE_MAX])
{
    return source_of(db, "SELECT source FROM accounts WHERE name = ?1", name, 0, source);
}

cs_status cs_mapping_source(cs_db *db, const cs_mapping_ref *ref, char source[CS_SOURCE_MAX])
{
    int64_t id = 0;
    cs_status status = cs_mapping_ref_id(db, ref, &id);

    source[0] = '\0';
    if (status != CS_OK)
        return status;
    return source_of(db, "SELECT source FROM mappings WHERE id = ?1", NULL, id, source);
}

cs_status cs_rule_source(cs_db *db, int64_t id, char source[CS_SOURCE_MAX])
{
    return source_of(db, "SELECT source FROM rules WHERE id = ?1", NULL, id, source);
}
