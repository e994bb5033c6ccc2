/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore sync: make the store's directory-owned rows equal to what an
 * Active Directory or LDAP server holds, in one transaction. The directory
 * is read in full before the store is locked; any failure leaves the store
 * as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "sync_ldap.h"

#define PASSWORD_MAX 1024

/*
 * Notes (entries skipped, values refused, conflicts) are held back and
 * printed only when the sync succeeds: a failure is one line.
 */
typedef struct {
    const cli_ctx *ctx;
    char *text;
    size_t len;
    FILE *out; /* open_memstream over text */
} note_sink;

static void add_note(note_sink *n, const char *kind, long long where, const char *why)
{
    if (n->out == NULL)
        return;
    fprintf(n->out, "certstore: %s: note: ", n->ctx->name);
    if (where > 0)
        fprintf(n->out, "%s %lld: ", kind, where);
    cli_put_text(n->out, why);
    fputc('\n', n->out);
}

static void print_note(long where, const char *why, void *arg)
{
    add_note(arg, "entry", where, why);
}

static void print_store_note(int64_t where, const char *why, void *arg)
{
    add_note(arg, "user", (long long)where, why);
}

static void end_notes(note_sink *n, int show)
{
    if (n->out != NULL)
        fclose(n->out);
    if (show && n->text != NULL)
        fwrite(n->text, 1, n->len, stderr);
    free(n->text);
}

/* The first line of the file; never from the command line (ps shows it). */
static int read_password(const cli_ctx *ctx, const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    size_t n;

    if (f == NULL)
        return cli_fail(ctx, "--password-file %s: %s", path, strerror(errno)), 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
        cli_warn(ctx, "--password-file %s can be read by others (mode %04o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
    n = fread(out, 1, len - 1, f);
    fclose(f);
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    if (out[0] == '\0')
        return cli_fail(ctx, "--password-file %s: empty", path), 0;
    return 1;
}

static void print_result(const char *source, const cs_sync_result *r, size_t users, int json,
                         int dry_run)
{
    if (json) {
        printf("{\"source\":");
        cli_put_json_string(stdout, source);
        printf(",\"dry_run\":%s,\"users\":%zu,\"pins_added\":%lld,\"pins_removed\":%lld,"
               "\"accounts_added\":%lld,\"accounts_removed\":%lld,\"accounts_disabled\":%lld,"
               "\"accounts_enabled\":%lld,\"mappings_added\":%lld,\"mappings_removed\":%lld,"
               "\"mappings_kept\":%lld,\"rules_added\":%lld,\"rules_removed\":%lld,"
               "\"refused\":%lld,\"conflicts\":%lld}\n",
               dry_run ? "true" : "false", users, (long long)r->pins_added,
               (long long)r->pins_removed, (long long)r->accounts_added,
               (long long)r->accounts_removed, (long long)r->accounts_disabled,
               (long long)r->accounts_enabled, (long long)r->mappings_added,
               (long long)r->mappings_removed, (long long)r->mappings_kept,
               (long long)r->rules_added, (long long)r->rules_removed, (long long)r->refused,
               (long long)r->conflicts);
        return;
    }
    printf("%s ", dry_run ? "would sync" : "synced");
    cli_put_text(stdout, source);
    printf(": %zu users; pins +%lld -%lld; accounts +%lld -%lld, %lld disabled, %lld enabled; "
           "mappings +%lld -%lld (%lld unchanged); rules +%lld -%lld; %lld refused, %lld "
           "conflicts\n",
           users, (long long)r->pins_added, (long long)r->pins_removed,
           (long long)r->accounts_added, (long long)r->accounts_removed,
           (long long)r->accounts_disabled, (long long)r->accounts_enabled,
           (long long)r->mappings_added, (long long)r->mappings_removed,
           (long long)r->mappings_kept, (long long)r->rules_added, (long long)r->rules_removed,
           (long long)r->refused, (long long)r->conflicts);
}

static int parse_schema(const cli_ctx *ctx, const char *text, sync_config *cfg)
{
    if (text == NULL || strcmp(text, "ad") == 0)
        cfg->schema = SYNC_SCHEMA_AD;
    else if (strcmp(text, "ldap") == 0)
        cfg->schema = SYNC_SCHEMA_LDAP;
    else
        return cli_usage_error(ctx, "--schema: '%s' is not ad or ldap", text);
    if (cfg->schema == SYNC_SCHEMA_AD) {
        cfg->account_attr = cfg->account_attr ? cfg->account_attr : "sAMAccountName";
        cfg->mapping_attr = cfg->mapping_attr ? cfg->mapping_attr : "altSecurityIdentities";
        cfg->pins_attr = cfg->pins_attr ? cfg->pins_attr : "cACertificate";
    } else {
        cfg->account_attr = cfg->account_attr ? cfg->account_attr : "uid";
        cfg->mapping_attr = cfg->mapping_attr ? cfg->mapping_attr : "altSecurityIdentities";
        cfg->pins_attr = cfg->pins_attr ? cfg->pins_attr : "cACertificate;binary";
    }
    return CLI_CONTINUE;
}

/* "none" turns an attribute off. */
static const char *attribute_or_none(const char *value)
{
    return value != NULL && strcmp(value, "none") == 0 ? NULL : value;
}

static int check_options(const cli_ctx *ctx, const sync_config *cfg, const char *password_file,
                         const char *timeout, const char *max_removal, int *percent)
{
    char *end = NULL;

    if (cfg->uri == NULL)
        return cli_usage_error(ctx, "--uri is required");
    if (cfg->base == NULL)
        return cli_usage_error(ctx, "--base is required");
    if (strncmp(cfg->uri, "ldap://", 7) != 0 && strncmp(cfg->uri, "ldaps://", 8) != 0 &&
        strncmp(cfg->uri, "ldapi://", 8) != 0)
        return cli_usage_error(ctx, "--uri: '%s' is not ldap://, ldaps:// or ldapi://", cfg->uri);
    if (cfg->insecure && strncmp(cfg->uri, "ldap://", 7) != 0)
        return cli_usage_error(ctx, "--insecure is for ldap:// URIs only");
    if ((cfg->bind_dn == NULL) != (password_file == NULL))
        return cli_usage_error(ctx, "--bind-dn and --password-file go together");
    if (timeout != NULL && (strtol(timeout, &end, 10) <= 0 || *end != '\0'))
        return cli_usage_error(ctx, "--timeout: '%s' is not a number of seconds", timeout);
    if (max_removal != NULL) {
        long p = strtol(max_removal, &end, 10);

        if (p < 0 || p > 100 || *end != '\0' || end == max_removal)
            return cli_usage_error(ctx, "--max-removal: '%s' is not a percentage (0..100)",
                                   max_removal);
        *percent = (int)p;
    }
    if (cfg->schema == SYNC_SCHEMA_AD && cfg->disabled_attr != NULL)
        return cli_usage_error(ctx, "--disabled-attribute is for --schema ldap (AD: "
                                    "userAccountControl)");
    if (cfg->mapping_attr == NULL && cfg->cert_attr == NULL)
        return cli_usage_error(ctx, "nothing to map: both --mapping-attribute and "
                                    "--cert-attribute are none");
    return CLI_CONTINUE;
}

static int apply_snapshot(cli_ctx *ctx, const cs_sync_snapshot *snap, const cs_sync_opts *opts,
                          note_sink *notes, int json, int dry_run)
{
    cs_sync_result res;
    cs_db *db = cli_begin_write(ctx);
    cs_status st;
    int rc;

    if (db == NULL)
        return CLI_FAIL;
    st = cs_sync_apply(db, snap, opts, print_store_note, notes, &res);
    if (st != CS_OK) {
        cli_fail(ctx, "%s; the store is unchanged", cs_db_errmsg(db));
        cs_db_rollback(db);
        cs_db_close(db);
        return CLI_FAIL;
    }
    if (dry_run) {
        cs_db_rollback(db);
        cs_db_close(db);
        rc = CLI_OK;
    } else {
        rc = cli_end_write(ctx, db, CS_OK);
    }
    if (rc == CLI_OK) {
        end_notes(notes, 1);
        notes->out = NULL;
        notes->text = NULL;
        print_result(opts->source, &res, cs_sync_snapshot_users(snap), json, dry_run);
    }
    return rc;
}

static int run_sync(cli_ctx *ctx, int argc, char **argv)
{
    sync_config cfg = {.timeout = 30};
    const char *schema = NULL, *password_file = NULL, *timeout = NULL, *max_removal = NULL;
    const char *account_attr = NULL, *mapping_attr = NULL, *cert_attr = NULL;
    int json = 0, dry_run = 0, allow_weak = 0, allow_mass = 0, percent = 10;
    const cli_option opts[] = {{"uri", &cfg.uri, NULL},
                               {"base", &cfg.base, NULL},
                               {"schema", &schema, NULL},
                               {"ca", &cfg.ca_file, NULL},
                               {"insecure", NULL, &cfg.insecure},
                               {"bind-dn", &cfg.bind_dn, NULL},
                               {"password-file", &password_file, NULL},
                               {"account-attribute", &account_attr, NULL},
                               {"mapping-attribute", &mapping_attr, NULL},
                               {"cert-attribute", &cert_attr, NULL},
                               {"pins-dn", &cfg.pins_dn, NULL},
                               {"pins-attribute", &cfg.pins_attr, NULL},
                               {"filter", &cfg.filter, NULL},
                               {"disabled-attribute", &cfg.disabled_attr, NULL},
                               {"timeout", &timeout, NULL},
                               {"allow-weak", NULL, &allow_weak},
                               {"allow-mass-removal", NULL, &allow_mass},
                               {"max-removal", &max_removal, NULL},
                               {"dry-run", NULL, &dry_run},
                               {"json", NULL, &json},
                               CLI_OPTIONS_END};
    cli_positional pos;
    char password[PASSWORD_MAX], err[1024], source[CS_SOURCE_MAX];
    note_sink notes = {.ctx = ctx};
    cs_sync_snapshot *snap;
    cs_sync_opts sopts;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    cfg.account_attr = account_attr;
    cfg.mapping_attr = mapping_attr;
    cfg.cert_attr = attribute_or_none(cert_attr);
    if ((rc = parse_schema(ctx, schema, &cfg)) != CLI_CONTINUE)
        return rc;
    cfg.mapping_attr = attribute_or_none(cfg.mapping_attr);
    if ((rc = check_options(ctx, &cfg, password_file, timeout, max_removal, &percent)) !=
        CLI_CONTINUE)
        return rc;
    if (timeout != NULL)
        cfg.timeout = (int)strtol(timeout, NULL, 10);
    if (snprintf(source, sizeof(source), "sync:%s", cfg.base) >= (int)sizeof(source))
        return cli_usage_error(ctx, "--base is too long");
    if (password_file != NULL && !read_password(ctx, password_file, password, sizeof(password)))
        return CLI_FAIL;
    cfg.password = password_file != NULL ? password : NULL;
    notes.out = open_memstream(&notes.text, &notes.len);
    if ((snap = cs_sync_snapshot_new()) == NULL || notes.out == NULL) {
        end_notes(&notes, 0);
        cs_sync_snapshot_free(snap);
        return cli_fail(ctx, "out of memory");
    }
    if (sync_ldap_read(&cfg, snap, print_note, &notes, err, sizeof(err)) != 0) {
        cli_fail(ctx, "%s; the store is unchanged", err);
        rc = CLI_FAIL;
    } else {
        sopts = (cs_sync_opts){.source = source,
                               .allow_weak = allow_weak,
                               .allow_mass_removal = allow_mass,
                               .max_removal_percent = percent};
        rc = apply_snapshot(ctx, snap, &sopts, &notes, json, dry_run);
    }
    end_notes(&notes, 0);
    explicit_bzero(password, sizeof(password));
    cs_sync_snapshot_free(snap);
    return rc;
}

const cli_command cli_cmd_sync = {
    "sync",
    "make the store match Active Directory or an LDAP directory",
    run_sync,
    "Usage: certstore sync --uri URI --base DN [--schema ad|ldap]\n"
    "                      [--bind-dn DN --password-file FILE] [--ca FILE] [--insecure]\n"
    "                      [--account-attribute ATTR] [--mapping-attribute ATTR|none]\n"
    "                      [--cert-attribute ATTR|none] [--pins-dn DN]\n"
    "                      [--pins-attribute ATTR] [--filter FILTER]\n"
    "                      [--disabled-attribute ATTR[=VALUE]] [--timeout SECONDS]\n"
    "                      [--allow-weak] [--allow-mass-removal] [--max-removal PERCENT]\n"
    "                      [--dry-run] [--json]\n"
    "\n"
    "Read the directory in full, then make the rows this sync owns (source\n"
    "sync:BASE-DN) equal to it in one transaction: pins from the CA\n"
    "certificates of the pins' object, one account per user (disabled when the\n"
    "directory disables the user, removed when the user is gone), one mapping\n"
    "per altSecurityIdentities-style value (parsed as 'certstore import\n"
    "--format altsecid' does: <I>..<SR>.. becomes an issuer-serial mapping\n"
    "bound to the pin whose subject is <I>; weak forms become rules only with\n"
    "--allow-weak; <SKI> and <SHA1-PUKEY> are refused) and one cert mapping\n"
    "per whole certificate. Rows made with the CLI are never changed; where\n"
    "the directory names one, that is reported as a conflict. An unchanged\n"
    "directory changes nothing (the policy generation stays).\n"
    "\n"
    "Nothing changes, and the exit status is 1 with one line saying why, when\n"
    "the server cannot be reached, TLS or the bind fails, a search ends in\n"
    "anything but success (size or time limit, a referral, paging cut short),\n"
    "an entry is malformed, or the sync would remove more than PERCENT of the\n"
    "mappings it owns or every pin it owns (a wrong base DN looks like that).\n"
    "\n"
    "  --uri URI              ldaps://HOST, ldap://HOST (StartTLS) or ldapi://\n"
    "  --base DN              where users are searched (subtree); names the source\n"
    "  --schema ad|ldap       ad (default): pins from the forest's NTAuth object\n"
    "                         (cACertificate), accounts from sAMAccountName,\n"
    "                         userAccountControl ACCOUNTDISABLE disables;\n"
    "                         ldap: accounts from uid, pins only with --pins-dn\n"
    "  --bind-dn DN           simple bind as DN (default: anonymous)\n"
    "  --password-file FILE   the bind password: first line of FILE\n"
    "  --ca FILE              CA certificates the server's certificate must chain to\n"
    "  --insecure             ldap:// without TLS (tests, or a trusted local link)\n"
    "  --account-attribute ATTR   the account name (one value per user; AD:\n"
    "                         sAMAccountName or userPrincipalName)\n"
    "  --mapping-attribute ATTR   altSecurityIdentities-style values (default\n"
    "                         altSecurityIdentities; FreeIPA: ipaCertMapData)\n"
    "  --cert-attribute ATTR  whole certificates mapped as cert (e.g.\n"
    "                         userCertificate;binary; default none)\n"
    "  --pins-dn DN           the object whose CA certificates are the pins\n"
    "  --pins-attribute ATTR  its attribute (ad: cACertificate, ldap:\n"
    "                         cACertificate;binary)\n"
    "  --filter FILTER        which entries are users (default: those with a\n"
    "                         mapping or certificate attribute)\n"
    "  --disabled-attribute ATTR[=VALUE]  ldap: a user with ATTR (equal to VALUE,\n"
    "                         any case) is disabled, e.g. nsAccountLock=TRUE\n"
    "  --timeout SECONDS      for connecting and each operation (default 30)\n"
    "  --allow-weak           weak altSecurityIdentities forms become rules\n"
    "  --allow-mass-removal   skip the removal guard\n"
    "  --max-removal PERCENT  the guard's share of owned mappings (default 10)\n"
    "  --dry-run              show what would change, change nothing\n"
    "  --json                 the summary as one JSON object\n",
};
