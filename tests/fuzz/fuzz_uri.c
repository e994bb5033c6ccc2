/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the certstore: URI parser (provider/store_uri.h), the function that
 * decides which file a server trusts for its pins.
 *
 * Beyond "no crash", every accepted URI must satisfy the grammar's promises
 * (absolute path, no control bytes, a well-formed fingerprint), and
 * re-encoding the decoded path must parse back to the same result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle failure is a crash libFuzzer keeps, with the broken promise named. */
#define require(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_fingerprint(const csp_store_uri *uri)
{
    size_t i;

    if (!uri->have_fp) {
        require(uri->fp[0] == '\0');
        return;
    }
    require(strlen(uri->fp) == CSP_STORE_URI_FP_LEN);
    for (i = 0; i < CSP_STORE_URI_FP_LEN; i++)
        require(strchr("0123456789abcdef", uri->fp[i]) != NULL);
}

static void check_path(const csp_store_uri *uri)
{
    const unsigned char *p = (const unsigned char *)uri->path;

    require(p[0] == '/');
    require(strlen(uri->path) < CSP_STORE_URI_PATH_MAX);
    for (; *p != '\0'; p++)
        require(*p >= 0x20 && *p != 0x7f);
}

/*
 * Percent-encode every byte of the decoded path except letters, digits and
 * "/", behind an empty authority: a path may itself start with "//".
 */
static char *encode_again(const csp_store_uri *uri)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(uri->path);
    char *out = malloc(sizeof("certstore://") + 3 * len + sizeof("?fp=") + CSP_STORE_URI_FP_LEN);
    char *w = out;
    const unsigned char *p;

    require(out != NULL);
    w += sprintf(w, "certstore://");
    for (p = (const unsigned char *)uri->path; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '/') {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 0xf];
        }
    }
    if (uri->have_fp)
        w += sprintf(w, "?fp=%s", uri->fp);
    *w = '\0';
    return out;
}

static void check_round_trip(const csp_store_uri *uri)
{
    static csp_store_uri again; /* 4 KiB: keep it off the stack */
    char *text = encode_again(uri);
    csp_store_uri_status status = csp_store_uri_parse(text, &again);

    /* Encoding may lengthen the text, never the decoded path. */
    require(status == CSP_URI_OK);
    require(strcmp(again.path, uri->path) == 0);
    require(again.have_fp == uri->have_fp);
    require(strcmp(again.fp, uri->fp) == 0);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static csp_store_uri uri;
    char *text = malloc(size + 1);
    csp_store_uri_status status;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* the parser takes a C string: stop at the first NUL */
    status = csp_store_uri_parse(text, &uri);
    require(csp_store_uri_strerror(status) != NULL);
    if (status == CSP_URI_OK) {
        check_path(&uri);
        check_fingerprint(&uri);
        check_round_trip(&uri);
    } else {
        require(uri.path[0] == '\0' && !uri.have_fp);
    }
    free(text);
    return 0;
}
