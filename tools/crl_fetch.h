/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Downloading a CRL over HTTP(S) or from a file:// URL with libcurl's easy
 * API: bounded in time, size and redirects, conditional on the last ETag
 * and Last-Modified; and the same transfer as a POST, for OCSP queries.
 * Never prints; the caller reports.
 */
#ifndef CRL_FETCH_H
#define CRL_FETCH_H

#include <stddef.h>

typedef struct {
    long timeout_s;  /* the whole transfer, connection included */
    size_t max_size; /* bytes of body; more is an error */
    long max_redirects;
} crl_fetch_limits;

typedef enum { CRL_FETCH_OK, CRL_FETCH_NOT_MODIFIED, CRL_FETCH_FAILED } crl_fetch_outcome;

typedef struct {
    unsigned char *data; /* the body (CRL_FETCH_OK); free() it */
    size_t len;
    char etag[256]; /* response validators, "" when absent */
    char last_modified[128];
    char error[256]; /* why, for CRL_FETCH_FAILED */
} crl_fetch_result;

/* Global libcurl set-up and teardown, once per process. */
int crl_fetch_init(void);
void crl_fetch_cleanup(void);

/* GET url; etag/last_modified (may be NULL or "") make it conditional. */
crl_fetch_outcome crl_fetch(const char *url, const char *etag, const char *last_modified,
                            const crl_fetch_limits *limits, crl_fetch_result *res);

/* POST body to url (http or https) as content_type; the same limits, no conditions. */
crl_fetch_outcome crl_fetch_post(const char *url, const void *body, size_t len,
                                 const char *content_type, const crl_fetch_limits *limits,
                                 crl_fetch_result *res);

#endif
