/*
 * certstore import: bulk mappings from CSV or JSON lines, all or nothing in
 * one transaction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Only a person watching a terminal wants progress; logs and pipes do not. */
static void show_progress(int64_t rows, void *arg)
{
    (void)arg;
    fprintf(stderr, "\rcertstore: import: %lld rows", (long long)rows);
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
                               cs_import_format fmt, cs_import_result *res)
{
    int tty = isatty(STDERR_FILENO);
    cs_status st = cs_import(db, in, fmt, res, tty ? show_progress : NULL, NULL);
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

static int run_import(cli_ctx *ctx, int argc, char **argv)
{
    const char *format = NULL;
    const cli_option opts[] = {{"format", &format, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    cs_import_format fmt = CS_IMPORT_AUTO;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "FILE")) != CLI_CONTINUE ||
        (rc = parse_format(ctx, format, &fmt)) != CLI_CONTINUE)
        return rc;

    const char *path = pos.args[0];
    int from_stdin = strcmp(path, "-") == 0;
    FILE *in = from_stdin ? stdin : fopen(path, "r");
    if (in == NULL)
        return cli_fail(ctx, "%s: %s", path, strerror(errno));
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        if (!from_stdin)
            fclose(in);
        return CLI_FAIL;
    }
    cs_import_result res;
    memset(&res, 0, sizeof(res));
    cs_status st = import_stream(ctx, db, in, from_stdin ? "stdin" : path, fmt, &res);
    if (!from_stdin)
        fclose(in);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        printf("imported %lld mappings (%lld accounts created)\n", (long long)res.rows,
               (long long)res.accounts_created);
    return rc;
}

const cli_command cli_cmd_import = {
    "import",
    "import mappings from CSV or JSON lines (all or nothing)",
    run_import,
    "Usage: certstore import FILE|- [--format csv|jsonl]\n"
    "\n"
    "Import mappings in one transaction: either every line is imported or\n"
    "nothing is, and the first bad line is reported by number. Accounts are\n"
    "created as needed. '-' reads standard input.\n"
    "\n"
    "CSV has a header line with the columns kind,key,account and optionally\n"
    "not_before,not_after,note,pin, in any order; JSON lines are objects with\n"
    "the same names. 'certstore export --format csv' writes this format.\n"
    "\n"
    "  --format FMT   csv or jsonl (default: detected from the content)\n",
};
