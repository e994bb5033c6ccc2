/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore doctor: load an openssl.cnf the way a server does and say, one
 * line per fact, whether certstore would enforce in a server started with
 * it. The first thing to run when a server seems not to enforce.
 *
 * Everything is learnt from a fresh library context loaded from that file,
 * never from the CLI's own view: the database is the one the provider
 * reports, the mode is the one the provider parsed, and the hook is proven
 * by a real handshake in that context whose unpinned client must be
 * refused with X509_V_ERR_APPLICATION_VERIFICATION.
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "certstore.h"
#include "cli.h"

/* The users common servers drop to; they must read the store, never write it. */
static const char *const server_users[] = {"www-data", "haproxy", "stunnel4", "nobody"};

/* Round trips allowed for an in-memory handshake; a TLS 1.3 one needs 3. */
#define HANDSHAKE_ROUNDS 32

typedef enum { LEVEL_OK = 0, LEVEL_WARN, LEVEL_FAIL, LEVEL_SKIP } level;
static const char *const level_text[] = {"OK", "WARN", "FAIL", "SKIP"};
static const char *const level_json[] = {"ok", "warn", "fail", "skip"};

typedef struct {
    const char *config, *chain, *key, *ca;
    const char *server; /* --server NAME: a server's start-up check (ExecStartPre=) */
    int require;        /* --require or $CERTSTORE_REQUIRE: no skipping */
    int json;
} doctor_options;

/* What the provider in the loaded context says about its policy (its strings). */
typedef struct {
    OSSL_PROVIDER *prov; /* not owned; NULL when certstore is not active */
    const char *version, *db, *mode, *status, *status_reason;
} provider_facts;

typedef struct {
    int json;
    int failed; /* a FAIL was reported: exit 1 */
    cli_json_list list;
    OSSL_LIB_CTX *libctx;
    provider_facts facts;
    cs_db *db; /* our own read-only handle, to explain decisions; may be NULL */
} doctor;

__attribute__((format(printf, 4, 5))) static void report(doctor *d, level lv, const char *check,
                                                         const char *fmt, ...)
{
    char message[1024];
    va_list args;

    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    if (lv == LEVEL_FAIL)
        d->failed = 1;
    if (d->json) {
        cli_json_list_row(&d->list);
        printf("{\"level\":\"%s\",\"check\":", level_json[lv]);
        cli_put_json_string(stdout, check);
        fputs(",\"message\":", stdout);
        cli_put_json_string(stdout, message);
        fputs("}", stdout);
        return;
    }
    printf("%-4s %s: ", level_text[lv], check);
    cli_put_text(stdout, message); /* paths and error texts: never forge lines */
    putchar('\n');
}

/* The last (most specific) queued OpenSSL error, or `fallback`; empties the queue. */
static void take_openssl_error(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        snprintf(buf, len, "%s", fallback);
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

/* ---- the configuration and the providers --------------------------------- */

/* --config, else $OPENSSL_CONF, else OpenSSL's own default file. */
static const char *config_path(const doctor_options *o, char *buf, size_t len, const char **source)
{
    const char *env = getenv("OPENSSL_CONF");

    if (o->config != NULL) {
        *source = "--config";
        return o->config;
    }
    if (env != NULL && *env != '\0') {
        *source = "$OPENSSL_CONF";
        return env;
    }
    *source = "OpenSSL's default";
    snprintf(buf, len, "%s/openssl.cnf", OPENSSL_info(OPENSSL_INFO_CONFIG_DIR));
    return buf;
}

/* Returns the path it read (in buf or o), for later checks. */
static const char *check_config(doctor *d, const doctor_options *o, char *buf, size_t len)
{
    char err[256];
    const char *source;
    const char *path = config_path(o, buf, len, &source);
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        report(d, LEVEL_FAIL, "config", "%s (%s): cannot read: %s", path, source, strerror(errno));
        return path;
    }
    fclose(f);
    /*
     * The provider checks its section's keys in the file $OPENSSL_CONF
     * names, as a server started with it would have it set.
     */
    if (setenv("OPENSSL_CONF", path, 1) != 0) {
        report(d, LEVEL_FAIL, "config", "%s (%s): %s", path, source, strerror(errno));
        return path;
    }
    /* What a server does at startup: the whole file, every module in it. */
    if (!OSSL_LIB_CTX_load_config(d->libctx, path)) {
        take_openssl_error(err, sizeof(err), "unknown error");
        report(d, LEVEL_FAIL, "config", "%s (%s): OpenSSL refused it: %s", path, source, err);
        return path;
    }
    report(d, LEVEL_OK, "config", "%s (%s) read", path, source);
    return path;
}

static int find_certstore(OSSL_PROVIDER *prov, void *arg)
{
    const char *name = NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_NAME, (char **)&name, 0),
                           OSSL_PARAM_construct_end()};

    /* Matched by what the module calls itself: the config may name it anything. */
    if (OSSL_PROVIDER_get_params(prov, params) && name != NULL &&
        strcmp(name, CERTSTORE_PROVIDER_NAME) == 0) {
        *(OSSL_PROVIDER **)arg = prov;
        return 0;
    }
    return 1;
}

static int read_provider_facts(provider_facts *f)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_VERSION, (char **)&f->version, 0),
        OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_DB, (char **)&f->db, 0),
        OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_MODE, (char **)&f->mode, 0),
        OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_STATUS, (char **)&f->status, 0),
        OSSL_PARAM_construct_utf8_ptr(CERTSTORE_PARAM_STATUS_REASON, (char **)&f->status_reason, 0),
        OSSL_PARAM_construct_end()};

    return OSSL_PROVIDER_get_params(f->prov, params) && f->version != NULL && f->db != NULL &&
           f->mode != NULL && f->status != NULL && f->status_reason != NULL;
}

/*
 * OpenSSL 3.0 carries on silently when a configured provider fails to load,
 * so look in the file for the section meant to load certstore: one named
 * certstore, or whose module is certstore.so.
 */
static void explain_not_loaded(doctor *d, const char *config)
{
    CONF *conf = NCONF_new_ex(d->libctx, NULL);
    const char *init, *providers, *module = NULL, *name = NULL;
    STACK_OF(CONF_VALUE) *entries = NULL;

    if (conf != NULL && NCONF_load(conf, config, NULL) > 0 &&
        (init = NCONF_get_string(conf, NULL, "openssl_conf")) != NULL &&
        (providers = NCONF_get_string(conf, init, "providers")) != NULL)
        entries = NCONF_get_section(conf, providers);
    for (int i = 0; name == NULL && i < sk_CONF_VALUE_num(entries); i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(entries, i);
        const char *m = NCONF_get_string(conf, v->value, "module");

        if (strcmp(v->name, CERTSTORE_PROVIDER_NAME) == 0 ||
            (m != NULL && strstr(m, CERTSTORE_PROVIDER_NAME)))
            name = v->name, module = m;
    }
    ERR_clear_error();
    if (name == NULL)
        report(d, LEVEL_FAIL, "provider",
               "certstore not loaded: the config has no providers section naming a certstore "
               "section (with activate = 1)");
    else if (module != NULL && access(module, R_OK) != 0)
        report(d, LEVEL_FAIL, "provider", "certstore not loaded: provider \"%s\": module %s: %s",
               name, module, strerror(errno));
    else
        report(d, LEVEL_FAIL, "provider",
               "certstore not loaded: provider \"%s\" is configured but not active (activate "
               "= 1 missing, or the module%s%s could not be loaded: see OPENSSL_MODULES)",
               name, module != NULL ? " " : "", module != NULL ? module : "");
    NCONF_free(conf);
}

static void check_providers(doctor *d, const char *config)
{
    provider_facts *f = &d->facts;

    OSSL_PROVIDER_do_all(d->libctx, find_certstore, &f->prov);
    if (f->prov == NULL || !OSSL_PROVIDER_available(d->libctx, OSSL_PROVIDER_get0_name(f->prov))) {
        f->prov = NULL;
        explain_not_loaded(d, config);
    } else if (!read_provider_facts(f)) {
        f->prov = NULL;
        ERR_clear_error();
        report(d, LEVEL_FAIL, "provider",
               "certstore loaded as \"%s\" but does not report its policy (module too old?)",
               OSSL_PROVIDER_get0_name(d->facts.prov));
    } else {
        report(d, LEVEL_OK, "provider", "certstore %s loaded and active (as \"%s\")", f->version,
               OSSL_PROVIDER_get0_name(f->prov));
    }
    if (OSSL_PROVIDER_available(d->libctx, "default"))
        report(d, LEVEL_OK, "default-provider", "active");
    else
        report(d, LEVEL_WARN, "default-provider",
               "not active: unless another provider supplies the algorithms, servers using this "
               "config cannot do TLS (activate it next to certstore)");
    ERR_clear_error();
}

static void check_mode(doctor *d)
{
    const provider_facts *f = &d->facts;

    if (f->prov == NULL)
        return;
    if (strcmp(f->mode, "off") == 0)
        report(d, LEVEL_FAIL, "mode", "off: not enforcing (no hook is installed)");
    else if (strcmp(f->status, "ok") != 0)
        report(d, LEVEL_FAIL, "mode", "deny-all: every client certificate is rejected: %s",
               f->status_reason);
    else if (strcmp(f->mode, "audit") == 0)
        report(d, LEVEL_FAIL, "mode",
               "audit: not enforcing (rejections are only logged as would-reject)");
    else
        report(d, LEVEL_OK, "mode", "%s", f->mode);
}

/* ---- the database -------------------------------------------------------- */

/* A store that `certstore sync` keeps: how old its directory state is. */
#define SYNC_STALE_SECONDS (24 * 3600)
static void check_last_sync(doctor *d)
{
    int64_t last = 0, age;

    if (cs_sync_last_success(d->db, NULL, &last) != CS_OK)
        return; /* never synced (or an older schema): nothing to say */
    age = (int64_t)time(NULL) - last;
    report(d, age > SYNC_STALE_SECONDS ? LEVEL_WARN : LEVEL_OK, "sync",
           "last successful directory sync %lld minutes ago%s", (long long)(age / 60),
           age > SYNC_STALE_SECONDS ? ": the store may lag the directory (is the timer running?)"
                                    : "");
}

static void check_contents(doctor *d)
{
    cs_stats s;

    if (cs_stats_get(d->db, &s) != CS_OK) {
        report(d, LEVEL_FAIL, "store", "store-unavailable: cannot count: %s", cs_db_errmsg(d->db));
        return;
    }
    report(d, LEVEL_OK, "store",
           "%lld pins (%lld enabled), %lld accounts (%lld enabled), %lld mappings "
           "(%lld enabled), generation %lld",
           (long long)s.pins, (long long)s.pins_enabled, (long long)s.accounts,
           (long long)s.accounts_enabled, (long long)s.mappings, (long long)s.mappings_enabled,
           (long long)s.generation);
    if (s.unbound > 0)
        report(d, LEVEL_WARN, "store",
               "%lld ski/issuer-serial mappings are unbound: they never match; re-add them with "
               "--pin (certstore map ls flags them)",
               (long long)s.unbound);
    if (s.pins_enabled == 0)
        report(d, LEVEL_WARN, "store", "no enabled pin: every client certificate is rejected");
    else if (s.mappings_enabled == 0)
        report(d, LEVEL_WARN, "store", "no enabled mapping: every client certificate is rejected");
    check_last_sync(d);
}

static void check_database(doctor *d)
{
    const char *path = d->facts.db;
    cs_db *db = NULL;
    int version = 0;

    if (d->facts.prov == NULL)
        return;
    if (*path == '\0') {
        report(d, LEVEL_FAIL, "database", "no db configured (db = /absolute/path is required)");
        return;
    }
    /* As a server opens it: read-only, never creating or migrating. */
    if (cs_db_open(&db, path, CS_OPEN_READONLY) != CS_OK) {
        const char *why = db != NULL ? cs_db_errmsg(db) : "out of memory";

        /* The store's messages usually start with the path already. */
        report(d, LEVEL_FAIL, "database", "store-unavailable: %s%s%s",
               strncmp(why, path, strlen(path)) == 0 ? "" : path,
               strncmp(why, path, strlen(path)) == 0 ? "" : ": ", why);
        cs_db_close(db);
        return;
    }
    d->db = db;
    if (cs_db_schema_version(db, &version) != CS_OK) {
        report(d, LEVEL_FAIL, "database", "store-unavailable: %s: %s", path, cs_db_errmsg(db));
        return;
    }
    report(d, LEVEL_OK, "database", "%s opens read-only, schema version %d", path, version);
    check_contents(d);
}

/* Each pin whose CRL an operator must renew (stale, missing, unknown) fails. */
static int report_revocation(const cs_crl_info *c, void *arg)
{
    doctor *d = arg;
    char when[32] = "-";

    if (c->next_update != CS_TIME_NONE)
        cs_time_format(c->next_update, when);
    if (cs_revocation_state_alarming(c->state))
        report(d, LEVEL_FAIL, "revocation",
               "pin %.16s: revocation %s (policy %s, nextUpdate %s): renew its CRL "
               "(certstore crl add)",
               c->pin_fp, cs_revocation_state_name(c->state), cs_revocation_policy_name(c->policy),
               when);
    else if (c->state == CS_REVSTATE_GRACE)
        report(d, LEVEL_WARN, "revocation",
               "pin %.16s: CRL past its nextUpdate %s, within the grace", c->pin_fp, when);
    return 0;
}

/* The pins whose CRL is current: a stale OCSP answer under one of them is not the evidence. */
typedef struct {
    doctor *d;
    char (*current)[CS_FP_HEX_LEN + 1];
    size_t n;
} ocsp_scan;

static int note_current_crl(const cs_crl_info *c, void *arg)
{
    ocsp_scan *scan = arg;
    void *grown;

    if (c->state != CS_REVSTATE_GOOD)
        return 0;
    if ((grown = realloc(scan->current, (scan->n + 1) * sizeof(*scan->current))) == NULL)
        return 1;
    scan->current = grown;
    memcpy(scan->current[scan->n++], c->pin_fp, CS_FP_HEX_LEN + 1);
    return 0;
}

/* A good OCSP answer past its nextUpdate vouches for nothing: refresh it. */
static int report_stale_answer(const cs_ocsp_info *o, void *arg)
{
    ocsp_scan *scan = arg;
    char when[32] = "-";
    int covered = 0;

    if (o->status != CS_OCSP_GOOD || o->current)
        return 0;
    for (size_t i = 0; i < scan->n && !covered; i++)
        covered = strcmp(scan->current[i], o->pin_fp) == 0;
    if (o->next_update != CS_TIME_NONE)
        cs_time_format(o->next_update, when);
    report(scan->d, covered ? LEVEL_WARN : LEVEL_FAIL, "revocation",
           "pin %.16s serial %s: OCSP answer stale since %s%s (certstore ocsp refresh)", o->pin_fp,
           o->serial, when, covered ? ", the pin's CRL is current" : "");
    return 0;
}

static void check_revocation(doctor *d)
{
    ocsp_scan scan = {d, NULL, 0};
    int64_t now = (int64_t)time(NULL);

    if (d->db == NULL)
        return;
    if (cs_crl_foreach(d->db, now, report_revocation, d) != CS_OK ||
        cs_crl_foreach(d->db, now, note_current_crl, &scan) != CS_OK ||
        cs_ocsp_foreach(d->db, now, report_stale_answer, &scan) != CS_OK)
        report(d, LEVEL_FAIL, "revocation", "store-unavailable: %s", cs_db_errmsg(d->db));
    free(scan.current);
}

/* quiet: say nothing when all is well (the WAL companions). */
static void check_not_writable_by_others(doctor *d, const char *what, const char *path, int quiet)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        report(d, LEVEL_WARN, "permissions",
               "%s %s is writable by %s (mode %04o): anyone there can change the policy", what,
               path, (st.st_mode & S_IWOTH) ? "others" : "group", (unsigned)(st.st_mode & 07777));
    else if (!quiet)
        report(d, LEVEL_OK, "permissions", "%s %s: mode %04o, owner uid %u gid %u", what, path,
               (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid);
}

/* The database, then SQLite's WAL companions a read-only opener needs to find. */
typedef struct {
    char paths[3][4096];
    const char *names[3];
} store_files;

static void store_files_init(store_files *s, const char *db)
{
    snprintf(s->paths[0], sizeof(s->paths[0]), "%s", db);
    snprintf(s->paths[1], sizeof(s->paths[1]), "%s-wal", db);
    snprintf(s->paths[2], sizeof(s->paths[2]), "%s-shm", db);
    s->names[0] = "db";
    s->names[1] = "-wal";
    s->names[2] = "-shm";
}

/*
 * Which files `pw` can read, as a bit mask, or -1 if it could not be
 * tested. The test runs in a child that takes the user's ids and groups,
 * the way a server drops privileges, and asks the kernel.
 */
static int readable_by(const struct passwd *pw, const store_files *s)
{
    pid_t pid;
    int status = 0;

    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int mask = 0;

        if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
            setuid(pw->pw_uid) != 0)
            _exit(255);
        for (int i = 0; i < 3; i++)
            if (access(s->paths[i], R_OK) == 0)
                mask |= 1 << i;
        _exit(mask);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
        return -1;
    return WEXITSTATUS(status);
}

static void check_reader(doctor *d, const char *user, const store_files *s, int present_mask)
{
    const struct passwd *pw = getpwnam(user);
    char missing[64] = "";
    int mask;

    if (pw == NULL) {
        report(d, LEVEL_SKIP, "reader", "%s: no such user", user);
        return;
    }
    if (geteuid() != 0 && geteuid() != pw->pw_uid) {
        report(d, LEVEL_SKIP, "reader", "%s: not checked (run as root to check other users)", user);
        return;
    }
    mask = readable_by(pw, s);
    if (mask < 0) {
        report(d, LEVEL_WARN, "reader", "%s: could not be checked (cannot take its ids)", user);
        return;
    }
    for (int i = 0; i < 3; i++) {
        if ((present_mask & (1 << i)) && !(mask & (1 << i))) {
            strcat(missing, " ");
            strcat(missing, s->names[i]);
        }
    }
    if (missing[0] == '\0')
        report(d, LEVEL_OK, "reader", "%s can read the store", user);
    else
        report(d, LEVEL_WARN, "reader",
               "%s cannot read:%s (a server running as %s rejects "
               "every client with store-unavailable)",
               user, missing, user);
}

static void check_permissions(doctor *d)
{
    store_files s;
    int present = 0;
    char *dir_copy;

    if (d->facts.prov == NULL || *d->facts.db == '\0' || access(d->facts.db, F_OK) != 0)
        return;
    store_files_init(&s, d->facts.db);
    check_not_writable_by_others(d, "database", s.paths[0], 0);
    /* Whoever may write the directory may replace the file. */
    dir_copy = strdup(s.paths[0]);
    if (dir_copy != NULL)
        check_not_writable_by_others(d, "directory", dirname(dir_copy), 0);
    free(dir_copy);
    /* Committed changes sit in the -wal until a checkpoint. */
    check_not_writable_by_others(d, "file", s.paths[1], 1);
    check_not_writable_by_others(d, "file", s.paths[2], 1);
    for (int i = 0; i < 3; i++) {
        if (access(s.paths[i], F_OK) == 0)
            present |= 1 << i;
        else
            report(d, LEVEL_WARN, "permissions",
                   "%s is missing: a server user that cannot create it cannot open the store "
                   "(run any 'certstore' write command to recreate it)",
                   s.paths[i]);
    }
    for (size_t i = 0; i < sizeof(server_users) / sizeof(server_users[0]); i++)
        check_reader(d, server_users[i], &s, present);
}

/* ---- a throwaway PKI for the live test ----------------------------------- */

typedef struct {
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca, *server, *client;
} test_pki;

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = ext != NULL && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* issuer NULL: self-signed CA. eku NULL: a CA, else a leaf with that EKU. */
static X509 *make_cert(OSSL_LIB_CTX *libctx, const char *cn, long serial, EVP_PKEY *key,
                       X509 *issuer, EVP_PKEY *issuer_key, const char *eku)
{
    X509 *cert = X509_new_ex(libctx, NULL);
    X509_NAME *name = X509_NAME_new();
    int ok = cert != NULL && name != NULL && X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                        0) &&
             X509_set_subject_name(cert, name) &&
             X509_set_issuer_name(cert, issuer != NULL ? X509_get_subject_name(issuer) : name) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -300) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 3600) != NULL && X509_set_pubkey(cert, key);

    if (ok && eku == NULL)
        ok = add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    else if (ok)
        ok = add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(cert, issuer, NID_ext_key_usage, eku);
    ok = ok && X509_sign(cert, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static void test_pki_free(test_pki *p)
{
    X509_free(p->client);
    X509_free(p->server);
    X509_free(p->ca);
    EVP_PKEY_free(p->leaf_key);
    EVP_PKEY_free(p->ca_key);
}

/* A CA nobody has pinned, a server certificate and a client certificate under it. */
static int test_pki_make(OSSL_LIB_CTX *libctx, test_pki *p)
{
    memset(p, 0, sizeof(*p));
    p->ca_key = EVP_PKEY_Q_keygen(libctx, NULL, "EC", "P-256");
    p->leaf_key = EVP_PKEY_Q_keygen(libctx, NULL, "EC", "P-256");
    if (p->ca_key == NULL || p->leaf_key == NULL)
        return 0;
    p->ca = make_cert(libctx, "certstore doctor throwaway CA", 1, p->ca_key, NULL, NULL, NULL);
    if (p->ca == NULL)
        return 0;
    p->server = make_cert(libctx, "localhost", 2, p->leaf_key, p->ca, p->ca_key, "serverAuth");
    p->client = make_cert(libctx, "certstore doctor test client", 3, p->leaf_key, p->ca, p->ca_key,
                          "clientAuth");
    return p->server != NULL && p->client != NULL;
}

/* ---- the live handshake -------------------------------------------------- */

typedef struct {
    int ran;         /* the handshake could be set up and run */
    int accepted;    /* the server side completed it */
    long verify;     /* the server's verify result */
    char error[256]; /* why it could not run, or the TLS error */
    char reason[64]; /* certstore's reason token for the chain the server verified */
    char account[CS_ACCOUNT_MAX + 1];
} handshake_result;

static SSL_CTX *server_ctx_new(OSSL_LIB_CTX *libctx, const test_pki *p)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());

    if (ctx == NULL || !SSL_CTX_use_certificate(ctx, p->server) ||
        !SSL_CTX_use_PrivateKey(ctx, p->leaf_key)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The usual mTLS server settings; certstore adds to them through its hook. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

static SSL_CTX *client_ctx_new(OSSL_LIB_CTX *libctx)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());

    if (ctx != NULL)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* the server is ours */
    return ctx;
}

static int still_going(SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);

    return ret == 1 || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Both ends over a BIO pair until the server finishes or either side fails. */
static void drive_handshake(SSL *client, SSL *server, handshake_result *r)
{
    for (int round = 0; round < HANDSHAKE_ROUNDS; round++) {
        int c = SSL_do_handshake(client);
        int s = SSL_do_handshake(server);

        if (s == 1 && c == 1) {
            r->accepted = 1;
            return;
        }
        if (!still_going(server, s) || !still_going(client, c)) {
            take_openssl_error(r->error, sizeof(r->error), "handshake failed");
            return;
        }
    }
    snprintf(r->error, sizeof(r->error), "handshake did not finish");
}

/* What certstore's policy says about the chain the server verified. */
static void explain(const doctor *d, SSL *server, handshake_result *r)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(server);
    cs_decision decision;

    if (d->facts.prov != NULL && strcmp(d->facts.status, "ok") != 0) {
        snprintf(r->reason, sizeof(r->reason), "config-error");
        return;
    }
    if (chain == NULL || sk_X509_num(chain) == 0)
        return;
    cs_decide(d->db, chain, (int64_t)time(NULL), &decision);
    snprintf(r->reason, sizeof(r->reason), "%s",
             decision.accept ? "none" : cs_reason_token(decision.reason));
    snprintf(r->account, sizeof(r->account), "%s", decision.account);
}

static void run_handshake(const doctor *d, SSL_CTX *server_ctx, SSL_CTX *client_ctx,
                          handshake_result *r)
{
    SSL *server = SSL_new(server_ctx);
    SSL *client = SSL_new(client_ctx);
    BIO *server_bio = NULL, *client_bio = NULL;

    if (server == NULL || client == NULL || !BIO_new_bio_pair(&server_bio, 0, &client_bio, 0)) {
        take_openssl_error(r->error, sizeof(r->error), "cannot make the TLS connection");
    } else {
        SSL_set_bio(server, server_bio, server_bio);
        SSL_set_bio(client, client_bio, client_bio);
        SSL_set_connect_state(client);
        SSL_set_accept_state(server);
        r->ran = 1;
        drive_handshake(client, server, r);
        r->verify = SSL_get_verify_result(server);
        explain(d, server, r);
    }
    SSL_free(client);
    SSL_free(server);
    ERR_clear_error();
}

/*
 * The reason is this binary's own reading of the store; for a rejection it
 * cannot explain, the module (and its store library) must differ from it.
 */
static const char *reason_suffix(const handshake_result *r, char *buf, size_t len)
{
    if (r->reason[0] == '\0')
        return "";
    if (strcmp(r->reason, "none") == 0 && !r->accepted)
        return " (the module's reason is in its decision log: this certstore binary would "
               "accept it, so the module is probably a different version)";
    snprintf(buf, len, " (%s)", r->reason);
    return buf;
}

static void report_hook(doctor *d, const handshake_result *r)
{
    char why[80];

    if (!r->ran)
        report(d, LEVEL_FAIL, "hook", "test handshake could not run: %s", r->error);
    else if (r->accepted)
        report(d, LEVEL_FAIL, "hook", "not active: an unpinned test client was accepted%s",
               d->facts.prov != NULL && strcmp(d->facts.mode, "audit") == 0
                   ? " (audit mode only logs it)"
                   : "");
    else if (r->verify == X509_V_ERR_APPLICATION_VERIFICATION)
        report(d, LEVEL_OK, "hook", "active: an unpinned test client was refused%s",
               reason_suffix(r, why, sizeof(why)));
    else
        report(d, LEVEL_FAIL, "hook", "test handshake failed before certstore decided: %s%s%s",
               r->verify != X509_V_OK ? X509_verify_cert_error_string(r->verify) : "",
               r->verify != X509_V_OK ? "; " : "", r->error);
}

static void check_hook(doctor *d)
{
    test_pki pki;
    handshake_result r;
    SSL_CTX *server_ctx = NULL, *client_ctx = NULL;

    memset(&r, 0, sizeof(r));
    if (!test_pki_make(d->libctx, &pki)) {
        take_openssl_error(r.error, sizeof(r.error), "cannot make test certificates");
    } else if ((server_ctx = server_ctx_new(d->libctx, &pki)) == NULL ||
               (client_ctx = client_ctx_new(d->libctx)) == NULL ||
               !X509_STORE_add_cert(SSL_CTX_get_cert_store(server_ctx), pki.ca) ||
               !SSL_CTX_use_certificate(client_ctx, pki.client) ||
               !SSL_CTX_use_PrivateKey(client_ctx, pki.leaf_key)) {
        take_openssl_error(r.error, sizeof(r.error), "cannot set up TLS contexts");
    } else {
        run_handshake(d, server_ctx, client_ctx, &r);
    }
    report_hook(d, &r);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
    test_pki_free(&pki);
}

/* ---- an operator's own client chain --------------------------------------- */

static void report_chain_decision(doctor *d, const char *chain, const handshake_result *r)
{
    char why[80];

    if (!r->ran)
        report(d, LEVEL_FAIL, "decision", "%s: could not run the handshake: %s", chain, r->error);
    else if (r->accepted && strcmp(r->reason, "none") == 0)
        report(d, LEVEL_OK, "decision", "%s accepted as account \"%s\"", chain, r->account);
    else if (r->accepted)
        report(d, LEVEL_WARN, "decision", "%s accepted, but certstore would reject it%s", chain,
               reason_suffix(r, why, sizeof(why)));
    else if (r->verify == X509_V_ERR_APPLICATION_VERIFICATION)
        report(d, LEVEL_WARN, "decision", "%s rejected by certstore%s", chain,
               reason_suffix(r, why, sizeof(why)));
    else
        report(d, LEVEL_WARN, "decision", "%s rejected by OpenSSL before certstore: %s%s%s", chain,
               r->verify != X509_V_OK ? X509_verify_cert_error_string(r->verify) : "",
               r->verify != X509_V_OK ? "; " : "", r->error);
}

static void check_chain(doctor *d, const doctor_options *o)
{
    test_pki pki;
    handshake_result r;
    SSL_CTX *server_ctx = NULL, *client_ctx = NULL;

    memset(&r, 0, sizeof(r));
    if (!test_pki_make(d->libctx, &pki)) {
        take_openssl_error(r.error, sizeof(r.error), "cannot make test certificates");
    } else if ((server_ctx = server_ctx_new(d->libctx, &pki)) == NULL ||
               (client_ctx = client_ctx_new(d->libctx)) == NULL) {
        take_openssl_error(r.error, sizeof(r.error), "cannot set up TLS contexts");
    } else if (!SSL_CTX_load_verify_file(server_ctx, o->ca)) {
        take_openssl_error(r.error, sizeof(r.error), "cannot read the --ca file");
    } else if (!SSL_CTX_use_certificate_chain_file(client_ctx, o->chain) ||
               !SSL_CTX_use_PrivateKey_file(client_ctx, o->key, SSL_FILETYPE_PEM) ||
               !SSL_CTX_check_private_key(client_ctx)) {
        take_openssl_error(r.error, sizeof(r.error), "cannot use the --chain/--key files");
    } else {
        run_handshake(d, server_ctx, client_ctx, &r);
    }
    report_chain_decision(d, o->chain, &r);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
    test_pki_free(&pki);
}

/* ---- a server's start-up check --------------------------------------------- */

/*
 * With --server, the doctor runs before a server starts (the systemd
 * drop-ins of the package) and decides whether it may start. A server whose
 * configuration does not mention certstore at all was never pointed at it,
 * and installing certstore must not stop it: that is skipped, unless
 * --require or CERTSTORE_REQUIRE=1 in the server's environment says the
 * server must enforce. Everything else must pass: a configuration that
 * names certstore but would not load it, a module path that does not
 * exist, an $OPENSSL_CONF that cannot be read, a mode that does not
 * enforce.
 */
static int config_mentions_certstore(const char *path)
{
    CONF *conf = NCONF_new(NULL);
    BIO *dump = BIO_new(BIO_s_mem());
    char *text = NULL;
    long len = 0;
    int found = 0;

    if (conf != NULL && dump != NULL && NCONF_load(conf, path, NULL) > 0 &&
        NCONF_dump_bio(conf, dump) && (len = BIO_get_mem_data(dump, &text)) > 0) {
        const long n = (long)sizeof(CERTSTORE_PROVIDER_NAME) - 1;

        for (long i = 0; !found && i + n <= len; i++)
            found = OPENSSL_strncasecmp(text + i, CERTSTORE_PROVIDER_NAME, (size_t)n) == 0;
    } else {
        found = 1; /* cannot tell: check it all */
    }
    ERR_clear_error();
    BIO_free(dump);
    NCONF_free(conf);
    return found;
}

/* 1 when the server is not meant to use certstore (reported; exit 0). */
static int server_not_using_certstore(doctor *d, const doctor_options *o)
{
    char buf[4096];
    const char *source;
    const char *path;

    if (o->server == NULL || o->require)
        return 0;
    path = config_path(o, buf, sizeof(buf), &source);
    if (access(path, R_OK) != 0 || config_mentions_certstore(path))
        return 0;
    report(d, LEVEL_SKIP, "server",
           "%s: %s (%s) does not mention certstore: this server does not use it (set "
           "CERTSTORE_REQUIRE=1 in its environment to require it)",
           o->server, path, source);
    return 1;
}

/* ---- the command ---------------------------------------------------------- */

static int parse_doctor_options(cli_ctx *ctx, int argc, char **argv, doctor_options *o)
{
    const cli_option opts[] = {{"config", &o->config, NULL},   {"chain", &o->chain, NULL},
                               {"key", &o->key, NULL},         {"ca", &o->ca, NULL},
                               {"json", NULL, &o->json},       {"server", &o->server, NULL},
                               {"require", NULL, &o->require}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if ((o->chain != NULL || o->key != NULL || o->ca != NULL) &&
        (o->chain == NULL || o->key == NULL || o->ca == NULL))
        return cli_usage_error(ctx, "--chain, --key and --ca go together");
    if (o->config != NULL && *o->config == '\0')
        return cli_usage_error(ctx, "empty --config path");
    if (o->server != NULL && *o->server == '\0')
        return cli_usage_error(ctx, "empty --server name");
    const char *require = getenv("CERTSTORE_REQUIRE");
    if (require != NULL && *require != '\0' && strcmp(require, "0") != 0)
        o->require = 1;
    return CLI_CONTINUE;
}

static int run_doctor(cli_ctx *ctx, int argc, char **argv)
{
    doctor_options o = {0};
    doctor d = {0};
    int rc = parse_doctor_options(ctx, argc, argv, &o);

    if (rc != CLI_CONTINUE)
        return rc;
    /*
     * The process's own default context must not load $OPENSSL_CONF: a
     * second activation of certstore with other settings would put the
     * process-wide policy into deny-all and spoil what we report.
     */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    d.json = o.json;
    d.libctx = OSSL_LIB_CTX_new();
    if (d.libctx == NULL)
        return cli_fail(ctx, "cannot make a library context (out of memory)");
    if (d.json) {
        fputs("{\"checks\":", stdout);
        cli_json_list_begin(&d.list, stdout);
    }
    if (server_not_using_certstore(&d, &o)) {
        if (d.json) {
            cli_json_list_end(&d.list);
            printf(",\"enforcing\":false,\"skipped\":true}\n");
        }
        OSSL_LIB_CTX_free(d.libctx);
        return CLI_OK;
    }
    char config_buf[4096];
    const char *config = check_config(&d, &o, config_buf, sizeof(config_buf));
    check_providers(&d, config);
    check_mode(&d);
    check_database(&d);
    check_revocation(&d);
    check_permissions(&d);
    check_hook(&d);
    if (o.chain != NULL)
        check_chain(&d, &o);
    if (d.json) {
        cli_json_list_end(&d.list);
        printf(",\"enforcing\":%s}\n", d.failed ? "false" : "true");
    } else {
        printf("%s\n", d.failed ? "certstore is NOT enforcing with this configuration"
                                : "certstore is enforcing with this configuration");
    }
    cs_db_close(d.db);
    OSSL_LIB_CTX_free(d.libctx);
    ERR_clear_error();
    return d.failed ? CLI_FAIL : CLI_OK;
}

const cli_command cli_cmd_doctor = {
    "doctor",
    "check that servers using an openssl.cnf enforce certstore",
    run_doctor,
    "Usage: certstore doctor [--config FILE] [--chain CHAIN.pem --key KEY.pem --ca ROOTS.pem]\n"
    "                        [--server NAME [--require]] [--json]\n"
    "\n"
    "Load an OpenSSL configuration into a fresh library context, as a server\n"
    "does at startup, and report one line per check (OK, WARN, FAIL, SKIP):\n"
    "  config            the file was read and OpenSSL accepted it\n"
    "  provider          certstore is loaded and active, and its version\n"
    "  default-provider  the default provider is active (else no TLS at all)\n"
    "  mode              enforce; audit, off and deny-all (with its cause) fail\n"
    "  database          the db the configuration names opens read-only; schema\n"
    "  store             how many pins, accounts and mappings it holds\n"
    "  revocation        each pin's CRL: past nextUpdate within the grace warns;\n"
    "                    stale, or missing where the policy needs one, fails\n"
    "  permissions       the db and its directory are not writable by group or\n"
    "                    others; its -wal and -shm files exist\n"
    "  reader            www-data, haproxy, stunnel4 and nobody can read the db,\n"
    "                    -wal and -shm (checked as each user; needs root)\n"
    "  hook              a TLS handshake in that context, with a throwaway CA\n"
    "                    that is not pinned, is refused by certstore\n"
    "  decision          with --chain: the decision for that client\n"
    "\n"
    "The database is the one the configuration names; --db is ignored. The\n"
    "test handshakes are real decisions: they appear in the decision log.\n"
    "\n"
    "  --config FILE  the configuration (default: $OPENSSL_CONF, else OpenSSL's\n"
    "                 default openssl.cnf in its OPENSSLDIR)\n"
    "  --chain FILE   a client certificate followed by its intermediates (PEM)\n"
    "  --key FILE     the client's private key (PEM)\n"
    "  --ca FILE      the roots the server trusts for client certificates (PEM)\n"
    "  --server NAME  run as the start-up check of server NAME (the package's\n"
    "                 systemd drop-ins run it as ExecStartPre=, with the server's\n"
    "                 environment): a configuration that does not mention\n"
    "                 certstore at all is skipped (exit 0), any other must\n"
    "                 enforce or the server does not start\n"
    "  --require      with --server: never skip (also CERTSTORE_REQUIRE=1)\n"
    "  --json         one JSON object: {\"checks\":[{level,check,message}...],\n"
    "                 \"enforcing\":true|false}\n"
    "\n"
    "What it cannot see: a server that never reads openssl.cnf (it calls\n"
    "OPENSSL_init_crypto with OPENSSL_INIT_NO_LOAD_CONFIG, loads its own file,\n"
    "or is setuid, which ignores $OPENSSL_CONF), an environment other than the\n"
    "one it runs in, and a module replaced after it ran.\n"
    "\n"
    "Exit status: 0 when everything enforcement needs is OK (or, with\n"
    "--server, the configuration does not mention certstore), 1 when a check\n"
    "failed, 2 usage error.\n",
};
