/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The certstore: URI grammar, parsed by one pure function.
 *
 *   certstore-uri = "certstore:" abs-path [ "?fp=" fingerprint ]
 *                 / "certstore://" abs-path [ "?fp=" fingerprint ]
 *   abs-path      = "/" *( pchar / "/" )            ; RFC 3986 pchar
 *   fingerprint   = 64 HEXDIG, or 32 hex pairs separated by ":"
 *
 * Deliberately strict, because the URI names the file that decides who may
 * connect:
 * - The scheme is matched without regard to case (RFC 3986), nothing else is.
 * - Only absolute paths: a relative one would depend on the working
 *   directory of whichever server opens it, and servers chdir and chroot.
 * - An authority is refused unless it is empty ("certstore:///p"): there is
 *   no remote store, and "localhost" would be one more spelling to audit.
 * - Percent escapes are decoded (so a path may hold any byte), but a
 *   malformed escape, an encoded NUL or control character, a raw character
 *   outside RFC 3986 pchar, a fragment, an empty or repeated query, or any
 *   query key other than fp is an error, never ignored.
 *
 * Everything lives in this header, with no dependency beyond libc, so the
 * loader (store.c) and a fuzz target can both compile it in as is.
 */
#ifndef CSP_STORE_URI_H
#define CSP_STORE_URI_H

#include <stddef.h>
#include <string.h>

#define CSP_STORE_URI_SCHEME "certstore"
#define CSP_STORE_URI_PATH_MAX 4096 /* bytes of the decoded path, NUL included */
#define CSP_STORE_URI_FP_LEN 64     /* SHA-256 as lowercase hex */

typedef struct {
    char path[CSP_STORE_URI_PATH_MAX]; /* decoded absolute path */
    int have_fp;                       /* a ?fp= selects one pin */
    char fp[CSP_STORE_URI_FP_LEN + 1]; /* lowercase hex when have_fp */
} csp_store_uri;

typedef enum {
    CSP_URI_OK = 0,
    CSP_URI_NOT_CERTSTORE, /* no "certstore:" scheme */
    CSP_URI_AUTHORITY,     /* "//host/..." with a host */
    CSP_URI_RELATIVE,      /* path does not start with "/" */
    CSP_URI_BAD_CHAR,      /* character not allowed in a path */
    CSP_URI_BAD_ESCAPE,    /* "%" not followed by two hex digits */
    CSP_URI_BAD_BYTE,      /* escape decodes to NUL or a control character */
    CSP_URI_TOO_LONG,      /* decoded path does not fit */
    CSP_URI_FRAGMENT,      /* "#..." */
    CSP_URI_BAD_QUERY,     /* empty query, unknown key, repeated fp */
    CSP_URI_BAD_FP         /* fp is not a SHA-256 fingerprint */
} csp_store_uri_status;

static inline const char *csp_store_uri_strerror(csp_store_uri_status status)
{
    switch (status) {
    case CSP_URI_OK:
        return "ok";
    case CSP_URI_NOT_CERTSTORE:
        return "not a certstore: URI";
    case CSP_URI_AUTHORITY:
        return "a host is not allowed (use certstore:/path or certstore:///path)";
    case CSP_URI_RELATIVE:
        return "the path must be absolute";
    case CSP_URI_BAD_CHAR:
        return "character not allowed in the path (percent-encode it)";
    case CSP_URI_BAD_ESCAPE:
        return "malformed percent escape";
    case CSP_URI_BAD_BYTE:
        return "escape decodes to NUL or a control character";
    case CSP_URI_TOO_LONG:
        return "path too long";
    case CSP_URI_FRAGMENT:
        return "a fragment (#) is not allowed";
    case CSP_URI_BAD_QUERY:
        return "the only query allowed is a single ?fp=SHA256";
    case CSP_URI_BAD_FP:
        return "fp must be a SHA-256 fingerprint (64 hex digits, colons allowed)";
    }
    return "unknown URI error";
}

static inline int csp_uri_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without pct-encoded, plus "/" (the segment separator). */
static inline int csp_uri_is_path_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

static inline int csp_uri_scheme_matches(const char *uri, size_t *after)
{
    static const char scheme[] = CSP_STORE_URI_SCHEME ":";
    size_t i;

    for (i = 0; scheme[i] != '\0'; i++) {
        char c = uri[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != scheme[i])
            return 0;
    }
    *after = i;
    return 1;
}

/* Decode the path up to "?" or the end into out->path. */
static inline csp_store_uri_status csp_uri_decode_path(const char *p, const char **end,
                                                       csp_store_uri *out)
{
    size_t len = 0;

    if (*p != '/')
        return CSP_URI_RELATIVE;
    while (*p != '\0' && *p != '?') {
        unsigned char byte;

        if (*p == '#')
            return CSP_URI_FRAGMENT;
        if (*p == '%') {
            int hi = csp_uri_hex_value(p[1]);
            int lo = hi < 0 ? -1 : csp_uri_hex_value(p[2]);

            if (lo < 0)
                return CSP_URI_BAD_ESCAPE;
            byte = (unsigned char)(hi * 16 + lo);
            if (byte < 0x20 || byte == 0x7f)
                return CSP_URI_BAD_BYTE;
            p += 3;
        } else if (csp_uri_is_path_char(*p)) {
            byte = (unsigned char)*p++;
        } else {
            return CSP_URI_BAD_CHAR;
        }
        if (len + 1 >= sizeof(out->path))
            return CSP_URI_TOO_LONG;
        out->path[len++] = (char)byte;
    }
    out->path[len] = '\0';
    *end = p;
    return CSP_URI_OK;
}

/* 64 hex digits, or 32 pairs joined by single colons; lowercased into fp. */
static inline csp_store_uri_status csp_uri_parse_fp(const char *text,
                                                    char fp[CSP_STORE_URI_FP_LEN + 1])
{
    size_t digits = 0;
    int colons = -1; /* unknown until the first separator position */

    while (*text != '\0') {
        if (*text == '#')
            return CSP_URI_FRAGMENT;
        if (*text == '&')
            return CSP_URI_BAD_QUERY;
        if (digits > 0 && digits % 2 == 0 && digits < CSP_STORE_URI_FP_LEN) {
            int colon_here = *text == ':';

            if (colons < 0)
                colons = colon_here;
            if (colon_here != colons)
                return CSP_URI_BAD_FP;
            text += colon_here;
        }
        if (digits >= CSP_STORE_URI_FP_LEN || csp_uri_hex_value(*text) < 0)
            return CSP_URI_BAD_FP;
        fp[digits++] = "0123456789abcdef"[csp_uri_hex_value(*text)];
        text++;
    }
    if (digits != CSP_STORE_URI_FP_LEN)
        return CSP_URI_BAD_FP;
    fp[digits] = '\0';
    return CSP_URI_OK;
}

static inline csp_store_uri_status csp_uri_parse_query(const char *query, csp_store_uri *out)
{
    static const char key[] = "fp=";

    if (strncmp(query, key, sizeof(key) - 1) != 0)
        return CSP_URI_BAD_QUERY;
    out->have_fp = 1;
    return csp_uri_parse_fp(query + sizeof(key) - 1, out->fp);
}

/*
 * Parse a certstore: URI into *out. Returns CSP_URI_OK or the first problem
 * found; *out is fully reset first, and meaningful only on CSP_URI_OK.
 */
static inline csp_store_uri_status csp_store_uri_parse(const char *uri, csp_store_uri *out)
{
    csp_store_uri_status status;
    const char *p, *end = NULL;
    size_t after;

    memset(out, 0, sizeof(*out));
    if (uri == NULL || !csp_uri_scheme_matches(uri, &after))
        return CSP_URI_NOT_CERTSTORE;
    p = uri + after;
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        if (*p != '/')
            return *p == '\0' ? CSP_URI_RELATIVE : CSP_URI_AUTHORITY;
    }
    status = csp_uri_decode_path(p, &end, out);
    if (status == CSP_URI_OK && *end == '?')
        status = csp_uri_parse_query(end + 1, out);
    if (status != CSP_URI_OK)
        memset(out, 0, sizeof(*out));
    return status;
}

#endif /* CSP_STORE_URI_H */
