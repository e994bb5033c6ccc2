/* SPDX-License-Identifier: Apache-2.0 */
/* certstore account: the identities that client certificates map to. */
#include <string.h>

#include "cli.h"

static int parse_name(const cli_ctx *ctx, const cli_positional *pos, const char **name)
{
    int rc = cli_expect_args(ctx, pos, 1, 1, "NAME");
    if (rc != CLI_CONTINUE)
        return rc;
    *name = pos->args[0];
    if (!cs_account_name_valid(*name))
        return cli_usage_error(ctx,
                               "invalid account name (1-%d bytes of UTF-8, no control "
                               "characters)",
                               CS_ACCOUNT_MAX);
    return CLI_CONTINUE;
}

static void print_account_name(const char *prefix, const char *name)
{
    fputs(prefix, stdout);
    cli_put_text(stdout, name);
    putchar('\n');
}

static int run_account_add(cli_ctx *ctx, int argc, char **argv)
{
    const char *note = NULL;
    const cli_option opts[] = {{"note", &note, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    const char *name = NULL;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = parse_name(ctx, &pos, &name)) != CLI_CONTINUE)
        return rc;
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_status st = cs_account_add(db, name, note != NULL ? note : "");
    if (st == CS_EXISTS)
        cli_fail(ctx, "account already exists");
    else if (st != CS_OK)
        cli_store_fail(ctx, db);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        print_account_name("added account ", name);
    return rc;
}

static cs_status apply_change(const cli_ctx *ctx, cs_db *db, const char *name, cli_change change,
                              int cascade, int force, int64_t removed[2])
{
    char source[CS_SOURCE_MAX];
    cs_status st = cli_owner_check(ctx, db, cs_account_source(db, name, source), source, force);
    if (st != CS_OK)
        return st;
    st = change == CLI_REMOVE
             ? cs_account_remove_counted(db, name, cascade, &removed[0], &removed[1])
             : cs_account_set_enabled(db, name, change == CLI_ENABLE);
    if (st == CS_NOTFOUND)
        cli_fail(ctx, "no such account");
    else if (st == CS_INUSE)
        cli_fail(ctx, "%s (remove them, or use --cascade)", cs_db_errmsg(db));
    else if (st != CS_OK)
        cli_store_fail(ctx, db);
    return st;
}

static int run_account_change(cli_ctx *ctx, int argc, char **argv)
{
    cli_change change = cli_change_named(argv[0]);
    int cascade = 0, force = 0;
    const cli_option rm_opts[] = {
        {"cascade", NULL, &cascade}, {"force", NULL, &force}, CLI_OPTIONS_END};
    const cli_option no_opts[] = {{"force", NULL, &force}, CLI_OPTIONS_END};
    cli_positional pos;
    const char *name = NULL;
    int rc = cli_parse(ctx, change == CLI_REMOVE ? rm_opts : no_opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = parse_name(ctx, &pos, &name)) != CLI_CONTINUE)
        return rc;
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    int64_t removed[2] = {0, 0};
    rc = cli_end_write(ctx, db, apply_change(ctx, db, name, change, cascade, force, removed));
    if (rc == CLI_OK) {
        printf("%s ", cli_change_done(change));
        print_account_name("account ", name);
    }
    if (rc == CLI_OK && removed[0] + removed[1] > 0)
        printf("removed with it: %lld mapping%s, %lld rule%s\n", (long long)removed[0],
               removed[0] == 1 ? "" : "s", (long long)removed[1], removed[1] == 1 ? "" : "s");
    return rc;
}

static int print_account(const cs_account *a, void *arg)
{
    if (cli_listing_row(arg)) {
        printf("{\"id\":%lld,\"name\":", (long long)a->id);
        cli_put_json_string(stdout, a->name);
        printf(",\"enabled\":%s,\"mappings\":%lld,\"note\":", a->enabled ? "true" : "false",
               (long long)a->mappings);
        cli_put_json_string(stdout, a->note != NULL ? a->note : "");
        printf(",\"created\":");
        cli_put_json_time(stdout, a->created);
        putchar('}');
        return 0;
    }
    cli_put_text(stdout, a->name);
    printf(" %s mappings=%lld", a->enabled ? "enabled" : "disabled", (long long)a->mappings);
    if (a->note != NULL && *a->note != '\0') {
        printf(" note=");
        cli_put_text(stdout, a->note);
    }
    putchar('\n');
    return 0;
}

static cs_status list_accounts(cs_db *db, cli_listing *l, void *arg)
{
    (void)arg;
    return cs_account_foreach(db, print_account, l);
}

static int run_account_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};

    return cli_run_listing(ctx, opts, argc, argv, &l, list_accounts, NULL, NULL);
}

const cli_command cli_account_subcommands[] = {
    {"add", "add an account", run_account_add,
     "Usage: certstore account add NAME [--note TEXT]\n"
     "\n"
     "Add an account that client certificates can be mapped to.\n"
     "\n"
     "  --note TEXT   free text kept with the account\n"},
    {"disable", "disable an account", run_account_change,
     "Usage: certstore account disable NAME [--force]\n"
     "\n"
     "Disable an account: its certificates are rejected with account-disabled.\n"
     "\n"
     "  --force   change it even when a directory sync owns it (the next sync puts\n"
     "            it back)\n"},
    {"enable", "enable a disabled account", run_account_change,
     "Usage: certstore account enable NAME [--force]\n"
     "\n"
     "Enable a disabled account again.\n"
     "\n"
     "  --force   change it even when a directory sync owns it (the next sync puts\n"
     "            it back)\n"},
    {"rm", "remove an account", run_account_change,
     "Usage: certstore account rm NAME [--cascade] [--force]\n"
     "\n"
     "Remove an account. Refused while mappings or rules use it (the error\n"
     "counts and names them), unless --cascade.\n"
     "\n"
     "  --cascade   remove the account's mappings and rules too; says how many,\n"
     "              and the change log names them\n"
     "  --force     change it even when a directory sync owns it (the next sync\n"
     "              puts it back)\n"},
    {"ls", "list accounts", run_account_ls,
     "Usage: certstore account ls [--json]\n"
     "\n"
     "List the accounts with their state and number of mappings.\n"
     "\n"
     "  --json   one JSON array of objects\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_account(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_account = {
    "account",
    "manage accounts (add, disable, enable, rm, ls)",
    run_account,
    "Usage: certstore account add NAME [--note TEXT]\n"
    "       certstore account disable NAME [--force]\n"
    "       certstore account enable NAME [--force]\n"
    "       certstore account rm NAME [--cascade] [--force]\n"
    "       certstore account ls [--json]\n"
    "\n"
    "Manage the accounts that client certificates map to.\n"
    "Run 'certstore account SUBCOMMAND --help' for details.\n",
};

static int run_account(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_account, cli_account_subcommands, argc, argv);
}
