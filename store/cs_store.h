/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcertstore: the pin store, accounts, mappings and the one policy
 * function that decides a verified client chain.
 *
 * The library never prints and never exits: every call returns a cs_status
 * and, on failure, leaves a one-line message in cs_db_errmsg().
 * A cs_db handle is used by one thread at a time.
 */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <openssl/x509.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_db cs_db;

typedef enum {
    CS_OK = 0,
    CS_NOTFOUND, /* no such pin / account / mapping */
    CS_EXISTS,   /* already there (unique key) */
    CS_INUSE,    /* account still used by mappings */
    CS_INVALID,  /* bad argument or input (message says which) */
    CS_BUSY,     /* locked past the busy timeout */
    CS_ERR       /* I/O, corruption, schema, anything else */
} cs_status;

/* Newest schema this library knows (PRAGMA user_version). */
#define CS_SCHEMA_VERSION 10

#define CS_OPEN_READONLY 0x1u /* servers: never writes, never creates */
#define CS_OPEN_CREATE 0x2u   /* create the file if missing (init only) */
/* Write even where others may change the directory (cs_db_check_dir). */
#define CS_OPEN_ALLOW_UNSAFE_DIR 0x4u

#define CS_FP_HEX_LEN 64       /* SHA-256 as lowercase hex */
#define CS_ACCOUNT_MAX 255     /* bytes of an account name */
#define CS_NOTE_MAX 4096       /* bytes of a note */
#define CS_KEY_MAX 128         /* bytes of a binary mapping key */
#define CS_TIME_NONE INT64_MIN /* "no time given" */
#define CS_TIME_FOREVER INT64_MAX

/*
 * Open a database. On CS_OK the schema has been checked (read-only opens
 * refuse a file whose user_version is not CS_SCHEMA_VERSION; writable opens
 * refuse a newer one and leave an older one for cs_db_migrate()).
 * *out is always set (NULL only when out of memory) so the caller can read
 * cs_db_errmsg() and must call cs_db_close().
 * Writable opens set WAL mode, foreign_keys=ON, busy_timeout and keep the
 * -wal/-shm files in place (persistent WAL) so read-only users can open it.
 */
cs_status cs_db_open(cs_db **out, const char *path, unsigned flags);
/* The same, waiting at most busy_timeout_ms for locks from the start (the
 * schema check included); cs_db_open waits the default 2000 ms. */
cs_status cs_db_open_ex(cs_db **out, const char *path, unsigned flags, int busy_timeout_ms);
/*
 * Whether the directory holding `path`, and every directory above it, is
 * safe to write a database in: owned by root or by us, and writable by no
 * one else unless sticky (like /tmp). Where others can write, they can
 * replace the database or plant links under its -wal/-shm names, and a
 * privileged writer would then write, chmod or chown whatever the links
 * point to. Writable opens refuse such a place (CS_INVALID, message names
 * the directory, its owner and mode) unless CS_OPEN_ALLOW_UNSAFE_DIR.
 * Every open, read-only too, refuses a database, -wal, -shm or -journal
 * that is a symbolic link or not a regular file; the checks come before
 * SQLite opens the files, so only a safe directory makes them race-free.
 */
cs_status cs_db_check_dir(const char *path, char *msg, size_t msglen);
void cs_db_close(cs_db *db);
const char *cs_db_errmsg(const cs_db *db);
const char *cs_db_path(const cs_db *db);

/* Create the schema or apply forward migrations; refuses a newer schema. */
cs_status cs_db_migrate(cs_db *db);
cs_status cs_db_schema_version(cs_db *db, int *version);

/* Milliseconds a statement waits for a lock before CS_BUSY (default 2000). */
void cs_db_set_busy_timeout(cs_db *db, int ms);

/*
 * Nonzero when the file at the opened path is no longer the one this handle
 * has open (replaced by rename, deleted): the caller should reopen.
 */
int cs_db_file_replaced(const cs_db *db);

/*
 * The policy generation: bumped in the same transaction by every write to a
 * policy table (pins, accounts, mappings, rules, and any later one; SQLite
 * triggers that the migrations install on every table but meta and the
 * change log), whatever it changes. Sessions bound to an older generation
 * must not resume.
 */
cs_status cs_db_generation(cs_db *db, int64_t *generation);

/*
 * Which database file a handle has open. A file replaced by rename (a deploy
 * tool installing another database) keeps its own generation counter, so a
 * generation means something only together with the file it was read from.
 * dev/ino come from the open; the birth time (0/0 where the file system
 * keeps none) tells a new file from an older, deleted one whose inode
 * number was reused. Recorded when the handle opened the file, so this
 * makes no system call; cs_db_file_replaced() tells whether the path still
 * names that file.
 */
typedef struct {
    uint64_t dev;
    uint64_t ino;
    int64_t birth_sec;
    int64_t birth_nsec;
} cs_db_file_id;
cs_status cs_db_identity(const cs_db *db, cs_db_file_id *id);

/*
 * A change mark: the header of the wal-index, where SQLite in WAL mode
 * publishes every commit (iChange, mxFrame, salts, checksums; written in
 * two copies so a reader can tell a torn one). Two equal marks taken
 * through one open handle mean nothing was committed in between, by any
 * writer. Read from the handle's own shared-memory mapping (the VFS's
 * xShmMap; no file descriptor of our own, whose close would drop the
 * process's locks on the -shm file). CS_OK with the mark; CS_ERR when it
 * cannot be read consistently (no WAL index yet, a copy being rewritten,
 * another wal-index version): then assume a change. certstore keeps its
 * databases in WAL mode; one switched out of it by hand publishes nothing
 * here, and its writes are noticed by what changes the file itself
 * (the provider stats the file on every handshake).
 */
#define CS_WAL_MARK_LEN 48
cs_status cs_db_wal_mark(cs_db *db, unsigned char mark[CS_WAL_MARK_LEN]);

/*
 * Write transactions. Every mutating call below must run between
 * cs_db_begin() and cs_db_commit()/cs_db_rollback(); each appends a
 * change-log row (time, OS user, command, what changed) and bumps the
 * policy generation. `command` is the CLI command line as the operator
 * typed it. cs_db_begin refuses a database whose schema is older than
 * CS_SCHEMA_VERSION (cs_db_migrate it first).
 */
cs_status cs_db_begin(cs_db *db, const char *command);
/*
 * cs_db_begin for cs_import of a large file: foreign-key enforcement is off
 * for this one transaction (cs_import finds or creates, in the transaction,
 * every account its rows name, so the per-row parent lookup only costs) and
 * on again once it commits or rolls back. Only cs_import belongs in it.
 */
cs_status cs_db_begin_import(cs_db *db, const char *command);
cs_status cs_db_commit(cs_db *db);
void cs_db_rollback(cs_db *db);

/* ---- fingerprints and times ---------------------------------------------- */

/* SHA-256 over DER as 64 lowercase hex chars + NUL. */
int cs_fp_of_cert(const X509 *cert, char hex[CS_FP_HEX_LEN + 1]);
/* Normalise user input (any case, optional colons) to lowercase hex; 0 if bad. */
int cs_fp_normalise(const char *in, char hex[CS_FP_HEX_LEN + 1]);

/* Parse YYYY-MM-DD or RFC 3339 (Z or +hh:mm) into Unix seconds; 0 if bad. */
int cs_time_parse(const char *text, int64_t *out);
/* Format Unix seconds as RFC 3339 UTC (2027-01-31T12:00:00Z). */
void cs_time_format(int64_t t, char buf[32]);

/* ---- pins ---------------------------------------------------------------- */

typedef struct {
    int64_t id;
    char fp[CS_FP_HEX_LEN + 1];
    const char *subject; /* one-line RFC 2253 */
    int64_t not_after;
    int enabled;
    const char *note; /* "" when none */
    int64_t created;
    const unsigned char *der;
    size_t der_len;
    const char *source; /* NULL: made locally; else the sync that owns it */
} cs_pin;

/* Refuses (CS_INVALID) a certificate without basicConstraints CA:TRUE. */
cs_status cs_pin_add(cs_db *db, X509 *ca, const char *note, char fp_out[CS_FP_HEX_LEN + 1]);
cs_status cs_pin_remove(cs_db *db, const char *fp);
cs_status cs_pin_set_enabled(cs_db *db, const char *fp, int enabled);
/* Callback returns 0 to continue, nonzero to stop (returned as CS_OK). */
typedef int (*cs_pin_cb)(const cs_pin *pin, void *arg);
/* One pin by fingerprint; CS_NOTFOUND if none. */
cs_status cs_pin_get(cs_db *db, const char *fp, cs_pin_cb cb, void *arg);
cs_status cs_pin_foreach(cs_db *db, cs_pin_cb cb, void *arg);
/*
 * The pin that issued a leaf: its subject is the leaf's issuer name and its
 * key verifies the leaf's signature (disabled pins count). CS_NOTFOUND when
 * none did; CS_EXISTS when several did (a CA renewed with the same name and
 * key): the caller must choose one.
 */
cs_status cs_pin_find_issuer(cs_db *db, X509 *leaf, char fp_out[CS_FP_HEX_LEN + 1]);

/* ---- accounts ------------------------------------------------------------ */

typedef struct {
    int64_t id;
    const char *name;
    int enabled;
    const char *note;
    int64_t created;
    int64_t mappings; /* how many mappings use it */
} cs_account;

/* Names: 1..CS_ACCOUNT_MAX bytes of valid UTF-8 without control chars. */
int cs_account_name_valid(const char *name);
cs_status cs_account_add(cs_db *db, const char *name, const char *note);
cs_status cs_account_set_enabled(cs_db *db, const char *name, int enabled);
/*
 * CS_INUSE while mappings or rules use it (the message counts and names
 * them), unless cascade (then they go too, and the change log names them).
 */
cs_status cs_account_remove(cs_db *db, const char *name, int cascade);
/* The same, telling how many mappings and rules went with it (may be NULL). */
cs_status cs_account_remove_counted(cs_db *db, const char *name, int cascade, int64_t *mappings,
                                    int64_t *rules);
typedef int (*cs_account_cb)(const cs_account *acct, void *arg);
cs_status cs_account_foreach(cs_db *db, cs_account_cb cb, void *arg);

/* ---- mappings ------------------------------------------------------------ */

typedef enum {
    CS_KIND_CERT = 0,      /* SHA-256 of the leaf DER (32 bytes) */
    CS_KIND_ISSUER_SERIAL, /* SHA-256 of issuer Name DER (32) || serial magnitude */
    CS_KIND_SKI,           /* subjectKeyIdentifier octets */
    CS_KIND_SPKI,          /* SHA-256 of SubjectPublicKeyInfo DER (32) */
    CS_KIND_COUNT
} cs_kind;

const char *cs_kind_name(cs_kind kind); /* "cert", "issuer-serial", "ski", "spki" */
/*
 * 1 for ski and issuer-serial: a pinned CA chooses a leaf's SKI, and a CA
 * with a twin DN can repeat an issuer DN and serial, so such a mapping must
 * be bound to the pin of the CA that issued it (cs_mapping_add refuses it
 * otherwise, and the policy never applies one without a pin).
 */
int cs_kind_needs_pin(cs_kind kind);
int cs_kind_parse(const char *name, cs_kind *out);

typedef struct {
    unsigned char bytes[CS_KEY_MAX];
    size_t len;
} cs_key;

/* Key of `kind` for a leaf; CS_NOTFOUND when it has none (no SKI). */
cs_status cs_key_from_cert(const X509 *leaf, cs_kind kind, cs_key *out);
/*
 * Text form: lowercase hex; issuer-serial is "ISSUERHASHHEX:SERIALHEX".
 * Parse accepts any case and colons between byte pairs; 0 if bad.
 */
int cs_key_parse(cs_kind kind, const char *text, cs_key *out);
void cs_key_format(cs_kind kind, const cs_key *key, char *buf, size_t buflen);

typedef struct {
    cs_kind kind;
    cs_key key;
    const char *account;
    const char *pin_fp; /* NULL: any pinned issuer (cert, spki); required for ski, issuer-serial */
    int64_t not_before; /* CS_TIME_NONE when open */
    int64_t not_after;  /* CS_TIME_NONE when open */
    const char *note;   /* NULL or "" when none */
    /* Optional, kept when the mapping was made from a certificate: */
    int64_t cert_not_after; /* the leaf's notAfter, CS_TIME_NONE if unknown */
    int have_sha1;
    unsigned char sha1[20]; /* leaf SHA-1, for nginx's $ssl_client_fingerprint */
    /*
     * The certificate itself (NULL: none), kept whole with the mapping by
     * cs_mapping_add (see cs_mapping_cert_get); the caller keeps it alive
     * until then.
     */
    const X509 *cert;
} cs_mapping_spec;

typedef struct {
    int64_t id;
    cs_kind kind;
    cs_key key;
    const char *account;
    const char *pin_fp; /* NULL when bound to no pin (see cs_mapping_unbound) */
    int64_t not_before, not_after;
    int enabled;
    const char *note;
    int64_t created;
    int64_t cert_not_after;
    int have_sha1;
    unsigned char sha1[20];
    const char *source;  /* NULL: made locally; else the sync that owns it */
    const char *subject; /* of the certificate kept with it; NULL when none is kept */
} cs_mapping;

/* Fill spec->kind/key/cert_not_after/sha1/cert from a leaf certificate. */
cs_status cs_mapping_spec_from_cert(cs_mapping_spec *spec, const X509 *leaf, cs_kind kind);

/*
 * Account must exist unless create_account. An ski or issuer-serial mapping
 * without pin_fp is CS_INVALID (cs_pin_find_issuer finds the pin to bind).
 * id_out may be NULL.
 */
cs_status cs_mapping_add(cs_db *db, const cs_mapping_spec *spec, int create_account,
                         int64_t *id_out);
/* Select one mapping: by id (id > 0) or by kind+key. */
typedef struct {
    int64_t id;
    cs_kind kind;
    cs_key key;
} cs_mapping_ref;
cs_status cs_mapping_remove(cs_db *db, const cs_mapping_ref *ref);
cs_status cs_mapping_set_enabled(cs_db *db, const cs_mapping_ref *ref, int enabled);
/* Replace a mapping's validity window (CS_TIME_NONE: open). */
cs_status cs_mapping_set_window(cs_db *db, const cs_mapping_ref *ref, int64_t not_before,
                                int64_t not_after);
/*
 * A ski or issuer-serial mapping bound to no pin (made before binding was
 * required; schema 3 keeps such rows): the policy never applies it.
 */
int cs_mapping_unbound(const cs_mapping *m);
typedef int (*cs_mapping_cb)(const cs_mapping *m, void *arg);
/* account NULL: all mappings, ordered by id. */
cs_status cs_mapping_foreach(cs_db *db, const char *account, cs_mapping_cb cb, void *arg);

/*
 * The certificate a mapping was made from: kept when it was made from a
 * certificate (map add CERT, an IIS import), none when made from a key or a
 * fingerprint (a CSV or JSON import, altSecurityIdentities). Strings are
 * readable UTF-8 (RFC 2253 order, escaping only what RFC 2253 needs and
 * control characters); serial is uppercase hex, '-' first when negative.
 */
typedef struct {
    int64_t mapping_id;
    const unsigned char *der;
    size_t der_len;
    char fp[CS_FP_HEX_LEN + 1]; /* SHA-256 of der */
    const char *subject;
    const char *issuer;
    const char *serial;
    int64_t not_before, not_after; /* CS_TIME_NONE if unreadable */
} cs_mapping_cert;
typedef int (*cs_mapping_cert_cb)(const cs_mapping_cert *cert, void *arg);
/* The certificate kept with a mapping; CS_NOTFOUND when it keeps none. */
cs_status cs_mapping_cert_get(cs_db *db, int64_t mapping_id, cs_mapping_cert_cb cb, void *arg);
/* The same as an X509 (*out the caller's to free); CS_NOTFOUND when none. */
cs_status cs_mapping_cert_x509(cs_db *db, int64_t mapping_id, X509 **out);
/*
 * Mappings whose key, as cs_key_format writes it, starts with prefix (at
 * least CS_PREFIX_MIN hex digits, any case, colons between byte pairs; for
 * issuer-serial the issuer hash part), of one kind or of every kind
 * (CS_KIND_COUNT), ordered by kind then id. CS_INVALID for a bad prefix.
 */
#define CS_PREFIX_MIN 4
cs_status cs_mapping_foreach_prefix(cs_db *db, cs_kind kind, const char *prefix, cs_mapping_cb cb,
                                    void *arg);
/*
 * Mappings bound to a pin that is not in the store (an import's pin column,
 * map add --pin of a CA not pinned yet): they apply to nothing until it is.
 * cb gets each such pin fingerprint with the number of its mappings.
 */
typedef int (*cs_unpinned_cb)(const char *pin_fp, int64_t mappings, void *arg);
cs_status cs_mapping_foreach_unpinned(cs_db *db, cs_unpinned_cb cb, void *arg);
/* One mapping by reference (id or kind+key); CS_NOTFOUND if none. */
cs_status cs_mapping_get(cs_db *db, const cs_mapping_ref *ref, cs_mapping_cb cb, void *arg);
/*
 * Readable one-line name: RFC 2253 order and escapes, UTF-8 as it is (no
 * \XX for bytes above 0x7f), control characters escaped.
 */
void cs_name_text(const X509_NAME *name, char *buf, size_t buflen);

/*
 * Backdating check (Windows' event 40): when on, a certificate whose
 * notBefore is earlier than the mapping's creation is rejected with
 * issued-before-mapping.
 */
cs_status cs_mapping_set_not_issued_before_created(cs_db *db, const cs_mapping_ref *ref, int on);
/* Whether the check is on for a mapping (*on set); CS_NOTFOUND if no such mapping. */
cs_status cs_mapping_get_not_issued_before_created(cs_db *db, const cs_mapping_ref *ref, int *on);

/* ---- many-to-one rules (rules.c, dn_match.c) ------------------------------ */

/*
 * A rule maps every certificate of one pinned issuer that satisfies all of
 * its conditions to an account (allow), or rejects it (deny). Rules are
 * weak ways in. They are tried after the one-to-one mappings, by priority
 * (lower first, then id); the first that matches decides.
 *
 * Condition syntax (validated by cs_rule_check, stored as given):
 *   subject, issuer: "O=Acme,CN=gw-*": comma-separated ATTR=PATTERN, every
 *     pair must hold for some value of its attribute; an allow rule also
 *     needs every value of each attribute it names to match one of that
 *     attribute's pairs (a deny rule: any value). With subject_exact /
 *     issuer_exact the pairs are the whole name instead, RDNs ('+') and
 *     order as RFC 4514 writes it (most specific first), nothing extra.
 *     ATTR is CN, O, OU, L, ST, C, emailAddress (or E), serialNumber, UID,
 *     DC (any case). RFC 4514 escapes \, \+ \" \\ \; \< \> \= \# \XX; '*'
 *     and '?' are globs, '\*' and '\?' literal. issuer is matched against
 *     the leaf's issuer name.
 *   san: one "TYPE:PATTERN" per line, TYPE DNS (caseless, no trailing
 *     dot), email, URI, IP (exact address; IPv4-mapped IPv6 is IPv4), UPN
 *     (Microsoft UPN otherName, UTF8String or IA5String); each line must be
 *     satisfied by some entry of that type.
 *   eku, policy: one OID per line (dotted, or a name OpenSSL knows such as
 *     clientAuth); every one must be present in the leaf. For a deny rule
 *     no EKU extension or anyExtendedKeyUsage holds every EKU, and
 *     anyPolicy every policy.
 * Values are compared as code points of valid UTF-8; unless case_sensitive,
 * after NFC and full Unicode case folding (so "STRASSE" matches "straße");
 * case_sensitive compares them exactly, unnormalised. '?' is one code
 * point. A value that cannot be read (invalid UTF-8, NUL, T61String beyond
 * ASCII, other string types, a duplicated or undecodable extension) makes
 * a deny rule looking at it match and an allow rule not.
 */
typedef enum { CS_RULE_ALLOW = 0, CS_RULE_DENY = 1 } cs_rule_action;

#define CS_RULE_PRIORITY_DEFAULT 100
#define CS_RULE_TEXT_MAX 2048 /* bytes of each condition field */

typedef struct {
    cs_rule_action action;
    const char *account; /* allow: required; deny: NULL */
    const char *pin_fp;  /* required: a rule never spans CAs */
    int64_t priority;
    const char *subject, *issuer, *san, *eku, *policy; /* NULL or "" when absent */
    int case_sensitive;
    int not_issued_before_created;
    const char *note;
    /* The whole name, in order (see above), instead of the listed pairs. */
    int subject_exact, issuer_exact;
} cs_rule_spec;

typedef struct {
    int64_t id;
    cs_rule_spec spec; /* account NULL for deny; strings valid during the callback */
    int enabled;
    int64_t created;
} cs_rule;

/* Validate a rule (syntax of every condition); CS_INVALID with msg. */
cs_status cs_rule_check(const cs_rule_spec *spec, char *msg, size_t msglen);
/* Add (account must exist unless create_account); id_out may be NULL. */
cs_status cs_rule_add(cs_db *db, const cs_rule_spec *spec, int create_account, int64_t *id_out);
cs_status cs_rule_remove(cs_db *db, int64_t id);
cs_status cs_rule_set_enabled(cs_db *db, int64_t id, int enabled);
typedef int (*cs_rule_cb)(const cs_rule *rule, void *arg);
/* In evaluation order (priority, then id). */
cs_status cs_rule_foreach(cs_db *db, cs_rule_cb cb, void *arg);

/* Match a rule's conditions against a leaf: 1 match, 0 no match, -1 unreadable rule. */
int cs_rule_matches(const cs_rule_spec *spec, const X509 *leaf);

/* ---- import -------------------------------------------------------------- */

typedef enum { CS_IMPORT_AUTO = 0, CS_IMPORT_CSV, CS_IMPORT_JSONL } cs_import_format;
typedef struct {
    int64_t rows; /* mappings imported */
    int64_t accounts_created;
    int64_t updated;  /* of rows: existing mappings replaced (cs_import_ex with update) */
    int64_t bad_line; /* 1-based line of the first error, 0 if none */
} cs_import_result;
/*
 * Read CSV (header kind,key,account[,not_before,not_after,note,pin,enabled,
 * account_enabled,not_issued_before,created,id] in any order) or JSON lines
 * with the same names: what `certstore export --format csv|json` writes.
 * enabled/account_enabled are true or false (JSON booleans too), absent
 * meaning true and, for the account, whatever state it has; an account the
 * import creates takes the state given, one that exists must have it.
 * not_issued_before is "created" or empty; created (a time, default now) is
 * what the backdating check compares with; id is read and dropped. pin_fp
 * (may be NULL) is the pin of rows that name none; a ski or issuer-serial
 * row with neither is refused (see cs_kind_needs_pin). Runs inside the
 * caller's transaction; on any error returns CS_INVALID with the line number in
 * result->bad_line and the message in cs_db_errmsg(); the caller rolls back.
 * progress (may be NULL) is called every few thousand rows.
 */
cs_status cs_import(cs_db *db, FILE *in, cs_import_format fmt, const char *pin_fp,
                    cs_import_result *result, void (*progress)(int64_t rows, void *arg), void *arg);
/*
 * cs_import, and with update a row whose kind and key a mapping already has
 * replaces that mapping's account, pin, window, state, note and backdating
 * check (its id and created stay) instead of failing the import;
 * result->updated counts them (result->rows counts every row imported).
 */
typedef struct {
    int update;
} cs_import_opts;
cs_status cs_import_ex(cs_db *db, FILE *in, cs_import_format fmt, const char *pin_fp,
                       const cs_import_opts *opts, cs_import_result *result,
                       void (*progress)(int64_t rows, void *arg), void *arg);

/*
 * The import parser alone, a pure function of its input (for fuzzing and
 * checks): each valid row goes to cb (its strings live until cb returns);
 * cb returns CS_OK to go on. On a bad row returns CS_INVALID with the line in
 * *bad_line and "line N: ..." in msg; a cb failure is returned as is.
 */
typedef struct {
    cs_mapping_spec mapping;
    int enabled;                   /* 0: imported disabled */
    int account_enabled;           /* -1: not given; else the account's state */
    int not_issued_before_created; /* the backdating check (issued-before-mapping) */
    int64_t created;               /* CS_TIME_NONE: the time of the import */
} cs_import_row;
typedef cs_status (*cs_import_row_cb)(const cs_import_row *row, int64_t line, void *arg);
cs_status cs_import_parse(const void *data, size_t len, cs_import_format fmt, cs_import_row_cb cb,
                          void *arg, int64_t *bad_line, char *msg, size_t msglen);

/* ---- migration from Windows (import_iis.c, import_altsecid.c) -------------- */

typedef struct {
    int64_t mappings;         /* strong one-to-one mappings imported (added or updated) */
    int64_t rules;            /* rules imported (added or updated) */
    int64_t mappings_updated; /* of mappings: existing ones changed (opts->update) */
    int64_t rules_updated;    /* of rules: existing ones changed (opts->update) */
    int64_t accounts_created;
    int64_t refused;  /* entries not imported (each reported to note) */
    int64_t bad_line; /* line of the first error, 0 if none */
} cs_foreign_result;

/* Told about every entry that was not imported, and why; may be NULL. */
typedef void (*cs_foreign_note_cb)(int64_t line, const char *why, void *arg);

/*
 * IIS applicationHost.config / web.config, as IIS enforces it at location
 * (a <location> path; NULL: the file's only scope, CS_INVALID when it has
 * several): the sections of the root and of the locations above and at the
 * path, parents first, their switches and <add>/<remove>/<clear/>.
 * <oneToOneMappings> become cert mappings, <manyToOneMappings> rules of
 * issuer pin_fp (IIS does not name the issuer; required when there are
 * many-to-one mappings to import), in order. What a switch turns off is
 * reported to note, not imported; a Deny mapping that cannot be expressed
 * is CS_INVALID. Passwords are never read into memory beyond the parser.
 * Runs in the caller's transaction; a malformed file is CS_INVALID with
 * bad_line.
 */
cs_status cs_import_iis(cs_db *db, const char *data, size_t len, const char *pin_fp,
                        const char *location, cs_foreign_note_cb note, void *arg,
                        cs_foreign_result *res);

/*
 * Re-running an import. A mapping of a kind and key the store already has,
 * or a rule with the same pin and conditions (subject, issuer, san, eku,
 * policy and their flags) as one the store has, is refused with CS_EXISTS
 * naming it (id and account); with opts->update it is changed in place
 * instead: a mapping's account, pin, window, state and note, a rule's
 * action, account, priority, state and note (ids and creation times stay).
 * Rows a directory sync owns are never changed (CS_INVALID). What one
 * import wrote is not matched again by the same import: two entries of
 * one kind and key are refused, two rules with the same conditions are two
 * rules, as the file has them. opts may be NULL (no update).
 */
cs_status cs_import_iis_ex(cs_db *db, const char *data, size_t len, const char *pin_fp,
                           const char *location, const cs_import_opts *opts,
                           cs_foreign_note_cb note, void *arg, cs_foreign_result *res);

/*
 * Active Directory altSecurityIdentities, one "account<TAB>X509:..." per
 * line. <I>..<SR>.. and <SKI>.. become strong mappings bound to a pin:
 * <I>..<SR>.. to the one pin whose subject is the issuer DN (in AD's
 * reversed order or not; none or several: refused), <SKI>.. to pin_fp
 * (refused without it);
 * <SHA1-PUKEY> is refused (certstore keys are SHA-256: the certificate
 * itself is needed); the weak forms <I>..<S>.., <S>.., <RFC822>.. become
 * rules only with allow_weak (<S> and <RFC822> name no issuer: pin_fp is
 * required for them), otherwise they are refused. <S> becomes an exact
 * subject (subject_exact) in the order of the line's <I>; an empty <S> or
 * <RFC822> is refused.
 */
cs_status cs_import_altsecid(cs_db *db, const char *data, size_t len, const char *pin_fp,
                             int allow_weak, cs_foreign_note_cb note, void *arg,
                             cs_foreign_result *res);
/* cs_import_altsecid, re-runnable as cs_import_iis_ex describes. */
cs_status cs_import_altsecid_ex(cs_db *db, const char *data, size_t len, const char *pin_fp,
                                int allow_weak, const cs_import_opts *opts, cs_foreign_note_cb note,
                                void *arg, cs_foreign_result *res);

/* ---- ownership (sync_owner.c) --------------------------------------------- */

/*
 * Rows made by `certstore sync` carry their source ("sync:<base DN>"); rows
 * made with the CLI carry none. A sync changes only its own rows; the CLI
 * asks here before changing one. Each lookup fills source ("" for a local
 * row) and returns CS_NOTFOUND when there is no such row.
 */
#define CS_SOURCE_MAX 512
cs_status cs_pin_source(cs_db *db, const char *fp, char source[CS_SOURCE_MAX]);
cs_status cs_account_source(cs_db *db, const char *name, char source[CS_SOURCE_MAX]);
cs_status cs_mapping_source(cs_db *db, const cs_mapping_ref *ref, char source[CS_SOURCE_MAX]);
cs_status cs_rule_source(cs_db *db, int64_t id, char source[CS_SOURCE_MAX]);

/* ---- directory sync (sync.c) ----------------------------------------------- */

/*
 * What a directory holds, read in full by the caller (tools/sync_ldap.c):
 * CA certificates to pin, and users with their account name, whether the
 * directory disables them, their altSecurityIdentities-style values and
 * whole certificates. cs_sync_apply makes the rows of one source equal to
 * it, in the caller's transaction, and touches no other row.
 */
typedef struct cs_sync_snapshot cs_sync_snapshot;
cs_sync_snapshot *cs_sync_snapshot_new(void);
void cs_sync_snapshot_free(cs_sync_snapshot *snap);
/* Each returns 1, or 0 when out of memory; values and certs go to the last user added. */
int cs_sync_snapshot_add_pin(cs_sync_snapshot *snap, const unsigned char *der, size_t len);
int cs_sync_snapshot_add_user(cs_sync_snapshot *snap, const char *account, int disabled);
int cs_sync_snapshot_add_value(cs_sync_snapshot *snap, const char *value, size_t len);
int cs_sync_snapshot_add_cert(cs_sync_snapshot *snap, const unsigned char *der, size_t len);
/* Incremental snapshots: a user the directory no longer holds (deleted, or out of the filter). */
int cs_sync_snapshot_add_gone(cs_sync_snapshot *snap, const char *account);
/* Incremental snapshots: the pins' object did not change, the pins stay as they are. */
void cs_sync_snapshot_keep_pins(cs_sync_snapshot *snap);
size_t cs_sync_snapshot_users(const cs_sync_snapshot *snap);

#define CS_SYNC_SERVER_MAX 512
#define CS_SYNC_ID_MAX 64
/*
 * Where the next incremental sync of a source resumes (sync_state). AD:
 * the DC (its dsServiceName and invocationId) and its highestCommittedUSN
 * read when the last successful sync began; usn 0 means none (a full pass).
 */
typedef struct {
    char server[CS_SYNC_SERVER_MAX];
    char invocation_id[CS_SYNC_ID_MAX];
    int64_t usn;
    int64_t pins_usn;                  /* uSNChanged of the pins' object when it was last read */
    int64_t last_full;                 /* Unix time of the last full pass; 0 never */
    char settings[CS_SYNC_SERVER_MAX]; /* how entries were read (another: a full pass) */
} cs_sync_mark;
/* The mark of source; CS_NOTFOUND when it never synced (out zeroed). */
cs_status cs_sync_mark_get(cs_db *db, const char *source, cs_sync_mark *out);

typedef struct {
    const char *source;      /* "sync:<base DN>": the owner written on every row */
    int allow_weak;          /* weak altSecurityIdentities forms become rules */
    int allow_mass_removal;  /* skip the guard below */
    int max_removal_percent; /* refuse removing more of the source's mappings (default 10) */
    /*
     * The snapshot holds only what changed: users not in it stay as they
     * are, gone users go, pins stay when cs_sync_snapshot_keep_pins.
     */
    int incremental;
    const cs_sync_mark *mark; /* recorded on success; NULL clears it (next: full) */
} cs_sync_opts;

typedef struct {
    int64_t pins_added, pins_removed, pins_kept;
    int64_t accounts_added, accounts_removed, accounts_disabled, accounts_enabled;
    int64_t mappings_added, mappings_removed, mappings_kept;
    int64_t rules_added, rules_removed;
    int64_t refused;   /* values not turned into rows (each told to note) */
    int64_t conflicts; /* rows the CLI made that the directory also names: left alone */
} cs_sync_result;

/*
 * Apply a snapshot (inside cs_db_begin). Undecodable certificates, invalid
 * account names, an account named twice or a malformed value are
 * CS_INVALID; so is a change that removes more than max_removal_percent of
 * the source's mappings or every one of its pins (a wrong base DN, lost
 * read rights), unless allow_mass_removal. On any failure the caller rolls
 * back. Records the time of the sync (cs_sync_last_success).
 */
cs_status cs_sync_apply(cs_db *db, const cs_sync_snapshot *snap, const cs_sync_opts *opts,
                        cs_foreign_note_cb note, void *arg, cs_sync_result *res);
/* 1 when the sync added, removed, enabled or disabled a row. */
int cs_sync_changed(const cs_sync_result *r);
/* When source last synced successfully (Unix seconds); CS_NOTFOUND if never. */
cs_status cs_sync_last_success(cs_db *db, const char *source, int64_t *when);

/* ---- stats and change log ------------------------------------------------ */

typedef struct {
    int64_t pins, pins_enabled;
    int64_t accounts, accounts_enabled;
    int64_t mappings, mappings_enabled;
    int64_t by_kind[CS_KIND_COUNT];
    int64_t unbound; /* ski/issuer-serial mappings bound to no pin: they never match */
    int64_t generation;
    int schema_version;
} cs_stats;
cs_status cs_stats_get(cs_db *db, cs_stats *out);

typedef struct {
    int64_t id;
    int64_t time;
    const char *user;
    const char *command;
    const char *detail;
} cs_change;
typedef int (*cs_change_cb)(const cs_change *c, void *arg);
cs_status cs_change_foreach(cs_db *db, int64_t since, cs_change_cb cb, void *arg);

/* ---- revocation (crl.c) --------------------------------------------------- */

/*
 * Each pin's revocation policy. DEFAULT (never set) is SOFT once the pin has
 * a CRL and OFF before. SOFT enforces the CRL while it is current or within
 * the grace after its nextUpdate; past that it accepts (state STALE, logged,
 * and `doctor`/`expiring` fail). HARD rejects revocation-unknown when no CRL
 * is current within the grace. A listed serial is rejected (revoked) under
 * SOFT and HARD whatever the CRL's age.
 */
typedef enum {
    CS_REVOCATION_DEFAULT = -1,
    CS_REVOCATION_OFF = 0,
    CS_REVOCATION_SOFT = 1,
    CS_REVOCATION_HARD = 2
} cs_revocation_policy;
#define CS_REVOCATION_GRACE_DEFAULT (7 * 86400)

const char *cs_revocation_policy_name(cs_revocation_policy policy); /* "default", "off", ... */
int cs_revocation_policy_parse(const char *name, cs_revocation_policy *out);

typedef enum {
    CS_REVSTATE_NONE = 0, /* not reached, or default policy and no CRL: nothing to check */
    CS_REVSTATE_OFF,      /* the pin's policy is off */
    CS_REVSTATE_GOOD,     /* current CRL, serial not on it */
    CS_REVSTATE_GRACE,    /* past nextUpdate, within the grace, serial not on it */
    CS_REVSTATE_STALE,    /* soft: past the grace; accepted */
    CS_REVSTATE_MISSING,  /* soft set explicitly, no CRL; accepted */
    CS_REVSTATE_REVOKED,  /* on the CRL: rejected */
    CS_REVSTATE_UNKNOWN,  /* hard: no current CRL within the grace; rejected */
    CS_REVSTATE_COUNT
} cs_revocation_state;

/* "none", "off", "good", "grace", "stale", "missing", "revoked", "unknown". */
const char *cs_revocation_state_name(cs_revocation_state state);
/* States an operator must act on (stale, missing, unknown): doctor and expiring fail. */
int cs_revocation_state_alarming(cs_revocation_state state);

/* Set a pin's policy; grace CS_TIME_NONE keeps the default (7 days). */
cs_status cs_pin_set_revocation(cs_db *db, const char *fp, cs_revocation_policy policy,
                                int64_t grace);

typedef struct {
    char pin_fp[CS_FP_HEX_LEN + 1];
    int unchanged;         /* the very CRL already stored: nothing written */
    int64_t entries;       /* serials on the CRL */
    int64_t newly_revoked; /* on it and not on the one it replaces */
    int64_t unrevoked;     /* on the one it replaces, not on it */
    int generation_bumped; /* a decision may have become stricter */
} cs_crl_add_result;

/*
 * Store a full CRL for the pinned CA that issued it: its issuer name is the
 * pin's subject, its signature verifies with the pin's key (and the pin's
 * keyUsage, if any, allows cRLSign). pin_fp NULL: the one pin that does;
 * several (a CA renewed with the same name and key) need pin_fp. Refused
 * (CS_INVALID, one line): delta CRLs, indirect CRLs or ones scoped to CA,
 * attribute certificates or some reasons, unknown critical extensions, a
 * thisUpdate more than 5 minutes ahead of now, a CRL not newer than the
 * stored one (CRL number when both have one, else thisUpdate). The very
 * same CRL again is CS_OK with res->unchanged. url (may be NULL) is kept as
 * its source. The generation is bumped only when a serial is newly revoked
 * or the nextUpdate moves earlier: an unchanged refresh does not make
 * sessions decide again.
 */
cs_status cs_crl_add(cs_db *db, X509_CRL *crl, const char *pin_fp, const char *url, int64_t now,
                     cs_crl_add_result *res);
/*
 * Record a fetch of a pin's CRL (its row must exist: CS_NOTFOUND otherwise):
 * the URL (NULL keeps the one stored), when, the result text, and, when
 * set_validators, the response's ETag and Last-Modified (NULL: none) for the
 * next conditional GET. Changes no decision, so it bumps nothing.
 */
cs_status cs_crl_note_fetch(cs_db *db, const char *pin_fp, const char *url, int64_t when,
                            const char *result, int set_validators, const char *etag,
                            const char *last_modified);
/* Remove a pin's CRL (pin fingerprint); CS_NOTFOUND if it has none. */
cs_status cs_crl_remove(cs_db *db, const char *pin_fp);

typedef struct {
    char pin_fp[CS_FP_HEX_LEN + 1];
    const char *subject; /* the pin's, which is the CRL's issuer */
    int pin_enabled;
    cs_revocation_policy policy;
    int64_t grace; /* effective, seconds */
    int have_crl;
    char crl_fp[CS_FP_HEX_LEN + 1];   /* SHA-256 of the CRL's DER; "" without */
    const char *number;               /* hex, NULL when the CRL has none */
    int64_t this_update, next_update; /* next_update CS_TIME_NONE when absent */
    int64_t entries, updated;
    const char *url; /* source, NULL when added from a file */
    int64_t fetched; /* CS_TIME_NONE: never fetched */
    const char *fetch_result;
    const char *etag, *last_modified; /* validators of the last fetch, NULL if none */
    cs_revocation_state state;        /* at `now`, for a serial not on the CRL */
} cs_crl_info;
typedef int (*cs_crl_cb)(const cs_crl_info *info, void *arg);
/* Pins that have a CRL or a policy set, in pin order; state judged at now. */
cs_status cs_crl_foreach(cs_db *db, int64_t now, cs_crl_cb cb, void *arg);

/* ---- the policy ---------------------------------------------------------- */

typedef enum {
    CS_REASON_NONE = 0, /* accepted */
    CS_REASON_CHAIN_INVALID,
    CS_REASON_ISSUER_NOT_PINNED,
    CS_REASON_PIN_DISABLED,
    CS_REASON_NO_MAPPING,
    CS_REASON_MAPPING_DISABLED,
    CS_REASON_MAPPING_NOT_YET_VALID,
    CS_REASON_MAPPING_EXPIRED,
    CS_REASON_ACCOUNT_DISABLED,
    CS_REASON_STORE_UNAVAILABLE,
    CS_REASON_DENIED_BY_RULE,        /* a deny rule matched first */
    CS_REASON_WEAK_MAPPING_REFUSED,  /* accepted by a rule, but require_strong */
    CS_REASON_ISSUED_BEFORE_MAPPING, /* notBefore earlier than the mapping/rule */
    CS_REASON_REVOKED,               /* the leaf's serial is on its pin's CRL */
    CS_REASON_REVOCATION_UNKNOWN,    /* policy hard, and no current CRL */
    CS_REASON_COUNT
} cs_reason;

/* The interface tokens: "chain-invalid", "issuer-not-pinned", ... */
const char *cs_reason_token(cs_reason reason);

typedef struct {
    int accept;
    cs_reason reason;
    char account[CS_ACCOUNT_MAX + 1]; /* "" unless accepted */
    int64_t mapping_id;               /* 0 if none matched */
    cs_kind kind;                     /* of the matching mapping */
    int64_t generation;               /* policy generation the decision saw */
    /*
     * Until when this acceptance holds by time alone: the earliest of the
     * mapping's not_after and the leaf's and issuer's notAfter.
     */
    int64_t valid_until;
    char leaf_fp[CS_FP_HEX_LEN + 1];
    char issuer_fp[CS_FP_HEX_LEN + 1]; /* "" for a chain of length 1 */
    char detail[160];                  /* store error text when store-unavailable */
    int64_t rule_id;                   /* the rule that decided, 0 if none (then mapping_id says) */
    int weak;                          /* decided by a weak way in (a rule, KB5014754) */
    cs_revocation_state revocation;    /* what the revocation step found (once a pin was) */
} cs_decision;

/*
 * Decide a chain OpenSSL has verified (leaf first, as
 * X509_STORE_CTX_get0_chain returns it) at time `now`. db may be NULL
 * (store unavailable). Reads one consistent snapshot; allocates nothing on
 * the heap beyond SQLite's own caches. Always fills *out; never accepts on
 * an error. Returns out->accept.
 */
int cs_decide(cs_db *db, STACK_OF(X509) * chain, int64_t now, cs_decision *out);

/* Options of a server's policy (the provider's openssl.cnf section). */
typedef struct {
    /*
     * Accept only through strong ways in (cert, issuer-serial, ski, spki;
     * Microsoft KB5014754): an acceptance by a rule becomes
     * weak-mapping-refused.
     */
    int require_strong;
    /*
     * Optional: the SHA-256 fingerprints (lowercase hex) of chain[0] and
     * chain[1], when the caller has already computed them; NULL: computed.
     */
    const char *leaf_fp;
    const char *issuer_fp;
} cs_policy_opts;

/* cs_decide with options; opts NULL means the defaults (cs_decide). */
int cs_decide_ex(cs_db *db, STACK_OF(X509) * chain, int64_t now, const cs_policy_opts *opts,
                 cs_decision *out);

/*
 * The mapping step of the policy (the one-to-one mappings, in cs_decide's
 * order) for a certificate known only by its keys, as a server map that
 * has no certificate needs it: keys[kind].len == 0 where a key is not
 * known. issuer_fp (NULL: unknown) is the pin that issued it, checked as
 * cs_decide checks it; a mapping bound to a pin applies only when that is
 * the issuer. What needs the certificate itself fails closed: a mapping
 * with the backdating check rejects (issued-before-mapping) and, when no
 * mapping decides, the rules are not tried (no-mapping). valid_until and
 * leaf_fp are not filled.
 */
int cs_decide_keys(cs_db *db, const cs_key keys[CS_KIND_COUNT], const char *issuer_fp, int64_t now,
                   cs_decision *out);

/*
 * Why a decision is what it is (certstore check --explain): after deciding
 * exactly as cs_decide_ex does, every step that was or would have been
 * considered is told to cb, in evaluation order: the issuing pin, then each
 * mapping kind (one step per kind, id 0 when the leaf has no mapping of that
 * kind), then each enabled rule of the issuing pin. Steps after the one that
 * decided say what they would have decided on their own. Reads only; strings
 * are valid during the callback.
 */
typedef enum { CS_EXPLAIN_PIN = 0, CS_EXPLAIN_MAPPING, CS_EXPLAIN_RULE } cs_explain_what;
typedef struct {
    cs_explain_what what;
    int64_t id;   /* mapping or rule id; 0: no mapping of this kind, or no pin */
    cs_kind kind; /* CS_EXPLAIN_MAPPING */
    int applies;  /* a mapping that applies to this issuer; a rule whose conditions match */
    int decided;  /* this step made the decision */
    int accept;   /* what it decides (or would), when it applies */
    cs_reason reason;
    const char *account;      /* "" when none */
    const char *why;          /* plain words, never NULL */
    const cs_rule_spec *rule; /* CS_EXPLAIN_RULE: its conditions */
} cs_explain_step;
typedef void (*cs_explain_cb)(const cs_explain_step *step, void *arg);
int cs_decide_explain(cs_db *db, STACK_OF(X509) * chain, int64_t now, const cs_policy_opts *opts,
                      cs_decision *out, cs_explain_cb cb, void *arg);

/* Strong (1) or weak (0) way in, per KB5014754: every mapping kind is strong. */
int cs_kind_is_strong(cs_kind kind);

#ifdef __cplusplus
}
#endif
#endif /* CS_STORE_H */
