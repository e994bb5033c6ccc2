/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore expiring: pins and mapped certificates that expire within N
 * days (or have expired), for monitoring: exit status 1 when there is any.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define DAY 86400
#define DAYS_MAX 36500

typedef struct {
    int64_t now, horizon;
    int json;
    int64_t found;
    cli_json_list list;
} expiring_scan;

static int64_t days_between(int64_t from, int64_t to)
{
    return (to - from) / DAY;
}

static void put_when_text(const expiring_scan *scan, int64_t t)
{
    printf(" expires ");
    cli_put_text_time(stdout, t);
    if (t < scan->now)
        printf(" (expired %lld days ago)", (long long)days_between(t, scan->now));
    else
        printf(" (in %lld days)", (long long)days_between(scan->now, t));
}

static int due(const expiring_scan *scan, int64_t t)
{
    return t != CS_TIME_NONE && t <= scan->horizon;
}

static int pin_expiring(const cs_pin *pin, void *arg)
{
    expiring_scan *scan = arg;

    if (!due(scan, pin->not_after))
        return 0;
    scan->found++;
    if (scan->json) {
        cli_json_list_row(&scan->list);
        printf("{\"what\":\"pin\",\"pin\":\"%s\",\"subject\":", pin->fp);
        cli_put_json_string(stdout, pin->subject);
        printf(",\"enabled\":%s,\"not_after\":", pin->enabled ? "true" : "false");
        cli_put_json_time(stdout, pin->not_after);
        printf(",\"expired\":%s}", pin->not_after < scan->now ? "true" : "false");
        return 0;
    }
    printf("pin %s", pin->fp);
    put_when_text(scan, pin->not_after);
    printf(" subject=\"");
    cli_put_text(stdout, pin->subject);
    printf("\"%s\n", pin->enabled ? "" : " disabled");
    return 0;
}

static int mapping_expiring(const cs_mapping *m, void *arg)
{
    expiring_scan *scan = arg;

    if (!due(scan, m->cert_not_after))
        return 0;
    scan->found++;
    if (scan->json) {
        cli_json_list_row(&scan->list);
        printf("{\"what\":\"mapping\",\"mapping\":%lld,\"kind\":\"%s\",\"account\":",
               (long long)m->id, cs_kind_name(m->kind));
        cli_put_json_string(stdout, m->account);
        printf(",\"enabled\":%s,\"not_after\":", m->enabled ? "true" : "false");
        cli_put_json_time(stdout, m->cert_not_after);
        printf(",\"expired\":%s}", m->cert_not_after < scan->now ? "true" : "false");
        return 0;
    }
    printf("mapping %lld %s account=", (long long)m->id, cs_kind_name(m->kind));
    cli_put_text(stdout, m->account);
    put_when_text(scan, m->cert_not_after);
    printf("%s\n", m->enabled ? "" : " disabled");
    return 0;
}

/* A CRL is due when the decision can no longer rely on it: stale, missing, unknown. */
static int crl_due(const cs_crl_info *c, void *arg)
{
    expiring_scan *scan = arg;

    if (!cs_revocation_state_alarming(c->state))
        return 0;
    scan->found++;
    if (scan->json) {
        cli_json_list_row(&scan->list);
        printf("{\"what\":\"crl\",\"pin\":\"%s\",\"state\":\"%s\",\"policy\":\"%s\","
               "\"next_update\":",
               c->pin_fp, cs_revocation_state_name(c->state), cs_revocation_policy_name(c->policy));
        cli_put_json_time(stdout, c->next_update);
        printf("}");
        return 0;
    }
    printf("crl of pin %s revocation=%s policy=%s next-update=", c->pin_fp,
           cs_revocation_state_name(c->state), cs_revocation_policy_name(c->policy));
    cli_put_text_time(stdout, c->next_update);
    putchar('\n');
    return 0;
}

static int parse_days(const cli_ctx *ctx, const char *text, int64_t *days)
{
    char *end = NULL;
    long long v;

    *days = 30;
    if (text == NULL)
        return CLI_CONTINUE;
    v = strtoll(text, &end, 10);
    if (*text < '0' || *text > '9' || *end != '\0' || v < 0 || v > DAYS_MAX)
        return cli_usage_error(ctx, "--days: '%s' is not a number from 0 to %d", text, DAYS_MAX);
    *days = v;
    return CLI_CONTINUE;
}

static int run_expiring(cli_ctx *ctx, int argc, char **argv)
{
    const char *days_text = NULL;
    expiring_scan scan;
    int64_t days;
    memset(&scan, 0, sizeof(scan));
    const cli_option opts[] = {
        {"days", &days_text, NULL}, {"json", NULL, &scan.json}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE ||
        (rc = parse_days(ctx, days_text, &days)) != CLI_CONTINUE)
        return rc;
    scan.now = (int64_t)time(NULL);
    scan.horizon = scan.now + days * DAY;
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    if (scan.json)
        cli_json_list_begin(&scan.list, stdout);
    cs_status st = cs_pin_foreach(db, pin_expiring, &scan);
    if (st == CS_OK)
        st = cs_mapping_foreach(db, NULL, mapping_expiring, &scan);
    if (st == CS_OK)
        st = cs_crl_foreach(db, scan.now, crl_due, &scan);
    if (scan.json)
        cli_json_list_end(&scan.list);
    if (st != CS_OK)
        rc = cli_store_fail(ctx, db);
    else
        rc = scan.found > 0 ? CLI_FAIL : CLI_OK;
    if (st == CS_OK && !scan.json && scan.found == 0)
        printf("nothing expires within %lld days\n", (long long)days);
    cs_db_close(db);
    return rc;
}

const cli_command cli_cmd_expiring = {
    "expiring",
    "pins, mapped certificates and CRLs due within N days (exit 1 if any)",
    run_expiring,
    "Usage: certstore expiring [--days N] [--json]\n"
    "\n"
    "List pinned CAs and mapped client certificates whose notAfter falls\n"
    "within N days from now, or has passed. Mappings made from a certificate\n"
    "keep its notAfter; mappings made from a bare key have none and are not\n"
    "listed. Pins whose CRL is stale past its grace, or missing where their\n"
    "revocation policy needs one, are listed too (certstore crl ls).\n"
    "\n"
    "  --days N   look ahead N days (default 30)\n"
    "  --json     print a JSON array\n"
    "\n"
    "Exit status: 0 nothing expiring, 1 something expiring (or an error),\n"
    "2 usage error: ready for a monitoring check.\n",
};
