/*
 * Matching a rule's conditions against a leaf: on parsed values only, never
 * on a printed DN, so a CN holding ",O=Evil" can only ever satisfy CN.
 *
 * Normalisation, stated once: a value is matched as UTF-8. Strings OpenSSL
 * holds in another encoding (BMPString, UniversalString, T61String) are
 * converted with ASN1_STRING_to_UTF8; anything that is not well-formed
 * UTF-8, or holds a NUL, never matches. Value and pattern are both
 * normalised with GNU libunistring before the glob runs: NFC, and full
 * Unicode case folding unless the rule is case-sensitive (see below).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "cs_internal.h"

#define OID_TEXT_MAX 128
#define UPN_OID "1.3.6.1.4.1.311.20.2.3"

/* ---- UTF-8 and globs ------------------------------------------------------ */

/* Length of the UTF-8 sequence at s (1..4), 0 if malformed or overlong. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    size_t need;
    uint32_t cp;

    if (s[0] < 0x80)
        return s[0] != 0;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (avail < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

int cs_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_seq_len(s + i, len - i);

        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/*
 * Strings are compared as sequences of code points after normalisation.
 * Case-sensitive: NFC. Case-insensitive: full Unicode case folding
 * (u32_casefold with NFC, which decomposes first, so the result is the
 * canonical caseless form of Unicode's D145). Full folding rather than
 * u32_tolower: "STRASSE" and "straße" are the same name caselessly, and a
 * deny rule written one way must not be dodged by a certificate written the
 * other (lower-casing leaves "ß" and "ss" distinct). The price: '?' matches
 * one code point of the folded text, so in a case-insensitive rule "ß" is
 * two characters ("ss"). Composed and decomposed forms ("Ä" as U+00C4 or
 * "A" + U+0308) are equal either way.
 */

/* Code points a typical value fits in without touching the heap. */
#define CP_STACK CS_PATTERN_MAX
/* '*' and '?' in a compiled glob: above U+10FFFF, so never text. */
#define GLOB_STAR 0xffffffffu
#define GLOB_ANY 0xfffffffeu

/* A code point string in a stack buffer, or on the heap if it outgrew it. */
typedef struct {
    uint32_t *cp;
    size_t len;
    uint32_t buf[CP_STACK];
} cp_string;

static void cp_release(cp_string *s)
{
    if (s->cp != s->buf)
        free(s->cp);
    s->cp = NULL;
}

/*
 * Valid UTF-8 to normalised (and, if asked, case-folded) code points in
 * out. 0 on invalid UTF-8 or when libunistring fails (out of memory).
 */
static int cp_normalise(const unsigned char *s, size_t n, int case_sensitive, cp_string *out)
{
    uint32_t raw_buf[CP_STACK], *raw;
    size_t raw_len = CP_STACK;

    out->cp = out->buf;
    out->len = 0;
    if (!cs_utf8_valid(s, n))
        return 0;
    if (n == 0)
        return 1;
    raw = u8_to_u32(s, n, raw_buf, &raw_len);
    if (raw == NULL)
        return 0;
    out->len = CP_STACK;
    out->cp = case_sensitive ? u32_normalize(UNINORM_NFC, raw, raw_len, out->buf, &out->len)
                             : u32_casefold(raw, raw_len, NULL, UNINORM_NFC, out->buf, &out->len);
    if (raw != raw_buf)
        free(raw);
    if (out->cp == NULL) {
        out->cp = out->buf;
        return 0;
    }
    return 1;
}

/* A glob as code points: literal runs normalised, '*' and '?' as markers. */
#define GLOB_CP_MAX (4 * CS_PATTERN_MAX) /* folding can expand; NFC rarely does */

typedef struct {
    uint32_t cp[GLOB_CP_MAX];
    size_t len;
} cp_glob;

static int glob_append_literal(cp_glob *g, const unsigned char *lit, size_t n, int case_sensitive)
{
    cp_string s;
    int ok;

    if (n == 0)
        return 1;
    ok = cp_normalise(lit, n, case_sensitive, &s) && s.len <= GLOB_CP_MAX - g->len;
    if (ok) {
        memcpy(g->cp + g->len, s.cp, s.len * sizeof(uint32_t));
        g->len += s.len;
    }
    cp_release(&s);
    return ok;
}

/*
 * Compile a glob ('\' quotes the next byte). Each literal run between
 * wildcards is normalised on its own: a combining mark right after a
 * wildcard cannot compose across it, which can only make a match fail.
 */
static int glob_compile(const char *glob, int case_sensitive, cp_glob *g)
{
    unsigned char lit[CS_PATTERN_MAX];
    size_t lit_len = 0;

    g->len = 0;
    for (const char *p = glob; *p != '\0'; p++) {
        if (*p == '*' || *p == '?') {
            if (!glob_append_literal(g, lit, lit_len, case_sensitive) || g->len == GLOB_CP_MAX)
                return 0;
            lit_len = 0;
            g->cp[g->len++] = *p == '*' ? GLOB_STAR : GLOB_ANY;
            continue;
        }
        if (*p == '\\' && p[1] != '\0')
            p++;
        if (lit_len == sizeof(lit))
            return 0;
        lit[lit_len++] = (unsigned char)*p;
    }
    return glob_append_literal(g, lit, lit_len, case_sensitive);
}

/*
 * Iterative glob with one backtrack point (the last '*'), linear in
 * practice and never recursive, so a hostile pattern cannot blow the stack.
 * '?' is one code point.
 */
static int cp_glob_match(const cp_glob *g, const cp_string *text)
{
    size_t gi = 0, i = 0, star = 0, star_i = 0;
    int have_star = 0;

    while (i < text->len) {
        if (gi < g->len && g->cp[gi] == GLOB_STAR) {
            star = ++gi;
            star_i = i;
            have_star = 1;
            continue;
        }
        if (gi < g->len && (g->cp[gi] == GLOB_ANY || g->cp[gi] == text->cp[i])) {
            gi++;
            i++;
            continue;
        }
        if (!have_star)
            return 0;
        gi = star;
        i = ++star_i;
    }
    while (gi < g->len && g->cp[gi] == GLOB_STAR)
        gi++;
    return gi == g->len;
}

int cs_glob_match(const char *glob, const char *text, size_t len, int case_sensitive)
{
    cp_glob g;
    cp_string t;
    int ok = glob_compile(glob, case_sensitive, &g) &&
             cp_normalise((const unsigned char *)text, len, case_sensitive, &t);

    if (!ok)
        return 0;
    ok = cp_glob_match(&g, &t);
    cp_release(&t);
    return ok;
}

/* ---- attribute names ------------------------------------------------------ */

typedef struct {
    const char *name;
    int nid;
} attr_name;

static const attr_name attr_names[] = {
    {"CN", NID_commonName},
    {"O", NID_organizationName},
    {"OU", NID_organizationalUnitName},
    {"L", NID_localityName},
    {"ST", NID_stateOrProvinceName},
    {"S", NID_stateOrProvinceName}, /* as IIS and AD write it */
    {"C", NID_countryName},
    {"emailAddress", NID_pkcs9_emailAddress},
    {"E", NID_pkcs9_emailAddress}, /* as AD writes it */
    {"serialNumber", NID_serialNumber},
    {"UID", NID_userId},
    {"DC", NID_domainComponent},
};

static int attr_nid(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(attr_names) / sizeof(attr_names[0]); i++)
        if (strlen(attr_names[i].name) == len && strncasecmp(attr_names[i].name, name, len) == 0)
            return attr_names[i].nid;
    return NID_undef;
}

/* ---- the DN condition parser ---------------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

typedef struct {
    char *out;
    size_t len, cap;
    /* The literal bytes alone, to check they are UTF-8. */
    unsigned char lit[CS_PATTERN_MAX];
    size_t lit_len;
} glob_builder;

static int glob_put(glob_builder *g, char c, int literal)
{
    int quote = literal && (c == '*' || c == '?' || c == '\\');

    if (g->len + (size_t)quote + 2 > g->cap || g->lit_len + 1 >= sizeof(g->lit))
        return 0;
    if (quote)
        g->out[g->len++] = '\\';
    g->out[g->len++] = c;
    g->out[g->len] = '\0';
    if (literal || (c != '*' && c != '?'))
        g->lit[g->lit_len++] = (unsigned char)c;
    return 1;
}

/* One value up to an unescaped ',' or '+'; *p left on the separator or NUL. */
static int parse_value(const char **p, glob_builder *g, char *msg, size_t msglen)
{
    const char *s = *p;

    while (*s != '\0' && *s != ',' && *s != '+') {
        char c = *s;
        int literal = 0;

        if (c == '\\') {
            int hi = hex_digit(s[1]), lo = hi >= 0 ? hex_digit(s[2]) : -1;

            if (hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                s += 3;
            } else if (s[1] != '\0' && strchr(",+\"\\<>;=# *?", s[1]) != NULL) {
                c = s[1];
                s += 2;
            } else {
                snprintf(msg, msglen, "bad escape '\\%.1s'", s + 1);
                return 0;
            }
            literal = 1;
            if (c == '\0') {
                snprintf(msg, msglen, "a NUL byte cannot be matched");
                return 0;
            }
        } else if (strchr("\"<>;", c) != NULL || (unsigned char)c < 0x20) {
            snprintf(msg, msglen, "character '%c' must be escaped",
                     (unsigned char)c < 0x20 ? '?' : c);
            return 0;
        } else {
            s++;
        }
        if (!glob_put(g, c, literal)) {
            snprintf(msg, msglen, "value longer than %d bytes", CS_PATTERN_MAX - 2);
            return 0;
        }
    }
    *p = s;
    if (g->len == 0) {
        snprintf(msg, msglen, "empty value");
        return 0;
    }
    if (!cs_utf8_valid(g->lit, g->lit_len)) {
        snprintf(msg, msglen, "value is not valid UTF-8");
        return 0;
    }
    return 1;
}

static int parse_pair(const char **p, cs_dn_pair *pair, char *msg, size_t msglen)
{
    const char *s = *p, *name;
    size_t name_len;
    glob_builder g = {.out = pair->glob, .cap = sizeof(pair->glob)};

    while (*s == ' ')
        s++;
    name = s;
    while (isalnum((unsigned char)*s))
        s++;
    name_len = (size_t)(s - name);
    while (*s == ' ')
        s++;
    if (name_len == 0 || *s != '=') {
        snprintf(msg, msglen, "expected ATTR=VALUE at '%.40s'", name);
        return 0;
    }
    if ((pair->nid = attr_nid(name, name_len)) == NID_undef) {
        snprintf(msg, msglen,
                 "unknown attribute '%.*s' (CN, O, OU, L, ST, C, emailAddress, serialNumber, "
                 "UID, DC)",
                 (int)(name_len > 40 ? 40 : name_len), name);
        return 0;
    }
    s++;
    pair->glob[0] = '\0';
    if (!parse_value(&s, &g, msg, msglen))
        return 0;
    *p = s;
    return 1;
}

int cs_dn_parse(const char *text, cs_dn_pair *pairs, size_t max, char *msg, size_t msglen)
{
    const char *p = text;
    size_t n = 0;

    if (text == NULL || *text == '\0') {
        snprintf(msg, msglen, "empty name condition");
        return -1;
    }
    for (;;) {
        if (n == max) {
            snprintf(msg, msglen, "more than %zu attributes", max);
            return -1;
        }
        if (!parse_pair(&p, &pairs[n], msg, msglen))
            return -1;
        n++;
        if (*p == '\0')
            return (int)n;
        p++; /* ',' or '+': every pair must hold either way */
    }
}

/* ---- list fields: san, eku, policy ---------------------------------------- */

typedef enum { SAN_DNS, SAN_EMAIL, SAN_URI, SAN_IP, SAN_UPN, SAN_BAD } san_type;

static const char *const san_type_names[] = {"DNS", "email", "URI", "IP", "UPN"};

/* Next line of a list: [*p, end) without the newline; 0 at the end. */
static int next_line(const char **p, const char **start, size_t *len)
{
    const char *s = *p, *nl;

    if (s == NULL || *s == '\0')
        return 0;
    nl = strchr(s, '\n');
    *start = s;
    *len = nl ? (size_t)(nl - s) : strlen(s);
    *p = nl ? nl + 1 : s + *len;
    return 1;
}

static san_type san_split(const char *line, size_t len, const char **pattern, size_t *plen)
{
    const char *colon = memchr(line, ':', len);

    if (colon == NULL)
        return SAN_BAD;
    for (size_t t = 0; t < sizeof(san_type_names) / sizeof(san_type_names[0]); t++) {
        if (strlen(san_type_names[t]) == (size_t)(colon - line) &&
            strncasecmp(san_type_names[t], line, (size_t)(colon - line)) == 0) {
            *pattern = colon + 1;
            *plen = len - (size_t)(colon + 1 - line);
            return (san_type)t;
        }
    }
    return SAN_BAD;
}

/* IP literal to bytes (4 or 16); 0 if not an address. */
static size_t parse_ip(const char *text, size_t len, unsigned char out[16])
{
    char buf[64];

    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, out) == 1)
        return 16;
    return 0;
}

int cs_san_list_valid(const char *text, char *msg, size_t msglen)
{
    const char *p = text, *line, *pattern;
    size_t len, plen;
    unsigned char ip[16];

    while (next_line(&p, &line, &len)) {
        san_type t = san_split(line, len, &pattern, &plen);

        if (t == SAN_BAD) {
            snprintf(msg, msglen, "'%.*s' is not TYPE:PATTERN with TYPE DNS, email, URI, IP or UPN",
                     (int)(len > 60 ? 60 : len), line);
            return 0;
        }
        if (plen == 0 || plen >= CS_PATTERN_MAX ||
            !cs_utf8_valid((const unsigned char *)pattern, plen)) {
            snprintf(msg, msglen, "%s: empty, too long or not UTF-8", san_type_names[t]);
            return 0;
        }
        if (t == SAN_IP && parse_ip(pattern, plen, ip) == 0) {
            snprintf(msg, msglen, "IP:%.*s is not an IPv4 or IPv6 address", (int)plen, pattern);
            return 0;
        }
    }
    return 1;
}

static int oid_dotted(const char *s, size_t len)
{
    int dots = 0;

    if (len == 0 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[len - 1]))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return 0;
            dots++;
        } else if (!isdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return dots >= 1;
}

/* NID for a name OpenSSL knows (short or long), NID_undef otherwise. */
static int oid_name_nid(const char *s, size_t len)
{
    char buf[OID_TEXT_MAX];
    int nid;

    if (len == 0 || len >= sizeof(buf))
        return NID_undef;
    memcpy(buf, s, len);
    buf[len] = '\0';
    nid = OBJ_sn2nid(buf);
    return nid != NID_undef ? nid : OBJ_ln2nid(buf);
}

int cs_oid_list_valid(const char *text, char *msg, size_t msglen)
{
    const char *p = text, *line;
    size_t len;

    while (next_line(&p, &line, &len)) {
        if (len >= OID_TEXT_MAX ||
            (!oid_dotted(line, len) && oid_name_nid(line, len) == NID_undef)) {
            snprintf(msg, msglen, "'%.*s' is not a dotted OID or a known OID name",
                     (int)(len > 60 ? 60 : len), line);
            return 0;
        }
    }
    return 1;
}

/* ---- matching ------------------------------------------------------------- */

/*
 * A string value as UTF-8 in [*out, *out + *len); *owned is set when it had
 * to be converted (caller frees). 0 when it is not valid UTF-8.
 */
static int string_utf8(const ASN1_STRING *str, const unsigned char **out, size_t *len,
                       unsigned char **owned)
{
    int type = ASN1_STRING_type(str);

    *owned = NULL;
    if (type == V_ASN1_UTF8STRING || type == V_ASN1_PRINTABLESTRING || type == V_ASN1_IA5STRING) {
        *out = ASN1_STRING_get0_data(str);
        *len = (size_t)ASN1_STRING_length(str);
        if (type != V_ASN1_UTF8STRING)
            for (size_t i = 0; i < *len; i++)
                if ((*out)[i] >= 0x80)
                    return 0;
    } else {
        int n = ASN1_STRING_to_UTF8(owned, str);

        if (n < 0)
            return 0;
        *out = *owned;
        *len = (size_t)n;
    }
    return cs_utf8_valid(*out, *len);
}

static int string_matches(const ASN1_STRING *str, const char *glob, int case_sensitive)
{
    const unsigned char *text;
    unsigned char *owned;
    size_t len;
    int ok = string_utf8(str, &text, &len, &owned) &&
             cs_glob_match(glob, (const char *)text, len, case_sensitive);

    OPENSSL_free(owned);
    return ok;
}

static int name_pair_holds(const X509_NAME *name, const cs_dn_pair *pair, int case_sensitive)
{
    int last = -1;

    while ((last = X509_NAME_get_index_by_NID(name, pair->nid, last)) >= 0) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, last);

        if (string_matches(X509_NAME_ENTRY_get_data(e), pair->glob, case_sensitive))
            return 1;
    }
    return 0;
}

static int name_matches(const X509_NAME *name, const char *cond, int case_sensitive)
{
    cs_dn_pair pairs[CS_DN_PAIRS_MAX];
    char msg[128]; /* unused here: the rule was validated when stored */
    int n = cs_dn_parse(cond, pairs, CS_DN_PAIRS_MAX, msg, sizeof(msg));

    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (!name_pair_holds(name, &pairs[i], case_sensitive))
            return 0;
    return 1;
}

/* A glob for a SAN pattern is stored as typed: copy it NUL-terminated. */
static int copy_pattern(const char *pattern, size_t plen, char glob[CS_PATTERN_MAX])
{
    if (plen >= CS_PATTERN_MAX)
        return 0;
    memcpy(glob, pattern, plen);
    glob[plen] = '\0';
    return 1;
}

static int upn_value(const GENERAL_NAME *gen, const ASN1_STRING **value)
{
    char oid[OID_TEXT_MAX];
    const OTHERNAME *other = gen->d.otherName;

    if (gen->type != GEN_OTHERNAME || other == NULL || other->value == NULL ||
        other->value->type != V_ASN1_UTF8STRING)
        return 0;
    if (OBJ_obj2txt(oid, sizeof(oid), other->type_id, 1) <= 0 || strcmp(oid, UPN_OID) != 0)
        return 0;
    *value = other->value->value.utf8string;
    return 1;
}

static int san_entry_matches(const GENERAL_NAME *gen, san_type t, const char *glob,
                             const unsigned char *ip, size_t ip_len, int case_sensitive)
{
    const ASN1_STRING *value = NULL;

    switch (t) {
    case SAN_DNS:
        return gen->type == GEN_DNS && string_matches(gen->d.dNSName, glob, case_sensitive);
    case SAN_EMAIL:
        return gen->type == GEN_EMAIL && string_matches(gen->d.rfc822Name, glob, case_sensitive);
    case SAN_URI:
        return gen->type == GEN_URI &&
               string_matches(gen->d.uniformResourceIdentifier, glob, case_sensitive);
    case SAN_IP:
        return gen->type == GEN_IPADD && (size_t)ASN1_STRING_length(gen->d.iPAddress) == ip_len &&
               memcmp(ASN1_STRING_get0_data(gen->d.iPAddress), ip, ip_len) == 0;
    case SAN_UPN:
        return upn_value(gen, &value) && string_matches(value, glob, case_sensitive);
    case SAN_BAD:
        break;
    }
    return 0;
}

static int san_line_holds(const GENERAL_NAMES *gens, const char *line, size_t len,
                          int case_sensitive)
{
    const char *pattern;
    size_t plen, ip_len = 0;
    unsigned char ip[16];
    char glob[CS_PATTERN_MAX];
    san_type t = san_split(line, len, &pattern, &plen);

    if (t == SAN_BAD || !copy_pattern(pattern, plen, glob))
        return -1;
    if (t == SAN_IP && (ip_len = parse_ip(pattern, plen, ip)) == 0)
        return -1;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++)
        if (san_entry_matches(sk_GENERAL_NAME_value(gens, i), t, glob, ip, ip_len, case_sensitive))
            return 1;
    return 0;
}

static int san_matches(const X509 *leaf, const char *cond, int case_sensitive)
{
    const char *p = cond, *line;
    size_t len;
    int crit = 0, result = 1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);

    while (result == 1 && next_line(&p, &line, &len))
        result = gens == NULL ? 0 : san_line_holds(gens, line, len, case_sensitive);
    GENERAL_NAMES_free(gens);
    return result;
}

/* Does the certificate's OID equal the condition's (dotted or a name)? */
static int oid_equals(const ASN1_OBJECT *obj, const char *cond, size_t len)
{
    char dotted[OID_TEXT_MAX];
    int nid;

    if (oid_dotted(cond, len)) {
        int n = OBJ_obj2txt(dotted, sizeof(dotted), obj, 1);

        return n > 0 && (size_t)n == len && memcmp(dotted, cond, len) == 0;
    }
    nid = oid_name_nid(cond, len);
    return nid != NID_undef && OBJ_obj2nid(obj) == nid;
}

static int eku_has(const EXTENDED_KEY_USAGE *eku, const char *cond, size_t len)
{
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
        if (oid_equals(sk_ASN1_OBJECT_value(eku, i), cond, len))
            return 1;
    return 0;
}

static int eku_matches(const X509 *leaf, const char *cond)
{
    const char *p = cond, *line;
    size_t len;
    int result = 1;
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);

    while (result == 1 && next_line(&p, &line, &len))
        result = eku != NULL && eku_has(eku, line, len);
    EXTENDED_KEY_USAGE_free(eku);
    return result;
}

static int policy_has(const CERTIFICATEPOLICIES *pols, const char *cond, size_t len)
{
    for (int i = 0; i < sk_POLICYINFO_num(pols); i++)
        if (oid_equals(sk_POLICYINFO_value(pols, i)->policyid, cond, len))
            return 1;
    return 0;
}

static int policy_matches(const X509 *leaf, const char *cond)
{
    const char *p = cond, *line;
    size_t len;
    int result = 1;
    CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(leaf, NID_certificate_policies, NULL, NULL);

    while (result == 1 && next_line(&p, &line, &len))
        result = pols != NULL && policy_has(pols, line, len);
    CERTIFICATEPOLICIES_free(pols);
    return result;
}

static int present(const char *s)
{
    return s != NULL && *s != '\0';
}

int cs_rule_matches(const cs_rule_spec *spec, const X509 *leaf)
{
    int r = 1;

    if (leaf == NULL)
        return -1;
    if (r == 1 && present(spec->subject))
        r = name_matches(X509_get_subject_name(leaf), spec->subject, spec->case_sensitive);
    if (r == 1 && present(spec->issuer))
        r = name_matches(X509_get_issuer_name(leaf), spec->issuer, spec->case_sensitive);
    if (r == 1 && present(spec->san))
        r = san_matches(leaf, spec->san, spec->case_sensitive);
    if (r == 1 && present(spec->eku))
        r = eku_matches(leaf, spec->eku);
    if (r == 1 && present(spec->policy))
        r = policy_matches(leaf, spec->policy);
    return r;
}
