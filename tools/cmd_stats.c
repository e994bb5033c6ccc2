/* SPDX-License-Identifier: Apache-2.0 */
/* certstore stats: how much is in the store. */
#include "cli.h"

static void print_stats_text(const cs_stats *s)
{
    printf("schema-version: %d\n", s->schema_version);
    printf("generation: %lld\n", (long long)s->generation);
    printf("pins: %lld (%lld enabled)\n", (long long)s->pins, (long long)s->pins_enabled);
    printf("accounts: %lld (%lld enabled)\n", (long long)s->accounts,
           (long long)s->accounts_enabled);
    printf("mappings: %lld (%lld enabled)\n", (long long)s->mappings,
           (long long)s->mappings_enabled);
    for (int k = 0; k < CS_KIND_COUNT; k++)
        printf("mappings-%s: %lld\n", cs_kind_name((cs_kind)k), (long long)s->by_kind[k]);
    printf("mappings-unbound: %lld\n", (long long)s->unbound);
}

static void print_stats_json(const cs_stats *s)
{
    printf("{\"schema_version\":%d,\"generation\":%lld,\"pins\":%lld,\"pins_enabled\":%lld,"
           "\"accounts\":%lld,\"accounts_enabled\":%lld,\"mappings\":%lld,"
           "\"mappings_enabled\":%lld,\"mappings_by_kind\":{",
           s->schema_version, (long long)s->generation, (long long)s->pins,
           (long long)s->pins_enabled, (long long)s->accounts, (long long)s->accounts_enabled,
           (long long)s->mappings, (long long)s->mappings_enabled);
    for (int k = 0; k < CS_KIND_COUNT; k++)
        printf("%s\"%s\":%lld", k == 0 ? "" : ",", cs_kind_name((cs_kind)k),
               (long long)s->by_kind[k]);
    printf("},\"mappings_unbound\":%lld}\n", (long long)s->unbound);
}

static int run_stats(cli_ctx *ctx, int argc, char **argv)
{
    int json = 0;
    const cli_option opts[] = {{"json", NULL, &json}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_stats s;
    if (cs_stats_get(db, &s) != CS_OK) {
        rc = cli_store_fail(ctx, db);
    } else {
        if (json)
            print_stats_json(&s);
        else
            print_stats_text(&s);
        rc = CLI_OK;
    }
    cs_db_close(db);
    return rc;
}

const cli_command cli_cmd_stats = {
    "stats",
    "count pins, accounts and mappings",
    run_stats,
    "Usage: certstore stats [--json]\n"
    "\n"
    "Count pins, accounts and mappings (by kind), and show the schema version\n"
    "and the policy generation.\n"
    "\n"
    "  --json   one JSON object\n",
};
