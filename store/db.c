/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening, schema migrations, transactions, the change log, the policy
 * generation and statistics.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cs_internal.h"

#define CS_BUSY_TIMEOUT_MS 2000
/* Writers only: big enough that a bulk import keeps the key index in memory. */
#define CS_WRITER_CACHE_KIB 524288
/* How long closing a writer waits for readers to let the WAL be truncated. */
#define CS_CLOSE_CHECKPOINT_WAIT_MS 50

/* Truncate the WAL at checkpoint so it never stays large on disk. */
#define CS_JOURNAL_SIZE_LIMIT 4194304

static const char schema_v1[] = "CREATE TABLE meta ("
                                "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                                "  generation INTEGER NOT NULL);"
                                "INSERT INTO meta (id, generation) VALUES (1, 1);"
                                "CREATE TABLE pins ("
                                "  id INTEGER PRIMARY KEY,"
                                "  fp TEXT NOT NULL UNIQUE CHECK (length(fp) = 64),"
                                "  der BLOB NOT NULL,"
                                "  subject TEXT NOT NULL,"
                                "  not_after INTEGER NOT NULL,"
                                "  enabled INTEGER NOT NULL DEFAULT 1,"
                                "  note TEXT NOT NULL DEFAULT '',"
                                "  created INTEGER NOT NULL);"
                                "CREATE TABLE accounts ("
                                "  id INTEGER PRIMARY KEY,"
                                "  name TEXT NOT NULL UNIQUE,"
                                "  enabled INTEGER NOT NULL DEFAULT 1,"
                                "  note TEXT NOT NULL DEFAULT '',"
                                "  created INTEGER NOT NULL);"
                                /* Kept small: keys are BLOBs and absent values are NULL. */
                                "CREATE TABLE mappings ("
                                "  id INTEGER PRIMARY KEY,"
                                "  kind INTEGER NOT NULL,"
                                "  key BLOB NOT NULL,"
                                "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
                                "  pin_fp TEXT,"
                                "  not_before INTEGER,"
                                "  not_after INTEGER,"
                                "  enabled INTEGER NOT NULL DEFAULT 1,"
                                "  note TEXT,"
                                "  created INTEGER NOT NULL,"
                                "  cert_not_after INTEGER,"
                                "  sha1 BLOB,"
                                "  UNIQUE (kind, key));"
                                "CREATE INDEX mappings_by_account ON mappings(account_id);"
                                "CREATE TABLE changes ("
                                "  id INTEGER PRIMARY KEY,"
                                "  time INTEGER NOT NULL,"
                                "  user TEXT NOT NULL,"
                                "  command TEXT NOT NULL,"
                                "  detail TEXT NOT NULL);";

/* Many-to-one rules and the backdating check (issue 8). */
static const char schema_v2[] =
    "ALTER TABLE mappings ADD COLUMN not_issued_before_created INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE rules ("
    "  id INTEGER PRIMARY KEY,"
    "  priority INTEGER NOT NULL,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  action INTEGER NOT NULL CHECK (action IN (0, 1)),"
    "  account_id INTEGER REFERENCES accounts(id),"
    "  pin_fp TEXT NOT NULL CHECK (length(pin_fp) = 64),"
    "  subject TEXT,"
    "  issuer TEXT,"
    "  san TEXT,"
    "  eku TEXT,"
    "  policy TEXT,"
    "  case_sensitive INTEGER NOT NULL DEFAULT 0,"
    "  not_issued_before_created INTEGER NOT NULL DEFAULT 0,"
    "  note TEXT,"
    "  created INTEGER NOT NULL,"
    /* allow names an account, deny never does */
    "  CHECK ((action = 0) = (account_id IS NOT NULL)));"
    "CREATE INDEX rules_by_pin ON rules(pin_fp, priority, id);"
    "CREATE INDEX rules_by_account ON rules(account_id);";

/* Rules that name a whole subject or issuer (altSecurityIdentities' <S>, <I>). */
static const char schema_v3[] =
    "ALTER TABLE rules ADD COLUMN subject_exact INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE rules ADD COLUMN issuer_exact INTEGER NOT NULL DEFAULT 0;";

/*
 * Every policy write bumps the generation (the triggers installed by
 * install_generation_triggers; bulk_write, 0 in every committed state,
 * lets a bulk import bump once instead of once per row). ski and
 * issuer-serial mappings must be bound to a pin; rows made before that stay
 * but never apply (policy.c): the bump makes sessions an older binary
 * accepted through them decide again.
 */
static const char schema_v4[] = "ALTER TABLE meta ADD COLUMN bulk_write INTEGER NOT NULL DEFAULT 0"
                                "  CHECK (bulk_write IN (0, 1));"
                                "UPDATE meta SET generation = generation + 1 WHERE id = 1;";

/*
 * Ids are never reused (a script or the change log that names mapping 10
 * must never mean another one later): AUTOINCREMENT on every policy table.
 * SQLite adds it only by rebuilding the table (sqlite.org/lang_altertable,
 * the 12 steps), so this step runs with foreign keys off (rebuild_tables)
 * and checks them before it commits. The same columns in the same order,
 * constraints, indexes; the generation triggers are installed again after
 * the step like after every other. Ids freed before this migration may
 * still come back once; none freed after it.
 */
static const char schema_v5[] =
    "CREATE TABLE pins_v5 ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  fp TEXT NOT NULL UNIQUE CHECK (length(fp) = 64),"
    "  der BLOB NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  not_after INTEGER NOT NULL,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  note TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL);"
    "INSERT INTO pins_v5 (id, fp, der, subject, not_after, enabled, note, created)"
    "  SELECT id, fp, der, subject, not_after, enabled, note, created FROM pins;"
    "DROP TABLE pins;"
    "ALTER TABLE pins_v5 RENAME TO pins;"
    "CREATE TABLE accounts_v5 ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  note TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL);"
    "INSERT INTO accounts_v5 (id, name, enabled, note, created)"
    "  SELECT id, name, enabled, note, created FROM accounts;"
    "DROP TABLE accounts;"
    "ALTER TABLE accounts_v5 RENAME TO accounts;"
    "CREATE TABLE mappings_v5 ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind INTEGER NOT NULL,"
    "  key BLOB NOT NULL,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  pin_fp TEXT,"
    "  not_before INTEGER,"
    "  not_after INTEGER,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  note TEXT,"
    "  created INTEGER NOT NULL,"
    "  cert_not_after INTEGER,"
    "  sha1 BLOB,"
    "  not_issued_before_created INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (kind, key));"
    "INSERT INTO mappings_v5 (id, kind, key, account_id, pin_fp, not_before, not_after, enabled,"
    "  note, created, cert_not_after, sha1, not_issued_before_created)"
    "  SELECT id, kind, key, account_id, pin_fp, not_before, not_after, enabled, note, created,"
    "  cert_not_after, sha1, not_issued_before_created FROM mappings;"
    "DROP TABLE mappings;"
    "ALTER TABLE mappings_v5 RENAME TO mappings;"
    "CREATE INDEX mappings_by_account ON mappings(account_id);"
    "CREATE TABLE rules_v5 ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  priority INTEGER NOT NULL,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  action INTEGER NOT NULL CHECK (action IN (0, 1)),"
    "  account_id INTEGER REFERENCES accounts(id),"
    "  pin_fp TEXT NOT NULL CHECK (length(pin_fp) = 64),"
    "  subject TEXT,"
    "  issuer TEXT,"
    "  san TEXT,"
    "  eku TEXT,"
    "  policy TEXT,"
    "  case_sensitive INTEGER NOT NULL DEFAULT 0,"
    "  not_issued_before_created INTEGER NOT NULL DEFAULT 0,"
    "  note TEXT,"
    "  created INTEGER NOT NULL,"
    "  subject_exact INTEGER NOT NULL DEFAULT 0,"
    "  issuer_exact INTEGER NOT NULL DEFAULT 0,"
    "  CHECK ((action = 0) = (account_id IS NOT NULL)));"
    "INSERT INTO rules_v5 (id, priority, enabled, action, account_id, pin_fp, subject, issuer,"
    "  san, eku, policy, case_sensitive, not_issued_before_created, note, created,"
    "  subject_exact, issuer_exact)"
    "  SELECT id, priority, enabled, action, account_id, pin_fp, subject, issuer, san, eku,"
    "  policy, case_sensitive, not_issued_before_created, note, created, subject_exact,"
    "  issuer_exact FROM rules;"
    "DROP TABLE rules;"
    "ALTER TABLE rules_v5 RENAME TO rules;"
    "CREATE INDEX rules_by_pin ON rules(pin_fp, priority, id);"
    "CREATE INDEX rules_by_account ON rules(account_id);";

/*
 * The certificate a mapping was made from (map add CERT, an IIS import),
 * whole and with the fields an operator looks for, in a side table so the
 * mapping rows the handshake reads stay small. A mapping made from a key or
 * a fingerprint has none. The trigger, not a foreign key, removes the row
 * with its mapping: an import runs with foreign keys off. A policy table
 * like any other (generation triggers): revocation reads it.
 */
static const char schema_v6[] = "CREATE TABLE mapping_certs ("
                                "  mapping_id INTEGER PRIMARY KEY,"
                                "  der BLOB NOT NULL,"
                                "  subject TEXT NOT NULL,"
                                "  issuer TEXT NOT NULL,"
                                "  serial TEXT NOT NULL,"
                                "  not_before INTEGER,"
                                "  not_after INTEGER);"
                                "CREATE TRIGGER mappings_drop_cert AFTER DELETE ON mappings"
                                " BEGIN DELETE FROM mapping_certs WHERE mapping_id = old.id; END;";

/*
 * Revocation (issue 14): one CRL per pin, its revoked serials in a
 * WITHOUT ROWID table keyed by (crl, serial) so a lookup is one B-tree probe
 * and the key is the whole row; each pin's revocation policy (NULL: soft
 * once a CRL exists) and grace. The tables get the generation triggers like
 * every policy table; crl.c writes them quietly and bumps the generation
 * itself only when a decision can become stricter (see crl.c).
 */
static const char schema_v7[] =
    "ALTER TABLE pins ADD COLUMN revocation INTEGER"
    "  CHECK (revocation IS NULL OR revocation IN (0, 1, 2));"
    "ALTER TABLE pins ADD COLUMN revocation_grace INTEGER"
    "  CHECK (revocation_grace IS NULL OR revocation_grace >= 0);"
    "CREATE TABLE crls ("
    "  id INTEGER PRIMARY KEY,"
    "  pin_id INTEGER NOT NULL UNIQUE REFERENCES pins(id) ON DELETE CASCADE,"
    "  fp TEXT NOT NULL CHECK (length(fp) = 64),"
    "  number TEXT,"
    "  this_update INTEGER NOT NULL,"
    "  next_update INTEGER,"
    "  entries INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  url TEXT,"
    "  fetched INTEGER,"
    "  fetch_result TEXT,"
    "  etag TEXT,"
    "  last_modified TEXT);"
    "CREATE TABLE revoked ("
    "  crl_id INTEGER NOT NULL REFERENCES crls(id) ON DELETE CASCADE,"
    "  serial BLOB NOT NULL,"
    "  revoked_at INTEGER,"
    "  reason INTEGER,"
    "  PRIMARY KEY (crl_id, serial)) WITHOUT ROWID;";

/*
 * Ownership (issue 18): rows a directory sync made carry its source
 * ("sync:<base DN>"); NULL is a row made locally with the CLI. A sync
 * touches only its own rows, and the CLI refuses to change them without
 * --force. sync_state is bookkeeping, not policy (no generation triggers).
 */
static const char schema_v8[] = "ALTER TABLE pins ADD COLUMN source TEXT;"
                                "ALTER TABLE accounts ADD COLUMN source TEXT;"
                                "ALTER TABLE mappings ADD COLUMN source TEXT;"
                                "ALTER TABLE rules ADD COLUMN source TEXT;"
                                "CREATE INDEX mappings_by_source ON mappings(source)"
                                "  WHERE source IS NOT NULL;"
                                "CREATE TABLE sync_state ("
                                "  source TEXT PRIMARY KEY,"
                                "  last_success INTEGER NOT NULL,"
                                "  detail TEXT NOT NULL);";

/*
 * Prefetched OCSP answers (issue 14), one per certificate a mapping keeps,
 * keyed like the revoked table by (issuing pin, serial): an OCSP CertID
 * names exactly that, and the decision probes it with the serial it already
 * binds. status NULL is a certificate never answered (only its last fetch is
 * known). A policy table (generation triggers); ocsp.c writes it quietly and
 * bumps the generation itself only when a decision can become stricter.
 */
static const char schema_v9[] = "CREATE TABLE ocsp_answers ("
                                "  pin_id INTEGER NOT NULL REFERENCES pins(id) ON DELETE CASCADE,"
                                "  serial BLOB NOT NULL,"
                                "  subject TEXT NOT NULL,"
                                "  status INTEGER CHECK (status IS NULL OR status IN (0, 1, 2)),"
                                "  revoked_at INTEGER,"
                                "  reason INTEGER,"
                                "  this_update INTEGER,"
                                "  next_update INTEGER,"
                                "  updated INTEGER,"
                                "  url TEXT,"
                                "  fetched INTEGER NOT NULL,"
                                "  fetch_result TEXT NOT NULL,"
                                "  CHECK ((status IS NULL) = (this_update IS NULL)),"
                                "  PRIMARY KEY (pin_id, serial)) WITHOUT ROWID;";

/*
 * Incremental sync (issue 18): where each source resumes (AD: DC and USN;
 * LDAP: the RFC 4533 cookie) and which account each directory entry
 * (entryUUID) made, so a deletion naming only the UUID finds its account.
 * Bookkeeping like the rest of sync_state (no generation triggers).
 */
static const char schema_v10[] = "ALTER TABLE sync_state ADD COLUMN server TEXT;"
                                 "ALTER TABLE sync_state ADD COLUMN invocation_id TEXT;"
                                 "ALTER TABLE sync_state ADD COLUMN usn INTEGER;"
                                 "ALTER TABLE sync_state ADD COLUMN pins_usn INTEGER;"
                                 "ALTER TABLE sync_state ADD COLUMN last_full INTEGER;"
                                 "ALTER TABLE sync_state ADD COLUMN settings TEXT;"
                                 "ALTER TABLE sync_state ADD COLUMN cookie BLOB;"
                                 "CREATE TABLE sync_entries ("
                                 "  source TEXT NOT NULL,"
                                 "  uuid BLOB NOT NULL,"
                                 "  account TEXT NOT NULL,"
                                 "  PRIMARY KEY (source, uuid)) WITHOUT ROWID;";

/*
 * Serial keys were ambiguous before 11: a negative serial was 0xff and its
 * magnitude, which is also a positive serial starting with 0xff. Now a
 * negative one is 0x00 and its magnitude (cs_serial_key). An old 0xff key
 * may have meant either: it is kept and its negative reading added, so
 * every serial revoked before stays revoked.
 */
static const char schema_v11[] =
    "INSERT OR IGNORE INTO revoked (crl_id, serial, revoked_at, reason)"
    "  SELECT crl_id, CAST(X'00' || substr(serial, 2) AS BLOB), revoked_at, reason FROM revoked"
    "  WHERE length(serial) > 1 AND substr(serial, 1, 1) = X'FF';";

typedef struct {
    int version;
    const char *sql;
    int rebuild_tables; /* foreign keys off for the step, checked before commit */
} cs_migration;

/* Forward steps; each runs in its own transaction ending with its version. */
/* clang-format off */
static const cs_migration migrations[] = {
    {1, schema_v1, 0}, {2, schema_v2, 0}, {3, schema_v3, 0}, {4, schema_v4, 0}, {5, schema_v5, 1},
    {6, schema_v6, 0}, {7, schema_v7, 0}, {8, schema_v8, 0}, {9, schema_v9, 0},
    {10, schema_v10, 0}, {11, schema_v11, 0},
};
/* clang-format on */
#define MIGRATION_COUNT (sizeof(migrations) / sizeof(migrations[0]))

static const char *const statement_sql[STMT_COUNT] = {
    [STMT_BEGIN_READ] = "BEGIN",
    [STMT_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_GENERATION_GET] = "SELECT generation FROM meta WHERE id = 1",
    [STMT_BULK_WRITE_BEGIN] = "UPDATE meta SET generation = generation + 1, bulk_write = 1"
                              " WHERE id = 1",
    [STMT_BULK_WRITE_END] = "UPDATE meta SET bulk_write = 0 WHERE id = 1 AND bulk_write <> 0",
    [STMT_QUIET_WRITES_BEGIN] = "UPDATE meta SET bulk_write = 1 WHERE id = 1",
    [STMT_GENERATION_BUMP] = "UPDATE meta SET generation = generation + 1 WHERE id = 1",
    [STMT_CHANGE_ADD] = "INSERT INTO changes (time, user, command, detail) VALUES (?, ?, ?, ?)",
    [STMT_CHANGE_LIST] = "SELECT id, time, user, command, detail FROM changes"
                         " WHERE time >= ? ORDER BY id",
    [STMT_PIN_ADD] = "INSERT INTO pins (fp, der, subject, not_after, enabled, note, created)"
                     " VALUES (?, ?, ?, ?, 1, ?, ?)",
    [STMT_PIN_REMOVE] = "DELETE FROM pins WHERE fp = ?",
    [STMT_PIN_ENABLED_GET] = "SELECT enabled FROM pins WHERE fp = ?",
    [STMT_PIN_SET_ENABLED] = "UPDATE pins SET enabled = ? WHERE fp = ?",
    [STMT_PIN_GET] = "SELECT id, fp, subject, not_after, enabled, note, created, der, source"
                     " FROM pins WHERE fp = ?",
    [STMT_PIN_LIST] = "SELECT id, fp, subject, not_after, enabled, note, created, der, source"
                      " FROM pins ORDER BY id",
    [STMT_ACCOUNT_ADD] = "INSERT INTO accounts (name, enabled, note, created) VALUES (?, 1, ?, ?)",
    [STMT_ACCOUNT_FIND] = "SELECT id, enabled FROM accounts WHERE name = ?",
    [STMT_ACCOUNT_SET_ENABLED] = "UPDATE accounts SET enabled = ? WHERE id = ?",
    [STMT_ACCOUNT_COUNT_MAPPINGS] = "SELECT count(*) FROM mappings WHERE account_id = ?",
    [STMT_ACCOUNT_DELETE_MAPPINGS] = "DELETE FROM mappings WHERE account_id = ?",
    [STMT_ACCOUNT_REMOVE] = "DELETE FROM accounts WHERE id = ?",
    [STMT_ACCOUNT_LIST] = "SELECT a.id, a.name, a.enabled, a.note, a.created,"
                          " (SELECT count(*) FROM mappings m WHERE m.account_id = a.id)"
                          " FROM accounts a ORDER BY a.id",
    [STMT_MAPPING_ADD] = "INSERT INTO mappings (kind, key, account_id, pin_fp, not_before,"
                         " not_after, enabled, note, created, cert_not_after, sha1)"
                         " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
    [STMT_MAPPING_FIND_ID] = "SELECT m.id, m.kind, m.key, a.name, m.enabled, m.not_before,"
                             " m.not_after FROM mappings m JOIN accounts a"
                             " ON a.id = m.account_id WHERE m.id = ?",
    [STMT_MAPPING_FIND_KEY] = "SELECT m.id, m.kind, m.key, a.name, m.enabled, m.not_before,"
                              " m.not_after FROM mappings m JOIN accounts a"
                              " ON a.id = m.account_id WHERE m.kind = ? AND m.key = ?",
    [STMT_MAPPING_REMOVE] = "DELETE FROM mappings WHERE id = ?",
    [STMT_MAPPING_SET_ENABLED] = "UPDATE mappings SET enabled = ? WHERE id = ?",
    [STMT_MAPPING_SET_WINDOW] = "UPDATE mappings SET not_before = ?, not_after = ? WHERE id = ?",
    [STMT_MAPPING_LIST] = "SELECT m.id, m.kind, m.key, a.name, m.pin_fp, m.not_before,"
                          " m.not_after, m.enabled, m.note, m.created, m.cert_not_after, m.sha1,"
                          " m.source, c.subject"
                          " FROM mappings m JOIN accounts a ON a.id = m.account_id"
                          " LEFT JOIN mapping_certs c ON c.mapping_id = m.id"
                          " ORDER BY m.id",
    [STMT_MAPPING_LIST_ACCOUNT] = "SELECT m.id, m.kind, m.key, a.name, m.pin_fp, m.not_before,"
                                  " m.not_after, m.enabled, m.note, m.created,"
                                  " m.cert_not_after, m.sha1, m.source, c.subject"
                                  " FROM mappings m JOIN accounts a ON a.id = m.account_id"
                                  " LEFT JOIN mapping_certs c ON c.mapping_id = m.id"
                                  " WHERE a.name = ? ORDER BY m.id",
    [STMT_MAPPING_GET] = "SELECT m.id, m.kind, m.key, a.name, m.pin_fp, m.not_before,"
                         " m.not_after, m.enabled, m.note, m.created, m.cert_not_after, m.sha1,"
                         " m.source, c.subject"
                         " FROM mappings m JOIN accounts a ON a.id = m.account_id"
                         " LEFT JOIN mapping_certs c ON c.mapping_id = m.id WHERE m.id = ?1",
    /* Keys from ?2 (the prefix, 0 nibbles after it) to ?3 (1 bits after it): the prefix's. */
    [STMT_MAPPING_PREFIX] = "SELECT m.id, m.kind, m.key, a.name, m.pin_fp, m.not_before,"
                            " m.not_after, m.enabled, m.note, m.created, m.cert_not_after, m.sha1,"
                            " m.source, c.subject"
                            " FROM mappings m JOIN accounts a ON a.id = m.account_id"
                            " LEFT JOIN mapping_certs c ON c.mapping_id = m.id"
                            " WHERE m.kind = ?1 AND m.key >= ?2 AND m.key <= ?3 ORDER BY m.id",
    [STMT_MAPPING_UNPINNED] = "SELECT m.pin_fp, count(*) FROM mappings m"
                              " WHERE m.pin_fp IS NOT NULL"
                              " AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.fp = m.pin_fp)"
                              " GROUP BY m.pin_fp ORDER BY m.pin_fp",
    [STMT_MAPPING_CERT_ADD] = "INSERT INTO mapping_certs (mapping_id, der, subject, issuer, serial,"
                              " not_before, not_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [STMT_MAPPING_CERT_GET] = "SELECT mapping_id, der, subject, issuer, serial, not_before,"
                              " not_after FROM mapping_certs WHERE mapping_id = ?1",
    [STMT_DECIDE_PIN] = "SELECT enabled FROM pins WHERE fp = ?",
    [STMT_DECIDE_MAPPING] = "SELECT m.id, m.enabled, m.not_before, m.not_after, m.pin_fp,"
                            " a.enabled, a.name, m.created, m.not_issued_before_created"
                            " FROM mappings m JOIN accounts a"
                            " ON a.id = m.account_id WHERE m.kind = ? AND m.key = ?",
    /*
     * The common case in one statement, hence one implicit read transaction:
     * the generation, the issuer's pin and the whole-certificate mapping.
     * Always exactly one row; NULLs say what is missing.
     */
    /*
     * ... and the pin's revocation policy, its CRL's freshness and whether
     * the leaf's serial (?4) is on it: one probe each, through the pin's
     * CRL row to the revoked table's primary key; and the leaf's prefetched
     * OCSP answer by the same (pin, serial) key (86400 is
     * CS_OCSP_NO_NEXT_UPDATE_VALIDITY).
     */
    [STMT_DECIDE_FAST] = "SELECT (SELECT generation FROM meta WHERE id = 1), p.enabled,"
                         " m.id, m.enabled, m.not_before, m.not_after, m.pin_fp,"
                         " a.enabled, a.name, m.created, m.not_issued_before_created,"
                         " p.revocation, p.revocation_grace, c.id, c.next_update,"
                         " r.crl_id IS NOT NULL, o.status,"
                         " coalesce(o.next_update, o.this_update + 86400),"
                         /* A pin of the same name has a CRL: see twin_crl. */
                         " EXISTS (SELECT 1 FROM crls c2 JOIN pins p2"
                         " ON p2.id = c2.pin_id WHERE p2.subject = p.subject AND p2.id != p.id)"
                         " FROM (SELECT 1) LEFT JOIN pins p ON p.fp = ?1"
                         " LEFT JOIN crls c ON c.pin_id = p.id"
                         " LEFT JOIN revoked r ON r.crl_id = c.id AND r.serial = ?4"
                         " LEFT JOIN ocsp_answers o ON o.pin_id = p.id AND o.serial = ?4"
                         " LEFT JOIN mappings m ON m.kind = ?2 AND m.key = ?3"
                         " LEFT JOIN accounts a ON a.id = m.account_id",
    [STMT_DECIDE_RULES] = "SELECT r.id, r.action, r.subject, r.issuer, r.san, r.eku, r.policy,"
                          " r.case_sensitive, r.not_issued_before_created, r.created,"
                          " a.enabled, a.name, r.subject_exact, r.issuer_exact"
                          " FROM rules r LEFT JOIN accounts a"
                          " ON a.id = r.account_id WHERE r.pin_fp = ? AND r.enabled"
                          " ORDER BY r.priority, r.id",
    [STMT_RULE_ADD] = "INSERT INTO rules (priority, enabled, action, account_id, pin_fp, subject,"
                      " issuer, san, eku, policy, case_sensitive, not_issued_before_created,"
                      " note, created, subject_exact, issuer_exact)"
                      " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [STMT_RULE_ENABLED_GET] = "SELECT enabled FROM rules WHERE id = ?",
    [STMT_RULE_REMOVE] = "DELETE FROM rules WHERE id = ?",
    [STMT_RULE_SET_ENABLED] = "UPDATE rules SET enabled = ? WHERE id = ?",
    [STMT_RULE_LIST] = "SELECT r.id, r.priority, r.enabled, r.action, a.name, r.pin_fp,"
                       " r.subject, r.issuer, r.san, r.eku, r.policy, r.case_sensitive,"
                       " r.not_issued_before_created, r.note, r.created, r.subject_exact,"
                       " r.issuer_exact"
                       " FROM rules r LEFT JOIN accounts a ON a.id = r.account_id"
                       " ORDER BY r.priority, r.id",
    [STMT_ACCOUNT_COUNT_RULES] = "SELECT count(*) FROM rules WHERE account_id = ?",
    [STMT_ACCOUNT_DELETE_RULES] = "DELETE FROM rules WHERE account_id = ?",
    [STMT_MAPPING_SET_NIBC] = "UPDATE mappings SET not_issued_before_created = ? WHERE id = ?",
    [STMT_MAPPING_GET_NIBC] = "SELECT not_issued_before_created FROM mappings WHERE id = ?",
    [STMT_STATS] = "SELECT (SELECT count(*) FROM pins),"
                   " (SELECT count(*) FROM pins WHERE enabled),"
                   " (SELECT count(*) FROM accounts),"
                   " (SELECT count(*) FROM accounts WHERE enabled),"
                   " (SELECT count(*) FROM mappings),"
                   " (SELECT count(*) FROM mappings WHERE enabled),"
                   " (SELECT generation FROM meta WHERE id = 1),"
                   " (SELECT count(*) FROM mappings WHERE pin_fp IS NULL AND kind IN (?1, ?2))",
    [STMT_STATS_BY_KIND] = "SELECT kind, count(*) FROM mappings GROUP BY kind",
};

/* ---- errors --------------------------------------------------------------- */

cs_status cs_fail(cs_db *db, cs_status status, const char *fmt, ...)
{
    va_list ap;

    if (db == NULL)
        return status;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    return status;
}

static int sqlite_code_is_busy(int code)
{
    code &= 0xff;
    return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

cs_status cs_sql_fail(cs_db *db, const char *what)
{
    int code = sqlite3_extended_errcode(db->sql);
    cs_status status = sqlite_code_is_busy(code) ? CS_BUSY : CS_ERR;

    return cs_fail(db, status, "%s: %s", what, sqlite3_errmsg(db->sql));
}

const char *cs_db_errmsg(const cs_db *db)
{
    if (db == NULL)
        return "out of memory";
    return db->errmsg;
}

const char *cs_db_path(const cs_db *db)
{
    return db ? db->path : NULL;
}

/* ---- statements ----------------------------------------------------------- */

sqlite3_stmt *cs_stmt(cs_db *db, cs_stmt_id id)
{
    return cs_stmt_sql(db, id, statement_sql[id]);
}

sqlite3_stmt *cs_stmt_sql(cs_db *db, cs_stmt_id id, const char *sql)
{
    sqlite3_stmt **slot = &db->stmts[id];

    if (*slot == NULL) {
        if (sqlite3_prepare_v3(db->sql, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) !=
            SQLITE_OK) {
            cs_sql_fail(db, "preparing a statement");
            *slot = NULL;
            return NULL;
        }
        return *slot;
    }
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
}

cs_status cs_stmt_exec(cs_db *db, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);
    cs_status status = CS_OK;

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        status = cs_sql_fail(db, what);
    sqlite3_reset(stmt);
    return status;
}

static cs_status exec_simple(cs_db *db, cs_stmt_id id, const char *what)
{
    sqlite3_stmt *stmt = cs_stmt(db, id);

    return stmt ? cs_stmt_exec(db, stmt, what) : CS_ERR;
}

static void finalize_statements(cs_db *db)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        sqlite3_finalize(db->stmts[i]);
        db->stmts[i] = NULL;
    }
}

/* ---- open / close --------------------------------------------------------- */

static cs_status pragma_int(cs_db *db, const char *sql, int *value)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &stmt, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        cs_status status = cs_sql_fail(db, "reading the database");

        sqlite3_finalize(stmt);
        return status;
    }
    if (value != NULL)
        *value = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return CS_OK;
}

static cs_status exec_sql(cs_db *db, const char *sql, const char *what)
{
    if (sqlite3_exec(db->sql, sql, NULL, NULL, NULL) != SQLITE_OK)
        return cs_sql_fail(db, what);
    return CS_OK;
}

cs_status cs_db_schema_version(cs_db *db, int *version)
{
    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    return pragma_int(db, "PRAGMA user_version", version);
}

/* A version-0 file is ours to create only if it holds nothing else. */
static cs_status check_empty_schema(cs_db *db)
{
    int objects = 0;
    cs_status status = pragma_int(db, "SELECT count(*) FROM sqlite_master", &objects);

    if (status != CS_OK)
        return status;
    if (objects != 0)
        return cs_fail(db, CS_ERR, "%s: not a certstore database (it has other tables)", db->path);
    return CS_OK;
}

static cs_status check_schema(cs_db *db)
{
    int version = 0;
    cs_status status = cs_db_schema_version(db, &version);

    if (status != CS_OK) {
        if ((sqlite3_extended_errcode(db->sql) & 0xff) == SQLITE_NOTADB)
            return cs_fail(db, CS_ERR, "%s: not a certstore database (%s)", db->path,
                           sqlite3_errmsg(db->sql));
        return cs_fail(db, status, "%s: %s", db->path, sqlite3_errmsg(db->sql));
    }
    if (version > CS_SCHEMA_VERSION)
        return cs_fail(db, CS_ERR, "%s: schema version %d is newer than this certstore (%d)",
                       db->path, version, CS_SCHEMA_VERSION);
    if (version < 0)
        return cs_fail(db, CS_ERR, "%s: not a certstore database (schema version %d)", db->path,
                       version);
    if (db->flags & CS_OPEN_READONLY) {
        if (version == 0)
            return cs_fail(db, CS_ERR, "%s: not a certstore database (not initialised)", db->path);
        if (version != CS_SCHEMA_VERSION)
            return cs_fail(db, CS_ERR,
                           "%s: schema version %d is older than this certstore (%d): migrate it "
                           "first (certstore init)",
                           db->path, version, CS_SCHEMA_VERSION);
        return CS_OK;
    }
    return version == 0 ? check_empty_schema(db) : CS_OK;
}

static cs_status configure_writer(cs_db *db)
{
    int persist = 1;
    char sql[128];
    cs_status status = exec_sql(db, "PRAGMA journal_mode = WAL", "setting WAL mode");

    if (status != CS_OK)
        return status;
    /* Readers who cannot create -wal/-shm need them to outlive this handle. */
    sqlite3_file_control(db->sql, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d; PRAGMA cache_size = -%d",
             CS_JOURNAL_SIZE_LIMIT, CS_WRITER_CACHE_KIB);
    return exec_sql(db, sql, "configuring the database");
}

/*
 * Taken once, right after SQLite opened the file: the birth time tells a
 * reused inode number apart (ext4 hands a deleted file's number to the next
 * file), and cs_db_identity then answers without a system call.
 */
static cs_status remember_file_identity(cs_db *db)
{
    struct statx stx;
    const char *name;
    int at = cs_db_dir_at(db->path, &name); /* through the directory's descriptor if routed */

    if (statx(at, name, AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME, &stx) != 0)
        return cs_fail(db, CS_ERR, "%s: %s", db->path, strerror(errno));
    db->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    db->ino = stx.stx_ino;
    db->birth_sec = 0;
    db->birth_nsec = 0;
    if (stx.stx_mask & STATX_BTIME) {
        db->birth_sec = stx.stx_btime.tv_sec;
        db->birth_nsec = stx.stx_btime.tv_nsec;
    }
    return CS_OK;
}

static cs_status open_connection(cs_db *db)
{
    int readonly = (db->flags & CS_OPEN_READONLY) != 0;
    int oflags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;

    if (!readonly && (db->flags & CS_OPEN_CREATE))
        oflags |= SQLITE_OPEN_CREATE;
    /* One thread per handle: SQLite's per-connection mutex buys nothing. */
    oflags |= SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW;
    if (sqlite3_open_v2(db->path, &db->sql, oflags, NULL) != SQLITE_OK) {
        if (db->sql == NULL)
            return cs_fail(db, CS_ERR, "%s: out of memory", db->path);
        return cs_fail(db, CS_ERR, "%s: %s", db->path, sqlite3_errmsg(db->sql));
    }
    sqlite3_extended_result_codes(db->sql, 1);
    sqlite3_busy_timeout(db->sql, db->busy_timeout_ms);
    return CS_OK;
}

/* ---- where the files live: no links, no directories others can change ------ */

static const char *const sidecar_suffixes[] = {"-wal", "-shm", "-journal"};
#define SIDECAR_COUNT (sizeof(sidecar_suffixes) / sizeof(sidecar_suffixes[0]))

static void owner_name(uid_t uid, char *buf, size_t len)
{
    struct passwd pw, *found = NULL;
    char pwbuf[1024];

    if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &found) == 0 && found != NULL)
        snprintf(buf, len, "%s", found->pw_name);
    else
        snprintf(buf, len, "no user");
}

/* Why others than root and us can change entries of this directory, or NULL. */
static const char *dir_danger(const struct stat *st)
{
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return "is owned by";
    /* Sticky (like /tmp): others may add names but not replace ours. */
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(st->st_mode & S_ISVTX))
        return "is writable by group or others; owner";
    return NULL;
}

cs_status cs_db_check_dir(const char *path, char *msg, size_t msglen)
{
    char dir[PATH_MAX], resolved[PATH_MAX], user[64];
    char *slash;
    struct stat st;

    msg[0] = '\0';
    if (path == NULL || snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        snprintf(msg, msglen, "database path too long");
        return CS_INVALID;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    /* A directory that does not exist holds nothing to replace; opening fails later. */
    if (realpath(dir, resolved) == NULL)
        return CS_OK;
    /* Every ancestor: whoever can rename one can put another tree in its place. */
    for (;;) {
        const char *danger;

        if (stat(resolved, &st) != 0) {
            snprintf(msg, msglen, "%s: %s", resolved, strerror(errno));
            return CS_ERR;
        }
        if ((danger = dir_danger(&st)) != NULL) {
            owner_name(st.st_uid, user, sizeof(user));
            snprintf(msg, msglen,
                     "directory %s %s uid %u (%s), mode %04o: others there can replace the "
                     "database or plant links in its place; refusing to write",
                     resolved, danger, (unsigned)st.st_uid, user, (unsigned)(st.st_mode & 07777));
            return CS_INVALID;
        }
        if (strcmp(resolved, "/") == 0)
            return CS_OK;
        slash = strrchr(resolved, '/');
        slash[slash == resolved ? 1 : 0] = '\0';
    }
}

/* The database or a sidecar that is there but is a link (or a device, a FIFO...). */
static cs_status refuse_links(cs_db *db)
{
    char path[PATH_MAX + 16];
    struct stat st;

    for (size_t i = 0; i <= SIDECAR_COUNT; i++) {
        const char *suffix = i == 0 ? "" : sidecar_suffixes[i - 1];
        const char *name;
        int at;

        if (snprintf(path, sizeof(path), "%s%s", db->path, suffix) >= (int)sizeof(path))
            return cs_fail(db, CS_INVALID, "%s: path too long", db->path);
        at = cs_db_dir_at(path, &name);
        if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue;
            return cs_fail(db, CS_ERR, "%s: %s", path, strerror(errno));
        }
        if (S_ISLNK(st.st_mode))
            return cs_fail(db, CS_INVALID, "%s is a symbolic link: refusing to follow it", path);
        if (!S_ISREG(st.st_mode))
            return cs_fail(db, CS_INVALID, "%s is not a regular file", path);
    }
    return CS_OK;
}

static cs_status check_location(cs_db *db)
{
    char why[sizeof(db->errmsg) - 64];

    if (!(db->flags & (CS_OPEN_READONLY | CS_OPEN_ALLOW_UNSAFE_DIR)) &&
        cs_db_check_dir(db->path, why, sizeof(why)) != CS_OK)
        return cs_fail(db, CS_INVALID, "%s", why);
    return refuse_links(db);
}

static cs_status open_and_check(cs_db *db)
{
    cs_status status = check_location(db);

    if (status == CS_OK)
        status = open_connection(db);

    if (status == CS_OK)
        status = remember_file_identity(db);
    if (status == CS_OK)
        status = exec_sql(db, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    /* Check before configuring: a newer or foreign file must stay untouched. */
    if (status == CS_OK)
        status = check_schema(db);
    if (status == CS_OK && !(db->flags & CS_OPEN_READONLY))
        status = configure_writer(db);
    db->opened = status == CS_OK;
    return status;
}

cs_status cs_db_open(cs_db **out, const char *path, unsigned flags)
{
    return cs_db_open_ex(out, path, flags, CS_BUSY_TIMEOUT_MS);
}

cs_status cs_db_open_ex(cs_db **out, const char *path, unsigned flags, int busy_timeout_ms)
{
    cs_db *db = calloc(1, sizeof(*db));

    *out = db;
    if (db == NULL)
        return CS_ERR;
    db->flags = flags;
    db->busy_timeout_ms = busy_timeout_ms < 0 ? 0 : busy_timeout_ms;
    if (path == NULL || *path == '\0')
        return cs_fail(db, CS_INVALID, "no database path given");
    db->path = strdup(path);
    if (db->path == NULL)
        return cs_fail(db, CS_ERR, "out of memory");
    return open_and_check(db);
}

/*
 * SQLite creates -wal/-shm with the database's mode, but only as far as the
 * creating process's umask and ownership allow; readers that may read the
 * database must be able to read these too. Through descriptors opened
 * without following links, and only on regular files with one name: never
 * a chmod or chown of whatever a planted link or hard link points to.
 */
static int open_regular_nofollow(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_nlink != 1) {
        close(fd);
        return -1;
    }
    return fd;
}

static void align_sidecar_files(const cs_db *db)
{
    struct stat db_st, st;
    char path[PATH_MAX + 16];
    int db_fd;

    if (db->path == NULL || !db->opened || (db_fd = open_regular_nofollow(db->path, &db_st)) < 0)
        return;
    close(db_fd);
    for (size_t i = 0; i < 2; i++) {
        int fd;

        if (snprintf(path, sizeof(path), "%s%s", db->path, sidecar_suffixes[i]) >=
            (int)sizeof(path))
            continue;
        if ((fd = open_regular_nofollow(path, &st)) < 0)
            continue;
        if (fchmod(fd, db_st.st_mode & 0666) == 0 && fchown(fd, db_st.st_uid, db_st.st_gid) != 0) {
            /* Not root: the files are already ours, which is all we can do. */
        }
        close(fd);
    }
}

void cs_db_close(cs_db *db)
{
    if (db == NULL)
        return;
    if (db->sql != NULL) {
        int writer = !(db->flags & CS_OPEN_READONLY);

        if (db->in_write)
            cs_db_rollback(db);
        finalize_statements(db);
        /*
         * Busy servers keep read snapshots open; a TRUNCATE checkpoint waits
         * for them. The commit is already durable, so wait briefly and leave
         * the rest of the WAL to the next writer rather than stall the CLI.
         */
        if (writer) {
            sqlite3_busy_timeout(db->sql, CS_CLOSE_CHECKPOINT_WAIT_MS);
            sqlite3_wal_checkpoint_v2(db->sql, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        }
        sqlite3_close_v2(db->sql);
        if (writer)
            align_sidecar_files(db);
    }
    free(db->path);
    free(db);
}

void cs_db_set_busy_timeout(cs_db *db, int ms)
{
    if (db == NULL)
        return;
    db->busy_timeout_ms = ms < 0 ? 0 : ms;
    if (db->sql != NULL)
        sqlite3_busy_timeout(db->sql, db->busy_timeout_ms);
}

int cs_db_file_replaced(const cs_db *db)
{
    struct stat st;
    const char *name;
    int at;

    if (db == NULL || db->path == NULL)
        return 1;
    at = cs_db_dir_at(db->path, &name); /* through the directory's descriptor if routed */
    if (fstatat(at, name, &st, 0) != 0)
        return 1;
    return st.st_dev != db->dev || st.st_ino != db->ino;
}

/* The file this handle has open (see remember_file_identity). */
cs_status cs_db_identity(const cs_db *db, cs_db_file_id *id)
{
    if (db == NULL || db->sql == NULL || id == NULL)
        return CS_ERR;
    memset(id, 0, sizeof(*id));
    id->dev = (uint64_t)db->dev;
    id->ino = (uint64_t)db->ino;
    id->birth_sec = db->birth_sec;
    id->birth_nsec = db->birth_nsec;
    return CS_OK;
}

/* ---- migrations ----------------------------------------------------------- */

/*
 * Tables that hold no policy: the generation itself and the change log.
 * Every other table is policy (pins, accounts, mappings, rules, and any a
 * later migration adds).
 */
static const char *const non_policy_tables[] = {"meta", "changes", "sync_state", "sync_entries"};

static int is_policy_table(const char *name)
{
    if (strncmp(name, "sqlite_", 7) == 0)
        return 0;
    for (size_t i = 0; i < sizeof(non_policy_tables) / sizeof(non_policy_tables[0]); i++)
        if (strcmp(name, non_policy_tables[i]) == 0)
            return 0;
    return 1;
}

/* DDL binds no parameters: the name comes from sqlite_master, quoted by %w. */
static cs_status install_triggers_on(cs_db *db, const char *table)
{
    static const char *const events[] = {"INSERT", "UPDATE", "DELETE"};
    cs_status status = CS_OK;

    for (size_t i = 0; status == CS_OK && i < sizeof(events) / sizeof(events[0]); i++) {
        char *sql = sqlite3_mprintf("CREATE TRIGGER IF NOT EXISTS \"%w_%s_bumps_generation\""
                                    " AFTER %s ON \"%w\""
                                    " WHEN (SELECT bulk_write FROM meta WHERE id = 1) = 0"
                                    " BEGIN UPDATE meta SET generation = generation + 1"
                                    " WHERE id = 1; END",
                                    table, events[i], events[i], table);

        if (sql == NULL)
            return cs_fail(db, CS_ERR, "out of memory");
        status = exec_sql(db, sql, "installing the generation triggers");
        sqlite3_free(sql);
    }
    return status;
}

/*
 * Any write that can change any decision must make older sessions decide
 * again (DESIGN: resumption is a decision too). Rather than trust every
 * write path in C (several forgot: map add, rule add, import), every write
 * to a policy table bumps meta.generation through a trigger, in the write's
 * own transaction, whoever writes it: the library, a later write path, or
 * sqlite3 in a shell. The triggers are installed on every policy table
 * after each migration step, so a table a later migration adds has them
 * without anyone remembering (check_store tests that every table does).
 * A bump per row would make a large import two to three times slower
 * (300,000 rows: 7-10 s against 3-4 s), so cs_import bumps once and sets
 * meta.bulk_write for the rest of its transaction (cs_bulk_write_begin);
 * the triggers' WHEN test then costs about a fifth of the import's CPU
 * time. cs_db_commit clears it, so no committed state ever has it set.
 */
static cs_status install_generation_triggers(cs_db *db)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status = CS_OK;
    char names[32][64];
    int n = 0, rc;

    if (sqlite3_prepare_v2(db->sql, "SELECT name FROM sqlite_master WHERE type = 'table'", -1,
                           &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "listing tables");
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);

        if (name == NULL || !is_policy_table(name))
            continue;
        if (n == 32 || strlen(name) >= sizeof(names[0])) {
            rc = SQLITE_ERROR;
            break;
        }
        snprintf(names[n++], sizeof(names[0]), "%s", name);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return cs_fail(db, CS_ERR, "%s: listing tables for the generation triggers failed",
                       db->path);
    for (int i = 0; status == CS_OK && i < n; i++)
        status = install_triggers_on(db, names[i]);
    return status;
}

static void foreign_keys_back_on(cs_db *db);

/* After a rebuild with foreign keys off: any dangling reference refuses the step. */
static cs_status check_foreign_keys(cs_db *db)
{
    sqlite3_stmt *stmt = NULL;
    int rc;

    if (sqlite3_prepare_v2(db->sql, "PRAGMA foreign_key_check", -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "checking foreign keys");
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return cs_fail(db, CS_ERR, "%s: a row refers to one that does not exist; not migrated",
                       db->path);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "checking foreign keys");
}

static cs_status apply_migration(cs_db *db, const cs_migration *step)
{
    char sql[64];
    cs_status status = CS_OK;

    /* A no-op inside a transaction, so before BEGIN. */
    if (step->rebuild_tables) {
        status = exec_sql(db, "PRAGMA foreign_keys = OFF", "preparing a migration");
        db->fk_off = 1;
    }
    if (status == CS_OK)
        status = exec_sql(db, "BEGIN IMMEDIATE", "starting a migration");
    if (status != CS_OK) {
        foreign_keys_back_on(db);
        return status;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", step->version);
    status = exec_sql(db, step->sql, "migrating the schema");
    if (status == CS_OK && step->rebuild_tables)
        status = check_foreign_keys(db);
    if (status == CS_OK && step->version >= 3)
        status = install_generation_triggers(db);
    if (status == CS_OK)
        status = exec_sql(db, sql, "migrating the schema");
    if (status == CS_OK)
        status = exec_sql(db, "COMMIT", "committing a migration");
    if (status != CS_OK)
        sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    foreign_keys_back_on(db);
    return status;
}

cs_status cs_db_migrate(cs_db *db)
{
    int version = 0;
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (db->flags & CS_OPEN_READONLY)
        return cs_fail(db, CS_INVALID, "%s: opened read-only, cannot migrate", db->path);
    status = check_schema(db);
    if (status == CS_OK)
        status = cs_db_schema_version(db, &version);
    for (size_t i = 0; status == CS_OK && i < MIGRATION_COUNT; i++)
        if (migrations[i].version > version)
            status = apply_migration(db, &migrations[i]);
    if (status == CS_OK)
        align_sidecar_files(db);
    return status;
}

/* ---- transactions, change log, generation -------------------------------- */

static void remember_os_user(cs_db *db)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    uid_t uid = geteuid();

    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
        snprintf(db->user, sizeof(db->user), "%s", found->pw_name);
    else
        snprintf(db->user, sizeof(db->user), "%lu", (unsigned long)uid);
}

/* After a cs_db_begin_import transaction or a table rebuild, whatever its end. */
static void foreign_keys_back_on(cs_db *db)
{
    if (!db->fk_off)
        return;
    db->fk_off = 0;
    sqlite3_exec(db->sql, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
}

/* Writes go only to the current schema: an older one lacks the generation triggers. */
static cs_status require_current_schema(cs_db *db)
{
    int version = 0;
    cs_status status = cs_db_schema_version(db, &version);

    if (status != CS_OK)
        return status;
    if (version < CS_SCHEMA_VERSION)
        return cs_fail(db, CS_INVALID,
                       "%s: schema version %d is older than this certstore (%d): migrate it "
                       "first (certstore init)",
                       db->path, version, CS_SCHEMA_VERSION);
    return CS_OK;
}

cs_status cs_db_begin(cs_db *db, const char *command)
{
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (db->flags & CS_OPEN_READONLY)
        return cs_fail(db, CS_INVALID, "%s: opened read-only", db->path);
    if (db->in_write)
        return cs_fail(db, CS_INVALID, "a transaction is already open");
    if ((status = require_current_schema(db)) != CS_OK)
        return status;
    status = exec_simple(db, STMT_BEGIN_WRITE, "starting a transaction");
    if (status != CS_OK)
        return status;
    snprintf(db->command, sizeof(db->command), "%s", command ? command : "");
    remember_os_user(db);
    db->in_write = 1;
    return CS_OK;
}

cs_status cs_db_begin_import(cs_db *db, const char *command)
{
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (db->in_write)
        return cs_fail(db, CS_INVALID, "a transaction is already open");
    /* A no-op inside a transaction: it must come before BEGIN. */
    if (!(db->flags & CS_OPEN_READONLY) &&
        (status = exec_sql(db, "PRAGMA foreign_keys = OFF", "preparing the import")) != CS_OK)
        return status;
    db->fk_off = 1;
    if ((status = cs_db_begin(db, command)) != CS_OK)
        foreign_keys_back_on(db);
    return status;
}

cs_status cs_bulk_write_begin(cs_db *db)
{
    return exec_simple(db, STMT_BULK_WRITE_BEGIN, "starting a bulk write");
}

cs_status cs_bulk_write_end(cs_db *db)
{
    return exec_simple(db, STMT_BULK_WRITE_END, "ending a bulk write");
}

cs_status cs_quiet_writes_begin(cs_db *db)
{
    return exec_simple(db, STMT_QUIET_WRITES_BEGIN, "starting a quiet write");
}

cs_status cs_generation_bump(cs_db *db)
{
    return exec_simple(db, STMT_GENERATION_BUMP, "bumping the policy generation");
}

cs_status cs_db_commit(cs_db *db)
{
    cs_status status;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (!db->in_write)
        return cs_fail(db, CS_INVALID, "no transaction is open");
    /* Whatever the write path did: the generation triggers are on in every committed state. */
    status = cs_bulk_write_end(db);
    if (status == CS_OK)
        status = exec_simple(db, STMT_COMMIT, "committing");
    if (status != CS_OK) {
        cs_db_rollback(db);
        return status;
    }
    db->in_write = 0;
    foreign_keys_back_on(db);
    return CS_OK;
}

void cs_db_rollback(cs_db *db)
{
    if (db == NULL || db->sql == NULL)
        return;
    /* Reset every statement first: an active one would keep the transaction. */
    for (int i = 0; i < STMT_COUNT; i++)
        if (db->stmts[i] != NULL)
            sqlite3_reset(db->stmts[i]);
    if (!sqlite3_get_autocommit(db->sql))
        sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    db->in_write = 0;
    foreign_keys_back_on(db);
}

cs_status cs_require_write(cs_db *db)
{
    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if (!db->in_write)
        return cs_fail(db, CS_INVALID, "changes need a transaction (cs_db_begin)");
    return CS_OK;
}

cs_status cs_log_change(cs_db *db, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    sqlite3_stmt *stmt = cs_stmt(db, STMT_CHANGE_ADD);

    if (stmt == NULL)
        return CS_ERR;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    sqlite3_bind_int64(stmt, 1, cs_now());
    sqlite3_bind_text(stmt, 2, db->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, db->command, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, detail, -1, SQLITE_TRANSIENT);
    return cs_stmt_exec(db, stmt, "writing the change log");
}

cs_status cs_db_generation(cs_db *db, int64_t *generation)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_GENERATION_GET)) == NULL)
        return CS_ERR;
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        cs_status status = rc == SQLITE_DONE
                               ? cs_fail(db, CS_ERR, "%s: policy generation missing", db->path)
                               : cs_sql_fail(db, "reading the policy generation");

        sqlite3_reset(stmt);
        return status;
    }
    *generation = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return CS_OK;
}

cs_status cs_change_foreach(cs_db *db, int64_t since, cs_change_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_CHANGE_LIST)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, since == CS_TIME_NONE ? INT64_MIN : since);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        cs_change change = {
            .id = sqlite3_column_int64(stmt, 0),
            .time = sqlite3_column_int64(stmt, 1),
            .user = (const char *)sqlite3_column_text(stmt, 2),
            .command = (const char *)sqlite3_column_text(stmt, 3),
            .detail = (const char *)sqlite3_column_text(stmt, 4),
        };
        if (cb(&change, arg) != 0) {
            sqlite3_reset(stmt);
            return CS_OK;
        }
    }
    if (rc != SQLITE_DONE) {
        cs_status status = cs_sql_fail(db, "reading the change log");

        sqlite3_reset(stmt);
        return status;
    }
    sqlite3_reset(stmt);
    return CS_OK;
}

/* ---- statistics ----------------------------------------------------------- */

static cs_status stats_totals(cs_db *db, cs_stats *out)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_STATS);

    if (stmt == NULL)
        return CS_ERR;
    /* The kinds cs_kind_needs_pin names. */
    sqlite3_bind_int(stmt, 1, CS_KIND_ISSUER_SERIAL);
    sqlite3_bind_int(stmt, 2, CS_KIND_SKI);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        cs_status status = cs_sql_fail(db, "counting");

        sqlite3_reset(stmt);
        return status;
    }
    out->pins = sqlite3_column_int64(stmt, 0);
    out->pins_enabled = sqlite3_column_int64(stmt, 1);
    out->accounts = sqlite3_column_int64(stmt, 2);
    out->accounts_enabled = sqlite3_column_int64(stmt, 3);
    out->mappings = sqlite3_column_int64(stmt, 4);
    out->mappings_enabled = sqlite3_column_int64(stmt, 5);
    out->generation = sqlite3_column_int64(stmt, 6);
    out->unbound = sqlite3_column_int64(stmt, 7);
    sqlite3_reset(stmt);
    return CS_OK;
}

static cs_status stats_by_kind(cs_db *db, cs_stats *out)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_STATS_BY_KIND);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int kind = sqlite3_column_int(stmt, 0);

        if (kind >= 0 && kind < CS_KIND_COUNT)
            out->by_kind[kind] = sqlite3_column_int64(stmt, 1);
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "counting mappings");
}

cs_status cs_stats_get(cs_db *db, cs_stats *out)
{
    cs_status status;
    int own_txn;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    memset(out, 0, sizeof(*out));
    /* One snapshot, so the numbers agree with each other. */
    own_txn = sqlite3_get_autocommit(db->sql);
    if (own_txn && (status = exec_simple(db, STMT_BEGIN_READ, "starting a read")) != CS_OK)
        return status;
    status = cs_db_schema_version(db, &out->schema_version);
    if (status == CS_OK)
        status = stats_totals(db, out);
    if (status == CS_OK)
        status = stats_by_kind(db, out);
    if (own_txn)
        sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL);
    return status;
}
