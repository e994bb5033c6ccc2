/* SPDX-License-Identifier: Apache-2.0 */
/* certstore map: which client certificate is which account. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cli.h"

#define KEY_TEXT_MAX (2 * CS_KEY_MAX + 2)

static int parse_kind(const cli_ctx *ctx, const char *text, cs_kind *kind)
{
    if (text == NULL) {
        *kind = CS_KIND_CERT;
        return CLI_CONTINUE;
    }
    if (!cs_kind_parse(text, kind))
        return cli_usage_error(ctx, "--kind: '%s' is not one of cert, issuer-serial, ski, spki",
                               text);
    return CLI_CONTINUE;
}

static int key_from_file(const cli_ctx *ctx, const char *path, cs_kind kind, cs_key *key)
{
    X509 *leaf = cli_read_one_cert(ctx, path);
    if (leaf == NULL)
        return CLI_FAIL;
    cs_status st = cs_key_from_cert(leaf, kind, key);
    X509_free(leaf);
    if (st == CS_NOTFOUND)
        return cli_fail(ctx, "%s: certificate has no %s key (no Subject Key Identifier?)", path,
                        cs_kind_name(kind));
    if (st != CS_OK)
        return cli_fail(ctx, "%s: cannot compute the %s key", path, cs_kind_name(kind));
    return CLI_CONTINUE;
}

/* Candidates for a key prefix: the first few, and how many there are. */
typedef struct {
    int count;
    int64_t first_id;
    char shown[6][KEY_TEXT_MAX + 64];
} prefix_matches;

static int note_prefix_match(const cs_mapping *m, void *arg)
{
    prefix_matches *pm = arg;
    char key[KEY_TEXT_MAX];

    if (pm->count == 0)
        pm->first_id = m->id;
    if (pm->count < (int)(sizeof(pm->shown) / sizeof(pm->shown[0]))) {
        cs_key_format(m->kind, &m->key, key, sizeof(key));
        snprintf(pm->shown[pm->count], sizeof(pm->shown[0]), "%lld %s %s", (long long)m->id,
                 cs_kind_name(m->kind), key);
    }
    pm->count++;
    return 0;
}

/*
 * A key prefix names one mapping when exactly one key of `kind` (every kind
 * without --kind) starts with it; ambiguous ones are refused with the
 * candidates, as git does with abbreviated hashes.
 */
static int resolve_prefix(const cli_ctx *ctx, const char *text, int any_kind, cs_kind kind,
                          cs_mapping_ref *ref)
{
    prefix_matches pm = {0};
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_status st = cs_mapping_foreach_prefix(db, any_kind ? CS_KIND_COUNT : kind, text,
                                             note_prefix_match, &pm);
    if (st != CS_OK) {
        int rc = st == CS_INVALID ? cli_usage_error(ctx, "'%s' is %s", text, cs_db_errmsg(db))
                                  : cli_store_fail(ctx, db);
        cs_db_close(db);
        return rc;
    }
    cs_db_close(db);
    if (pm.count == 0)
        return cli_fail(ctx, "no such mapping: no mapping's key starts with '%s'", text);
    if (pm.count > 1) {
        cli_fail(ctx, "'%s' is ambiguous: %d mappings' keys start with it:", text, pm.count);
        for (int i = 0; i < pm.count && i < (int)(sizeof(pm.shown) / sizeof(pm.shown[0])); i++)
            fprintf(stderr, "  %s\n", pm.shown[i]);
        return CLI_FAIL;
    }
    ref->id = pm.first_id;
    return CLI_CONTINUE;
}

/*
 * REF: a mapping id (all digits), a certificate file, a key in hex, or a
 * unique prefix of a key (at least CS_PREFIX_MIN hex digits).
 */
static int resolve_ref(const cli_ctx *ctx, const char *text, int any_kind, cs_kind kind,
                       cs_mapping_ref *ref)
{
    memset(ref, 0, sizeof(*ref));
    ref->kind = kind;
    if (*text != '\0' && strspn(text, "0123456789") == strlen(text)) {
        if (strlen(text) > 18 || (ref->id = strtoll(text, NULL, 10)) <= 0)
            return cli_usage_error(ctx, "'%s' is not a valid mapping id", text);
        return CLI_CONTINUE;
    }
    if (access(text, F_OK) == 0)
        return key_from_file(ctx, text, kind, &ref->key);
    /* A full key of a fixed length is exact; anything shorter (or a SKI) may be a prefix. */
    if (!any_kind && kind != CS_KIND_SKI && cs_key_parse(kind, text, &ref->key))
        return CLI_CONTINUE;
    if (strspn(text, "0123456789abcdefABCDEF:") == strlen(text))
        return resolve_prefix(ctx, text, any_kind, kind, ref);
    return cli_usage_error(ctx, "'%s' is not a mapping id, a certificate file or a %s key", text,
                           cs_kind_name(kind));
}

typedef struct {
    const char *account, *kind, *pin, *not_before, *not_after, *note, *not_issued_before;
    int create_account;
} map_add_options;

/* Everything from the options except what comes from the certificate. */
static int fill_spec_options(const cli_ctx *ctx, const map_add_options *o, cs_mapping_spec *spec,
                             char pin_fp[CS_FP_HEX_LEN + 1])
{
    spec->account = o->account;
    spec->note = o->note != NULL ? o->note : "";
    spec->pin_fp = NULL;
    spec->not_before = CS_TIME_NONE;
    spec->not_after = CS_TIME_NONE;
    if (!cs_account_name_valid(o->account))
        return cli_usage_error(ctx, "--account: invalid account name");
    if (o->pin != NULL) {
        int rc = cli_pin_fp(ctx, "--pin", o->pin, pin_fp);
        if (rc != CLI_CONTINUE)
            return rc;
        spec->pin_fp = pin_fp;
    }
    if (o->not_before != NULL &&
        !cli_parse_time_option(ctx, "--not-before", o->not_before, &spec->not_before))
        return CLI_USAGE;
    if (o->not_after != NULL &&
        !cli_parse_time_option(ctx, "--not-after", o->not_after, &spec->not_after))
        return CLI_USAGE;
    if (spec->not_before != CS_TIME_NONE && spec->not_after != CS_TIME_NONE &&
        spec->not_before > spec->not_after)
        return cli_usage_error(ctx, "--not-before is after --not-after");
    return CLI_CONTINUE;
}

typedef struct found_mapping found_mapping;
static cs_status find_mapping(cs_db *db, const cs_mapping_ref *ref, found_mapping *f);
static void already_mapped(const cli_ctx *ctx, cs_db *db, const cs_mapping_spec *spec);

static cs_status add_mapping(const cli_ctx *ctx, cs_db *db, const cs_mapping_spec *spec,
                             int create_account, int64_t *id)
{
    cs_status st = cs_mapping_add(db, spec, create_account, id);
    if (st == CS_EXISTS)
        already_mapped(ctx, db, spec);
    else if (st == CS_NOTFOUND)
        cli_fail(ctx, "%s (use --create-account to create the account)", cs_db_errmsg(db));
    else if (st != CS_OK)
        cli_store_fail(ctx, db);
    return st;
}

/*
 * ski and issuer-serial without --pin: bound to the one pin that issued the
 * certificate (its key verifies the signature), found inside the write
 * transaction so the pin cannot go away before the mapping is added.
 */
static cs_status bind_to_issuing_pin(const cli_ctx *ctx, cs_db *db, X509 *leaf, const char *file,
                                     cs_mapping_spec *spec, char pin_fp[CS_FP_HEX_LEN + 1])
{
    if (spec->pin_fp != NULL || !cs_kind_needs_pin(spec->kind))
        return CS_OK;
    cs_status st = cs_pin_find_issuer(db, leaf, pin_fp);
    if (st == CS_OK)
        spec->pin_fp = pin_fp;
    else if (st == CS_NOTFOUND)
        cli_fail(ctx,
                 "%s: no pinned CA issued this certificate; a %s mapping is bound to the pin "
                 "of its issuing CA (pin it first, or give --pin FP)",
                 file, cs_kind_name(spec->kind));
    else if (st == CS_EXISTS)
        cli_fail(ctx, "%s: %s; choose the one to bind with --pin FP", file, cs_db_errmsg(db));
    else
        cli_store_fail(ctx, db);
    return st;
}

typedef struct {
    X509 *leaf;
    int issued;
} issued_check;

/* Whether the pinned CA (DER of a pin) issued the leaf: its name and its key. */
static int pin_issued(const cs_pin *pin, void *arg)
{
    issued_check *c = arg;
    const unsigned char *p = pin->der;
    X509 *ca = d2i_X509(NULL, &p, (long)pin->der_len);
    EVP_PKEY *key = ca != NULL ? X509_get0_pubkey(ca) : NULL;
    c->issued = key != NULL && X509_check_issued(ca, c->leaf) == X509_V_OK &&
                X509_verify(c->leaf, key) == 1;
    X509_free(ca);
    ERR_clear_error();
    return 0;
}

static int64_t asn1_unix(const ASN1_TIME *t, int *ok)
{
    struct tm tm;
    *ok = t != NULL && ASN1_TIME_to_tm(t, &tm) == 1;
    return *ok ? (int64_t)timegm(&tm) : 0;
}

/* A mapping's window that can never overlap the certificate's own validity. */
static void warn_window_misses_cert(const cli_ctx *ctx, X509 *leaf, const char *file,
                                    const cs_mapping_spec *spec)
{
    int ok_nb = 0, ok_na = 0;
    int64_t cert_nb = asn1_unix(X509_get0_notBefore(leaf), &ok_nb);
    int64_t cert_na = asn1_unix(X509_get0_notAfter(leaf), &ok_na);
    if (ok_na && spec->not_before != CS_TIME_NONE && spec->not_before > cert_na)
        cli_warn(ctx,
                 "%s: --not-before is after the certificate expires: the mapping can never "
                 "admit it",
                 file);
    else if (ok_nb && spec->not_after != CS_TIME_NONE && spec->not_after < cert_nb)
        cli_warn(ctx,
                 "%s: --not-after is before the certificate is valid: the mapping can never "
                 "admit it",
                 file);
}

/*
 * A mapping that cannot work is said so: a warning where time alone decides
 * (the mapping is still what `check --at` and an audit of past decisions
 * read), a refusal where it could never admit anything: bound to a pinned CA
 * that did not issue the certificate. Runs in the write transaction, so the
 * pin it reads is the one it binds to.
 */
static cs_status check_can_work(const cli_ctx *ctx, cs_db *db, X509 *leaf, const char *file,
                                const cs_mapping_spec *spec)
{
    int64_t now = (int64_t)time(NULL);
    int ok_na = 0;
    int64_t cert_na = asn1_unix(X509_get0_notAfter(leaf), &ok_na);
    /* cert and issuer-serial name this very certificate; ski and spki also its renewals. */
    int this_cert_only = spec->kind == CS_KIND_CERT || spec->kind == CS_KIND_ISSUER_SERIAL;
    char t[32];

    if (spec->not_after != CS_TIME_NONE && spec->not_after < now) {
        cs_time_format(spec->not_after, t);
        cli_warn(ctx,
                 "--not-after %s is in the past: the mapping will reject with "
                 "mapping-expired",
                 t);
    }
    if (ok_na && cert_na < now) {
        cs_time_format(cert_na, t);
        if (this_cert_only)
            cli_warn(ctx, "%s: the certificate expired on %s: no server will accept it", file, t);
        else
            cli_warn(ctx,
                     "%s: the certificate expired on %s: this %s mapping admits only a renewed "
                     "certificate with the same %s",
                     file, t, cs_kind_name(spec->kind), spec->kind == CS_KIND_SKI ? "SKI" : "key");
    }
    if (this_cert_only)
        warn_window_misses_cert(ctx, leaf, file, spec);
    if (spec->pin_fp == NULL)
        return CS_OK;
    issued_check c = {.leaf = leaf};
    cs_status st = cs_pin_get(db, spec->pin_fp, pin_issued, &c);
    if (st == CS_NOTFOUND) {
        cli_warn(ctx, "--pin %s is not pinned: the mapping applies only once that CA is pinned",
                 spec->pin_fp);
        return CS_OK;
    }
    if (st != CS_OK) {
        cli_store_fail(ctx, db);
        return st;
    }
    if (!c.issued && spec->kind != CS_KIND_SPKI) {
        cli_fail(ctx,
                 "%s: the CA of --pin %s did not issue this certificate: the mapping could "
                 "never apply",
                 file, spec->pin_fp);
        return CS_INVALID;
    }
    if (!c.issued)
        cli_warn(ctx,
                 "%s: the CA of --pin %s did not issue this certificate: this spki mapping "
                 "admits only a certificate of the same key that CA issues",
                 file, spec->pin_fp);
    return CS_OK;
}

static void print_added(const cs_mapping_spec *spec, int64_t id)
{
    char key[KEY_TEXT_MAX];
    cs_key_format(spec->kind, &spec->key, key, sizeof(key));
    printf("mapping %lld: %s %s -> ", (long long)id, cs_kind_name(spec->kind), key);
    cli_put_text(stdout, spec->account);
    if (spec->pin_fp != NULL)
        printf(" (pin %s)", spec->pin_fp);
    putchar('\n');
}

static int run_map_add(cli_ctx *ctx, int argc, char **argv)
{
    map_add_options o = {0};
    const cli_option opts[] = {
        {"account", &o.account, NULL},
        {"kind", &o.kind, NULL},
        {"pin", &o.pin, NULL},
        {"not-before", &o.not_before, NULL},
        {"not-after", &o.not_after, NULL},
        {"note", &o.note, NULL},
        {"create-account", NULL, &o.create_account},
        {"not-issued-before", &o.not_issued_before, NULL},
        CLI_OPTIONS_END,
    };
    cli_positional pos;
    cs_kind kind = CS_KIND_CERT;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "CERT.pem")) != CLI_CONTINUE)
        return rc;
    if (o.account == NULL)
        return cli_usage_error(ctx, "missing --account");
    if ((rc = parse_kind(ctx, o.kind, &kind)) != CLI_CONTINUE)
        return rc;
    if (o.not_issued_before != NULL && strcmp(o.not_issued_before, "created") != 0)
        return cli_usage_error(ctx, "--not-issued-before: only 'created' is supported");
    cs_mapping_spec spec;
    char pin_fp[CS_FP_HEX_LEN + 1];
    memset(&spec, 0, sizeof(spec));
    if ((rc = fill_spec_options(ctx, &o, &spec, pin_fp)) != CLI_CONTINUE)
        return rc;

    X509 *leaf = cli_read_one_cert(ctx, pos.args[0]);
    if (leaf == NULL)
        return CLI_FAIL;
    cs_status st = cs_mapping_spec_from_cert(&spec, leaf, kind);
    if (st != CS_OK) {
        X509_free(leaf);
        if (st == CS_NOTFOUND)
            return cli_fail(ctx, "%s: certificate has no %s key (no Subject Key Identifier?)",
                            pos.args[0], cs_kind_name(kind));
        return cli_fail(ctx, "%s: cannot compute the %s key", pos.args[0], cs_kind_name(kind));
    }

    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        X509_free(leaf);
        return CLI_FAIL;
    }
    int64_t id = 0;
    st = bind_to_issuing_pin(ctx, db, leaf, pos.args[0], &spec, pin_fp);
    if (st == CS_OK)
        st = check_can_work(ctx, db, leaf, pos.args[0], &spec);
    if (st == CS_OK)
        st = add_mapping(ctx, db, &spec, o.create_account, &id);
    X509_free(leaf);
    spec.cert = NULL;
    if (st == CS_OK && o.not_issued_before != NULL) {
        cs_mapping_ref ref = {.id = id};
        if ((st = cs_mapping_set_not_issued_before_created(db, &ref, 1)) != CS_OK)
            cli_store_fail(ctx, db);
    }
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        print_added(&spec, id);
    return rc;
}

/* The mapping a REF names, read back so the answer can name it (id, kind, account). */
struct found_mapping {
    const cs_mapping_ref *ref;
    int64_t id;
    cs_kind kind;
    char account[CS_ACCOUNT_MAX + 1];
    int have_sha1;
    unsigned char sha1[20]; /* of the certificate it was made from */
};

static int match_ref(const cs_mapping *m, void *arg)
{
    found_mapping *f = arg;
    if (f->ref->id > 0 ? m->id != f->ref->id
                       : m->kind != f->ref->kind || m->key.len != f->ref->key.len ||
                             memcmp(m->key.bytes, f->ref->key.bytes, m->key.len) != 0)
        return 0;
    f->id = m->id;
    f->kind = m->kind;
    snprintf(f->account, sizeof(f->account), "%s", m->account);
    f->have_sha1 = m->have_sha1;
    memcpy(f->sha1, m->sha1, sizeof(f->sha1));
    return 1;
}

static cs_status find_mapping(cs_db *db, const cs_mapping_ref *ref, found_mapping *f)
{
    memset(f, 0, sizeof(*f));
    f->ref = ref;
    cs_status st = cs_mapping_foreach(db, NULL, match_ref, f);
    if (st == CS_OK && f->id == 0)
        return CS_NOTFOUND;
    return st;
}

/* "already exists" names the mapping that does, and its account. */
static void already_mapped(const cli_ctx *ctx, cs_db *db, const cs_mapping_spec *spec)
{
    cs_mapping_ref ref = {.id = 0, .kind = spec->kind, .key = spec->key};
    found_mapping f;
    if (find_mapping(db, &ref, &f) != CS_OK) {
        cli_fail(ctx, "a %s mapping for this certificate already exists", cs_kind_name(spec->kind));
        return;
    }
    /* Account names hold no control characters (cs_account_name_valid). */
    cli_fail(ctx, "a %s mapping for this certificate already exists: mapping %lld -> %s",
             cs_kind_name(spec->kind), (long long)f.id, f.account);
}

/*
 * What still admits a certificate: every mapping of one of its keys that
 * applies to it (bound to no pin, for cert and spki, or to the pin that
 * issued it), and what the policy decides for it with its issuing pin.
 */
typedef struct {
    cs_key keys[CS_KIND_COUNT];
    char issuer_fp[CS_FP_HEX_LEN + 1]; /* "" when no pin issued it */
    int64_t ids[CS_KIND_COUNT];
    cs_kind kinds[CS_KIND_COUNT];
    char accounts[CS_KIND_COUNT][CS_ACCOUNT_MAX + 1];
    int enabled[CS_KIND_COUNT];
    size_t n;
} cert_mappings;

static int collect_cert_mapping(const cs_mapping *m, void *arg)
{
    cert_mappings *c = arg;
    const cs_key *k = &c->keys[m->kind];
    if (k->len == 0 || k->len != m->key.len || memcmp(k->bytes, m->key.bytes, k->len) != 0)
        return 0;
    if (m->pin_fp != NULL ? strcmp(m->pin_fp, c->issuer_fp) != 0 : cs_kind_needs_pin(m->kind))
        return 0;
    if (c->n < CS_KIND_COUNT) {
        c->ids[c->n] = m->id;
        c->kinds[c->n] = m->kind;
        c->enabled[c->n] = m->enabled;
        snprintf(c->accounts[c->n], sizeof(c->accounts[0]), "%s", m->account);
        c->n++;
    }
    return 0;
}

static cs_status cert_mappings_find(cs_db *db, X509 *leaf, cert_mappings *c)
{
    memset(c, 0, sizeof(*c));
    for (int k = 0; k < CS_KIND_COUNT; k++)
        if (cs_key_from_cert(leaf, (cs_kind)k, &c->keys[k]) != CS_OK)
            c->keys[k].len = 0;
    cs_status st = cs_pin_find_issuer(db, leaf, c->issuer_fp);
    if (st != CS_OK)
        c->issuer_fp[0] = '\0';
    if (st != CS_OK && st != CS_NOTFOUND && st != CS_EXISTS)
        return st;
    return cs_mapping_foreach(db, NULL, collect_cert_mapping, c);
}

static int keep_pin_der(const cs_pin *pin, void *arg)
{
    X509 **ca = arg;
    const unsigned char *p = pin->der;
    *ca = d2i_X509(NULL, &p, (long)pin->der_len);
    return 1;
}

/* The policy on [leaf, issuing pin], in the caller's transaction; 0 when no pin issued it. */
static int decide_with_pin(cs_db *db, X509 *leaf, const char *issuer_fp, cs_decision *d)
{
    X509 *ca = NULL;
    STACK_OF(X509) *chain = NULL;
    int done = 0;
    if (issuer_fp[0] == '\0' || cs_pin_get(db, issuer_fp, keep_pin_der, &ca) != CS_OK ||
        ca == NULL || (chain = sk_X509_new_null()) == NULL)
        goto out;
    if (sk_X509_push(chain, leaf) > 0 && sk_X509_push(chain, ca) > 0) {
        cs_decide(db, chain, (int64_t)time(NULL), d);
        done = 1;
    }
out:
    sk_X509_free(chain);
    X509_free(ca);
    return done;
}

/* After a removal: say what still lets the certificate in, if anything. */
static void report_still_admitted(const cli_ctx *ctx, cs_db *db, X509 *leaf, const char *file)
{
    cert_mappings c;
    cs_decision d;
    if (cert_mappings_find(db, leaf, &c) != CS_OK)
        return;
    for (size_t i = 0; i < c.n; i++) {
        printf("still mapped: mapping %lld %s -> ", (long long)c.ids[i], cs_kind_name(c.kinds[i]));
        cli_put_text(stdout, c.accounts[i]);
        printf("%s\n", c.enabled[i] ? "" : " (disabled)");
    }
    if (decide_with_pin(db, leaf, c.issuer_fp, &d) && d.accept) {
        if (d.rule_id != 0)
            printf("still accepted: account %s by rule %lld\n", d.account, (long long)d.rule_id);
        else
            printf("still accepted: account %s by mapping %lld (%s)\n", d.account,
                   (long long)d.mapping_id, cs_kind_name(d.kind));
        cli_warn(ctx,
                 "%s is still accepted (account %s); 'certstore map rm --all %s' removes every "
                 "mapping of it%s",
                 file, d.account, file, d.rule_id != 0 ? ", 'certstore rule' the rule" : "");
    }
}

/* map rm --all CERT: every mapping that applies to the certificate, in one transaction. */
static cs_status remove_all_of_cert(const cli_ctx *ctx, cs_db *db, X509 *leaf, const char *file,
                                    int force)
{
    char source[CS_SOURCE_MAX];
    cert_mappings c;
    cs_status st = cert_mappings_find(db, leaf, &c);
    if (st != CS_OK)
        return cli_store_fail(ctx, db), st;
    if (c.n == 0)
        return cli_fail(ctx, "%s: no mapping of this certificate", file), CS_NOTFOUND;
    for (size_t i = 0; i < c.n; i++) {
        cs_mapping_ref ref = {.id = c.ids[i]};
        st = cli_owner_check(ctx, db, cs_mapping_source(db, &ref, source), source, force);
        if (st != CS_OK)
            return st;
        if ((st = cs_mapping_remove(db, &ref)) != CS_OK)
            return cli_store_fail(ctx, db), st;
        printf("removed mapping %lld %s -> ", (long long)c.ids[i], cs_kind_name(c.kinds[i]));
        cli_put_text(stdout, c.accounts[i]);
        putchar('\n');
    }
    return CS_OK;
}

/*
 * The other mappings made from the same certificate (by SHA-1), without
 * the certificate itself: what map rm ID or KEY leaves of it.
 */
typedef struct {
    const unsigned char *sha1;
    cs_key keys[CS_KIND_COUNT];
    char issuer_fp[CS_FP_HEX_LEN + 1];
    int listed;
} same_cert;

static int list_same_cert(const cs_mapping *m, void *arg)
{
    same_cert *c = arg;
    if (!m->have_sha1 || memcmp(m->sha1, c->sha1, sizeof(m->sha1)) != 0 || cs_mapping_unbound(m))
        return 0;
    c->keys[m->kind] = m->key;
    if (m->pin_fp != NULL)
        snprintf(c->issuer_fp, sizeof(c->issuer_fp), "%s", m->pin_fp);
    printf("still mapped: mapping %lld %s -> ", (long long)m->id, cs_kind_name(m->kind));
    cli_put_text(stdout, m->account);
    printf("%s\n", m->enabled ? "" : " (disabled)");
    c->listed++;
    return 0;
}

static void report_same_certificate(const cli_ctx *ctx, cs_db *db, const found_mapping *f)
{
    same_cert c;
    cs_decision d;
    memset(&c, 0, sizeof(c));
    c.sha1 = f->sha1;
    if (!f->have_sha1 || cs_mapping_foreach(db, NULL, list_same_cert, &c) != CS_OK || c.listed == 0)
        return;
    cs_decide_keys(db, c.keys, c.issuer_fp[0] != '\0' ? c.issuer_fp : NULL, (int64_t)time(NULL),
                   &d);
    if (!d.accept)
        return;
    printf("still accepted: account %s by mapping %lld (%s)\n", d.account, (long long)d.mapping_id,
           cs_kind_name(d.kind));
    cli_warn(ctx,
             "the certificate of mapping %lld is still accepted (account %s); 'certstore map rm "
             "--all CERT.pem' removes every mapping of it",
             (long long)f->id, d.account);
}

static cs_status change_one(const cli_ctx *ctx, cs_db *db, cli_change change,
                            const cs_mapping_ref *ref, int report, int force)
{
    char source[CS_SOURCE_MAX];
    found_mapping f;
    cs_status st = find_mapping(db, ref, &f);
    if (st == CS_OK) {
        st = cli_owner_check(ctx, db, cs_mapping_source(db, ref, source), source, force);
        if (st != CS_OK)
            return st;
    }
    if (st == CS_OK)
        st = change == CLI_REMOVE ? cs_mapping_remove(db, ref)
                                  : cs_mapping_set_enabled(db, ref, change == CLI_ENABLE);
    if (st == CS_NOTFOUND)
        cli_fail(ctx, "no such mapping");
    else if (st != CS_OK)
        cli_store_fail(ctx, db);
    else {
        printf("%s mapping %lld %s -> ", cli_change_done(change), (long long)f.id,
               cs_kind_name(f.kind));
        cli_put_text(stdout, f.account);
        putchar('\n');
        if (report && change == CLI_REMOVE)
            report_same_certificate(ctx, db, &f);
    }
    return st;
}

static int run_map_change(cli_ctx *ctx, int argc, char **argv)
{
    cli_change change = cli_change_named(argv[0]);
    const char *kind_text = NULL;
    int all = 0, force = 0;
    const cli_option opts[] = {
        {"kind", &kind_text, NULL}, {"all", NULL, &all}, {"force", NULL, &force}, CLI_OPTIONS_END};
    const cli_option opts_no_all[] = {
        {"kind", &kind_text, NULL}, {"force", NULL, &force}, CLI_OPTIONS_END};
    cli_positional pos;
    cs_kind kind = CS_KIND_CERT;
    cs_mapping_ref ref;
    X509 *leaf = NULL;
    int rc = cli_parse(ctx, change == CLI_REMOVE ? opts : opts_no_all, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "REF")) != CLI_CONTINUE ||
        (rc = parse_kind(ctx, kind_text, &kind)) != CLI_CONTINUE)
        return rc;
    const char *text = pos.args[0];
    if (all && (kind_text != NULL || access(text, F_OK) != 0))
        return cli_usage_error(ctx, "--all takes a certificate file and no --kind");
    if (!all && (rc = resolve_ref(ctx, text, kind_text == NULL, kind, &ref)) != CLI_CONTINUE)
        return rc;
    /* A certificate file: after a removal, say what still admits it. */
    if (change == CLI_REMOVE && access(text, F_OK) == 0 &&
        (leaf = cli_read_one_cert(ctx, text)) == NULL)
        return CLI_FAIL;

    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        X509_free(leaf);
        return CLI_FAIL;
    }
    cs_status st = all ? remove_all_of_cert(ctx, db, leaf, text, force)
                       : change_one(ctx, db, change, &ref, leaf == NULL, force);
    if (st == CS_OK && leaf != NULL)
        report_still_admitted(ctx, db, leaf, text);
    X509_free(leaf);
    return cli_end_write(ctx, db, st);
}

static void print_mapping_json(const cs_mapping *m, const char *key)
{
    printf("{\"id\":%lld,\"kind\":\"%s\",\"key\":\"%s\",\"account\":", (long long)m->id,
           cs_kind_name(m->kind), key);
    cli_put_json_string(stdout, m->account);
    printf(",\"enabled\":%s,\"pin\":", m->enabled ? "true" : "false");
    cli_put_json_string(stdout, m->pin_fp);
    printf(",\"unbound\":%s", cs_mapping_unbound(m) ? "true" : "false");
    printf(",\"not_before\":");
    cli_put_json_time(stdout, m->not_before);
    printf(",\"not_after\":");
    cli_put_json_time(stdout, m->not_after);
    printf(",\"note\":");
    cli_put_json_string(stdout, m->note != NULL ? m->note : "");
    printf(",\"created\":");
    cli_put_json_time(stdout, m->created);
    printf(",\"source\":");
    cli_put_json_string(stdout, m->source);
    printf(",\"subject\":");
    cli_put_json_string(stdout, m->subject);
    putchar('}');
}

static int print_mapping(const cs_mapping *m, void *arg)
{
    char key[KEY_TEXT_MAX];
    cs_key_format(m->kind, &m->key, key, sizeof(key));
    if (cli_listing_row(arg)) {
        print_mapping_json(m, key);
        return 0;
    }
    printf("%lld %s %s account=", (long long)m->id, cs_kind_name(m->kind), key);
    cli_put_text(stdout, m->account);
    printf(" %s", m->enabled ? "enabled" : "disabled");
    if (m->pin_fp != NULL)
        printf(" pin=%s", m->pin_fp);
    if (m->not_before != CS_TIME_NONE) {
        printf(" not-before=");
        cli_put_text_time(stdout, m->not_before);
    }
    if (m->not_after != CS_TIME_NONE) {
        printf(" not-after=");
        cli_put_text_time(stdout, m->not_after);
    }
    if (m->note != NULL && *m->note != '\0') {
        printf(" note=");
        cli_put_text(stdout, m->note);
    }
    if (m->source != NULL) {
        printf(" source=");
        cli_put_text(stdout, m->source);
    }
    if (m->subject != NULL) {
        printf(" subject=");
        cli_put_text(stdout, m->subject);
    }
    if (cs_mapping_unbound(m))
        printf(" unbound: never matches, re-add with --pin");
    putchar('\n');
    return 0;
}

static cs_status list_mappings_of(cs_db *db, cli_listing *l, void *account)
{
    return cs_mapping_foreach(db, *(const char **)account, print_mapping, l);
}

static int run_map_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const char *account = NULL;
    const cli_option opts[] = {
        {"json", NULL, &l.json}, {"account", &account, NULL}, CLI_OPTIONS_END};

    /* The option is parsed inside cli_run_listing: hand over where it lands. */
    return cli_run_listing(ctx, opts, argc, argv, &l, list_mappings_of, &account,
                           "no such account");
}

/* ---- map show ------------------------------------------------------------- */

typedef struct {
    cs_db *db;
    int json;
    int shown;
    cs_status status;
} map_show;

static void show_kept_cert_text(const cs_mapping_cert *c)
{
    printf("  certificate: kept (SHA-256 %s)\n  subject: ", c->fp);
    cli_put_text(stdout, c->subject);
    printf("\n  issuer: ");
    cli_put_text(stdout, c->issuer);
    printf("\n  serial: %s\n  valid: ", c->serial);
    cli_put_text_time(stdout, c->not_before);
    printf(" to ");
    cli_put_text_time(stdout, c->not_after);
    putchar('\n');
}

static void show_kept_cert_json(const cs_mapping_cert *c)
{
    printf(",\"certificate\":{\"sha256\":\"%s\",\"subject\":", c->fp);
    cli_put_json_string(stdout, c->subject);
    printf(",\"issuer\":");
    cli_put_json_string(stdout, c->issuer);
    printf(",\"serial\":\"%s\",\"not_before\":", c->serial);
    cli_put_json_time(stdout, c->not_before);
    printf(",\"not_after\":");
    cli_put_json_time(stdout, c->not_after);
    putchar('}');
}

static int show_kept_cert(const cs_mapping_cert *c, void *arg)
{
    const map_show *ms = arg;
    if (ms->json)
        show_kept_cert_json(c);
    else
        show_kept_cert_text(c);
    return 0;
}

static void show_mapping_text(const cs_mapping *m, const char *key)
{
    printf("mapping %lld: %s %s -> ", (long long)m->id, cs_kind_name(m->kind), key);
    cli_put_text(stdout, m->account);
    printf(" (%s)\n  pin: %s\n  window: ", m->enabled ? "enabled" : "disabled",
           m->pin_fp != NULL            ? m->pin_fp
           : cs_kind_needs_pin(m->kind) ? "none (unbound)"
                                        : "any");
    if (m->not_before == CS_TIME_NONE && m->not_after == CS_TIME_NONE) {
        printf("open");
    } else {
        cli_put_text_time(stdout, m->not_before);
        printf(" to ");
        cli_put_text_time(stdout, m->not_after);
    }
    printf("\n  created: ");
    cli_put_text_time(stdout, m->created);
    if (*m->note != '\0') {
        printf("\n  note: ");
        cli_put_text(stdout, m->note);
    }
    putchar('\n');
}

static int show_mapping(const cs_mapping *m, void *arg)
{
    map_show *ms = arg;
    char key[KEY_TEXT_MAX];
    cs_key_format(m->kind, &m->key, key, sizeof(key));
    if (ms->json) {
        putchar(ms->shown > 0 ? ',' : '[');
        printf("{\"id\":%lld,\"kind\":\"%s\",\"key\":\"%s\",\"account\":", (long long)m->id,
               cs_kind_name(m->kind), key);
        cli_put_json_string(stdout, m->account);
        printf(",\"enabled\":%s,\"pin\":", m->enabled ? "true" : "false");
        cli_put_json_string(stdout, m->pin_fp);
        printf(",\"not_before\":");
        cli_put_json_time(stdout, m->not_before);
        printf(",\"not_after\":");
        cli_put_json_time(stdout, m->not_after);
        printf(",\"note\":");
        cli_put_json_string(stdout, m->note);
        printf(",\"created\":");
        cli_put_json_time(stdout, m->created);
    } else {
        show_mapping_text(m, key);
    }
    ms->shown++;
    cs_status st = cs_mapping_cert_get(ms->db, m->id, show_kept_cert, ms);
    if (st == CS_NOTFOUND) {
        if (ms->json)
            printf(",\"certificate\":null");
        else
            printf("  certificate: none kept (made from a key or an import)\n");
    } else if (st != CS_OK) {
        ms->status = st;
    }
    if (ms->json)
        putchar('}');
    return ms->status != CS_OK;
}

/* Every mapping of a certificate file: one per kind at most. */
static cs_status show_file(map_show *ms, const cli_ctx *ctx, const char *path, int any_kind,
                           cs_kind only)
{
    X509 *leaf = cli_read_one_cert(ctx, path);
    if (leaf == NULL)
        return CS_INVALID;
    for (int k = 0; k < CS_KIND_COUNT && ms->status == CS_OK; k++) {
        cs_mapping_ref ref = {.kind = (cs_kind)k};
        if (!any_kind && k != (int)only)
            continue;
        if (cs_key_from_cert(leaf, (cs_kind)k, &ref.key) != CS_OK)
            continue;
        cs_status st = cs_mapping_get(ms->db, &ref, show_mapping, ms);
        if (st != CS_OK && st != CS_NOTFOUND)
            ms->status = st;
    }
    X509_free(leaf);
    return ms->status;
}

static int run_map_show(cli_ctx *ctx, int argc, char **argv)
{
    const char *kind_text = NULL;
    map_show ms = {0};
    const cli_option opts[] = {
        {"kind", &kind_text, NULL}, {"json", NULL, &ms.json}, CLI_OPTIONS_END};
    cli_positional pos;
    cs_kind kind = CS_KIND_CERT;
    cs_mapping_ref ref;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "REF")) != CLI_CONTINUE ||
        (rc = parse_kind(ctx, kind_text, &kind)) != CLI_CONTINUE)
        return rc;
    const char *text = pos.args[0];
    int is_file = strspn(text, "0123456789") != strlen(text) && access(text, F_OK) == 0;
    if (!is_file && (rc = resolve_ref(ctx, text, kind_text == NULL, kind, &ref)) != CLI_CONTINUE)
        return rc;
    if ((ms.db = cli_open_read(ctx)) == NULL)
        return CLI_FAIL;
    cs_status st = is_file ? show_file(&ms, ctx, text, kind_text == NULL, kind)
                           : cs_mapping_get(ms.db, &ref, show_mapping, &ms);
    if (st == CS_OK)
        st = ms.status;
    if (st == CS_OK && ms.shown == 0)
        st = CS_NOTFOUND;
    if (ms.json && st == CS_OK)
        printf("]\n");
    if (st == CS_NOTFOUND)
        rc = cli_fail(ctx, "no such mapping");
    else if (st == CS_INVALID)
        rc = CLI_FAIL;
    else if (st != CS_OK)
        rc = cli_store_fail(ctx, ms.db);
    else
        rc = CLI_OK;
    cs_db_close(ms.db);
    return rc;
}

#define REF_HELP                                                                                   \
    "REF is a mapping id (all digits, see 'certstore map ls'), a certificate\n"                    \
    "file (PEM or DER; its key of --kind is used), a key in hex, or a unique\n"                    \
    "prefix of a key (at least 4 hex digits, of --kind or, without it, of any\n"                   \
    "kind; an ambiguous one is refused and its candidates listed; digits\n"                        \
    "alone are an id).\n"                                                                          \
    "\n"                                                                                           \
    "  --kind KIND   cert (default), issuer-serial, ski or spki\n"

#define FORCE_HELP                                                                                 \
    "  --force       change it even when a directory sync owns it (the next\n"                     \
    "                sync puts it back)\n"

const cli_command cli_map_subcommands[] = {
    {"add", "map a client certificate to an account", run_map_add,
     "Usage: certstore map add CERT.pem --account NAME [--kind KIND] [--pin FP]\n"
     "                         [--not-before T] [--not-after T] [--note TEXT]\n"
     "                         [--create-account] [--not-issued-before created]\n"
     "\n"
     "Map a client certificate (PEM or DER) to an account.\n"
     "\n"
     "  --account NAME     the account (must exist unless --create-account)\n"
     "  --kind KIND        what identifies the certificate:\n"
     "                       cert           SHA-256 of the certificate (default)\n"
     "                       issuer-serial  issuer name and serial number\n"
     "                       ski            Subject Key Identifier\n"
     "                       spki           SHA-256 of the public key (survives renewal)\n"
     "  --pin FP           the pinned CA the mapping is bound to: it applies only\n"
     "                     to certificates that CA issued. ski and issuer-serial\n"
     "                     mappings are always bound (a CA writes any SKI, a CA\n"
     "                     with the same DN can repeat a serial): without --pin,\n"
     "                     to the one pin whose key verifies CERT's signature\n"
     "                     (refused when none or several do). cert and spki\n"
     "                     mappings without --pin apply under every pin. FP may be a\n"
     "                     unique prefix of a pinned CA's fingerprint. A --pin CA\n"
     "                     that is pinned but did not issue CERT is refused (an\n"
     "                     spki mapping only warns: a certificate of that CA with\n"
     "                     the same key would match); one not pinned is warned of.\n"
     "  --not-before T     mapping valid from T (YYYY-MM-DD or RFC 3339)\n"
     "  --not-after T      mapping valid until T\n"
     "  --note TEXT        free text kept with the mapping\n"
     "  --create-account   create the account if it does not exist\n"
     "  --not-issued-before created\n"
     "                     reject certificates whose notBefore is earlier than\n"
     "                     this mapping (reason issued-before-mapping)\n"
     "\n"
     "A warning on stderr (the mapping is still added) says when it cannot\n"
     "admit anything now: CERT has expired, --not-after is in the past, or the\n"
     "window misses CERT's own validity.\n"},
    {"rm", "remove a mapping", run_map_change,
     "Usage: certstore map rm REF [--kind KIND] [--force]\n"
     "       certstore map rm --all CERT.pem [--force]\n"
     "\n"
     "Remove a mapping; say which (id, kind, account). Then list the mappings\n"
     "of the same certificate that remain ('still mapped: ...') and, when the\n"
     "policy still accepts it, by which mapping or rule ('still accepted: ...',\n"
     "and a warning on stderr). With a certificate file that is the policy\n"
     "on it and its issuing pin, rules included; with an id or key, the\n"
     "mappings made from the same certificate (same SHA-1), rules left out.\n"
     "\n" REF_HELP "  --all         remove every mapping that applies to CERT.pem (each of its\n"
     "                keys, bound to no pin or to its issuing pin), in one\n"
     "                transaction\n" FORCE_HELP},
    {"disable", "disable a mapping", run_map_change,
     "Usage: certstore map disable REF [--kind KIND] [--force]\n\nDisable a mapping: its "
     "certificate "
     "is rejected with mapping-disabled. Says which mapping (id, kind, account).\n\n" REF_HELP
         FORCE_HELP},
    {"enable", "enable a disabled mapping", run_map_change,
     "Usage: certstore map enable REF [--kind KIND] [--force]\n\nEnable a disabled "
     "mapping.\n\n" REF_HELP FORCE_HELP},
    {"show", "show a mapping and the certificate it was made from", run_map_show,
     "Usage: certstore map show REF [--kind KIND] [--json]\n"
     "\n"
     "Show a mapping: kind, key, account, state, pin, validity window, note,\n"
     "and the certificate it was made from (subject, issuer, serial, validity,\n"
     "SHA-256), which 'map add CERT' and IIS imports keep; a mapping made from a\n"
     "key (CSV, JSON or altSecurityIdentities import) keeps none. REF is a\n"
     "mapping id, a certificate file (every mapping of that certificate, one\n"
     "per kind, or the one of --kind), a key in hex or a unique prefix of one\n"
     "(at least 4 hex digits; an ambiguous one is refused and its candidates\n"
     "listed; digits alone are an id). Exits 1 when no mapping matches.\n"
     "\n"
     "  --kind KIND   cert, issuer-serial, ski or spki (default: any)\n"
     "  --json        one JSON array of objects\n"},
    {"ls", "list mappings", run_map_ls,
     "Usage: certstore map ls [--account NAME] [--json]\n"
     "\n"
     "List mappings, ordered by id, with the subject of the certificate a\n"
     "mapping was made from when it keeps one (see 'map show'). One that\n"
     "'certstore sync' made shows source=sync:BASE-DN (JSON: \"source\", null\n"
     "when made locally). A ski or issuer-serial mapping bound to no\n"
     "pin (made before binding was required) is flagged 'unbound: never\n"
     "matches, re-add with --pin' (JSON: \"unbound\":true): the policy never\n"
     "applies it.\n"
     "\n"
     "  --account NAME   only this account's mappings\n"
     "  --json           one JSON array of objects\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_map(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_map = {
    "map",
    "map client certificates to accounts (add, rm, disable, enable, show, ls)",
    run_map,
    "Usage: certstore map add CERT.pem --account NAME [--kind KIND] [--pin FP]\n"
    "                         [--not-before T] [--not-after T] [--note TEXT]\n"
    "                         [--create-account]\n"
    "       certstore map rm REF [--kind KIND] [--force]\n"
    "       certstore map rm --all CERT.pem [--force]\n"
    "       certstore map disable REF [--kind KIND] [--force]\n"
    "       certstore map enable REF [--kind KIND] [--force]\n"
    "       certstore map show REF [--kind KIND] [--json]\n"
    "       certstore map ls [--account NAME] [--json]\n"
    "\n"
    "Manage the mappings from client certificates to accounts.\n"
    "Run 'certstore map SUBCOMMAND --help' for details.\n",
};

static int run_map(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_map, cli_map_subcommands, argc, argv);
}
