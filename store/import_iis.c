/* SPDX-License-Identifier: Apache-2.0 */
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

/*
 * The file is read whole before anything is written, because what IIS
 * enforces at a path depends on all of it: the section at the file's root
 * and in every <location> above the path, in that order, each switch
 * (enabled, oneToOne..Enabled, manyToOne..Enabled) overriding its parent's
 * and each collection edited by <add>, <remove> and <clear/>.
 */

typedef struct {
    int64_t line;
    char *user;
    char *certificate; /* base64 as written */
    int enabled;
} iis_one;

typedef struct {
    int64_t line;
    char name[128];
    char user[CS_ACCOUNT_MAX + 1];
    int deny, enabled, conditions;
    int case_mode;       /* -1 unset, 0 insensitive, 1 sensitive, 2 mixed */
    const char *refused; /* why certstore cannot express it; NULL if it can */
    char subject[IIS_COND_MAX], issuer[IIS_COND_MAX];
} iis_many;

typedef enum { OP_ADD, OP_REMOVE, OP_CLEAR } iis_op_kind;

/* One edit of a collection, in file order. */
typedef struct {
    iis_op_kind kind;
    int many; /* manyToOneMappings, else oneToOneMappings */
    int64_t line;
    iis_one one; /* OP_ADD to oneToOneMappings */
    iis_many *m; /* OP_ADD to manyToOneMappings */
    char *key;   /* OP_REMOVE: certificate or name */
} iis_op;

/* One <iisClientCertificateMappingAuthentication> and the <location> it sits in. */
typedef struct {
    char *scope;                            /* "" at the file's root */
    int enabled, one_enabled, many_enabled; /* -1 when not given here */
    iis_op *ops;
    size_t nops, cap;
} iis_section;

typedef struct {
    cs_db *db;
    const char *pin_fp;
    cs_foreign_note_cb note;
    void *arg;
    cs_foreign_result *res;
    cs_foreign_writer *writer;
    xml_reader x;
    char scope[512];
    int location_depth; /* depth inside the open <location>, 0 when none */
    iis_section *sections;
    size_t nsections;
    iis_section *section; /* the one being read, NULL outside */
    int section_depth;
    iis_many *many; /* the many-to-one mapping being read */
    int many_depth;
    int64_t error_line;
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

static cs_status iis_fail_at(iis_ctx *c, int64_t line, cs_status status, const char *why)
{
    c->error_line = line;
    return cs_fail(c->db, status, "%s", why);
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

/* Base64 texts equal but for white space (IIS wraps them at will). */
static int same_base64(const char *a, const char *b)
{
    for (;;) {
        while (isspace((unsigned char)*a))
            a++;
        while (isspace((unsigned char)*b))
            b++;
        if (*a != *b)
            return 0;
        if (*a == '\0')
            return 1;
        a++, b++;
    }
}

/* ---- reading: sections and their collection edits ------------------------- */

static void op_free(iis_op *op)
{
    free(op->one.user);
    free(op->one.certificate);
    free(op->m);
    free(op->key);
}

static void sections_free(iis_ctx *c)
{
    for (size_t i = 0; i < c->nsections; i++) {
        for (size_t j = 0; j < c->sections[i].nops; j++)
            op_free(&c->sections[i].ops[j]);
        free(c->sections[i].ops);
        free(c->sections[i].scope);
    }
    free(c->sections);
    free(c->many);
}

static cs_status push_op(iis_ctx *c, iis_op *op)
{
    iis_section *s = c->section;

    if (s->nops == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        iis_op *ops = realloc(s->ops, cap * sizeof(*ops));

        if (ops == NULL) {
            op_free(op);
            return cs_fail(c->db, CS_ERR, "out of memory");
        }
        s->ops = ops;
        s->cap = cap;
    }
    s->ops[s->nops++] = *op;
    return CS_OK;
}

/* A location path as a key: no leading or trailing '/'; "" is the file's root. */
static void scope_key(const char *path, char *out, size_t outlen)
{
    size_t len;

    while (*path == '/')
        path++;
    snprintf(out, outlen, "%s", strcmp(path, ".") == 0 ? "" : path);
    len = strlen(out);
    while (len > 0 && out[len - 1] == '/')
        out[--len] = '\0';
}

static int tri_attr(const xml_tag *t, const char *name)
{
    return attr(t, name) == NULL ? -1 : attr_true(t, name, 0);
}

static cs_status section_begin(iis_ctx *c, const xml_tag *t)
{
    iis_section *grown = realloc(c->sections, (c->nsections + 1) * sizeof(*grown));
    iis_section *s;

    if (grown == NULL)
        return cs_fail(c->db, CS_ERR, "out of memory");
    c->sections = grown;
    s = &c->sections[c->nsections];
    memset(s, 0, sizeof(*s));
    if ((s->scope = strdup(c->scope)) == NULL)
        return cs_fail(c->db, CS_ERR, "out of memory");
    c->nsections++;
    s->enabled = tri_attr(t, "enabled");
    s->one_enabled = tri_attr(t, "oneToOneCertificateMappingsEnabled");
    s->many_enabled = tri_attr(t, "manyToOneCertificateMappingsEnabled");
    c->section = t->empty ? NULL : s;
    c->section_depth = c->x.depth;
    return CS_OK;
}

static cs_status one_to_one_op(iis_ctx *c, const xml_tag *t)
{
    iis_op op = {.kind = OP_ADD, .many = 0, .line = c->x.line};
    const char *b64 = attr(t, "certificate"), *user = attr(t, "userName");

    if (strcmp(t->name, "clear") == 0) {
        op.kind = OP_CLEAR;
    } else if (strcmp(t->name, "remove") == 0) {
        if (b64 == NULL)
            return iis_fail_at(c, c->x.line, CS_INVALID,
                               "oneToOneMappings: remove needs its certificate");
        op.kind = OP_REMOVE;
        if ((op.key = strdup(b64)) == NULL)
            return cs_fail(c->db, CS_ERR, "out of memory");
    } else {
        if (b64 == NULL || user == NULL || !cs_account_name_valid(user))
            return iis_fail_at(c, c->x.line, CS_INVALID,
                               "oneToOneMappings: add needs certificate and a valid userName");
        op.one.line = c->x.line;
        op.one.enabled = attr_true(t, "enabled", 1);
        op.one.user = strdup(user);
        op.one.certificate = strdup(b64);
        if (op.one.user == NULL || op.one.certificate == NULL) {
            op_free(&op);
            return cs_fail(c->db, CS_ERR, "out of memory");
        }
    }
    return push_op(c, &op);
}

static cs_status many_begin(iis_ctx *c, const xml_tag *t)
{
    const char *user = attr(t, "userName"), *mode = attr(t, "permissionMode");
    const char *name = attr(t, "name");
    iis_many *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return cs_fail(c->db, CS_ERR, "out of memory");
    m->line = c->x.line;
    snprintf(m->user, sizeof(m->user), "%s", user ? user : "");
    snprintf(m->name, sizeof(m->name), "%s", name ? name : "(unnamed)");
    m->deny = mode != NULL && strcasecmp(mode, "Deny") == 0;
    m->enabled = attr_true(t, "enabled", 1);
    m->case_mode = -1;
    if (mode != NULL && !m->deny && strcasecmp(mode, "Allow") != 0)
        m->refused = "permissionMode is neither Allow nor Deny";
    free(c->many);
    c->many = m;
    c->many_depth = c->x.depth;
    return CS_OK;
}

static cs_status many_end(iis_ctx *c)
{
    iis_op op = {.kind = OP_ADD, .many = 1, .line = c->many->line, .m = c->many};

    c->many = NULL;
    return push_op(c, &op);
}

static cs_status many_collection_op(iis_ctx *c, const xml_tag *t)
{
    iis_op op = {.kind = OP_CLEAR, .many = 1, .line = c->x.line};
    const char *name = attr(t, "name");

    if (strcmp(t->name, "add") == 0) {
        cs_status status = many_begin(c, t);

        return status == CS_OK && t->empty ? many_end(c) : status;
    }
    if (strcmp(t->name, "remove") == 0) {
        if (name == NULL)
            return iis_fail_at(c, c->x.line, CS_INVALID, "manyToOneMappings: remove needs a name");
        op.kind = OP_REMOVE;
        if ((op.key = strdup(name)) == NULL)
            return cs_fail(c->db, CS_ERR, "out of memory");
    }
    return push_op(c, &op);
}

static const char *sub_field_attr(const char *sub)
{
    static const char *const known[] = {"CN", "O", "OU", "L", "S", "ST", "C", "E", "DC"};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(sub, known[i]) == 0)
            return known[i];
    return NULL;
}

/*
 * IIS documents one wildcard, '*'; every other character of matchCriteria,
 * '?' included, is literal.
 */
static int append_condition(char *cond, const char *attr_name, const char *pattern)
{
    size_t used = strlen(cond);
    char buf[IIS_COND_MAX];
    size_t n = 0;

    for (const char *s = pattern; *s != '\0'; s++) {
        if (n + 4 >= sizeof(buf))
            return 0;
        if (strchr(",+\"\\<>;=#?", *s) != NULL)
            buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n] = '\0';
    return snprintf(cond + used, IIS_COND_MAX - used, "%s%s=%s", used ? "," : "", attr_name, buf) <
           (int)(IIS_COND_MAX - used);
}

static void many_rule(iis_many *m, const xml_tag *t)
{
    const char *field = attr(t, "certificateField"), *sub = attr(t, "certificateSubField");
    const char *match = attr(t, "matchCriteria"), *attr_name = sub ? sub_field_attr(sub) : NULL;
    int sensitive = attr_true(t, "compareCaseSensitive", 1);
    char *cond;

    if (m->refused != NULL)
        return;
    if (strcmp(t->name, "clear") == 0) {
        m->subject[0] = m->issuer[0] = '\0';
        m->conditions = 0;
        m->case_mode = -1;
        return;
    }
    if (strcmp(t->name, "add") != 0) {
        m->refused = "a <remove> in its rules";
        return;
    }
    if (field == NULL || match == NULL || *match == '\0' || attr_name == NULL ||
        (strcasecmp(field, "Subject") != 0 && strcasecmp(field, "Issuer") != 0)) {
        m->refused = "a rule with a certificateField/SubField/matchCriteria certstore cannot "
                     "express";
        return;
    }
    cond = strcasecmp(field, "Subject") == 0 ? m->subject : m->issuer;
    if (!append_condition(cond, attr_name, match)) {
        m->refused = "rules too long";
        return;
    }
    m->case_mode = m->case_mode == -1 || m->case_mode == sensitive ? sensitive : 2;
    m->conditions++;
}

/* add, remove or clear: the three edits of an IIS collection. */
static int collection_edit(const xml_tag *t)
{
    return strcmp(t->name, "add") == 0 || strcmp(t->name, "remove") == 0 ||
           strcmp(t->name, "clear") == 0;
}

/* The innermost open elements are these, innermost last? */
static int parents_are(const xml_reader *x, int depth, const char *outer, const char *inner)
{
    return depth >= 2 && strcmp(x->stack[depth - 1], inner) == 0 &&
           strcmp(x->stack[depth - 2], outer) == 0;
}

static cs_status handle_open(iis_ctx *c, const xml_tag *t)
{
    const xml_reader *x = &c->x;
    int depth = x->depth - (t->empty ? 0 : 1); /* open elements around this one */
    const char *section = "iisClientCertificateMappingAuthentication";

    if (strcmp(t->name, "location") == 0 && c->location_depth == 0 && !t->empty) {
        scope_key(attr(t, "path") ? attr(t, "path") : "", c->scope, sizeof(c->scope));
        c->location_depth = x->depth;
        return CS_OK;
    }
    if (strcmp(t->name, section) == 0)
        return section_begin(c, t);
    if (c->section == NULL)
        return CS_OK;
    if (!collection_edit(t))
        return CS_OK;
    if (c->many != NULL && depth >= 1 && strcmp(x->stack[depth - 1], "rules") == 0) {
        many_rule(c->many, t);
        return CS_OK;
    }
    if (parents_are(x, depth, section, "oneToOneMappings"))
        return one_to_one_op(c, t);
    if (parents_are(x, depth, section, "manyToOneMappings"))
        return many_collection_op(c, t);
    return CS_OK;
}

static cs_status handle_tag(iis_ctx *c, const xml_tag *t)
{
    if (!t->closing)
        return handle_open(c, t);
    if (c->many != NULL && c->x.depth < c->many_depth)
        return many_end(c);
    if (c->section != NULL && c->x.depth < c->section_depth)
        c->section = NULL;
    if (c->location_depth > 0 && c->x.depth < c->location_depth) {
        c->location_depth = 0;
        c->scope[0] = '\0';
    }
    return CS_OK;
}

/* ---- what IIS enforces at one path ----------------------------------------- */

/* Does a section at scope apply at target (the root, target itself, or above it)? */
static int scope_applies(const char *scope, const char *target)
{
    size_t n = strlen(scope);

    return n == 0 || (strncmp(scope, target, n) == 0 && (target[n] == '\0' || target[n] == '/'));
}

/* The path to import: the one given, or the file's only scope; CS_INVALID otherwise. */
static cs_status choose_scope(iis_ctx *c, const char *location, char *target, size_t len)
{
    char list[512] = "";
    size_t used = 0;
    int scopes = 0, found = 0;

    if (location != NULL)
        scope_key(location, target, len);
    for (size_t i = 0; i < c->nsections; i++) {
        int seen = 0;

        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(c->sections[j].scope, c->sections[i].scope) == 0;
        if (seen)
            continue;
        scopes++;
        found |= location != NULL && strcmp(c->sections[i].scope, target) == 0;
        if (scopes == 1 && location == NULL)
            snprintf(target, len, "%s", c->sections[i].scope);
        if (used < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s'", used ? ", " : "",
                                     *c->sections[i].scope ? c->sections[i].scope : "/");
    }
    if (location == NULL && scopes > 1)
        return cs_fail(c->db, CS_INVALID,
                       "client certificate mapping is configured for several locations (%s); "
                       "IIS enforces each at its own path: choose one with --location PATH "
                       "('/' for the file's root)",
                       list);
    if (location != NULL && *target != '\0' && !found)
        return cs_fail(c->db, CS_INVALID, "--location '%s' is not among the file's locations (%s)",
                       location, scopes ? list : "none");
    return CS_OK;
}

typedef struct {
    const iis_one **one;
    iis_many **many;
    size_t none, nmany;
    int enabled, one_enabled, many_enabled;
} iis_effective;

static void apply_op(iis_effective *e, const iis_op *op)
{
    size_t kept = 0;

    if (op->kind == OP_ADD && op->many)
        e->many[e->nmany++] = op->m;
    else if (op->kind == OP_ADD)
        e->one[e->none++] = &op->one;
    else if (op->many) {
        for (size_t i = 0; i < e->nmany; i++)
            if (op->kind == OP_REMOVE && strcasecmp(e->many[i]->name, op->key) != 0)
                e->many[kept++] = e->many[i];
        e->nmany = kept;
    } else {
        for (size_t i = 0; i < e->none; i++)
            if (op->kind == OP_REMOVE && !same_base64(e->one[i]->certificate, op->key))
                e->one[kept++] = e->one[i];
        e->none = kept;
    }
}

static void override(int *value, int given)
{
    if (given >= 0)
        *value = given;
}

/* Sections that apply at target, parents first (shorter scope), file order within. */
static cs_status effective_at(iis_ctx *c, const char *target, iis_effective *e)
{
    size_t total = 0;

    memset(e, 0, sizeof(*e));
    e->one_enabled = e->many_enabled = 1; /* IIS's defaults; enabled defaults to false */
    for (size_t i = 0; i < c->nsections; i++)
        total += c->sections[i].nops;
    e->one = calloc(total + 1, sizeof(*e->one));
    e->many = calloc(total + 1, sizeof(*e->many));
    if (e->one == NULL || e->many == NULL)
        return cs_fail(c->db, CS_ERR, "out of memory");
    for (size_t depth = 0; depth <= strlen(target); depth++) {
        for (size_t i = 0; i < c->nsections; i++) {
            const iis_section *s = &c->sections[i];

            if (strlen(s->scope) != depth || !scope_applies(s->scope, target))
                continue;
            override(&e->enabled, s->enabled);
            override(&e->one_enabled, s->one_enabled);
            override(&e->many_enabled, s->many_enabled);
            for (size_t j = 0; j < s->nops; j++)
                apply_op(e, &s->ops[j]);
        }
    }
    return CS_OK;
}

/* ---- writing ---------------------------------------------------------------- */

static cs_status write_one(iis_ctx *c, const iis_one *one)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int64_t len;
    X509 *cert = NULL;
    cs_mapping_spec spec;
    cs_status status;

    if ((len = base64_decode(one->certificate, &der)) <= 0)
        status = iis_fail_at(c, one->line, CS_INVALID, "certificate is not base64");
    else if (p = der, (cert = d2i_X509(NULL, &p, (long)len)) == NULL || p != der + len)
        status = iis_fail_at(c, one->line, CS_INVALID, "certificate is not one DER certificate");
    else
        status = CS_OK;
    free(der);
    memset(&spec, 0, sizeof(spec));
    if (status == CS_OK)
        status = cs_mapping_spec_from_cert(&spec, cert, CS_KIND_CERT);
    if (status != CS_OK) {
        X509_free(cert);
        return status;
    }
    spec.account = one->user;
    spec.not_before = spec.not_after = CS_TIME_NONE;
    spec.note = "imported from IIS oneToOneMappings";
    status = cs_foreign_put_mapping(c->writer, &spec, one->enabled, one->line);
    X509_free(cert);
    if (status != CS_OK && c->error_line == 0)
        c->error_line = one->line;
    return status;
}

/* Why a mapping cannot be imported, or NULL. */
static const char *many_unexpressible(const iis_many *m)
{
    if (m->refused != NULL)
        return m->refused;
    if (m->conditions == 0)
        return "no rules (it would match every certificate of the CA)";
    if (m->case_mode == 2)
        return "rules that mix compareCaseSensitive true and false";
    return NULL;
}

static cs_status write_many(iis_ctx *c, const iis_many *m, int64_t position)
{
    cs_rule_spec r = {.action = m->deny ? CS_RULE_DENY : CS_RULE_ALLOW,
                      .account = m->deny ? NULL : m->user,
                      .pin_fp = c->pin_fp,
                      .priority = 10 * position,
                      .subject = m->subject,
                      .issuer = m->issuer,
                      .case_sensitive = m->case_mode == 1,
                      .note = m->name};
    const char *why = many_unexpressible(m);
    char msg[400];
    cs_status status;

    if (why != NULL && m->deny && m->enabled) {
        snprintf(msg, sizeof(msg),
                 "Deny mapping '%s' has %s; leaving it out would admit certificates IIS denies",
                 m->name, why);
        return iis_fail_at(c, m->line, CS_INVALID, msg);
    }
    if (why != NULL) {
        snprintf(msg, sizeof(msg), "many-to-one mapping '%s' has %s; not imported", m->name, why);
        iis_note(c, m->line, msg);
        return CS_OK;
    }
    if (c->pin_fp == NULL)
        return iis_fail_at(c, m->line, CS_INVALID,
                           "manyToOneMappings need --pin (IIS does not name the issuing CA)");
    status = cs_foreign_put_rule(c->writer, &r, m->enabled, m->line);
    if (status != CS_OK && c->error_line == 0)
        c->error_line = m->line;
    return status;
}

static cs_status write_effective(iis_ctx *c, const iis_effective *e)
{
    const char *off = !e->enabled ? "the section's enabled is false (the IIS default)" : NULL;
    const char *one_off = off               ? off
                          : !e->one_enabled ? "oneToOneCertificateMappingsEnabled is false"
                                            : NULL;
    const char *many_off = off                ? off
                           : !e->many_enabled ? "manyToOneCertificateMappingsEnabled is false"
                                              : NULL;
    char msg[400];
    cs_status status = CS_OK;

    for (size_t i = 0; status == CS_OK && i < e->none; i++) {
        if (one_off == NULL) {
            status = write_one(c, e->one[i]);
            continue;
        }
        snprintf(msg, sizeof(msg), "%s: IIS does not use this one-to-one mapping", one_off);
        iis_note(c, e->one[i]->line, msg);
    }
    for (size_t i = 0; status == CS_OK && i < e->nmany; i++) {
        if (many_off == NULL) {
            status = write_many(c, e->many[i], (int64_t)i + 1);
            continue;
        }
        snprintf(msg, sizeof(msg), "%s: IIS does not use many-to-one mapping '%s'", many_off,
                 e->many[i]->name);
        iis_note(c, e->many[i]->line, msg);
    }
    return status;
}

static cs_status import_scope(iis_ctx *c, const char *location)
{
    char target[512];
    iis_effective e;
    cs_status status = choose_scope(c, location, target, sizeof(target));

    if (status != CS_OK || c->nsections == 0)
        return status;
    status = effective_at(c, target, &e);
    if (status == CS_OK)
        status = write_effective(c, &e);
    free(e.one);
    free(e.many);
    return status;
}

cs_status cs_import_iis(cs_db *db, const char *data, size_t len, const char *pin_fp,
                        const char *location, cs_foreign_note_cb note, void *arg,
                        cs_foreign_result *res)
{
    return cs_import_iis_ex(db, data, len, pin_fp, location, NULL, note, arg, res);
}

cs_status cs_import_iis_ex(cs_db *db, const char *data, size_t len, const char *pin_fp,
                           const char *location, const cs_import_opts *opts,
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
    if ((status = cs_foreign_writer_new(db, opts != NULL && opts->update, res, &c->writer)) !=
        CS_OK) {
        free(c);
        return status;
    }
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
        res->bad_line = c->error_line ? c->error_line : c->x.line;
    else if ((status = import_scope(c, location)) != CS_OK)
        res->bad_line = c->error_line;
    sections_free(c);
    cs_foreign_writer_free(c->writer);
    free(c);
    return status;
}
