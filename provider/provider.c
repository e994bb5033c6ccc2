/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certstore provider: init, teardown, params, query_operation and the
 * reason strings. The work happens elsewhere: config.c reads openssl.cnf,
 * hook.c decides every server-side client certificate, store.c serves
 * certstore: URIs.
 *
 * Init never fails once the core is reachable. OpenSSL carries on without a
 * provider whose init returned 0, so a server with a broken certstore
 * section would run with no policy at all; instead a broken configuration
 * installs the hook in deny-all mode and says why.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "certstore.h"
#include "csp.h"

/* ---- the process-wide policy ---------------------------------------------- */

static csp_config csp_active;
static int csp_active_set;

const csp_config *csp_policy(void)
{
    return &csp_active;
}

static int csp_config_same(const csp_config *a, const csp_config *b)
{
    return strcmp(a->db, b->db) == 0 && a->mode == b->mode && a->log_kind == b->log_kind &&
           strcmp(a->log_file, b->log_file) == 0 && a->busy_timeout_ms == b->busy_timeout_ms &&
           a->config_error == b->config_error && a->require_strong == b->require_strong &&
           a->db_dir_fd == b->db_dir_fd;
}

/* A later library context: identical section, nothing to do; else deny all. */
static void csp_policy_merge(const csp_config *cfg)
{
    if (csp_config_same(&csp_active, cfg))
        return;
    if (!csp_active.config_error)
        snprintf(csp_active.config_error_text, sizeof(csp_active.config_error_text),
                 "two library contexts load certstore with different settings");
    csp_active.config_error = 1;
    /* Deny-all must deny: audit would let everything through. */
    if (csp_active.mode != CSP_MODE_OFF || cfg->mode != CSP_MODE_OFF)
        csp_active.mode = CSP_MODE_ENFORCE;
    csp_log_notice("certstore: config-error: %s; denying every client certificate",
                   csp_active.config_error_text);
    if (csp_active.mode != CSP_MODE_OFF)
        csp_hooks_install();
}

static int csp_writable_by_others(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

/*
 * Whoever may write the database, or its directory (rename another file in
 * its place), decides who gets in. Not a reason to deny: the operator may
 * have meant it (a group of admins), but it must be said.
 */
static void csp_policy_warn_permissions(void)
{
    char dir[PATH_MAX];
    char *slash;

    snprintf(dir, sizeof(dir), "%s", csp_active.db);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    if (csp_writable_by_others(csp_active.db))
        csp_log_notice("certstore: warning: %s is writable by group or others; they can "
                       "change who is accepted",
                       csp_active.db);
    if (csp_writable_by_others(dir))
        csp_log_notice("certstore: warning: directory %s of the database is writable by "
                       "group or others; they can replace the database",
                       dir);
}

static void csp_policy_report_db(void)
{
    char why[256];

    if (csp_active.config_error)
        return;
    csp_policy_warn_permissions();
    if (!csp_active.db_dir_fd)
        CSP_DEBUG("db_dir_descriptor = no: the database is opened by path only");
    else if (!csp_dbpool_attach_dir(why, sizeof(why)))
        csp_log_notice("certstore: cannot open the database's directory now (%s); opening "
                       "the database by path only, which a server that chroots cannot do",
                       why);
    if (csp_dbpool_probe(csp_active.db, why, sizeof(why)))
        return;
    /* Not a config error: the file may appear later and is opened lazily. */
    csp_log_notice("certstore: store-unavailable: %s: %s; denying client certificates until "
                   "it can be opened",
                   csp_active.db, why);
}

int csp_policy_activate(const csp_config *cfg)
{
    char why[256];

    if (csp_active_set) {
        csp_policy_merge(cfg);
        return 1;
    }
    csp_active = *cfg;
    csp_active_set = 1;
    csp_dbpool_configure(csp_active.db, csp_active.busy_timeout_ms);
    if (csp_active.mode == CSP_MODE_OFF) {
        CSP_DEBUG("mode = off: no hook installed");
        return 1;
    }
    if (!csp_log_open(&csp_active, why, sizeof(why))) {
        csp_active.config_error = 1;
        snprintf(csp_active.config_error_text, sizeof(csp_active.config_error_text), "log: %.240s",
                 why);
    }
    if (csp_active.config_error)
        csp_log_notice("certstore: config-error: %s; denying every client certificate",
                       csp_active.config_error_text);
    csp_policy_report_db();
    if (!csp_hooks_install())
        csp_log_notice("certstore: cannot install the verification hook");
    return 1;
}

struct csp_ctx {
    const OSSL_CORE_HANDLE *handle;
};

static OSSL_FUNC_core_new_error_fn *core_new_error;
static OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *core_vset_error;

static OSSL_FUNC_provider_teardown_fn csp_teardown;
static OSSL_FUNC_provider_gettable_params_fn csp_gettable_params;
static OSSL_FUNC_provider_get_params_fn csp_get_params;
static OSSL_FUNC_provider_query_operation_fn csp_query_operation;
static OSSL_FUNC_provider_get_reason_strings_fn csp_get_reason_strings;

/*
 * What the process-wide policy made of the configuration, for `certstore
 * doctor` and the HAProxy fetches: the database path, the mode name, "ok"
 * or "deny-all", why it denies all ("" when ok), and require_strong.
 */
#define CSP_PARAM_DB CERTSTORE_PARAM_DB
#define CSP_PARAM_MODE CERTSTORE_PARAM_MODE
#define CSP_PARAM_STATUS CERTSTORE_PARAM_STATUS
#define CSP_PARAM_STATUS_REASON CERTSTORE_PARAM_STATUS_REASON

static const OSSL_ITEM csp_reason_strings[] = {
    {CSP_R_BAD_CONFIG, "invalid certstore configuration"},
    {CSP_R_STORE_UNAVAILABLE, "certstore database unavailable"},
    {CSP_R_BAD_URI, "invalid certstore URI"},
    {CSP_R_INTERNAL, "certstore internal error"},
    {0, NULL}};

void csp_raise(const CSP_CTX *ctx, int reason, const char *file, int line, const char *func,
               const char *fmt, ...)
{
    va_list args;

    if (ctx == NULL || core_new_error == NULL || core_set_error_debug == NULL ||
        core_vset_error == NULL)
        return;
    core_new_error(ctx->handle);
    core_set_error_debug(ctx->handle, file, line, func);
    va_start(args, fmt);
    core_vset_error(ctx->handle, (uint32_t)reason, fmt, args);
    va_end(args);
}

static const OSSL_PARAM *csp_gettable_params(void *provctx)
{
    static const OSSL_PARAM gettable[] = {OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
                                          OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
                                          OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
                                          OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
                                          OSSL_PARAM_int(CERTSTORE_PARAM_ACCOUNT_INDEX, NULL),
                                          OSSL_PARAM_int(CERTSTORE_PARAM_CONN_LAYOUT, NULL),
                                          OSSL_PARAM_utf8_ptr(CSP_PARAM_DB, NULL, 0),
                                          OSSL_PARAM_utf8_ptr(CSP_PARAM_MODE, NULL, 0),
                                          OSSL_PARAM_utf8_ptr(CSP_PARAM_STATUS, NULL, 0),
                                          OSSL_PARAM_utf8_ptr(CSP_PARAM_STATUS_REASON, NULL, 0),
                                          OSSL_PARAM_int(CERTSTORE_PARAM_REQUIRE_STRONG, NULL),
                                          OSSL_PARAM_END};

    return gettable;
}

/* The policy lives as long as the process, so handing out pointers is safe. */
static int csp_get_policy_params(OSSL_PARAM params[])
{
    const csp_config *policy = csp_policy();
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, CSP_PARAM_DB);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, policy->db))
        return 0;
    p = OSSL_PARAM_locate(params, CSP_PARAM_MODE);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, csp_mode_name(policy->mode)))
        return 0;
    p = OSSL_PARAM_locate(params, CSP_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, policy->config_error ? "deny-all" : "ok"))
        return 0;
    p = OSSL_PARAM_locate(params, CSP_PARAM_STATUS_REASON);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, policy->config_error ? policy->config_error_text : ""))
        return 0;
    p = OSSL_PARAM_locate(params, CERTSTORE_PARAM_REQUIRE_STRONG);
    if (p != NULL && !OSSL_PARAM_set_int(p, policy->require_strong))
        return 0;
    return 1;
}

static int csp_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "certstore"))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, CERTSTORE_VERSION))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "certstore " CERTSTORE_VERSION))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, 1))
        return 0;
    p = OSSL_PARAM_locate(params, CERTSTORE_PARAM_ACCOUNT_INDEX);
    if (p != NULL && !OSSL_PARAM_set_int(p, csp_hooks_account_index()))
        return 0;
    p = OSSL_PARAM_locate(params, CERTSTORE_PARAM_CONN_LAYOUT);
    if (p != NULL && !OSSL_PARAM_set_int(p, CERTSTORE_CONN_LAYOUT))
        return 0;
    return csp_get_policy_params(params);
}

static const OSSL_ALGORITHM csp_store_algorithms[] = {
    {"certstore", "provider=certstore", csp_store_functions,
     "certstore: URIs, the pinned issuing CAs of a certstore database"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *csp_query_operation(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    if (operation_id == OSSL_OP_STORE)
        return csp_store_algorithms;
    return NULL;
}

static const OSSL_ITEM *csp_get_reason_strings(void *provctx)
{
    return csp_reason_strings;
}

/*
 * Only the per-context handle goes away: the process-wide hook stays, since
 * SSL_CTXs made earlier still call it (the module is linked -z nodelete).
 */
static void csp_teardown(void *provctx)
{
    OPENSSL_free(provctx);
}

static const OSSL_DISPATCH csp_provider_functions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))csp_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))csp_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))csp_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))csp_query_operation},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))csp_get_reason_strings},
    {0, NULL}};

static void csp_capture_core(const OSSL_DISPATCH *in, OSSL_FUNC_core_get_params_fn **get_params)
{
    for (; in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            *get_params = OSSL_FUNC_core_get_params(in);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
}

/* The one exported symbol; everything else is hidden. */
__attribute__((visibility("default"))) OSSL_provider_init_fn OSSL_provider_init;

__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in,
                                                              const OSSL_DISPATCH **out,
                                                              void **provctx)
{
    OSSL_FUNC_core_get_params_fn *get_params = NULL;
    csp_config cfg;
    CSP_CTX *ctx;

    csp_capture_core(in, &get_params);
    csp_config_read(handle, get_params, &cfg);
    /*
     * Activate before anything can fail: even out of memory below, the hook
     * is in place (or deliberately off).
     */
    csp_policy_activate(&cfg);

    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL)
        return 0;
    ctx->handle = handle;
    *provctx = ctx;
    *out = csp_provider_functions;
    return 1;
}
