/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore export: the mapping table as CSV or JSON lines, both read back
 * whole by import (every field that changes a decision: the flags, the
 * window, the backdating check and the creation time it compares with), or
 * key/value maps for servers that do their own lookups:
 *   haproxy-map  <SHA-256 of the leaf DER> <account>, matching
 *                ssl_c_der,digest(sha256),hex,lower
 *   nginx-map    <SHA-1 of the leaf DER> <account>;, matching
 *                $ssl_client_fingerprint (lowercase hex, no colons)
 * A server map cannot express "disabled" or a validity window, so such
 * mappings are left out of it (fail closed) and counted on stderr.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

typedef enum { EXPORT_CSV, EXPORT_JSON, EXPORT_HAPROXY, EXPORT_NGINX } export_format;

typedef struct {
    export_format format;
    cs_db *db;
    int64_t now;
    char **disabled_accounts;
    size_t n_disabled, cap_disabled;
    int64_t written;
    int64_t skipped_disabled, skipped_window, skipped_kind, skipped_name, skipped_unbound;
    int out_of_memory;
    cs_status lookup_failed; /* CS_OK, or why a mapping's backdating check could not be read */
} export_state;

static int collect_disabled_account(const cs_account *a, void *arg)
{
    export_state *s = arg;
    if (a->enabled)
        return 0;
    if (s->n_disabled == s->cap_disabled) {
        size_t cap = s->cap_disabled == 0 ? 16 : 2 * s->cap_disabled;
        char **grown = realloc(s->disabled_accounts, cap * sizeof(*grown));
        if (grown == NULL)
            return s->out_of_memory = 1;
        s->disabled_accounts = grown;
        s->cap_disabled = cap;
    }
    char *copy = strdup(a->name);
    if (copy == NULL)
        return s->out_of_memory = 1;
    s->disabled_accounts[s->n_disabled++] = copy;
    return 0;
}

static int account_disabled(const export_state *s, const char *name)
{
    for (size_t i = 0; i < s->n_disabled; i++)
        if (strcmp(s->disabled_accounts[i], name) == 0)
            return 1;
    return 0;
}

static void free_state(export_state *s)
{
    for (size_t i = 0; i < s->n_disabled; i++)
        free(s->disabled_accounts[i]);
    free(s->disabled_accounts);
}

/* Only names that need no quoting in either server's map file syntax. */
static int map_safe_name(const char *name)
{
    return *name != '\0' &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "._@+=:/-") == strlen(name);
}

/* RFC 4180: quote fields holding a separator, a quote or a line break. */
static void put_csv_field(const char *s)
{
    if (s == NULL)
        return;
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void put_csv_time(int64_t t)
{
    if (t == CS_TIME_NONE || t == CS_TIME_FOREVER)
        return;
    char buf[32];
    cs_time_format(t, buf);
    fputs(buf, stdout);
}

static const char *bool_text(int value)
{
    return value ? "true" : "false";
}

static void write_csv(const cs_mapping *m, const char *key, int account_enabled, int nibc)
{
    printf("%s,%s,", cs_kind_name(m->kind), key);
    put_csv_field(m->account);
    putchar(',');
    put_csv_time(m->not_before);
    putchar(',');
    put_csv_time(m->not_after);
    putchar(',');
    put_csv_field(m->note);
    putchar(',');
    put_csv_field(m->pin_fp);
    printf(",%s,%s,%s,", bool_text(m->enabled), bool_text(account_enabled), nibc ? "created" : "");
    put_csv_time(m->created);
    putchar('\n');
}

static void write_json(const cs_mapping *m, const char *key, int account_enabled, int nibc)
{
    printf("{\"id\":%lld,\"kind\":\"%s\",\"key\":\"%s\",\"account\":", (long long)m->id,
           cs_kind_name(m->kind), key);
    cli_put_json_string(stdout, m->account);
    printf(",\"not_before\":");
    cli_put_json_time(stdout, m->not_before);
    printf(",\"not_after\":");
    cli_put_json_time(stdout, m->not_after);
    printf(",\"note\":");
    cli_put_json_string(stdout, m->note != NULL ? m->note : "");
    printf(",\"pin\":");
    cli_put_json_string(stdout, m->pin_fp);
    printf(",\"enabled\":%s,\"account_enabled\":%s,\"not_issued_before\":%s,\"created\":",
           bool_text(m->enabled), bool_text(account_enabled), nibc ? "\"created\"" : "null");
    cli_put_json_time(stdout, m->created);
    puts("}");
}

static int outside_window(const cs_mapping *m, int64_t now)
{
    return (m->not_before != CS_TIME_NONE && now < m->not_before) ||
           (m->not_after != CS_TIME_NONE && now > m->not_after);
}

/*
 * A server map has no "disabled" and no validity window, so anything not
 * in force right now stays out of it. CSV and JSON say it all, but for an
 * unbound ski or issuer-serial mapping, which never matches and which
 * import refuses: out of every format.
 */
static int skip_mapping(export_state *s, const cs_mapping *m)
{
    if (cs_mapping_unbound(m))
        return ++s->skipped_unbound, 1;
    if (s->format == EXPORT_JSON || s->format == EXPORT_CSV)
        return 0;
    if (!m->enabled || account_disabled(s, m->account))
        return ++s->skipped_disabled, 1;
    if (outside_window(m, s->now))
        return ++s->skipped_window, 1;
    if ((s->format == EXPORT_HAPROXY && m->kind != CS_KIND_CERT) ||
        (s->format == EXPORT_NGINX && !m->have_sha1))
        return ++s->skipped_kind, 1;
    if (!map_safe_name(m->account))
        return ++s->skipped_name, 1;
    return 0;
}

static int export_mapping(const cs_mapping *m, void *arg)
{
    export_state *s = arg;
    char key[2 * CS_KEY_MAX + 2];
    cs_mapping_ref ref = {.id = m->id};
    int nibc = 0;
    if (skip_mapping(s, m))
        return 0;
    if ((s->format == EXPORT_CSV || s->format == EXPORT_JSON) &&
        (s->lookup_failed = cs_mapping_get_not_issued_before_created(s->db, &ref, &nibc)) != CS_OK)
        return 1;
    cs_key_format(m->kind, &m->key, key, sizeof(key));
    switch (s->format) {
    case EXPORT_CSV:
        write_csv(m, key, !account_disabled(s, m->account), nibc);
        break;
    case EXPORT_JSON:
        write_json(m, key, !account_disabled(s, m->account), nibc);
        break;
    case EXPORT_HAPROXY:
        printf("%s %s\n", key, m->account);
        break;
    case EXPORT_NGINX:
        cli_put_hex(stdout, m->sha1, sizeof(m->sha1));
        printf(" %s;\n", m->account);
        break;
    }
    s->written++;
    return 0;
}

static void report_skipped(const cli_ctx *ctx, const export_state *s)
{
    int64_t total = s->skipped_disabled + s->skipped_window + s->skipped_kind + s->skipped_name +
                    s->skipped_unbound;
    if (total == 0)
        return;
    fprintf(stderr,
            "certstore: %s: exported %lld, skipped %lld mappings (%lld disabled, %lld outside "
            "their validity window, %lld without a key this format can use, %lld with an "
            "account name unsafe in a map file, %lld unbound: they never match)\n",
            ctx->name, (long long)s->written, (long long)total, (long long)s->skipped_disabled,
            (long long)s->skipped_window, (long long)s->skipped_kind, (long long)s->skipped_name,
            (long long)s->skipped_unbound);
}

static int parse_format(const cli_ctx *ctx, const char *text, export_format *fmt)
{
    static const struct {
        const char *name;
        export_format format;
    } formats[] = {{"csv", EXPORT_CSV},
                   {"json", EXPORT_JSON},
                   {"jsonl", EXPORT_JSON},
                   {"haproxy-map", EXPORT_HAPROXY},
                   {"nginx-map", EXPORT_NGINX}};
    if (text == NULL)
        return cli_usage_error(ctx, "missing --format");
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strcmp(text, formats[i].name) == 0) {
            *fmt = formats[i].format;
            return CLI_CONTINUE;
        }
    }
    return cli_usage_error(ctx, "--format: '%s' is not csv, json, haproxy-map or nginx-map", text);
}

static int export_all(const cli_ctx *ctx, cs_db *db, export_state *s)
{
    if (cs_account_foreach(db, collect_disabled_account, s) != CS_OK)
        return cli_store_fail(ctx, db);
    if (s->out_of_memory)
        return cli_fail(ctx, "out of memory");
    if (s->format == EXPORT_CSV)
        puts("kind,key,account,not_before,not_after,note,pin,enabled,account_enabled,"
             "not_issued_before,created");
    if (cs_mapping_foreach(db, NULL, export_mapping, s) != CS_OK || s->lookup_failed != CS_OK)
        return cli_store_fail(ctx, db);
    report_skipped(ctx, s);
    return CLI_OK;
}

static int run_export(cli_ctx *ctx, int argc, char **argv)
{
    const char *format = NULL;
    const cli_option opts[] = {{"format", &format, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    export_state s;
    memset(&s, 0, sizeof(s));
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE ||
        (rc = parse_format(ctx, format, &s.format)) != CLI_CONTINUE)
        return rc;
    s.now = (int64_t)time(NULL);
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    s.db = db;
    rc = export_all(ctx, db, &s);
    cs_db_close(db);
    free_state(&s);
    return rc;
}

const cli_command cli_cmd_export = {
    "export",
    "export mappings (csv, json, haproxy-map, nginx-map)",
    run_export,
    "Usage: certstore export --format csv|json|haproxy-map|nginx-map\n"
    "\n"
    "Write the mappings to standard output.\n"
    "\n"
    "  csv          header kind,key,account,not_before,not_after,note,pin,\n"
    "               enabled,account_enabled,not_issued_before,created\n"
    "  json         JSON lines, one object per mapping, the same fields and id\n"
    "               Both carry everything that changes a decision, disabled\n"
    "               mappings and accounts included: 'certstore import' into a\n"
    "               new database reads back a store that decides the same.\n"
    "               An unbound ski or issuer-serial mapping (it never\n"
    "               matches) is left out of every format.\n"
    "  haproxy-map  '<sha256> <account>' for kind cert mappings, for HAProxy's\n"
    "               map(): ssl_c_der,digest(sha256),hex,lower\n"
    "  nginx-map    '<sha1> <account>;' for mappings made from a certificate,\n"
    "               for an nginx map on $ssl_client_fingerprint\n"
    "\n"
    "The map formats leave out mappings that are disabled, belong to a\n"
    "disabled account, are outside their validity window now, or whose\n"
    "account name would need quoting; csv and the map formats leave out\n"
    "unbound ski and issuer-serial mappings (they never match); the count\n"
    "skipped goes to stderr.\n",
};
