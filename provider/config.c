/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provider's openssl.cnf section, read in one core_get_params call and
 * validated strictly: a typo in `mode` must not quietly become a default,
 * it is a configuration error and every client is denied until it is fixed.
 *
 * Parsing only: what becomes of a section (the process-wide policy, the
 * hooks) is provider.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>

#include "csp.h"

typedef enum {
    CSP_KEY_DB = 0,
    CSP_KEY_MODE,
    CSP_KEY_LOG,
    CSP_KEY_BUSY_TIMEOUT_MS,
    CSP_KEY_REQUIRE_STRONG,
    CSP_KEY_DB_DIR_DESCRIPTOR,
    CSP_KEY_COUNT
} csp_key;

static const char *const csp_key_names[CSP_KEY_COUNT] = {
    [CSP_KEY_DB] = "db",
    [CSP_KEY_MODE] = "mode",
    [CSP_KEY_LOG] = "log",
    [CSP_KEY_BUSY_TIMEOUT_MS] = "busy_timeout_ms",
    [CSP_KEY_REQUIRE_STRONG] = "require_strong",
    [CSP_KEY_DB_DIR_DESCRIPTOR] = "db_dir_descriptor",
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

/*
 * "/a//b/./c" as "/a/b/c": the name SQLite gives the file it opens, which
 * is the name a chrooted process's opens are routed by (store/db_dir.c).
 */
static void csp_path_tidy(char *path)
{
    const char *in = path;
    char *out = path;

    while (*in != '\0') {
        if (in[0] == '/' && in[1] == '/')
            in++;
        else if (in[0] == '/' && in[1] == '.' && (in[2] == '/' || in[2] == '\0'))
            in += 2;
        else
            *out++ = *in++;
    }
    if (out == path)
        *out++ = '/';
    *out = '\0';
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
    csp_path_tidy(cfg->db);
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

/*
 * Reach the database after a chroot through a descriptor on its directory
 * opened at load (the default); "no" keeps none open, for a chroot that must
 * contain a compromised worker (a descriptor outside it is a way out).
 */
static void csp_config_db_dir_descriptor(csp_config *cfg, const char *value)
{
    if (value == NULL || strcmp(value, "yes") == 0)
        cfg->db_dir_fd = 1;
    else if (strcmp(value, "no") == 0)
        cfg->db_dir_fd = 0;
    else
        csp_config_fail(cfg, "db_dir_descriptor must be yes or no, not \"%.40s\"", value);
}

/* ---- which keys the section holds --------------------------------------------- */

/*
 * core_get_params answers only for the names it is asked about, so a
 * misspelt key (require_stong) would be ignored and its setting left at a
 * default. The section is therefore read a second time, through libcrypto's
 * own CONF API, and every key in it must be one of ours or one OpenSSL
 * itself reads there; anything else is a configuration error.
 *
 * How the section is found: the file is the one the process's default
 * configuration comes from, CONF_get1_default_config_file() ($OPENSSL_CONF,
 * else openssl.cnf in OPENSSLDIR), which is what servers load. In it, an
 * entry of the default section (openssl_conf, or an application's own
 * name) names an init section whose `providers` entry names the providers
 * section; there, the entry named like this provider (core parameter
 * provider-name, dotted prefixes skipped as OpenSSL does) names our section.
 * That section is taken as the one the core read only when each of our keys
 * has there exactly the value the core handed us. When no such section is
 * found (a program loaded another file explicitly, or the file changed
 * since), the keys cannot be checked and the configuration is an error too.
 */

/* Keys OpenSSL's provider configuration consumes itself (crypto/provider_conf.c). */
static const char *const csp_openssl_keys[] = {"identity", "module", "activate", "soft_load"};

/* OpenSSL skips everything up to the first dot in these names. */
static const char *csp_skip_dot(const char *name)
{
    const char *dot = strchr(name, '.');

    return dot != NULL ? dot + 1 : name;
}

static int csp_key_by_name(const char *name)
{
    for (int i = 0; i < CSP_KEY_COUNT; i++)
        if (strcmp(name, csp_key_names[i]) == 0)
            return i;
    return -1;
}

static int csp_openssl_key(const char *name)
{
    const char *bare = csp_skip_dot(name);

    for (size_t i = 0; i < sizeof(csp_openssl_keys) / sizeof(csp_openssl_keys[0]); i++)
        if (strcmp(bare, csp_openssl_keys[i]) == 0)
            return 1;
    return 0;
}

static int csp_same_value(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Whether this section holds, for each of our keys, the value the core gave. */
static int csp_section_matches(CONF *conf, const char *section,
                               const char *const values[CSP_KEY_COUNT])
{
    STACK_OF(CONF_VALUE) *entries = NCONF_get_section(conf, section);
    const char *found[CSP_KEY_COUNT] = {NULL};

    if (entries == NULL)
        return 0;
    for (int i = 0; i < sk_CONF_VALUE_num(entries); i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(entries, i);
        int key = csp_key_by_name(v->name);

        if (key >= 0)
            found[key] = v->value;
    }
    for (int i = 0; i < CSP_KEY_COUNT; i++)
        if (!csp_same_value(found[i], values[i]))
            return 0;
    return 1;
}

/* Our section in the providers section `providers`, if it matches; NULL otherwise. */
static const char *csp_section_in(CONF *conf, const char *providers, const char *provider_name,
                                  const char *const values[CSP_KEY_COUNT])
{
    STACK_OF(CONF_VALUE) *entries = NCONF_get_section(conf, providers);

    for (int i = 0; i < sk_CONF_VALUE_num(entries); i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(entries, i);

        if (strcmp(csp_skip_dot(v->name), provider_name) == 0 &&
            csp_section_matches(conf, v->value, values))
            return v->value;
    }
    return NULL;
}

static const char *csp_find_section(CONF *conf, const char *provider_name,
                                    const char *const values[CSP_KEY_COUNT])
{
    STACK_OF(CONF_VALUE) *top = NCONF_get_section(conf, "default");

    for (int i = 0; i < sk_CONF_VALUE_num(top); i++) {
        const CONF_VALUE *init = sk_CONF_VALUE_value(top, i);
        const char *providers, *section;

        if (NCONF_get_section(conf, init->value) == NULL)
            continue;
        providers = NCONF_get_string(conf, init->value, "providers");
        ERR_clear_error(); /* a missing entry queues an error */
        if (providers != NULL &&
            (section = csp_section_in(conf, providers, provider_name, values)) != NULL)
            return section;
    }
    return NULL;
}

static void csp_config_reject_unknown(csp_config *cfg, CONF *conf, const char *section)
{
    STACK_OF(CONF_VALUE) *entries = NCONF_get_section(conf, section);

    for (int i = 0; i < sk_CONF_VALUE_num(entries); i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(entries, i);

        if (csp_key_by_name(v->name) < 0 && !csp_openssl_key(v->name)) {
            csp_config_fail(cfg,
                            "unknown key \"%.60s\" in section [%.60s] (known: db, mode, log, "
                            "busy_timeout_ms, require_strong, db_dir_descriptor)",
                            v->name, section);
            return;
        }
    }
}

static void csp_config_check_keys(csp_config *cfg, const char *provider_name,
                                  const char *const values[CSP_KEY_COUNT])
{
    char *file = CONF_get1_default_config_file();
    CONF *conf = NCONF_new(NULL);
    const char *section = NULL;

    if (file == NULL || conf == NULL) {
        csp_config_fail(cfg, "cannot check the keys of the configuration (out of memory)");
    } else if (provider_name == NULL || NCONF_load(conf, file, NULL) <= 0) {
        csp_config_fail(cfg, "cannot read %.150s to check the keys of the certstore section", file);
    } else if ((section = csp_find_section(conf, provider_name, values)) == NULL) {
        csp_config_fail(cfg,
                        "the section of provider \"%.40s\" is not in %.150s ($OPENSSL_CONF): "
                        "cannot check its keys",
                        provider_name, file);
    } else {
        CSP_DEBUG("config section [%s] of %s", section, file);
        csp_config_reject_unknown(cfg, conf, section);
    }
    ERR_clear_error();
    NCONF_free(conf);
    OPENSSL_free(file);
}

void csp_config_read(const OSSL_CORE_HANDLE *handle, OSSL_FUNC_core_get_params_fn *get_params,
                     csp_config *out)
{
    const char *values[CSP_KEY_COUNT] = {NULL};
    const char *provider_name = NULL;
    OSSL_PARAM params[CSP_KEY_COUNT + 2];
    int i;

    memset(out, 0, sizeof(*out));
    out->busy_timeout_ms = CSP_BUSY_TIMEOUT_DEFAULT;
    for (i = 0; i < CSP_KEY_COUNT; i++)
        params[i] = OSSL_PARAM_construct_utf8_ptr(csp_key_names[i], (char **)&values[i], 0);
    params[CSP_KEY_COUNT] =
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_CORE_PROV_NAME, (char **)&provider_name, 0);
    params[CSP_KEY_COUNT + 1] = OSSL_PARAM_construct_end();
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
    csp_config_db_dir_descriptor(out, values[CSP_KEY_DB_DIR_DESCRIPTOR]);
    csp_config_check_keys(out, provider_name, values);
}
