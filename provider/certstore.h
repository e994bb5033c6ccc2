/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore.h: what certstore decided for a TLS client, for applications
 * and server modules that want it.
 *
 * The provider module is loaded by libcrypto with RTLD_LOCAL and exports
 * nothing but OSSL_provider_init, so there is nothing to link against:
 * these functions are inline and learn the SSL ex_data index of the
 * provider's per-connection state through OSSL_PROVIDER_get_params
 * ("certstore-account-index", and "certstore-conn-layout" for the layout
 * of certstore_conn_state below).
 *
 *     const char *account = certstore_ssl_account(ssl);   // after the handshake
 *     if (account == NULL) ... no certstore account: refuse
 *
 * certstore_ssl_account() looks the provider up in the default library
 * context; certstore_ssl_account_ex() takes the library context that loaded
 * it. Both return NULL when certstore is not loaded, is off, or did not
 * accept this connection. On a resumed session the account recorded when
 * the session was made is returned (resumption only happens while nothing
 * has narrowed access since), unless a certificate asked for since
 * (post-handshake authentication) was decided otherwise; if the
 * application stores its own ticket data in the session, resumed
 * connections return NULL.
 *
 * A server module looks the index up once (certstore_conn_index) and reads
 * the whole decision per request (certstore_ssl_decision): the account,
 * the reason token and the mapping, as the provider took them for this
 * very connection; nothing is decided again.
 *
 * The strings live as long as the SSL (or its session).
 */
#ifndef CERTSTORE_H
#define CERTSTORE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#define CERTSTORE_PROVIDER_NAME "certstore"
#define CERTSTORE_PARAM_ACCOUNT_INDEX "certstore-account-index"
#define CERTSTORE_PARAM_CONN_LAYOUT "certstore-conn-layout"
/* The database the provider reads and its mode ("enforce", "audit", "off"). */
#define CERTSTORE_PARAM_DB "certstore-db"
#define CERTSTORE_PARAM_MODE "certstore-mode"
/* "ok", or "deny-all" when its configuration is invalid. */
#define CERTSTORE_PARAM_STATUS "certstore-status"
/* Why it denies all ("" when ok): what certstore doctor prints. */
#define CERTSTORE_PARAM_STATUS_REASON "certstore-status-reason"
/* 1 when require_strong refuses acceptances through a weak way in (rules). */
#define CERTSTORE_PARAM_REQUIRE_STRONG "certstore-require-strong"
#define CERTSTORE_SESSION_PREFIX "certstore-account="
/* In a session's appdata, the mapping that accepted it (after the account). */
#define CERTSTORE_SESSION_MAPPING " mapping="
#define CERTSTORE_ACCOUNT_MAX 255 /* bytes of an account name */
#define CERTSTORE_MAPPING_MAX 48  /* "issuer-serial:" and a 64-bit id, NUL included */

/*
 * The leading part of the provider's per-connection state (its layout is
 * CERTSTORE_CONN_LAYOUT; the provider says which one it keeps): what was
 * decided for the certificate of this connection's last full handshake.
 */
#define CERTSTORE_CONN_LAYOUT 1
typedef struct {
    char account[CERTSTORE_ACCOUNT_MAX + 1]; /* "" unless accepted */
    const char *decision; /* reason token ("accept", "no-mapping", ...); NULL: nothing decided */
    const char *way;      /* "cert", "issuer-serial", "ski", "spki", "rule"; NULL: none matched */
    int64_t way_id;       /* the id of that mapping or rule */
} certstore_conn_state;

/* A connection's decision, as certstore_ssl_decision() reports it. */
typedef struct {
    const char *account;  /* the account; NULL: none (not accepted, no certificate, no certstore) */
    const char *decision; /* "accept" or the reason token; NULL: certstore decided nothing */
    char mapping[CERTSTORE_MAPPING_MAX]; /* "cert:12", "spki:3", "rule:7"; "" when none */
    int resumed;                         /* a resumed session: accepted when it was made */
} certstore_decision;

typedef struct {
    int index;
    int layout;
} certstore__lookup;

static inline int certstore__index_cb(OSSL_PROVIDER *prov, void *arg)
{
    certstore__lookup *found = (certstore__lookup *)arg;
    OSSL_PARAM params[3];
    int index = -1, layout = 0;

    if (strcmp(OSSL_PROVIDER_get0_name(prov), CERTSTORE_PROVIDER_NAME) != 0)
        return 1;
    params[0] = OSSL_PARAM_construct_int(CERTSTORE_PARAM_ACCOUNT_INDEX, &index);
    params[1] = OSSL_PARAM_construct_int(CERTSTORE_PARAM_CONN_LAYOUT, &layout);
    params[2] = OSSL_PARAM_construct_end();
    if (OSSL_PROVIDER_get_params(prov, params) && OSSL_PARAM_modified(&params[0])) {
        found->index = index;
        found->layout = OSSL_PARAM_modified(&params[1]) ? layout : 0;
    }
    return 0; /* found it: stop */
}

/* The SSL ex_data index holding the account, or -1 if certstore is not active. */
static inline int certstore_account_index(OSSL_LIB_CTX *libctx)
{
    certstore__lookup found = {-1, 0};

    OSSL_PROVIDER_do_all(libctx, certstore__index_cb, &found);
    return found.index;
}

/*
 * The SSL ex_data index of certstore_conn_state, or -1 if certstore is not
 * active or keeps another layout. It does not change once found: a server
 * module looks it up once, not per request.
 */
static inline int certstore_conn_index(OSSL_LIB_CTX *libctx)
{
    certstore__lookup found = {-1, 0};

    OSSL_PROVIDER_do_all(libctx, certstore__index_cb, &found);
    return found.layout == CERTSTORE_CONN_LAYOUT ? found.index : -1;
}

/* A resumed session's appdata: the account, then a NUL-terminated tail. */
static inline const char *certstore__session_appdata(const SSL *ssl, size_t *len)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    size_t prefix = strlen(CERTSTORE_SESSION_PREFIX);
    void *data = NULL;

    *len = 0;
    if (sess == NULL || !SSL_session_reused((SSL *)ssl) ||
        !SSL_SESSION_get0_ticket_appdata(sess, &data, len))
        return NULL;
    if (data == NULL || *len <= prefix + 1 || ((const char *)data)[*len - 1] != '\0' ||
        memcmp(data, CERTSTORE_SESSION_PREFIX, prefix) != 0)
        return NULL;
    return (const char *)data;
}

static inline const char *certstore__session_account(const SSL *ssl)
{
    size_t len;
    const char *data = certstore__session_appdata(ssl, &len);

    return data != NULL ? data + strlen(CERTSTORE_SESSION_PREFIX) : NULL;
}

/* The mapping recorded after the account: " mapping=KIND:ID" ends the tail. */
static inline void certstore__session_mapping(const SSL *ssl, char *out, size_t outlen)
{
    size_t len, used;
    const char *data = certstore__session_appdata(ssl, &len), *tail, *mapping;

    out[0] = '\0';
    if (data == NULL)
        return;
    used = strlen(data) + 1; /* the account and its NUL; the last byte is a NUL */
    if (used >= len)
        return;
    tail = data + used;
    mapping = strstr(tail, CERTSTORE_SESSION_MAPPING);
    if (mapping == NULL)
        return;
    mapping += strlen(CERTSTORE_SESSION_MAPPING);
    if (strlen(mapping) < outlen && strcmp(mapping, "-") != 0)
        memcpy(out, mapping, strlen(mapping) + 1);
}

static inline int certstore_ssl_decision(const SSL *ssl, int index, certstore_decision *out);

static inline const char *certstore_ssl_account_ex(const SSL *ssl, OSSL_LIB_CTX *libctx)
{
    certstore__lookup found = {-1, 0};
    certstore_decision d;
    const char *account;

    OSSL_PROVIDER_do_all(libctx, certstore__index_cb, &found);
    if (ssl == NULL || found.index < 0)
        return NULL;
    /* A decision taken on this connection speaks, a rejection too: not the session's. */
    if (found.layout == CERTSTORE_CONN_LAYOUT) {
        certstore_ssl_decision(ssl, found.index, &d);
        return d.account;
    }
    /* Another layout: it still begins with the NUL-terminated account. */
    account = (const char *)SSL_get_ex_data(ssl, found.index);
    if (account != NULL && account[0] != '\0')
        return account;
    return certstore__session_account(ssl);
}

static inline const char *certstore_ssl_account(const SSL *ssl)
{
    return certstore_ssl_account_ex(ssl, NULL);
}

/*
 * What certstore decided for this connection, read from its state (index
 * from certstore_conn_index): the decision of its full handshake's
 * certificate, or, on a resumed session, the acceptance the session was
 * made with. Returns 1 when there is a decision, 0 (all empty) when
 * certstore decided nothing here (no certificate, not loaded, off).
 */
static inline int certstore_ssl_decision(const SSL *ssl, int index, certstore_decision *out)
{
    const certstore_conn_state *state;

    memset(out, 0, sizeof(*out));
    if (ssl == NULL || index < 0)
        return 0;
    state = (const certstore_conn_state *)SSL_get_ex_data(ssl, index);
    if (state != NULL && state->decision != NULL) {
        out->decision = state->decision;
        out->account = state->account[0] != '\0' ? state->account : NULL;
        if (state->way != NULL)
            snprintf(out->mapping, sizeof(out->mapping), "%s:%lld", state->way,
                     (long long)state->way_id);
        return 1;
    }
    out->account = certstore__session_account(ssl);
    if (out->account == NULL)
        return 0;
    out->decision = "accept";
    out->resumed = 1;
    certstore__session_mapping(ssl, out->mapping, sizeof(out->mapping));
    return 1;
}

#endif /* CERTSTORE_H */
