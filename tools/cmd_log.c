/* SPDX-License-Identifier: Apache-2.0 */
/* certstore log: the change log, who changed what and when. */
#include "cli.h"

typedef struct {
    int json;
    cli_json_list list;
} log_listing;

static int print_change(const cs_change *c, void *arg)
{
    log_listing *l = arg;
    if (l->json) {
        cli_json_list_row(&l->list);
        printf("{\"id\":%lld,\"time\":", (long long)c->id);
        cli_put_json_time(stdout, c->time);
        printf(",\"user\":");
        cli_put_json_string(stdout, c->user);
        printf(",\"command\":");
        cli_put_json_string(stdout, c->command);
        printf(",\"detail\":");
        cli_put_json_string(stdout, c->detail);
        putchar('}');
        return 0;
    }
    printf("%lld ", (long long)c->id);
    cli_put_text_time(stdout, c->time);
    printf(" user=");
    cli_put_text(stdout, c->user);
    printf(" detail=");
    cli_put_text(stdout, c->detail);
    printf(" command=");
    cli_put_text(stdout, c->command);
    putchar('\n');
    return 0;
}

static int run_log(cli_ctx *ctx, int argc, char **argv)
{
    log_listing l = {0};
    const char *since_text = NULL;
    const cli_option opts[] = {
        {"since", &since_text, NULL}, {"json", NULL, &l.json}, CLI_OPTIONS_END};
    cli_positional pos;
    int64_t since = CS_TIME_NONE;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if (since_text != NULL && !cli_parse_time_option(ctx, "--since", since_text, &since))
        return CLI_USAGE;
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    if (l.json)
        cli_json_list_begin(&l.list, stdout);
    if (cs_change_foreach(db, since, print_change, &l) != CS_OK) {
        rc = cli_store_fail(ctx, db);
    } else {
        if (l.json)
            cli_json_list_end(&l.list);
        rc = CLI_OK;
    }
    cs_db_close(db);
    return rc;
}

const cli_command cli_cmd_log = {
    "log",
    "show the change log",
    run_log,
    "Usage: certstore log [--since TIME] [--json]\n"
    "\n"
    "Show the change log: every change made with certstore, when, by which OS\n"
    "user, with which command line.\n"
    "\n"
    "  --since TIME   only changes at or after TIME (YYYY-MM-DD or RFC 3339)\n"
    "  --json         one JSON array of objects\n",
};
