/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore sync: make the store's directory-owned rows equal to what an
 * Active Directory or LDAP server holds, in one transaction. The directory
 * is read in full before the store is locked; any failure leaves the store
 * as it was.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sync_ldap.h"

#define PASSWORD_MAX 1024
#define CONFIG_DEFAULT "/etc/certstore/sync.conf"
#define CONFIG_MAX_BYTES (64 * 1024)
#define CONFIG_MAX_ARGS 64

/*
 * The configuration file as command-line words: each "key = value" line
 * becomes "--key=value", a bare "key" becomes "--key"; '#' starts a comment
 * line. Parsed before the command line, so the command line wins.
 */
typedef struct {
    int argc;
    char *argv[CONFIG_MAX_ARGS + 1];
} config_args;

static void config_free(config_args *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    c->argc = 0;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

static int known_key(const cli_option *opts, const char *key)
{
    for (; opts->name != NULL; opts++)
        if (strcmp(opts->name, key) == 0 && strcmp(key, "config") != 0)
            return 1;
    return 0;
}

/* The lines of an open configuration file into c; 0 (message printed) on error. */
static int config_lines(const cli_ctx *ctx, FILE *f, const char *path, const cli_option *opts,
                        config_args *c)
{
    char line[2048];
    int lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        char *key, *value = NULL, *eq, *word;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f))
            return cli_fail(ctx, "%s:%d: line too long", path, lineno), 0;
        line[strcspn(line, "\n")] = '\0';
        key = trim(line);
        if (*key == '\0' || *key == '#')
            continue;
        if ((eq = strchr(key, '=')) != NULL) {
            *eq = '\0';
            value = trim(eq + 1);
            key = trim(key);
        }
        if (!known_key(opts, key))
            return cli_fail(ctx, "%s:%d: unknown key '%s'", path, lineno, key), 0;
        if (c->argc == CONFIG_MAX_ARGS)
            return cli_fail(ctx, "%s:%d: too many keys", path, lineno), 0;
        if ((word = malloc(strlen(key) + (value ? strlen(value) : 0) + 4)) == NULL)
            return cli_fail(ctx, "out of memory"), 0;
        sprintf(word, value ? "--%s=%s" : "--%s", key, value);
        c->argv[c->argc++] = word;
    }
    return 1;
}

/* A file others may write could point the sync at another directory: refused. */
static int config_read(const cli_ctx *ctx, const char *path, const cli_option *opts, config_args *c)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    int ok;

    if (f == NULL)
        return cli_fail(ctx, "--config %s: %s", path, strerror(errno)), 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES ||
        (st.st_mode & 022) != 0 || (st.st_uid != 0 && st.st_uid != geteuid())) {
        fclose(f);
        return cli_fail(ctx,
                        "%s: refused: not a regular file of at most %d bytes, owned by root or "
                        "us and writable by no one else",
                        path, CONFIG_MAX_BYTES),
               0;
    }
    c->argc = 0;
    c->argv[c->argc++] = strdup("sync"); /* cli_parse skips argv[0] */
    ok = c->argv[0] != NULL ? config_lines(ctx, f, path, opts, c)
                            : (cli_fail(ctx, "out of memory"), 0);
    fclose(f);
    c->argv[c->argc] = NULL;
    return ok;
}

/* --config FILE from the command line; the default file when there is no --uri. */
static const char *config_path(int argc, char **argv)
{
    int uri = 0;

    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
        uri |= strcmp(argv[i], "--uri") == 0 || strncmp(argv[i], "--uri=", 6) == 0;
    }
    return !uri && access(CONFIG_DEFAULT, F_OK) == 0 ? CONFIG_DEFAULT : NULL;
}

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

/* How a sync went, beyond the store's counts. */
typedef struct {
    int incremental;
    const char *deletions; /* incremental: "deleted-objects" or "next-full-pass" */
    sync_read_info read;
} sync_pass;

static void print_result(const char *verb, const char *source, const cs_sync_result *r,
                         size_t users, const sync_pass *p, int json, int dry_run)
{
    if (json) {
        printf("{\"source\":");
        cli_put_json_string(stdout, source);
        printf(",\"dry_run\":%s,\"pass\":\"%s\",\"entries\":%ld,\"deleted\":%ld,"
               "\"left\":%ld,\"deletions\":",
               dry_run ? "true" : "false", p->incremental ? "incremental" : "full", p->read.entries,
               p->read.deleted, p->read.left);
        cli_put_json_string(stdout, p->incremental ? p->deletions : NULL);
        printf(",\"users\":%zu,\"pins_added\":%lld,\"pins_removed\":%lld,"
               "\"accounts_added\":%lld,\"accounts_removed\":%lld,\"accounts_disabled\":%lld,"
               "\"accounts_enabled\":%lld,\"mappings_added\":%lld,\"mappings_removed\":%lld,"
               "\"mappings_kept\":%lld,\"rules_added\":%lld,\"rules_removed\":%lld,"
               "\"refused\":%lld,\"conflicts\":%lld}\n",
               users, (long long)r->pins_added, (long long)r->pins_removed,
               (long long)r->accounts_added, (long long)r->accounts_removed,
               (long long)r->accounts_disabled, (long long)r->accounts_enabled,
               (long long)r->mappings_added, (long long)r->mappings_removed,
               (long long)r->mappings_kept, (long long)r->rules_added, (long long)r->rules_removed,
               (long long)r->refused, (long long)r->conflicts);
        fflush(stdout);
        return;
    }
    printf("%s ", verb);
    cli_put_text(stdout, source);
    if (p->incremental)
        printf(" (incremental: %ld entries read, %ld deleted, %ld left the filter; deletions: "
               "%s)",
               p->read.entries, p->read.deleted, p->read.left, p->deletions);
    else
        printf(" (full: %ld entries read)", p->read.entries);
    printf(": %zu users; pins +%lld -%lld; accounts +%lld -%lld, %lld disabled, %lld enabled; "
           "mappings +%lld -%lld (%lld unchanged); rules +%lld -%lld; %lld refused, %lld "
           "conflicts\n",
           users, (long long)r->pins_added, (long long)r->pins_removed,
           (long long)r->accounts_added, (long long)r->accounts_removed,
           (long long)r->accounts_disabled, (long long)r->accounts_enabled,
           (long long)r->mappings_added, (long long)r->mappings_removed,
           (long long)r->mappings_kept, (long long)r->rules_added, (long long)r->rules_removed,
           (long long)r->refused, (long long)r->conflicts);
    fflush(stdout);
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

/* N, Ns, Nm, Nh or Nd as seconds; -1 when not that. */
static long long parse_duration(const char *text)
{
    char *end = NULL;
    long long n;

    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    n = strtoll(text, &end, 10);
    if (n < 0 || n > 10LL * 365 * 86400)
        return -1;
    if (*end == '\0' || strcmp(end, "s") == 0)
        return n;
    if (strcmp(end, "m") == 0)
        return n * 60;
    if (strcmp(end, "h") == 0)
        return n * 3600;
    if (strcmp(end, "d") == 0)
        return n * 86400;
    return -1;
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

/* Every option of the command line and the configuration file. */
typedef struct {
    sync_config cfg;
    const char *schema, *password_file, *timeout, *max_removal, *config;
    const char *account_attr, *mapping_attr, *cert_attr, *full_every, *poll;
    int json, dry_run, allow_weak, allow_mass, full, follow;
} sync_args;

/* A checked sync, run once or again and again (--follow). */
typedef struct {
    cli_ctx *ctx;
    sync_args *a;
    char source[CS_SOURCE_MAX];
    int percent;
    long long full_every; /* seconds between full passes */
    int poll;             /* --follow: seconds between polls */
    int follow;
    int first_done; /* --follow: the first sync succeeded (later ones print when they change) */
    long long usn;  /* AD: highestCommittedUSN of the last successful sync */
} syncer;

/* The source's mark as stored; zeroed when none (or the store cannot say). */
static void stored_mark(syncer *sy, cs_sync_mark *mark)
{
    cs_db *db = cli_open_read(sy->ctx);

    memset(mark, 0, sizeof(*mark));
    if (db == NULL)
        return;
    if (cs_sync_mark_get(db, sy->source, mark) != CS_OK)
        memset(mark, 0, sizeof(*mark));
    cs_db_close(db);
}

/* What decides how entries become rows: when it changes, the next sync is a full pass. */
static void read_settings(const syncer *sy, char *out, size_t len)
{
    const sync_config *c = &sy->a->cfg;

    snprintf(out, len, "weak=%d account=%s mapping=%s cert=%s pins=%s/%s filter=%s",
             sy->a->allow_weak, c->account_attr, c->mapping_attr ? c->mapping_attr : "none",
             c->cert_attr ? c->cert_attr : "none", c->pins_dn ? c->pins_dn : "-", c->pins_attr,
             c->filter ? c->filter : "-");
}

/*
 * Full pass or incremental (AD only): incremental when the stored mark is
 * of the same DC (dsServiceName and invocationId: a DC restored from a
 * backup gets a new invocationId and reuses USNs) and the last full pass
 * is younger than --full-every.
 */
static int choose_incremental(const syncer *sy, const cs_sync_mark *old, const cs_sync_mark *now)
{
    return sy->a->cfg.schema == SYNC_SCHEMA_AD && !sy->a->full && old->usn > 0 &&
           strcmp(old->server, now->server) == 0 &&
           strcmp(old->invocation_id, now->invocation_id) == 0 &&
           strcmp(old->settings, now->settings) == 0 && old->last_full > 0 &&
           (long long)time(NULL) - old->last_full < sy->full_every && now->usn >= old->usn;
}

/* Apply in one transaction; 0, or -1 with the failure printed (with the retry suffix). */
static int apply_snapshot(syncer *sy, const cs_sync_snapshot *snap, const cs_sync_opts *opts,
                          const sync_pass *pass, note_sink *notes, const char *retry)
{
    cs_sync_result res;
    cs_db *db = cli_begin_write(sy->ctx);
    cs_status st;
    int rc;

    if (db == NULL)
        return -1;
    st = cs_sync_apply(db, snap, opts, print_store_note, notes, &res);
    if (st != CS_OK) {
        cli_fail(sy->ctx, "%s; the store is unchanged%s", cs_db_errmsg(db), retry);
        cs_db_rollback(db);
        cs_db_close(db);
        return -1;
    }
    if (sy->a->dry_run) {
        cs_db_rollback(db);
        cs_db_close(db);
        rc = CLI_OK;
    } else {
        rc = cli_end_write(sy->ctx, db, CS_OK);
    }
    if (rc != CLI_OK)
        return -1;
    end_notes(notes, 1);
    notes->out = NULL;
    notes->text = NULL;
    if (!sy->follow || !sy->first_done || cs_sync_changed(&res))
        print_result(sy->follow       ? "applied"
                     : sy->a->dry_run ? "would sync"
                                      : "synced",
                     sy->source, &res, cs_sync_snapshot_users(snap), pass, sy->a->json,
                     sy->a->dry_run);
    return 0;
}

/* One sync over an open connection; 0, or -1 with one line printed. */
static int sync_once(syncer *sy, sync_conn *conn, const char *retry)
{
    sync_config *cfg = &sy->a->cfg;
    char err[1024];
    note_sink notes = {.ctx = sy->ctx};
    cs_sync_mark old, now;
    sync_pass pass;
    cs_sync_snapshot *snap;
    cs_sync_opts sopts;
    int rc;

    memset(&pass, 0, sizeof(pass));
    memset(&now, 0, sizeof(now));
    stored_mark(sy, &old);
    if (cfg->schema == SYNC_SCHEMA_AD && sync_ldap_ad_position(conn, &now, err, sizeof(err)) != 0)
        return cli_fail(sy->ctx, "%s; the store is unchanged%s", err, retry), -1;
    read_settings(sy, now.settings, sizeof(now.settings));
    pass.incremental = choose_incremental(sy, &old, &now);
    pass.read.pins_usn = old.pins_usn;
    notes.out = open_memstream(&notes.text, &notes.len);
    if ((snap = cs_sync_snapshot_new()) == NULL || notes.out == NULL) {
        end_notes(&notes, 0);
        cs_sync_snapshot_free(snap);
        return cli_fail(sy->ctx, "out of memory"), -1;
    }
    if (sync_ldap_read(conn, pass.incremental ? old.usn : 0, snap, &pass.read, print_note, &notes,
                       err, sizeof(err)) != 0) {
        cli_fail(sy->ctx, "%s; the store is unchanged%s", err, retry);
        rc = -1;
    } else {
        pass.deletions = pass.read.deleted_objects ? "deleted-objects" : "next-full-pass";
        now.pins_usn = pass.read.pins_usn;
        now.last_full = pass.incremental ? old.last_full : (int64_t)time(NULL);
        sopts = (cs_sync_opts){.source = sy->source,
                               .allow_weak = sy->a->allow_weak,
                               .allow_mass_removal = sy->a->allow_mass,
                               .max_removal_percent = sy->percent,
                               .incremental = pass.incremental,
                               .mark = &now};
        rc = apply_snapshot(sy, snap, &sopts, &pass, &notes, retry);
        if (rc == 0) {
            sy->usn = now.usn;
            sy->first_done = 1;
        }
    }
    end_notes(&notes, 0);
    cs_sync_snapshot_free(snap);
    return rc;
}

/* ---- --follow ------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void request_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sleep up to seconds, in slices, until a stop is requested. */
static void nap(int seconds)
{
    for (int i = 0; i < seconds * 10 && !stop_requested; i++) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
}

#define BACKOFF_MAX 60

/*
 * Keep the store equal to the directory: sync, then poll the DC's
 * highestCommittedUSN every --poll seconds (one root DSE read) and sync
 * incrementally when it moved. A failure is one line and a retry after a
 * backoff (1 s doubling to 60 s) on a new connection; the store keeps its
 * last good state. SIGTERM or SIGINT ends it with status 0.
 */
static int follow(syncer *sy)
{
    struct sigaction sa;
    sync_conn *conn = NULL;
    int backoff = 1;
    char err[1024], retry[64];

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop_requested) {
        long long usn = 0;
        int failed = 0;

        snprintf(retry, sizeof(retry), "; retrying in %d s", backoff);
        if (conn == NULL && sync_ldap_open(&sy->a->cfg, &conn, err, sizeof(err)) != 0) {
            cli_fail(sy->ctx, "%s; the store is unchanged%s", err, retry);
            failed = 1;
        } else if (sy->first_done && sy->a->cfg.schema == SYNC_SCHEMA_AD) {
            if (sync_ldap_ad_usn(conn, &usn, err, sizeof(err)) != 0) {
                cli_fail(sy->ctx, "%s; the store is unchanged%s", err, retry);
                failed = 1;
            } else if (usn != sy->usn) {
                failed = sync_once(sy, conn, retry) != 0;
            }
        } else {
            failed = sync_once(sy, conn, retry) != 0;
        }
        if (stop_requested)
            break;
        if (failed) {
            fflush(stderr);
            sync_ldap_close(conn);
            conn = NULL;
            nap(backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
        } else {
            backoff = 1;
            nap(sy->poll);
        }
    }
    sync_ldap_close(conn);
    return CLI_OK;
}

/* Options parsed: check them, read the directory, apply it. */
static int sync_with(cli_ctx *ctx, sync_args *a)
{
    sync_config *cfg = &a->cfg;
    char password[PASSWORD_MAX] = "", err[1024];
    syncer sy = {.ctx = ctx, .a = a, .percent = 10, .full_every = 86400, .poll = 5};
    sync_conn *conn = NULL;
    int rc;

    cfg->account_attr = a->account_attr;
    cfg->mapping_attr = a->mapping_attr;
    cfg->cert_attr = attribute_or_none(a->cert_attr);
    if ((rc = parse_schema(ctx, a->schema, cfg)) != CLI_CONTINUE)
        return rc;
    cfg->mapping_attr = attribute_or_none(cfg->mapping_attr);
    if ((rc = check_options(ctx, cfg, a->password_file, a->timeout, a->max_removal, &sy.percent)) !=
        CLI_CONTINUE)
        return rc;
    if (a->full_every != NULL && (sy.full_every = parse_duration(a->full_every)) < 0)
        return cli_usage_error(ctx, "--full-every: '%s' is not a duration (N, Ns, Nm, Nh, Nd)",
                               a->full_every);
    if (a->poll != NULL) {
        long long p = parse_duration(a->poll);

        if (p < 1 || p > 86400)
            return cli_usage_error(ctx, "--poll: '%s' is not 1 to 86400 seconds", a->poll);
        sy.poll = (int)p;
    }
    if (a->follow && a->dry_run)
        return cli_usage_error(ctx, "--follow and --dry-run do not go together");
    sy.follow = a->follow;
    if (a->timeout != NULL)
        cfg->timeout = (int)strtol(a->timeout, NULL, 10);
    if (snprintf(sy.source, sizeof(sy.source), "sync:%s", cfg->base) >= (int)sizeof(sy.source))
        return cli_usage_error(ctx, "--base is too long");
    if (a->password_file != NULL &&
        !read_password(ctx, a->password_file, password, sizeof(password)))
        return CLI_FAIL;
    cfg->password = a->password_file != NULL ? password : NULL;
    if (a->follow) {
        rc = follow(&sy);
    } else if (sync_ldap_open(cfg, &conn, err, sizeof(err)) != 0) {
        rc = cli_fail(ctx, "%s; the store is unchanged", err);
    } else {
        rc = sync_once(&sy, conn, "") == 0 ? CLI_OK : CLI_FAIL;
        sync_ldap_close(conn);
    }
    explicit_bzero(password, sizeof(password));
    return rc;
}

static int run_sync(cli_ctx *ctx, int argc, char **argv)
{
    sync_args a = {.cfg = {.timeout = 30}};
    const cli_option opts[] = {{"uri", &a.cfg.uri, NULL},
                               {"base", &a.cfg.base, NULL},
                               {"schema", &a.schema, NULL},
                               {"ca", &a.cfg.ca_file, NULL},
                               {"insecure", NULL, &a.cfg.insecure},
                               {"bind-dn", &a.cfg.bind_dn, NULL},
                               {"password-file", &a.password_file, NULL},
                               {"account-attribute", &a.account_attr, NULL},
                               {"mapping-attribute", &a.mapping_attr, NULL},
                               {"cert-attribute", &a.cert_attr, NULL},
                               {"pins-dn", &a.cfg.pins_dn, NULL},
                               {"pins-attribute", &a.cfg.pins_attr, NULL},
                               {"filter", &a.cfg.filter, NULL},
                               {"disabled-attribute", &a.cfg.disabled_attr, NULL},
                               {"timeout", &a.timeout, NULL},
                               {"allow-weak", NULL, &a.allow_weak},
                               {"allow-mass-removal", NULL, &a.allow_mass},
                               {"max-removal", &a.max_removal, NULL},
                               {"full", NULL, &a.full},
                               {"full-every", &a.full_every, NULL},
                               {"follow", NULL, &a.follow},
                               {"poll", &a.poll, NULL},
                               {"dry-run", NULL, &a.dry_run},
                               {"json", NULL, &a.json},
                               {"config", &a.config, NULL},
                               CLI_OPTIONS_END};
    config_args file = {0};
    const char *file_path = config_path(argc, argv);
    cli_positional pos;
    int rc = CLI_CONTINUE;

    /* The file first: what the command line says wins. */
    if (file_path != NULL) {
        if (!config_read(ctx, file_path, opts, &file))
            rc = CLI_FAIL;
        else if ((rc = cli_parse(ctx, opts, file.argc, file.argv, &pos)) == CLI_CONTINUE &&
                 pos.count > 0)
            rc = cli_usage_error(ctx, "%s: a value without a key", file_path);
    }
    if (rc == CLI_CONTINUE)
        rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc == CLI_CONTINUE)
        rc = cli_expect_args(ctx, &pos, 0, 0, "");
    if (rc == CLI_CONTINUE)
        rc = sync_with(ctx, &a);
    config_free(&file);
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
    "                      [--full] [--full-every DURATION] [--follow [--poll SECONDS]]\n"
    "                      [--dry-run] [--json] [--config FILE]\n"
    "\n"
    "Read the directory, then make the rows this sync owns (source\n"
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
    "Active Directory syncs are incremental after the first: the DC's\n"
    "invocationId and the highestCommittedUSN read when the last sync began are\n"
    "kept, and the next sync reads only users whose uSNChanged is higher, users\n"
    "that no longer match the filter, users deleted since (from the Deleted\n"
    "Objects container, where the bind may read it and accounts are\n"
    "sAMAccountName; else deletions wait for the next full pass) and the NTAuth\n"
    "object only when it changed. A full pass comes first, on another DC or\n"
    "invocationId, when options that decide how entries are read change, with\n"
    "--full, and every --full-every (deletions the Deleted Objects container\n"
    "does not show are caught there). --schema ldap syncs always read in full.\n"
    "The summary says full or incremental and how many entries were read.\n"
    "\n"
    "--follow keeps running: a sync, then every --poll SECONDS one read of the\n"
    "DC's highestCommittedUSN and an incremental sync when it moved (--schema\n"
    "ldap: a full read every --poll SECONDS). Each sync that changes the store\n"
    "prints one line starting 'applied' (one transaction each). A failure prints\n"
    "one line and is retried on a new connection after 1 s, doubling up to\n"
    "60 s, while the store keeps its last good state. SIGTERM or SIGINT ends it\n"
    "with status 0.\n"
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
    "  --full                 a full pass now, whatever the stored state\n"
    "  --full-every DURATION  a full pass when the last is older (N, Ns, Nm, Nh,\n"
    "                         Nd; default 24h)\n"
    "  --follow               keep the store equal to the directory (see above)\n"
    "  --poll SECONDS         --follow: seconds between polls (default 5)\n"
    "  --dry-run              show what would change, change nothing\n"
    "  --json                 the summary as one JSON object\n"
    "  --config FILE          options from FILE, one 'key = value' (or a bare\n"
    "                         flag such as 'insecure') per line, keys as the\n"
    "                         options above without '--'; the command line wins.\n"
    "                         Without --config and --uri, " CONFIG_DEFAULT "\n"
    "                         is read when it exists. Refused unless owned by\n"
    "                         root or the caller and writable by no one else.\n",
};
