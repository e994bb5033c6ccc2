/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server connections under the policy: the per-connection state, and the
 * session-id context that decides which sessions a connection may resume.
 *
 * Invariant: a server connection carries a session-id context that some
 * session may share only between the moment OpenSSL has the whole, final
 * ClientHello and the moment it has looked the offered session up; that
 * context is a digest of the policy state (database file and generation)
 * read at that moment and of the context the connection is served by. At
 * every other time the connection carries a value of its own that no
 * session has. OpenSSL compares the two for session IDs and tickets alike
 * (ssl_get_prev_session), so a session made under another policy state or
 * context is a cache miss: a full handshake, decided anew.
 *
 * The moment, in OpenSSL 3.0: with the whole ClientHello parsed
 * (TLS_ST_SR_CLNT_HELLO) and before the lookup, OpenSSL asks the security
 * callback about each protocol version a version-flexible method may
 * choose (SSL_SECOP_VERSION: every first ClientHello, TLS 1.2 or 1.3), and
 * calls the PSK find-session callback for each identity of a TLS 1.3
 * pre_shared_key extension just before it looks that identity up as a
 * ticket (also the ClientHello after a HelloRetryRequest, where versions
 * are not chosen again). Both are the connection's own, copied from its
 * context; the security callback is chained to OpenSSL's default, and the
 * PSK one finds no external PSK. Servers leave both alone. Every info
 * callback event (each message read or written) takes the binding away
 * again. Where an application replaces them, or the connection's info
 * callback (which nothing would then take the binding away from), the
 * connection is not bound: it does not resume, and never resumes stale.
 * The security callback also unbinds at every other SSL_SECOP_VERSION
 * (statem.c asks at each handshake start, SSL_clear and renegotiation
 * included) and, where the info callback is not ours, forgets the last
 * decision there; each CertificateRequest (SSL_SECOP_SIGALG_SUPPORTED in
 * TLS_ST_SW_CERT_REQ) forgets it whatever the info callback.
 *
 * An SSL made by a role-neutral method (TLS_method: nginx's servers and
 * upstreams) keeps its context's session-id context until it starts a
 * handshake as a server: a client's sessions must keep it, or OpenSSL's
 * client refuses every resumption its server accepts.
 *
 * A session certstore accepted is stamped (csp_conn_stamp) with the
 * context digest of the decision's policy state, its lifetime capped at the
 * decision's deadline, and the ticket appdata of resume.c, which records
 * the same context: an application's external session cache may replace
 * the session's own (csp_get_session).
 *
 * The same security callback sees the client's CertificateVerify
 * (SSL_SECOP_SIGALG_CHECK in TLS_ST_SR_CERT_VRFY): a certificate the verify
 * hook did not decide means the application replaced it, and the
 * connection fails there, before the handshake completes. Below TLS 1.2
 * that question never comes, so a server that asks for certificates does
 * not offer those versions.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "certstore.h"
#include "csp.h"

/* An application's external session cache lookup (SSL_CTX_sess_set_get_cb). */
typedef SSL_SESSION *(*csp_get_session_fn)(SSL *, const unsigned char *, int, int *);

/* A server_name extension naming one host of up to 255 bytes; a longer one does not bind. */
#define CSP_SNI_MAX 260

/* What a session-id context is made of, besides the policy state. */
typedef struct {
    uint64_t ctx_serial; /* the serving SSL_CTX, never reused in the process */
    int verify_mode;
    int verify_depth;
    /*
     * The ClientHello's server_name extension as sent (none: length 0).
     * OpenSSL 3.0 looks a TLS 1.2 session up before a servername callback
     * (nginx's) switches to the host's context, so the context alone would
     * let one host's sessions resume on another host of the same port.
     */
    size_t sni_len;
    unsigned char sni[CSP_SNI_MAX];
} csp_bind_key;

struct csp_conn {
    certstore_conn_state pub; /* first: certstore.h reads it there */
    /* The decision of this handshake's certificate. */
    int decided; /* the verify hook ran for the certificate in hand */
    int accepted;
    int64_t valid_until;
    csp_policy_state state;
    size_t appdata_len;    /* the sessions' appdata, formatted once at the acceptance */
    size_t appdata_ctx_at; /* where in it each stamp writes its session-id context */
    char appdata[CSP_APPDATA_MAX];
    int established; /* handshake done: a certificate now is TLS 1.3 PHA */
    /* The binding (see the invariant above). */
    int bound;        /* the SSL carries a bound session-id context right now */
    int hello_bound;  /* a ClientHello of this handshake was bound: hello_key holds */
    int role_pending; /* made by a role-neutral method: sid_ctx untouched until it serves */
    csp_bind_key hello_key;
    unsigned char bound_sid[SSL_MAX_SID_CTX_LENGTH]; /* carried while bound && hello_bound */
    unsigned char unresumable[SSL_MAX_SID_CTX_LENGTH];
    csp_get_session_fn app_get_session; /* the application's external cache (csp_get_session) */
};

_Static_assert(offsetof(struct csp_conn, pub) == 0 && offsetof(certstore_conn_state, account) == 0,
               "certstore.h reads the account at offset 0 of the connection state");
_Static_assert(CERTSTORE_ACCOUNT_MAX == CS_ACCOUNT_MAX, "certstore.h sizes the account");

/* Per SSL_CTX: a serial, so a context made at a freed one's address is another. */
typedef struct {
    uint64_t serial;
    csp_get_session_fn app_get_session; /* what csp_get_session stands in front of */
} csp_ctx_state;

#define CSP_SID_TAG "certstr3"         /* bound to a policy state and context */
#define CSP_SID_TAG_UNBOUND "certstr0" /* a connection's own: no session has it */
#define CSP_SID_TAG_NEVER "certstr1"   /* a session's: no connection has it */
#define CSP_SID_TAG_LEN 8
#define CSP_SID_FAMILY_LEN 7 /* "certstr": one of the three above */
#define CSP_SID_DIGEST_LEN (SSL_MAX_SID_CTX_LENGTH - CSP_SID_TAG_LEN)

static int csp_ctx_index = -1;
static int csp_conn_index = -1;
static CRYPTO_ONCE csp_conn_once = CRYPTO_ONCE_STATIC_INIT;
static int csp_conn_ok;
static uint64_t csp_ctx_serials;
/*
 * Drawn once per process (inherited by forked workers, which share their
 * parent's contexts): serials restart in every process, and a session cache
 * that outlives a restart (stunnel's sessiond, Apache's memcache) must not
 * hand a session of the old process's contexts to the new one's.
 */
static uint64_t csp_process_salt;
static uint64_t csp_unbound_serials;
static EVP_MD *csp_sha256;
static CRYPTO_ONCE csp_sha256_once = CRYPTO_ONCE_STATIC_INIT;

/* OpenSSL's own security callback, which ours passes every question on to. */
typedef int (*csp_security_fn)(const SSL *, const SSL_CTX *, int, int, int, void *, void *);
static csp_security_fn csp_default_security;

int csp_hooks_account_index(void)
{
    return csp_conn_index;
}

csp_conn *csp_conn_of(const SSL *ssl)
{
    return csp_conn_index < 0 ? NULL : SSL_get_ex_data(ssl, csp_conn_index);
}

/* ---- session-id contexts ------------------------------------------------------ */

static void csp_sha256_fetch(void)
{
    csp_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int csp_bind_key_of(const SSL *ssl, csp_bind_key *key)
{
    const csp_ctx_state *cs = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), csp_ctx_index);
    const unsigned char *random, *sni;
    size_t sni_len = 0;

    if (cs == NULL)
        return 0; /* a context made before certstore was loaded */
    if (SSL_client_hello_get0_random((SSL *)ssl, &random) == 0)
        return 0; /* no ClientHello in hand: its server name cannot be told */
    key->ctx_serial = cs->serial;
    key->verify_mode = SSL_get_verify_mode(ssl);
    key->verify_depth = SSL_get_verify_depth(ssl);
    key->sni_len = 0;
    if (SSL_client_hello_get0_ext((SSL *)ssl, TLSEXT_TYPE_server_name, &sni, &sni_len) == 1) {
        if (sni_len > CSP_SNI_MAX)
            return 0;
        memcpy(key->sni, sni, sni_len);
        key->sni_len = sni_len;
    }
    return 1;
}

static void csp_put_u64(unsigned char **p, uint64_t v)
{
    memcpy(*p, &v, sizeof(v));
    *p += sizeof(v);
}

/* The digest this thread computed last: most ClientHellos repeat it. */
static __thread struct {
    csp_bind_key key;
    csp_policy_state state;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    int valid;
} csp_last_sid;

static int csp_same_key(const csp_bind_key *a, const csp_bind_key *b)
{
    return a->ctx_serial == b->ctx_serial && a->verify_mode == b->verify_mode &&
           a->verify_depth == b->verify_depth && a->sni_len == b->sni_len &&
           memcmp(a->sni, b->sni, a->sni_len) == 0;
}

/*
 * A digest rather than a cheaper mix: the context is all that keeps a
 * session from resuming, so two policy states must not share one.
 */
static int csp_sid_for(const csp_bind_key *key, const csp_policy_state *state,
                       unsigned char sid[SSL_MAX_SID_CTX_LENGTH])
{
    unsigned char input[10 * sizeof(uint64_t) + CSP_SNI_MAX], *p = input;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (csp_last_sid.valid && csp_same_key(&csp_last_sid.key, key) &&
        csp_policy_state_equal(&csp_last_sid.state, state)) {
        memcpy(sid, csp_last_sid.sid, SSL_MAX_SID_CTX_LENGTH);
        return 1;
    }
    csp_put_u64(&p, csp_process_salt);
    csp_put_u64(&p, key->ctx_serial);
    csp_put_u64(&p, (uint64_t)(int64_t)key->verify_mode);
    csp_put_u64(&p, (uint64_t)(int64_t)key->verify_depth);
    csp_put_u64(&p, state->file.dev);
    csp_put_u64(&p, state->file.ino);
    csp_put_u64(&p, (uint64_t)state->file.birth_sec);
    csp_put_u64(&p, (uint64_t)state->file.birth_nsec);
    csp_put_u64(&p, (uint64_t)state->generation);
    csp_put_u64(&p, (uint64_t)key->sni_len);
    memcpy(p, key->sni, key->sni_len);
    p += key->sni_len;
    if (!CRYPTO_THREAD_run_once(&csp_sha256_once, csp_sha256_fetch) ||
        EVP_Digest(input, (size_t)(p - input), md, &md_len,
                   csp_sha256 != NULL ? csp_sha256 : EVP_sha256(), NULL) != 1 ||
        md_len < CSP_SID_DIGEST_LEN)
        return 0;
    memcpy(sid, CSP_SID_TAG, CSP_SID_TAG_LEN);
    memcpy(sid + CSP_SID_TAG_LEN, md, CSP_SID_DIGEST_LEN);
    csp_last_sid.key = *key;
    csp_last_sid.state = *state;
    memcpy(csp_last_sid.sid, sid, SSL_MAX_SID_CTX_LENGTH);
    csp_last_sid.valid = 1;
    return 1;
}

/* This connection's own value: the pid and a counter cannot repeat in the process. */
static void csp_make_unresumable(csp_conn *conn)
{
    unsigned char *p = conn->unresumable + CSP_SID_TAG_LEN;

    memcpy(conn->unresumable, CSP_SID_TAG_UNBOUND, CSP_SID_TAG_LEN);
    csp_put_u64(&p, (uint64_t)csp_process_pid());
    csp_put_u64(&p, __atomic_add_fetch(&csp_unbound_serials, 1, __ATOMIC_RELAXED));
}

/* For a session that must never resume: no connection ever carries the value. */
static void csp_never_resumes(SSL_SESSION *sess)
{
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH] = CSP_SID_TAG_NEVER, *p = sid + CSP_SID_TAG_LEN;

    csp_put_u64(&p, (uint64_t)csp_process_pid());
    csp_put_u64(&p, __atomic_add_fetch(&csp_unbound_serials, 1, __ATOMIC_RELAXED));
    SSL_SESSION_set1_id_context(sess, sid, sizeof(sid));
}

static void csp_unbind(SSL *ssl, csp_conn *conn)
{
    SSL_set_session_id_context(ssl, conn->unresumable, sizeof(conn->unresumable));
    conn->bound = 0;
}

/* The whole ClientHello is in, the lookup comes next: bind to the state now. */
static void csp_bind_hello(SSL *ssl, csp_conn *conn)
{
    csp_policy_state state;
    csp_bind_key key;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];

    conn->bound = 1; /* once per ClientHello, even when it cannot bind */
    conn->hello_bound = 0;
    if (csp_policy()->config_error || !csp_bind_key_of(ssl, &key) ||
        !csp_current_policy_state(&state) || !csp_sid_for(&key, &state, sid)) {
        CSP_DEBUG("csp_bind_hello: no policy state: this ClientHello resumes nothing");
        SSL_set_session_id_context(ssl, conn->unresumable, sizeof(conn->unresumable));
        return;
    }
    SSL_set_session_id_context(ssl, sid, sizeof(sid));
    memcpy(conn->bound_sid, sid, sizeof(sid));
    conn->hello_key = key;
    conn->hello_bound = 1;
    CSP_DEBUG("csp_bind_hello: generation %" PRId64, state.generation);
}

/*
 * A TLS 1.3 ClientHello: only a pre_shared_key identity can resume, and
 * csp_psk_find binds before each is looked up. Until then nothing needs
 * the policy state (no file to stat, no generation to read): keep the
 * context the acceptance of this handshake will be stamped for, and stay
 * unbound.
 */
static void csp_note_hello(SSL *ssl, csp_conn *conn)
{
    csp_bind_key key;

    if (csp_policy()->config_error || !csp_bind_key_of(ssl, &key))
        return;
    conn->hello_key = key;
    conn->hello_bound = 1;
}

/* ---- the connection's decision ------------------------------------------------ */

/* A new handshake (first, after SSL_clear, renegotiation): nothing decided yet. */
static void csp_conn_new_handshake(csp_conn *conn)
{
    conn->pub.account[0] = '\0';
    conn->pub.decision = NULL;
    conn->pub.way = NULL;
    conn->decided = 0;
    conn->accepted = 0;
    conn->established = 0;
    conn->hello_bound = 0;
}

/* The server asks for a certificate (again): only its answer will speak for the client. */
static void csp_conn_certificate_requested(csp_conn *conn)
{
    conn->pub.account[0] = '\0';
    conn->pub.decision = NULL;
    conn->pub.way = NULL;
    conn->decided = 0;
    conn->accepted = 0;
}

int csp_conn_post_handshake(const SSL *ssl, const csp_conn *conn)
{
    return conn->established && SSL_version(ssl) >= TLS1_3_VERSION;
}

/*
 * Stamp the connection's accepted decision on `sess`: the context digest of
 * the decision's state (or the connection's own value when its ClientHello
 * was not bound), the lifetime capped at the deadline, and the appdata.
 */
static void csp_conn_stamp(csp_conn *conn, SSL_SESSION *sess)
{
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    int64_t left = conn->valid_until - (int64_t)time(NULL);
    int bound;

    if (sess == NULL)
        return;
    bound = conn->hello_bound && csp_sid_for(&conn->hello_key, &conn->state, sid);
    if (bound)
        SSL_SESSION_set1_id_context(sess, sid, sizeof(sid));
    else
        csp_never_resumes(sess);
    if (conn->valid_until != CS_TIME_FOREVER && conn->valid_until != CS_TIME_NONE &&
        left < (int64_t)SSL_SESSION_get_timeout(sess))
        SSL_SESSION_set_timeout(sess, left > 0 ? (long)left : 0);
    /* The same context in the appdata, for a cache that does not keep the session's own. */
    if (conn->appdata_len != 0)
        csp_appdata_put_ctx(conn->appdata + conn->appdata_ctx_at, bound ? sid : NULL);
    csp_appdata_set(sess, conn->appdata, conn->appdata_len);
}

/* The appdata this thread formatted last: a reconnecting partner's is the same. */
static __thread struct {
    char account[CS_ACCOUNT_MAX + 1];
    const char *way;
    int64_t way_id;
    int64_t valid_until;
    csp_policy_state state;
    size_t len;
    size_t ctx_at;
    char data[CSP_APPDATA_MAX];
} csp_last_appdata;

static void csp_conn_appdata(csp_conn *conn)
{
    if (csp_last_appdata.len == 0 || csp_last_appdata.valid_until != conn->valid_until ||
        csp_last_appdata.way != conn->pub.way || csp_last_appdata.way_id != conn->pub.way_id ||
        !csp_policy_state_equal(&csp_last_appdata.state, &conn->state) ||
        strcmp(csp_last_appdata.account, conn->pub.account) != 0) {
        csp_last_appdata.len = csp_appdata_format(
            csp_last_appdata.data, conn->pub.account, conn->pub.way, conn->pub.way_id,
            conn->valid_until, &conn->state, &csp_last_appdata.ctx_at);
        memcpy(csp_last_appdata.account, conn->pub.account, sizeof(conn->pub.account));
        csp_last_appdata.way = conn->pub.way;
        csp_last_appdata.way_id = conn->pub.way_id;
        csp_last_appdata.valid_until = conn->valid_until;
        csp_last_appdata.state = conn->state;
    }
    memcpy(conn->appdata, csp_last_appdata.data, csp_last_appdata.len);
    conn->appdata_len = csp_last_appdata.len;
    conn->appdata_ctx_at = csp_last_appdata.ctx_at;
}

/* What certstore.h reports: static strings, nothing formatted here. */
static void csp_conn_publish(csp_conn *conn, const char *reason, const cs_decision *d)
{
    conn->pub.decision = reason;
    conn->pub.way = NULL;
    conn->pub.way_id = 0;
    if (d == NULL)
        return;
    if (d->rule_id != 0) {
        conn->pub.way = "rule";
        conn->pub.way_id = d->rule_id;
    } else if (d->mapping_id != 0) {
        conn->pub.way = cs_kind_name(d->kind);
        conn->pub.way_id = d->mapping_id;
    }
}

void csp_conn_accepted(SSL *ssl, csp_conn *conn, const cs_decision *d,
                       const csp_policy_state *state)
{
    memcpy(conn->pub.account, d->account, sizeof(conn->pub.account));
    csp_conn_publish(conn, cs_reason_token(CS_REASON_NONE), d);
    conn->decided = 1;
    conn->accepted = 1;
    conn->valid_until = d->valid_until;
    conn->state = *state;
    csp_conn_appdata(conn);
    /* During PHA the session in hand is the one from before: ticketing stamps the new one. */
    if (!csp_conn_post_handshake(ssl, conn))
        csp_conn_stamp(conn, SSL_get_session(ssl));
}

void csp_conn_not_accepted(SSL *ssl, csp_conn *conn, const char *reason, const cs_decision *d)
{
    csp_conn_certificate_requested(conn);
    csp_conn_publish(conn, reason, d);
    conn->decided = 1;
    /*
     * Audit lets the handshake go on: its session must not resume undecided,
     * nor through an external cache that drops the context (no stamp left).
     */
    if (!csp_conn_post_handshake(ssl, conn) && SSL_get_session(ssl) != NULL) {
        csp_never_resumes(SSL_get_session(ssl));
        csp_appdata_unbind(SSL_get_session(ssl));
    }
}

int csp_conn_ticketing(SSL *ssl, SSL_SESSION *sess, int64_t *deadline)
{
    csp_conn *conn = csp_conn_of(ssl);

    if (conn == NULL)
        return 0;
    conn->established = 1;
    if (!conn->accepted)
        return 0;
    csp_conn_stamp(conn, sess);
    *deadline = conn->valid_until;
    return 1;
}

/* ---- callbacks ---------------------------------------------------------------- */

static void csp_info(const SSL *ssl, int where, int ret);

/*
 * A server handshake starts (statem.c asks SSL_SECOP_VERSION, then the info
 * callback sees SSL_CB_HANDSHAKE_START): the role is known now, and no
 * binding of an earlier ClientHello may survive into this one.
 */
static void csp_conn_serving(SSL *ssl, csp_conn *conn)
{
    if (conn->role_pending || conn->bound) {
        conn->role_pending = 0;
        csp_unbind(ssl, conn);
    }
}

/*
 * The whole ClientHello is in and the lookup comes next. Bind only while
 * the connection's info callback is ours: it is what takes the binding away
 * again, and without it a binding would outlive its ClientHello (the second
 * one after a HelloRetryRequest, an SSL_clear'ed or renegotiating SSL).
 */
static void csp_hello_complete(SSL *ssl, csp_conn *conn, int version)
{
    if (SSL_get_info_callback(ssl) != csp_info) {
        CSP_DEBUG("csp_hello_complete: info callback replaced: this ClientHello resumes nothing");
        conn->role_pending = 0;
        csp_unbind(ssl, conn);
        /* Nor did SSL_CB_HANDSHAKE_START reach us: no certificate of this handshake yet. */
        csp_conn_new_handshake(conn);
        return;
    }
    if (conn->bound)
        return;
    if (version == TLS1_3_VERSION)
        csp_note_hello(ssl, conn); /* csp_psk_find binds, should an identity come */
    else
        csp_bind_hello(ssl, conn);
}

/*
 * The info callback sees a write transition before it happens, in the old
 * state: a NewSessionTicket comes after the client's Finished, after another
 * ticket, or from an established connection (SSL_new_session_ticket).
 */
static int csp_ticket_may_follow(const SSL *ssl)
{
    OSSL_HANDSHAKE_STATE st = SSL_get_state(ssl);

    return st == TLS_ST_SR_FINISHED || st == TLS_ST_SW_SESSION_TICKET || st == TLS_ST_OK;
}

/* Installed on each server SSL; the context's own info callback still sees every event. */
static void csp_info(const SSL *ssl, int where, int ret)
{
    void (*app_cb)(const SSL *, int, int) = SSL_CTX_get_info_callback(SSL_get_SSL_CTX(ssl));
    csp_conn *conn = csp_conn_of(ssl);

    if (conn != NULL) {
        if ((where & SSL_CB_HANDSHAKE_START) != 0 && SSL_is_server(ssl))
            csp_conn_serving((SSL *)ssl, conn);
        if (conn->bound)
            csp_unbind((SSL *)ssl, conn); /* the same SSL OpenSSL is driving */
        /* Before a ticket is made from the session: this connection's decision stamped it. */
        if ((where & SSL_CB_ACCEPT_LOOP) != 0 && csp_ticket_may_follow(ssl))
            csp_session_cap((SSL *)ssl, conn->accepted ? &conn->valid_until : NULL);
        if ((where & SSL_CB_HANDSHAKE_START) != 0)
            csp_conn_new_handshake(conn);
        if ((where & SSL_CB_ACCEPT_LOOP) != 0 && SSL_get_state(ssl) == TLS_ST_SW_CERT_REQ)
            csp_conn_certificate_requested(conn);
        if ((where & SSL_CB_HANDSHAKE_DONE) != 0)
            conn->established = 1;
    }
    if (app_cb != NULL)
        app_cb(ssl, where, ret);
}

static int csp_security(const SSL *ssl, const SSL_CTX *ctx, int op, int bits, int nid, void *other,
                        void *ex)
{
    csp_conn *conn;

    if ((op == SSL_SECOP_VERSION || op == SSL_SECOP_SIGALG_CHECK ||
         op == SSL_SECOP_SIGALG_SUPPORTED) &&
        ssl != NULL && SSL_is_server(ssl)) {
        if (op == SSL_SECOP_VERSION && SSL_get_state(ssl) == TLS_ST_SR_CLNT_HELLO) {
            conn = csp_conn_of(ssl);
            if (conn != NULL)
                csp_hello_complete((SSL *)ssl, conn, nid);
            /*
             * Below TLS 1.2 (DTLS 1.2) a CertificateVerify has no signature
             * algorithm, so SSL_SECOP_SIGALG_CHECK never comes and an
             * undecided certificate could not be stopped: a server that
             * asks for certificates does not speak those versions.
             */
            if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0 &&
                (SSL_is_dtls(ssl) ? (nid == DTLS1_VERSION || nid == DTLS1_BAD_VER)
                                  : nid < TLS1_2_VERSION))
                return 0;
        } else if (op == SSL_SECOP_VERSION) {
            /*
             * Every other question about versions, statem.c's at each
             * handshake start among them (SSL_clear, renegotiation): no
             * ClientHello is being looked up, so no binding may stay.
             */
            conn = csp_conn_of(ssl);
            if (conn != NULL && conn->bound)
                csp_unbind((SSL *)ssl, conn);
            /*
             * statem.c's, as a handshake starts (SSL_clear'ed SSL, TLS 1.2
             * renegotiation; not TLS 1.3's post-handshake messages): where
             * the application's info callback took SSL_CB_HANDSHAKE_START
             * away, the certificate of the last handshake stops speaking here.
             */
            if (conn != NULL && SSL_get_info_callback(ssl) != csp_info && SSL_in_init(ssl) &&
                (SSL_get_state(ssl) == TLS_ST_BEFORE ||
                 (SSL_get_state(ssl) == TLS_ST_OK && SSL_version(ssl) < TLS1_3_VERSION)))
                csp_conn_new_handshake(conn);
        } else if (op == SSL_SECOP_SIGALG_SUPPORTED && SSL_get_state(ssl) == TLS_ST_SW_CERT_REQ) {
            /*
             * The CertificateRequest lists its signature algorithms (TLS 1.2
             * and 1.3, PHA included): asked again, whatever info callback
             * the application set, only the answer will speak for the client.
             */
            conn = csp_conn_of(ssl);
            if (conn != NULL)
                csp_conn_certificate_requested(conn);
        } else if (op == SSL_SECOP_SIGALG_CHECK && SSL_get_state(ssl) == TLS_ST_SR_CERT_VRFY) {
            conn = csp_conn_of(ssl);
            if (conn == NULL || !conn->decided) {
                csp_hook_bypassed(ssl);
                return 0;
            }
        }
    }
    return csp_default_security(ssl, ctx, op, bits, nid, other, ex);
}

/* A TLS 1.3 identity is about to be looked up as a ticket; no external PSK here. */
static int csp_psk_find(SSL *ssl, const unsigned char *identity, size_t identity_len,
                        SSL_SESSION **sess)
{
    csp_conn *conn = SSL_is_server(ssl) ? csp_conn_of(ssl) : NULL;

    *sess = NULL;
    if (conn != NULL)
        csp_hello_complete(ssl, conn, 0);
    return 1;
}

/* ---- an application's external session cache ---------------------------------------- */

/*
 * Stands in front of the application's external cache lookup. A cache that
 * stores sessions serialised may not keep their session-id context: HAProxy
 * 2.6 encodes them without it and sets its own on every session it hands
 * back, so OpenSSL's comparison with the context this ClientHello is bound
 * to would miss every time. Such a session resumes only when its appdata
 * stamps it for exactly that context (the digest of this connection's
 * context and of the policy state now); it is then handed on as a copy
 * carrying that context, so OpenSSL's own comparison (and its timeout)
 * still decides. A session with certstore's context in place is handed on
 * untouched, and OpenSSL compares it as ever; anything else is a miss.
 */
static SSL_SESSION *csp_get_session(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
    csp_conn *conn = SSL_is_server(ssl) ? csp_conn_of(ssl) : NULL;
    csp_get_session_fn app = conn != NULL ? conn->app_get_session : NULL;
    const unsigned char *sid;
    unsigned int sid_len = 0;
    SSL_SESSION *sess, *mine = NULL;
    int shared;

    *copy = 0;
    if (app == NULL)
        return NULL; /* whose cache this is cannot be told: a miss */
    sess = app(ssl, id, id_len, copy);
    if (sess == NULL)
        return NULL;
    shared = *copy;
    sid = SSL_SESSION_get0_id_context(sess, &sid_len);
    if (sid_len == SSL_MAX_SID_CTX_LENGTH && memcmp(sid, CSP_SID_TAG, CSP_SID_FAMILY_LEN) == 0)
        return sess; /* certstore's context kept: OpenSSL compares it */
    *copy = 0;
    if (conn->bound && conn->hello_bound && csp_session_stamped_for(sess, conn->bound_sid)) {
        mine = SSL_SESSION_dup(sess);
        if (mine != NULL &&
            !SSL_SESSION_set1_id_context(mine, conn->bound_sid, sizeof(conn->bound_sid))) {
            SSL_SESSION_free(mine);
            mine = NULL;
        }
    }
    CSP_DEBUG("csp_get_session: a cached session without certstore's context: %s",
              mine != NULL ? "its stamp matches this ClientHello"
                           : "no stamp for this ClientHello");
    if (!shared)
        SSL_SESSION_free(sess);
    return mine;
}

/*
 * Inside SSL_new: OpenSSL looks sessions up through the context the SSL is
 * made from, whatever context SNI switches it to. Stand in front of that
 * context's lookup (the application has set it by now), once: later SSL_new
 * calls find csp_get_session in place, and concurrent first ones (threads
 * of one worker) store the same two pointers.
 */
static void csp_watch_external_cache(SSL_CTX *ctx, csp_conn *conn)
{
    csp_ctx_state *cs = SSL_CTX_get_ex_data(ctx, csp_ctx_index);
    csp_get_session_fn cb = SSL_CTX_sess_get_get_cb(ctx);

    if (cs == NULL || cb == NULL)
        return;
    if (cb != csp_get_session) {
        __atomic_store_n(&cs->app_get_session, cb, __ATOMIC_RELEASE);
        SSL_CTX_sess_set_get_cb(ctx, csp_get_session);
    }
    conn->app_get_session = __atomic_load_n(&cs->app_get_session, __ATOMIC_ACQUIRE);
}

/* ---- ex_data callbacks ---------------------------------------------------------- */

/* Inside SSL_CTX_new, before the application sees the context. */
static void csp_ctx_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    SSL_CTX *ctx = parent;
    csp_ctx_state *cs;
    csp_security_fn prev;

    if (ctx == NULL)
        return;
    cs = OPENSSL_zalloc(sizeof(*cs));
    if (cs != NULL) {
        cs->serial = __atomic_add_fetch(&csp_ctx_serials, 1, __ATOMIC_RELAXED);
        if (!CRYPTO_set_ex_data(ad, idx, cs))
            OPENSSL_free(cs); /* no serial: its connections never resume */
    }
    SSL_CTX_set_cert_verify_callback(ctx, csp_verify, NULL);
    csp_resume_install(ctx);
    SSL_CTX_set_psk_find_session_callback(ctx, csp_psk_find);
    prev = SSL_CTX_get_security_callback(ctx);
    if (prev != NULL && prev != csp_security) {
        __atomic_store_n(&csp_default_security, prev, __ATOMIC_RELEASE);
        SSL_CTX_set_security_callback(ctx, csp_security);
    }
}

static void csp_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    OPENSSL_free(ptr);
}

/*
 * Inside SSL_new. A connection made with a client-only method is left
 * alone: a client's own session cache keeps resuming across generations.
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
        return; /* the verify hook then finds no state and rejects */
    csp_make_unresumable(conn);
    if (!CRYPTO_set_ex_data(ad, idx, conn)) {
        OPENSSL_free(conn);
        return;
    }
    /*
     * TLS_method() (nginx's SSLv23_method, for its upstreams too) makes
     * SSLs that SSL_is_server() calls servers until SSL_set_connect_state:
     * a client's sessions must keep the context's sid_ctx, or OpenSSL's
     * client refuses every resumption its server accepts. Such an SSL gets
     * its own value when it starts a handshake as a server.
     */
    if (SSL_get_ssl_method(ssl) == TLS_server_method() ||
        SSL_get_ssl_method(ssl) == DTLS_server_method())
        csp_unbind(ssl, conn);
    else
        conn->role_pending = 1;
    /* SSL_new does not copy the context's info callback: csp_info calls it. */
    SSL_set_info_callback(ssl, csp_info);
    csp_watch_external_cache(SSL_get_SSL_CTX(ssl), conn);
}

static void csp_conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    OPENSSL_free(ptr);
}

static int csp_conn_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                        long argl, void *argp)
{
    csp_conn *copy;

    /* SSL_dup: the copy's own new-callback state is replaced by a copy with its own value. */
    OPENSSL_free(CRYPTO_get_ex_data(to, idx));
    if (*from_d == NULL)
        return 1;
    copy = OPENSSL_memdup(*from_d, sizeof(csp_conn));
    if (copy != NULL) {
        csp_make_unresumable(copy);
        copy->bound = 1; /* it carries the original's value: replaced at the next event */
    }
    *from_d = copy;
    return 1;
}

static void csp_conn_register(void)
{
    if (RAND_bytes((unsigned char *)&csp_process_salt, sizeof(csp_process_salt)) != 1)
        csp_process_salt = ((uint64_t)time(NULL) << 20) ^ (uint64_t)csp_process_pid();
    csp_ctx_index =
        CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, csp_ctx_new, NULL, csp_ctx_free);
    csp_conn_index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, csp_conn_new,
                                             csp_conn_dup, csp_conn_free);
    csp_conn_ok = csp_ctx_index >= 0 && csp_conn_index >= 0 && csp_verify_watch_register();
    CSP_DEBUG("csp_conn_register: SSL_CTX index %d, SSL index %d", csp_ctx_index, csp_conn_index);
}

int csp_hooks_install(void)
{
    return CRYPTO_THREAD_run_once(&csp_conn_once, csp_conn_register) && csp_conn_ok;
}
