/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore check: decide a client chain exactly as a server with the
 * provider would. OpenSSL verifies the chain first (purpose sslclient, as a
 * TLS server does); only a verified chain reaches the policy, read from the
 * database opened read-only like a server opens it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <openssl/x509v3.h>

#include "cli.h"

typedef struct {
    const char *chain_path, *ca_path, *at;
    int json;
    int require_strong;
    int explain;
} check_options;

typedef struct {
    cs_decision decision;
    const char *chain_error; /* OpenSSL's text when the chain did not verify */
    char detail[256];        /* why the store is unavailable, if it is */
    char *subject;
    char leaf_fp[CS_FP_HEX_LEN + 1];
    char *issuer_subject; /* of the issuing CA in the verified chain */
    char *issuer_pem;     /* --explain, issuer not pinned: what to pin */
    char *explained;      /* --explain: the steps, as text or JSON */
    size_t explained_len;
    char sans[2048]; /* --explain: the leaf's SANs, "TYPE:value" joined by ", " */
} check_result;

/* --explain: each step of cs_decide_explain, written to a memory stream. */
typedef struct {
    FILE *out;
    int json;
    int steps;
} explainer;

static const char *step_label(const cs_explain_step *s)
{
    if (s->decided)
        return s->accept ? "decided: accept" : "decided: reject";
    if (!s->applies || s->what == CS_EXPLAIN_PIN)
        return "passed over";
    return s->accept ? "would accept" : "would reject";
}

static void put_rule_conditions_text(FILE *out, const cs_rule_spec *r)
{
    const char *names[] = {"subject", "issuer", "san", "eku", "policy"};
    const char *values[] = {r->subject, r->issuer, r->san, r->eku, r->policy};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (values[i] == NULL || *values[i] == '\0')
            continue;
        fprintf(out, " %s%s=\"", names[i],
                (i == 0 && r->subject_exact) || (i == 1 && r->issuer_exact) ? "-exact" : "");
        for (const char *p = values[i]; *p != '\0'; p++) {
            if (*p == '\n') {
                fputs("; ", out);
            } else {
                char one[2] = {*p, '\0'};
                cli_put_text(out, one);
            }
        }
        fputc('"', out);
    }
}

static void explain_text(explainer *e, const cs_explain_step *s)
{
    FILE *out = e->out;
    if (s->what == CS_EXPLAIN_PIN) {
        fprintf(out, "  pin: %s%s\n", s->why, s->decided ? " (decided)" : "");
        return;
    }
    if (s->what == CS_EXPLAIN_MAPPING) {
        if (s->id == 0) {
            fprintf(out, "  mapping %s: none (%s)\n", cs_kind_name(s->kind), s->why);
            return;
        }
        fprintf(out, "  mapping %lld %s -> ", (long long)s->id, cs_kind_name(s->kind));
    } else {
        fprintf(out, "  rule %lld %s", (long long)s->id,
                s->rule->action == CS_RULE_DENY ? "deny" : "allow -> ");
    }
    if (s->what == CS_EXPLAIN_MAPPING || s->rule->action == CS_RULE_ALLOW)
        cli_put_text(out, s->account);
    fprintf(out, ": %s", step_label(s));
    if (s->applies && !s->accept)
        fprintf(out, " %s", cs_reason_token(s->reason));
    fprintf(out, " (%s)", s->why);
    if (s->what == CS_EXPLAIN_RULE)
        put_rule_conditions_text(out, s->rule);
    fputc('\n', out);
}

static void explain_json(explainer *e, const cs_explain_step *s)
{
    static const char *const what[] = {"pin", "mapping", "rule"};
    FILE *out = e->out;
    fprintf(out, "%s{\"step\":\"%s\",\"id\":", e->steps > 0 ? "," : "", what[s->what]);
    if (s->id > 0)
        fprintf(out, "%lld", (long long)s->id);
    else
        fputs("null", out);
    fprintf(out, ",\"kind\":");
    cli_put_json_string(out, s->what == CS_EXPLAIN_MAPPING ? cs_kind_name(s->kind) : NULL);
    fprintf(out, ",\"account\":");
    cli_put_json_string(out, *s->account != '\0' ? s->account : NULL);
    fprintf(out, ",\"applies\":%s,\"decided\":%s,\"outcome\":", s->applies ? "true" : "false",
            s->decided ? "true" : "false");
    if (s->what == CS_EXPLAIN_PIN || !s->applies)
        cli_put_json_string(out, NULL);
    else
        cli_put_json_string(out, s->accept ? "accept" : cs_reason_token(s->reason));
    fprintf(out, ",\"why\":");
    cli_put_json_string(out, s->why);
    fputc('}', out);
}

static void explain_step(const cs_explain_step *s, void *arg)
{
    explainer *e = arg;
    if (e->json)
        explain_json(e, s);
    else
        explain_text(e, s);
    e->steps++;
}

/* The leaf's subjectAltNames as "TYPE:value", UPN included. */
static void collect_sans(const X509 *leaf, char *buf, size_t len)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const ASN1_STRING *str = NULL;
        const char *type = NULL;
        char ip[64] = "";
        switch (g->type) {
        case GEN_DNS:
            type = "DNS", str = g->d.dNSName;
            break;
        case GEN_EMAIL:
            type = "email", str = g->d.rfc822Name;
            break;
        case GEN_URI:
            type = "URI", str = g->d.uniformResourceIdentifier;
            break;
        case GEN_IPADD: {
            const unsigned char *a = g->d.iPAddress->data;
            type = "IP";
            if (g->d.iPAddress->length == 4)
                snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
            else
                for (int k = 0; k < g->d.iPAddress->length && k < 16; k += 2)
                    snprintf(
                        ip + strlen(ip), sizeof(ip) - strlen(ip), "%s%x", k ? ":" : "",
                        (unsigned)(a[k] << 8 | (k + 1 < g->d.iPAddress->length ? a[k + 1] : 0)));
            break;
        }
        case GEN_OTHERNAME:
            if (OBJ_obj2nid(g->d.otherName->type_id) == NID_ms_upn &&
                (g->d.otherName->value->type == V_ASN1_UTF8STRING ||
                 g->d.otherName->value->type == V_ASN1_IA5STRING)) {
                type = "UPN";
                str = g->d.otherName->value->value.asn1_string;
            }
            break;
        default:
            break;
        }
        if (type == NULL)
            continue;
        int n = snprintf(buf + used, len - used, "%s%s:%.*s", used ? ", " : "", type,
                         str != NULL ? ASN1_STRING_length(str) : (int)strlen(ip),
                         str != NULL ? (const char *)ASN1_STRING_get0_data(str) : ip);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    GENERAL_NAMES_free(names);
}

static char *cert_pem(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = NULL, *mem = NULL;
    if (bio != NULL && PEM_write_bio_X509(bio, cert)) {
        long len = BIO_get_mem_data(bio, &mem);
        text = OPENSSL_strndup(mem != NULL ? mem : "", (size_t)len);
    }
    BIO_free(bio);
    return text;
}

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
    explainer e = {.json = o->json};
    if (o->explain && db != NULL)
        e.out = open_memstream(&r->explained, &r->explained_len);
    if (e.out != NULL)
        cs_decide_explain(db, chain, now, &opts, &r->decision, explain_step, &e);
    else
        cs_decide_ex(db, chain, now, &opts, &r->decision);
    if (e.out != NULL)
        fclose(e.out);
    if (sk_X509_num(chain) > 1) {
        X509 *issuer = sk_X509_value(chain, 1);
        r->issuer_subject = cli_subject_text(issuer);
        if (o->explain && r->decision.reason == CS_REASON_ISSUER_NOT_PINNED)
            r->issuer_pem = cert_pem(issuer);
    }
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
    if (d->ocsp != CS_OCSP_NONE) {
        printf("ocsp: %s next-update=", cs_ocsp_status_name(d->ocsp));
        cli_put_text_time(stdout, d->ocsp_next_update);
        putchar('\n');
    }
    if (r->detail[0] != '\0') {
        printf("detail: ");
        cli_put_text(stdout, r->detail);
        putchar('\n');
    }
    if (d->reason == CS_REASON_ISSUER_NOT_PINNED && r->issuer_subject != NULL) {
        printf("issuer: ");
        cli_put_text(stdout, r->issuer_subject);
        printf("\nto pin it: certstore pin add ISSUER.pem (the issuing CA's certificate%s)\n",
               r->issuer_pem != NULL ? ", printed below" : "");
    }
    if (r->sans[0] != '\0') {
        printf("san: ");
        cli_put_text(stdout, r->sans);
        putchar('\n');
    }
    if (r->explained != NULL) {
        printf("explain:\n");
        fwrite(r->explained, 1, r->explained_len, stdout);
    }
    if (r->issuer_pem != NULL)
        fputs(r->issuer_pem, stdout);
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
    printf(",\"revocation\":\"%s\",\"ocsp\":\"%s\",\"ocsp_next_update\":",
           cs_revocation_state_name(d->revocation), cs_ocsp_status_name(d->ocsp));
    cli_put_json_time(stdout, d->ocsp_next_update);
    printf(",\"chain_error\":");
    cli_put_json_string(stdout, r->chain_error);
    printf(",\"detail\":");
    cli_put_json_string(stdout, r->detail[0] != '\0' ? r->detail : NULL);
    printf(",\"issuer_subject\":");
    cli_put_json_string(stdout, r->issuer_subject);
    if (r->explained != NULL) {
        printf(",\"san\":");
        cli_put_json_string(stdout, r->sans);
        printf(",\"issuer_pem\":");
        cli_put_json_string(stdout, r->issuer_pem);
        printf(",\"explain\":[");
        fwrite(r->explained, 1, r->explained_len, stdout);
        putchar(']');
    }
    printf("}\n");
}

static int parse_check_options(cli_ctx *ctx, int argc, char **argv, check_options *o, int64_t *now)
{
    const cli_option opts[] = {
        {"ca", &o->ca_path, NULL},      {"at", &o->at, NULL},
        {"json", NULL, &o->json},       {"require-strong", NULL, &o->require_strong},
        {"explain", NULL, &o->explain}, CLI_OPTIONS_END};
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
    if (o.explain)
        collect_sans(leaf, r.sans, sizeof(r.sans));

    rc = verify_and_decide(ctx, trust, leaf, chain, &o, now, &r);
    if (rc == CLI_OK) {
        if (o.json)
            print_json(&r);
        else
            print_text(&r);
        rc = r.decision.accept ? CLI_OK : CLI_FAIL;
    }
    OPENSSL_free(r.subject);
    OPENSSL_free(r.issuer_subject);
    OPENSSL_free(r.issuer_pem);
    free(r.explained);
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
    "                       [--require-strong] [--explain]\n"
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
    "revocation-unknown. For issuer-not-pinned the issuing CA's subject\n"
    "follows, and the command that would pin it. When the issuer's pin was\n"
    "reached, a line 'revocation: STATE' says what its CRL and the leaf's\n"
    "stored OCSP answer gave (good, grace, stale, missing, revoked, unknown,\n"
    "off), and when the leaf has a stored OCSP answer, a line\n"
    "'ocsp: STATUS next-update=TIME' says which (good, revoked, unknown).\n"
    "\n"
    "  --ca ROOTS.pem   trusted root certificates (PEM bundle)\n"
    "  --at TIME        decide at this time instead of now (YYYY-MM-DD or RFC 3339)\n"
    "  --json           print one JSON object\n"
    "  --require-strong decide as a server with require_strong = yes\n"
    "  --explain        also list every step considered, in the server's order:\n"
    "                   the issuing pin, the mapping of each kind (cert,\n"
    "                   issuer-serial, ski, spki), then each enabled rule of the\n"
    "                   pin, each with what it decided or would have decided\n"
    "                   on its own and why ('decided', 'would accept', 'would\n"
    "                   reject REASON', 'passed over'), the leaf's SANs (UPN\n"
    "                   included), and for issuer-not-pinned the issuing CA's\n"
    "                   certificate in PEM, ready for 'certstore pin add'.\n"
    "                   JSON: \"explain\":[{step,id,kind,account,applies,\n"
    "                   decided,outcome,why}], \"san\", \"issuer_pem\"\n"
    "\n"
    "Exit status: 0 accepted, 1 rejected or error, 2 usage error.\n",
};
