/*
 * IIS client certificate mappings (applicationHost.config, web.config) ->
 * certstore mappings and rules.
 *
 * A small strict XML reader for the subset these files use: elements,
 * attributes in single or double quotes, the five predefined entities and
 * character references, comments, processing instructions, CDATA (skipped).
 * A DOCTYPE is refused: no entity expansion, no external anything.
 * Passwords are skipped by the reader itself: never copied, stored or printed.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cs_internal.h"

#define XML_DEPTH_MAX 32
#define XML_NAME_MAX 64
#define XML_ATTRS_MAX 16
#define IIS_COND_MAX 1024

typedef struct {
    char name[XML_NAME_MAX];
    char *value; /* decoded, malloc'd; NULL for a skipped password */
} xml_attr;

typedef struct {
    const char *p, *end;
    int64_t line;
    char stack[XML_DEPTH_MAX][XML_NAME_MAX];
    int depth;
    char msg[200];
} xml_reader;

typedef struct {
    char name[XML_NAME_MAX];
    xml_attr attrs[XML_ATTRS_MAX];
    int nattrs;
    int empty; /* <x/> */
    int closing;
} xml_tag;

static int xml_fail(xml_reader *x, const char *what)
{
    snprintf(x->msg, sizeof(x->msg), "%s", what);
    return -1;
}

static void advance(xml_reader *x, size_t n)
{
    for (size_t i = 0; i < n && x->p < x->end; i++, x->p++)
        if (*x->p == '\n')
            x->line++;
}

static int skip_until(xml_reader *x, const char *marker)
{
    size_t ml = strlen(marker);

    while (x->p + ml <= x->end) {
        if (memcmp(x->p, marker, ml) == 0) {
            advance(x, ml);
            return 0;
        }
        advance(x, 1);
    }
    return xml_fail(x, "unterminated comment, CDATA or processing instruction");
}

static void skip_space(xml_reader *x)
{
    while (x->p < x->end && isspace((unsigned char)*x->p))
        advance(x, 1);
}

static int is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':' || c == '-' || c == '.';
}

static int read_name(xml_reader *x, char out[XML_NAME_MAX])
{
    size_t n = 0;

    while (x->p < x->end && is_name_char(*x->p)) {
        if (n + 1 >= XML_NAME_MAX)
            return xml_fail(x, "name too long");
        out[n++] = *x->p;
        advance(x, 1);
    }
    out[n] = '\0';
    return n > 0 ? 0 : xml_fail(x, "expected a name");
}

/* Append the UTF-8 of code point cp. */
static size_t put_utf8(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int decode_entity(const char *s, const char *end, char *out, size_t *used, size_t *consumed)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
    const char *semi = memchr(s, ';', (size_t)(end - s));
    unsigned long cp;
    char *stop = NULL;

    if (semi == NULL || semi - s > 12)
        return 0;
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (strncmp(s + 1, named[i].name, strlen(named[i].name)) == 0) {
            out[(*used)++] = named[i].c;
            *consumed = strlen(named[i].name) + 1;
            return 1;
        }
    }
    if (s[1] != '#')
        return 0;
    cp = s[2] == 'x' ? strtoul(s + 3, &stop, 16) : strtoul(s + 2, &stop, 10);
    if (stop != semi || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *used += put_utf8(cp, out + *used);
    *consumed = (size_t)(semi - s) + 1;
    return 1;
}

/* A quoted value, decoded; *value NULL when skip (passwords are never copied). */
static int read_value(xml_reader *x, int skip, char **value)
{
    char quote;
    const char *start, *close;
    size_t used = 0;

    *value = NULL;
    if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
        return xml_fail(x, "attribute value not quoted");
    quote = *x->p;
    advance(x, 1);
    start = x->p;
    if ((close = memchr(start, quote, (size_t)(x->end - start))) == NULL)
        return xml_fail(x, "unterminated attribute value");
    if (memchr(start, '<', (size_t)(close - start)) != NULL)
        return xml_fail(x, "'<' in an attribute value");
    if (!skip) {
        if ((*value = malloc((size_t)(close - start) + 1)) == NULL)
            return xml_fail(x, "out of memory");
        for (const char *s = start; s < close;) {
            size_t consumed = 1;

            if (*s == '&' && !decode_entity(s, close, *value, &used, &consumed)) {
                free(*value);
                *value = NULL;
                return xml_fail(x, "bad entity reference");
            } else if (*s != '&') {
                (*value)[used++] = *s;
            }
            s += consumed;
        }
        (*value)[used] = '\0';
    }
    advance(x, (size_t)(close - start) + 1);
    return 0;
}

static void tag_free(xml_tag *t)
{
    for (int i = 0; i < t->nattrs; i++)
        free(t->attrs[i].value);
    t->nattrs = 0;
}

static int read_attrs(xml_reader *x, xml_tag *t)
{
    for (;;) {
        skip_space(x);
        if (x->p >= x->end)
            return xml_fail(x, "unterminated tag");
        if (*x->p == '>' || (*x->p == '/' && x->p + 1 < x->end && x->p[1] == '>')) {
            t->empty = *x->p == '/';
            advance(x, t->empty ? 2 : 1);
            return 0;
        }
        if (t->nattrs == XML_ATTRS_MAX)
            return xml_fail(x, "too many attributes");
        xml_attr *a = &t->attrs[t->nattrs];
        if (read_name(x, a->name) < 0)
            return -1;
        skip_space(x);
        if (x->p >= x->end || *x->p != '=')
            return xml_fail(x, "expected '=' after an attribute name");
        advance(x, 1);
        skip_space(x);
        if (read_value(x, strcasecmp(a->name, "password") == 0, &a->value) < 0)
            return -1;
        t->nattrs++;
    }
}

/* The next tag: 1 read, 0 end of input, -1 malformed. */
static int next_tag(xml_reader *x, xml_tag *t)
{
    memset(t, 0, sizeof(*t));
    for (;;) {
        const char *lt = memchr(x->p, '<', (size_t)(x->end - x->p));

        if (lt == NULL) {
            advance(x, (size_t)(x->end - x->p));
            return x->depth == 0 ? 0 : xml_fail(x, "unexpected end: elements left open");
        }
        advance(x, (size_t)(lt - x->p));
        if (x->end - x->p >= 4 && memcmp(x->p, "<!--", 4) == 0) {
            if (skip_until(x, "-->") < 0)
                return -1;
        } else if (x->end - x->p >= 9 && memcmp(x->p, "<![CDATA[", 9) == 0) {
            if (skip_until(x, "]]>") < 0)
                return -1;
        } else if (x->end - x->p >= 2 && x->p[1] == '?') {
            if (skip_until(x, "?>") < 0)
                return -1;
        } else if (x->end - x->p >= 2 && x->p[1] == '!') {
            return xml_fail(x, "DOCTYPE and declarations are not accepted");
        } else {
            break;
        }
    }
    advance(x, 1);
    if (x->p < x->end && *x->p == '/') {
        advance(x, 1);
        t->closing = 1;
        if (read_name(x, t->name) < 0)
            return -1;
        skip_space(x);
        if (x->p >= x->end || *x->p != '>')
            return xml_fail(x, "expected '>'");
        advance(x, 1);
        if (x->depth == 0 || strcmp(x->stack[x->depth - 1], t->name) != 0)
            return xml_fail(x, "closing tag does not match");
        x->depth--;
        return 1;
    }
    if (read_name(x, t->name) < 0 || read_attrs(x, t) < 0) {
        tag_free(t);
        return -1;
    }
    if (!t->empty) {
        if (x->depth == XML_DEPTH_MAX) {
            tag_free(t);
            return xml_fail(x, "elements nested too deep");
        }
        strcpy(x->stack[x->depth++], t->name);
    }
    return 1;
}

/* ---- the IIS mapping elements --------------------------------------------- */

typedef struct {
    cs_db *db;
    const char *pin_fp;
    cs_foreign_note_cb note;
    void *arg;
    cs_foreign_result *res;
    xml_reader x;
    /* The many-to-one mapping being read. */
    int in_many;
    int many_depth;
    int64_t many_line;
    char user[CS_ACCOUNT_MAX + 1];
    char name[128];
    int deny, enabled, refused, conditions;
    int case_mode; /* -1 unset, 0 insensitive, 1 sensitive, 2 mixed */
    char subject[IIS_COND_MAX], issuer[IIS_COND_MAX];
    int64_t position;
} iis_ctx;

static const char *attr(const xml_tag *t, const char *name)
{
    for (int i = 0; i < t->nattrs; i++)
        if (strcmp(t->attrs[i].name, name) == 0)
            return t->attrs[i].value;
    return NULL;
}

static int attr_true(const xml_tag *t, const char *name, int dflt)
{
    const char *v = attr(t, name);

    if (v == NULL)
        return dflt;
    return strcasecmp(v, "true") == 0;
}

static void iis_note(iis_ctx *c, int64_t line, const char *why)
{
    c->res->refused++;
    if (c->note != NULL)
        c->note(line, why, c->arg);
}

static int64_t base64_decode(const char *in, unsigned char **out)
{
    size_t len = strlen(in), n = 0;
    char *clean = malloc(len + 1);
    int decoded;

    *out = NULL;
    if (clean == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)in[i]))
            clean[n++] = in[i];
    clean[n] = '\0';
    if (n == 0 || n % 4 != 0 || (*out = malloc(n / 4 * 3 + 1)) == NULL) {
        free(clean);
        return -1;
    }
    decoded = EVP_DecodeBlock(*out, (unsigned char *)clean, (int)n);
    if (decoded >= 0)
        decoded -= (n >= 1 && clean[n - 1] == '=') + (n >= 2 && clean[n - 2] == '=');
    free(clean);
    return decoded;
}

static cs_status one_to_one(iis_ctx *c, const xml_tag *t)
{
    const char *b64 = attr(t, "certificate"), *user = attr(t, "userName");
    unsigned char *der = NULL;
    const unsigned char *p;
    int64_t len, id = 0, existing = 0;
    X509 *cert = NULL;
    cs_mapping_spec spec;
    cs_status status;

    if (b64 == NULL || user == NULL || !cs_account_name_valid(user))
        return cs_fail(c->db, CS_INVALID,
                       "oneToOneMappings: add needs certificate and a valid "
                       "userName");
    if ((len = base64_decode(b64, &der)) <= 0)
        status = cs_fail(c->db, CS_INVALID, "certificate is not base64");
    else if (p = der, (cert = d2i_X509(NULL, &p, (long)len)) == NULL || p != der + len)
        status = cs_fail(c->db, CS_INVALID, "certificate is not one DER certificate");
    else
        status = CS_OK;
    free(der);
    memset(&spec, 0, sizeof(spec));
    if (status == CS_OK)
        status = cs_mapping_spec_from_cert(&spec, cert, CS_KIND_CERT);
    X509_free(cert);
    if (status != CS_OK)
        return status;
    spec.account = user;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    spec.note = "imported from IIS oneToOneMappings";
    if (cs_account_id(c->db, user, &existing) == CS_NOTFOUND)
        c->res->accounts_created++;
    status = cs_mapping_add(c->db, &spec, 1, &id);
    if (status == CS_OK && !attr_true(t, "enabled", 1)) {
        cs_mapping_ref ref = {.id = id};
        status = cs_mapping_set_enabled(c->db, &ref, 0);
    }
    if (status == CS_OK)
        c->res->mappings++;
    return status;
}

static void many_begin(iis_ctx *c, const xml_tag *t)
{
    const char *user = attr(t, "userName"), *mode = attr(t, "permissionMode");
    const char *name = attr(t, "name");

    c->in_many = 1;
    c->many_depth = c->x.depth;
    c->many_line = c->x.line;
    c->position++;
    snprintf(c->user, sizeof(c->user), "%s", user ? user : "");
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "(unnamed)");
    c->deny = mode != NULL && strcasecmp(mode, "Deny") == 0;
    c->enabled = attr_true(t, "enabled", 1);
    c->refused = mode != NULL && !c->deny && strcasecmp(mode, "Allow") != 0;
    c->conditions = 0;
    c->case_mode = -1;
    c->subject[0] = c->issuer[0] = '\0';
    if (c->refused)
        iis_note(c, c->many_line, "permissionMode is neither Allow nor Deny; mapping skipped");
}

static const char *sub_field_attr(const char *sub)
{
    static const char *const known[] = {"CN", "O", "OU", "L", "S", "ST", "C", "E", "DC"};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(sub, known[i]) == 0)
            return known[i];
    return NULL;
}

/* IIS patterns know only '*' (and '?'); every other character is literal. */
static int append_condition(char *cond, const char *attr_name, const char *pattern)
{
    size_t used = strlen(cond);
    char buf[IIS_COND_MAX];
    size_t n = 0;

    for (const char *s = pattern; *s != '\0'; s++) {
        if (n + 4 >= sizeof(buf))
            return 0;
        if (strchr(",+\"\\<>;=#", *s) != NULL)
            buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n] = '\0';
    return snprintf(cond + used, IIS_COND_MAX - used, "%s%s=%s", used ? "," : "", attr_name, buf) <
           (int)(IIS_COND_MAX - used);
}

static void many_rule(iis_ctx *c, const xml_tag *t)
{
    const char *field = attr(t, "certificateField"), *sub = attr(t, "certificateSubField");
    const char *match = attr(t, "matchCriteria"), *attr_name = sub ? sub_field_attr(sub) : NULL;
    int sensitive = attr_true(t, "compareCaseSensitive", 1);
    char *cond;

    if (c->refused)
        return;
    if (field == NULL || match == NULL || *match == '\0' || attr_name == NULL ||
        (strcasecmp(field, "Subject") != 0 && strcasecmp(field, "Issuer") != 0)) {
        c->refused = 1;
        iis_note(c, c->x.line,
                 "a rule has a certificateField/SubField/matchCriteria certstore "
                 "cannot express; mapping skipped");
        return;
    }
    cond = strcasecmp(field, "Subject") == 0 ? c->subject : c->issuer;
    if (!append_condition(cond, attr_name, match)) {
        c->refused = 1;
        iis_note(c, c->x.line, "rules too long; mapping skipped");
        return;
    }
    c->case_mode = c->case_mode == -1 || c->case_mode == sensitive ? sensitive : 2;
    c->conditions++;
}

static cs_status many_end(iis_ctx *c)
{
    cs_rule_spec r = {.action = c->deny ? CS_RULE_DENY : CS_RULE_ALLOW,
                      .account = c->deny ? NULL : c->user,
                      .pin_fp = c->pin_fp,
                      .priority = 10 * c->position,
                      .subject = c->subject,
                      .issuer = c->issuer,
                      .case_sensitive = c->case_mode == 1,
                      .note = c->name};
    int64_t id = 0, existing = 0;
    cs_status status;

    c->in_many = 0;
    if (c->refused)
        return CS_OK;
    if (c->conditions == 0) {
        iis_note(c, c->many_line,
                 "a many-to-one mapping without rules would match every "
                 "certificate of the CA; not imported");
        return CS_OK;
    }
    if (c->case_mode == 2) {
        iis_note(c, c->many_line, "rules mix compareCaseSensitive true and false; not imported");
        return CS_OK;
    }
    if (c->pin_fp == NULL)
        return cs_fail(c->db, CS_INVALID,
                       "manyToOneMappings need --pin (IIS does not name the "
                       "issuing CA)");
    if (!c->deny && cs_account_id(c->db, c->user, &existing) == CS_NOTFOUND)
        c->res->accounts_created++;
    status = cs_rule_add(c->db, &r, 1, &id);
    if (status == CS_OK && !c->enabled)
        status = cs_rule_set_enabled(c->db, id, 0);
    if (status == CS_OK)
        c->res->rules++;
    return status;
}

static cs_status handle_tag(iis_ctx *c, const xml_tag *t)
{
    const xml_reader *x = &c->x;
    int depth_after_open = x->depth - (t->empty ? 0 : 1);

    if (t->closing) {
        if (c->in_many && x->depth < c->many_depth)
            return many_end(c);
        return CS_OK;
    }
    if (strcmp(t->name, "add") != 0)
        return CS_OK;
    /* Where the element sits: its parent is the innermost open element. */
    if (depth_after_open >= 2 && strcmp(x->stack[depth_after_open - 1], "oneToOneMappings") == 0 &&
        strcmp(x->stack[depth_after_open - 2], "iisClientCertificateMappingAuthentication") == 0)
        return one_to_one(c, t);
    if (depth_after_open >= 2 && strcmp(x->stack[depth_after_open - 1], "manyToOneMappings") == 0 &&
        strcmp(x->stack[depth_after_open - 2], "iisClientCertificateMappingAuthentication") == 0) {
        many_begin(c, t);
        return t->empty ? many_end(c) : CS_OK;
    }
    if (c->in_many && depth_after_open >= 1 && strcmp(x->stack[depth_after_open - 1], "rules") == 0)
        many_rule(c, t);
    return CS_OK;
}

cs_status cs_import_iis(cs_db *db, const char *data, size_t len, const char *pin_fp,
                        cs_foreign_note_cb note, void *arg, cs_foreign_result *res)
{
    iis_ctx *c;
    xml_tag t;
    int r = 0;
    cs_status status = cs_require_write(db);

    memset(res, 0, sizeof(*res));
    if (status != CS_OK)
        return status;
    if (memchr(data, '\0', len) != NULL)
        return cs_fail(db, CS_INVALID, "not an XML file (NUL byte)");
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return cs_fail(db, CS_ERR, "out of memory");
    c->db = db;
    c->pin_fp = pin_fp;
    c->note = note;
    c->arg = arg;
    c->res = res;
    c->x.p = data;
    c->x.end = data + len;
    c->x.line = 1;
    while (status == CS_OK && (r = next_tag(&c->x, &t)) == 1) {
        status = handle_tag(c, &t);
        tag_free(&t);
    }
    if (status == CS_OK && r < 0)
        status = cs_fail(db, CS_INVALID, "%s", c->x.msg);
    if (status != CS_OK)
        res->bad_line = c->x.line;
    free(c);
    return status;
}
