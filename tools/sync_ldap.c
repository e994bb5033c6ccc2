/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The directory side of `certstore sync`, on libldap: connect (LDAPS, or
 * StartTLS on ldap:// unless --insecure), simple bind, read the pins'
 * object and every user entry with the paged-results control, and hand it
 * all over as one snapshot. Any search that does not end in success (a
 * size or time limit, a referral, paging cut short) fails the whole read:
 * a partial directory must never look like deletions. An incremental read
 * (AD) asks for uSNChanged above the last sync's highestCommittedUSN.
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

struct sync_conn {
    const sync_config *cfg;
    LDAP *ld;
};

typedef struct {
    const sync_config *cfg;
    LDAP *ld;
    long long since; /* 0: a full read; else uSNChanged above it */
    sync_read_info *info;
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

static int search_base_ctrl(reader *r, const char *dn, const char *filter, char **attrs,
                            LDAPControl **ctrls, LDAPMessage **res, int *found)
{
    struct timeval tv = {.tv_sec = r->cfg->timeout, .tv_usec = 0};
    char what[700];
    int rc;

    *found = 0;
    snprintf(what, sizeof(what), "reading %s", dn);
    rc = ldap_search_ext_s(r->ld, dn, LDAP_SCOPE_BASE, filter, attrs, 0, ctrls, NULL, &tv, 1, res);
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

static int search_base(reader *r, const char *dn, char **attrs, LDAPMessage **res, int *found)
{
    return search_base_ctrl(r, dn, "(objectClass=*)", attrs, NULL, res, found);
}

/* One value of attr of the root DSE into out ("" when absent). */
static int root_dse_value(reader *r, const char *attr, char *out, size_t len)
{
    char *attrs[] = {(char *)attr, NULL};
    LDAPMessage *res = NULL;
    struct berval **v = NULL;
    int found = 0;

    out[0] = '\0';
    if (search_base(r, "", attrs, &res, &found) != 0)
        return -1;
    if (found)
        v = values_of(r, ldap_first_entry(r->ld, res), attr);
    if (v != NULL && v[0] != NULL && v[0]->bv_len < len) {
        memcpy(out, v[0]->bv_val, v[0]->bv_len);
        out[v[0]->bv_len] = '\0';
    }
    ldap_value_free_len(v);
    ldap_msgfree(res);
    return 0;
}

/* AD: the forest's NTAuth object, under configurationNamingContext. */
static int ad_ntauth_dn(reader *r, char *out, size_t len)
{
    char config[900];

    if (root_dse_value(r, "configurationNamingContext", config, sizeof(config)) != 0)
        return -1;
    if (config[0] == '\0')
        return fail(r, "the server's root DSE names no configurationNamingContext (not an Active "
                       "Directory? use --schema ldap or --pins-dn)");
    snprintf(out, len, NTAUTH_RDNS "%s", config);
    return 0;
}

static long long number_of(reader *r, LDAPMessage *e, const char *attr)
{
    struct berval **v = values_of(r, e, attr);
    long long n = v != NULL && v[0] != NULL ? strtoll(v[0]->bv_val, NULL, 10) : 0;

    ldap_value_free_len(v);
    return n;
}

/* "(&FILTER(uSNChanged>=N))" for an incremental read, else FILTER. */
static void changed_since(const reader *r, const char *filter, char *out, size_t len)
{
    if (r->since > 0)
        snprintf(out, len, "(&%s(uSNChanged>=%lld))", filter, r->since + 1);
    else
        snprintf(out, len, "%s", filter);
}

static int read_pins(reader *r)
{
    char dn[1024], filter[128], *attrs[] = {(char *)r->cfg->pins_attr, "uSNChanged", NULL};
    LDAPMessage *res = NULL;
    struct berval **v = NULL;
    int found = 0, rc = 0;

    if (r->cfg->pins_dn != NULL)
        snprintf(dn, sizeof(dn), "%s", r->cfg->pins_dn);
    else if (r->cfg->schema != SYNC_SCHEMA_AD)
        return 0; /* --schema ldap without --pins-dn: pins stay as they are */
    else if (ad_ntauth_dn(r, dn, sizeof(dn)) != 0)
        return -1;
    if (r->cfg->schema != SYNC_SCHEMA_AD)
        attrs[1] = NULL;
    /* Incremental: the object comes back only when it changed. */
    changed_since(r, "(objectClass=*)", filter, sizeof(filter));
    if (search_base_ctrl(r, dn, filter, attrs, NULL, &res, &found) != 0)
        return -1;
    if (!found && r->since > 0) {
        ldap_msgfree(res);
        cs_sync_snapshot_keep_pins(r->snap);
        return 0;
    }
    if (!found) {
        ldap_msgfree(res);
        return fail(r, "the pins' object %s does not exist (or the bind cannot read it)", dn);
    }
    if (r->cfg->schema == SYNC_SCHEMA_AD)
        r->info->pins_usn = number_of(r, ldap_first_entry(r->ld, res), "uSNChanged");
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
    r->info->entries++;
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

typedef int (*entry_fn)(reader *r, LDAPMessage *e);

static int handle_page(reader *r, LDAPMessage *res, entry_fn each)
{
    for (LDAPMessage *m = ldap_first_message(r->ld, res); m != NULL;
         m = ldap_next_message(r->ld, m)) {
        int type = ldap_msgtype(m);

        if (type == LDAP_RES_SEARCH_ENTRY && each(r, m) != 0)
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

/* A subtree search in pages; extra: one more control (or NULL). */
static int paged_search(reader *r, const char *base, const char *filter, char **attrs,
                        LDAPControl *extra, entry_fn each)
{
    char what[700];
    int rc = 0;
    struct berval cookie = {0, NULL};
    struct timeval tv = {.tv_sec = r->cfg->timeout, .tv_usec = 0};

    snprintf(what, sizeof(what), "searching %.600s", base);
    do {
        LDAPControl *page = NULL, *ctrls[3] = {NULL, extra, NULL};
        LDAPMessage *res = NULL;

        if ((rc = ldap_create_page_control(r->ld, PAGE_SIZE, &cookie, 0, &page)) != LDAP_SUCCESS) {
            rc = ldap_fail(r, what, rc);
            break;
        }
        ctrls[0] = page;
        rc = ldap_search_ext_s(r->ld, base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, ctrls, NULL, &tv,
                               LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS)
            rc = ldap_fail(r, what, rc);
        else if ((rc = handle_page(r, res, each)) == 0)
            rc = check_result(r, res, what, &cookie);
        ldap_msgfree(res);
    } while (rc == 0 && cookie.bv_val != NULL && cookie.bv_len > 0);
    ber_memfree(cookie.bv_val);
    return rc;
}

static void user_filter(const sync_config *cfg, char *out, size_t len)
{
    if (cfg->filter != NULL)
        snprintf(out, len, "%s", cfg->filter);
    else
        default_filter(cfg, out, len);
}

static int read_users(reader *r)
{
    const sync_config *cfg = r->cfg;
    char filter[512], changed[600], disabled[128] = "";
    char *attrs[6];
    int n = 0;

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
    user_filter(cfg, filter, sizeof(filter));
    changed_since(r, filter, changed, sizeof(changed));
    return paged_search(r, cfg->base, changed, attrs, NULL, read_user);
}

/* The account name of an entry into a gone user; counter counts it. */
static int gone_user(reader *r, LDAPMessage *e, long *counter, const char *attr)
{
    struct berval **name = values_of(r, e, attr);
    int rc = 0;

    (*counter)++;
    if (name != NULL && name[0] != NULL && name[0]->bv_len <= CS_ACCOUNT_MAX &&
        memchr(name[0]->bv_val, '\0', name[0]->bv_len) == NULL) {
        char account[CS_ACCOUNT_MAX + 1];

        memcpy(account, name[0]->bv_val, name[0]->bv_len);
        account[name[0]->bv_len] = '\0';
        if (!cs_sync_snapshot_add_gone(r->snap, account))
            rc = fail(r, "out of memory");
    }
    ldap_value_free_len(name);
    return rc;
}

static int left_user(reader *r, LDAPMessage *e)
{
    return gone_user(r, e, &r->info->left, r->cfg->account_attr);
}

static int deleted_user(reader *r, LDAPMessage *e)
{
    return gone_user(r, e, &r->info->deleted, "sAMAccountName");
}

/* Incremental AD: users changed so that the filter no longer matches them. */
static int read_left(reader *r)
{
    char filter[512], left[700], *attrs[] = {(char *)r->cfg->account_attr, NULL};

    user_filter(r->cfg, filter, sizeof(filter));
    snprintf(left, sizeof(left), "(&(objectClass=user)(uSNChanged>=%lld)(!%s))", r->since + 1,
             filter);
    return paged_search(r, r->cfg->base, left, attrs, NULL, left_user);
}

/* A failure that means the connection is gone (not a right the bind lacks). */
static int connection_lost(int rc)
{
    return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR ||
           rc == LDAP_TIMELIMIT_EXCEEDED || rc == LDAP_NO_MEMORY;
}

/*
 * Incremental AD: users deleted since, from the domain's Deleted Objects
 * container (show-deleted control), where the bind may read it and the
 * account is sAMAccountName (the one name a tombstone keeps). Otherwise
 * deletions wait for the next full pass.
 */
static int read_deleted(reader *r)
{
    char dnc[900], dn[1000], filter[128], *attrs[] = {"sAMAccountName", NULL};
    LDAPControl *show = NULL, *ctrls[2] = {NULL, NULL};
    LDAPMessage *res = NULL;
    int found = 0, rc;

    if (strcasecmp(r->cfg->account_attr, "sAMAccountName") != 0)
        return 0;
    if (root_dse_value(r, "defaultNamingContext", dnc, sizeof(dnc)) != 0)
        return -1;
    if (dnc[0] == '\0')
        return 0;
    snprintf(dn, sizeof(dn), "CN=Deleted Objects,%s", dnc);
    if (ldap_control_create(LDAP_CONTROL_X_SHOW_DELETED, 1, NULL, 0, &show) != LDAP_SUCCESS)
        return fail(r, "out of memory");
    ctrls[0] = show;
    rc = search_base_ctrl(r, dn, "(objectClass=*)", attrs, ctrls, &res, &found);
    ldap_msgfree(res);
    if (rc != 0) { /* not readable by this bind: the full pass will see deletions */
        int err = LDAP_SUCCESS;

        ldap_get_option(r->ld, LDAP_OPT_RESULT_CODE, &err);
        r->err[0] = '\0';
        ldap_control_free(show);
        return connection_lost(err) ? fail(r, "reading %s: %s", dn, ldap_err2string(err)) : 0;
    }
    if (found) {
        snprintf(filter, sizeof(filter), "(&(objectClass=user)(isDeleted=TRUE)(uSNChanged>=%lld))",
                 r->since + 1);
        rc = paged_search(r, dn, filter, attrs, show, deleted_user);
        r->info->deleted_objects = rc == 0;
    }
    ldap_control_free(show);
    return rc;
}

int sync_ldap_open(const sync_config *cfg, sync_conn **out, char *err, size_t errlen)
{
    reader r = {.cfg = cfg, .err = err, .errlen = errlen};
    sync_conn *c;

    err[0] = '\0';
    *out = NULL;
    if (connect_and_bind(&r) != 0 || (c = calloc(1, sizeof(*c))) == NULL) {
        if (r.ld != NULL)
            ldap_unbind_ext_s(r.ld, NULL, NULL);
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->cfg = cfg;
    c->ld = r.ld;
    *out = c;
    return 0;
}

void sync_ldap_close(sync_conn *c)
{
    if (c == NULL)
        return;
    if (c->ld != NULL)
        ldap_unbind_ext_s(c->ld, NULL, NULL);
    free(c);
}

int sync_ldap_ad_usn(sync_conn *c, long long *usn, char *err, size_t errlen)
{
    reader r = {.cfg = c->cfg, .ld = c->ld, .err = err, .errlen = errlen};
    char text[32];

    err[0] = '\0';
    if (root_dse_value(&r, "highestCommittedUSN", text, sizeof(text)) != 0)
        return -1;
    if ((*usn = strtoll(text, NULL, 10)) <= 0)
        return fail(&r, "the server's root DSE has no highestCommittedUSN (not an Active "
                        "Directory? use --schema ldap)");
    return 0;
}

int sync_ldap_ad_position(sync_conn *c, cs_sync_mark *pos, char *err, size_t errlen)
{
    reader r = {.cfg = c->cfg, .ld = c->ld, .err = err, .errlen = errlen};
    char *attrs[] = {"invocationId", NULL};
    LDAPMessage *res = NULL;
    struct berval **v = NULL;
    long long usn = 0;
    int found = 0;

    memset(pos, 0, sizeof(*pos));
    err[0] = '\0';
    /* The USN first: what changes while we read comes again next time. */
    if (sync_ldap_ad_usn(c, &usn, err, errlen) != 0 ||
        root_dse_value(&r, "dsServiceName", pos->server, sizeof(pos->server)) != 0)
        return -1;
    pos->usn = usn;
    if (pos->server[0] == '\0')
        return fail(&r, "the server's root DSE has no dsServiceName (not an Active Directory?)");
    if (search_base(&r, pos->server, attrs, &res, &found) != 0)
        return -1;
    if (found)
        v = values_of(&r, ldap_first_entry(r.ld, res), "invocationId");
    if (v == NULL || v[0] == NULL || v[0]->bv_len == 0 ||
        v[0]->bv_len * 2 >= sizeof(pos->invocation_id))
        fail(&r, "%s: no invocationId", pos->server);
    else
        for (size_t i = 0; i < v[0]->bv_len; i++)
            snprintf(pos->invocation_id + 2 * i, 3, "%02x", (unsigned char)v[0]->bv_val[i]);
    ldap_value_free_len(v);
    ldap_msgfree(res);
    return err[0] != '\0' ? -1 : 0;
}

int sync_ldap_read(sync_conn *c, long long since, cs_sync_snapshot *snap, sync_read_info *info,
                   sync_note_fn note, void *arg, char *err, size_t errlen)
{
    reader r = {.cfg = c->cfg,
                .ld = c->ld,
                .since = c->cfg->schema == SYNC_SCHEMA_AD ? since : 0,
                .info = info,
                .snap = snap,
                .note = note,
                .arg = arg,
                .err = err,
                .errlen = errlen};
    int rc;

    err[0] = '\0';
    rc = read_pins(&r);
    if (rc == 0)
        rc = read_users(&r);
    if (rc == 0 && r.since > 0)
        rc = read_left(&r);
    if (rc == 0 && r.since > 0)
        rc = read_deleted(&r);
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "reading the directory failed");
    return rc;
}
