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

#include "cli.h"

/* A CRL with a few million entries fits; anything larger is refused unread. */
#define CRL_FILE_LIMIT (512L * 1024 * 1024)
#define CRL_FILE_LIMIT_TEXT "512 MiB"

#define CRL_USAGE                                                                                  \
    "Usage: certstore crl add FILE [--pin FINGERPRINT]\n"                                          \
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

static void print_added(const char *path, const cs_crl_add_result *res)
{
    if (res->unchanged) {
        printf("unchanged: pin %s already has this CRL (%s)\n", res->pin_fp, path);
        return;
    }
    printf("crl for pin %s: %lld entries, %lld newly revoked, %lld no longer listed%s\n",
           res->pin_fp, (long long)res->entries, (long long)res->newly_revoked,
           (long long)res->unrevoked, res->generation_bumped ? "; sessions decide again" : "");
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
        print_added(pos.args[0], &res);
    X509_CRL_free(crl);
    return rc;
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

typedef struct {
    int json;
    cli_json_list list;
} crl_listing;

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
    crl_listing *l = arg;

    if (l->json) {
        cli_json_list_row(&l->list);
        print_crl_json(c);
    } else {
        print_crl_text(c);
    }
    return 0;
}

static int run_crl_ls(cli_ctx *ctx, int argc, char **argv)
{
    crl_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    if (l.json)
        cli_json_list_begin(&l.list, stdout);
    cs_status st = cs_crl_foreach(db, (int64_t)time(NULL), print_crl, &l);
    if (st != CS_OK) {
        rc = cli_store_fail(ctx, db);
    } else {
        if (l.json)
            cli_json_list_end(&l.list);
        rc = CLI_OK;
    }
    cs_db_close(db);
    return rc;
}

static const cli_command crl_subcommands[] = {
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
    "CRLs of pinned CAs (add, ls, rm)",
    run_crl,
    CRL_USAGE "\n"
              "Keep the CRLs of pinned CAs in the store. Every server reads them at the\n"
              "next handshake, with no reload and no network on the handshake path.\n"
              "A pin's revocation policy is set with 'certstore pin revocation'.\n"
              "Run 'certstore crl SUBCOMMAND --help' for details.\n",
};

static int run_crl(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_crl, crl_subcommands, argc, argv);
}
