/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore_haproxy: the Lua 5.3 C module behind certstore.lua, HAProxy's
 * sample fetches lua.certstore_account, lua.certstore_decision and
 * lua.certstore_mapping.
 *
 * HAProxy hides a connection's SSL from Lua, so this runs the store's one
 * policy function (cs_decide_ex, as the provider does) on the client's
 * certificate (ssl_c_der) and the pinned CA that issued it, in the database
 * and with the options (require_strong) the certstore provider loaded in
 * this process uses: the same decision, never a logic of its own. It
 * answers nothing (no account) when the provider is not loaded, is off,
 * denies all (an invalid configuration), or anything cannot be read: fail
 * closed. The chain itself is OpenSSL's to
 * judge, as in the provider: a certificate whose verification raised any
 * error (ssl_c_verify not 0, which a frontend with crt-ignore-err or
 * ca-ignore-err lets through, and mode = audit then too) is chain-invalid.
 *
 *     local cs = require("certstore_haproxy")
 *     account, decision, mapping = cs.decide(der, verify)   -- verify: ssl_c_verify
 *     -- nil, reason, "" when not accepted
 */
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "certstore.h"
#include "cs_store.h"

/* The provider's database, mode and options, or found 0 when it is not loaded here. */
typedef struct {
    char db[4096];
    char mode[16];
    int require_strong;
    int found;
} certstore_lua_provider;

static int certstore_lua_provider_cb(OSSL_PROVIDER *prov, void *arg)
{
    certstore_lua_provider *out = arg;
    const char *db = NULL, *mode = NULL, *status = NULL;
    int require_strong = -1;
    OSSL_PARAM params[5];

    if (strcmp(OSSL_PROVIDER_get0_name(prov), CERTSTORE_PROVIDER_NAME) != 0)
        return 1;
    params[0] = OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_DB, (char **)&db, 0);
    params[1] = OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_MODE, (char **)&mode, 0);
    params[2] = OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_STATUS, (char **)&status, 0);
    params[3] = OSSL_PARAM_construct_int(CERTSTORE_PARAM_REQUIRE_STRONG, &require_strong);
    params[4] = OSSL_PARAM_construct_end();
    /* A provider that denies all, or does not say which options it decides with: none. */
    if (OSSL_PROVIDER_get_params(prov, params) && db != NULL && mode != NULL && status != NULL &&
        strcmp(status, "ok") == 0 && OSSL_PARAM_modified(&params[3]) &&
        strlen(db) < sizeof(out->db) && strlen(mode) < sizeof(out->mode)) {
        strcpy(out->db, db);
        strcpy(out->mode, mode);
        out->require_strong = require_strong;
        out->found = 1;
    }
    return 0;
}

static void certstore_lua_push_result(lua_State *L, const cs_decision *d)
{
    char mapping[CERTSTORE_MAPPING_MAX] = "";

    if (d->rule_id != 0)
        snprintf(mapping, sizeof(mapping), "rule:%lld", (long long)d->rule_id);
    else if (d->mapping_id != 0)
        snprintf(mapping, sizeof(mapping), "%s:%lld", cs_kind_name(d->kind),
                 (long long)d->mapping_id);
    if (d->accept && d->account[0] != '\0')
        lua_pushstring(L, d->account);
    else
        lua_pushnil(L);
    lua_pushstring(L, cs_reason_token(d->accept ? CS_REASON_NONE : d->reason));
    lua_pushstring(L, mapping);
}

typedef struct {
    X509 *cert;
} certstore_lua_pin;

static int certstore_lua_pin_cb(const cs_pin *pin, void *arg)
{
    const unsigned char *p = pin->der;

    ((certstore_lua_pin *)arg)->cert = d2i_X509(NULL, &p, (long)pin->der_len);
    return 1;
}

/* The decision for leaf issued by its pinned CA, as the provider's options make it. */
static void certstore_lua_decide_leaf(cs_db *db, X509 *leaf, const certstore_lua_provider *prov,
                                      cs_decision *d)
{
    cs_policy_opts opts = {.require_strong = prov->require_strong};
    char fp[CS_FP_HEX_LEN + 1];
    certstore_lua_pin pin = {NULL};
    STACK_OF(X509) *chain = NULL;

    /* Not pinned, or several pins (same name and key) could be it: as unpinned. */
    if (cs_pin_find_issuer(db, leaf, fp) != CS_OK ||
        cs_pin_get(db, fp, certstore_lua_pin_cb, &pin) != CS_OK || pin.cert == NULL ||
        (chain = sk_X509_new_null()) == NULL || !sk_X509_push(chain, leaf) ||
        !sk_X509_push(chain, pin.cert)) {
        memset(d, 0, sizeof(*d));
        d->reason = CS_REASON_ISSUER_NOT_PINNED;
    } else {
        cs_decide_ex(db, chain, (int64_t)time(NULL), &opts, d);
    }
    sk_X509_free(chain);
    X509_free(pin.cert);
}

static int certstore_lua_decide(lua_State *L)
{
    size_t len = 0;
    const char *der = luaL_optlstring(L, 1, "", &len);
    /* No verification result given: as an unverified chain. */
    lua_Integer verify = luaL_optinteger(L, 2, -1);
    const unsigned char *p = (const unsigned char *)der;
    certstore_lua_provider prov;
    cs_decision d;
    cs_db *db = NULL;
    X509 *leaf;

    memset(&prov, 0, sizeof(prov));
    memset(&d, 0, sizeof(d));
    if (len == 0) {
        lua_pushnil(L); /* no client certificate: nothing decided */
        lua_pushnil(L);
        lua_pushnil(L);
        return 3;
    }
    OSSL_PROVIDER_do_all(NULL, certstore_lua_provider_cb, &prov);
    leaf = d2i_X509(NULL, &p, (long)len);
    d.reason = CS_REASON_STORE_UNAVAILABLE;
    if (verify != X509_V_OK)
        d.reason = CS_REASON_CHAIN_INVALID;
    else if (leaf != NULL && prov.found && strcmp(prov.mode, "off") != 0 &&
             cs_db_open(&db, prov.db, CS_OPEN_READONLY) == CS_OK)
        certstore_lua_decide_leaf(db, leaf, &prov, &d);
    cs_db_close(db);
    X509_free(leaf);
    certstore_lua_push_result(L, &d);
    return 3;
}

int luaopen_certstore_haproxy(lua_State *L);

int luaopen_certstore_haproxy(lua_State *L)
{
    static const luaL_Reg functions[] = {{"decide", certstore_lua_decide}, {NULL, NULL}};

    luaL_newlib(L, functions);
    return 1;
}
