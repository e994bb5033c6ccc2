/*
 * Internal interface shared by the files of the certstore provider module.
 * provider.c owns the context; every other file reaches it through these
 * accessors.
 */
#ifndef CSP_H
#define CSP_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/e_os2.h>

typedef struct csp_ctx CSP_CTX;

/* Reason codes raised through the core (texts in provider.c). */
enum {
    CSP_R_BAD_CONFIG = 1,
    CSP_R_STORE_UNAVAILABLE,
    CSP_R_BAD_URI,
    CSP_R_INTERNAL
};

void csp_raise(const CSP_CTX *ctx, int reason, const char *file, int line, const char *func,
               const char *fmt, ...);
#define CSP_RAISE(ctx, reason, ...)                                                            \
    csp_raise((ctx), (reason), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, __VA_ARGS__)

/* The OSSL_STORE loader for certstore: URIs (store.c). */
extern const OSSL_DISPATCH csp_store_functions[];

#endif /* CSP_H */
