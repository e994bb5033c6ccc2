/*
 * The certstore: OSSL_STORE loader (work in progress: refuses every URI).
 */
#include <openssl/core_dispatch.h>

#include "csp.h"

static OSSL_FUNC_store_open_fn csp_store_open;
static OSSL_FUNC_store_load_fn csp_store_load;
static OSSL_FUNC_store_eof_fn csp_store_eof;
static OSSL_FUNC_store_close_fn csp_store_close;

static void *csp_store_open(void *provctx, const char *uri)
{
    CSP_RAISE(provctx, CSP_R_BAD_URI, "certstore: loader not ready for %s", uri);
    return NULL;
}

static int csp_store_load(void *loaderctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    return 0;
}

static int csp_store_eof(void *loaderctx)
{
    return 1;
}

static int csp_store_close(void *loaderctx)
{
    return 1;
}

const OSSL_DISPATCH csp_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))csp_store_open },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))csp_store_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))csp_store_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))csp_store_close },
    { 0, NULL }
};
