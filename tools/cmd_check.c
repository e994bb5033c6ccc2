/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore check: decide a client chain exactly as a server with the
 * provider would. OpenSSL verifies the chain first (purpose sslclient, as a
 * TLS server does); only a verified chain reaches the policy, read from the
 * database opened read-only like a server opens it.
 */
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <openssl/x509v3.h>

#include "cli.h"

typedef struct {
    const char *chain_path, *ca_path, *at;
    int json;
    int require_strong;
} check_options;

typedef struct {
    cs_decision decision;
    const char *chain_error; /* OpenSSL's text when the chain did not verify */
    char detail[256];        /* why the store is unavailable, if it is */
    char *subject;
    char leaf_fp[CS_FP_HEX_LEN + 1];
} check_result;

static X509_STORE *build_trust_store(const cli_ctx *ctx, const char *ca_path)
{
    STACK_OF(X509) *roots = cli_read_certs(ctx, ca_path);
    if (roots == NULL)
        return NULL;
    X509_STORE *store = X509_STORE_new();
    int ok = store != NULL;
    for (int i = 0; ok && i < sk_X509_num(roots); i++)
        ok = X509_STORE_add_cert(store, sk_X509_value(roots, i));
    sk_X509_pop_free(roots, X509_free);
    if (!ok) {
        X509_STORE_free(store);
        ERR_clear_error();
        cli_fail(ctx, "%s: cannot build the trust store", ca_path);
        return NULL;
    }
    return store;
}

/* The policy on a verified chain; a database that does not open is "store unavailable". */
static void decide(const cli_ctx *ctx, STACK_OF(X509) * chain, int64_t now, const check_options *o,
                   check_result *r)
{
    cs_policy_opts opts = {.require_strong = o->require_strong};
    cs_db *db = NULL;
    if (cs_db_open(&db, ctx->db_path, CS_OPEN_READONLY) != CS_OK) {
        snprintf(r->detail, sizeof(r->detail), "%s: %s", ctx->db_path,
                 db != NULL ? cs_db_errmsg(db) : "out of memory");
        cs_db_close(db);
        db = NULL;
    }
    cs_decide_ex(db, chain, now, &opts, &r->decision);
    if ((r->decision.reason == CS_REASON_STORE_UNAVAILABLE ||
         r->decision.reason == CS_REASON_REVOKED ||
         r->decision.reason == CS_REASON_REVOCATION_UNKNOWN) &&
        r->detail[0] == '\0')
        snprintf(r->detail, sizeof(r->detail), "%s", r->decision.detail);
    cs_db_close(db);
}

static int verify_and_decide(const cli_ctx *ctx, X509_STORE *trust, X509 *leaf,
                             STACK_OF(X509) * untrusted, const check_options *o, int64_t now,
                             check_result *r)
{
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    if (vctx == NULL || !X509_STORE_CTX_init(vctx, trust, leaf, untrusted)) {
        X509_STORE_CTX_free(vctx);
        ERR_clear_error();
        return cli_fail(ctx, "cannot set up chain verification");
    }
    /* What OpenSSL's TLS server side uses to verify a client certificate. */
    X509_STORE_CTX_set_default(vctx, "ssl_client");
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(vctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);
    if (o->at != NULL)
        X509_VERIFY_PARAM_set_time(param, (time_t)now);

    if (X509_verify_cert(vctx) == 1) {
        decide(ctx, X509_STORE_CTX_get0_chain(vctx), now, o, r);
    } else {
        r->decision.accept = 0;
        r->decision.reason = CS_REASON_CHAIN_INVALID;
        r->chain_error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx));
    }
    X509_STORE_CTX_free(vctx);
    ERR_clear_error();
    return CLI_OK;
}

static void print_text(const check_result *r)
{
    const cs_decision *d = &r->decision;
    if (d->accept) {
        printf("accept account=");
        cli_put_text(stdout, d->account);
        if (d->rule_id > 0)
            printf(" rule=%lld\n", (long long)d->rule_id);
        else
            printf(" kind=%s mapping=%lld\n", cs_kind_name(d->kind), (long long)d->mapping_id);
    } else if (r->chain_error != NULL) {
        printf("reject %s (%s)\n", cs_reason_token(d->reason), r->chain_error);
    } else if (d->rule_id > 0) {
        printf("reject %s rule=%lld\n", cs_reason_token(d->reason), (long long)d->rule_id);
    } else if (d->mapping_id > 0) {
        printf("reject %s mapping=%lld\n", cs_reason_token(d->reason), (long long)d->mapping_id);
    } else {
        printf("reject %s\n", cs_reason_token(d->reason));
    }
    printf("subject: ");
    cli_put_text(stdout, r->subject != NULL ? r->subject : "?");
    printf("\nleaf-sha256: %s\n", r->leaf_fp);
    if (d->issuer_fp[0] != '\0')
        printf("issuer-sha256: %s\n", d->issuer_fp);
    if (d->revocation != CS_REVSTATE_NONE)
        printf("revocation: %s\n", cs_revocation_state_name(d->revocation));
    if (r->detail[0] != '\0') {
        printf("detail: ");
        cli_put_text(stdout, r->detail);
        putchar('\n');
    }
}

static void print_json(const check_result *r)
{
    const cs_decision *d = &r->decision;
    printf("{\"decision\":\"%s\",\"reason\":", d->accept ? "accept" : "reject");
    if (d->accept)
        printf("null,\"account\":");
    else
        printf("\"%s\",\"account\":", cs_reason_token(d->reason));
    cli_put_json_string(stdout, d->accept ? d->account : NULL);
    if (d->accept && d->rule_id == 0)
        printf(",\"kind\":\"%s\",\"mapping\":%lld", cs_kind_name(d->kind),
               (long long)d->mapping_id);
    else
        printf(",\"kind\":null,\"mapping\":null");
    if (d->rule_id > 0)
        printf(",\"rule\":%lld,\"strength\":\"weak\"", (long long)d->rule_id);
    else
        printf(",\"rule\":null,\"strength\":%s", d->accept ? "\"strong\"" : "null");
    printf(",\"subject\":");
    cli_put_json_string(stdout, r->subject);
    printf(",\"leaf_sha256\":\"%s\",\"issuer_sha256\":", r->leaf_fp);
    cli_put_json_string(stdout, d->issuer_fp[0] != '\0' ? d->issuer_fp : NULL);
    printf(",\"revocation\":\"%s\",\"chain_error\":", cs_revocation_state_name(d->revocation));
    cli_put_json_string(stdout, r->chain_error);
    printf(",\"detail\":");
    cli_put_json_string(stdout, r->detail[0] != '\0' ? r->detail : NULL);
    printf("}\n");
}

static int parse_check_options(cli_ctx *ctx, int argc, char **argv, check_options *o, int64_t *now)
{
    const cli_option opts[] = {{"ca", &o->ca_path, NULL},
                               {"at", &o->at, NULL},
                               {"json", NULL, &o->json},
                               {"require-strong", NULL, &o->require_strong},
                               CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "CHAIN.pem")) != CLI_CONTINUE)
        return rc;
    o->chain_path = pos.args[0];
    if (o->ca_path == NULL)
        return cli_usage_error(ctx, "missing --ca");
    *now = (int64_t)time(NULL);
    if (o->at != NULL && !cli_parse_time_option(ctx, "--at", o->at, now))
        return CLI_USAGE;
    return CLI_CONTINUE;
}

static int run_check(cli_ctx *ctx, int argc, char **argv)
{
    check_options o = {0};
    int64_t now;
    int rc = parse_check_options(ctx, argc, argv, &o, &now);
    if (rc != CLI_CONTINUE)
        return rc;

    STACK_OF(X509) *chain = cli_read_certs(ctx, o.chain_path);
    if (chain == NULL)
        return CLI_FAIL;
    X509_STORE *trust = build_trust_store(ctx, o.ca_path);
    if (trust == NULL) {
        sk_X509_pop_free(chain, X509_free);
        return CLI_FAIL;
    }
    X509 *leaf = sk_X509_shift(chain); /* the rest is the untrusted chain */
    check_result r;
    memset(&r, 0, sizeof(r));
    r.subject = cli_subject_text(leaf);
    cs_fp_of_cert(leaf, r.leaf_fp);

    rc = verify_and_decide(ctx, trust, leaf, chain, &o, now, &r);
    if (rc == CLI_OK) {
        if (o.json)
            print_json(&r);
        else
            print_text(&r);
        rc = r.decision.accept ? CLI_OK : CLI_FAIL;
    }
    OPENSSL_free(r.subject);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_free(trust);
    return rc;
}

const cli_command cli_cmd_check = {
    "check",
    "explain the decision for a client chain, as a server would make it",
    run_check,
    "Usage: certstore check CHAIN.pem --ca ROOTS.pem [--at TIME] [--json]\n"
    "                       [--require-strong]\n"
    "\n"
    "Verify a client certificate chain (leaf first, then intermediates; PEM,\n"
    "or one DER certificate) against the trusted roots exactly as a TLS server\n"
    "does (purpose sslclient), then apply the certstore policy from the\n"
    "database, opened read-only as a server opens it. Prints\n"
    "  accept account=NAME kind=KIND mapping=ID\n"
    "or, when a many-to-one rule decided,\n"
    "  accept account=NAME rule=ID\n"
    "or\n"
    "  reject REASON [rule=ID | mapping=ID]\n"
    "followed by the leaf's subject and fingerprints. REASON is one of\n"
    "chain-invalid, issuer-not-pinned, pin-disabled, no-mapping,\n"
    "mapping-disabled, mapping-not-yet-valid, mapping-expired,\n"
    "account-disabled, store-unavailable, denied-by-rule,\n"
    "weak-mapping-refused, issued-before-mapping, revoked,\n"
    "revocation-unknown. When the issuer's pin was reached, a line\n"
    "'revocation: STATE' says what its CRL gave (good, grace, stale, missing,\n"
    "revoked, unknown, off).\n"
    "\n"
    "  --ca ROOTS.pem   trusted root certificates (PEM bundle)\n"
    "  --at TIME        decide at this time instead of now (YYYY-MM-DD or RFC 3339)\n"
    "  --json           print one JSON object\n"
    "  --require-strong decide as a server with require_strong = yes\n"
    "\n"
    "Exit status: 0 accepted, 1 rejected or error, 2 usage error.\n",
};
