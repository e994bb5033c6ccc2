/*
 * The verification hook: installed in every SSL_CTX of the process through
 * an ex_data "new" callback, it lets OpenSSL verify the client chain as
 * usual and then, on server-side connections, asks the store's policy.
 *
 * Rejection sets X509_V_ERR_APPLICATION_VERIFICATION: the client sees alert
 * 40 (handshake_failure) and the server's own verify callback is told (it
 * cannot overrule the rejection in enforce mode).
 *
 * Resumption skips certificate verification, so every server-side SSL gets
 * a session-id context bound to the policy state: the database file and
 * its generation. A session made before a narrowing change, or under a
 * database file since replaced by another (whose generation counter is
 * unrelated, and may well be equal), carries another sid_ctx; OpenSSL
 * treats it as a cache miss (session IDs, TLS 1.2 tickets, TLS 1.3 tickets
 * stateless and stateful alike) and the client gets a full handshake,
 * decided anew. The sid_ctx is tag || the first 24 bytes of SHA-256 over
 * the SSL_CTX address, the file's identity and the generation: OpenSSL 3.0
 * cannot read a context's own sid_ctx back, so the SSL_CTX identity stands
 * in for it, and the whole does not fit the 32 bytes raw.
 *
 * The state is read once the ClientHello has arrived (an SSL-level info
 * callback, which passes every event on to the context's own callback);
 * until then the SSL carries an unresumable sid_ctx. A connection accepted
 * before a narrowing change whose ClientHello comes after it must not
 * resume: the session lookup happens after that read. The ticket callbacks (resume.c)
 * add the absolute deadline and the decision's file and generation to each
 * ticket.
 *
 * Store reads are skipped where they cannot change the answer: the state
 * read at a ClientHello, and each acceptance (decache.c), are reused on the
 * same thread while the store's change mark says nothing was committed
 * since; the decision of a handshake does not stat the file again when its
 * ClientHello just did, through the same handle.
 *
 * The decision is kept on the connection and stamped again on every
 * session being ticketed: during TLS 1.3 post-handshake authentication the
 * verify hook runs before OpenSSL copies the session that will hold the
 * certificate, and the session it can see is the one the client held
 * unauthenticated (already ticketed, perhaps cached), which stays untouched.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "certstore.h"
#include "csp.h"

/* Per-connection state; account first, as certstore.h reads it. */
typedef struct {
    char account[CS_ACCOUNT_MAX + 1];
    unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH];
    unsigned int sid_ctx_len;
    const SSL_CTX *bound_ctx; /* the context at SSL_new, before any SNI switch */
    /* The decision in force, for every session this connection gets ticketed. */
    int accepted;
    int64_t valid_until;
    csp_policy_state state;
    /* Handshake done, or a ticket made: a certificate now is TLS 1.3 PHA. */
    int established;
    /* ACCEPT_LOOP events seen in TLS_ST_BEFORE (see csp_client_hello_arriving). */
    unsigned before_events;
    /*
     * The handle through which the ClientHello was bound, its file checked
     * then: the decision of this handshake need not stat it again. 0: none.
     */
    uint64_t hello_epoch;
} csp_conn;

#define CSP_SID_TAG "certstr2"         /* bound to a known file and generation */
#define CSP_SID_TAG_UNKNOWN "certstr0" /* store unreadable: never resumes */
#define CSP_SID_TAG_LEN 8
#define CSP_SID_DIGEST_LEN (SSL_MAX_SID_CTX_LENGTH - CSP_SID_TAG_LEN)

static int csp_ctx_index = -1;
static int csp_conn_index = -1;
static CRYPTO_ONCE csp_hooks_once = CRYPTO_ONCE_STATIC_INIT;
static int csp_hooks_ok;
static EVP_MD *csp_sha256;
static CRYPTO_ONCE csp_sha256_once = CRYPTO_ONCE_STATIC_INIT;

int csp_hooks_account_index(void)
{
    return csp_conn_index;
}

static int csp_denying_all(void)
{
    return csp_policy()->config_error;
}

/* ---- session-id context ---------------------------------------------------- */

static void csp_sid_append(csp_conn *conn, const void *bytes, size_t len)
{
    memcpy(conn->sid_ctx + conn->sid_ctx_len, bytes, len);
    conn->sid_ctx_len += (unsigned int)len;
}

/*
 * The state this thread last read, with the change mark taken just before
 * reading it: while nothing has been committed since (and the handle is
 * the same), it is still the state, and no SQLite read is needed.
 */
static __thread struct {
    csp_policy_state state;
    csp_store_mark mark;
} csp_last_state;

int csp_current_policy_state(csp_policy_state *state)
{
    char why[256];
    csp_store_mark mark;
    cs_db *db = csp_denying_all() ? NULL : csp_dbpool_get(why, sizeof(why));

    if (db == NULL)
        return 0;
    if (csp_dbpool_unchanged(&csp_last_state.mark)) {
        *state = csp_last_state.state;
        return 1;
    }
    csp_dbpool_mark(&mark); /* before the read: a commit after it shows as a change */
    /* The file first: a generation read from a replaced file binds nothing. */
    if (cs_db_identity(db, &state->file) != CS_OK ||
        cs_db_generation(db, &state->generation) != CS_OK) {
        csp_last_state.mark.valid = 0;
        csp_dbpool_discard(); /* replaced, or cannot read: reopen next time */
        return 0;
    }
    csp_last_state.state = *state;
    csp_last_state.mark = mark;
    return 1;
}

int csp_policy_state_equal(const csp_policy_state *a, const csp_policy_state *b)
{
    return a->generation == b->generation && a->file.dev == b->file.dev &&
           a->file.ino == b->file.ino && a->file.birth_sec == b->file.birth_sec &&
           a->file.birth_nsec == b->file.birth_nsec;
}

/* SHA-256, fetched once: looking it up on every handshake costs more than hashing. */
static void csp_sha256_fetch(void)
{
    csp_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void csp_put_u64(unsigned char **p, uint64_t v)
{
    memcpy(*p, &v, sizeof(v));
    *p += sizeof(v);
}

/*
 * A digest rather than a cheaper mix: the sid_ctx is all that keeps a
 * session ID from resuming, so two policy states must not share one.
 */
static __thread struct {
    const SSL_CTX *ctx;
    csp_policy_state state;
    unsigned char digest[CSP_SID_DIGEST_LEN];
    int valid;
} csp_last_sid; /* the digest this thread computed last: most ClientHellos repeat it */

static int csp_sid_digest(const SSL_CTX *ctx, const csp_policy_state *state,
                          unsigned char out[CSP_SID_DIGEST_LEN])
{
    unsigned char input[6 * sizeof(uint64_t)], *p = input;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (csp_last_sid.valid && csp_last_sid.ctx == ctx &&
        csp_policy_state_equal(&csp_last_sid.state, state)) {
        memcpy(out, csp_last_sid.digest, CSP_SID_DIGEST_LEN);
        return 1;
    }

    csp_put_u64(&p, (uint64_t)(uintptr_t)ctx);
    csp_put_u64(&p, state->file.dev);
    csp_put_u64(&p, state->file.ino);
    csp_put_u64(&p, (uint64_t)state->file.birth_sec);
    csp_put_u64(&p, (uint64_t)state->file.birth_nsec);
    csp_put_u64(&p, (uint64_t)state->generation);
    if (!CRYPTO_THREAD_run_once(&csp_sha256_once, csp_sha256_fetch) ||
        EVP_Digest(input, sizeof(input), md, &md_len,
                   csp_sha256 != NULL ? csp_sha256 : EVP_sha256(), NULL) != 1 ||
        md_len < CSP_SID_DIGEST_LEN)
        return 0;
    memcpy(out, md, CSP_SID_DIGEST_LEN);
    csp_last_sid.ctx = ctx;
    csp_last_sid.state = *state;
    memcpy(csp_last_sid.digest, out, CSP_SID_DIGEST_LEN);
    csp_last_sid.valid = 1;
    return 1;
}

/*
 * Without a policy state (not read yet, or unreadable, or no digest), a
 * per-connection value makes the session unresumable: pid and a counter
 * cannot repeat within the process.
 */
static void csp_sid_build(csp_conn *conn, const SSL_CTX *ctx, const csp_policy_state *state)
{
    static uint64_t unknown_counter;
    unsigned char digest[CSP_SID_DIGEST_LEN];
    uint64_t n;
    uint32_t pid;

    conn->sid_ctx_len = 0;
    if (state != NULL && csp_sid_digest(ctx, state, digest)) {
        csp_sid_append(conn, CSP_SID_TAG, CSP_SID_TAG_LEN);
        csp_sid_append(conn, digest, sizeof(digest));
        return;
    }
    n = __atomic_add_fetch(&unknown_counter, 1, __ATOMIC_RELAXED);
    pid = (uint32_t)csp_process_pid();
    csp_sid_append(conn, CSP_SID_TAG_UNKNOWN, CSP_SID_TAG_LEN);
    csp_sid_append(conn, &ctx, sizeof(ctx));
    csp_sid_append(conn, &pid, sizeof(pid));
    csp_sid_append(conn, &n, sizeof(n));
}

static void csp_sid_compute(csp_conn *conn, const SSL_CTX *ctx)
{
    csp_policy_state state;

    memset(&state, 0, sizeof(state));
    csp_sid_build(conn, ctx, csp_current_policy_state(&state) ? &state : NULL);
}

/*
 * The ClientHello has arrived (its header is read; the session lookup has
 * not run yet): bind the connection to the file and generation in force
 * now. Also on a TLS 1.2 renegotiation; not on TLS 1.3 post-handshake
 * messages.
 *
 * A server's handshake starts in TLS_ST_BEFORE with a write transition
 * that sends nothing (ACCEPT_LOOP, before anything is read), then reads
 * the ClientHello header (ACCEPT_LOOP again, still TLS_ST_BEFORE). Only the
 * second needs the store: binding at the first would cost a read for
 * nothing. Should a library ever report only one, the connection keeps the
 * unresumable sid_ctx of SSL_new: a full handshake, never a stale resume.
 */
static int csp_client_hello_arriving(const SSL *ssl, int where, csp_conn *conn)
{
    OSSL_HANDSHAKE_STATE state = SSL_get_state(ssl);

    if ((where & SSL_CB_ACCEPT_LOOP) != SSL_CB_ACCEPT_LOOP) /* not ACCEPT_EXIT */
        return 0;
    if (state == TLS_ST_BEFORE)
        return ++conn->before_events >= 2;
    return state == TLS_ST_OK && SSL_version(ssl) < TLS1_3_VERSION;
}

static void csp_sid_refresh(SSL *ssl, csp_conn *conn)
{
    csp_sid_compute(conn, conn->bound_ctx);
    SSL_set_session_id_context(ssl, conn->sid_ctx, conn->sid_ctx_len);
    conn->hello_epoch = csp_dbpool_epoch();
}

/* Installed on each server SSL; the context's callback still sees every event. */
static void csp_info(const SSL *ssl, int where, int ret)
{
    void (*app_cb)(const SSL *, int, int) = SSL_CTX_get_info_callback(SSL_get_SSL_CTX(ssl));
    csp_conn *conn = SSL_get_ex_data(ssl, csp_conn_index);

    if (conn != NULL && csp_client_hello_arriving(ssl, where, conn))
        csp_sid_refresh((SSL *)ssl, conn); /* the same SSL OpenSSL is driving */
    if (conn != NULL && (where & SSL_CB_HANDSHAKE_DONE) != 0)
        conn->established = 1;
    if (app_cb != NULL)
        app_cb(ssl, where, ret);
}

/* ---- ex_data callbacks ------------------------------------------------------ */

static int csp_verify(X509_STORE_CTX *store_ctx, void *arg);

static void csp_ctx_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    if (parent == NULL)
        return;
    SSL_CTX_set_cert_verify_callback(parent, csp_verify, NULL);
    csp_resume_install(parent);
}

/*
 * Runs inside SSL_new, after the context's sid_ctx was copied into the SSL.
 * A context made with a client-only method is left alone: a client's own
 * session cache must keep resuming across generations.
 */
static void csp_conn_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    SSL *ssl = parent;
    csp_conn *conn;

    if (ssl == NULL || !SSL_is_server(ssl))
        return;
    conn = OPENSSL_zalloc(sizeof(*conn));
    if (conn == NULL)
        return; /* verify then finds no state and rejects */
    conn->bound_ctx = SSL_get_SSL_CTX(ssl);
    /*
     * Unresumable until the ClientHello arrives and csp_info binds the
     * file and generation in force then; reading it here as well would only cost a
     * query per connection. An application that replaces the info callback
     * therefore gets no resumption, never a stale one.
     */
    csp_sid_build(conn, conn->bound_ctx, NULL);
    if (!CRYPTO_set_ex_data(ad, idx, conn)) {
        OPENSSL_free(conn);
        return;
    }
    SSL_set_session_id_context(ssl, conn->sid_ctx, conn->sid_ctx_len);
    /* SSL_new does not copy the context's info callback: csp_info calls it. */
    SSL_set_info_callback(ssl, csp_info);
}

static void csp_conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    OPENSSL_free(ptr);
}

static int csp_conn_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                        long argl, void *argp)
{
    /* SSL_dup: the copy's own new-callback state is replaced by a copy. */
    OPENSSL_free(CRYPTO_get_ex_data(to, idx));
    if (*from_d != NULL)
        *from_d = OPENSSL_memdup(*from_d, sizeof(csp_conn));
    return 1;
}

static void csp_hooks_register(void)
{
    csp_ctx_index =
        CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, csp_ctx_new, NULL, NULL);
    csp_conn_index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, csp_conn_new,
                                             csp_conn_dup, csp_conn_free);
    csp_hooks_ok = csp_ctx_index >= 0 && csp_conn_index >= 0;
    CSP_DEBUG("hooks registered: SSL_CTX index %d, SSL index %d", csp_ctx_index, csp_conn_index);
}

int csp_hooks_install(void)
{
    return CRYPTO_THREAD_run_once(&csp_hooks_once, csp_hooks_register) && csp_hooks_ok;
}

/* ---- the decision ----------------------------------------------------------- */

/*
 * X509_verify_cert returned 1, but an application callback may have let an
 * error through (nginx optional_no_ca, HAProxy crt-ignore-err, Apache
 * optional_no_ca). Trust the chain only if no error is left standing and
 * it ends in a certificate from the trust store (num_untrusted counts the
 * chain's leading certificates that did not come from it).
 */
static int csp_chain_trustworthy(X509_STORE_CTX *store_ctx, STACK_OF(X509) * chain)
{
    return X509_STORE_CTX_get_error(store_ctx) == X509_V_OK && chain != NULL &&
           X509_STORE_CTX_get_num_untrusted(store_ctx) < sk_X509_num(chain);
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
                             uint64_t hello_epoch, cs_decision *d, csp_policy_state *state)
{
    char why[sizeof(d->detail)];
    char leaf_fp[CS_FP_HEX_LEN + 1], issuer_fp[CS_FP_HEX_LEN + 1];
    cs_policy_opts opts = {.require_strong = csp_policy()->require_strong};
    csp_store_mark mark = {.valid = 0};
    int64_t now = (int64_t)time(NULL);
    cs_db *db;

    memset(state, 0, sizeof(*state));
    if (csp_denying_all()) {
        cs_decide(NULL, chain, time(NULL), d);
        snprintf(d->detail, sizeof(d->detail), "%.150s", csp_policy()->config_error_text);
        return;
    }
    if (!csp_chain_trustworthy(store_ctx, chain)) {
        cs_decide(NULL, chain, time(NULL), d);
        d->reason = CS_REASON_CHAIN_INVALID;
        snprintf(d->detail, sizeof(d->detail), "chain accepted despite error %d (%s)",
                 X509_STORE_CTX_get_error(store_ctx),
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(store_ctx)));
        return;
    }
    why[0] = '\0';
    db = csp_dbpool_get_checked(hello_epoch, why, sizeof(why));
    /* The same leaf and issuer as before, nothing committed since: the same acceptance. */
    if (db != NULL && sk_X509_num(chain) >= 2 && cs_fp_of_cert(sk_X509_value(chain, 0), leaf_fp) &&
        cs_fp_of_cert(sk_X509_value(chain, 1), issuer_fp)) {
        if (csp_decache_get(leaf_fp, issuer_fp, now, d, state))
            return;
        opts.leaf_fp = leaf_fp;
        opts.issuer_fp = issuer_fp;
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
    else if (csp_bind_decision(db, d, state))
        csp_decache_put(d, state, &mark, now);
}

static const char *csp_reason_name(const cs_decision *d)
{
    if (d->accept)
        return "none";
    if (csp_denying_all())
        return "config-error";
    return cs_reason_token(d->reason);
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
    };

    csp_log_decision(&a);
}

/*
 * Bind a session to this connection's file and generation and cap its
 * lifetime at the moment the accepted decision stops holding by time alone;
 * record the account, the absolute deadline and the decision's file and
 * generation for resumed
 * connections and the ticket callbacks. An application that put its own
 * sid_ctx on the SSL (Apache, HAProxy) built the session under that value:
 * stamping ours makes it a cache miss under the application's value, i.e.
 * not resumable, which is safe.
 */
static void csp_stamp_session(SSL_SESSION *sess, const csp_conn *conn)
{
    unsigned int len = 0;
    const unsigned char *current;
    int64_t left = conn->valid_until - (int64_t)time(NULL);

    if (sess == NULL)
        return;
    current = SSL_SESSION_get0_id_context(sess, &len);
    if (len != conn->sid_ctx_len || memcmp(current, conn->sid_ctx, len) != 0) {
        CSP_DEBUG("session sid_ctx set by the application: made non-resumable");
        SSL_SESSION_set1_id_context(sess, conn->sid_ctx, conn->sid_ctx_len);
    }
    if (conn->valid_until != CS_TIME_FOREVER && conn->valid_until != CS_TIME_NONE &&
        left < (int64_t)SSL_SESSION_get_timeout(sess))
        SSL_SESSION_set_timeout(sess, left > 0 ? (long)left : 0);
    csp_session_stamp(sess, conn->account, conn->valid_until, &conn->state);
}

/*
 * A ticket is being made for `sess` (resume.c). During TLS 1.3 PHA OpenSSL
 * verifies the certificate first and only then copies the session to hold
 * it, so the verify hook cannot reach the session that gets ticketed: the
 * decision kept on the connection is stamped here instead, on whichever
 * session object OpenSSL tickets.
 */
void csp_stamp_ticketed_session(SSL *ssl, SSL_SESSION *sess)
{
    csp_conn *conn = SSL_get_ex_data(ssl, csp_conn_index);

    if (conn == NULL)
        return;
    conn->established = 1;
    if (conn->accepted)
        csp_stamp_session(sess, conn);
}

/*
 * A certificate after the first handshake of a TLS 1.3 connection is
 * post-handshake authentication: the connection's session is the one the
 * client held while unauthenticated, already ticketed and maybe cached.
 */
static int csp_post_handshake_auth(const SSL *ssl, const csp_conn *conn)
{
    return conn->established && SSL_version(ssl) >= TLS1_3_VERSION;
}

static void csp_remember_decision(csp_conn *conn, const cs_decision *d,
                                  const csp_policy_state *state)
{
    memcpy(conn->account, d->account, sizeof(conn->account));
    conn->accepted = 1;
    conn->valid_until = d->valid_until;
    conn->state = *state;
}

/* A certificate not accepted: nothing earlier on this connection still speaks for it. */
static void csp_forget_decision(csp_conn *conn)
{
    if (conn == NULL)
        return;
    conn->account[0] = '\0';
    conn->accepted = 0;
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

static int csp_verify_server(X509_STORE_CTX *store_ctx, SSL *ssl)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(store_ctx);
    csp_conn *conn = SSL_get_ex_data(ssl, csp_conn_index);
    cs_decision d;
    csp_policy_state state;

    uint64_t hello_epoch = 0;

    /* The file was checked at this handshake's ClientHello; not for PHA or a renegotiation. */
    if (conn != NULL && !conn->established) {
        hello_epoch = conn->hello_epoch;
        conn->hello_epoch = 0;
    }
    csp_decide_chain(store_ctx, chain, hello_epoch, &d, &state);
    if (d.accept && conn == NULL) {
        d.accept = 0; /* no per-connection state: cannot bind the session */
        d.reason = CS_REASON_STORE_UNAVAILABLE;
        snprintf(d.detail, sizeof(d.detail), "no connection state (out of memory)");
    }
    if (d.accept) {
        csp_remember_decision(conn, &d, &state);
        if (!csp_post_handshake_auth(ssl, conn))
            csp_stamp_session(SSL_get_session(ssl), conn);
        csp_log(&d, chain, ssl, "accept");
        return 1;
    }
    csp_forget_decision(conn);
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

static int csp_verify(X509_STORE_CTX *store_ctx, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    int ret = X509_verify_cert(store_ctx);

    if (ssl == NULL || !SSL_is_server(ssl))
        return ret; /* client side, or not a TLS verification: untouched */
    if (ret <= 0)
        return ret; /* OpenSSL's (and the application's) verdict stands */
    return csp_verify_server(store_ctx, ssl);
}
