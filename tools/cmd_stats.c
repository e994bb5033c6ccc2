/* SPDX-License-Identifier: Apache-2.0 */
/* certstore stats: how much is in the store. */
#include "cli.h"

typedef struct {
    int64_t rules, rules_enabled, deny;
} rule_counts;

static int count_rule(const cs_rule *r, void *arg)
{
    rule_counts *c = arg;
    c->rules++;
    c->rules_enabled += r->enabled != 0;
    c->deny += r->spec.action == CS_RULE_DENY;
    return 0;
}

static void print_stats_text(const cs_stats *s, const rule_counts *r)
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
    printf("rules: %lld (%lld enabled, %lld deny)\n", (long long)r->rules,
           (long long)r->rules_enabled, (long long)r->deny);
}

static void print_stats_json(const cs_stats *s, const rule_counts *r)
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
    printf("},\"mappings_unbound\":%lld,\"rules\":%lld,\"rules_enabled\":%lld,"
           "\"rules_deny\":%lld}\n",
           (long long)s->unbound, (long long)r->rules, (long long)r->rules_enabled,
           (long long)r->deny);
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
    rule_counts r = {0, 0, 0};
    if (cs_stats_get(db, &s) != CS_OK || cs_rule_foreach(db, count_rule, &r) != CS_OK) {
        rc = cli_store_fail(ctx, db);
    } else {
        if (json)
            print_stats_json(&s, &r);
        else
            print_stats_text(&s, &r);
        rc = CLI_OK;
    }
    cs_db_close(db);
    return rc;
}

const cli_command cli_cmd_stats = {
    "stats",
    "count pins, accounts, mappings and rules",
    run_stats,
    "Usage: certstore stats [--json]\n"
    "\n"
    "Count pins, accounts, mappings (by kind) and rules (enabled, deny), and\n"
    "show the schema version and the policy generation.\n"
    "\n"
    "  --json   one JSON object\n",
};
