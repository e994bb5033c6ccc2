/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals shared by the files of libcertstore. Not installed, not used
 * outside store/.
 */
#ifndef CS_INTERNAL_H
#define CS_INTERNAL_H

#include <sqlite3.h>
#include <sys/types.h>

#include <openssl/asn1.h>

#include "cs_store.h"

/* Every statement is prepared once per handle, on first use, and reused. */
typedef enum {
    STMT_BEGIN_READ,
    STMT_BEGIN_WRITE,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_GENERATION_GET,
    STMT_BULK_WRITE_BEGIN,
    STMT_BULK_WRITE_END,
    STMT_QUIET_WRITES_BEGIN,
    STMT_GENERATION_BUMP,
    STMT_CHANGE_ADD,
    STMT_CHANGE_LIST,
    STMT_PIN_ADD,
    STMT_PIN_REMOVE,
    STMT_PIN_ENABLED_GET,
    STMT_PIN_SET_ENABLED,
    STMT_PIN_GET,
    STMT_PIN_LIST,
    STMT_ACCOUNT_ADD,
    STMT_ACCOUNT_FIND,
    STMT_ACCOUNT_SET_ENABLED,
    STMT_ACCOUNT_COUNT_MAPPINGS,
    STMT_ACCOUNT_DELETE_MAPPINGS,
    STMT_ACCOUNT_REMOVE,
    STMT_ACCOUNT_LIST,
    STMT_MAPPING_ADD,
    STMT_MAPPING_FIND_ID,
    STMT_MAPPING_FIND_KEY,
    STMT_MAPPING_REMOVE,
    STMT_MAPPING_SET_ENABLED,
    STMT_MAPPING_SET_WINDOW,
    STMT_MAPPING_LIST,
    STMT_MAPPING_LIST_ACCOUNT,
    STMT_DECIDE_PIN,
    STMT_DECIDE_MAPPING,
    STMT_DECIDE_FAST,
    STMT_STATS,
    STMT_STATS_BY_KIND,
    STMT_DECIDE_RULES,
    STMT_RULE_ADD,
    STMT_RULE_ENABLED_GET,
    STMT_RULE_REMOVE,
    STMT_RULE_SET_ENABLED,
    STMT_RULE_LIST,
    STMT_MAPPING_SET_NIBC,
    STMT_MAPPING_GET_NIBC,
    STMT_ACCOUNT_COUNT_RULES,
    STMT_ACCOUNT_DELETE_RULES,
    /* crl.c: SQL next to the code that binds it (cs_stmt_sql) */
    STMT_CRL_PINS,
    STMT_CRL_CURRENT,
    STMT_CRL_INSERT,
    STMT_CRL_UPDATE,
    STMT_CRL_INCOMING_CLEAR,
    STMT_CRL_INCOMING_ADD,
    STMT_CRL_NEWLY_REVOKED,
    STMT_CRL_DROP_UNLISTED,
    STMT_CRL_MERGE,
    STMT_CRL_REMOVE,
    STMT_CRL_LIST,
    STMT_CRL_NOTE_FETCH,
    STMT_DECIDE_REVOCATION,
    STMT_DECIDE_TWIN_CRL,
    STMT_PIN_SET_REVOCATION,
    STMT_MAPPING_GET,
    STMT_MAPPING_PREFIX,
    STMT_MAPPING_UNPINNED,
    STMT_MAPPING_CERT_ADD,
    STMT_MAPPING_CERT_GET,
    /* ocsp.c */
    STMT_OCSP_PIN_ID,
    STMT_OCSP_CURRENT,
    STMT_OCSP_PUT,
    STMT_OCSP_NOTE_FAILURE,
    STMT_OCSP_LIST,
    STMT_OCSP_TARGETS,
    STMT_COUNT
} cs_stmt_id;

struct cs_db {
    sqlite3 *sql;
    char *path;
    unsigned flags;
    int busy_timeout_ms;
    dev_t dev;
    ino_t ino;
    int64_t birth_sec, birth_nsec; /* 0 where the file system keeps none */
    int in_write;                  /* between cs_db_begin and commit/rollback */
    int fk_off;                    /* cs_db_begin_import: foreign keys off until it ends */
    int opened;                    /* the open succeeded: close may align the sidecars */
    sqlite3_file *main_file;       /* cs_db_wal_mark: the pager's file, stable while open */
    char command[1024];
    char user[64];
    char errmsg[512];
    sqlite3_stmt *stmts[STMT_COUNT];
};

/* Statement by id, reset and with bindings cleared; NULL (message set) on failure. */
sqlite3_stmt *cs_stmt(cs_db *db, cs_stmt_id id);
/* The same for a statement whose SQL lives next to its caller (the same sql every time). */
sqlite3_stmt *cs_stmt_sql(cs_db *db, cs_stmt_id id, const char *sql);
/* Run a statement that returns no rows (SQLITE_DONE expected). */
cs_status cs_stmt_exec(cs_db *db, sqlite3_stmt *stmt, const char *what);

/* Set the message and return status. */
cs_status cs_fail(cs_db *db, cs_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Message from SQLite's last error; CS_BUSY for locks, CS_ERR otherwise. */
cs_status cs_sql_fail(cs_db *db, const char *what);

/* Mutations must be inside cs_db_begin(); CS_INVALID otherwise. */
cs_status cs_require_write(cs_db *db);
/*
 * A bulk write (cs_import): bump the generation once now, and keep the
 * per-row generation triggers quiet until cs_bulk_write_end or the commit.
 */
cs_status cs_bulk_write_begin(cs_db *db);
cs_status cs_bulk_write_end(cs_db *db);
/*
 * A write that decides itself whether decisions can get stricter (crl.c,
 * ocsp.c): the generation triggers quiet until the commit, and
 * cs_generation_bump when they can.
 */
cs_status cs_quiet_writes_begin(cs_db *db);
cs_status cs_generation_bump(cs_db *db);
/* Append a change-log row for the current command. */
cs_status cs_log_change(cs_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- revocation (crl.c) ------------------------------------------------- */

/* A serial number as the revoked table keys it; 0 when it does not fit. */
#define CS_SERIAL_MAX 128
int cs_serial_key(const ASN1_INTEGER *serial, unsigned char *buf, size_t *len);

/* What the revocation step knows of a pin and a leaf. */
typedef struct {
    cs_revocation_policy policy; /* as stored: DEFAULT when never set */
    int64_t grace;
    int have_crl;
    int64_t next_update;      /* CS_TIME_NONE: the CRL names none */
    int listed;               /* the leaf's serial is on the CRL */
    cs_ocsp_status ocsp;      /* the leaf's stored OCSP answer */
    int64_t ocsp_next_update; /* its nextUpdate, or thisUpdate + a day when it names none */
} cs_revocation_input;
/*
 * The state at `now`; *until is when it (or what is logged for it) changes,
 * CS_TIME_FOREVER when it does not by time alone.
 */
cs_revocation_state cs_revocation_judge(const cs_revocation_input *in, int64_t now, int64_t *until);

/* Time helpers (util.c). */
int64_t cs_asn1_time_to_unix(const ASN1_TIME *t, int *ok);
int64_t cs_now(void);

/* Short key text for log lines: first bytes as hex plus an ellipsis. */
void cs_key_abbrev(cs_kind kind, const cs_key *key, char *buf, size_t buflen);

/* Bind helpers: CS_TIME_NONE and NULL become SQL NULL. */
int cs_bind_time(sqlite3_stmt *stmt, int index, int64_t t);
int cs_bind_text_or_null(sqlite3_stmt *stmt, int index, const char *text);
int64_t cs_column_time(sqlite3_stmt *stmt, int col);

/* Account id by name (CS_NOTFOUND if none). */
cs_status cs_account_id(cs_db *db, const char *name, int64_t *id);
/* Insert an account without logging (callers log); id of the new row. */
cs_status cs_account_insert(cs_db *db, const char *name, const char *note, int64_t *id);
/* Insert a mapping row for a known account id, no logging, no account lookup. */
cs_status cs_mapping_insert(cs_db *db, const cs_mapping_spec *spec, int64_t account_id,
                            int64_t *id_out);
/* Check a spec's fields (key length, times, note, pin); CS_INVALID with message. */
cs_status cs_mapping_spec_check(cs_db *db, const cs_mapping_spec *spec, char *pin_hex);

/* Mapping id of a reference (by id or kind+key); CS_NOTFOUND if none. */
cs_status cs_mapping_ref_id(cs_db *db, const cs_mapping_ref *ref, int64_t *id);

/* ---- the altSecurityIdentities parser (import_altsecid.c) ------------------ */

/*
 * Where parsed values go: cs_import_altsecid adds them to the store; a
 * directory sync (sync.c) compares them with what it owns. Specs and their
 * strings live until the callback returns.
 */
typedef struct {
    cs_status (*mapping)(const cs_mapping_spec *spec, void *arg);
    cs_status (*rule)(const cs_rule_spec *spec, void *arg);
    void *arg;
} cs_altsec_sink;
typedef struct cs_altsec cs_altsec;
/* Loads the pins now: a pin added later is not seen. sink NULL: add to the store. */
cs_status cs_altsec_open(cs_db *db, const char *pin_fp, int allow_weak, cs_foreign_note_cb note,
                         void *arg, const cs_altsec_sink *sink, cs_foreign_result *res,
                         cs_altsec **out);
/* One "X509:..." value of account; where is reported to note as the line. */
cs_status cs_altsec_value(cs_altsec *c, int64_t where, const char *account, const char *value,
                          size_t len);
void cs_altsec_close(cs_altsec *c);

/* ---- what the IIS and altSecurityIdentities imports write (import_foreign.c) ---- */

/*
 * One import's mappings and rules, added or (update) changed in place as
 * cs_import_iis_ex describes. line is the file's line of the entry, for
 * the message of a second entry with the same kind and key.
 */
typedef struct cs_foreign_writer cs_foreign_writer;
cs_status cs_foreign_writer_new(cs_db *db, int update, cs_foreign_result *res,
                                cs_foreign_writer **out);
void cs_foreign_writer_free(cs_foreign_writer *w);
cs_status cs_foreign_put_mapping(cs_foreign_writer *w, const cs_mapping_spec *spec, int enabled,
                                 int64_t line);
cs_status cs_foreign_put_rule(cs_foreign_writer *w, const cs_rule_spec *spec, int enabled,
                              int64_t line);

/* ---- rule matching (dn_match.c) ------------------------------------------- */

/*
 * Parse one "ATTR=PATTERN,..." condition into NID + glob pairs. Returns the
 * number of pairs (>= 1), or -1 with a message in msg.
 */
#define CS_DN_PAIRS_MAX 16
#define CS_PATTERN_MAX 256
typedef struct {
    int nid;
    int joined;                /* after a '+': in the same RDN as the previous pair */
    char glob[CS_PATTERN_MAX]; /* '*', '?' wild; '\' quotes the next byte */
} cs_dn_pair;
int cs_dn_parse(const char *text, cs_dn_pair *pairs, size_t max, char *msg, size_t msglen);
/* Validate a list field (san, eku, policy); 1 ok, 0 with message. */
int cs_san_list_valid(const char *text, char *msg, size_t msglen);
int cs_oid_list_valid(const char *text, char *msg, size_t msglen);
/* Glob match of UTF-8 text (validated by the caller). */
int cs_glob_match(const char *glob, const char *text, size_t textlen, int case_sensitive);
/* 1 if s[0..len) is well-formed UTF-8 without NUL. */
int cs_utf8_valid(const unsigned char *s, size_t len);

#endif /* CS_INTERNAL_H */
