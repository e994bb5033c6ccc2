/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal interface shared by the files of the certstore provider module.
 * provider.c owns the context; every other file reaches it through these
 * accessors.
 *
 * Two kinds of state live here:
 * - CSP_CTX, one per library context that activated the provider (the core
 *   handle, for raising errors);
 * - the process-wide policy state (config.c): the verification hook is
 *   installed once per process, whatever the number of library contexts,
 *   because SSL_CTX ex_data callbacks are process-wide.
 */
#ifndef CSP_H
#define CSP_H

#include <limits.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/e_os2.h>
#include <openssl/ssl.h>

#include "certstore.h"
#include "cs_store.h"

typedef struct csp_ctx CSP_CTX;

/* Reason codes raised through the core (texts in provider.c). */
enum { CSP_R_BAD_CONFIG = 1, CSP_R_STORE_UNAVAILABLE, CSP_R_BAD_URI, CSP_R_INTERNAL };

void csp_raise(const CSP_CTX *ctx, int reason, const char *file, int line, const char *func,
               const char *fmt, ...);
#define CSP_RAISE(ctx, reason, ...)                                                                \
    csp_raise((ctx), (reason), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, __VA_ARGS__)

/* The OSSL_STORE loader for certstore: URIs (store.c). */
extern const OSSL_DISPATCH csp_store_functions[];

/* ---- debug trace (log.c): free when CERTSTORE_DEBUG is not "1" ------------ */

extern int csp_debug_enabled;
void csp_debug_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define CSP_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (csp_debug_enabled)                                                                     \
            csp_debug_printf(__VA_ARGS__);                                                         \
    } while (0)

/* ---- configuration (config.c) --------------------------------------------- */

typedef enum { CSP_MODE_ENFORCE = 0, CSP_MODE_AUDIT, CSP_MODE_OFF } csp_mode;
typedef enum { CSP_LOG_SYSLOG = 0, CSP_LOG_STDERR, CSP_LOG_FILE } csp_log_kind;

#define CSP_BUSY_TIMEOUT_DEFAULT 2000
#define CSP_BUSY_TIMEOUT_MAX 60000

typedef struct {
    char db[PATH_MAX];
    csp_mode mode;
    csp_log_kind log_kind;
    char log_file[PATH_MAX];
    int busy_timeout_ms;
    int require_strong; /* refuse acceptances through rules (weak mappings) */
    int db_dir_fd;      /* keep a descriptor on the database's directory (chroot) */
    /* Set when a value was missing or invalid: every client is denied. */
    int config_error;
    char config_error_text[256];
} csp_config;

/* Read and validate the provider's openssl.cnf section. Always fills *out. */
void csp_config_read(const OSSL_CORE_HANDLE *handle, OSSL_FUNC_core_get_params_fn *get_params,
                     csp_config *out);
const char *csp_mode_name(csp_mode mode);

/*
 * Make `cfg` the process-wide policy (first activation) or check it against
 * the one in force (later activations in other library contexts); then
 * open the log and install the hooks once. Returns 1 (the provider always
 * initialises: failing closed means staying loaded).
 */
int csp_policy_activate(const csp_config *cfg);
/* The process-wide policy; valid once csp_policy_activate() ran. */
const csp_config *csp_policy(void);

/* ---- the verify hook (hook.c) ------------------------------------------------ */

/* The certificate verification callback every SSL_CTX gets (conn.c installs it). */
int csp_verify(X509_STORE_CTX *store_ctx, void *arg);
/* Register what the hook keeps on an X509_STORE_CTX; once, 1 on success. */
int csp_verify_watch_register(void);
/* Log that a client certificate reached CertificateVerify undecided. */
void csp_hook_bypassed(const SSL *ssl);

/* ---- server connections (conn.c) ------------------------------------------ */

/* Register the SSL_CTX/SSL ex_data callbacks, once per process. 1 on success. */
int csp_hooks_install(void);
/* The SSL ex_data index holding the per-connection state (-1 if none). */
int csp_hooks_account_index(void);

typedef struct csp_conn csp_conn;

/*
 * What a session is bound to: the database file and its policy generation.
 * A generation alone says nothing once the file is replaced by another
 * database (a deploy tool's rename), whose counter is unrelated.
 */
typedef struct {
    cs_db_file_id file;
    int64_t generation;
} csp_policy_state;

/* 1 when both name the same file at the same generation. */
int csp_policy_state_equal(const csp_policy_state *a, const csp_policy_state *b);

/* The state of a server connection; NULL for clients (or out of memory). */
csp_conn *csp_conn_of(const SSL *ssl);
/* 1 when a certificate now on this connection is TLS 1.3 post-handshake authentication. */
int csp_conn_post_handshake(const SSL *ssl, const csp_conn *conn);
/* The hook accepted this handshake's certificate under `state`: keep it, stamp the session. */
void csp_conn_accepted(SSL *ssl, csp_conn *conn, const cs_decision *d,
                       const csp_policy_state *state);
/*
 * The certificate was decided, not accepted (rejected, or audit's
 * would-reject): `reason` is a static token, d the policy's decision (NULL
 * when OpenSSL's own verification failed).
 */
void csp_conn_not_accepted(SSL *ssl, csp_conn *conn, const char *reason, const cs_decision *d);
/*
 * A ticket is being made for `sess` (resume.c): stamp the connection's
 * acceptance on it. 1 with its deadline when there was one to stamp.
 */
int csp_conn_ticketing(SSL *ssl, SSL_SESSION *sess, int64_t *deadline);

/* ---- sessions and tickets (resume.c) -------------------------------------- */

/* Install the ticket generate/decrypt callbacks on a new SSL_CTX. */
void csp_resume_install(SSL_CTX *ctx);
/*
 * Format, once per decision, what a session it accepted carries in its
 * ticket appdata: the account, the absolute deadline (CS_TIME_FOREVER/NONE:
 * none), the decision's database file and generation, the session-id
 * context the session is stamped with (left zero here: *ctx_at is where its
 * hex goes, csp_appdata_put_ctx writes it at each stamp) and the mapping or
 * rule that accepted it (way NULL: none). Returns the length to store (NUL
 * included), 0 if it does not fit.
 */
#define CSP_APPDATA_MAX (32 + CS_ACCOUNT_MAX + 240 + CERTSTORE_MAPPING_MAX)
size_t csp_appdata_format(char data[CSP_APPDATA_MAX], const char *account, const char *way,
                          int64_t way_id, int64_t deadline, const csp_policy_state *state,
                          size_t *ctx_at);
/* Write a session-id context (NULL: none) at a formatted appdata's ctx_at. */
void csp_appdata_put_ctx(char *hex, const unsigned char *sid);
/* Put formatted appdata on a session, unless the application keeps its own data there. */
void csp_appdata_set(SSL_SESSION *sess, const char *data, size_t len);
/* Take a binding of ours off a session (the account alone remains: no binding). */
void csp_appdata_unbind(SSL_SESSION *sess);
/*
 * Read them back: 1 if the session carries a certstore binding; `sid` (or
 * NULL) receives the session-id context it was stamped with.
 */
int csp_appdata_read(const SSL_SESSION *sess, int64_t *deadline, csp_policy_state *state,
                     unsigned char *sid);
/* 1 if the session's appdata stamps it for exactly `sid` and its deadline is ahead. */
int csp_session_stamped_for(const SSL_SESSION *sess, const unsigned char *sid);
/*
 * A TLS 1.3 server event: cap the session in hand at its deadline before a
 * ticket is made. `known` is the deadline when the connection's own decision
 * stamped that session (no appdata to parse), else NULL.
 */
void csp_session_cap(SSL *ssl, const int64_t *known);

/* ---- database handles (dbpool.c) ------------------------------------------ */

/* The database every handle opens, and its busy timeout; set once, at activation. */
void csp_dbpool_configure(const char *path, int busy_timeout_ms);
/*
 * This thread's read-only handle, opened or reopened as needed (fork, file
 * replaced, earlier failure); NULL when the store cannot be opened, with
 * the reason copied to why (why_len bytes).
 */
cs_db *csp_dbpool_get(char *why, size_t why_len);
/* getpid() without a system call per handshake: cached, forgotten at fork. */
pid_t csp_process_pid(void);
/*
 * The store's file and generation now, through this thread's handle (no
 * SQLite read while nothing was committed since the last one). 1 if read.
 */
int csp_current_policy_state(csp_policy_state *state);
/* Drop this thread's handle after a failure so the next call reopens. */
void csp_dbpool_discard(void);
/* Close this thread's handle (process exit). */
void csp_dbpool_close_current(void);

/*
 * Change marks (cs_db_wal_mark) taken through this thread's handle: a
 * later csp_dbpool_unchanged() tells without a SQLite read that nothing
 * was committed since, so what was read after the mark still holds. A
 * reopened handle (replaced or changed file, fork) never matches an older
 * mark, and anything unreadable reads as "changed".
 */
typedef struct {
    unsigned char hdr[CS_WAL_MARK_LEN];
    uint64_t epoch; /* of the handle the mark was taken through */
    int valid;
} csp_store_mark;
/* Take a mark before reading through this thread's handle; 1 if valid. */
int csp_dbpool_mark(csp_store_mark *mark);
/* 1 if this thread's handle is the one of the mark and nothing was committed since. */
int csp_dbpool_unchanged(const csp_store_mark *mark);
/*
 * At activation, once per process load: open the database's directory so
 * that a process that chroots later still reaches the database (dbpool.c).
 * 0 with the cause in why if it cannot; handles then open by path only.
 */
int csp_dbpool_attach_dir(char *why, size_t why_len);
/* One-off open at init: 1 if usable, else 0 with the cause in why. */
int csp_dbpool_probe(const char *path, char *why, size_t why_len);

/* ---- acceptances kept per thread (decache.c) ----------------------------- */

/* 1 when a and b are the same certificate (the same DER), without a digest. */
int csp_same_cert(const X509 *a, const X509 *b);
/*
 * The acceptance this thread made for exactly this leaf and issuer, if
 * nothing was committed since and `now` is within it: copied out with its
 * policy state, 1.
 */
int csp_decache_get(const X509 *leaf, const X509 *issuer, int64_t now, cs_decision *d,
                    csp_policy_state *state);
/* Keep an acceptance read after `mark` (rejections and invalid marks are not kept). */
void csp_decache_put(X509 *leaf, X509 *issuer, const cs_decision *d, const csp_policy_state *state,
                     const csp_store_mark *mark, int64_t now);
/* The issuer's fingerprint; the one this thread computed last is reused. 1 if known. */
int csp_issuer_fp(X509 *issuer, char fp[CS_FP_HEX_LEN + 1]);

/* ---- decision log (log.c) ------------------------------------------------- */

/* Open the sink named by cfg (syslog, stderr, file). 1 on success. */
int csp_log_open(const csp_config *cfg, char *why, size_t why_len);

typedef struct {
    const char *result; /* "accept", "reject", "would-reject" */
    const char *reason; /* token, "none" on accept */
    const char *account;
    const char *detail; /* may be NULL */
    const X509 *leaf;   /* may be NULL */
    const char *leaf_fp, *issuer_fp;
    const SSL *ssl; /* for the peer address; may be NULL */
    const char *mode;
    const char *revocation; /* a state worth logging (stale, missing, grace), or NULL */
    int64_t mapping_id;     /* the mapping that decided, 0 if none (a rule, or none found) */
    const char *kind;       /* its kind, when mapping_id */
} csp_log_decision_args;

void csp_log_decision(const csp_log_decision_args *args);
/* An operational message (init problems), printf-style, one line. */
void csp_log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* CSP_H */
