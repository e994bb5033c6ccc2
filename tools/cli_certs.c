/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading certificate files: PEM (one or more certificates) or DER (one),
 * detected by content. Every failure is one line that says what was found
 * instead; OpenSSL's own error text is only a supplement.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cli.h"

typedef struct {
    unsigned char *data;
    size_t len;
} file_bytes;

/* The last OpenSSL reason, for a supplement in parentheses; clears the queue. */
static const char *openssl_reason(void)
{
    unsigned long err = ERR_peek_last_error();
    const char *reason = err != 0 ? ERR_reason_error_string(err) : NULL;
    ERR_clear_error();
    return reason != NULL ? reason : "no detail";
}

/*
 * Read the whole file, refusing anything over the limit before reading it
 * (by size when the file is regular, by counting otherwise) so a huge file
 * costs nothing.
 */
static int read_limited(const cli_ctx *ctx, const char *path, file_bytes *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_fail(ctx, "%s: %s", path, strerror(errno));
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        cli_fail(ctx, "%s: %s", path, strerror(saved));
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        cli_fail(ctx, "%s: is a directory", path);
        return 0;
    }
    if (S_ISREG(st.st_mode) && st.st_size > CLI_FILE_LIMIT) {
        close(fd);
        cli_fail(ctx, "%s: file too large (limit " CLI_FILE_LIMIT_TEXT ")", path);
        return 0;
    }
    unsigned char *buf = malloc(CLI_FILE_LIMIT + 1);
    if (buf == NULL) {
        close(fd);
        cli_fail(ctx, "out of memory");
        return 0;
    }
    size_t len = 0;
    while (len <= CLI_FILE_LIMIT) {
        ssize_t n = read(fd, buf + len, CLI_FILE_LIMIT + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            free(buf);
            cli_fail(ctx, "%s: %s", path, strerror(saved));
            return 0;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > CLI_FILE_LIMIT) {
        free(buf);
        cli_fail(ctx, "%s: file too large (limit " CLI_FILE_LIMIT_TEXT ")", path);
        return 0;
    }
    if (len == 0) {
        free(buf);
        cli_fail(ctx, "%s: empty file", path);
        return 0;
    }
    out->data = buf;
    out->len = len;
    return 1;
}

static int contains(const file_bytes *f, const char *needle)
{
    return memmem(f->data, f->len, needle, strlen(needle)) != NULL;
}

/* Decode one DER certificate that must use every byte given. */
static X509 *decode_der_cert(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, len);
    if (cert != NULL && p != der + len) {
        X509_free(cert);
        cert = NULL;
    }
    return cert;
}

static int is_certificate_label(const char *name)
{
    return strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0;
}

/* What a non-certificate PEM block is, in the words of the error message. */
static const char *describe_label(const char *name)
{
    if (strstr(name, "PRIVATE KEY") != NULL)
        return "a PRIVATE KEY";
    if (strcmp(name, "TRUSTED CERTIFICATE") == 0)
        return "a TRUSTED CERTIFICATE (OpenSSL trust format)";
    return NULL;
}

static int parse_pem_block(const cli_ctx *ctx, const char *path, const char *name,
                           const unsigned char *data, long len, STACK_OF(X509) * certs)
{
    if (!is_certificate_label(name)) {
        const char *what = describe_label(name);
        if (what != NULL) {
            cli_fail(ctx, "%s: not a certificate (found %s)", path, what);
            return 0;
        }
        {
            cli_fail(ctx, "%s: not a certificate (found a PEM block labelled '%.40s')", path, name);
            return 0;
        }
    }
    X509 *cert = decode_der_cert(data, len);
    if (cert == NULL) {
        cli_fail(ctx, "%s: malformed certificate in PEM (%s)", path, openssl_reason());
        return 0;
    }
    if (!sk_X509_push(certs, cert)) {
        X509_free(cert);
        cli_fail(ctx, "out of memory");
        return 0;
    }
    return 1;
}

/*
 * Every PEM block in the file; text around the blocks is allowed (as in
 * "openssl x509 -text" output), a block that does not decode is not.
 */
static int parse_pem(const cli_ctx *ctx, const char *path, const file_bytes *f,
                     STACK_OF(X509) * certs)
{
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    if (bio == NULL) {
        cli_fail(ctx, "out of memory");
        return 0;
    }
    int ok = 1;
    int blocks = 0;
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long len = 0;
        if (!PEM_read_bio(bio, &name, &header, &data, &len)) {
            unsigned long err = ERR_peek_last_error();
            int at_end = blocks > 0 && ERR_GET_LIB(err) == ERR_LIB_PEM &&
                         ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
            if (!at_end) {
                cli_fail(ctx, "%s: malformed PEM (%s)", path, openssl_reason());
                ok = 0;
            }
            ERR_clear_error();
            break;
        }
        blocks++;
        ok = parse_pem_block(ctx, path, name, data, len, certs);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        if (!ok)
            break;
    }
    BIO_free(bio);
    return ok;
}

/* A DER private key where a certificate was expected deserves its own message. */
static int der_is_private_key(const file_bytes *f)
{
    const unsigned char *p = f->data;
    EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, (long)f->len);
    int found = key != NULL;
    EVP_PKEY_free(key);
    ERR_clear_error();
    return found;
}

static int parse_der(const cli_ctx *ctx, const char *path, const file_bytes *f,
                     STACK_OF(X509) * certs)
{
    /* Every DER certificate starts with a SEQUENCE tag. */
    if (f->data[0] != 0x30) {
        cli_fail(ctx, "%s: not a certificate (neither PEM nor DER)", path);
        return 0;
    }
    X509 *cert = decode_der_cert(f->data, (long)f->len);
    if (cert == NULL) {
        if (der_is_private_key(f)) {
            cli_fail(ctx, "%s: not a certificate (found a PRIVATE KEY)", path);
            return 0;
        }
        {
            cli_fail(ctx, "%s: malformed DER certificate (%s)", path, openssl_reason());
            return 0;
        }
    }
    if (!sk_X509_push(certs, cert)) {
        X509_free(cert);
        cli_fail(ctx, "out of memory");
        return 0;
    }
    return 1;
}

STACK_OF(X509) * cli_read_certs(const cli_ctx *ctx, const char *path)
{
    file_bytes f;
    ERR_clear_error();
    if (!read_limited(ctx, path, &f))
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    int ok = certs != NULL;
    if (!ok)
        cli_fail(ctx, "out of memory");
    else if (contains(&f, "-----BEGIN "))
        ok = parse_pem(ctx, path, &f, certs);
    else
        ok = parse_der(ctx, path, &f, certs);
    free(f.data);
    ERR_clear_error();
    if (!ok) {
        sk_X509_pop_free(certs, X509_free);
        return NULL;
    }
    return certs;
}

X509 *cli_read_one_cert(const cli_ctx *ctx, const char *path)
{
    STACK_OF(X509) *certs = cli_read_certs(ctx, path);
    if (certs == NULL)
        return NULL;
    int n = sk_X509_num(certs);
    X509 *cert = NULL;
    if (n == 1)
        cert = sk_X509_shift(certs);
    else
        cli_fail(ctx, "%s: expected one certificate, found %d", path, n);
    sk_X509_pop_free(certs, X509_free);
    return cert;
}

char *cli_subject_text(const X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    char *text = NULL;
    int flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, (unsigned long)flags) >= 0) {
        char *mem = NULL;
        long len = BIO_get_mem_data(bio, &mem);
        text = OPENSSL_strndup(mem != NULL ? mem : "", (size_t)len);
    }
    BIO_free(bio);
    ERR_clear_error();
    return text;
}
