/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore crl: the CRLs of pinned CAs, which the decision reads after the
 * pin and before the mapping (store/crl.c keeps and checks them).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cli.h"
#include "crl_fetch.h"

/* A CRL with a few million entries fits; anything larger is refused unread. */
#define CRL_FILE_LIMIT (512L * 1024 * 1024)
#define CRL_FILE_LIMIT_TEXT "512 MiB"
/* What a distribution point may send unasked: a 1M-serial CRL is about 35 MiB. */
#define CRL_FETCH_DEFAULT_LIMIT (128L * 1024 * 1024)

#define CRL_USAGE                                                                                  \
    "Usage: certstore crl add FILE [--pin FINGERPRINT]\n"                                          \
    "       certstore crl fetch [--pin FINGERPRINT] [--url URL] [--timeout SECONDS]\n"             \
    "                           [--max-size BYTES]\n"                                              \
    "       certstore crl ls [--json]\n"                                                           \
    "       certstore crl rm PIN-FINGERPRINT\n"

/* The whole file, refusing one over the limit by its size before reading. */
static unsigned char *read_crl_file(const cli_ctx *ctx, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    unsigned char *buf;

    if (f == NULL) {
        cli_fail(ctx, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        cli_fail(ctx, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_size > CRL_FILE_LIMIT) {
        fclose(f);
        cli_fail(ctx, "%s: file too large (limit " CRL_FILE_LIMIT_TEXT ")", path);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        fclose(f);
        cli_fail(ctx, "out of memory");
        return NULL;
    }
    *len = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f) || *len != (size_t)st.st_size) {
        fclose(f);
        free(buf);
        cli_fail(ctx, "%s: cannot read the file", path);
        return NULL;
    }
    fclose(f);
    return buf;
}

/* PEM ("X509 CRL") or DER, by content; exactly one CRL and nothing after a DER one. */
static X509_CRL *parse_crl(const unsigned char *data, size_t len, const char **why)
{
    static const char pem_tag[] = "-----BEGIN X509 CRL-----";
    X509_CRL *crl = NULL;

    *why = "not a CRL (neither PEM 'X509 CRL' nor DER)";
    if (len == 0) {
        *why = "empty file";
        return NULL;
    }
    if (len > (size_t)INT32_MAX) {
        *why = "too large";
        return NULL;
    }
    if (memmem(data, len, pem_tag, sizeof(pem_tag) - 1) != NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);

        crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (crl == NULL)
            *why = "malformed PEM CRL";
    } else {
        const unsigned char *p = data;

        crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl != NULL && p != data + len) {
            X509_CRL_free(crl);
            crl = NULL;
            *why = "trailing data after the DER CRL";
        }
    }
    ERR_clear_error();
    return crl;
}

static X509_CRL *read_crl(const cli_ctx *ctx, const char *path)
{
    size_t len = 0;
    unsigned char *data = read_crl_file(ctx, path, &len);
    const char *why = NULL;
    X509_CRL *crl;

    if (data == NULL)
        return NULL;
    crl = parse_crl(data, len, &why);
    free(data);
    if (crl == NULL)
        cli_fail(ctx, "%s: %s", path, why);
    return crl;
}

/* url: where it was fetched from, NULL for a file. */
static void print_added(const char *path, const char *url, const cs_crl_add_result *res)
{
    if (res->unchanged) {
        printf("unchanged: pin %s already has this CRL (%s)\n", res->pin_fp, path);
        return;
    }
    printf("crl for pin %s%s%s: %lld entries, %lld newly revoked, %lld no longer listed%s\n",
           res->pin_fp, url != NULL ? " from " : "", url != NULL ? url : "",
           (long long)res->entries, (long long)res->newly_revoked, (long long)res->unrevoked,
           res->generation_bumped ? "; sessions decide again" : "");
}

static int run_crl_add(cli_ctx *ctx, int argc, char **argv)
{
    const char *pin = NULL;
    const cli_option opts[] = {{"pin", &pin, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    char fp[CS_FP_HEX_LEN + 1];
    cs_crl_add_result res;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "FILE")) != CLI_CONTINUE)
        return rc;
    if (pin != NULL && !cs_fp_normalise(pin, fp))
        return cli_usage_error(ctx, "--pin: '%s' is not a SHA-256 fingerprint (64 hex digits)",
                               pin);
    X509_CRL *crl = read_crl(ctx, pos.args[0]);
    if (crl == NULL)
        return CLI_FAIL;
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        X509_CRL_free(crl);
        return CLI_FAIL;
    }
    cs_status st = cs_crl_add(db, crl, pin != NULL ? fp : NULL, NULL, (int64_t)time(NULL), &res);
    if (st != CS_OK)
        cli_fail(ctx, "%s: %s", pos.args[0], cs_db_errmsg(db));
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        print_added(pos.args[0], NULL, &res);
    X509_CRL_free(crl);
    return rc;
}

/* ---- fetch ------------------------------------------------------------------------ */

#define FETCH_TARGETS_MAX 1024

typedef struct {
    char *url;
    char pin[CS_FP_HEX_LEN + 1]; /* "" when --url names no --pin: the CRL's issuer decides */
    char *etag, *last_modified;  /* of the stored CRL's last fetch from this URL */
    int done;                    /* a source of this pin already served a CRL that was stored */
} fetch_target;

typedef struct {
    const char *want_pin, *url;
    fetch_target *targets;
    int count, overflow;
} target_scan;

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int add_target(target_scan *t, const char *url, const char *pin, const cs_crl_info *c)
{
    fetch_target *ft;

    if (t->count == FETCH_TARGETS_MAX) {
        t->overflow = 1;
        return 1;
    }
    ft = &t->targets[t->count++];
    memset(ft, 0, sizeof(*ft));
    ft->url = strdup(url);
    snprintf(ft->pin, sizeof(ft->pin), "%s", pin != NULL ? pin : "");
    /* Validators belong to the URL they came from. */
    if (c != NULL && c->url != NULL && strcmp(c->url, url) == 0) {
        ft->etag = dup_or_null(c->etag);
        ft->last_modified = dup_or_null(c->last_modified);
    }
    return 0;
}

static int known_target(const target_scan *t, const char *url, const char *pin)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->targets[i].url, url) == 0 && strcmp(t->targets[i].pin, pin) == 0)
            return 1;
    return 0;
}

/* The fullName URIs (http, https, file) of a certificate's CRL distribution points. */
static int note_distribution_points(const cs_ocsp_target *c, void *arg)
{
    target_scan *t = arg;
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(c->cert, NID_crl_distribution_points, NULL, NULL);

    for (int i = 0; i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue;
        for (int j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);
            const char *uri;
            char url[4097];
            int len;

            if (gn->type != GEN_URI)
                continue;
            uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
            len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
            if (len <= 0 || len >= (int)sizeof(url) || memchr(uri, '\0', (size_t)len) != NULL)
                continue;
            memcpy(url, uri, (size_t)len);
            url[len] = '\0';
            if ((strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0 ||
                 strncmp(url, "file://", 7) == 0) &&
                !known_target(t, url, c->pin_fp))
                add_target(t, url, c->pin_fp, NULL);
        }
    }
    CRL_DIST_POINTS_free(dps);
    ERR_clear_error();
    return 0;
}

static int note_target(const cs_crl_info *c, void *arg)
{
    target_scan *t = arg;

    if (t->want_pin != NULL && strcmp(t->want_pin, c->pin_fp) != 0)
        return 0;
    if (t->url != NULL) /* --url with --pin: that pin's validators, if from the same URL */
        return add_target(t, t->url, c->pin_fp, c);
    return c->url != NULL ? add_target(t, c->url, c->pin_fp, c) : 0;
}

static void free_targets(target_scan *t)
{
    for (int i = 0; i < t->count; i++) {
        free(t->targets[i].url);
        free(t->targets[i].etag);
        free(t->targets[i].last_modified);
    }
    free(t->targets);
}

/* The URLs to fetch: --url, else each pin's remembered source. */
static int collect_targets(const cli_ctx *ctx, target_scan *t)
{
    cs_db *db = cli_open_read(ctx);
    cs_status st;

    if (db == NULL)
        return CLI_FAIL;
    t->targets = calloc(FETCH_TARGETS_MAX, sizeof(*t->targets));
    if (t->targets == NULL) {
        cs_db_close(db);
        return cli_fail(ctx, "out of memory");
    }
    st = cs_crl_foreach(db, (int64_t)time(NULL), note_target, t);
    /* Without --url: after each pin's remembered source, the distribution points of the
     * certificates mapped under it, in mapping order. */
    if (st == CS_OK && t->url == NULL)
        st = cs_ocsp_targets(db, t->want_pin, note_distribution_points, t);
    if (st != CS_OK) {
        cli_store_fail(ctx, db);
        cs_db_close(db);
        return CLI_FAIL;
    }
    cs_db_close(db);
    /* A pin without a CRL yet, or --url alone: the CRL's issuer names the pin. */
    if (t->url != NULL && t->count == 0)
        add_target(t, t->url, t->want_pin, NULL);
    if (t->overflow)
        return cli_fail(ctx, "more than %d CRL sources", FETCH_TARGETS_MAX);
    if (t->count == 0)
        return cli_fail(ctx,
                        "no CRL source known%s (none remembered, no distribution point in a "
                        "mapped certificate): give --url (it is remembered for the pin)",
                        t->want_pin != NULL ? " for this pin" : "");
    return CLI_CONTINUE;
}

/* The fetch's bookkeeping on the pin's CRL row, in its own transaction. */
static void note_fetch(const cli_ctx *ctx, const char *pin, const char *url, const char *result)
{
    cs_db *db;
    cs_status st;

    if (pin[0] == '\0' || (db = cli_begin_write(ctx)) == NULL)
        return;
    st = cs_crl_note_fetch(db, pin, url, (int64_t)time(NULL), result, 0, NULL, NULL);
    cli_end_write(ctx, db, st == CS_NOTFOUND ? CS_INVALID : st); /* no row: nothing to keep */
}

static int fetch_failed(const cli_ctx *ctx, const fetch_target *ft, const char *why)
{
    char result[600];

    /* A URL is remembered only once it served a CRL that was stored. */
    snprintf(result, sizeof(result), "failed: %.200s: %s", ft->url, why);
    if (ft->done) /* another source of this pin is still to come: not the pin's failure */
        cli_warn(ctx, "%s: %s; trying the pin's next CRL source", ft->url, why);
    else
        cli_fail(ctx, "%s: %s; the stored CRL stays", ft->url, why);
    note_fetch(ctx, ft->pin, NULL, result);
    return 1;
}

/* Store a fetched CRL through exactly the checks of crl add, with the fetch noted. */
static int store_fetched(const cli_ctx *ctx, const fetch_target *ft, const crl_fetch_result *r)
{
    const char *why = NULL;
    X509_CRL *crl = parse_crl(r->data, r->len, &why);
    cs_crl_add_result res;
    cs_status st;
    cs_db *db;

    if (crl == NULL)
        return fetch_failed(ctx, ft, why);
    if ((db = cli_begin_write(ctx)) == NULL) {
        X509_CRL_free(crl);
        return 1;
    }
    st = cs_crl_add(db, crl, ft->pin[0] != '\0' ? ft->pin : NULL, ft->url, (int64_t)time(NULL),
                    &res);
    X509_CRL_free(crl);
    if (st == CS_OK)
        st = cs_crl_note_fetch(db, res.pin_fp, ft->url, (int64_t)time(NULL),
                               res.unchanged ? "ok: unchanged" : "ok: updated", 1,
                               r->etag[0] != '\0' ? r->etag : NULL,
                               r->last_modified[0] != '\0' ? r->last_modified : NULL);
    if (st != CS_OK) {
        char why_store[sizeof(((crl_fetch_result *)0)->error)];

        snprintf(why_store, sizeof(why_store), "%s", cs_db_errmsg(db));
        cs_db_rollback(db);
        cs_db_close(db);
        return fetch_failed(ctx, ft, why_store);
    }
    if (cli_end_write(ctx, db, st) != CLI_OK)
        return 1;
    print_added(ft->url, ft->url, &res);
    return 0;
}

static int fetch_one(const cli_ctx *ctx, const fetch_target *ft, const crl_fetch_limits *limits)
{
    crl_fetch_result r;
    int failed;

    switch (crl_fetch(ft->url, ft->etag, ft->last_modified, limits, &r)) {
    case CRL_FETCH_NOT_MODIFIED:
        printf("not modified: pin %s (%s)\n", ft->pin, ft->url);
        note_fetch(ctx, ft->pin, ft->url, "ok: not modified");
        return 0;
    case CRL_FETCH_FAILED:
        return fetch_failed(ctx, ft, r.error);
    case CRL_FETCH_OK:
        break;
    }
    failed = store_fetched(ctx, ft, &r);
    free(r.data);
    return failed;
}

/* A whole number in [min, max]; 0 if not. */
static int parse_number(const char *text, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    if (text == NULL || *text < '0' || *text > '9')
        return 0;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

static int run_crl_fetch(cli_ctx *ctx, int argc, char **argv)
{
    const char *pin = NULL, *url = NULL, *timeout = NULL, *max_size = NULL;
    const cli_option opts[] = {{"pin", &pin, NULL},
                               {"url", &url, NULL},
                               {"timeout", &timeout, NULL},
                               {"max-size", &max_size, NULL},
                               CLI_OPTIONS_END};
    crl_fetch_limits limits = {
        .timeout_s = 30, .max_size = CRL_FETCH_DEFAULT_LIMIT, .max_redirects = 5};
    char fp[CS_FP_HEX_LEN + 1];
    target_scan t = {0};
    cli_positional pos;
    long value;
    int rc = cli_parse(ctx, opts, argc, argv, &pos), failures = 0;

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if (pin != NULL && !cs_fp_normalise(pin, fp))
        return cli_usage_error(ctx, "--pin: '%s' is not a SHA-256 fingerprint (64 hex digits)",
                               pin);
    if (timeout != NULL && !parse_number(timeout, 1, 3600, &limits.timeout_s))
        return cli_usage_error(ctx, "--timeout: '%s' is not a number of seconds from 1 to 3600",
                               timeout);
    if (max_size != NULL) {
        if (!parse_number(max_size, 1, CRL_FILE_LIMIT, &value))
            return cli_usage_error(ctx, "--max-size: '%s' is not a number of bytes from 1 to %ld",
                                   max_size, CRL_FILE_LIMIT);
        limits.max_size = (size_t)value;
    }
    if (url != NULL && (strlen(url) > 4096 || strstr(url, "://") == NULL))
        return cli_usage_error(ctx, "--url: '%s' is not a URL (http://, https:// or file://)", url);
    t.want_pin = pin != NULL ? fp : NULL;
    t.url = url;
    if ((rc = collect_targets(ctx, &t)) != CLI_CONTINUE) {
        free_targets(&t);
        return rc;
    }
    if (!crl_fetch_init()) {
        free_targets(&t);
        return cli_fail(ctx, "cannot initialise libcurl");
    }
    for (int i = 0; i < t.count; i++) {
        fetch_target *ft = &t.targets[i];
        int more = 0;

        if (ft->done == 2)
            continue; /* its pin was served by an earlier source */
        for (int j = i + 1; ft->pin[0] != '\0' && j < t.count; j++)
            more |= strcmp(t.targets[j].pin, ft->pin) == 0;
        ft->done = more; /* fetch_failed: a warning while another source remains */
        if (fetch_one(ctx, ft, &limits) != 0) {
            failures += !more;
            continue;
        }
        for (int j = i + 1; ft->pin[0] != '\0' && j < t.count; j++)
            if (strcmp(t.targets[j].pin, ft->pin) == 0)
                t.targets[j].done = 2; /* the first source that yields a valid CRL wins */
    }
    crl_fetch_cleanup();
    free_targets(&t);
    return failures > 0 ? CLI_FAIL : CLI_OK;
}

static int run_crl_rm(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_option opts[] = {CLI_OPTIONS_END};
    cli_positional pos;
    char fp[CS_FP_HEX_LEN + 1];
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE ||
        (rc = cli_expect_args(ctx, &pos, 1, 1, "PIN-FINGERPRINT")) != CLI_CONTINUE)
        return rc;
    if (!cs_fp_normalise(pos.args[0], fp))
        return cli_usage_error(ctx, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                               pos.args[0]);
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_status st = cs_crl_remove(db, fp);
    if (st != CS_OK)
        cli_store_fail(ctx, db);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        printf("removed the CRL of pin %s\n", fp);
    return rc;
}

static void put_grace(FILE *out, int64_t grace)
{
    if (grace % 86400 == 0)
        fprintf(out, "%lldd", (long long)(grace / 86400));
    else if (grace % 3600 == 0)
        fprintf(out, "%lldh", (long long)(grace / 3600));
    else
        fprintf(out, "%llds", (long long)grace);
}

static void print_crl_json(const cs_crl_info *c)
{
    printf("{\"pin\":\"%s\",\"issuer\":", c->pin_fp);
    cli_put_json_string(stdout, c->subject);
    printf(",\"policy\":\"%s\",\"grace_seconds\":%lld,\"state\":\"%s\",\"crl\":",
           cs_revocation_policy_name(c->policy), (long long)c->grace,
           cs_revocation_state_name(c->state));
    cli_put_json_string(stdout, c->have_crl ? c->crl_fp : NULL);
    printf(",\"number\":");
    cli_put_json_string(stdout, c->number);
    printf(",\"this_update\":");
    cli_put_json_time(stdout, c->this_update);
    printf(",\"next_update\":");
    cli_put_json_time(stdout, c->next_update);
    if (c->have_crl)
        printf(",\"entries\":%lld", (long long)c->entries);
    else
        printf(",\"entries\":null");
    printf(",\"updated\":");
    cli_put_json_time(stdout, c->updated);
    printf(",\"url\":");
    cli_put_json_string(stdout, c->url);
    printf(",\"fetched\":");
    cli_put_json_time(stdout, c->fetched);
    printf(",\"fetch_result\":");
    cli_put_json_string(stdout, c->fetch_result);
    putchar('}');
}

static void print_crl_text(const cs_crl_info *c)
{
    printf("%s state=%s policy=%s grace=", c->pin_fp, cs_revocation_state_name(c->state),
           cs_revocation_policy_name(c->policy));
    put_grace(stdout, c->grace);
    if (c->have_crl) {
        printf(" number=");
        cli_put_text(stdout, c->number != NULL ? c->number : "-");
        printf(" this-update=");
        cli_put_text_time(stdout, c->this_update);
        printf(" next-update=");
        cli_put_text_time(stdout, c->next_update);
        printf(" entries=%lld", (long long)c->entries);
    } else {
        printf(" crl=none");
    }
    if (c->url != NULL) {
        printf(" url=");
        cli_put_text(stdout, c->url);
    }
    if (c->fetched != CS_TIME_NONE) {
        printf(" fetched=");
        cli_put_text_time(stdout, c->fetched);
        printf(" result=");
        cli_put_text(stdout, c->fetch_result != NULL ? c->fetch_result : "-");
    }
    printf(" issuer=");
    cli_put_text(stdout, c->subject);
    putchar('\n');
}

static int print_crl(const cs_crl_info *c, void *arg)
{
    if (cli_listing_row(arg)) {
        print_crl_json(c);
    } else {
        print_crl_text(c);
    }
    return 0;
}

static cs_status list_crls(cs_db *db, cli_listing *l, void *arg)
{
    (void)arg;
    return cs_crl_foreach(db, (int64_t)time(NULL), print_crl, l);
}

static int run_crl_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};

    return cli_run_listing(ctx, opts, argc, argv, &l, list_crls, NULL, NULL);
}

const cli_command cli_crl_subcommands[] = {
    {"add", "store the CRL of a pinned CA", run_crl_add,
     "Usage: certstore crl add FILE [--pin FINGERPRINT]\n"
     "\n"
     "Store a full CRL (PEM or DER) for the pinned CA that issued it: its issuer\n"
     "must be the pin's subject and its signature must verify with the pin's key\n"
     "(a CA with the same name and another key is refused). It replaces the\n"
     "pin's CRL only when newer (CRL number, else thisUpdate); the same CRL again\n"
     "changes nothing. Delta, indirect and partitioned CRLs are refused. From\n"
     "the next handshake on, a client whose serial is listed is rejected with\n"
     "revoked, and sessions decide again when anything was newly revoked.\n"
     "\n"
     "  --pin FINGERPRINT   the pin, when several (same name and key) issued it\n"},
    {"fetch", "download and store CRLs of pinned CAs", run_crl_fetch,
     "Usage: certstore crl fetch [--pin FINGERPRINT] [--url URL] [--timeout SECONDS]\n"
     "                           [--max-size BYTES]\n"
     "\n"
     "Download CRLs (http://, https:// or file://) and store each through exactly\n"
     "the checks of 'crl add'. Without --url, every pin's sources (or the one\n"
     "pin's, with --pin) are tried in turn until one yields a CRL that is stored:\n"
     "its remembered URL, then the CRL distribution points (fullName URIs) of the\n"
     "certificates mapped under it, each once; the line printed names the URL\n"
     "used. A URL that served a stored CRL, or one given with --url, is\n"
     "remembered for the pin whose CRL it serves. HTTP requests are conditional\n"
     "on the last ETag and Last-Modified; redirects are followed to http and\n"
     "https only, at most 5. A failed fetch keeps the stored CRL, is recorded\n"
     "(crl ls shows it) and says why on stderr.\n"
     "\n"
     "  --pin FINGERPRINT   only this pin's CRL\n"
     "  --url URL           fetch from this URL\n"
     "  --timeout SECONDS   limit for each whole transfer (default 30)\n"
     "  --max-size BYTES    largest CRL accepted (default 128 MiB, at most 512 MiB)\n"
     "\n"
     "Exit status: 0 when every CRL was fetched (or not modified), 1 when any\n"
     "could not be refreshed, 2 usage error.\n"},
    {"ls", "list CRLs and revocation policies", run_crl_ls,
     "Usage: certstore crl ls [--json]\n"
     "\n"
     "List the pins that have a CRL or a revocation policy: state (good, grace,\n"
     "stale, missing, unknown, off, none), policy, grace, CRL number,\n"
     "thisUpdate, nextUpdate, entries, source URL, last fetch and its result.\n"
     "\n"
     "  --json   one JSON array of objects\n"},
    {"rm", "remove a pin's CRL", run_crl_rm,
     "Usage: certstore crl rm PIN-FINGERPRINT\n"
     "\n"
     "Remove the CRL of the pin with this fingerprint. Under a hard policy its\n"
     "clients are then rejected with revocation-unknown.\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_crl(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_crl = {
    "crl",
    "CRLs of pinned CAs (add, fetch, ls, rm)",
    run_crl,
    CRL_USAGE "\n"
              "Keep the CRLs of pinned CAs in the store. Every server reads them at the\n"
              "next handshake, with no reload and no network on the handshake path.\n"
              "A pin's revocation policy is set with 'certstore pin revocation'.\n"
              "Run 'certstore crl SUBCOMMAND --help' for details.\n",
};

static int run_crl(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_crl, cli_crl_subcommands, argc, argv);
}
