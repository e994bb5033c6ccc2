/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore import: bulk mappings from CSV or JSON lines, all or nothing in
 * one transaction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/*
 * Only a person watching a terminal wants progress; logs and pipes do not.
 * Rows done, the rate, and for a regular file how far through it the
 * import is and about how long is left (the file's bytes are the total a
 * stream can know in advance).
 */
typedef struct {
    FILE *in;
    off_t total; /* bytes of a regular file, 0 when unknown (a pipe) */
    struct timespec start;
} import_progress;

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void show_progress(int64_t rows, void *arg)
{
    const import_progress *p = arg;
    double secs = seconds_since(&p->start);
    off_t done = p->total > 0 ? ftello(p->in) : -1;

    fprintf(stderr, "\rcertstore: import: %lld rows", (long long)rows);
    if (secs > 0)
        fprintf(stderr, ", %.0f rows/s", (double)rows / secs);
    if (done > 0 && p->total > 0) {
        fprintf(stderr, ", %lld/%lld bytes (%d%%)", (long long)done, (long long)p->total,
                (int)(100.0 * (double)done / (double)p->total));
        if (done < p->total)
            fprintf(stderr, ", about %.0f s left", secs * (double)(p->total - done) / (double)done);
    }
    fputs("\033[K", stderr);
    fflush(stderr);
}

static int parse_format(const cli_ctx *ctx, const char *text, cs_import_format *fmt)
{
    if (text == NULL)
        *fmt = CS_IMPORT_AUTO;
    else if (strcmp(text, "csv") == 0)
        *fmt = CS_IMPORT_CSV;
    else if (strcmp(text, "jsonl") == 0 || strcmp(text, "json") == 0)
        *fmt = CS_IMPORT_JSONL;
    else
        return cli_usage_error(ctx, "--format: '%s' is not csv or jsonl", text);
    return CLI_CONTINUE;
}

/*
 * The store's message quotes the offending input, which comes from a file
 * someone else may have written: show it escaped like any untrusted text.
 * Caller frees; NULL when out of memory.
 */
static char *escaped_store_message(const cs_db *db)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return NULL;
    cli_put_text(out, cs_db_errmsg(db));
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static cs_status import_stream(const cli_ctx *ctx, cs_db *db, FILE *in, const char *name,
                               cs_import_format fmt, const char *pin_fp, int update,
                               cs_import_result *res)
{
    int tty = isatty(STDERR_FILENO);
    import_progress progress = {.in = in, .total = 0};
    struct stat st_in;
    if (fstat(fileno(in), &st_in) == 0 && S_ISREG(st_in.st_mode))
        progress.total = st_in.st_size;
    clock_gettime(CLOCK_MONOTONIC, &progress.start);
    cs_import_opts opts = {.update = update};
    cs_status st =
        cs_import_ex(db, in, fmt, pin_fp, &opts, res, tty ? show_progress : NULL, &progress);
    if (tty)
        fputs("\r\033[K", stderr);
    if (st == CS_OK && ferror(in)) {
        cli_fail(ctx, "%s: read error", name);
        return CS_ERR;
    }
    if (st == CS_OK)
        return st;
    char *why = escaped_store_message(db);
    /* The store's message names the line itself ("line N: ..."); say it once. */
    if (res->bad_line > 0 && strncmp(cs_db_errmsg(db), "line ", 5) != 0)
        cli_fail(ctx, "%s: line %lld: %s; nothing imported", name, (long long)res->bad_line,
                 why != NULL ? why : "out of memory");
    else
        cli_fail(ctx, "%s: %s; nothing imported", name, why != NULL ? why : "out of memory");
    free(why);
    return st;
}

static int warn_unpinned(const char *pin_fp, int64_t mappings, void *arg)
{
    cli_warn(arg,
             "%lld mappings are bound to %s, which is not pinned: they apply to nothing "
             "until it is ('certstore pin add' its certificate)",
             (long long)mappings, pin_fp);
    return 0;
}

/* What an import may do beyond adding mappings to existing accounts. */
typedef struct {
    int update;          /* --update: replace mappings of the same kind and key */
    int create_accounts; /* --create-accounts: the accounts it names may be new */
    int allow_partial;   /* --allow-partial: iis/altsecid may leave entries out */
} import_permits;

/* The highest account id before the import: any above it, the import created. */
typedef struct {
    int64_t max_id;
    int listed;
    const cli_ctx *ctx;
} new_accounts;

static int note_max_account(const cs_account *a, void *arg)
{
    new_accounts *n = arg;
    if (a->id > n->max_id)
        n->max_id = a->id;
    return 0;
}

#define NEW_ACCOUNTS_SHOWN 20

static int list_new_account(const cs_account *a, void *arg)
{
    new_accounts *n = arg;
    if (a->id <= n->max_id)
        return 0;
    if (n->listed++ < NEW_ACCOUNTS_SHOWN) {
        fputs("  ", stderr);
        cli_put_text(stderr, a->name);
        fputc('\n', stderr);
    }
    return 0;
}

static cs_status remember_accounts(const cli_ctx *ctx, cs_db *db, new_accounts *n)
{
    memset(n, 0, sizeof(*n));
    n->ctx = ctx;
    cs_status st = cs_account_foreach(db, note_max_account, n);
    if (st != CS_OK)
        cli_store_fail(ctx, db);
    return st;
}

/*
 * An import that would create accounts, without --create-accounts: refused
 * (the caller rolls back), every new name listed, so a typo in an account
 * name cannot pass unseen.
 */
static cs_status refuse_new_accounts(const cli_ctx *ctx, cs_db *db, const char *name,
                                     int64_t created, new_accounts *n)
{
    cli_fail(ctx,
             "%s: would create %lld accounts that do not exist; nothing imported (check the "
             "names, or allow it with --create-accounts):",
             name, (long long)created);
    cs_status st = cs_account_foreach(db, list_new_account, n);
    if (n->listed > NEW_ACCOUNTS_SHOWN)
        fprintf(stderr, "  ... and %d more\n", n->listed - NEW_ACCOUNTS_SHOWN);
    return st == CS_OK ? CS_INVALID : st;
}

/* ---- from Windows: IIS configuration, AD altSecurityIdentities ------------ */

#define FOREIGN_FILE_LIMIT (64 * 1024 * 1024)

static void show_refused(int64_t line, const char *why, void *arg)
{
    const cli_ctx *ctx = arg;
    char text[600];

    snprintf(text, sizeof(text), "line %lld: not imported: %s", (long long)line, why);
    cli_warn(ctx, "%s", text);
}

static char *read_all(const cli_ctx *ctx, FILE *in, const char *name, size_t *len)
{
    size_t cap = 65536, used = 0, n;
    char *buf = malloc(cap);

    while (buf != NULL && (n = fread(buf + used, 1, cap - used, in)) > 0) {
        used += n;
        if (used == cap) {
            char *bigger = cap >= FOREIGN_FILE_LIMIT ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                cli_fail(ctx, "%s: larger than 64 MiB or out of memory", name);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf == NULL || ferror(in)) {
        free(buf);
        cli_fail(ctx, "%s: read error", name);
        return NULL;
    }
    *len = used;
    return buf;
}

static int import_foreign(cli_ctx *ctx, FILE *in, const char *name, int iis, const char *pin,
                          const char *location, int allow_weak, const import_permits *permits)
{
    new_accounts known;
    char pin_fp[CS_FP_HEX_LEN + 1];
    cs_foreign_result res;
    size_t len = 0;
    char *data;
    cs_status st;

    int rc;
    if (pin != NULL && (rc = cli_pin_fp(ctx, "--pin", pin, pin_fp)) != CLI_CONTINUE)
        return rc;
    if ((data = read_all(ctx, in, name, &len)) == NULL)
        return CLI_FAIL;
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        free(data);
        return CLI_FAIL;
    }
    memset(&res, 0, sizeof(res));
    cs_import_opts opts = {.update = permits->update};
    st = remember_accounts(ctx, db, &known);
    if (st == CS_OK)
        st = iis ? cs_import_iis_ex(db, data, len, pin ? pin_fp : NULL, location, &opts,
                                    show_refused, ctx, &res)
                 : cs_import_altsecid_ex(db, data, len, pin ? pin_fp : NULL, allow_weak, &opts,
                                         show_refused, ctx, &res);
    free(data);
    /* Already there: --update is how a re-run changes it. */
    const char *hint = st == CS_EXISTS ? " (--update updates it)" : "";
    if (st != CS_OK && res.bad_line > 0)
        cli_fail(ctx, "%s: line %lld: %s; nothing imported%s", name, (long long)res.bad_line,
                 cs_db_errmsg(db), hint);
    else if (st != CS_OK)
        cli_fail(ctx, "%s: %s; nothing imported%s", name, cs_db_errmsg(db), hint);
    if (st == CS_OK && res.refused > 0 && !permits->allow_partial) {
        cli_fail(ctx,
                 "%s: %lld entries could not be imported (listed above); nothing imported "
                 "(--allow-partial imports the rest)",
                 name, (long long)res.refused);
        st = CS_INVALID;
    }
    if (st == CS_OK && res.accounts_created > 0 && !permits->create_accounts)
        st = refuse_new_accounts(ctx, db, name, res.accounts_created, &known);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK && permits->update)
        printf("imported %lld mappings (%lld new, %lld updated) and %lld rules (%lld new, %lld "
               "updated); %lld accounts created, %lld entries not imported\n",
               (long long)res.mappings, (long long)(res.mappings - res.mappings_updated),
               (long long)res.mappings_updated, (long long)res.rules,
               (long long)(res.rules - res.rules_updated), (long long)res.rules_updated,
               (long long)res.accounts_created, (long long)res.refused);
    else if (rc == CLI_OK)
        printf("imported %lld mappings and %lld rules (%lld accounts created, %lld entries "
               "not imported)\n",
               (long long)res.mappings, (long long)res.rules, (long long)res.accounts_created,
               (long long)res.refused);
    return rc;
}

static int run_import(cli_ctx *ctx, int argc, char **argv)
{
    const char *format = NULL, *pin = NULL, *location = NULL;
    int allow_weak = 0;
    import_permits permits = {0};
    const cli_option opts[] = {{"format", &format, NULL},
                               {"pin", &pin, NULL},
                               {"location", &location, NULL},
                               {"allow-weak", NULL, &allow_weak},
                               {"update", NULL, &permits.update},
                               {"create-accounts", NULL, &permits.create_accounts},
                               {"allow-partial", NULL, &permits.allow_partial},
                               CLI_OPTIONS_END};
    cli_positional pos;
    cs_import_format fmt = CS_IMPORT_AUTO;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    int iis = format != NULL && strcmp(format, "iis") == 0;
    int altsecid = format != NULL && strcmp(format, "altsecid") == 0;
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "FILE")) != CLI_CONTINUE ||
        (!iis && !altsecid && (rc = parse_format(ctx, format, &fmt)) != CLI_CONTINUE))
        return rc;
    if (!altsecid && allow_weak)
        return cli_usage_error(ctx, "--allow-weak is for --format altsecid");
    if (!iis && location != NULL)
        return cli_usage_error(ctx, "--location is for --format iis");
    if (!iis && !altsecid && permits.allow_partial)
        return cli_usage_error(ctx, "--allow-partial is for --format iis and altsecid (a csv or "
                                    "jsonl import is always whole)");
    char pin_fp[CS_FP_HEX_LEN + 1];
    if (pin != NULL && (rc = cli_pin_fp(ctx, "--pin", pin, pin_fp)) != CLI_CONTINUE)
        return rc;

    const char *path = pos.args[0];
    int from_stdin = strcmp(path, "-") == 0;
    FILE *in = from_stdin ? stdin : fopen(path, "r");
    if (in == NULL)
        return cli_fail(ctx, "%s: %s", path, strerror(errno));
    struct stat st_in;
    if (!from_stdin && fstat(fileno(in), &st_in) == 0 && S_ISDIR(st_in.st_mode)) {
        fclose(in);
        return cli_fail(ctx, "%s is a directory, not a file to import", path);
    }
    if (iis || altsecid) {
        rc = import_foreign(ctx, in, from_stdin ? "stdin" : path, iis, pin, location, allow_weak,
                            &permits);
        if (!from_stdin)
            fclose(in);
        return rc;
    }
    cs_db *db = cli_begin_import(ctx);
    if (db == NULL) {
        if (!from_stdin)
            fclose(in);
        return CLI_FAIL;
    }
    cs_import_result res;
    new_accounts known;
    memset(&res, 0, sizeof(res));
    const char *name = from_stdin ? "stdin" : path;
    cs_status st = remember_accounts(ctx, db, &known);
    if (st == CS_OK)
        st = import_stream(ctx, db, in, name, fmt, pin ? pin_fp : NULL, permits.update, &res);
    if (!from_stdin)
        fclose(in);
    if (st == CS_OK && res.accounts_created > 0 && !permits.create_accounts)
        st = refuse_new_accounts(ctx, db, name, res.accounts_created, &known);
    /* Said before the commit, from the transaction's own view. */
    if (st == CS_OK && (st = cs_mapping_foreach_unpinned(db, warn_unpinned, ctx)) != CS_OK)
        cli_store_fail(ctx, db);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK && permits.update)
        printf("imported %lld mappings (%lld new, %lld updated; %lld accounts created)\n",
               (long long)res.rows, (long long)(res.rows - res.updated), (long long)res.updated,
               (long long)res.accounts_created);
    else if (rc == CLI_OK)
        printf("imported %lld mappings (%lld accounts created)\n", (long long)res.rows,
               (long long)res.accounts_created);
    return rc;
}

const cli_command cli_cmd_import = {
    "import",
    "import mappings from CSV or JSON lines (all or nothing)",
    run_import,
    "Usage: certstore import FILE|- [--format csv|jsonl] [--pin FP] [--update]\n"
    "                        [--create-accounts]\n"
    "       certstore import FILE|- --format iis [--pin FP] [--location PATH]\n"
    "                        [--update] [--create-accounts] [--allow-partial]\n"
    "       certstore import FILE|- --format altsecid [--pin FP] [--allow-weak]\n"
    "                        [--update] [--create-accounts] [--allow-partial]\n"
    "\n"
    "Import mappings in one transaction: either every line is imported or\n"
    "nothing is, and the first bad line is reported by number. An import\n"
    "that names accounts that do not exist is refused, listing them (a typo\n"
    "must not create an account), unless --create-accounts. A row whose kind\n"
    "and key a mapping already has is refused unless --update, which makes\n"
    "re-running an import safe. '-' reads standard input.\n"
    "\n"
    "CSV has a header line with the columns kind,key,account and optionally\n"
    "not_before,not_after,note,pin,enabled,account_enabled,not_issued_before,\n"
    "created (and id, ignored), in any order; JSON lines are objects with the\n"
    "same names. 'certstore export --format csv|json' writes these formats.\n"
    "enabled and account_enabled are true or false (default true; an existing\n"
    "account must already be in the state given, an import never changes\n"
    "one); not_issued_before is 'created' or empty; created (default now) is\n"
    "the time that check compares a certificate's notBefore with.\n"
    "\n"
    "On a terminal, standard error shows the rows done, the rate and, for a\n"
    "file, the bytes read of its size and about how long is left.\n"
    "\n"
    "pin binds a mapping to one pinned CA (see 'certstore map add --help'):\n"
    "ski and issuer-serial rows need one, from their pin column or --pin;\n"
    "a file that has such a row without either imports nothing. Mappings\n"
    "bound to a CA that is not pinned are counted in a warning per CA: they\n"
    "apply to nothing until it is pinned.\n"
    "\n"
    "  --format FMT   csv or jsonl (default: detected from the content; a UTF-8\n"
    "                 byte-order mark is read past; a JSON array is refused:\n"
    "                 one object per line), or:\n"
    "    iis          an IIS applicationHost.config or web.config, as IIS\n"
    "                 enforces it at one path: the root's section, then those\n"
    "                 of the <location>s above and at the path, with their\n"
    "                 <add>, <remove> and <clear/>. Each <oneToOneMappings>\n"
    "                 entry becomes a cert mapping, each <manyToOneMappings>\n"
    "                 entry a rule (in order) of the CA given by --pin;\n"
    "                 matchCriteria's '*' is a glob, any other character\n"
    "                 ('?' too) literal. Nothing is imported where the\n"
    "                 section's enabled (default false) or\n"
    "                 oneToOne/manyToOneCertificateMappingsEnabled is false.\n"
    "                 A Deny mapping certstore cannot express refuses the\n"
    "                 file. Passwords are never stored or printed.\n"
    "    altsecid     AD altSecurityIdentities, one ACCOUNT<TAB>X509:... per line:\n"
    "                 <I>..<SR>.. and <SKI>.. become strong mappings, bound to a\n"
    "                 pin: <I>..<SR>.. to the one pinned CA whose subject is\n"
    "                 <I> (refused when none or several are), <SKI>.. to --pin\n"
    "                 (refused without it); <SHA1-PUKEY> is refused (map the\n"
    "                 certificate instead); the weak <I>..<S>.., <S>.. and\n"
    "                 <RFC822>.. are listed and refused unless --allow-weak makes\n"
    "                 them rules (<S> and <RFC822> need --pin). <S> becomes an\n"
    "                 exact subject (--subject-exact), read in the order of the\n"
    "                 line's <I> (most specific first without one); an empty\n"
    "                 <S> or <RFC822> is refused.\n"
    "  --pin FP       csv, jsonl: the pin of rows whose pin column is empty\n"
    "                 or missing; iis: the issuing CA of the rules; altsecid:\n"
    "                 the issuing CA of <SKI>.., <S>.. and <RFC822>.. entries\n"
    "  --location PATH\n"
    "                 iis: the path whose mappings to import, required when\n"
    "                 the file configures several ('/' for the file's root)\n"
    "  --allow-weak   import weak altSecurityIdentities as rules\n"
    "  --update       csv, jsonl: a row whose kind and key a mapping has\n"
    "                 replaces its account, pin, window, state, note and\n"
    "                 backdating check (the id and creation time stay);\n"
    "                 iis, altsecid: an entry whose kind and key a mapping has\n"
    "                 replaces its account, pin, window, state and note, and\n"
    "                 a rule with the same pin and conditions (subject, issuer,\n"
    "                 san, eku, policy and their flags) as one the store has\n"
    "                 replaces its action, account, priority, state and note,\n"
    "                 instead of being added twice (ids and creation times\n"
    "                 stay; rows a directory sync owns are refused). Without\n"
    "                 it such an entry is refused, naming the mapping or rule.\n"
    "                 The summary says how many were new and how many updated\n"
    "  --create-accounts\n"
    "                 create the accounts the file names that do not exist\n"
    "  --allow-partial\n"
    "                 iis, altsecid: import the rest when some entries cannot\n"
    "                 be imported (without it, nothing is imported and the\n"
    "                 command exits 1)\n"
    "\n"
    "iis and altsecid entries that cannot be imported are listed on stderr,\n"
    "with the reason. A malformed file imports nothing.\n",
};
