/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ngx_http_certstore_module: the decision the certstore provider took for
 * the request's TLS connection, as variables.
 *
 *     $certstore_account   the account; empty unless certstore accepted the client
 *     $certstore_decision  "accept" or the reason token; empty when nothing was decided
 *     $certstore_mapping   the mapping or rule that decided ("cert:12", "rule:7"); or empty
 *
 * Read from the connection's own state (certstore.h), never decided again:
 * a resumed session reports the acceptance it was made with, and resumes
 * only while nothing has narrowed access since. Empty values make
 * proxy_set_header drop the header, and the client's own header of that
 * name with it.
 *
 * The variables are changeable, as map and set need: a configuration that
 * still defines $certstore_account with the exported map (README's older
 * recipe) keeps working, its own definition taking over.
 */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "certstore.h"

typedef enum {
    NGX_HTTP_CERTSTORE_ACCOUNT,
    NGX_HTTP_CERTSTORE_DECISION,
    NGX_HTTP_CERTSTORE_MAPPING
} ngx_http_certstore_field_e;

static ngx_int_t ngx_http_certstore_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_certstore_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                                             uintptr_t data);

static ngx_http_module_t ngx_http_certstore_module_ctx = {
    ngx_http_certstore_add_variables, /* preconfiguration */
    NULL,                             /* postconfiguration */
    NULL,                             /* create main configuration */
    NULL,                             /* init main configuration */
    NULL,                             /* create server configuration */
    NULL,                             /* merge server configuration */
    NULL,                             /* create location configuration */
    NULL                              /* merge location configuration */
};

ngx_module_t ngx_http_certstore_module = {NGX_MODULE_V1,
                                          &ngx_http_certstore_module_ctx, /* module context */
                                          NULL,                           /* module directives */
                                          NGX_HTTP_MODULE,                /* module type */
                                          NULL,                           /* init master */
                                          NULL,                           /* init module */
                                          NULL,                           /* init process */
                                          NULL,                           /* init thread */
                                          NULL,                           /* exit thread */
                                          NULL,                           /* exit process */
                                          NULL,                           /* exit master */
                                          NGX_MODULE_V1_PADDING};

static ngx_http_variable_t ngx_http_certstore_vars[] = {
    {ngx_string("certstore_account"), NULL, ngx_http_certstore_variable, NGX_HTTP_CERTSTORE_ACCOUNT,
     NGX_HTTP_VAR_CHANGEABLE, 0},
    {ngx_string("certstore_decision"), NULL, ngx_http_certstore_variable,
     NGX_HTTP_CERTSTORE_DECISION, NGX_HTTP_VAR_CHANGEABLE, 0},
    {ngx_string("certstore_mapping"), NULL, ngx_http_certstore_variable, NGX_HTTP_CERTSTORE_MAPPING,
     NGX_HTTP_VAR_CHANGEABLE, 0},
    ngx_http_null_variable};

/* The provider's index never changes once it is known; until then, ask again. */
static int ngx_http_certstore_index = -1;

static int ngx_http_certstore_conn_index(void)
{
    if (ngx_http_certstore_index < 0)
        ngx_http_certstore_index = certstore_conn_index(NULL);
    return ngx_http_certstore_index;
}

static ngx_int_t ngx_http_certstore_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                                             uintptr_t data)
{
    certstore_decision d;
    const char *value = NULL;
    size_t len;

    memset(&d, 0, sizeof(d));
#if (NGX_HTTP_SSL)
    if (r->connection->ssl != NULL)
        (void)certstore_ssl_decision(r->connection->ssl->connection,
                                     ngx_http_certstore_conn_index(), &d);
#endif
    switch ((ngx_http_certstore_field_e)data) {
    case NGX_HTTP_CERTSTORE_ACCOUNT:
        value = d.account;
        break;
    case NGX_HTTP_CERTSTORE_DECISION:
        value = d.decision;
        break;
    case NGX_HTTP_CERTSTORE_MAPPING:
        value = d.mapping;
        break;
    }
    len = value != NULL ? ngx_strlen(value) : 0;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->len = len;
    v->data = (u_char *)"";
    if (len == 0)
        return NGX_OK;
    /* A copy the request owns: the connection's state may outlive it, not the other way. */
    v->data = ngx_pnalloc(r->pool, len);
    if (v->data == NULL)
        return NGX_ERROR;
    ngx_memcpy(v->data, value, len);
    return NGX_OK;
}

static ngx_int_t ngx_http_certstore_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t *var, *v;

    for (v = ngx_http_certstore_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL)
            return NGX_ERROR;
        var->get_handler = v->get_handler;
        var->data = v->data;
    }
    return NGX_OK;
}
