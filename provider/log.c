/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decision log: one key=value line per decision, always on, to syslog
 * (facility authpriv), stderr or a file. Both syslog and the file are opened
 * at init, while the server still runs as root outside its chroot; later
 * writes go to the open descriptor.
 *
 * Values are quoted and escaped so that a subject or account can never
 * break a line or forge a key; UTF-8 stays readable. A decision made by a
 * mapping names it (mapping=ID kind=KIND), one made by a rule says so in
 * detail ("rule N"). Repeated identical failures are rate-limited
 * per thread: a client's own rejection may repeat CSP_LOG_BURST times a
 * second; a store-wide cause (store-unavailable, config-error) is said once
 * per CSP_LOG_STORE_QUIET seconds, because under a flood of handshakes one
 * line per handshake would bury it. The rest are counted and the count is
 * logged when the cause changes, the window ends or a client is accepted
 * again, so nothing disappears silently.
 *
 * The debug trace (CERTSTORE_DEBUG=1, to stderr) is separate and costs one
 * branch when off.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/x509.h>

#include "csp.h"

#define CSP_LOG_LINE_MAX 2048
#define CSP_LOG_BURST 10
#define CSP_LOG_STORE_QUIET 60

int csp_debug_enabled;

__attribute__((constructor)) static void csp_debug_init(void)
{
    const char *env = getenv("CERTSTORE_DEBUG");

    csp_debug_enabled = env != NULL && strcmp(env, "1") == 0;
}

void csp_debug_printf(const char *fmt, ...)
{
    char line[CSP_LOG_LINE_MAX];
    va_list args;
    int n;

    va_start(args, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    fprintf(stderr, "certstore debug [%d]: %s\n", (int)getpid(), line);
}

/* ---- sinks ---------------------------------------------------------------- */

static csp_log_kind csp_log_sink = CSP_LOG_SYSLOG;
static int csp_log_fd = -1;
static int csp_log_syslog_open;

/*
 * Opened as root, once, O_APPEND: survives chroot and privilege drop. Never
 * through a link (whoever planted it would have root create, append to or
 * take over the file it names) and never anything but a regular file (a
 * FIFO would block the server, a device be written to). Returns the
 * descriptor; -1 with errno, ELOOP for a link, EINVAL for not a regular file.
 */
static int csp_log_open_file(const char *path)
{
    struct stat st;
    int fd = open(
        path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0640);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/*
 * A log path that is a link or not a regular file is refused, said in
 * syslog, and the decisions go to syslog instead: logging elsewhere is no
 * reason to deny clients. Any other failure to open it is a config error.
 */
int csp_log_open(const csp_config *cfg, char *why, size_t why_len)
{
    int refused = 0;

    csp_log_sink = cfg->log_kind;
    if (cfg->log_kind == CSP_LOG_FILE) {
        csp_log_fd = csp_log_open_file(cfg->log_file);
        if (csp_log_fd >= 0)
            return 1;
        refused = errno == ELOOP || errno == EINVAL;
        snprintf(why, why_len, "%s: %s", cfg->log_file,
                 errno == ELOOP    ? "is a symbolic link"
                 : errno == EINVAL ? "is not a regular file"
                                   : strerror(errno));
        csp_log_sink = CSP_LOG_SYSLOG; /* still say it somewhere */
    }
    if (csp_log_sink == CSP_LOG_SYSLOG && !csp_log_syslog_open) {
        /* LOG_NDELAY connects now, before any chroot hides /dev/log. */
        openlog("certstore", LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
        csp_log_syslog_open = 1;
    }
    if (refused)
        csp_log_notice("certstore: log %s: refusing to write through it; logging to syslog "
                       "instead",
                       why);
    return cfg->log_kind != CSP_LOG_FILE || refused;
}

/*
 * Write line[0..len) as one line; line[len] is the caller's spare byte,
 * where the newline goes (a NUL for syslog). One write() per line, so
 * concurrent writers never interleave, and no buffering in the process:
 * the line is the kernel's once this returns.
 */
static void csp_log_write(int priority, char *line, size_t len)
{
    ssize_t unused;

    if (csp_log_sink == CSP_LOG_SYSLOG) {
        line[len] = '\0';
        syslog(LOG_AUTHPRIV | priority, "%s", line);
        return;
    }
    line[len] = '\n';
    unused = write(csp_log_sink == CSP_LOG_FILE ? csp_log_fd : STDERR_FILENO, line, len + 1);
    (void)unused;
}

void csp_log_notice(const char *fmt, ...)
{
    char line[CSP_LOG_LINE_MAX + 1];
    va_list args;
    int n;

    va_start(args, fmt);
    n = vsnprintf(line, CSP_LOG_LINE_MAX, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    if (n >= CSP_LOG_LINE_MAX)
        n = CSP_LOG_LINE_MAX - 1;
    csp_log_write(LOG_WARNING, line, (size_t)n);
}

/* ---- line building -------------------------------------------------------- */

/*
 * Each piece is copied in one pass, escaping as it goes, up to the room
 * left: at most CSP_LOG_LINE_MAX - 1 bytes of text, plus the spare byte
 * csp_log_write needs.
 */
#define CSP_LINE_ROOM (CSP_LOG_LINE_MAX - 1)

typedef struct {
    char text[CSP_LOG_LINE_MAX + 1];
    size_t len;
} csp_line;

static void csp_line_raw(csp_line *l, const char *s)
{
    char *p = l->text + l->len, *end = l->text + CSP_LINE_ROOM;

    while (*s != '\0' && p < end)
        *p++ = *s++;
    l->len = (size_t)(p - l->text);
}

/*
 * Length of the well-formed UTF-8 sequence at s (1..4), or 0 for a byte
 * that starts none (overlong forms, surrogates, beyond U+10FFFF, cut
 * short); *cp is its code point.
 */
static size_t csp_utf8_sequence(const unsigned char *s, unsigned *cp)
{
    size_t len;
    unsigned min;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, min = 0x80, *cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, min = 0x800, *cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, min = 0x10000, *cp = s[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3fu);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return len;
}

/*
 * What a log reader must not receive as it is: C0 and C1 controls, DEL,
 * the Unicode line and paragraph separators, and the bidirectional
 * controls that reorder what a terminal shows.
 */
static int csp_code_point_needs_escape(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * ` key="value"` (key_open is ` key="`): readable UTF-8 kept as it is;
 * quotes and backslashes backslash-escaped; controls (see above) and bytes
 * that are not UTF-8 as \xNN. A value cut short for room is still closed,
 * never inside a character.
 */
static void csp_line_quoted(csp_line *l, const char *key_open, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *v = (const unsigned char *)(value != NULL ? value : "");
    char *p, *end;

    csp_line_raw(l, key_open);
    if (l->len >= CSP_LINE_ROOM)
        return;
    p = l->text + l->len;
    end = l->text + CSP_LINE_ROOM - 1; /* one byte kept for the closing quote */
    while (*v != '\0') {
        unsigned cp = 0;
        size_t len = csp_utf8_sequence(v, &cp);

        if (*v == '"' || *v == '\\') {
            if (end - p < 2)
                break;
            *p++ = '\\';
            *p++ = (char)*v++;
        } else if (len > 0 && !csp_code_point_needs_escape(cp)) {
            if ((size_t)(end - p) < len)
                break;
            memcpy(p, v, len);
            p += len;
            v += len;
        } else {
            /* Every byte of an escaped character, or the one byte that is not UTF-8. */
            size_t n = len > 0 ? len : 1;

            if ((size_t)(end - p) < 4 * n)
                break;
            for (size_t i = 0; i < n; i++, v++) {
                *p++ = '\\';
                *p++ = 'x';
                *p++ = hex[*v >> 4];
                *p++ = hex[*v & 0xf];
            }
        }
    }
    *p++ = '"';
    l->len = (size_t)(p - l->text);
}

/* ` key=value` (key_eq is ` key=`) for tokens, hex or numbers (never user text). */
static void csp_line_token(csp_line *l, const char *key_eq, const char *value)
{
    csp_line_raw(l, key_eq);
    csp_line_raw(l, value != NULL && *value != '\0' ? value : "-");
}

/* Decimal digits of v into buf (at least 21 bytes), NUL-terminated; returns the end. */
static char *csp_utoa(char *buf, uint64_t v)
{
    char digits[21];
    size_t n = 0;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *buf++ = digits[--n];
    *buf = '\0';
    return buf;
}

/* This process's pid as text, per thread (redone after a fork). */
static const char *csp_pid_text(void)
{
    static __thread struct {
        pid_t pid;
        char text[24];
    } cached;
    pid_t pid = csp_process_pid();

    if (cached.pid != pid) {
        csp_utoa(cached.text, (uint64_t)pid);
        cached.pid = pid;
    }
    return cached.text;
}

/* The subject last printed on this thread, by the leaf's SHA-256: a reconnecting client's is the
 * same. */
static __thread struct {
    char leaf_fp[CS_FP_HEX_LEN + 1];
    char subject[512];
} csp_last_subject;

static void csp_line_subject(csp_line *l, const X509 *leaf, const char *leaf_fp)
{
    char subject[sizeof(csp_last_subject.subject)] = "";
    int known = leaf_fp != NULL && strlen(leaf_fp) == CS_FP_HEX_LEN;
    BIO *mem;
    int n;

    if (known && strcmp(leaf_fp, csp_last_subject.leaf_fp) == 0) {
        csp_line_quoted(l, " subject=\"", csp_last_subject.subject);
        return;
    }
    if (leaf != NULL && (mem = BIO_new(BIO_s_mem())) != NULL) {
        /* UTF-8 as it is (csp_line_quoted escapes what a reader must not get). */
        if (X509_NAME_print_ex(mem, X509_get_subject_name(leaf), 0,
                               XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
            n = BIO_read(mem, subject, sizeof(subject) - 1);
            subject[n > 0 ? n : 0] = '\0';
        }
        BIO_free(mem);
        if (known) {
            memcpy(csp_last_subject.subject, subject, sizeof(subject));
            memcpy(csp_last_subject.leaf_fp, leaf_fp, CS_FP_HEX_LEN + 1);
        }
    }
    csp_line_quoted(l, " subject=\"", subject);
}

static void csp_line_peer(csp_line *l, const SSL *ssl)
{
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof(addr);
    char text[INET6_ADDRSTRLEN + 16], *p = text;
    BIO *rbio;
    int fd = -1;
    unsigned port = 0;

    rbio = ssl != NULL ? SSL_get_rbio(ssl) : NULL;
    if (rbio == NULL || BIO_get_fd(rbio, &fd) <= 0 || fd < 0 ||
        getpeername(fd, (struct sockaddr *)&addr, &addr_len) != 0)
        return; /* memory BIOs, pipes: no peer to name */
    if (addr.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&addr;
        const unsigned char *octet = (const unsigned char *)&in4->sin_addr;

        /* A dotted quad by hand: glibc's inet_ntop goes through sprintf. */
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                *p++ = '.';
            p = csp_utoa(p, octet[i]);
        }
        port = ntohs(in4->sin_port);
    } else if (addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr;

        text[0] = '[';
        if (inet_ntop(AF_INET6, &in6->sin6_addr, text + 1, INET6_ADDRSTRLEN) == NULL)
            return;
        port = ntohs(in6->sin6_port);
        p = text + strlen(text);
        *p++ = ']';
    } else {
        return;
    }
    *p++ = ':';
    csp_utoa(p, port);
    csp_line_token(l, " peer=", text);
}

/* ---- rate limiting -------------------------------------------------------- */

typedef struct {
    char key[CS_FP_HEX_LEN + 256];
    time_t since;
    unsigned count;
    unsigned long suppressed;
} csp_limiter;

static __thread csp_limiter csp_thread_limiter;

static void csp_limiter_flush(csp_limiter *lim)
{
    if (lim->suppressed > 0)
        csp_log_notice("certstore: %lu similar messages suppressed (%s)", lim->suppressed,
                       lim->key);
    lim->suppressed = 0;
}

/* An acceptance ends any failure streak: report it, and say the next one anew. */
static void csp_limiter_end_streak(void)
{
    csp_limiter_flush(&csp_thread_limiter);
    csp_thread_limiter.key[0] = '\0';
    csp_thread_limiter.count = 0;
}

/* 1 if this failure line may be written now. */
static int csp_limiter_allow(const csp_log_decision_args *a)
{
    csp_limiter *lim = &csp_thread_limiter;
    char key[sizeof(lim->key)];
    time_t now = time(NULL);
    int per_client =
        strcmp(a->reason, "store-unavailable") != 0 && strcmp(a->reason, "config-error") != 0;
    time_t window = per_client ? 1 : CSP_LOG_STORE_QUIET;
    unsigned burst = per_client ? CSP_LOG_BURST : 1;

    snprintf(key, sizeof(key), "reason=%s detail=%s leaf=%s", a->reason,
             a->detail != NULL ? a->detail : "", per_client && a->leaf_fp ? a->leaf_fp : "*");
    if (strcmp(key, lim->key) != 0 || now < lim->since || now - lim->since >= window) {
        csp_limiter_flush(lim);
        if (strcmp(key, lim->key) != 0)
            strcpy(lim->key, key);
        lim->since = now;
        lim->count = 0;
    }
    if (++lim->count <= burst)
        return 1;
    lim->suppressed++;
    return 0;
}

/* result= .. issuer_sha256=: what an acceptance of the same certificates repeats. */
static void csp_line_head(csp_line *l, const csp_log_decision_args *a)
{
    csp_line_raw(l, "certstore:");
    csp_line_token(l, " result=", a->result);
    csp_line_token(l, " reason=", a->reason);
    csp_line_quoted(l, " account=\"", a->account);
    csp_line_subject(l, a->leaf, a->leaf_fp);
    csp_line_token(l, " leaf_sha256=", a->leaf_fp);
    csp_line_token(l, " issuer_sha256=", a->issuer_fp);
}

/* The head of the last acceptance this thread logged: a reconnecting partner's is the same. */
static __thread struct {
    char account[CS_ACCOUNT_MAX + 1];
    char leaf_fp[CS_FP_HEX_LEN + 1], issuer_fp[CS_FP_HEX_LEN + 1];
    size_t len;
    char text[CSP_LOG_LINE_MAX];
} csp_last_head;

static int csp_fp_known(const char *fp)
{
    return fp != NULL && strlen(fp) == CS_FP_HEX_LEN;
}

static void csp_line_accept_head(csp_line *l, const csp_log_decision_args *a)
{
    int keep = csp_fp_known(a->leaf_fp) && csp_fp_known(a->issuer_fp) &&
               strlen(a->account) < sizeof(csp_last_head.account);

    if (keep && csp_last_head.len > 0 &&
        memcmp(csp_last_head.leaf_fp, a->leaf_fp, CS_FP_HEX_LEN) == 0 &&
        memcmp(csp_last_head.issuer_fp, a->issuer_fp, CS_FP_HEX_LEN) == 0 &&
        strcmp(csp_last_head.account, a->account) == 0) {
        memcpy(l->text, csp_last_head.text, csp_last_head.len);
        l->len = csp_last_head.len;
        return;
    }
    csp_line_head(l, a);
    if (!keep)
        return;
    memcpy(csp_last_head.text, l->text, l->len);
    csp_last_head.len = l->len;
    memcpy(csp_last_head.leaf_fp, a->leaf_fp, CS_FP_HEX_LEN + 1);
    memcpy(csp_last_head.issuer_fp, a->issuer_fp, CS_FP_HEX_LEN + 1);
    strcpy(csp_last_head.account, a->account);
}

void csp_log_decision(const csp_log_decision_args *a)
{
    int accept = strcmp(a->result, "accept") == 0;
    csp_line l;

    if (accept)
        csp_limiter_end_streak();
    else if (!csp_limiter_allow(a))
        return;
    l.len = 0;
    if (accept && strcmp(a->reason, "none") == 0)
        csp_line_accept_head(&l, a);
    else
        csp_line_head(&l, a);
    if (a->mapping_id > 0 && a->kind != NULL) {
        char id[24];

        csp_utoa(id, (uint64_t)a->mapping_id);
        csp_line_token(&l, " mapping=", id);
        csp_line_token(&l, " kind=", a->kind);
    }
    csp_line_peer(&l, a->ssl);
    csp_line_token(&l, " pid=", csp_pid_text());
    csp_line_token(&l, " mode=", a->mode);
    if (a->revocation != NULL)
        csp_line_token(&l, " revocation=", a->revocation);
    if (a->detail != NULL && *a->detail != '\0')
        csp_line_quoted(&l, " detail=\"", a->detail);
    csp_log_write(accept ? LOG_INFO : LOG_NOTICE, l.text, l.len);
}
