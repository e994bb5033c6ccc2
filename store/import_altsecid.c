/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Active Directory altSecurityIdentities -> mappings and rules.
 *
 * Strong forms (KB5014754) become one-to-one mappings:
 *   X509:<I>IssuerDN<SR>serial (serial hex in reversed byte order)
 *   X509:<SKI>hex (names no issuer: bound to the pin_fp given, refused without)
 * X509:<SHA1-PUKEY>hex is refused: certstore's key hashes are SHA-256 and a
 * SHA-1 cannot be turned into one; map the certificate itself instead.
 * Weak forms become rules, and only when asked (allow_weak):
 *   X509:<I>IssuerDN<S>SubjectDN, X509:<S>SubjectDN, X509:<RFC822>email
 * AD compares the whole subject, so <S> becomes an exact subject condition
 * (subject_exact), in the order of the <I> DN the same line shows (most
 * specific first when there is no <I> to tell). An empty <S> or <RFC822>
 * (AD: only certificates whose subject, or email, is empty) is refused:
 * a rule cannot say "empty", and a rule without it would map them all.
 *
 * AD writes DNs most specific first ("CN=CA,DC=corp,DC=example"). The issuer
 * is found by comparing parsed attribute sequences with the pins' subjects
 * (in either order), and the issuer-serial key is computed from that pin's
 * subject DER, never from a re-encoded string.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cs_internal.h"

#define SHA256_LEN 32
#define LINE_MAX_BYTES 4096
#define PINS_MAX 256

typedef struct {
    X509 *cert;
    char fp[CS_FP_HEX_LEN + 1];
} loaded_pin;

struct cs_altsec {
    cs_db *db;
    const cs_altsec_sink *sink; /* NULL: add to the store (import) */
    const char *pin_fp;         /* for weak forms without an issuer */
    int allow_weak;
    cs_foreign_note_cb note;
    void *arg;
    cs_foreign_result *res;
    cs_foreign_writer *writer; /* sink NULL: what adds to the store */
    loaded_pin pins[PINS_MAX];
    int npins;
    int64_t line;
};
typedef struct cs_altsec altsec_ctx;

static int collect_pin(const cs_pin *pin, void *arg)
{
    altsec_ctx *c = arg;
    const unsigned char *p = pin->der;

    if (c->npins == PINS_MAX)
        return 1;
    c->pins[c->npins].cert = d2i_X509(NULL, &p, (long)pin->der_len);
    if (c->pins[c->npins].cert != NULL) {
        memcpy(c->pins[c->npins].fp, pin->fp, sizeof(pin->fp));
        c->npins++;
    }
    return 0;
}

static void free_pins(altsec_ctx *c)
{
    for (int i = 0; i < c->npins; i++)
        X509_free(c->pins[i].cert);
    c->npins = 0;
}

__attribute__((format(printf, 2, 3))) static void refuse(altsec_ctx *c, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->res->refused++;
    if (c->note != NULL)
        c->note(c->line, why, c->arg);
}

/* AD has no glob: make '*' and '?' literal for the DN parser. */
static int quote_globs(const char *dn, size_t len, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (o + 3 >= outlen)
            return 0;
        if (dn[i] == '\\' && i + 1 < len) {
            out[o++] = dn[i++];
            out[o++] = dn[i];
            continue;
        }
        if (dn[i] == '*' || dn[i] == '?')
            out[o++] = '\\';
        out[o++] = dn[i];
    }
    out[o] = '\0';
    return 1;
}

static int entry_equals(const X509_NAME_ENTRY *e, const cs_dn_pair *pair)
{
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
    unsigned char *utf8 = NULL;
    int n, ok;

    if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != pair->nid)
        return 0;
    if ((n = ASN1_STRING_to_UTF8(&utf8, v)) < 0)
        return 0;
    ok = cs_utf8_valid(utf8, (size_t)n) && cs_glob_match(pair->glob, (char *)utf8, (size_t)n, 0);
    OPENSSL_free(utf8);
    return ok;
}

/* The whole name, attribute by attribute, forwards or backwards. */
static int name_equals(const X509_NAME *name, const cs_dn_pair *pairs, int n, int reversed)
{
    if (X509_NAME_entry_count(name) != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (!entry_equals(X509_NAME_get_entry(name, reversed ? n - 1 - i : i), &pairs[i]))
            return 0;
    return 1;
}

/* The one pin whose subject is this AD issuer DN; NULL (refused) otherwise. */
static const loaded_pin *find_issuer_pin(altsec_ctx *c, const char *dn, size_t len)
{
    char quoted[LINE_MAX_BYTES * 2], msg[200];
    cs_dn_pair pairs[CS_DN_PAIRS_MAX];
    const loaded_pin *found = NULL;
    int n, matches = 0;

    if (!quote_globs(dn, len, quoted, sizeof(quoted)) ||
        (n = cs_dn_parse(quoted, pairs, CS_DN_PAIRS_MAX, msg, sizeof(msg))) < 0) {
        refuse(c, "issuer DN cannot be parsed: %s", msg);
        return NULL;
    }
    for (int i = 0; i < c->npins; i++) {
        const X509_NAME *subject = X509_get_subject_name(c->pins[i].cert);

        if (name_equals(subject, pairs, n, 1) || name_equals(subject, pairs, n, 0)) {
            matches++;
            found = &c->pins[i];
        }
    }
    if (matches == 0)
        refuse(c, "%s: no pinned CA has this subject (pin the issuing CA first)", quoted);
    else if (matches > 1)
        refuse(c, "%s: several pinned CAs have this subject; cannot tell which one issued it",
               quoted);
    return matches == 1 ? found : NULL;
}

static int hex_bytes(const char *hex, size_t len, unsigned char *out, size_t max, size_t *n)
{
    if (len == 0 || len % 2 != 0 || len / 2 > max)
        return 0;
    for (size_t i = 0; i < len; i += 2) {
        char b[3] = {hex[i], hex[i + 1], '\0'};

        if (!isxdigit((unsigned char)b[0]) || !isxdigit((unsigned char)b[1]))
            return 0;
        out[i / 2] = (unsigned char)strtoul(b, NULL, 16);
    }
    *n = len / 2;
    return 1;
}

static cs_status add_mapping(altsec_ctx *c, const char *account, cs_kind kind, const cs_key *key,
                             const char *pin_fp)
{
    cs_mapping_spec spec;

    memset(&spec, 0, sizeof(spec));
    spec.kind = kind;
    spec.key = *key;
    spec.account = account;
    spec.pin_fp = pin_fp;
    spec.not_before = spec.not_after = spec.cert_not_after = CS_TIME_NONE;
    spec.note = "imported from altSecurityIdentities";
    if (c->sink != NULL)
        return c->sink->mapping(&spec, c->sink->arg);
    return cs_foreign_put_mapping(c->writer, &spec, 1, c->line);
}

/* <I>issuer<SR>serial: SHA-256 of the pin's subject DER || serial magnitude. */
static cs_status issuer_serial(altsec_ctx *c, const char *account, const char *issuer,
                               size_t issuer_len, const char *serial_hex, size_t serial_len)
{
    unsigned char serial[CS_KEY_MAX];
    const unsigned char *der = NULL;
    size_t n = 0, der_len = 0, start = 0;
    unsigned int md_len = 0;
    const loaded_pin *pin;
    cs_key key;

    if (!hex_bytes(serial_hex, serial_len, serial, CS_KEY_MAX - SHA256_LEN, &n))
        return cs_fail(c->db, CS_INVALID, "<SR> is not a hex serial number");
    if ((pin = find_issuer_pin(c, issuer, issuer_len)) == NULL)
        return CS_OK; /* refused and reported */
    if (X509_NAME_get0_der(X509_get_subject_name(pin->cert), &der, &der_len) != 1 ||
        EVP_Digest(der, der_len, key.bytes, &md_len, EVP_sha256(), NULL) != 1)
        return cs_fail(c->db, CS_ERR, "cannot hash the issuer name");
    /* AD keeps the serial least significant byte first. */
    for (size_t i = 0; i < n / 2; i++) {
        unsigned char t = serial[i];
        serial[i] = serial[n - 1 - i];
        serial[n - 1 - i] = t;
    }
    while (start < n && serial[start] == 0)
        start++;
    memcpy(key.bytes + SHA256_LEN, serial + start, n - start);
    key.len = SHA256_LEN + n - start;
    return add_mapping(c, account, CS_KIND_ISSUER_SERIAL, &key, pin->fp);
}

/* <SKI> names no issuer, and any pinned CA can write any SKI: bound to --pin or refused. */
static cs_status ski(altsec_ctx *c, const char *account, const char *hex, size_t len)
{
    char pin_fp[CS_FP_HEX_LEN + 1];
    cs_key key;
    size_t n = 0;

    if (!hex_bytes(hex, len, key.bytes, CS_KEY_MAX, &n))
        return cs_fail(c->db, CS_INVALID, "<SKI> is not hex");
    if (c->pin_fp == NULL || !cs_fp_normalise(c->pin_fp, pin_fp)) {
        refuse(c, "<SKI> names no issuer: give --pin FP for the CA that issued it");
        return CS_OK;
    }
    key.len = n;
    return add_mapping(c, account, CS_KIND_SKI, &key, pin_fp);
}

static cs_status add_weak_rule(altsec_ctx *c, const char *account, const char *pin_fp,
                               const char *subject, const char *san)
{
    cs_rule_spec r = {.action = CS_RULE_ALLOW,
                      .account = account,
                      .pin_fp = pin_fp,
                      .priority = CS_RULE_PRIORITY_DEFAULT,
                      .subject = subject,
                      .subject_exact = subject != NULL,
                      .san = san,
                      .note = "imported from altSecurityIdentities (weak)"};

    if (c->sink != NULL)
        return c->sink->rule(&r, c->sink->arg);
    return cs_foreign_put_rule(c->writer, &r, 1, c->line);
}

/*
 * Was the <I> DN written most specific first (as RFC 4514 and openssl
 * print it) rather than in the certificate's own order? 1 unless it reads
 * only the certificate's way; a name that reads the same both ways keeps
 * the default.
 */
static int issuer_written_rfc4514(const loaded_pin *pin, const char *dn, size_t len)
{
    char quoted[LINE_MAX_BYTES * 2], msg[200];
    cs_dn_pair pairs[CS_DN_PAIRS_MAX];
    const X509_NAME *subject = X509_get_subject_name(pin->cert);
    int n;

    if (!quote_globs(dn, len, quoted, sizeof(quoted)) ||
        (n = cs_dn_parse(quoted, pairs, CS_DN_PAIRS_MAX, msg, sizeof(msg))) < 0)
        return 1;
    return name_equals(subject, pairs, n, 1) || !name_equals(subject, pairs, n, 0);
}

/* "A,B+C" -> "C+B,A": the attributes last first, each separator kept between the same two. */
static int reverse_dn(const char *dn, char *out, size_t outlen)
{
    const char *start[CS_DN_PAIRS_MAX];
    size_t len[CS_DN_PAIRS_MAX], o = 0;
    char sep[CS_DN_PAIRS_MAX];
    int n = 0;

    start[0] = dn;
    for (const char *s = dn;; s++) {
        if (*s == '\\' && s[1] != '\0') {
            s++;
            continue;
        }
        if (*s != '\0' && *s != ',' && *s != '+')
            continue;
        len[n] = (size_t)(s - start[n]);
        if (*s == '\0')
            break;
        if (++n == CS_DN_PAIRS_MAX)
            return 0;
        sep[n] = *s;
        start[n] = s + 1;
    }
    for (int k = n; k >= 0; k--) {
        if (o + len[k] + 2 > outlen)
            return 0;
        memcpy(out + o, start[k], len[k]);
        o += len[k];
        if (k > 0)
            out[o++] = sep[k];
    }
    out[o] = '\0';
    return 1;
}

/* Weak forms: <I>..<S>.., <S>.., <RFC822>.. */
static cs_status weak(altsec_ctx *c, const char *account, const char *form, const char *issuer,
                      size_t issuer_len, const char *value, size_t value_len, int is_email)
{
    char cond[LINE_MAX_BYTES * 2 + 8], pin_fp[CS_FP_HEX_LEN + 1];
    char reversed[LINE_MAX_BYTES * 2 + 8];
    const loaded_pin *pin = NULL;

    while (value_len > 0 && isspace((unsigned char)value[0]))
        value++, value_len--;
    while (value_len > 0 && isspace((unsigned char)value[value_len - 1]))
        value_len--;
    if (value_len == 0) {
        refuse(c,
               "%s is empty: AD maps with it only certificates whose %s is empty, which a "
               "certstore rule cannot express (it would map every certificate of the CA); "
               "map those certificates one-to-one instead",
               form, is_email ? "email" : "subject");
        return CS_OK;
    }
    if (!c->allow_weak) {
        refuse(c, "%s is a weak mapping (KB5014754); use --allow-weak to import it as a rule",
               form);
        return CS_OK;
    }
    if (issuer != NULL && (pin = find_issuer_pin(c, issuer, issuer_len)) == NULL)
        return CS_OK;
    if (pin == NULL && (c->pin_fp == NULL || !cs_fp_normalise(c->pin_fp, pin_fp))) {
        refuse(c, "%s names no issuer: give --pin FP for the CA whose certificates it maps", form);
        return CS_OK;
    }
    if (is_email) {
        snprintf(cond, sizeof(cond), "email:");
        if (!quote_globs(value, value_len, cond + 6, sizeof(cond) - 6))
            return cs_fail(c->db, CS_INVALID, "value too long");
    } else if (!quote_globs(value, value_len, cond, sizeof(cond))) {
        return cs_fail(c->db, CS_INVALID, "value too long");
    } else if (pin != NULL && !issuer_written_rfc4514(pin, issuer, issuer_len)) {
        /* The line is in the certificate's order: the rule keeps RFC 4514's. */
        if (!reverse_dn(cond, reversed, sizeof(reversed)))
            return cs_fail(c->db, CS_INVALID, "<S>: more than %d attributes", CS_DN_PAIRS_MAX);
        memcpy(cond, reversed, strlen(reversed) + 1);
    }
    return add_weak_rule(c, account, pin != NULL ? pin->fp : pin_fp, is_email ? NULL : cond,
                         is_email ? cond : NULL);
}

/* Position of "<TAG>" (case-insensitive) in [s, end), or NULL. */
static const char *find_tag(const char *s, const char *end, const char *tag)
{
    size_t tl = strlen(tag);

    for (; s + tl <= end; s++)
        if (strncasecmp(s, tag, tl) == 0)
            return s;
    return NULL;
}

static int starts_with(const char *s, const char *end, const char *prefix)
{
    size_t n = strlen(prefix);

    return (size_t)(end - s) >= n && strncasecmp(s, prefix, n) == 0;
}

static cs_status one_value(altsec_ctx *c, const char *account, const char *v, const char *end)
{
    const char *tag;

    if (!starts_with(v, end, "X509:"))
        return cs_fail(c->db, CS_INVALID, "value does not start with X509:");
    v += 5;
    if (starts_with(v, end, "<SKI>"))
        return ski(c, account, v + 5, (size_t)(end - v - 5));
    if (starts_with(v, end, "<SHA1-PUKEY>")) {
        refuse(c,
               "%s: a SHA-1 cannot become a SHA-256 key; map the certificate itself "
               "(certstore map add CERT --kind spki)",
               "<SHA1-PUKEY>");
        return CS_OK;
    }
    if (starts_with(v, end, "<RFC822>"))
        return weak(c, account, "<RFC822>", NULL, 0, v + 8, (size_t)(end - v - 8), 1);
    if (starts_with(v, end, "<S>"))
        return weak(c, account, "<S>", NULL, 0, v + 3, (size_t)(end - v - 3), 0);
    if (starts_with(v, end, "<I>")) {
        const char *issuer = v + 3;

        if ((tag = find_tag(issuer, end, "<SR>")) != NULL)
            return issuer_serial(c, account, issuer, (size_t)(tag - issuer), tag + 4,
                                 (size_t)(end - tag - 4));
        if ((tag = find_tag(issuer, end, "<S>")) != NULL)
            return weak(c, account, "<I>..<S>..", issuer, (size_t)(tag - issuer), tag + 3,
                        (size_t)(end - tag - 3), 0);
        return cs_fail(c->db, CS_INVALID, "<I> without <SR> or <S>");
    }
    return cs_fail(c->db, CS_INVALID, "unknown altSecurityIdentities form");
}

static cs_status one_line(altsec_ctx *c, const char *line, size_t len)
{
    char account[CS_ACCOUNT_MAX + 1];
    const char *tab = memchr(line, '\t', len), *end = line + len;

    while (end > line && (end[-1] == '\r' || end[-1] == ' '))
        end--;
    if (line == end || line[0] == '#')
        return CS_OK;
    if (tab == NULL || tab == line || (size_t)(tab - line) > CS_ACCOUNT_MAX)
        return cs_fail(c->db, CS_INVALID, "expected ACCOUNT<TAB>X509:...");
    memcpy(account, line, (size_t)(tab - line));
    account[tab - line] = '\0';
    if (!cs_account_name_valid(account))
        return cs_fail(c->db, CS_INVALID, "invalid account name");
    return one_value(c, account, tab + 1, end);
}

cs_status cs_altsec_open(cs_db *db, const char *pin_fp, int allow_weak, cs_foreign_note_cb note,
                         void *arg, const cs_altsec_sink *sink, cs_foreign_result *res,
                         cs_altsec **out)
{
    altsec_ctx *c;
    cs_status status;

    *out = NULL;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return cs_fail(db, CS_ERR, "out of memory");
    *c = (altsec_ctx){.db = db,
                      .sink = sink,
                      .pin_fp = pin_fp,
                      .allow_weak = allow_weak,
                      .note = note,
                      .arg = arg,
                      .res = res};
    status = cs_pin_foreach(db, collect_pin, c);
    if (status != CS_OK) {
        cs_altsec_close(c);
        return status;
    }
    *out = c;
    return CS_OK;
}

cs_status cs_altsec_value(cs_altsec *c, int64_t where, const char *account, const char *value,
                          size_t len)
{
    c->line = where;
    if (len > LINE_MAX_BYTES || memchr(value, '\0', len) != NULL)
        return cs_fail(c->db, CS_INVALID, "value too long or holds a NUL byte");
    return one_value(c, account, value, value + len);
}

void cs_altsec_close(cs_altsec *c)
{
    if (c == NULL)
        return;
    free_pins(c);
    cs_foreign_writer_free(c->writer);
    free(c);
}

cs_status cs_import_altsecid(cs_db *db, const char *data, size_t len, const char *pin_fp,
                             int allow_weak, cs_foreign_note_cb note, void *arg,
                             cs_foreign_result *res)
{
    return cs_import_altsecid_ex(db, data, len, pin_fp, allow_weak, NULL, note, arg, res);
}

cs_status cs_import_altsecid_ex(cs_db *db, const char *data, size_t len, const char *pin_fp,
                                int allow_weak, const cs_import_opts *opts, cs_foreign_note_cb note,
                                void *arg, cs_foreign_result *res)
{
    altsec_ctx *c = NULL;
    cs_status status = cs_require_write(db);
    const char *p = data, *end = data + len;

    memset(res, 0, sizeof(*res));
    if (status != CS_OK)
        return status;
    status = cs_altsec_open(db, pin_fp, allow_weak, note, arg, NULL, res, &c);
    if (status == CS_OK)
        status = cs_foreign_writer_new(db, opts != NULL && opts->update, res, &c->writer);
    if (status != CS_OK) {
        cs_altsec_close(c);
        return status;
    }
    while (status == CS_OK && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        c->line++;
        if (n > LINE_MAX_BYTES || memchr(p, '\0', n) != NULL)
            status = cs_fail(db, CS_INVALID, "line too long or holds a NUL byte");
        else
            status = one_line(c, p, n);
        p += n + (nl != NULL);
    }
    if (status != CS_OK)
        res->bad_line = c->line;
    cs_altsec_close(c);
    return status;
}
