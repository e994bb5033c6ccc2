/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The directory side of `certstore sync`, on libldap: connect (LDAPS, or
 * StartTLS on ldap:// unless --insecure), simple bind, read the pins'
 * object and every user entry with the paged-results control, and hand it
 * all over as one snapshot. Any search that does not end in success (a
 * size or time limit, a referral, paging cut short) fails the whole read:
 * a partial directory must never look like deletions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ldap.h>

#include "sync_ldap.h"

#define PAGE_SIZE 500
#define NTAUTH_RDNS "CN=NTAuthCertificates,CN=Public Key Services,CN=Services,"
#define UAC_ACCOUNTDISABLE 0x2

typedef struct {
    const sync_config *cfg;
    LDAP *ld;
    cs_sync_snapshot *snap;
    sync_note_fn note;
    void *arg;
    char *err;
    size_t errlen;
    long entries;
    int ranged; /* an attribute came back in ranges (AD's ";range="): partial */
} reader;

__attribute__((format(printf, 2, 3))) static int fail(reader *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The server's own words where it gave any. */
static int ldap_fail(reader *r, const char *what, int rc)
{
    char *diag = NULL;

    ldap_get_option(r->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    fail(r, "%s: %s%s%s", what, ldap_err2string(rc), diag != NULL && *diag ? " (" : "",
         diag != NULL && *diag ? diag : "");
    if (diag != NULL && *diag)
        strncat(r->err, ")", r->errlen - strlen(r->err) - 1);
    ldap_memfree(diag);
    return -1;
}

/* "userCertificate;binary" and "userCertificate" name one attribute. */
static int same_attribute(const char *a, const char *b)
{
    size_t la = strcspn(a, ";"), lb = strcspn(b, ";");

    return la == lb && strncasecmp(a, b, la) == 0;
}

/* The values of attr in an entry (any options), or NULL; free with ldap_value_free_len. */
static struct berval **values_of(reader *r, LDAPMessage *e, const char *attr)
{
    BerElement *ber = NULL;
    struct berval **vals = NULL;

    if (attr == NULL)
        return NULL;
    for (char *a = ldap_first_attribute(r->ld, e, &ber); a != NULL;
         a = ldap_next_attribute(r->ld, e, ber)) {
        if (vals == NULL && same_attribute(a, attr)) {
            if (strcasestr(a, ";range=") != NULL)
                r->ranged = 1;
            vals = ldap_get_values_len(r->ld, e, a);
        }
        ldap_memfree(a);
    }
    ber_free(ber, 0);
    return vals;
}

static int connect_and_bind(reader *r)
{
    const sync_config *cfg = r->cfg;
    int version = LDAP_VERSION3, rc, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;
    struct timeval tv = {.tv_sec = cfg->timeout, .tv_usec = 0};
    struct berval cred = {0, NULL};

    if ((rc = ldap_initialize(&r->ld, cfg->uri)) != LDAP_SUCCESS)
        return fail(r, "%s: %s", cfg->uri, ldap_err2string(rc));
    ldap_set_option(r->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(r->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(r->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(r->ld, LDAP_OPT_TIMEOUT, &tv);
    if (cfg->ca_file != NULL &&
        (ldap_set_option(r->ld, LDAP_OPT_X_TLS_CACERTFILE, cfg->ca_file) != LDAP_OPT_SUCCESS ||
         ldap_set_option(r->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
         ldap_set_option(r->ld, LDAP_OPT_X_TLS_NEWCTX, &zero) != LDAP_OPT_SUCCESS))
        return fail(r, "%s: cannot use --ca %s", cfg->uri, cfg->ca_file);
    if (strncasecmp(cfg->uri, "ldap://", 7) == 0 && !cfg->insecure &&
        (rc = ldap_start_tls_s(r->ld, NULL, NULL)) != LDAP_SUCCESS)
        return ldap_fail(r, "StartTLS", rc);
    if (cfg->bind_dn == NULL)
        return 0;
    cred.bv_val = (char *)cfg->password;
    cred.bv_len = cfg->password != NULL ? strlen(cfg->password) : 0;
    if (cred.bv_len == 0)
        return fail(r, "bind as %s: empty password", cfg->bind_dn);
    rc = ldap_sasl_bind_s(r->ld, cfg->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        char what[600];

        snprintf(what, sizeof(what), "bind as %s", cfg->bind_dn);
        return ldap_fail(r, what, rc);
    }
    return 0;
}

/* After a search: 0 when the server said success and paging (if any) goes on in *cookie. */
static int check_result(reader *r, LDAPMessage *res, const char *what, struct berval *cookie)
{
    int err = LDAP_OTHER, rc;
    char *msg = NULL, **refs = NULL;
    LDAPControl **ctrls = NULL;

    rc = ldap_parse_result(r->ld, res, &err, NULL, &msg, &refs, &ctrls, 0);
    if (rc == LDAP_SUCCESS && err == LDAP_SUCCESS && refs == NULL && cookie != NULL) {
        LDAPControl *page = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL);
        ber_int_t estimate = 0;

        ber_memfree(cookie->bv_val);
        cookie->bv_val = NULL;
        cookie->bv_len = 0;
        if (page != NULL &&
            ldap_parse_pageresponse_control(r->ld, page, &estimate, cookie) != LDAP_SUCCESS)
            err = LDAP_PROTOCOL_ERROR;
    }
    if (rc != LDAP_SUCCESS)
        fail(r, "%s: %s", what, ldap_err2string(rc));
    else if (err == LDAP_SUCCESS && refs != NULL)
        fail(r, "%s: the server referred elsewhere (%s); referrals are not followed", what,
             refs[0]);
    else if (err != LDAP_SUCCESS)
        fail(r, "%s: %s%s%s", what, ldap_err2string(err), msg != NULL && *msg ? ": " : "",
             msg != NULL ? msg : "");
    ldap_memfree(msg);
    ldap_memvfree((void **)refs);
    ldap_controls_free(ctrls);
    return rc == LDAP_SUCCESS && err == LDAP_SUCCESS && refs == NULL ? 0 : -1;
}

static int search_base(reader *r, const char *dn, char **attrs, LDAPMessage **res, int *found)
{
    struct timeval tv = {.tv_sec = r->cfg->timeout, .tv_usec = 0};
    char what[700];
    int rc;

    *found = 0;
    snprintf(what, sizeof(what), "reading %s", dn);
    rc = ldap_search_ext_s(r->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, &tv,
                           1, res);
    if (rc == LDAP_NO_SUCH_OBJECT) {
        ldap_msgfree(*res);
        *res = NULL;
        return 0;
    }
    if (rc != LDAP_SUCCESS) {
        ldap_msgfree(*res);
        *res = NULL;
        return ldap_fail(r, what, rc);
    }
    if (check_result(r, *res, what, NULL) != 0)
        return -1;
    *found = ldap_first_entry(r->ld, *res) != NULL;
    return 0;
}

/* AD: the forest's NTAuth object, under configurationNamingContext. */
static int ad_ntauth_dn(reader *r, char *out, size_t len)
{
    char *attrs[] = {"configurationNamingContext", NULL};
    LDAPMessage *res = NULL;
    struct berval **v = NULL;
    int found = 0;

    if (search_base(r, "", attrs, &res, &found) != 0)
        return -1;
    if (found)
        v = values_of(r, ldap_first_entry(r->ld, res), attrs[0]);
    if (v == NULL || v[0] == NULL || v[0]->bv_len == 0 || v[0]->bv_len >= len - strlen(NTAUTH_RDNS))
        fail(r, "the server's root DSE names no configurationNamingContext (not an Active "
                "Directory? use --schema ldap or --pins-dn)");
    else
        snprintf(out, len, NTAUTH_RDNS "%.*s", (int)v[0]->bv_len, v[0]->bv_val);
    ldap_value_free_len(v);
    ldap_msgfree(res);
    return r->err[0] != '\0' ? -1 : 0;
}

static int read_pins(reader *r)
{
    char dn[1024], *attrs[] = {(char *)r->cfg->pins_attr, NULL};
    LDAPMessage *res = NULL;
    struct berval **v = NULL;
    int found = 0, rc = 0;

    if (r->cfg->pins_dn != NULL)
        snprintf(dn, sizeof(dn), "%s", r->cfg->pins_dn);
    else if (r->cfg->schema != SYNC_SCHEMA_AD)
        return 0; /* --schema ldap without --pins-dn: pins stay as they are */
    else if (ad_ntauth_dn(r, dn, sizeof(dn)) != 0)
        return -1;
    if (search_base(r, dn, attrs, &res, &found) != 0)
        return -1;
    if (!found) {
        ldap_msgfree(res);
        return fail(r, "the pins' object %s does not exist (or the bind cannot read it)", dn);
    }
    v = values_of(r, ldap_first_entry(r->ld, res), r->cfg->pins_attr);
    if (r->ranged)
        rc =
            fail(r, "%s: the server sent only part of %s (range retrieval)", dn, r->cfg->pins_attr);
    for (size_t i = 0; rc == 0 && v != NULL && v[i] != NULL; i++)
        if (!cs_sync_snapshot_add_pin(r->snap, (const unsigned char *)v[i]->bv_val, v[i]->bv_len))
            rc = fail(r, "out of memory");
    ldap_value_free_len(v);
    ldap_msgfree(res);
    return rc;
}

static int is_disabled(reader *r, LDAPMessage *e)
{
    const char *spec = r->cfg->disabled_attr, *eq;
    struct berval **v;
    int disabled = 0;

    if (r->cfg->schema == SYNC_SCHEMA_AD) {
        v = values_of(r, e, "userAccountControl");
        if (v == NULL || v[0] == NULL) { /* unreadable: disabled, never enabled by default */
            if (r->note != NULL)
                r->note(r->entries, "no userAccountControl: taken as disabled", r->arg);
            ldap_value_free_len(v);
            return 1;
        }
        disabled = (strtoll(v[0]->bv_val, NULL, 10) & UAC_ACCOUNTDISABLE) != 0;
        ldap_value_free_len(v);
        return disabled;
    }
    if (spec == NULL)
        return 0;
    eq = strchr(spec, '=');
    {
        char attr[128];
        size_t n = eq != NULL ? (size_t)(eq - spec) : strlen(spec);

        snprintf(attr, sizeof(attr), "%.*s", (int)(n < sizeof(attr) ? n : sizeof(attr) - 1), spec);
        v = values_of(r, e, attr);
    }
    for (size_t i = 0; v != NULL && v[i] != NULL && !disabled; i++)
        disabled = eq == NULL || (strlen(eq + 1) == v[i]->bv_len &&
                                  strncasecmp(eq + 1, v[i]->bv_val, v[i]->bv_len) == 0);
    ldap_value_free_len(v);
    return disabled;
}

static int add_values(reader *r, LDAPMessage *e, const char *attr, int certs)
{
    struct berval **v = values_of(r, e, attr);
    int rc = 0;

    for (size_t i = 0; rc == 0 && v != NULL && v[i] != NULL; i++) {
        int ok = certs ? cs_sync_snapshot_add_cert(r->snap, (const unsigned char *)v[i]->bv_val,
                                                   v[i]->bv_len)
                       : cs_sync_snapshot_add_value(r->snap, v[i]->bv_val, v[i]->bv_len);

        if (!ok)
            rc = fail(r, "out of memory");
    }
    ldap_value_free_len(v);
    return rc;
}

static int read_user(reader *r, LDAPMessage *e)
{
    char *dn = ldap_get_dn(r->ld, e), account[CS_ACCOUNT_MAX + 1];
    struct berval **name = values_of(r, e, r->cfg->account_attr);
    int rc = 0;

    r->entries++;
    if (name == NULL || name[0] == NULL) {
        if (r->note != NULL) {
            char why[600];

            snprintf(why, sizeof(why), "%s has no %s: skipped", dn != NULL ? dn : "?",
                     r->cfg->account_attr);
            r->note(r->entries, why, r->arg);
        }
    } else if (name[1] != NULL || name[0]->bv_len > CS_ACCOUNT_MAX ||
               memchr(name[0]->bv_val, '\0', name[0]->bv_len) != NULL) {
        rc = fail(r, "%s: %s must be one account name of at most %d bytes", dn != NULL ? dn : "?",
                  r->cfg->account_attr, CS_ACCOUNT_MAX);
    } else {
        memcpy(account, name[0]->bv_val, name[0]->bv_len);
        account[name[0]->bv_len] = '\0';
        if (!cs_sync_snapshot_add_user(r->snap, account, is_disabled(r, e)))
            rc = fail(r, "out of memory");
        if (rc == 0)
            rc = add_values(r, e, r->cfg->mapping_attr, 0);
        if (rc == 0)
            rc = add_values(r, e, r->cfg->cert_attr, 1);
        if (rc == 0 && r->ranged)
            rc = fail(r,
                      "%s: the server sent only part of a value list (range retrieval); "
                      "nothing is synced from a partial directory",
                      dn != NULL ? dn : "?");
    }
    ldap_value_free_len(name);
    ldap_memfree(dn);
    return rc;
}

/* Attribute name without options, for filters. */
static void base_name(const char *attr, char *out, size_t len)
{
    snprintf(out, len, "%.*s", (int)strcspn(attr, ";"), attr);
}

static void default_filter(const sync_config *cfg, char *out, size_t len)
{
    char map[128] = "", cert[128] = "";

    if (cfg->mapping_attr != NULL)
        base_name(cfg->mapping_attr, map, sizeof(map));
    if (cfg->cert_attr != NULL)
        base_name(cfg->cert_attr, cert, sizeof(cert));
    if (cfg->schema == SYNC_SCHEMA_AD)
        snprintf(out, len, "(&(objectClass=user)(|(%s=*)%s%s%s))", map[0] ? map : "cn",
                 cert[0] ? "(" : "", cert, cert[0] ? "=*)" : "");
    else if (map[0] && cert[0])
        snprintf(out, len, "(|(%s=*)(%s=*))", map, cert);
    else
        snprintf(out, len, "(%s=*)", map[0] ? map : cert);
}

static int handle_page(reader *r, LDAPMessage *res)
{
    for (LDAPMessage *m = ldap_first_message(r->ld, res); m != NULL;
         m = ldap_next_message(r->ld, m)) {
        int type = ldap_msgtype(m);

        if (type == LDAP_RES_SEARCH_ENTRY && read_user(r, m) != 0)
            return -1;
        /* AD answers a domain search with references to its other partitions. */
        if (type == LDAP_RES_SEARCH_REFERENCE && r->cfg->schema != SYNC_SCHEMA_AD)
            return fail(r,
                        "searching %s: the server referred elsewhere; referrals are not "
                        "followed (search below the referral's base instead)",
                        r->cfg->base);
    }
    return 0;
}

static int read_users(reader *r)
{
    const sync_config *cfg = r->cfg;
    char filter[512], what[700], disabled[128] = "";
    char *attrs[6];
    int n = 0, rc = 0;
    struct berval cookie = {0, NULL};
    struct timeval tv = {.tv_sec = cfg->timeout, .tv_usec = 0};

    attrs[n++] = (char *)cfg->account_attr;
    if (cfg->mapping_attr != NULL)
        attrs[n++] = (char *)cfg->mapping_attr;
    if (cfg->cert_attr != NULL)
        attrs[n++] = (char *)cfg->cert_attr;
    if (cfg->schema == SYNC_SCHEMA_AD) {
        attrs[n++] = "userAccountControl";
    } else if (cfg->disabled_attr != NULL) {
        snprintf(disabled, sizeof(disabled), "%.*s", (int)strcspn(cfg->disabled_attr, "="),
                 cfg->disabled_attr);
        attrs[n++] = disabled;
    }
    attrs[n] = NULL;
    if (cfg->filter != NULL)
        snprintf(filter, sizeof(filter), "%s", cfg->filter);
    else
        default_filter(cfg, filter, sizeof(filter));
    snprintf(what, sizeof(what), "searching %s", cfg->base);
    do {
        LDAPControl *page = NULL, *ctrls[2] = {NULL, NULL};
        LDAPMessage *res = NULL;

        if ((rc = ldap_create_page_control(r->ld, PAGE_SIZE, &cookie, 0, &page)) != LDAP_SUCCESS) {
            rc = ldap_fail(r, what, rc);
            break;
        }
        ctrls[0] = page;
        rc = ldap_search_ext_s(r->ld, cfg->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, ctrls, NULL,
                               &tv, LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS)
            rc = ldap_fail(r, what, rc);
        else if ((rc = handle_page(r, res)) == 0)
            rc = check_result(r, res, what, &cookie);
        ldap_msgfree(res);
    } while (rc == 0 && cookie.bv_val != NULL && cookie.bv_len > 0);
    ber_memfree(cookie.bv_val);
    return rc;
}

int sync_ldap_read(const sync_config *cfg, cs_sync_snapshot *snap, sync_note_fn note, void *arg,
                   char *err, size_t errlen)
{
    reader r = {.cfg = cfg, .snap = snap, .note = note, .arg = arg, .err = err, .errlen = errlen};
    int rc;

    err[0] = '\0';
    rc = connect_and_bind(&r);
    if (rc == 0)
        rc = read_pins(&r);
    if (rc == 0)
        rc = read_users(&r);
    if (r.ld != NULL)
        ldap_unbind_ext_s(r.ld, NULL, NULL);
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "reading the directory failed");
    return rc;
}
