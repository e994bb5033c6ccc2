/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certstore: OSSL_STORE loader: serves the pinned issuing CAs, so
 * `openssl storeutl certstore:/var/lib/certstore/certstore.db` lists them and
 * `-CAstore certstore:/...` verifies against them.
 *
 * Only pins in force are served: a disabled pin is one the policy ignores,
 * so a trust store built from this URI must ignore it too.
 *
 * open() reads a snapshot of the enabled pins and closes the database right
 * away: a loader context can live long inside an X509_LOOKUP, and must not
 * hold an SQLite connection across a fork. Certificates are handed back by
 * value (DER, data type "CERTIFICATE") and libcrypto decodes them.
 *
 * Searches: by subject (what X509_LOOKUP_store asks when it looks for an
 * issuer) and by issuer+serial; a key-fingerprint or alias search is
 * refused rather than ignored, since ignoring it would return every pin.
 *
 * URI grammar and its strictness: store_uri.h. Through -CAstore, libcrypto
 * copies each pin it finds into the X509_STORE and keeps it there, so a
 * long-running process sees a pin disabled later only after a reload; the
 * live policy is the verification hook's job, not this loader's.
 */
#include <limits.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "cs_store.h"
#include "csp.h"
#include "store_uri.h"

static OSSL_FUNC_store_open_fn csp_store_open;
static OSSL_FUNC_store_settable_ctx_params_fn csp_store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn csp_store_set_ctx_params;
static OSSL_FUNC_store_load_fn csp_store_load;
static OSSL_FUNC_store_eof_fn csp_store_eof;
static OSSL_FUNC_store_close_fn csp_store_close;

typedef struct {
    unsigned char *der;
    size_t der_len;
    X509 *cert; /* decoded once, for searches */
} csp_store_pin;

typedef struct {
    CSP_CTX *provctx;
    csp_store_pin *pins;
    size_t count, capacity;
    size_t next;
    int expect; /* OSSL_STORE_INFO_* wanted, 0 for any */
    X509_NAME *subject;
    X509_NAME *issuer;
    BIGNUM *serial;
    int failed; /* set by the snapshot callback when it could not copy */
} csp_store_ctx;

static void csp_store_ctx_free(csp_store_ctx *ctx)
{
    size_t i;

    if (ctx == NULL)
        return;
    for (i = 0; i < ctx->count; i++) {
        OPENSSL_free(ctx->pins[i].der);
        X509_free(ctx->pins[i].cert);
    }
    OPENSSL_free(ctx->pins);
    X509_NAME_free(ctx->subject);
    X509_NAME_free(ctx->issuer);
    BN_free(ctx->serial);
    OPENSSL_free(ctx);
}

static int csp_store_append(csp_store_ctx *ctx, const unsigned char *der, size_t der_len)
{
    const unsigned char *p = der;
    csp_store_pin *pin;

    if (ctx->count == ctx->capacity) {
        size_t capacity = ctx->capacity == 0 ? 8 : ctx->capacity * 2;
        csp_store_pin *grown = OPENSSL_realloc(ctx->pins, capacity * sizeof(*grown));

        if (grown == NULL)
            return 0;
        ctx->pins = grown;
        ctx->capacity = capacity;
    }
    pin = &ctx->pins[ctx->count];
    pin->der = OPENSSL_memdup(der, der_len);
    pin->der_len = der_len;
    pin->cert = d2i_X509(NULL, &p, (long)der_len);
    if (pin->der == NULL || pin->cert == NULL || p != der + der_len) {
        OPENSSL_free(pin->der);
        X509_free(pin->cert);
        return 0;
    }
    ctx->count++;
    return 1;
}

/* cs_pin_foreach/cs_pin_get callback: keep what is in force. */
static int csp_store_take_pin(const cs_pin *pin, void *arg)
{
    csp_store_ctx *ctx = arg;

    if (!pin->enabled)
        return 0;
    if (!csp_store_append(ctx, pin->der, pin->der_len)) {
        ctx->failed = 1;
        return 1;
    }
    return 0;
}

static int csp_store_snapshot(csp_store_ctx *ctx, const csp_store_uri *uri)
{
    cs_db *db = NULL;
    cs_status status = cs_db_open(&db, uri->path, CS_OPEN_READONLY);
    int ok = 0;

    if (status != CS_OK) {
        /* The store's message names the file already. */
        CSP_RAISE(ctx->provctx, CSP_R_STORE_UNAVAILABLE, "certstore: %s",
                  db != NULL ? cs_db_errmsg(db) : "out of memory");
        cs_db_close(db);
        return 0;
    }
    status = uri->have_fp ? cs_pin_get(db, uri->fp, csp_store_take_pin, ctx)
                          : cs_pin_foreach(db, csp_store_take_pin, ctx);
    if (status != CS_OK && !(status == CS_NOTFOUND && uri->have_fp))
        CSP_RAISE(ctx->provctx, CSP_R_STORE_UNAVAILABLE, "certstore: %s: %s", uri->path,
                  cs_db_errmsg(db));
    else if (ctx->failed)
        CSP_RAISE(ctx->provctx, CSP_R_STORE_UNAVAILABLE,
                  "certstore: %s: a pin is not a valid certificate (or out of memory)", uri->path);
    else if (uri->have_fp && ctx->count == 0)
        /* Asked for one pin: absent or disabled must not look like an empty store. */
        CSP_RAISE(ctx->provctx, CSP_R_STORE_UNAVAILABLE,
                  "certstore: %s: no pin in force with fingerprint %s", uri->path, uri->fp);
    else
        ok = 1;
    cs_db_close(db);
    return ok;
}

static void *csp_store_open(void *provctx, const char *uri_text)
{
    csp_store_uri *uri = OPENSSL_zalloc(sizeof(*uri));
    csp_store_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));
    csp_store_uri_status status;

    if (uri == NULL || ctx == NULL) {
        CSP_RAISE(provctx, CSP_R_INTERNAL, "certstore: out of memory");
        goto fail;
    }
    ctx->provctx = provctx;
    status = csp_store_uri_parse(uri_text, uri);
    if (status != CSP_URI_OK) {
        CSP_RAISE(provctx, CSP_R_BAD_URI, "certstore: bad URI \"%s\": %s",
                  uri_text != NULL ? uri_text : "(null)", csp_store_uri_strerror(status));
        goto fail;
    }
    if (!csp_store_snapshot(ctx, uri))
        goto fail;
    OPENSSL_free(uri);
    return ctx;

fail:
    OPENSSL_free(uri);
    csp_store_ctx_free(ctx);
    return NULL;
}

static const OSSL_PARAM *csp_store_settable_ctx_params(void *provctx)
{
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_STORE_PARAM_ISSUER, NULL, 0),
        OSSL_PARAM_BN(OSSL_STORE_PARAM_SERIAL, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_END};

    return settable;
}

/* Replace *name with the X509_NAME whose DER is in param; 0 if it is not one. */
static int csp_store_take_name(const OSSL_PARAM *param, X509_NAME **name)
{
    const void *der = NULL;
    const unsigned char *p;
    size_t der_len = 0;
    X509_NAME *decoded;

    if (!OSSL_PARAM_get_octet_string_ptr(param, &der, &der_len) || der_len > LONG_MAX)
        return 0;
    p = der;
    decoded = d2i_X509_NAME(NULL, &p, (long)der_len);
    if (decoded == NULL || p != (const unsigned char *)der + der_len) {
        X509_NAME_free(decoded);
        return 0;
    }
    X509_NAME_free(*name);
    *name = decoded;
    return 1;
}

static int csp_store_refuse_search(csp_store_ctx *ctx, const char *what)
{
    CSP_RAISE(ctx->provctx, CSP_R_BAD_URI, "certstore: search by %s is not supported", what);
    return 0;
}

static int csp_store_set_ctx_params(void *loaderctx, const OSSL_PARAM params[])
{
    csp_store_ctx *ctx = loaderctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p != NULL && !OSSL_PARAM_get_int(p, &ctx->expect))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT);
    if (p != NULL && !csp_store_take_name(p, &ctx->subject))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ISSUER);
    if (p != NULL && !csp_store_take_name(p, &ctx->issuer))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SERIAL);
    if (p != NULL && !OSSL_PARAM_get_BN(p, &ctx->serial))
        return 0;
    if (OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_FINGERPRINT) != NULL)
        return csp_store_refuse_search(ctx, "key fingerprint");
    if (OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ALIAS) != NULL)
        return csp_store_refuse_search(ctx, "alias");
    /* Properties and anything else are ignored: we fetch nothing. */
    return 1;
}

static int csp_store_serial_matches(const X509 *cert, const BIGNUM *wanted)
{
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    int same = serial != NULL && BN_cmp(serial, wanted) == 0;

    BN_free(serial);
    return same;
}

static int csp_store_pin_matches(const csp_store_ctx *ctx, const csp_store_pin *pin)
{
    if (ctx->subject != NULL && X509_NAME_cmp(X509_get_subject_name(pin->cert), ctx->subject) != 0)
        return 0;
    if (ctx->issuer != NULL && X509_NAME_cmp(X509_get_issuer_name(pin->cert), ctx->issuer) != 0)
        return 0;
    if (ctx->serial != NULL && !csp_store_serial_matches(pin->cert, ctx->serial))
        return 0;
    return 1;
}

/* Move ctx->next to the next pin to hand out; 0 when there is none. */
static int csp_store_seek(csp_store_ctx *ctx)
{
    if (ctx->expect != 0 && ctx->expect != OSSL_STORE_INFO_CERT)
        return 0;
    while (ctx->next < ctx->count && !csp_store_pin_matches(ctx, &ctx->pins[ctx->next]))
        ctx->next++;
    return ctx->next < ctx->count;
}

static int csp_store_load(void *loaderctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    csp_store_ctx *ctx = loaderctx;
    int object_type = OSSL_OBJECT_CERT;
    csp_store_pin *pin;
    OSSL_PARAM params[4];

    if (!csp_store_seek(ctx))
        return 0;
    pin = &ctx->pins[ctx->next++];
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    params[1] =
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)"CERTIFICATE", 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, pin->der, pin->der_len);
    params[3] = OSSL_PARAM_construct_end();
    return object_cb(params, object_cbarg);
}

static int csp_store_eof(void *loaderctx)
{
    return !csp_store_seek(loaderctx);
}

static int csp_store_close(void *loaderctx)
{
    csp_store_ctx_free(loaderctx);
    return 1;
}

const OSSL_DISPATCH csp_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))csp_store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))csp_store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))csp_store_set_ctx_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))csp_store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))csp_store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))csp_store_close},
    {0, NULL}};
