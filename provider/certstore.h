/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore.h: the account certstore mapped a TLS client to, for
 * applications that want it.
 *
 * The provider module is loaded by libcrypto with RTLD_LOCAL and exports
 * nothing but OSSL_provider_init, so there is nothing to link against:
 * these functions are inline and learn the SSL ex_data index from the
 * provider through OSSL_PROVIDER_get_params ("certstore-account-index").
 *
 *     const char *account = certstore_ssl_account(ssl);   // after the handshake
 *     if (account == NULL) ... no certstore account: refuse
 *
 * certstore_ssl_account() looks the provider up in the default library
 * context; certstore_ssl_account_ex() takes the library context that loaded
 * it. Both return NULL when certstore is not loaded, is off, or did not
 * accept this connection. On a resumed session the account recorded when
 * the session was made is returned (resumption only happens while nothing
 * has narrowed access since); if the application stores its own ticket
 * data in the session, resumed connections return NULL.
 *
 * The string lives as long as the SSL (or its session).
 */
#ifndef CERTSTORE_H
#define CERTSTORE_H

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#define CERTSTORE_PROVIDER_NAME "certstore"
#define CERTSTORE_PARAM_ACCOUNT_INDEX "certstore-account-index"
#define CERTSTORE_SESSION_PREFIX "certstore-account="

static inline int certstore__index_cb(OSSL_PROVIDER *prov, void *arg)
{
    OSSL_PARAM params[2];
    int index = -1;

    if (strcmp(OSSL_PROVIDER_get0_name(prov), CERTSTORE_PROVIDER_NAME) != 0)
        return 1;
    params[0] = OSSL_PARAM_construct_int(CERTSTORE_PARAM_ACCOUNT_INDEX, &index);
    params[1] = OSSL_PARAM_construct_end();
    if (OSSL_PROVIDER_get_params(prov, params) && OSSL_PARAM_modified(&params[0]))
        *(int *)arg = index;
    return 0; /* found it: stop */
}

/* The SSL ex_data index holding the account, or -1 if certstore is not active. */
static inline int certstore_account_index(OSSL_LIB_CTX *libctx)
{
    int index = -1;

    OSSL_PROVIDER_do_all(libctx, certstore__index_cb, &index);
    return index;
}

static inline const char *certstore__session_account(const SSL *ssl)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    size_t prefix = strlen(CERTSTORE_SESSION_PREFIX);
    void *data = NULL;
    size_t len = 0;

    if (sess == NULL || !SSL_session_reused((SSL *)ssl) ||
        !SSL_SESSION_get0_ticket_appdata(sess, &data, &len))
        return NULL;
    if (data == NULL || len <= prefix + 1 || ((const char *)data)[len - 1] != '\0' ||
        memcmp(data, CERTSTORE_SESSION_PREFIX, prefix) != 0)
        return NULL;
    return (const char *)data + prefix;
}

static inline const char *certstore_ssl_account_ex(const SSL *ssl, OSSL_LIB_CTX *libctx)
{
    int index = certstore_account_index(libctx);
    const char *account;

    if (ssl == NULL || index < 0)
        return NULL;
    /* The per-connection state begins with the NUL-terminated account. */
    account = (const char *)SSL_get_ex_data(ssl, index);
    if (account != NULL && account[0] != '\0')
        return account;
    return certstore__session_account(ssl);
}

static inline const char *certstore_ssl_account(const SSL *ssl)
{
    return certstore_ssl_account_ex(ssl, NULL);
}

#endif /* CERTSTORE_H */
