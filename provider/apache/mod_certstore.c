/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mod_certstore: the decision the certstore provider took for a request's
 * TLS connection, for Apache httpd.
 *
 * - CERTSTORE_ACCOUNT, CERTSTORE_DECISION and CERTSTORE_MAPPING in every
 *   request's environment (set, or removed when there is no such value);
 * - CertstoreSetUser On: the account is the request's user (REMOTE_USER,
 *   %u, Require user ...);
 * - Require certstore-account NAME...: an authorization provider.
 *
 * mod_ssl hands each connection's SSL to the optional hook pre_handshake
 * (mod_ssl_openssl.h, which Debian's apache2-dev does not ship: the hook is
 * registered by name through APR's optional hooks, with the prototype
 * mod_ssl calls it with). The decision is read from that SSL's state
 * (certstore.h), never decided again: a resumed session reports the
 * acceptance it was made with.
 */
#include <string.h>

/* httpd.h first: the APR headers below need what it brings in. */
#include <httpd.h>

#include <apr_hooks.h>
#include <apr_optional_hooks.h>
#include <apr_strings.h>

#include <ap_config.h>
#include <http_config.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_auth.h>

#include "certstore.h"

module AP_MODULE_DECLARE_DATA certstore_module;

/* mod_ssl_openssl.h's ssl_pre_handshake: run for each connection with its SSL. */
typedef int ssl_HOOK_pre_handshake_t(conn_rec *c, SSL *ssl, int is_proxy);

typedef struct {
    int set_user; /* -1 unset, 0 off, 1 on */
} certstore_dir_conf;

/* The provider's index never changes once it is known; until then, ask again. */
static int certstore_index = -1;

static int certstore_conn_index_cached(void)
{
    if (certstore_index < 0)
        certstore_index = certstore_conn_index(NULL);
    return certstore_index;
}

static int certstore_pre_handshake(conn_rec *c, SSL *ssl, int is_proxy)
{
    if (!is_proxy)
        ap_set_module_config(c->conn_config, &certstore_module, ssl);
    return DECLINED;
}

/* The decision of the client's connection (HTTP/2 streams: of the main one). 1 if any. */
static int certstore_request_decision(request_rec *r, certstore_decision *d)
{
    conn_rec *c = r->connection->master != NULL ? r->connection->master : r->connection;
    SSL *ssl = ap_get_module_config(c->conn_config, &certstore_module);

    memset(d, 0, sizeof(*d));
    if (ssl == NULL)
        return 0;
    return certstore_ssl_decision(ssl, certstore_conn_index_cached(), d);
}

static void certstore_env_set(request_rec *r, const char *name, const char *value)
{
    if (value != NULL && value[0] != '\0')
        apr_table_setn(r->subprocess_env, name, apr_pstrdup(r->pool, value));
    else
        apr_table_unset(r->subprocess_env, name);
}

/* Before any access check: the user for Require user, %u and REMOTE_USER. */
static int certstore_header_parser(request_rec *r)
{
    certstore_dir_conf *conf = ap_get_module_config(r->per_dir_config, &certstore_module);
    certstore_decision d;

    if (conf->set_user != 1 || !certstore_request_decision(r, &d) || d.account == NULL)
        return DECLINED;
    r->user = apr_pstrdup(r->pool, d.account);
    return DECLINED;
}

/* Every request, internal redirects and subrequests included, as mod_ssl's own variables. */
static int certstore_fixups(request_rec *r)
{
    certstore_dir_conf *conf = ap_get_module_config(r->per_dir_config, &certstore_module);
    certstore_decision d;

    certstore_request_decision(r, &d);
    certstore_env_set(r, "CERTSTORE_ACCOUNT", d.account);
    certstore_env_set(r, "CERTSTORE_DECISION", d.decision);
    certstore_env_set(r, "CERTSTORE_MAPPING", d.mapping);
    if (conf->set_user == 1 && d.account != NULL && r->user == NULL)
        r->user = apr_pstrdup(r->pool, d.account);
    return DECLINED;
}

/* ---- Require certstore-account NAME... ---------------------------------------- */

static authz_status certstore_account_check(request_rec *r, const char *require_line,
                                            const void *parsed_require_line)
{
    certstore_decision d;
    const char *word, *t = require_line;

    if (!certstore_request_decision(r, &d) || d.account == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "certstore-account: no certstore account on this connection");
        return AUTHZ_DENIED;
    }
    while ((word = ap_getword_conf(r->pool, &t)) != NULL && word[0] != '\0') {
        if (strcmp(word, d.account) == 0)
            return AUTHZ_GRANTED;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "certstore-account: '%s' is not required here",
                  d.account);
    return AUTHZ_DENIED;
}

static const char *certstore_account_parse(cmd_parms *cmd, const char *require_line,
                                           const void **parsed_require_line)
{
    const char *t = require_line, *word = ap_getword_conf(cmd->pool, &t);

    if (word == NULL || word[0] == '\0')
        return "Require certstore-account takes at least one account name";
    return NULL;
}

static const authz_provider certstore_account_provider = {
    &certstore_account_check,
    &certstore_account_parse,
};

/* ---- configuration -------------------------------------------------------------- */

static void *certstore_create_dir_conf(apr_pool_t *p, char *dir)
{
    certstore_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->set_user = -1;
    return conf;
}

static void *certstore_merge_dir_conf(apr_pool_t *p, void *base_v, void *add_v)
{
    certstore_dir_conf *base = base_v, *add = add_v;
    certstore_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->set_user = add->set_user != -1 ? add->set_user : base->set_user;
    return conf;
}

static const char *certstore_set_user(cmd_parms *cmd, void *conf_v, int on)
{
    ((certstore_dir_conf *)conf_v)->set_user = on ? 1 : 0;
    return NULL;
}

static const command_rec certstore_cmds[] = {
    AP_INIT_FLAG("CertstoreSetUser", certstore_set_user, NULL, RSRC_CONF | ACCESS_CONF,
                 "On: the certstore account of the client's connection is the request's user"),
    {NULL}};

static void certstore_register_hooks(apr_pool_t *p)
{
    ssl_HOOK_pre_handshake_t *pre_handshake = certstore_pre_handshake;

    apr_optional_hook_add("pre_handshake", (void (*)(void))pre_handshake, NULL, NULL,
                          APR_HOOK_MIDDLE);
    ap_hook_header_parser(certstore_header_parser, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_fixups(certstore_fixups, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "certstore-account", AUTHZ_PROVIDER_VERSION,
                              &certstore_account_provider, AP_AUTH_INTERNAL_PER_CONF);
}

AP_DECLARE_MODULE(certstore) = {STANDARD20_MODULE_STUFF,
                                certstore_create_dir_conf, /* per-directory config */
                                certstore_merge_dir_conf,  /* merge per-directory */
                                NULL,                      /* per-server config */
                                NULL,                      /* merge per-server */
                                certstore_cmds,            /* directives */
                                certstore_register_hooks,  /* hooks */
                                AP_MODULE_FLAG_NONE};
