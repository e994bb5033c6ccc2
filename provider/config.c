/*
 * The provider's openssl.cnf section, read in one core_get_params call and
 * validated strictly: a typo in `mode` must not quietly become a default,
 * it is a configuration error and every client is denied until it is fixed.
 *
 * The policy is process-wide (the SSL_CTX hook is), while the core may
 * initialise the provider once per library context. The first activation
 * sets the policy; a later one with a different section cannot say which
 * of the two the operator meant, so the process falls back to deny-all.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/params.h>

#include "csp.h"

typedef enum {
    CSP_KEY_DB = 0,
    CSP_KEY_MODE,
    CSP_KEY_LOG,
    CSP_KEY_BUSY_TIMEOUT_MS,
    CSP_KEY_REQUIRE_STRONG,
    CSP_KEY_COUNT
} csp_key;

static const char *const csp_key_names[CSP_KEY_COUNT] = {
    [CSP_KEY_DB] = "db",
    [CSP_KEY_MODE] = "mode",
    [CSP_KEY_LOG] = "log",
    [CSP_KEY_BUSY_TIMEOUT_MS] = "busy_timeout_ms",
    [CSP_KEY_REQUIRE_STRONG] = "require_strong",
};

static const char *const csp_mode_names[] = {
    [CSP_MODE_ENFORCE] = "enforce",
    [CSP_MODE_AUDIT] = "audit",
    [CSP_MODE_OFF] = "off",
};

const char *csp_mode_name(csp_mode mode)
{
    return csp_mode_names[mode];
}

__attribute__((format(printf, 2, 3))) static void csp_config_fail(csp_config *cfg, const char *fmt,
                                                                  ...)
{
    va_list args;

    if (cfg->config_error)
        return; /* keep the first cause: it is the one to fix first */
    cfg->config_error = 1;
    va_start(args, fmt);
    vsnprintf(cfg->config_error_text, sizeof(cfg->config_error_text), fmt, args);
    va_end(args);
}

static void csp_config_db(csp_config *cfg, const char *value)
{
    if (value == NULL || *value == '\0') {
        csp_config_fail(cfg, "db is required");
        return;
    }
    /* Servers chdir and chroot: a relative path would name another file. */
    if (value[0] != '/' || strlen(value) >= sizeof(cfg->db)) {
        csp_config_fail(cfg, "db must be an absolute path, not \"%.200s\"", value);
        return;
    }
    strcpy(cfg->db, value);
}

static void csp_config_mode(csp_config *cfg, const char *value)
{
    size_t i;

    if (value == NULL)
        return; /* enforce */
    for (i = 0; i < sizeof(csp_mode_names) / sizeof(csp_mode_names[0]); i++) {
        if (strcmp(value, csp_mode_names[i]) == 0) {
            cfg->mode = (csp_mode)i;
            return;
        }
    }
    csp_config_fail(cfg, "mode must be enforce, audit or off, not \"%.100s\"", value);
}

static void csp_config_log(csp_config *cfg, const char *value)
{
    if (value == NULL || strcmp(value, "syslog") == 0) {
        cfg->log_kind = CSP_LOG_SYSLOG;
    } else if (strcmp(value, "stderr") == 0) {
        cfg->log_kind = CSP_LOG_STDERR;
    } else if (value[0] == '/' && strlen(value) < sizeof(cfg->log_file)) {
        cfg->log_kind = CSP_LOG_FILE;
        strcpy(cfg->log_file, value);
    } else {
        cfg->log_kind = CSP_LOG_SYSLOG; /* somewhere to say what went wrong */
        csp_config_fail(cfg, "log must be syslog, stderr or an absolute path, not \"%.100s\"",
                        value);
    }
}

static void csp_config_busy_timeout(csp_config *cfg, const char *value)
{
    char *end = NULL;
    long ms;

    cfg->busy_timeout_ms = CSP_BUSY_TIMEOUT_DEFAULT;
    if (value == NULL)
        return;
    errno = 0;
    ms = strtol(value, &end, 10);
    if (value[0] < '0' || value[0] > '9' || errno != 0 || *end != '\0' || ms < 0 ||
        ms > CSP_BUSY_TIMEOUT_MAX) {
        csp_config_fail(cfg, "busy_timeout_ms must be an integer from 0 to 60000, not \"%.40s\"",
                        value);
        return;
    }
    cfg->busy_timeout_ms = (int)ms;
}

/* Accept only strong mappings (KB5014754): rules are refused as weak-mapping-refused. */
static void csp_config_require_strong(csp_config *cfg, const char *value)
{
    if (value == NULL || strcmp(value, "no") == 0)
        cfg->require_strong = 0;
    else if (strcmp(value, "yes") == 0)
        cfg->require_strong = 1;
    else
        csp_config_fail(cfg, "require_strong must be yes or no, not \"%.40s\"", value);
}

void csp_config_read(const OSSL_CORE_HANDLE *handle, OSSL_FUNC_core_get_params_fn *get_params,
                     csp_config *out)
{
    const char *values[CSP_KEY_COUNT] = {NULL};
    OSSL_PARAM params[CSP_KEY_COUNT + 1];
    int i;

    memset(out, 0, sizeof(*out));
    out->busy_timeout_ms = CSP_BUSY_TIMEOUT_DEFAULT;
    for (i = 0; i < CSP_KEY_COUNT; i++)
        params[i] = OSSL_PARAM_construct_utf8_ptr(csp_key_names[i], (char **)&values[i], 0);
    params[CSP_KEY_COUNT] = OSSL_PARAM_construct_end();
    if (get_params == NULL || !get_params(handle, params)) {
        csp_config_fail(out, "cannot read the provider configuration");
        return;
    }
    for (i = 0; i < CSP_KEY_COUNT; i++)
        CSP_DEBUG("config %s = %s", csp_key_names[i], values[i] != NULL ? values[i] : "(unset)");

    csp_config_mode(out, values[CSP_KEY_MODE]);
    csp_config_log(out, values[CSP_KEY_LOG]);
    csp_config_db(out, values[CSP_KEY_DB]);
    csp_config_busy_timeout(out, values[CSP_KEY_BUSY_TIMEOUT_MS]);
    csp_config_require_strong(out, values[CSP_KEY_REQUIRE_STRONG]);
}

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
           a->config_error == b->config_error && a->require_strong == b->require_strong;
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
