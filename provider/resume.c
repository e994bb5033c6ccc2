/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Session tickets under the policy: what a session carries, and the ticket
 * callbacks that hold resumption to it.
 *
 * The session-id context (conn.c) binds a session to the database file and
 * generation of its decision, compared when a ClientHello offers it; it
 * cannot say when a decision stops holding by time. A relative lifetime is
 * not enough either: on every TLS 1.3 resumption OpenSSL copies the
 * session, resets its time to now and keeps its timeout, so each resumption
 * would grant the whole lifetime again. So the session's ticket appdata
 * carries, after the account, the ABSOLUTE deadline and the database file
 * and generation of the decision:
 *
 *     "certstore-account=" account NUL
 *     "deadline=D generation=G db=DEV:INO:BIRTH_SEC.BIRTH_NSEC ctx=HEX mapping=KIND:ID" NUL
 *
 * HEX is the session-id context the session was stamped with (conn.c; 32
 * bytes, all zero when it was stamped never to resume): an external
 * session cache may not keep the session's own (HAProxy 2.6 replaces it),
 * and conn.c's csp_get_session then asks csp_session_stamped_for.
 *
 * The file matters as much as the generation: a deploy tool that renames
 * another database over the store brings an unrelated counter, equal or
 * even lower, so the decrypt callback wants both to be what they are now.
 *
 * certstore.h reads the account up to its NUL, and the mapping (or "-")
 * that ends the tail, for what a resumed connection reports. The generate callback caps every
 * ticket (TLS 1.2 renewals, every TLS 1.3 ticket, stateless and stateful) at the deadline; the
 * decrypt callback, which runs while the ClientHello is processed, turns a ticket whose deadline
 * passed, or whose file or generation is not the store's now, into a full handshake, decided anew.
 *
 * An application that installs its own ticket callbacks (stunnel) replaces
 * these: the session-id context binding remains, and csp_session_cap (run
 * from conn.c's info callback before each TLS 1.3 ticket) keeps the cap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "certstore.h"
#include "csp.h"

#define CSP_APPDATA_PREFIX CERTSTORE_SESSION_PREFIX
#define CSP_APPDATA_TAIL_WRITE                                                                     \
    "deadline=%" PRId64 " generation=%" PRId64 " db=%" PRIu64 ":%" PRIu64 ":%" PRId64 ".%" PRId64
#define CSP_APPDATA_TAIL_READ                                                                      \
    "deadline=%" SCNd64 " generation=%" SCNd64 " db=%" SCNu64 ":%" SCNu64 ":%" SCNd64 ".%" SCNd64  \
    "%n"
/* The session-id context stamped with it, in hex: an external cache may lose the session's own. */
#define CSP_APPDATA_CTX " ctx="
#define CSP_APPDATA_CTX_HEX (2 * SSL_MAX_SID_CTX_LENGTH)

_Static_assert(sizeof(CSP_APPDATA_PREFIX) <= 32, "CSP_APPDATA_MAX leaves 32 bytes for the prefix");

static SSL_TICKET_RETURN csp_ticket_decrypted(SSL *ssl, SSL_SESSION *sess,
                                              const unsigned char *keyname, size_t keyname_len,
                                              SSL_TICKET_STATUS status, void *arg);
static int csp_ticket_generated(SSL *ssl, void *arg);

/* ---- the appdata ---------------------------------------------------------- */

/* 1 if the session's appdata is ours (or absent), so we may write it. */
static int csp_appdata_ours_or_empty(const SSL_SESSION *sess)
{
    void *data = NULL;
    size_t len = 0;
    size_t prefix = strlen(CSP_APPDATA_PREFIX);

    SSL_SESSION_get0_ticket_appdata((SSL_SESSION *)sess, &data, &len);
    return len == 0 || (len > prefix && memcmp(data, CSP_APPDATA_PREFIX, prefix) == 0);
}

size_t csp_appdata_format(char data[CSP_APPDATA_MAX], const char *account, const char *way,
                          int64_t way_id, int64_t deadline, const csp_policy_state *state,
                          size_t *ctx_at)
{
    int head, tail, mapping;

    head = snprintf(data, CSP_APPDATA_MAX, "%s%s", CSP_APPDATA_PREFIX, account);
    if (head < 0 || (size_t)head >= CSP_APPDATA_MAX - 1)
        return 0;
    tail = snprintf(data + head + 1, CSP_APPDATA_MAX - (size_t)head - 1, CSP_APPDATA_TAIL_WRITE,
                    deadline, state->generation, state->file.dev, state->file.ino,
                    state->file.birth_sec, state->file.birth_nsec);
    if (tail < 0 || (size_t)(head + 1 + tail) + strlen(CSP_APPDATA_CTX) + CSP_APPDATA_CTX_HEX >=
                        CSP_APPDATA_MAX)
        return 0;
    tail += head + 1;
    /* No context yet: csp_appdata_put_ctx writes the one each session is stamped with. */
    memcpy(data + tail, CSP_APPDATA_CTX, strlen(CSP_APPDATA_CTX));
    tail += (int)strlen(CSP_APPDATA_CTX);
    *ctx_at = (size_t)tail;
    memset(data + tail, '0', CSP_APPDATA_CTX_HEX);
    tail += CSP_APPDATA_CTX_HEX;
    if (way != NULL)
        mapping = snprintf(data + tail, CSP_APPDATA_MAX - (size_t)tail,
                           CERTSTORE_SESSION_MAPPING "%s:%" PRId64, way, way_id);
    else
        mapping =
            snprintf(data + tail, CSP_APPDATA_MAX - (size_t)tail, CERTSTORE_SESSION_MAPPING "-");
    if (mapping < 0 || (size_t)(tail + mapping) >= CSP_APPDATA_MAX)
        return 0;
    return (size_t)tail + (size_t)mapping + 1;
}

void csp_appdata_put_ctx(char *hex, const unsigned char *sid)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    if (sid == NULL) {
        memset(hex, '0', CSP_APPDATA_CTX_HEX); /* no context: no tag, never a binding */
        return;
    }
    for (i = 0; i < SSL_MAX_SID_CTX_LENGTH; i++) {
        hex[2 * i] = digits[sid[i] >> 4];
        hex[2 * i + 1] = digits[sid[i] & 0x0f];
    }
}

void csp_appdata_set(SSL_SESSION *sess, const char *data, size_t len)
{
    if (len == 0 || !csp_appdata_ours_or_empty(sess))
        return; /* the application's own data: never clobbered */
    SSL_SESSION_set1_ticket_appdata(sess, data, len);
}

/* The context a tail records after the file (all zeros: none, it lacks the tag). */
static int csp_appdata_ctx(const char *at, unsigned char sid[SSL_MAX_SID_CTX_LENGTH])
{
    size_t i;
    int hi, lo;

    if (strncmp(at, CSP_APPDATA_CTX, strlen(CSP_APPDATA_CTX)) != 0)
        return 0;
    at += strlen(CSP_APPDATA_CTX);
    for (i = 0; i < SSL_MAX_SID_CTX_LENGTH; i++) {
        hi = OPENSSL_hexchar2int((unsigned char)at[2 * i]);
        lo = hi < 0 ? -1 : OPENSSL_hexchar2int((unsigned char)at[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        sid[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

int csp_appdata_read(const SSL_SESSION *sess, int64_t *deadline, csp_policy_state *state,
                     unsigned char *sid)
{
    void *data = NULL;
    size_t len = 0, prefix = strlen(CSP_APPDATA_PREFIX);
    const char *bytes, *nul, *tail;
    unsigned char ignored[SSL_MAX_SID_CTX_LENGTH];
    int used = -1;

    SSL_SESSION_get0_ticket_appdata((SSL_SESSION *)sess, &data, &len);
    bytes = data;
    if (bytes == NULL || len <= prefix || bytes[len - 1] != '\0' ||
        memcmp(bytes, CSP_APPDATA_PREFIX, prefix) != 0)
        return 0;
    nul = memchr(bytes, '\0', len);
    if (nul == NULL || nul == bytes + len - 1)
        return 0; /* an account alone: no binding recorded */
    tail = nul + 1;
    memset(state, 0, sizeof(*state));
    if (sscanf(tail, CSP_APPDATA_TAIL_READ, deadline, &state->generation, &state->file.dev,
               &state->file.ino, &state->file.birth_sec, &state->file.birth_nsec, &used) != 6 ||
        used < 0 || tail + strlen(tail) != bytes + len - 1 ||
        !csp_appdata_ctx(tail + used, sid != NULL ? sid : ignored))
        return 0;
    used += (int)(strlen(CSP_APPDATA_CTX) + CSP_APPDATA_CTX_HEX);
    if (strncmp(tail + used, CERTSTORE_SESSION_MAPPING, strlen(CERTSTORE_SESSION_MAPPING)) != 0)
        return 0;
    return 1;
}

void csp_appdata_unbind(SSL_SESSION *sess)
{
    if (csp_appdata_ours_or_empty(sess))
        SSL_SESSION_set1_ticket_appdata(sess, CSP_APPDATA_PREFIX, sizeof(CSP_APPDATA_PREFIX));
}

/*
 * 1 when a session that lost its session-id context (an application's
 * external cache rewrote it) carries certstore's stamp for exactly `sid`,
 * the context the connection is bound to now, and its deadline has not
 * passed. The stamp sits in the ticket appdata, which the client never
 * writes: a server-side cache entry, or a ticket the server encrypted.
 */
int csp_session_stamped_for(const SSL_SESSION *sess, const unsigned char *sid)
{
    csp_policy_state bound;
    unsigned char stamped[SSL_MAX_SID_CTX_LENGTH];
    int64_t deadline;

    if (!csp_appdata_read(sess, &deadline, &bound, stamped) ||
        CRYPTO_memcmp(stamped, sid, SSL_MAX_SID_CTX_LENGTH) != 0)
        return 0;
    return deadline == CS_TIME_FOREVER || deadline == CS_TIME_NONE ||
           deadline > (int64_t)time(NULL);
}

/* ---- the ticket callbacks --------------------------------------------------- */

void csp_resume_install(SSL_CTX *ctx)
{
    SSL_CTX_set_session_ticket_cb(ctx, csp_ticket_generated, csp_ticket_decrypted, NULL);
}

/*
 * Every ticket the server issues: stamp the connection's decision on the
 * session being ticketed (after a TLS 1.3 PHA it is a copy the verify hook
 * never saw), then cap its lifetime so that it ends at the deadline,
 * whatever time OpenSSL gave the session (TLS 1.3 resets it to now on each
 * ticket).
 */
static int csp_ticket_generated(SSL *ssl, void *arg)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    csp_policy_state state;
    int64_t deadline, left;

    if (sess == NULL)
        return 1;
    /* The connection's own acceptance knows its deadline: no need to parse it back. */
    if (!csp_conn_ticketing(ssl, sess, &deadline) &&
        !csp_appdata_read(sess, &deadline, &state, NULL))
        return 1;
    if (deadline == CS_TIME_FOREVER || deadline == CS_TIME_NONE)
        return 1;
    left = deadline - (int64_t)SSL_SESSION_get_time(sess);
    if (left < (int64_t)SSL_SESSION_get_timeout(sess))
        SSL_SESSION_set_timeout(sess, left > 0 ? (long)left : 0);
    return 1;
}

/* What OpenSSL would have done without a callback. */
static SSL_TICKET_RETURN csp_ticket_default(SSL_TICKET_STATUS status)
{
    switch (status) {
    case SSL_TICKET_SUCCESS:
        return SSL_TICKET_RETURN_USE;
    case SSL_TICKET_SUCCESS_RENEW:
        return SSL_TICKET_RETURN_USE_RENEW;
    default:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
}

/*
 * 1 when the session may resume under the store as it is now. A session
 * with a client certificate but no binding of ours was not accepted by
 * certstore (audit, or made before the provider was loaded): decide anew.
 */
static int csp_session_still_holds(const SSL_SESSION *sess, const char **why)
{
    csp_policy_state bound, current;
    int64_t deadline;

    if (!csp_appdata_read(sess, &deadline, &bound, NULL)) {
        *why = "no certstore binding";
        return SSL_SESSION_get0_peer((SSL_SESSION *)sess) == NULL;
    }
    if (deadline != CS_TIME_FOREVER && deadline != CS_TIME_NONE &&
        deadline <= (int64_t)time(NULL)) {
        *why = "past its deadline";
        return 0;
    }
    if (!csp_current_policy_state(&current)) {
        *why = "store file or generation unreadable";
        return 0;
    }
    /* Not `<`: another file's counter may be lower and still narrower. */
    if (!csp_policy_state_equal(&bound, &current)) {
        *why = "made under another database file or before a narrowing change";
        return 0;
    }
    return 1;
}

static SSL_TICKET_RETURN csp_ticket_decrypted(SSL *ssl, SSL_SESSION *sess,
                                              const unsigned char *keyname, size_t keyname_len,
                                              SSL_TICKET_STATUS status, void *arg)
{
    const char *why = "";

    if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
        return csp_ticket_default(status);
    if (sess == NULL || !SSL_is_server(ssl))
        return csp_ticket_default(status);
    if (csp_policy()->config_error || !csp_session_still_holds(sess, &why)) {
        CSP_DEBUG("ticket not resumed (%s): full handshake",
                  csp_policy()->config_error ? "config error" : why);
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    return csp_ticket_default(status);
}

/*
 * The server may be about to write a NewSessionTicket (conn.c's info
 * callback), before OpenSSL makes a TLS 1.3 ticket from the session in hand: a ticket
 * takes the session's timeout and resets its time to now, so a session
 * whose timeout would then reach past the deadline is cut to end there.
 * The same cap as csp_ticket_generated's, for an application that installs
 * its own ticket callbacks (stunnel): otherwise each resumption would grant
 * the whole lifetime again, past the mapping's not_after.
 */
void csp_session_cap(SSL *ssl, const int64_t *known)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    csp_policy_state state;
    int64_t deadline, left;

    if (sess == NULL || !SSL_is_server(ssl) || SSL_version(ssl) < TLS1_3_VERSION ||
        SSL_SESSION_get_protocol_version(sess) < TLS1_3_VERSION)
        return;
    if (known != NULL)
        deadline = *known;
    else if (!csp_appdata_read(sess, &deadline, &state, NULL))
        return;
    if (deadline == CS_TIME_FOREVER || deadline == CS_TIME_NONE)
        return;
    left = deadline - (int64_t)time(NULL);
    if (left < (int64_t)SSL_SESSION_get_timeout(sess))
        SSL_SESSION_set_timeout(sess, left > 0 ? (long)left : 0);
}
