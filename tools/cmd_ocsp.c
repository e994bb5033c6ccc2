/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore ocsp: ask OCSP responders about the certificates mappings keep
 * and store the verified answers (store/ocsp.c), which the decision reads
 * with the pin's CRL. All queries run first, outside any transaction; then
 * one transaction stores every answer and notes every failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "cli.h"
#include "crl_fetch.h"

/* An OCSP response for one certificate is a few KiB; a responder chain a few more. */
#define OCSP_RESPONSE_LIMIT (1024L * 1024)
#define OCSP_URL_MAX 4096

#define OCSP_USAGE                                                                                 \
    "Usage: certstore ocsp refresh [--pin FINGERPRINT] [--url URL] [--timeout SECONDS] [--json]\n" \
    "       certstore ocsp ls [--json]\n"

typedef struct {
    int64_t mapping_id;
    X509 *cert, *issuer;
    char pin_fp[CS_FP_HEX_LEN + 1];
    char *subject;
    char *url;                /* where it was asked; NULL when none is known */
    OCSP_REQUEST *req;        /* its nonce is checked against the response */
    crl_fetch_result fetched; /* the response, or why not */
    int fetch_ok;
    int skipped; /* no responder named and no --url: nothing to ask, not a failure */
    /* after storing */
    int failed;
    char why[512];
    cs_ocsp_result res;
} ocsp_query;

typedef struct {
    ocsp_query *q;
    int count, cap, oom;
} query_list;

static int take_target(const cs_ocsp_target *t, void *arg)
{
    query_list *l = arg;
    ocsp_query *q;

    if (l->count == l->cap) {
        int cap = l->cap != 0 ? 2 * l->cap : 16;
        ocsp_query *grown = realloc(l->q, (size_t)cap * sizeof(*grown));

        if (grown == NULL) {
            l->oom = 1;
            return 1;
        }
        l->q = grown;
        l->cap = cap;
    }
    q = &l->q[l->count];
    memset(q, 0, sizeof(*q));
    if (!X509_up_ref(t->cert) || !X509_up_ref(t->issuer)) {
        l->oom = 1;
        return 1;
    }
    q->cert = t->cert;
    q->issuer = t->issuer;
    q->mapping_id = t->mapping_id;
    memcpy(q->pin_fp, t->pin_fp, sizeof(q->pin_fp));
    q->subject = cli_subject_text(t->cert);
    l->count++;
    return 0;
}

static void free_queries(query_list *l)
{
    for (int i = 0; i < l->count; i++) {
        X509_free(l->q[i].cert);
        X509_free(l->q[i].issuer);
        OPENSSL_free(l->q[i].subject);
        free(l->q[i].url);
        OCSP_REQUEST_free(l->q[i].req);
        free(l->q[i].fetched.data);
    }
    free(l->q);
}

static int collect(const cli_ctx *ctx, const char *pin, query_list *l)
{
    cs_db *db = cli_open_read(ctx);
    cs_status st;

    if (db == NULL)
        return CLI_FAIL;
    st = cs_ocsp_targets(db, pin, take_target, l);
    if (st != CS_OK) {
        cli_store_fail(ctx, db);
        cs_db_close(db);
        return CLI_FAIL;
    }
    cs_db_close(db);
    if (l->oom)
        return cli_fail(ctx, "out of memory");
    return CLI_CONTINUE;
}

/* The certificate's first http(s) OCSP URL (authorityInfoAccess); NULL if none. */
static char *aia_url(X509 *cert)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(cert);
    char *found = NULL;

    for (int i = 0; found == NULL && i < sk_OPENSSL_STRING_num(urls); i++) {
        const char *u = sk_OPENSSL_STRING_value(urls, i);

        if ((strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) &&
            strlen(u) <= OCSP_URL_MAX)
            found = strdup(u);
    }
    X509_email_free(urls);
    ERR_clear_error();
    return found;
}

static void query_failed(ocsp_query *q, const char *why)
{
    q->failed = 1;
    snprintf(q->why, sizeof(q->why), "%s", why);
}

/* Build the request (one CertID, a nonce), POST it, keep the response bytes. */
static void ask(ocsp_query *q, const char *url, const crl_fetch_limits *limits)
{
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, q->cert, q->issuer);
    unsigned char *der = NULL;
    int der_len;

    if (url != NULL && (q->url = strdup(url)) == NULL) {
        OCSP_CERTID_free(id);
        query_failed(q, "out of memory");
        return;
    }
    if (url == NULL && (q->url = aia_url(q->cert)) == NULL) {
        OCSP_CERTID_free(id);
        q->skipped = 1; /* its CA offers no OCSP for it: its CRL speaks for it */
        return;
    }
    if (id == NULL || (q->req = OCSP_REQUEST_new()) == NULL ||
        OCSP_request_add0_id(q->req, id) == NULL) {
        OCSP_CERTID_free(id);
        ERR_clear_error();
        query_failed(q, "cannot build the OCSP request");
        return;
    }
    if (!OCSP_request_add1_nonce(q->req, NULL, -1) ||
        (der_len = i2d_OCSP_REQUEST(q->req, &der)) <= 0) {
        ERR_clear_error();
        query_failed(q, "cannot build the OCSP request");
        return;
    }
    if (crl_fetch_post(q->url, der, (size_t)der_len, "application/ocsp-request", limits,
                       &q->fetched) == CRL_FETCH_OK)
        q->fetch_ok = 1;
    else
        query_failed(q, q->fetched.error);
    OPENSSL_free(der);
}

/* Store one answer, or note why there is none; 0, or -1 when the store itself failed. */
static int store_one(cs_db *db, ocsp_query *q, int64_t now)
{
    cs_status st = CS_INVALID;

    if (q->skipped)
        return 0;
    if (q->fetch_ok) {
        st = cs_ocsp_store(db, q->cert, q->issuer, q->req, q->fetched.data, q->fetched.len, q->url,
                           now, &q->res);
        if (st == CS_INVALID || st == CS_NOTFOUND)
            query_failed(q, cs_db_errmsg(db));
        else if (st != CS_OK)
            return -1;
    }
    if (!q->failed)
        return 0;
    st = cs_ocsp_note_failure(db, q->cert, q->issuer, q->url, now, q->why);
    return st == CS_OK || st == CS_NOTFOUND ? 0 : -1; /* NOTFOUND: unpinned meanwhile */
}

static void print_query_json(const ocsp_query *q)
{
    printf("{\"mapping\":%lld,\"pin\":\"%s\",\"subject\":", (long long)q->mapping_id, q->pin_fp);
    cli_put_json_string(stdout, q->subject);
    printf(",\"url\":");
    cli_put_json_string(stdout, q->url);
    if (q->skipped) {
        printf(",\"result\":\"skipped\"}");
        return;
    }
    if (q->failed) {
        printf(",\"result\":\"failed\",\"error\":");
        cli_put_json_string(stdout, q->why);
        putchar('}');
        return;
    }
    printf(",\"result\":\"%s\",\"status\":\"%s\",\"was\":\"%s\",\"this_update\":",
           q->res.unchanged ? "unchanged" : "updated", cs_ocsp_status_name(q->res.status),
           cs_ocsp_status_name(q->res.old_status));
    cli_put_json_time(stdout, q->res.this_update);
    printf(",\"next_update\":");
    cli_put_json_time(stdout, q->res.next_update);
    printf(",\"revoked_at\":");
    cli_put_json_time(stdout, q->res.revoked_at);
    printf(",\"generation_bumped\":%s}", q->res.generation_bumped ? "true" : "false");
}

static void print_query_text(const ocsp_query *q)
{
    if (q->failed)
        return; /* said on stderr */
    if (q->skipped) {
        printf("skipped: mapping %lld ", (long long)q->mapping_id);
        cli_put_text(stdout, q->subject);
        printf(": no OCSP responder in its authorityInfoAccess (give --url to ask one)\n");
        return;
    }
    printf("%s: mapping %lld ", q->res.unchanged ? "unchanged" : "updated",
           (long long)q->mapping_id);
    cli_put_text(stdout, q->subject);
    if (q->res.unchanged)
        printf(": %s", cs_ocsp_status_name(q->res.status));
    else
        printf(": %s (was %s)", cs_ocsp_status_name(q->res.status),
               cs_ocsp_status_name(q->res.old_status));
    printf(" next-update=");
    cli_put_text_time(stdout, q->res.next_update);
    printf("%s\n", q->res.generation_bumped ? "; sessions decide again" : "");
}

static void report(const cli_ctx *ctx, const query_list *l, int json)
{
    cli_json_list list;

    for (int i = 0; i < l->count; i++)
        if (l->q[i].failed)
            cli_fail(ctx, "mapping %lld (%s): %s: %s; the last answer stays",
                     (long long)l->q[i].mapping_id, l->q[i].subject ? l->q[i].subject : "?",
                     l->q[i].url != NULL ? l->q[i].url : "no URL", l->q[i].why);
    if (!json) {
        for (int i = 0; i < l->count; i++)
            print_query_text(&l->q[i]);
        return;
    }
    cli_json_list_begin(&list, stdout);
    for (int i = 0; i < l->count; i++) {
        cli_json_list_row(&list);
        print_query_json(&l->q[i]);
    }
    cli_json_list_end(&list);
}

/* A whole number in [min, max]; 0 if not. */
static int parse_seconds(const char *text, long min, long max, long *out)
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

static int store_all(const cli_ctx *ctx, query_list *l)
{
    int64_t now = (int64_t)time(NULL);
    cs_db *db = cli_begin_write(ctx);
    cs_status st = CS_OK;

    if (db == NULL)
        return CLI_FAIL;
    for (int i = 0; st == CS_OK && i < l->count; i++)
        if (store_one(db, &l->q[i], now) != 0)
            st = CS_ERR;
    if (st != CS_OK)
        cli_store_fail(ctx, db);
    return cli_end_write(ctx, db, st);
}

static int run_ocsp_refresh(cli_ctx *ctx, int argc, char **argv)
{
    const char *pin = NULL, *url = NULL, *timeout = NULL;
    int json = 0;
    const cli_option opts[] = {{"pin", &pin, NULL},
                               {"url", &url, NULL},
                               {"timeout", &timeout, NULL},
                               {"json", NULL, &json},
                               CLI_OPTIONS_END};
    crl_fetch_limits limits = {
        .timeout_s = 10, .max_size = OCSP_RESPONSE_LIMIT, .max_redirects = 5};
    char fp[CS_FP_HEX_LEN + 1];
    query_list l = {0};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos), failures = 0;

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if (pin != NULL && !cs_fp_normalise(pin, fp))
        return cli_usage_error(ctx, "--pin: '%s' is not a SHA-256 fingerprint (64 hex digits)",
                               pin);
    if (timeout != NULL && !parse_seconds(timeout, 1, 3600, &limits.timeout_s))
        return cli_usage_error(ctx, "--timeout: '%s' is not a number of seconds from 1 to 3600",
                               timeout);
    if (url != NULL && (strlen(url) > OCSP_URL_MAX ||
                        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)))
        return cli_usage_error(ctx, "--url: '%s' is not an http:// or https:// URL", url);
    if ((rc = collect(ctx, pin != NULL ? fp : NULL, &l)) != CLI_CONTINUE) {
        free_queries(&l);
        return rc;
    }
    if (l.count == 0) {
        free_queries(&l);
        if (json)
            printf("[]\n");
        else
            printf("nothing to ask: no enabled mapping keeps a certificate a pinned CA%s "
                   "issued\n",
                   pin != NULL ? " (this pin)" : "");
        return CLI_OK;
    }
    if (!crl_fetch_init()) {
        free_queries(&l);
        return cli_fail(ctx, "cannot initialise libcurl");
    }
    for (int i = 0; i < l.count; i++)
        ask(&l.q[i], url, &limits);
    crl_fetch_cleanup();
    rc = store_all(ctx, &l);
    if (rc == CLI_OK) {
        report(ctx, &l, json);
        for (int i = 0; i < l.count; i++)
            failures += l.q[i].failed;
    }
    free_queries(&l);
    return rc != CLI_OK ? rc : failures > 0 ? CLI_FAIL : CLI_OK;
}

/* ---- ls ------------------------------------------------------------------------- */

static void print_info_json(const cs_ocsp_info *o)
{
    printf("{\"pin\":\"%s\",\"serial\":\"%s\",\"subject\":", o->pin_fp, o->serial);
    cli_put_json_string(stdout, o->subject);
    printf(",\"status\":\"%s\",\"current\":%s,\"revoked_at\":", cs_ocsp_status_name(o->status),
           o->current ? "true" : "false");
    cli_put_json_time(stdout, o->revoked_at);
    if (o->reason >= 0)
        printf(",\"reason\":%lld", (long long)o->reason);
    else
        printf(",\"reason\":null");
    printf(",\"this_update\":");
    cli_put_json_time(stdout, o->this_update);
    printf(",\"next_update\":");
    cli_put_json_time(stdout, o->next_update);
    printf(",\"updated\":");
    cli_put_json_time(stdout, o->updated);
    printf(",\"url\":");
    cli_put_json_string(stdout, o->url);
    printf(",\"fetched\":");
    cli_put_json_time(stdout, o->fetched);
    printf(",\"fetch_result\":");
    cli_put_json_string(stdout, o->fetch_result);
    putchar('}');
}

static void print_info_text(const cs_ocsp_info *o)
{
    printf("%s serial=%s status=%s%s", o->pin_fp, o->serial, cs_ocsp_status_name(o->status),
           o->status != CS_OCSP_NONE && !o->current ? " (stale)" : "");
    if (o->status == CS_OCSP_REVOKED) {
        printf(" revoked-at=");
        cli_put_text_time(stdout, o->revoked_at);
    }
    if (o->status != CS_OCSP_NONE) {
        printf(" this-update=");
        cli_put_text_time(stdout, o->this_update);
        printf(" next-update=");
        cli_put_text_time(stdout, o->next_update);
    }
    printf(" url=");
    cli_put_text(stdout, o->url != NULL ? o->url : "-");
    printf(" fetched=");
    cli_put_text_time(stdout, o->fetched);
    printf(" result=");
    cli_put_text(stdout, o->fetch_result != NULL ? o->fetch_result : "-");
    printf(" subject=");
    cli_put_text(stdout, o->subject);
    putchar('\n');
}

static int print_info(const cs_ocsp_info *o, void *arg)
{
    if (cli_listing_row(arg)) {
        print_info_json(o);
    } else {
        print_info_text(o);
    }
    return 0;
}

static cs_status list_answers(cs_db *db, cli_listing *l, void *arg)
{
    (void)arg;
    return cs_ocsp_foreach(db, (int64_t)time(NULL), print_info, l);
}

static int run_ocsp_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};

    return cli_run_listing(ctx, opts, argc, argv, &l, list_answers, NULL, NULL);
}

const cli_command cli_ocsp_subcommands[] = {
    {"refresh", "ask OCSP responders about mapped certificates", run_ocsp_refresh,
     "Usage: certstore ocsp refresh [--pin FINGERPRINT] [--url URL] [--timeout SECONDS]\n"
     "                              [--json]\n"
     "\n"
     "Ask the OCSP responder about every certificate an enabled mapping keeps\n"
     "(map add CERT, IIS imports) whose issuer is a pinned CA: at the URL in the\n"
     "certificate's authorityInfoAccess, or --url; one that names no responder is\n"
     "skipped (said on stdout, not a failure). Each request carries a nonce.\n"
     "A response is stored only when it is signed by the issuing CA, or by a\n"
     "responder certificate that CA issued with the OCSP-signing EKU (a responder\n"
     "of another CA is refused), when it echoes the nonce if it carries one, and\n"
     "when its thisUpdate/nextUpdate are current (5 minutes of clock skew). The\n"
     "handshake reads only the stored answer: revoked rejects (revoked); good\n"
     "counts as a current CRL would for the pin's revocation policy. An answer\n"
     "that turns revoked makes sessions decide again; one that changes nothing\n"
     "does not. A failed query keeps the last answer, is recorded (ocsp ls) and\n"
     "says why on stderr. All answers are stored in one transaction.\n"
     "\n"
     "  --pin FINGERPRINT   only certificates this pin issued\n"
     "  --url URL           ask this responder (http:// or https://) instead\n"
     "  --timeout SECONDS   limit for each query (default 10)\n"
     "  --json              one JSON array, an object per certificate\n"
     "\n"
     "Exit status: 0 when every certificate got a verified answer, 1 when any\n"
     "could not be refreshed, 2 usage error.\n"},
    {"ls", "list stored OCSP answers", run_ocsp_ls,
     "Usage: certstore ocsp ls [--json]\n"
     "\n"
     "List the stored OCSP answers: pin, serial, status (good, revoked, unknown,\n"
     "or none when never answered; '(stale)' past its nextUpdate), revocation\n"
     "time, thisUpdate, nextUpdate, responder URL, last query and its result,\n"
     "subject.\n"
     "\n"
     "  --json   one JSON array of objects\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_ocsp(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_ocsp = {
    "ocsp",
    "prefetched OCSP answers for mapped certificates (refresh, ls)",
    run_ocsp,
    OCSP_USAGE "\n"
               "Keep OCSP answers for the certificates mappings keep. Every server reads\n"
               "them at the next handshake: no network on the handshake path.\n"
               "Run 'certstore ocsp SUBCOMMAND --help' for details.\n",
};

static int run_ocsp(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_ocsp, cli_ocsp_subcommands, argc, argv);
}
