/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal interface of the certstore admin CLI.
 *
 * The CLI only parses arguments, reads certificate files, calls libcertstore
 * and prints. Every message about a failure is one line on stderr that
 * starts with "certstore: <command>: ".
 */
#ifndef CLI_H
#define CLI_H

#include <stdint.h>
#include <stdio.h>

#include <openssl/x509.h>

#include "cs_store.h"

/* Exit statuses: the interface scripts rely on. */
enum {
    CLI_OK = 0,       /* success; for check: accepted */
    CLI_FAIL = 1,     /* failure; for check: rejected */
    CLI_USAGE = 2,    /* unknown command or option, missing argument */
    CLI_CONTINUE = -1 /* internal: option parsing went fine, go on */
};

/* Certificate files larger than this are refused before parsing. */
#define CLI_FILE_LIMIT (1024 * 1024)
#define CLI_FILE_LIMIT_TEXT "1 MiB"

typedef struct {
    const char *db_path;
    const char *name;         /* "map add": prefixes every message */
    const char *usage;        /* of the command being run, for --help */
    const char *command_line; /* as typed, for the change log */
    int allow_unsafe_dir;     /* --allow-unsafe-dir or $CERTSTORE_ALLOW_UNSAFE_DIR */
    int wait_ms;              /* --wait SECONDS, else $CERTSTORE_WAIT; -1: the default */
} cli_ctx;

typedef struct {
    const char *name;    /* "pin", or "add" inside a group */
    const char *summary; /* one line for the overview */
    int (*run)(cli_ctx *ctx, int argc, char **argv);
    const char *usage; /* full help text */
} cli_command;

/* Command groups, one per tools/cmd_<group>.c. */
extern const cli_command cli_cmd_init;
extern const cli_command cli_cmd_pin;
extern const cli_command cli_cmd_account;
extern const cli_command cli_cmd_map;
extern const cli_command cli_cmd_check;
extern const cli_command cli_cmd_import;
extern const cli_command cli_cmd_export;
extern const cli_command cli_cmd_log;
extern const cli_command cli_cmd_stats;

/*
 * The subcommands of the groups (ended by a NULL name): cli_dispatch runs
 * them, `certstore --commands` lists them, and the man page is made from
 * that list and their --help.
 */
extern const cli_command cli_pin_subcommands[];
extern const cli_command cli_account_subcommands[];
extern const cli_command cli_map_subcommands[];
extern const cli_command cli_rule_subcommands[];
extern const cli_command cli_crl_subcommands[];
extern const cli_command cli_ocsp_subcommands[];

/* ---- messages (cli_util.c) ----------------------------------------------- */

/* "certstore: <cmd>: <msg>" on stderr; returns CLI_FAIL. */
int cli_fail(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same plus "Try 'certstore <cmd> --help'."; returns CLI_USAGE. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "certstore: <cmd>: warning: <msg>" on stderr. */
void cli_warn(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- options (cli_options.c) --------------------------------------------- */

typedef struct {
    const char *name;   /* long name without the dashes */
    const char **value; /* set for options taking a value, else NULL */
    int *flag;          /* set to 1 for flags, else NULL */
} cli_option;

#define CLI_OPTIONS_END                                                                            \
    {                                                                                              \
        NULL, NULL, NULL                                                                           \
    }

#define CLI_MAX_POSITIONAL 8

typedef struct {
    int count;
    char *args[CLI_MAX_POSITIONAL];
} cli_positional;

/*
 * Parse argv[1..] (argv[0] is the command name) against opts, which ends
 * with a {NULL} entry. --help prints ctx->usage and returns CLI_OK; --db and
 * --allow-unsafe-dir are accepted everywhere. Returns CLI_CONTINUE, CLI_OK (help shown) or
 * CLI_USAGE (message printed).
 */
int cli_parse(cli_ctx *ctx, const cli_option *opts, int argc, char **argv, cli_positional *pos);
/* Requires between min and max positional arguments; names the first missing one. */
int cli_expect_args(const cli_ctx *ctx, const cli_positional *pos, int min, int max,
                    const char *missing_name);
/*
 * Dispatch a command group: argv[0] is the group, argv[1] the subcommand.
 * Sets ctx->name to "<group> <sub>" for the subcommand's messages.
 */
int cli_dispatch(cli_ctx *ctx, const cli_command *group, const cli_command *subs, int argc,
                 char **argv);

/* Parse a time option (YYYY-MM-DD or RFC 3339); prints a usage error on failure. */
int cli_parse_time_option(const cli_ctx *ctx, const char *option, const char *text, int64_t *out);

/* ---- certificate files (cli_certs.c) ------------------------------------- */

/*
 * Read PEM (any number of certificates) or DER (one certificate), detected
 * by content. On failure prints one line naming the file and why, and
 * returns NULL. The OpenSSL error queue is left empty.
 */
STACK_OF(X509) * cli_read_certs(const cli_ctx *ctx, const char *path);
/* Exactly one certificate; NULL (message printed) otherwise. */
X509 *cli_read_one_cert(const cli_ctx *ctx, const char *path);

/* One-line RFC 2253 subject, caller frees with OPENSSL_free; NULL on failure. */
char *cli_subject_text(const X509 *cert);

/*
 * "rm", "disable" and "enable" of a group share one handler, which reads
 * the change from the subcommand's name (argv[0]).
 */
typedef enum { CLI_REMOVE, CLI_DISABLE, CLI_ENABLE } cli_change;
cli_change cli_change_named(const char *subcommand);
/* "removed", "disabled" or "enabled". */
const char *cli_change_done(cli_change change);

/* ---- database (cli_db.c) ------------------------------------------------- */

/* Open for reading; message printed and NULL on failure. */
cs_db *cli_open_read(const cli_ctx *ctx);
/*
 * Create (if missing) and open writable, for init; NULL (message printed)
 * on failure, also when the directory is unsafe (cs_db_check_dir) and
 * --allow-unsafe-dir was not given.
 */
cs_db *cli_open_create(const cli_ctx *ctx);
/* Open writable and begin the command's transaction; NULL on failure. */
cs_db *cli_begin_write(const cli_ctx *ctx);
/* cli_begin_write for cs_import alone (cs_db_begin_import). */
cs_db *cli_begin_import(const cli_ctx *ctx);
/*
 * Finish a write: commit when status is CS_OK, else roll back. Closes db.
 * Returns CLI_OK or CLI_FAIL (commit failure printed here; the caller has
 * printed why status is not CS_OK).
 */
int cli_end_write(const cli_ctx *ctx, cs_db *db, cs_status status);
/*
 * Ownership (cli_owner.c): lookup is what cs_*_source returned for the row
 * about to change. CS_OK when the CLI may change it (local, not found, or
 * force, with a warning); else the failure is printed and returned.
 */
cs_status cli_owner_check(const cli_ctx *ctx, cs_db *db, cs_status lookup,
                          const char source[CS_SOURCE_MAX], int force);
/* Print a store failure: "certstore: <cmd>: <cs_db_errmsg>"; returns CLI_FAIL. */
int cli_store_fail(const cli_ctx *ctx, const cs_db *db);
/* Warn once when the database file or its directory is group/other-writable. */
void cli_warn_permissions(const cli_ctx *ctx);

/* ---- output of untrusted strings (cli_print.c) --------------------------- */

/*
 * Text output: valid printable UTF-8 as is; control characters, backslash
 * and invalid UTF-8 as \xNN, so data never breaks or forges lines.
 */
void cli_put_text(FILE *out, const char *s);
/* A JSON string literal with quotes; invalid UTF-8 becomes U+FFFD. NULL prints null. */
void cli_put_json_string(FILE *out, const char *s);
/* A JSON time: RFC 3339 string, or null for CS_TIME_NONE. */
void cli_put_json_time(FILE *out, int64_t t);
/* Text time: RFC 3339, or "-" for CS_TIME_NONE. */
void cli_put_text_time(FILE *out, int64_t t);
/* Lowercase hex of bytes. */
void cli_put_hex(FILE *out, const unsigned char *bytes, size_t len);

/* JSON array of listing rows: "[" then rows separated by ",\n", then "]". */
typedef struct {
    FILE *out;
    int rows;
} cli_json_list;
void cli_json_list_begin(cli_json_list *list, FILE *out);
/* Starts the next row (writes the separator); the caller writes one object. */
void cli_json_list_row(cli_json_list *list);
void cli_json_list_end(cli_json_list *list);

/*
 * An `ls` command (cli_db.c): its options (--json among them, pointing at
 * json), no arguments, the store opened for reading, and list() writing the
 * rows. The JSON array is closed only when list() read everything: a store
 * failure part-way prints the rows so far and the error, never a listing
 * that looks complete. CS_NOTFOUND prints not_found (when not NULL).
 */
typedef struct {
    int json;           /* --json */
    cli_json_list list; /* the array rows go to, with json */
} cli_listing;
/* Starts a row; nonzero when it is a JSON one (the separator is written). */
int cli_listing_row(cli_listing *l);
typedef cs_status (*cli_list_fn)(cs_db *db, cli_listing *l, void *arg);
int cli_run_listing(cli_ctx *ctx, const cli_option *opts, int argc, char **argv, cli_listing *l,
                    cli_list_fn list, void *arg, const char *not_found);

/*
 * --wait SECONDS (cli_db.c): how long a command waits for another writer's
 * lock (0 to 3600, fractions allowed). CLI_CONTINUE with ctx->wait_ms set,
 * else a usage error naming `what` (the option, or CERTSTORE_WAIT).
 */
#define CLI_WAIT_DEFAULT_MS 2000
#define CLI_WAIT_MAX_SECONDS 3600
int cli_wait_option(cli_ctx *ctx, const char *what, const char *value);
/* The same check alone: 1 with *ms set, 0 if value is not such a number. */
int cli_wait_parse(const char *value, int *ms);

/*
 * A pin fingerprint from the command line (cli_ref.c): whole, or a unique
 * prefix of a pinned CA's (at least CS_PREFIX_MIN hex digits; an ambiguous
 * one is refused listing the candidates). `what` names the option or
 * argument in messages. CLI_CONTINUE with fp set, else the exit status.
 */
int cli_pin_fp(const cli_ctx *ctx, const char *what, const char *text, char fp[CS_FP_HEX_LEN + 1]);

#endif /* CLI_H */
