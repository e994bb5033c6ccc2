/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore expiring: what stops working within N days (or has stopped),
 * for monitoring: exit status 1 when there is any. A pin stops at its
 * notAfter; a cert or issuer-serial mapping at the earlier of its
 * certificate's notAfter and its own --not-after; an spki or ski mapping
 * outlives a renewal with the same key, so only at its own --not-after.
 * Disabled pins, mappings and accounts already admit no one: left out
 * unless --all.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define DAY 86400
#define DAYS_MAX 36500

typedef struct {
    int64_t now, horizon;
    int json, all;
    int64_t found;
    cli_json_list list;
    char **disabled_accounts;
    size_t n_disabled;
    int out_of_memory;
} expiring_scan;

static int collect_disabled(const cs_account *a, void *arg)
{
    expiring_scan *scan = arg;
    if (a->enabled)
        return 0;
    char **grown =
        realloc(scan->disabled_accounts, (scan->n_disabled + 1) * sizeof(*scan->disabled_accounts));
    if (grown == NULL)
        return scan->out_of_memory = 1;
    scan->disabled_accounts = grown;
    if ((grown[scan->n_disabled] = strdup(a->name)) == NULL)
        return scan->out_of_memory = 1;
    scan->n_disabled++;
    return 0;
}

static int account_disabled(const expiring_scan *scan, const char *name)
{
    for (size_t i = 0; i < scan->n_disabled; i++)
        if (strcmp(scan->disabled_accounts[i], name) == 0)
            return 1;
    return 0;
}

/* When a mapping stops admitting, and what stops it; CS_TIME_NONE: nothing known. */
static int64_t mapping_stops(const cs_mapping *m, const char **why)
{
    int survives_renewal = m->kind == CS_KIND_SPKI || m->kind == CS_KIND_SKI;
    int64_t cert = survives_renewal ? CS_TIME_NONE : m->cert_not_after;
    if (m->not_after != CS_TIME_NONE && (cert == CS_TIME_NONE || m->not_after < cert)) {
        *why = "mapping-not-after";
        return m->not_after;
    }
    *why = "certificate";
    return cert;
}

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

    if (!due(scan, pin->not_after) || (!pin->enabled && !scan->all))
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
    const char *why = NULL;
    int64_t stops = mapping_stops(m, &why);
    int account_off = account_disabled(scan, m->account);

    if (!due(scan, stops) || ((!m->enabled || account_off) && !scan->all))
        return 0;
    scan->found++;
    if (scan->json) {
        cli_json_list_row(&scan->list);
        printf("{\"what\":\"mapping\",\"mapping\":%lld,\"kind\":\"%s\",\"account\":",
               (long long)m->id, cs_kind_name(m->kind));
        cli_put_json_string(stdout, m->account);
        printf(",\"enabled\":%s,\"account_enabled\":%s,\"not_after\":",
               m->enabled ? "true" : "false", account_off ? "false" : "true");
        cli_put_json_time(stdout, stops);
        printf(",\"by\":\"%s\",\"expired\":%s}", why, stops < scan->now ? "true" : "false");
        return 0;
    }
    printf("mapping %lld %s account=", (long long)m->id, cs_kind_name(m->kind));
    cli_put_text(stdout, m->account);
    put_when_text(scan, stops);
    printf(" by=%s%s%s\n", why, m->enabled ? "" : " disabled",
           account_off ? " account-disabled" : "");
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

/* A good OCSP answer past its nextUpdate no longer vouches for its certificate. */
static int ocsp_due(const cs_ocsp_info *o, void *arg)
{
    expiring_scan *scan = arg;

    if (o->status != CS_OCSP_GOOD || o->current)
        return 0;
    scan->found++;
    if (scan->json) {
        cli_json_list_row(&scan->list);
        printf("{\"what\":\"ocsp\",\"pin\":\"%s\",\"serial\":\"%s\",\"next_update\":", o->pin_fp,
               o->serial);
        cli_put_json_time(stdout, o->next_update);
        printf("}");
        return 0;
    }
    printf("ocsp answer of pin %s serial %s stale next-update=", o->pin_fp, o->serial);
    cli_put_text_time(stdout, o->next_update);
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
    const cli_option opts[] = {{"days", &days_text, NULL},
                               {"json", NULL, &scan.json},
                               {"all", NULL, &scan.all},
                               CLI_OPTIONS_END};
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
    cs_status st = cs_account_foreach(db, collect_disabled, &scan);
    if (st == CS_OK && !scan.out_of_memory)
        st = cs_pin_foreach(db, pin_expiring, &scan);
    if (st == CS_OK && !scan.out_of_memory)
        st = cs_mapping_foreach(db, NULL, mapping_expiring, &scan);
    if (st == CS_OK && !scan.out_of_memory)
        st = cs_crl_foreach(db, scan.now, crl_due, &scan);
    if (st == CS_OK && !scan.out_of_memory)
        st = cs_ocsp_foreach(db, scan.now, ocsp_due, &scan);
    if (scan.json && st == CS_OK && !scan.out_of_memory)
        cli_json_list_end(&scan.list);
    if (scan.out_of_memory)
        rc = cli_fail(ctx, "out of memory");
    else if (st != CS_OK)
        rc = cli_store_fail(ctx, db);
    else
        rc = scan.found > 0 ? CLI_FAIL : CLI_OK;
    if (st == CS_OK && !scan.json && scan.found == 0)
        printf("nothing expires within %lld days\n", (long long)days);
    cs_db_close(db);
    for (size_t i = 0; i < scan.n_disabled; i++)
        free(scan.disabled_accounts[i]);
    free(scan.disabled_accounts);
    return rc;
}

const cli_command cli_cmd_expiring = {
    "expiring",
    "pins, mappings, CRLs and OCSP answers that stop working within N days (exit 1 if any)",
    run_expiring,
    "Usage: certstore expiring [--days N] [--all] [--json]\n"
    "\n"
    "List what stops admitting clients within N days from now, or has\n"
    "stopped: pinned CAs at their notAfter; cert and issuer-serial mappings\n"
    "at the earlier of their certificate's notAfter (kept when the mapping\n"
    "was made from a certificate) and their --not-after (by=certificate or\n"
    "by=mapping-not-after); spki and ski mappings, which a certificate renewed\n"
    "with the same key still matches, only at their --not-after. A mapping\n"
    "with neither is not listed. Pins whose CRL is stale past its grace, or\n"
    "missing where their revocation policy needs one, are listed too\n"
    "(certstore crl ls), and so are good OCSP answers past their nextUpdate\n"
    "(certstore ocsp ls; refresh them with certstore ocsp refresh).\n"
    "\n"
    "  --days N   look ahead N days (default 30)\n"
    "  --all      also disabled pins, disabled mappings and mappings of\n"
    "             disabled accounts (which admit no one already)\n"
    "  --json     print a JSON array\n"
    "\n"
    "Exit status: 0 nothing expiring, 1 something expiring (or an error),\n"
    "2 usage error: ready for a monitoring check.\n",
};
