/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Matching a rule's conditions against a leaf: on parsed values only, never
 * on a printed DN, so a CN holding ",O=Evil" can only ever satisfy CN.
 *
 * Normalisation, stated once: a value is matched as UTF-8. BMPString and
 * UniversalString are converted with ASN1_STRING_to_UTF8; the 7-bit types
 * and T61String are read only when they hold ASCII (T.61 is not Latin-1);
 * anything else, ill-formed UTF-8 or a NUL cannot be read, and what cannot
 * be read fails closed both ways (see `seen`). Caselessly, value and
 * pattern are both normalised with GNU libunistring before the glob runs
 * (NFC and full Unicode case folding); case-sensitively, not at all.
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
 * Case-sensitive: the code points as they are, nothing more (NFC alone
 * would already make the Kelvin sign 'K'). Case-insensitive: full Unicode case folding
 * (u32_casefold with NFC, which decomposes first, so the result is the
 * canonical caseless form of Unicode's D145). Full folding rather than
 * u32_tolower: "STRASSE" and "straße" are the same name caselessly, and a
 * deny rule written one way must not be dodged by a certificate written the
 * other (lower-casing leaves "ß" and "ss" distinct). The price: '?' matches
 * one code point of the folded text, so in a case-insensitive rule "ß" is
 * two characters ("ss"). Composed and decomposed forms ("Ä" as U+00C4 or
 * "A" + U+0308) are equal caselessly, different case-sensitively.
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
 * Valid UTF-8 to code points, caselessly normalised and case-folded, in
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
    if (case_sensitive) {
        /* The code points as they are: raw is the answer. */
        if (raw == raw_buf) {
            memcpy(out->buf, raw, raw_len * sizeof(uint32_t));
            out->cp = out->buf;
        } else {
            out->cp = raw;
        }
        out->len = raw_len;
        return 1;
    }
    out->cp = u32_casefold(raw, raw_len, NULL, UNINORM_NFC, out->buf, &out->len);
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
    int joined = 0; /* the pair being read follows a '+' */

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
        pairs[n].joined = joined;
        n++;
        if (*p == '\0')
            return (int)n;
        joined = *p == '+';
        p++;
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
 * What a rule sees of a certificate's value: a match, no match, or a value
 * it cannot read (malformed, of a string type it does not decode, a
 * duplicated or undecodable extension). An unreadable value never lets an
 * allow rule match and always lets a deny rule match: both fail closed.
 */
typedef enum { SEEN_NO = 0, SEEN_MATCH = 1, SEEN_UNREADABLE = 2 } seen;

/* Does a value seen so count for this rule? */
static int counts(seen v, int deny)
{
    return v == SEEN_MATCH || (deny && v == SEEN_UNREADABLE);
}

/* Bytes all 0x01..0x7f: what the 7-bit string types may hold. */
static int ascii_only(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == 0 || s[i] >= 0x80)
            return 0;
    return 1;
}

/*
 * A string value as UTF-8 in [*out, *out + *len); *owned is set when it had
 * to be converted (caller frees). 0 when it cannot be read: not well-formed
 * UTF-8, a NUL, a 7-bit type (PrintableString, IA5String, VisibleString,
 * NumericString) holding a byte above 0x7f, a T61String holding one (T.61
 * is not Latin-1; only its ASCII subset is read), or another string type.
 */
static int string_utf8(const ASN1_STRING *str, const unsigned char **out, size_t *len,
                       unsigned char **owned)
{
    int type = ASN1_STRING_type(str), n;

    *owned = NULL;
    *out = ASN1_STRING_get0_data(str);
    *len = (size_t)ASN1_STRING_length(str);
    switch (type) {
    case V_ASN1_UTF8STRING:
        return cs_utf8_valid(*out, *len);
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_VISIBLESTRING:
    case V_ASN1_NUMERICSTRING:
    case V_ASN1_T61STRING:
        return ascii_only(*out, *len);
    case V_ASN1_BMPSTRING:
    case V_ASN1_UNIVERSALSTRING:
        if ((n = ASN1_STRING_to_UTF8(owned, str)) < 0)
            return 0;
        *out = *owned;
        *len = (size_t)n;
        return cs_utf8_valid(*out, *len);
    default:
        return 0;
    }
}

static seen string_seen(const ASN1_STRING *str, const char *glob, int case_sensitive)
{
    const unsigned char *text;
    unsigned char *owned = NULL;
    size_t len;
    cp_glob g;
    cp_string t;
    seen v = SEEN_UNREADABLE;

    /* A rule that was validated always compiles; a value that cannot be normalised is unread. */
    if (str != NULL && string_utf8(str, &text, &len, &owned) &&
        glob_compile(glob, case_sensitive, &g) && cp_normalise(text, len, case_sensitive, &t)) {
        v = cp_glob_match(&g, &t) ? SEEN_MATCH : SEEN_NO;
        cp_release(&t);
    }
    OPENSSL_free(owned);
    return v;
}

static seen entry_seen(const X509_NAME_ENTRY *e, const cs_dn_pair *pair, int case_sensitive)
{
    return string_seen(X509_NAME_ENTRY_get_data(e), pair->glob, case_sensitive);
}

/* Deny: some value of the pair's attribute matches, or cannot be read. */
static int pair_seen_by_deny(const X509_NAME *name, const cs_dn_pair *pair, int case_sensitive)
{
    int last = -1;

    while ((last = X509_NAME_get_index_by_NID(name, pair->nid, last)) >= 0)
        if (entry_seen(X509_NAME_get_entry(name, last), pair, case_sensitive) != SEEN_NO)
            return 1;
    return 0;
}

/*
 * Allow: every pair matches some value, and every value of an attribute the
 * condition names is matched by one of that attribute's pairs, so
 * "CN=gw-*" does not admit a subject that also holds "CN=admin".
 */
static int pairs_cover_name(const X509_NAME *name, const cs_dn_pair *pairs, int n,
                            int case_sensitive)
{
    int count = X509_NAME_entry_count(name);

    for (int i = 0; i < n; i++) {
        int last = -1, found = 0;

        while (!found && (last = X509_NAME_get_index_by_NID(name, pairs[i].nid, last)) >= 0)
            found = entry_seen(X509_NAME_get_entry(name, last), &pairs[i], case_sensitive) ==
                    SEEN_MATCH;
        if (!found)
            return 0;
    }
    for (int e = 0; e < count; e++) {
        const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, e);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)), named = 0, covered = 0;

        for (int i = 0; i < n && !covered; i++) {
            if (pairs[i].nid != nid)
                continue;
            named = 1;
            covered = entry_seen(entry, &pairs[i], case_sensitive) == SEEN_MATCH;
        }
        if (named && !covered)
            return 0;
    }
    return 1;
}

/*
 * Exact: the whole name, attribute by attribute, in the order
 * `openssl x509 -nameopt RFC2253` prints it (most specific first, the
 * reverse of the DER), RDN boundaries included; nothing missing, nothing
 * extra.
 */
static int name_equals(const X509_NAME *name, const cs_dn_pair *pairs, int n, int case_sensitive,
                       int deny)
{
    int prev_set = -1;

    if (X509_NAME_entry_count(name) != n)
        return 0;
    for (int i = 0; i < n; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, n - 1 - i);
        int set = X509_NAME_ENTRY_set(e);

        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != pairs[i].nid ||
            (i > 0 && (set == prev_set) != (pairs[i].joined != 0)) ||
            !counts(entry_seen(e, &pairs[i], case_sensitive), deny))
            return 0;
        prev_set = set;
    }
    return 1;
}

static int name_matches(const X509_NAME *name, const char *cond, int exact, int case_sensitive,
                        int deny)
{
    cs_dn_pair pairs[CS_DN_PAIRS_MAX];
    char msg[128]; /* unused here: the rule was validated when stored */
    int n = cs_dn_parse(cond, pairs, CS_DN_PAIRS_MAX, msg, sizeof(msg));

    if (n < 0)
        return -1;
    if (exact)
        return name_equals(name, pairs, n, case_sensitive, deny);
    if (!deny)
        return pairs_cover_name(name, pairs, n, case_sensitive);
    for (int i = 0; i < n; i++)
        if (!pair_seen_by_deny(name, &pairs[i], case_sensitive))
            return 0;
    return 1;
}

/*
 * An extension decoded, or why not: absent (no such extension), or
 * unreadable (present twice, which RFC 5280 forbids, or not decodable).
 */
typedef enum { EXT_OK, EXT_ABSENT, EXT_UNREADABLE } ext_state;

static void *ext_get(const X509 *leaf, int nid, ext_state *state)
{
    int crit = 0;
    void *v = X509_get_ext_d2i(leaf, nid, &crit, NULL);

    *state = v != NULL ? EXT_OK : crit == -1 ? EXT_ABSENT : EXT_UNREADABLE;
    return v;
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

/* An IP address in canonical form: an IPv4-mapped IPv6 address is IPv4. */
static size_t ip_canonical(unsigned char ip[16], size_t len)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (len == 16 && memcmp(ip, mapped, sizeof(mapped)) == 0) {
        memmove(ip, ip + 12, 4);
        return 4;
    }
    return len == 4 || len == 16 ? len : 0;
}

/*
 * DNS names in canonical form: ASCII (an IA5String; A-labels for IDNs),
 * one trailing dot dropped, compared caselessly whatever the rule says,
 * since DNS itself is caseless.
 */
static size_t dns_trim(const char *s, size_t len)
{
    return len > 1 && s[len - 1] == '.' && s[len - 2] != '\\' ? len - 1 : len;
}

static seen dns_seen(const ASN1_STRING *str, const char *glob)
{
    const unsigned char *text;
    size_t len;

    if (str == NULL || ASN1_STRING_type(str) != V_ASN1_IA5STRING)
        return SEEN_UNREADABLE;
    text = ASN1_STRING_get0_data(str);
    len = (size_t)ASN1_STRING_length(str);
    if (!ascii_only(text, len))
        return SEEN_UNREADABLE;
    len = dns_trim((const char *)text, len);
    return cs_glob_match(glob, (const char *)text, len, 0) ? SEEN_MATCH : SEEN_NO;
}

static seen ip_seen(const ASN1_OCTET_STRING *addr, const unsigned char *ip, size_t ip_len)
{
    unsigned char bytes[16];
    size_t len;

    if (addr == NULL || ASN1_STRING_length(addr) > 16)
        return SEEN_UNREADABLE;
    len = (size_t)ASN1_STRING_length(addr);
    memcpy(bytes, ASN1_STRING_get0_data(addr), len);
    if ((len = ip_canonical(bytes, len)) == 0)
        return SEEN_UNREADABLE;
    return len == ip_len && memcmp(bytes, ip, len) == 0 ? SEEN_MATCH : SEEN_NO;
}

/* A UPN otherName: its value (UTF8String or IA5String), or unreadable. */
static seen upn_seen(const GENERAL_NAME *gen, const char *glob, int case_sensitive)
{
    char oid[OID_TEXT_MAX];
    const OTHERNAME *other = gen->d.otherName;
    const ASN1_TYPE *v;

    if (gen->type != GEN_OTHERNAME || other == NULL || other->type_id == NULL)
        return SEEN_NO;
    if (OBJ_obj2txt(oid, sizeof(oid), other->type_id, 1) <= 0 || strcmp(oid, UPN_OID) != 0)
        return SEEN_NO;
    v = other->value;
    if (v == NULL || (v->type != V_ASN1_UTF8STRING && v->type != V_ASN1_IA5STRING))
        return SEEN_UNREADABLE;
    return string_seen(v->value.asn1_string, glob, case_sensitive);
}

static seen san_entry_seen(const GENERAL_NAME *gen, san_type t, const char *glob,
                           const unsigned char *ip, size_t ip_len, int case_sensitive)
{
    switch (t) {
    case SAN_DNS:
        return gen->type == GEN_DNS ? dns_seen(gen->d.dNSName, glob) : SEEN_NO;
    case SAN_EMAIL:
        return gen->type == GEN_EMAIL ? string_seen(gen->d.rfc822Name, glob, case_sensitive)
                                      : SEEN_NO;
    case SAN_URI:
        return gen->type == GEN_URI
                   ? string_seen(gen->d.uniformResourceIdentifier, glob, case_sensitive)
                   : SEEN_NO;
    case SAN_IP:
        return gen->type == GEN_IPADD ? ip_seen(gen->d.iPAddress, ip, ip_len) : SEEN_NO;
    case SAN_UPN:
        return upn_seen(gen, glob, case_sensitive);
    case SAN_BAD:
        break;
    }
    return SEEN_NO;
}

/* One "TYPE:PATTERN" line: some entry of that type matches (deny: or cannot be read). */
static int san_line_holds(const GENERAL_NAMES *gens, const char *line, size_t len,
                          int case_sensitive, int deny)
{
    const char *pattern;
    size_t plen, ip_len = 0;
    unsigned char ip[16];
    char glob[CS_PATTERN_MAX];
    san_type t = san_split(line, len, &pattern, &plen);

    if (t == SAN_BAD || !copy_pattern(pattern, plen, glob))
        return -1;
    if (t == SAN_IP &&
        ((ip_len = parse_ip(pattern, plen, ip)) == 0 || (ip_len = ip_canonical(ip, ip_len)) == 0))
        return -1;
    if (t == SAN_DNS)
        glob[dns_trim(glob, plen)] = '\0';
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++)
        if (counts(
                san_entry_seen(sk_GENERAL_NAME_value(gens, i), t, glob, ip, ip_len, case_sensitive),
                deny))
            return 1;
    return 0;
}

static int san_matches(const X509 *leaf, const char *cond, int case_sensitive, int deny)
{
    const char *p = cond, *line;
    size_t len;
    int result = 1;
    ext_state state;
    GENERAL_NAMES *gens = ext_get(leaf, NID_subject_alt_name, &state);

    while (result == 1 && next_line(&p, &line, &len)) {
        if (state == EXT_OK)
            result = san_line_holds(gens, line, len, case_sensitive, deny);
        else
            result = state == EXT_UNREADABLE && deny;
    }
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

/*
 * An OID in the list, or (deny) the wildcard that stands for every OID:
 * anyExtendedKeyUsage, anyPolicy.
 */
static int oid_in(const ASN1_OBJECT *obj, const char *cond, size_t len, int deny, int any_nid)
{
    return oid_equals(obj, cond, len) || (deny && OBJ_obj2nid(obj) == any_nid);
}

static int eku_has(const void *ext, const char *cond, size_t len, int deny)
{
    const EXTENDED_KEY_USAGE *eku = ext;

    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
        if (oid_in(sk_ASN1_OBJECT_value(eku, i), cond, len, deny, NID_anyExtendedKeyUsage))
            return 1;
    return 0;
}

static int policy_has(const void *ext, const char *cond, size_t len, int deny)
{
    const CERTIFICATEPOLICIES *pols = ext;

    for (int i = 0; i < sk_POLICYINFO_num(pols); i++)
        if (oid_in(sk_POLICYINFO_value(pols, i)->policyid, cond, len, deny, NID_any_policy))
            return 1;
    return 0;
}

typedef struct {
    int nid;
    int absent_is_any; /* no extension means every purpose (EKU) */
    int (*has)(const void *ext, const char *cond, size_t len, int deny);
    void (*release)(void *ext);
} oid_ext;

/*
 * Every OID of the list is in the extension. A deny rule also matches an
 * extension it cannot read, and one that allows every OID.
 */
static int oid_list_matches(const X509 *leaf, const oid_ext *kind, const char *cond, int deny)
{
    const char *p = cond, *line;
    size_t len;
    int result = 1;
    ext_state state;
    void *ext = ext_get(leaf, kind->nid, &state);

    while (result == 1 && next_line(&p, &line, &len)) {
        if (state == EXT_OK)
            result = kind->has(ext, line, len, deny);
        else
            result = deny && (state == EXT_UNREADABLE || kind->absent_is_any);
    }
    kind->release(ext);
    return result;
}

static void eku_release(void *ext)
{
    EXTENDED_KEY_USAGE_free(ext);
}

static void policy_release(void *ext)
{
    CERTIFICATEPOLICIES_free(ext);
}

static const oid_ext eku_ext = {NID_ext_key_usage, 1, eku_has, eku_release};
static const oid_ext policy_ext = {NID_certificate_policies, 0, policy_has, policy_release};

static int present(const char *s)
{
    return s != NULL && *s != '\0';
}

int cs_rule_matches(const cs_rule_spec *spec, const X509 *leaf)
{
    int r = 1, deny = spec->action == CS_RULE_DENY, cs = spec->case_sensitive;

    if (leaf == NULL)
        return -1;
    if (r == 1 && present(spec->subject))
        r = name_matches(X509_get_subject_name(leaf), spec->subject, spec->subject_exact, cs, deny);
    if (r == 1 && present(spec->issuer))
        r = name_matches(X509_get_issuer_name(leaf), spec->issuer, spec->issuer_exact, cs, deny);
    if (r == 1 && present(spec->san))
        r = san_matches(leaf, spec->san, cs, deny);
    if (r == 1 && present(spec->eku))
        r = oid_list_matches(leaf, &eku_ext, spec->eku, deny);
    if (r == 1 && present(spec->policy))
        r = oid_list_matches(leaf, &policy_ext, spec->policy, deny);
    return r;
}
