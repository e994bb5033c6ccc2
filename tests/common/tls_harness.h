/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared in-process TLS harness of the provider suites: a temp dir with
 * a store, a generated openssl.cnf that loads the module just built, a
 * library context loaded from it, server and client SSL_CTX built from the
 * test PKI, handshakes over a memory BIO pair and the decision log.
 *
 * Helpers fail the running Check test (ck_assert) when set-up goes wrong.
 */
#ifndef CERTSTORE_TLS_HARNESS_H
#define CERTSTORE_TLS_HARNESS_H

#include <openssl/ssl.h>

#include "cs_store.h"
#include "testpki.h"

typedef struct {
    char *dir; /* th_setup's temp dir (NULL after th_setup_in) */
    char db[512];
    char cnf[512];
    char log[512];
    testpki *pki;
    OSSL_LIB_CTX *libctx;
    SSL_CTX *server;
    SSL_CTX *client;
} tls_harness;

typedef struct {
    int ok;               /* both sides completed */
    int reused;           /* server resumed a session */
    long server_verify;   /* SSL_get_verify_result on the server */
    SSL_SESSION *session; /* client's session after the handshake, if asked */
    char account[CS_ACCOUNT_MAX + 1];
    int have_account;
    long server_timeout; /* lifetime of the server's session */
    long server_end;     /* when the server's session ends (time + timeout) */
    int gate_passed;     /* the connection's gate (th_connect_opts) was reached */
} th_outcome;

typedef struct {
    const char *sni;      /* server name the client sends (NULL: none) */
    void (*before)(void); /* runs after SSL_new, before the ClientHello */
    /*
     * Hold the client's bytes back after the first gate_at of them (0: no
     * gate): once the server has read those and waits for more, at_gate
     * runs, then the rest flows. A ClientHello split mid-message, or an
     * HRR's second ClientHello sent after a change.
     */
    size_t gate_at;
    void (*at_gate)(void);
    /*
     * Re-frame the client's first record (its ClientHello) as two records,
     * the first carrying this many bytes of the message (0: as sent), as a
     * client may; gate_at TH_GATE_SPLIT holds the second one back.
     */
    size_t split_hello_at;
    const char *client_groups; /* NULL: OpenSSL's default */
    const char *server_groups; /* NULL: the server context's */
} th_connect_opts;

/*
 * A client and a server SSL wired through memory BIOs by the test, which
 * forwards the bytes itself, so it can hold them back (see gate_at).
 */
typedef struct th_link th_link;

/* gate_at values: after the first of two ClientHello fragments, after the first flight. */
#define TH_GATE_SPLIT ((size_t)-1)
#define TH_GATE_FIRST_FLIGHT ((size_t)-2)

th_link *th_link_new(SSL *server, SSL *client);
/*
 * A new server SSL from h->server and a client from client_ctx (sending SNI
 * localhost, offering `resume` if not NULL), joined by a link that owns them.
 */
th_link *th_link_open(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume);
SSL *th_link_server(const th_link *link);
SSL *th_link_client(const th_link *link);
void th_link_gate(th_link *link, size_t gate_at, void (*at_gate)(void), size_t split_hello_at);
/* 1 once the gate was reached and at_gate ran. */
int th_link_gate_passed(const th_link *link);
/* Both ends until both finish or one fails (bounded); 1 if both finished. */
int th_link_handshake(th_link *link);
/* Application data both ways, which also delivers TLS 1.3 tickets. */
int th_link_exchange(th_link *link);
/* Carry what each end has written to the other once (holding at the gate). */
void th_link_pump(th_link *link);
/* Carry the bytes, then SSL_read `reader` once: 1 if data came or it waits for more. */
int th_link_read_step(th_link *link, SSL *reader);
/*
 * "ping" from `from` to `to`, the sender reading too meanwhile (so a
 * handshake it started, or a message it is due, goes on); 1 once it arrived.
 */
int th_link_send(th_link *link, SSL *from, SSL *to);
/* Bytes the client has sent so far. */
size_t th_link_client_sent(const th_link *link);
/* Free the link, and the SSLs if th_link_open made them; clears the error queue. */
void th_link_free(th_link *link);

/* Temp dir, PKI and the db/cnf/log paths in it; teardown frees it all. */
void th_setup(tls_harness *h);
/* The same in `dir`, which the caller made and removes (teardown leaves it). */
void th_setup_in(tls_harness *h, const char *dir);
void th_teardown(tls_harness *h);

/* A write transaction on the store at `path`, labelled with `who`. */
cs_db *th_store_begin(const char *path, const char *who);
void th_store_commit(cs_db *db);
void th_map_leaf(const tls_harness *h, cs_db *db, const char *leaf, const char *account,
                 cs_kind kind, int64_t not_before, int64_t not_after);
/* Map a certificate of the PKI, or any other one (th_map_cert), as `map add` does. */
void th_map_cert(cs_db *db, X509 *cert, const char *account, cs_kind kind, int64_t not_before,
                 int64_t not_after);
cs_mapping_ref th_ref_for(const tls_harness *h, const char *leaf, cs_kind kind);
/* Remove the `kind` mapping of `leaf` in a transaction of its own. */
void th_unmap_leaf(const tls_harness *h, const char *who, const char *leaf, cs_kind kind);

/* openssl.cnf activating default and certstore, plus `extra_lines`. */
void th_write_cnf(const tls_harness *h, const char *extra_lines);
/* Writes that file and loads it into a new library context. */
void th_load_provider(tls_harness *h, const char *extra_lines);
/* The usual configuration: db, file log, plus `more` lines. */
void th_load_provider_with(tls_harness *h, const char *more);

X509_STORE *th_trust_root(const tls_harness *h);
void th_make_server(tls_harness *h, long options, int max_version, int permissive);
/* A client sending `leaf` and its issuing intermediate (not the root). */
SSL_CTX *th_make_client(const tls_harness *h, const char *leaf);
/* A client sending cert/key and exactly the extra certificates given (NULL-terminated). */
SSL_CTX *th_make_client_sending(const tls_harness *h, X509 *cert, EVP_PKEY *key, X509 *extra, ...);

int th_run_handshake(SSL *server, SSL *client);
int th_exchange_data(SSL *server, SSL *client);
th_outcome th_connect_ex(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                         int keep_session, const th_connect_opts *opts);
th_outcome th_connect_with(const tls_harness *h, SSL_CTX *client_ctx, SSL_SESSION *resume,
                           int keep_session);
th_outcome th_connect_as(const tls_harness *h, const char *leaf);

/*
 * The ways a client comes back, each a server set-up: TLS 1.2 session ID and
 * ticket, TLS 1.3 stateless and stateful (SSL_OP_NO_TICKET) ticket.
 */
typedef struct {
    const char *name;
    long options;    /* the server context's options */
    int max_version; /* 0: TLS 1.3 */
} th_resumption_kind;

#define TH_RESUMPTION_KINDS 4
extern const th_resumption_kind th_resumption_kinds[TH_RESUMPTION_KINDS];

/*
 * A server of kind k (h->server) and a full handshake as `leaf`, which must
 * succeed; *first holds its outcome and session. Returns the client context.
 */
SSL_CTX *th_first_handshake(tls_harness *h, const th_resumption_kind *k, const char *leaf,
                            th_outcome *first);

/* The decision log as one string (for strstr); the caller frees it. */
char *th_read_log(const tls_harness *h);
/* How often `needle` occurs in `text`; in the decision log. */
int th_count_in(const char *text, const char *needle);
int th_log_count(const tls_harness *h, const char *needle);
void th_assert_log_count(const tls_harness *h, const char *needle, int expected);
void th_assert_log_has(const tls_harness *h, const char *needle);
void th_assert_log_lacks(const tls_harness *h, const char *needle);
void th_assert_rejected(const tls_harness *h, const char *leaf, const char *reason);

#endif
