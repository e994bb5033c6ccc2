/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crl_fetch: one GET through libcurl's easy API. http, https and file only,
 * redirects only to http and https and at most limits->max_redirects of
 * them, the body capped at limits->max_size (by Content-Length before
 * anything is read, and by counting), the whole transfer at
 * limits->timeout_s. A 304 to a conditional GET is "not modified"; any other
 * status but 200 is a failure that names it. crl_fetch_post is the same
 * transfer as a POST (OCSP, RFC 6960 A.1), http and https only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "crl_fetch.h"

typedef struct {
    crl_fetch_result *res;
    size_t cap;
    size_t max_size;
    int too_large;
} fetch_sink;

static size_t take_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    fetch_sink *sink = arg;
    crl_fetch_result *res = sink->res;
    size_t n = size * nmemb;

    if (n > sink->max_size - res->len) {
        sink->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (res->len + n > sink->cap) {
        size_t cap = sink->cap != 0 ? sink->cap : 65536;
        unsigned char *grown;

        while (cap < res->len + n)
            cap *= 2;
        if (cap > sink->max_size)
            cap = sink->max_size;
        if ((grown = realloc(res->data, cap)) == NULL)
            return 0;
        res->data = grown;
        sink->cap = cap;
    }
    memcpy(res->data + res->len, ptr, n);
    res->len += n;
    return n;
}

/* "Name: value\r\n" into buf when the name matches; the last response's wins. */
static void header_value(const char *line, size_t len, const char *name, char *buf, size_t buflen)
{
    size_t nlen = strlen(name), vlen;

    if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return;
    line += nlen + 1;
    len -= nlen + 1;
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
        len--;
    vlen = len < buflen - 1 ? len : 0; /* one that does not fit is dropped, not cut */
    memcpy(buf, line, vlen);
    buf[vlen] = '\0';
}

static size_t take_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    crl_fetch_result *res = arg;
    size_t n = size * nmemb;

    /* A new response (after a redirect) starts with its status line. */
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        res->etag[0] = '\0';
        res->last_modified[0] = '\0';
    }
    header_value(ptr, n, "ETag", res->etag, sizeof(res->etag));
    header_value(ptr, n, "Last-Modified", res->last_modified, sizeof(res->last_modified));
    return n;
}

int crl_fetch_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

void crl_fetch_cleanup(void)
{
    curl_global_cleanup();
}

static struct curl_slist *conditions(const char *etag, const char *last_modified)
{
    struct curl_slist *list = NULL, *next;
    char line[512];

    if (etag != NULL && *etag != '\0' && strlen(etag) < 400) {
        snprintf(line, sizeof(line), "If-None-Match: %s", etag);
        if ((next = curl_slist_append(list, line)) != NULL)
            list = next;
    }
    if (last_modified != NULL && *last_modified != '\0' && strlen(last_modified) < 400) {
        snprintf(line, sizeof(line), "If-Modified-Since: %s", last_modified);
        if ((next = curl_slist_append(list, line)) != NULL)
            list = next;
    }
    return list;
}

typedef struct {
    const void *data; /* NULL: a GET */
    size_t len;
} post_body;

static void set_options(CURL *curl, const char *url, const crl_fetch_limits *limits,
                        fetch_sink *sink, struct curl_slist *headers, const post_body *post,
                        char *errbuf)
{
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR,
                     post->data != NULL ? "http,https" : "http,https,file");
    if (post->data != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post->data);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post->len);
        curl_easy_setopt(curl, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
    }
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, limits->max_redirects);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, limits->timeout_s);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, limits->timeout_s);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)limits->max_size);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT,
                     post->data != NULL ? "certstore-ocsp" : "certstore-crl-fetch");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, take_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, take_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, sink->res);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    if (headers != NULL)
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
}

__attribute__((format(printf, 2, 3))) static crl_fetch_outcome failed(crl_fetch_result *res,
                                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
    free(res->data);
    res->data = NULL;
    res->len = 0;
    return CRL_FETCH_FAILED;
}

static crl_fetch_outcome transfer(const char *url, struct curl_slist *headers,
                                  const post_body *post, const crl_fetch_limits *limits,
                                  crl_fetch_result *res)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    fetch_sink sink = {.res = res, .max_size = limits->max_size};
    CURL *curl = curl_easy_init();
    long status = 0;
    CURLcode rc;

    if (curl == NULL)
        return failed(res, "cannot start libcurl");
    set_options(curl, url, limits, &sink, headers, post, errbuf);
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return failed(res, "response larger than %zu bytes", limits->max_size);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return failed(res, "timed out after %ld s", limits->timeout_s);
    if (rc == CURLE_TOO_MANY_REDIRECTS)
        return failed(res, "too many redirects (more than %ld)", limits->max_redirects);
    if (rc != CURLE_OK)
        return failed(res, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    /* file:// has no status; http(s) must answer 200, or 304 to a conditional GET. */
    if (status == 304 && headers != NULL && post->data == NULL) {
        free(res->data);
        res->data = NULL;
        res->len = 0;
        return CRL_FETCH_NOT_MODIFIED;
    }
    if (status != 0 && status != 200)
        return failed(res, "HTTP status %ld", status);
    return CRL_FETCH_OK;
}

crl_fetch_outcome crl_fetch(const char *url, const char *etag, const char *last_modified,
                            const crl_fetch_limits *limits, crl_fetch_result *res)
{
    post_body get = {NULL, 0};
    struct curl_slist *headers = conditions(etag, last_modified);
    crl_fetch_outcome outcome;

    memset(res, 0, sizeof(*res));
    outcome = transfer(url, headers, &get, limits, res);
    curl_slist_free_all(headers);
    return outcome;
}

crl_fetch_outcome crl_fetch_post(const char *url, const void *body, size_t len,
                                 const char *content_type, const crl_fetch_limits *limits,
                                 crl_fetch_result *res)
{
    post_body post = {body, len};
    struct curl_slist *headers = NULL;
    char line[160];
    crl_fetch_outcome outcome;

    memset(res, 0, sizeof(*res));
    if (body == NULL || strlen(content_type) > 100)
        return failed(res, "nothing to send");
    snprintf(line, sizeof(line), "Content-Type: %s", content_type);
    if ((headers = curl_slist_append(NULL, line)) == NULL)
        return failed(res, "out of memory");
    outcome = transfer(url, headers, &post, limits, res);
    curl_slist_free_all(headers);
    return outcome;
}
