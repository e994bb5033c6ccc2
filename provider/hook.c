/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The verification hook: installed in every SSL_CTX of the process (conn.c),
 * it lets OpenSSL verify the client chain as usual and then, on
 * server-side connections, asks the store's policy.
 *
 * Any error raised while the chain is verified rejects it (chain-invalid),
 * whatever the application's verify callback answered or did to the error
 * afterwards: the hook watches every call of that callback.
 *
 * Rejection sets X509_V_ERR_APPLICATION_VERIFICATION: the client sees alert
 * 40 (handshake_failure) and the server's own verify callback is told (it
 * cannot overrule the rejection in enforce mode).
 *
 * The decision is read from the file at the configured path when it is
 * taken (dbpool.c), and an acceptance is reused only while nothing was
 * committed since (decache.c). What follows from it for the connection and
 * its sessions is conn.c's.
 */
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "csp.h"

static int csp_denying_all(void)
{
    return csp_policy()->config_error;
}

/* ---- every error raised during verification ---------------------------------- */

typedef struct {
    X509_STORE_CTX_verify_cb app; /* the callback OpenSSL would have called */
    int errors;
    int first_error;
    int first_depth;
} csp_verify_watch;

static int csp_watch_index = -1;

int csp_verify_watch_register(void)
{
    csp_watch_index = X509_STORE_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return csp_watch_index >= 0;
}

/* Called by X509_verify_cert for every certificate and every error (ok == 0). */
static int csp_watch_cb(int ok, X509_STORE_CTX *store_ctx)
{
    csp_verify_watch *w = X509_STORE_CTX_get_ex_data(store_ctx, csp_watch_index);

    if (w == NULL)
        return 0; /* cannot happen while csp_verify runs: fail closed */
    if (!ok && w->errors++ == 0) {
        w->first_error = X509_STORE_CTX_get_error(store_ctx);
        w->first_depth = X509_STORE_CTX_get_error_depth(store_ctx);
    }
    return w->app != NULL ? w->app(ok, store_ctx) : ok;
}

/*
 * X509_verify_cert with every call of the verify callback watched; the
 * application's callback runs as it would have.
 */
static int csp_verify_watched(X509_STORE_CTX *store_ctx, csp_verify_watch *w)
{
    int ret;

    memset(w, 0, sizeof(*w));
    w->app = X509_STORE_CTX_get_verify_cb(store_ctx);
    if (!X509_STORE_CTX_set_ex_data(store_ctx, csp_watch_index, w)) {
        w->errors = 1;
        w->first_error = X509_V_ERR_OUT_OF_MEM;
        return X509_verify_cert(store_ctx);
    }
    X509_STORE_CTX_set_verify_cb(store_ctx, csp_watch_cb);
    ret = X509_verify_cert(store_ctx);
    X509_STORE_CTX_set_verify_cb(store_ctx, w->app);
    X509_STORE_CTX_set_ex_data(store_ctx, csp_watch_index, NULL);
    return ret;
}

/* ---- the decision ----------------------------------------------------------- */

/*
 * X509_verify_cert returned 1, but an application callback may have let an
 * error through (nginx optional_no_ca, HAProxy crt-ignore-err, Apache
 * optional_no_ca), and even cleared it. Trust the chain only if no error was
 * raised at all and it ends in a certificate from the trust store
 * (num_untrusted counts the chain's leading certificates that did not come
 * from it).
 */
static int csp_chain_trustworthy(X509_STORE_CTX *store_ctx, STACK_OF(X509) * chain,
                                 const csp_verify_watch *w)
{
    return w->errors == 0 && X509_STORE_CTX_get_error(store_ctx) == X509_V_OK && chain != NULL &&
           X509_STORE_CTX_get_num_untrusted(store_ctx) < sk_X509_num(chain);
}

static void csp_chain_error_detail(X509_STORE_CTX *store_ctx, const csp_verify_watch *w,
                                   cs_decision *d)
{
    int err = w->errors > 0 ? w->first_error : X509_STORE_CTX_get_error(store_ctx);

    if (err == X509_V_OK) {
        snprintf(d->detail, sizeof(d->detail), "chain does not end in a trusted certificate");
        return;
    }
    snprintf(d->detail, sizeof(d->detail), "chain accepted despite error %d (%s) at depth %d", err,
             X509_verify_cert_error_string(err),
             w->errors > 0 ? w->first_depth : X509_STORE_CTX_get_error_depth(store_ctx));
}

/*
 * An acceptance binds sessions to the file it was read from: when that file
 * can no longer be named (replaced while deciding), decide nothing.
 */
static int csp_bind_decision(cs_db *db, cs_decision *d, csp_policy_state *state)
{
    memset(state, 0, sizeof(*state));
    state->generation = d->generation;
    if (!d->accept)
        return 0;
    if (cs_db_identity(db, &state->file) == CS_OK)
        return 1;
    d->accept = 0;
    d->reason = CS_REASON_STORE_UNAVAILABLE;
    snprintf(d->detail, sizeof(d->detail), "%.120s: replaced while deciding", csp_policy()->db);
    csp_dbpool_discard();
    return 0;
}

static void csp_decide_chain(X509_STORE_CTX *store_ctx, STACK_OF(X509) * chain,
                             const csp_verify_watch *w, cs_decision *d, csp_policy_state *state)
{
    char why[sizeof(d->detail)];
    char leaf_fp[CS_FP_HEX_LEN + 1], issuer_fp[CS_FP_HEX_LEN + 1];
    cs_policy_opts opts = {.require_strong = csp_policy()->require_strong};
    csp_store_mark mark = {.valid = 0};
    int64_t now = (int64_t)time(NULL);
    X509 *leaf = NULL, *issuer = NULL;
    cs_db *db;

    memset(state, 0, sizeof(*state));
    if (csp_denying_all()) {
        cs_decide(NULL, chain, time(NULL), d);
        snprintf(d->detail, sizeof(d->detail), "%.150s", csp_policy()->config_error_text);
        return;
    }
    if (!csp_chain_trustworthy(store_ctx, chain, w)) {
        cs_decide(NULL, chain, time(NULL), d);
        d->reason = CS_REASON_CHAIN_INVALID;
        csp_chain_error_detail(store_ctx, w, d);
        return;
    }
    why[0] = '\0';
    db = csp_dbpool_get(why, sizeof(why)); /* the file at the path now, not at the ClientHello */
    if (db != NULL && sk_X509_num(chain) >= 2) {
        leaf = sk_X509_value(chain, 0);
        issuer = sk_X509_value(chain, 1);
        /* The same leaf and issuer as before, nothing committed since: the same acceptance. */
        if (csp_decache_get(leaf, issuer, now, d, state))
            return;
        if (cs_fp_of_cert(leaf, leaf_fp) && csp_issuer_fp(issuer, issuer_fp)) {
            opts.leaf_fp = leaf_fp;
            opts.issuer_fp = issuer_fp;
        }
    }
    if (db != NULL)
        csp_dbpool_mark(&mark); /* before the read: a commit after it shows as a change */
    cs_decide_ex(db, chain, now, &opts, d);
    if (db == NULL && strncmp(why, csp_policy()->db, strlen(csp_policy()->db)) == 0)
        snprintf(d->detail, sizeof(d->detail), "%s", why); /* names the file already */
    else if (db == NULL)
        snprintf(d->detail, sizeof(d->detail), "%.60s: %.90s", csp_policy()->db, why);
    else if (!d->accept && d->reason == CS_REASON_STORE_UNAVAILABLE)
        csp_dbpool_discard(); /* retry the open on the next handshake */
    else if (csp_bind_decision(db, d, state) && leaf != NULL)
        csp_decache_put(leaf, issuer, d, state, &mark, now);
}

static const char *csp_reason_name(const cs_decision *d)
{
    if (d->accept)
        return "none";
    if (csp_denying_all())
        return "config-error";
    return cs_reason_token(d->reason);
}

/* Only a revocation state the operator must hear about goes into the line. */
static const char *csp_revocation_note(const cs_decision *d)
{
    if (d->revocation == CS_REVSTATE_STALE || d->revocation == CS_REVSTATE_MISSING ||
        d->revocation == CS_REVSTATE_GRACE)
        return cs_revocation_state_name(d->revocation);
    return NULL;
}

static void csp_log(const cs_decision *d, STACK_OF(X509) * chain, const SSL *ssl,
                    const char *result)
{
    csp_log_decision_args a = {
        .result = result,
        .reason = csp_reason_name(d),
        .account = d->account,
        .detail = d->detail,
        .leaf = chain != NULL && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL,
        .leaf_fp = d->leaf_fp,
        .issuer_fp = d->issuer_fp,
        .ssl = ssl,
        .mode = csp_mode_name(csp_policy()->mode),
        .revocation = csp_revocation_note(d),
        .mapping_id = d->rule_id == 0 ? d->mapping_id : 0,
        .kind = d->rule_id == 0 && d->mapping_id > 0 ? cs_kind_name(d->kind) : NULL,
    };

    csp_log_decision(&a);
}

/* Tell the application's own verify callback, as OpenSSL would. */
static void csp_tell_application(X509_STORE_CTX *store_ctx, STACK_OF(X509) * chain)
{
    X509_STORE_CTX_verify_cb app_cb = X509_STORE_CTX_get_verify_cb(store_ctx);

    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    X509_STORE_CTX_set_error_depth(store_ctx, 0);
    X509_STORE_CTX_set_current_cert(store_ctx, sk_X509_value(chain, 0));
    if (app_cb != NULL)
        (void)app_cb(0, store_ctx);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
}

static int csp_verify_server(X509_STORE_CTX *store_ctx, SSL *ssl, int verified,
                             const csp_verify_watch *w)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(store_ctx);
    csp_conn *conn = csp_conn_of(ssl);
    cs_decision d;
    csp_policy_state state;

    if (verified <= 0) {
        /* OpenSSL's (and the application's) verdict stands; the certificate is decided. */
        if (conn != NULL)
            csp_conn_not_accepted(ssl, conn, cs_reason_token(CS_REASON_CHAIN_INVALID), NULL);
        return verified;
    }
    csp_decide_chain(store_ctx, chain, w, &d, &state);
    if (d.accept && conn == NULL) {
        d.accept = 0; /* no per-connection state: cannot bind the session */
        d.reason = CS_REASON_STORE_UNAVAILABLE;
        snprintf(d.detail, sizeof(d.detail), "no connection state (out of memory)");
    }
    if (d.accept) {
        csp_conn_accepted(ssl, conn, &d, &state);
        csp_log(&d, chain, ssl, "accept");
        return 1;
    }
    if (conn != NULL)
        csp_conn_not_accepted(ssl, conn, csp_reason_name(&d), &d);
    if (csp_policy()->mode == CSP_MODE_AUDIT) {
        csp_log(&d, chain, ssl, "would-reject");
        return 1;
    }
    csp_log(&d, chain, ssl, "reject");
    if (chain != NULL && sk_X509_num(chain) > 0)
        csp_tell_application(store_ctx, chain);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

int csp_verify(X509_STORE_CTX *store_ctx, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    csp_verify_watch w;

    if (ssl == NULL || !SSL_is_server(ssl))
        return X509_verify_cert(store_ctx); /* client side, or not TLS: untouched */
    return csp_verify_server(store_ctx, ssl, csp_verify_watched(store_ctx, &w), &w);
}

/*
 * A client certificate reached CertificateVerify without this hook having
 * decided it: the application replaced the verification callback. The
 * connection fails (conn.c); say why.
 */
void csp_hook_bypassed(const SSL *ssl)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    char leaf_fp[CS_FP_HEX_LEN + 1] = "";
    csp_log_decision_args a = {
        .result = "reject",
        .reason = "verify-hook-replaced",
        .account = "",
        .detail = "the application replaced the certificate verification callback; "
                  "certstore did not decide this certificate",
        .leaf = leaf,
        .leaf_fp = leaf_fp,
        .issuer_fp = "",
        .ssl = ssl,
        .mode = csp_mode_name(csp_policy()->mode),
    };

    if (leaf != NULL)
        cs_fp_of_cert(leaf, leaf_fp);
    csp_log_decision(&a);
}
