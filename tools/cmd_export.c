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
 * A map has one line per certificate (nginx refuses a key twice), with the
 * account the policy's mapping step decides for it (cs_decide_keys, on
 * every key the store keeps of that certificate); a certificate it does not
 * accept is left out (fail closed) and counted on stderr by reason. The
 * mappings are gathered, sorted by certificate and decided before a line is
 * written, so a map is whole or not written at all.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

typedef enum { EXPORT_CSV, EXPORT_JSON, EXPORT_HAPROXY, EXPORT_NGINX } export_format;

/*
 * One mapping as a map sees it, kept small (a store may hold millions):
 * the certificate it belongs to and where its key and pin sit in the
 * arena. Sorted by certificate, a certificate's mappings are neighbours.
 */
struct map_entry {
    unsigned char id[32]; /* SHA-1 (nginx) or SHA-256 (HAProxy) of the leaf DER */
    unsigned char id_len;
    unsigned char kind;
    unsigned char has_pin;
    unsigned char key_len;
    size_t at; /* arena: key bytes, then the pin's hex fingerprint if any */
    size_t seq;
};

typedef struct {
    export_format format;
    cs_db *db;
    int64_t now;
    char **disabled_accounts;
    size_t n_disabled, cap_disabled;
    int64_t written;
    int64_t skipped_kind, skipped_name, skipped_unbound, skipped_conflict;
    int out_of_memory;
    struct map_entry *entries; /* map formats: one per mapping */
    size_t n_entries, cap_entries;
    unsigned char *arena;
    size_t arena_used, arena_cap;
    char store_detail[160]; /* why the policy could not decide, if it could not */
    int64_t left_out[CS_REASON_COUNT];
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
    free(s->entries);
    free(s->arena);
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

/* An unbound ski or issuer-serial mapping never matches: out of every format. */
static int skip_mapping(export_state *s, const cs_mapping *m)
{
    if (cs_mapping_unbound(m))
        return ++s->skipped_unbound, 1;
    if (s->format == EXPORT_JSON || s->format == EXPORT_CSV)
        return 0;
    if ((s->format == EXPORT_HAPROXY && m->kind != CS_KIND_CERT) ||
        (s->format == EXPORT_NGINX && !m->have_sha1))
        return ++s->skipped_kind, 1;
    return 0;
}

static int arena_put(export_state *s, const void *bytes, size_t len)
{
    if (s->arena_used + len > s->arena_cap) {
        size_t cap = s->arena_cap == 0 ? 65536 : 2 * s->arena_cap;
        while (cap < s->arena_used + len)
            cap *= 2;
        unsigned char *grown = realloc(s->arena, cap);
        if (grown == NULL)
            return 0;
        s->arena = grown;
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->arena_used, bytes, len);
    s->arena_used += len;
    return 1;
}

/* Gather every mapping; the policy decides per certificate once all are known. */
static int collect_for_map(export_state *s, const cs_mapping *m)
{
    const unsigned char *id = s->format == EXPORT_NGINX ? m->sha1 : m->key.bytes;
    size_t len = s->format == EXPORT_NGINX ? sizeof(m->sha1) : m->key.len;
    if (len > sizeof(s->entries[0].id) || m->key.len > 255)
        return ++s->skipped_kind, 0;
    if (s->n_entries == s->cap_entries) {
        size_t cap = s->cap_entries == 0 ? 1024 : 2 * s->cap_entries;
        struct map_entry *grown = realloc(s->entries, cap * sizeof(*grown));
        if (grown == NULL)
            return s->out_of_memory = 1;
        s->entries = grown;
        s->cap_entries = cap;
    }
    struct map_entry *e = &s->entries[s->n_entries];
    memset(e, 0, sizeof(*e));
    memcpy(e->id, id, len);
    e->id_len = (unsigned char)len;
    e->kind = (unsigned char)m->kind;
    e->key_len = (unsigned char)m->key.len;
    e->has_pin = m->pin_fp != NULL;
    e->at = s->arena_used;
    e->seq = s->n_entries;
    if (!arena_put(s, m->key.bytes, m->key.len) ||
        (m->pin_fp != NULL && !arena_put(s, m->pin_fp, CS_FP_HEX_LEN + 1)))
        return s->out_of_memory = 1;
    s->n_entries++;
    return 0;
}

static int by_certificate(const void *a, const void *b)
{
    const struct map_entry *x = a, *y = b;
    int c =
        x->id_len != y->id_len ? (x->id_len < y->id_len ? -1 : 1) : memcmp(x->id, y->id, x->id_len);
    if (c != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int same_certificate(const struct map_entry *x, const struct map_entry *y)
{
    return x->id_len == y->id_len && memcmp(x->id, y->id, x->id_len) == 0;
}

/*
 * A certificate's keys and the pin its mappings are bound to; 0 when they
 * conflict (two keys of one kind, two pins): such a certificate is never
 * exported.
 */
static int certificate_keys(const export_state *s, const struct map_entry *first, size_t n,
                            cs_key keys[CS_KIND_COUNT], const char **issuer_fp)
{
    memset(keys, 0, CS_KIND_COUNT * sizeof(*keys));
    *issuer_fp = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct map_entry *e = &first[i];
        const char *pin = (const char *)s->arena + e->at + e->key_len;
        if (keys[e->kind].len != 0)
            return 0;
        memcpy(keys[e->kind].bytes, s->arena + e->at, e->key_len);
        keys[e->kind].len = e->key_len;
        if (e->has_pin && *issuer_fp != NULL && strcmp(*issuer_fp, pin) != 0)
            return 0;
        if (e->has_pin)
            *issuer_fp = pin;
    }
    return 1;
}

static int export_mapping(const cs_mapping *m, void *arg)
{
    export_state *s = arg;
    char key[2 * CS_KEY_MAX + 2];
    cs_mapping_ref ref = {.id = m->id};
    int nibc = 0;
    if (skip_mapping(s, m))
        return 0;
    if (s->format == EXPORT_HAPROXY || s->format == EXPORT_NGINX)
        return collect_for_map(s, m);
    if ((s->lookup_failed = cs_mapping_get_not_issued_before_created(s->db, &ref, &nibc)) != CS_OK)
        return 1;
    cs_key_format(m->kind, &m->key, key, sizeof(key));
    if (s->format == EXPORT_CSV)
        write_csv(m, key, !account_disabled(s, m->account), nibc);
    else
        write_json(m, key, !account_disabled(s, m->account), nibc);
    s->written++;
    return 0;
}

/*
 * One line per certificate the policy accepts, with the account it decides,
 * ordered by fingerprint. Written only once every certificate is decided:
 * a map is whole or not written at all.
 */
static cs_status decide_map(export_state *s, FILE *out)
{
    if (s->n_entries > 0)
        qsort(s->entries, s->n_entries, sizeof(*s->entries), by_certificate);
    for (size_t i = 0, n; i < s->n_entries; i += n) {
        const struct map_entry *first = &s->entries[i];
        cs_key keys[CS_KIND_COUNT];
        const char *issuer_fp;
        cs_decision d;
        for (n = 1; i + n < s->n_entries && same_certificate(first, first + n); n++)
            ;
        if (!certificate_keys(s, first, n, keys, &issuer_fp)) {
            s->skipped_conflict++;
            continue;
        }
        cs_decide_keys(s->db, keys, issuer_fp, s->now, &d);
        if (d.reason == CS_REASON_STORE_UNAVAILABLE) {
            snprintf(s->store_detail, sizeof(s->store_detail), "%s", d.detail);
            return CS_ERR;
        }
        if (!d.accept) {
            s->left_out[d.reason]++;
            continue;
        }
        if (!map_safe_name(d.account)) {
            s->skipped_name++;
            continue;
        }
        cli_put_hex(out, first->id, first->id_len);
        fprintf(out, s->format == EXPORT_NGINX ? " %s;\n" : " %s\n", d.account);
        s->written++;
    }
    return CS_OK;
}

static cs_status write_map(export_state *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) {
        snprintf(s->store_detail, sizeof(s->store_detail), "out of memory");
        return CS_ERR;
    }
    cs_status st = decide_map(s, out);
    if (fclose(out) != 0 && st == CS_OK) {
        snprintf(s->store_detail, sizeof(s->store_detail), "out of memory");
        st = CS_ERR;
    }
    if (st == CS_OK)
        fwrite(text, 1, len, stdout);
    free(text);
    return st;
}

static void report_skipped(const cli_ctx *ctx, const export_state *s)
{
    if (s->format == EXPORT_CSV || s->format == EXPORT_JSON) {
        if (s->skipped_unbound > 0)
            fprintf(stderr,
                    "certstore: %s: exported %lld, skipped %lld mappings (%lld unbound: they "
                    "never match)\n",
                    ctx->name, (long long)s->written, (long long)s->skipped_unbound,
                    (long long)s->skipped_unbound);
        return;
    }
    int64_t total = s->skipped_kind + s->skipped_name + s->skipped_unbound + s->skipped_conflict;
    for (int r = 0; r < CS_REASON_COUNT; r++)
        total += s->left_out[r];
    if (total == 0)
        return;
    fprintf(stderr, "certstore: %s: exported %lld certificates; left out:", ctx->name,
            (long long)s->written);
    for (int r = 0; r < CS_REASON_COUNT; r++)
        if (s->left_out[r] > 0)
            fprintf(stderr, " %lld %s,", (long long)s->left_out[r], cs_reason_token((cs_reason)r));
    fprintf(
        stderr,
        " %lld mappings without a key this format can use, %lld unbound: they never match, %lld "
        "certificates whose account name is unsafe in a map file, %lld with conflicting "
        "mappings\n",
        (long long)s->skipped_kind, (long long)s->skipped_unbound, (long long)s->skipped_name,
        (long long)s->skipped_conflict);
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
    if (s->out_of_memory)
        return cli_fail(ctx, "out of memory");
    if ((s->format == EXPORT_HAPROXY || s->format == EXPORT_NGINX) && write_map(s) != CS_OK)
        return cli_fail(ctx, "%s: the policy cannot be read (%s); nothing exported", cs_db_path(db),
                        s->store_detail);
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
    "  haproxy-map  '<sha256> <account>' for certificates with a kind cert\n"
    "               mapping, for HAProxy's map(): ssl_c_der,digest(sha256),hex,lower\n"
    "  nginx-map    '<sha1> <account>;' for certificates mappings were made\n"
    "               from, for an nginx map on $ssl_client_fingerprint\n"
    "\n"
    "A map has one line per certificate, with the account the policy decides\n"
    "for it now from its mappings (cert first, then issuer-serial, ski, spki),\n"
    "as a handshake would. A certificate it would reject (mapping or account\n"
    "disabled, outside the validity window, the backdating check, which needs\n"
    "the certificate) or that only a rule admits (rules need the certificate)\n"
    "is left out, as is one whose account name would need quoting; the counts\n"
    "go to stderr, by reason.\n",
};
