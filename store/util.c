/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fingerprints, hex, times, mapping kinds and the text forms of keys.
 * Nothing here touches the database.
 */
#include <ctype.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cs_internal.h"

#define SHA256_LEN 32
#define SPKI_DER_MAX 4096
#define CERT_DER_STACK 8192

/*
 * SHA-256, fetched once: EVP_sha256() makes libcrypto look the
 * implementation up again on every digest, which is most of what hashing a
 * certificate costs on the verify path.
 */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    unsigned int md_len = 0;

    pthread_once(&sha256_once, sha256_fetch);
    return EVP_Digest(data, len, out, &md_len,
                      sha256_fetched != NULL ? sha256_fetched : EVP_sha256(), NULL) == 1 &&
           md_len == SHA256_LEN;
}

/* SHA-256 over a certificate's DER; small certificates never touch the heap. */
static int cert_sha256(const X509 *cert, unsigned char out[SHA256_LEN])
{
    unsigned char stack[CERT_DER_STACK];
    unsigned char *der = stack, *p;
    int len = cert != NULL ? i2d_X509(cert, NULL) : -1, ok;

    if (len <= 0)
        return 0;
    if (len > (int)sizeof(stack) && (der = OPENSSL_malloc((size_t)len)) == NULL)
        return 0;
    p = der;
    ok = i2d_X509(cert, &p) == len && sha256(der, (size_t)len, out);
    if (der != stack)
        OPENSSL_free(der);
    return ok;
}

static const char hex_digits[] = "0123456789abcdef";

static void hex_encode(const unsigned char *bytes, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_digits[bytes[i] >> 4];
        out[2 * i + 1] = hex_digits[bytes[i] & 0xf];
    }
    out[2 * len] = '\0';
}

/* Table-driven: hex parsing is most of a bulk import's parsing time. */
static const signed char hex_table[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int hex_value(char c)
{
    return hex_table[(unsigned char)c] - 1;
}

/*
 * Hex digits with optional colons between byte pairs ("ab:cd"), stopping at
 * `stop` (or the end). An odd digit count is allowed only when odd_ok, and
 * then reads as if a leading 0 were there (serial numbers). Returns the byte
 * count, or -1 when the text is bad or longer than max.
 */
static long hex_decode(const char *text, size_t textlen, int odd_ok, unsigned char *out, size_t max)
{
    size_t digits = 0, n = 0;
    int pending = -1;

    for (size_t i = 0; i < textlen; i++) {
        if (text[i] == ':') {
            /* Only between complete byte pairs, never first or last. */
            if (i == 0 || i + 1 == textlen || text[i - 1] == ':' || (digits % 2) != 0)
                return -1;
            continue;
        }
        if (hex_value(text[i]) < 0)
            return -1;
        digits++;
    }
    if (digits == 0 || ((digits % 2) != 0 && !odd_ok) || (digits + 1) / 2 > max)
        return -1;
    if ((digits % 2) != 0)
        pending = 0; /* the implied leading zero nibble */
    for (size_t i = 0; i < textlen; i++) {
        int v = hex_value(text[i]);

        if (v < 0)
            continue;
        if (pending < 0) {
            pending = v;
        } else {
            out[n++] = (unsigned char)(pending << 4 | v);
            pending = -1;
        }
    }
    return (long)n;
}

/* ---- fingerprints --------------------------------------------------------- */

int cs_fp_of_cert(const X509 *cert, char hex[CS_FP_HEX_LEN + 1])
{
    unsigned char md[SHA256_LEN];

    hex[0] = '\0';
    if (!cert_sha256(cert, md))
        return 0;
    hex_encode(md, sizeof(md), hex);
    return 1;
}

int cs_fp_normalise(const char *in, char hex[CS_FP_HEX_LEN + 1])
{
    unsigned char bytes[SHA256_LEN];

    hex[0] = '\0';
    if (in == NULL || hex_decode(in, strlen(in), 0, bytes, sizeof(bytes)) != SHA256_LEN)
        return 0;
    hex_encode(bytes, sizeof(bytes), hex);
    return 1;
}

/* ---- times ---------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

int64_t cs_asn1_time_to_unix(const ASN1_TIME *t, int *ok)
{
    struct tm tm;

    *ok = 0;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    *ok = 1;
    return days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 +
           tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
}

int64_t cs_now(void)
{
    return (int64_t)time(NULL);
}

/* Exactly `count` decimal digits; advances *p. */
static int read_digits(const char **p, int count, int *value)
{
    int v = 0;

    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return 0;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += count;
    *value = v;
    return 1;
}

static int expect_char(const char **p, char c)
{
    if (**p != c)
        return 0;
    (*p)++;
    return 1;
}

static int parse_date(const char **p, int *y, int *m, int *d)
{
    return read_digits(p, 4, y) && expect_char(p, '-') && read_digits(p, 2, m) &&
           expect_char(p, '-') && read_digits(p, 2, d) && *m >= 1 && *m <= 12 && *d >= 1 &&
           *d <= days_in_month(*y, *m);
}

static int parse_clock(const char **p, int *h, int *mi, int *s)
{
    if (!(read_digits(p, 2, h) && expect_char(p, ':') && read_digits(p, 2, mi) &&
          expect_char(p, ':') && read_digits(p, 2, s)))
        return 0;
    /* Fractions are accepted and dropped: policy works in whole seconds. */
    if (**p == '.') {
        (*p)++;
        if (!isdigit((unsigned char)**p))
            return 0;
        while (isdigit((unsigned char)**p))
            (*p)++;
    }
    return *h <= 23 && *mi <= 59 && *s <= 60;
}

/* "Z" or "±HH:MM"; the offset in seconds east of UTC. */
static int parse_offset(const char **p, int *offset)
{
    int sign, h, mi;

    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        *offset = 0;
        return 1;
    }
    if (**p != '+' && **p != '-')
        return 0;
    sign = **p == '-' ? -1 : 1;
    (*p)++;
    if (!(read_digits(p, 2, &h) && expect_char(p, ':') && read_digits(p, 2, &mi)) || h > 23 ||
        mi > 59)
        return 0;
    *offset = sign * (h * 3600 + mi * 60);
    return 1;
}

int cs_time_parse(const char *text, int64_t *out)
{
    const char *p = text;
    int y, m, d, h = 0, mi = 0, s = 0, offset = 0;

    if (text == NULL || !parse_date(&p, &y, &m, &d))
        return 0;
    if (*p == 'T' || *p == 't') {
        p++;
        if (!parse_clock(&p, &h, &mi, &s) || !parse_offset(&p, &offset))
            return 0;
    }
    if (*p != '\0')
        return 0;
    *out = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    return 1;
}

void cs_time_format(int64_t t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == CS_TIME_NONE || gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, 32, "%s", t == CS_TIME_NONE ? "-" : "?");
}

/* ---- kinds and keys -------------------------------------------------------- */

static const char *const kind_names[CS_KIND_COUNT] = {
    [CS_KIND_CERT] = "cert",
    [CS_KIND_ISSUER_SERIAL] = "issuer-serial",
    [CS_KIND_SKI] = "ski",
    [CS_KIND_SPKI] = "spki",
};

const char *cs_kind_name(cs_kind kind)
{
    if ((int)kind < 0 || kind >= CS_KIND_COUNT)
        return "unknown";
    return kind_names[kind];
}

int cs_kind_parse(const char *name, cs_kind *out)
{
    for (int k = 0; name != NULL && k < CS_KIND_COUNT; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (cs_kind)k;
            return 1;
        }
    }
    return 0;
}

/* Serial magnitude without leading zero bytes, as BN_bn2bin would give it. */
static size_t serial_magnitude(const ASN1_INTEGER *serial, const unsigned char **bytes)
{
    const unsigned char *data = ASN1_STRING_get0_data(serial);
    size_t len = (size_t)ASN1_STRING_length(serial);

    while (len > 0 && *data == 0) {
        data++;
        len--;
    }
    *bytes = data;
    return len;
}

static cs_status issuer_serial_key(const X509 *leaf, cs_key *out)
{
    const unsigned char *name_der = NULL, *serial = NULL;
    size_t name_len = 0, serial_len;

    /* The cached encoding: no allocation on the verify path. */
    if (X509_NAME_get0_der(X509_get_issuer_name(leaf), &name_der, &name_len) != 1)
        return CS_ERR;
    serial_len = serial_magnitude(X509_get0_serialNumber(leaf), &serial);
    if (serial_len > CS_KEY_MAX - SHA256_LEN)
        return CS_NOTFOUND;
    if (!sha256(name_der, name_len, out->bytes))
        return CS_ERR;
    if (serial_len > 0)
        memcpy(out->bytes + SHA256_LEN, serial, serial_len);
    out->len = SHA256_LEN + serial_len;
    return CS_OK;
}

static cs_status ski_key(const X509 *leaf, cs_key *out)
{
    /* OpenSSL caches extensions inside the object, hence its non-const API. */
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id((X509 *)leaf);
    int len;

    if (ski == NULL)
        return CS_NOTFOUND;
    len = ASN1_STRING_length(ski);
    if (len <= 0 || len > CS_KEY_MAX)
        return CS_NOTFOUND;
    memcpy(out->bytes, ASN1_STRING_get0_data(ski), (size_t)len);
    out->len = (size_t)len;
    return CS_OK;
}

static cs_status spki_key(const X509 *leaf, cs_key *out)
{
    unsigned char der[SPKI_DER_MAX];
    unsigned char *p = der;
    const X509_PUBKEY *spki = X509_get_X509_PUBKEY(leaf);
    int len = spki ? i2d_X509_PUBKEY(spki, NULL) : -1;

    if (len <= 0 || len > (int)sizeof(der) || i2d_X509_PUBKEY(spki, &p) != len)
        return CS_ERR;
    if (!sha256(der, (size_t)len, out->bytes))
        return CS_ERR;
    out->len = SHA256_LEN;
    return CS_OK;
}

static cs_status cert_key(const X509 *leaf, cs_key *out)
{
    if (!cert_sha256(leaf, out->bytes))
        return CS_ERR;
    out->len = SHA256_LEN;
    return CS_OK;
}

cs_status cs_key_from_cert(const X509 *leaf, cs_kind kind, cs_key *out)
{
    out->len = 0;
    if (leaf == NULL)
        return CS_INVALID;
    switch (kind) {
    case CS_KIND_CERT:
        return cert_key(leaf, out);
    case CS_KIND_ISSUER_SERIAL:
        return issuer_serial_key(leaf, out);
    case CS_KIND_SKI:
        return ski_key(leaf, out);
    case CS_KIND_SPKI:
        return spki_key(leaf, out);
    case CS_KIND_COUNT:
        break;
    }
    return CS_INVALID;
}

/* "ISSUERHASH:SERIAL": the issuer part is the first 64 hex digits. */
static int parse_issuer_serial(const char *text, cs_key *out)
{
    size_t len = strlen(text), digits = 0, split = 0;
    const unsigned char *mag;
    unsigned char serial[CS_KEY_MAX];
    long serial_len;

    for (split = 0; split < len && digits < 2 * SHA256_LEN; split++)
        if (text[split] != ':')
            digits++;
    if (digits != 2 * SHA256_LEN || split >= len || text[split] != ':')
        return 0;
    if (hex_decode(text, split, 0, out->bytes, SHA256_LEN) != SHA256_LEN)
        return 0;
    serial_len = hex_decode(text + split + 1, len - split - 1, 1, serial, sizeof(serial));
    if (serial_len < 0)
        return 0;
    mag = serial;
    while (serial_len > 0 && *mag == 0) {
        mag++;
        serial_len--;
    }
    if ((size_t)serial_len > CS_KEY_MAX - SHA256_LEN)
        return 0;
    if (serial_len > 0)
        memcpy(out->bytes + SHA256_LEN, mag, (size_t)serial_len);
    out->len = SHA256_LEN + (size_t)serial_len;
    return 1;
}

int cs_key_parse(cs_kind kind, const char *text, cs_key *out)
{
    long n;

    out->len = 0;
    if (text == NULL)
        return 0;
    switch (kind) {
    case CS_KIND_ISSUER_SERIAL:
        return parse_issuer_serial(text, out);
    case CS_KIND_CERT:
    case CS_KIND_SPKI:
        n = hex_decode(text, strlen(text), 0, out->bytes, SHA256_LEN);
        if (n != SHA256_LEN)
            return 0;
        out->len = SHA256_LEN;
        return 1;
    case CS_KIND_SKI:
        n = hex_decode(text, strlen(text), 0, out->bytes, CS_KEY_MAX);
        if (n <= 0)
            return 0;
        out->len = (size_t)n;
        return 1;
    case CS_KIND_COUNT:
        break;
    }
    return 0;
}

void cs_key_format(cs_kind kind, const cs_key *key, char *buf, size_t buflen)
{
    char hex[2 * CS_KEY_MAX + 4];

    if (buflen == 0)
        return;
    if (key == NULL || key->len > CS_KEY_MAX) {
        buf[0] = '\0';
        return;
    }
    if (kind == CS_KIND_ISSUER_SERIAL && key->len >= SHA256_LEN) {
        hex_encode(key->bytes, SHA256_LEN, hex);
        hex[2 * SHA256_LEN] = ':';
        if (key->len == SHA256_LEN)
            memcpy(hex + 2 * SHA256_LEN + 1, "00", 3);
        else
            hex_encode(key->bytes + SHA256_LEN, key->len - SHA256_LEN, hex + 2 * SHA256_LEN + 1);
    } else {
        hex_encode(key->bytes, key->len, hex);
    }
    snprintf(buf, buflen, "%s", hex);
}

void cs_key_abbrev(cs_kind kind, const cs_key *key, char *buf, size_t buflen)
{
    char full[2 * CS_KEY_MAX + 4];

    cs_key_format(kind, key, full, sizeof(full));
    if (strlen(full) > 16)
        snprintf(buf, buflen, "%.16s\xe2\x80\xa6", full);
    else
        snprintf(buf, buflen, "%s", full);
}
