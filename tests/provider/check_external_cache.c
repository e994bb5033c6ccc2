/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resumption through an application's external session cache, in process.
 *
 * HAProxy keeps server sessions in its own shared-memory cache
 * (SSL_CTX_sess_set_new_cb/get_cb, SSL_SESS_CACHE_NO_INTERNAL): it stores
 * them serialised with i2d_SSL_SESSION and hands back what d2i_SSL_SESSION
 * makes of them. HAProxy 2.6 (Debian 12) also encodes them without their
 * session-id context and sets its own ("haproxy") on every session it hands
 * back, so certstore's context is gone from them by the time OpenSSL
 * compares it. The cache here does the same, through OpenSSL's API only:
 *
 *   internal    OpenSSL's own cache (the control)
 *   keeps       external, i2d/d2i, the session-id context kept (newer HAProxy)
 *   rewrites    external, i2d/d2i, the context replaced (HAProxy 2.6)
 *
 * Properties, for every resumption kind and cache: a session resumes while
 * nothing narrowed; never after a narrowing change or past the mapping's
 * end; never in another
 * context (another bind sharing the cache, another SNI virtual host); never
 * when its certstore stamp is missing or not certstore's (an application's
 * own ticket appdata), nor when certstore did not accept it (audit).
 *
 * Every test runs in its own process (Check's default fork mode).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cs_store.h"
#include "testpki.h"
#include "tls_harness.h"

#define SUITE_NAME "check_external_cache"
#define APP_SID_CTX "haproxy"

static tls_harness fx;

/* ---- the cache --------------------------------------------------------------------- */

typedef enum { CACHE_INTERNAL, CACHE_KEEPS, CACHE_REWRITES, N_CACHES } cache_style;

static const char *const cache_names[N_CACHES] = {
    "internal cache",
    "external cache keeping the context",
    "external cache rewriting the context",
};

/* What the application does to a session's ticket appdata on the way out of its cache. */
typedef enum { APPDATA_KEPT, APPDATA_DROPPED, APPDATA_APPLICATIONS } appdata_fate;

#define CACHE_SLOTS 32

static struct {
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned int id_len;
    unsigned char *der;
    int der_len;
} cache[CACHE_SLOTS];
static int cache_used;
static cache_style style;
static appdata_fate fate;
static int cache_hits;

static void cache_store(const unsigned char *id, unsigned int id_len, unsigned char *der,
                        int der_len)
{
    int i;

    for (i = 0; i < cache_used; i++)
        if (cache[i].id_len == id_len && memcmp(cache[i].id, id, id_len) == 0)
            break;
    ck_assert_int_lt(i, CACHE_SLOTS);
    if (i == cache_used)
        cache_used++;
    OPENSSL_free(cache[i].der);
    memcpy(cache[i].id, id, id_len);
    cache[i].id_len = id_len;
    cache[i].der = der;
    cache[i].der_len = der_len;
}

/* As HAProxy 2.6's sh_ssl_sess_new_cb: no ID and (rewriting) no context in the encoding. */
static int cache_new(SSL *ssl, SSL_SESSION *sess)
{
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH], *der, *p;
    const unsigned char *sid;
    unsigned int id_len;
    int der_len;

    sid = SSL_SESSION_get_id(sess, &id_len);
    memcpy(id, sid, id_len);
    ck_assert_int_eq(SSL_SESSION_set1_id(sess, id, 0), 1);
    if (style == CACHE_REWRITES)
        ck_assert_int_eq(SSL_SESSION_set1_id_context(sess, (const unsigned char *)APP_SID_CTX, 0),
                         1);
    der_len = i2d_SSL_SESSION(sess, NULL);
    ck_assert_int_gt(der_len, 0);
    der = OPENSSL_malloc((size_t)der_len);
    ck_assert_ptr_nonnull(der);
    p = der;
    ck_assert_int_eq(i2d_SSL_SESSION(sess, &p), der_len);
    cache_store(id, id_len, der, der_len);
    ck_assert_int_eq(SSL_SESSION_set1_id(sess, id, id_len), 1);
    if (style == CACHE_REWRITES)
        ck_assert_int_eq(SSL_SESSION_set1_id_context(sess, (const unsigned char *)APP_SID_CTX,
                                                     strlen(APP_SID_CTX)),
                         1);
    return 0; /* not kept: the encoding is */
}

/* As HAProxy 2.6's sh_ssl_sess_get_cb: a fresh session the caller owns. */
static SSL_SESSION *cache_get(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
    const unsigned char *p;
    SSL_SESSION *sess;
    int i;

    *copy = 0;
    for (i = 0; i < cache_used; i++)
        if (cache[i].id_len == (unsigned int)id_len &&
            memcmp(cache[i].id, id, cache[i].id_len) == 0)
            break;
    if (i == cache_used)
        return NULL;
    p = cache[i].der;
    sess = d2i_SSL_SESSION(NULL, &p, cache[i].der_len);
    ck_assert_ptr_nonnull(sess);
    cache_hits++;
    ck_assert_int_eq(SSL_SESSION_set1_id(sess, id, (unsigned int)id_len), 1);
    if (style == CACHE_REWRITES)
        ck_assert_int_eq(SSL_SESSION_set1_id_context(sess, (const unsigned char *)APP_SID_CTX,
                                                     strlen(APP_SID_CTX)),
                         1);
    if (fate == APPDATA_DROPPED)
        ck_assert_int_eq(SSL_SESSION_set1_ticket_appdata(sess, NULL, 0), 1);
    else if (fate == APPDATA_APPLICATIONS)
        ck_assert_int_eq(SSL_SESSION_set1_ticket_appdata(sess, "app-session-data", 16), 1);
    return sess;
}

/* The server context h->server (already made) keeps its sessions as `style` says. */
static void use_cache(SSL_CTX *ctx)
{
    if (style == CACHE_INTERNAL)
        return;
    ck_assert_int_eq(SSL_CTX_set_session_id_context(ctx, (const unsigned char *)APP_SID_CTX,
                                                    strlen(APP_SID_CTX)),
                     1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
                                            SSL_SESS_CACHE_NO_AUTO_CLEAR);
    SSL_CTX_sess_set_new_cb(ctx, cache_new);
    SSL_CTX_sess_set_get_cb(ctx, cache_get);
}

/* ---- set-up -------------------------------------------------------------------------- */

/* Pin ca-a, map alice and bob by certificate. */
static void store_standard(void)
{
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];

    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", "alice@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_map_leaf(&fx, db, "bob", "bob@partner-a", CS_KIND_CERT, CS_TIME_NONE, CS_TIME_NONE);
    th_store_commit(db);
}

static void setup(void)
{
    th_setup(&fx);
    cache_used = 0;
    cache_hits = 0;
    fate = APPDATA_KEPT;
}

static void teardown(void)
{
    int i;

    for (i = 0; i < cache_used; i++)
        OPENSSL_free(cache[i].der);
    cache_used = 0;
    th_teardown(&fx);
}

/* Loop index → (kind, cache). */
#define N_CASES (TH_RESUMPTION_KINDS * N_CACHES)
static const th_resumption_kind *case_of(int i)
{
    style = (cache_style)(i % N_CACHES);
    return &th_resumption_kinds[i / N_CACHES];
}

/* Does kind k go through the cache? (tickets are the session itself) */
static int goes_through_cache(const th_resumption_kind *k)
{
    return style != CACHE_INTERNAL && (k->options & SSL_OP_NO_TICKET) != 0;
}

/* A server of kind k keeping sessions in the cache, and alice's first full handshake. */
static SSL_CTX *first_handshake(const th_resumption_kind *k, th_outcome *first)
{
    SSL_CTX *client;

    th_make_server(&fx, k->options, k->max_version, 0);
    use_cache(fx.server);
    client = th_make_client(&fx, "alice");
    *first = th_connect_with(&fx, client, NULL, 1);
    ck_assert_msg(first->ok, "%s, %s: first handshake failed", k->name, cache_names[style]);
    ck_assert_int_eq(first->reused, 0);
    ck_assert_ptr_nonnull(first->session);
    if (goes_through_cache(k))
        ck_assert_msg(cache_used > 0, "%s, %s: nothing cached", k->name, cache_names[style]);
    return client;
}

/* ---- while nothing narrowed: resumed -------------------------------------------------- */

START_TEST(test_resumed_while_nothing_narrowed)
{
    const th_resumption_kind *k = case_of(_i);
    SSL_CTX *client;
    th_outcome first, again, third;

    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    again = th_connect_with(&fx, client, first.session, 1);
    ck_assert_msg(again.ok && again.reused, "%s, %s: not resumed while nothing narrowed", k->name,
                  cache_names[style]);
    ck_assert_msg(again.have_account && strcmp(again.account, "alice@partner-a") == 0,
                  "%s, %s: resumed without its account", k->name, cache_names[style]);
    if (goes_through_cache(k))
        ck_assert_int_gt(cache_hits, 0);
    /* And again, from the session the resumption left the client. */
    third = th_connect_with(&fx, client, again.session, 0);
    ck_assert_msg(third.ok && third.reused, "%s, %s: chained resumption refused", k->name,
                  cache_names[style]);
    SSL_SESSION_free(first.session);
    SSL_SESSION_free(again.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- after a narrowing change: decided anew -------------------------------------------- */

START_TEST(test_not_resumed_after_narrowing)
{
    const th_resumption_kind *k = case_of(_i);
    SSL_CTX *client;
    th_outcome first, again;

    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    /* Another client's mapping removed: alice is still accepted, but decided anew. */
    th_unmap_leaf(&fx, SUITE_NAME, "bob", CS_KIND_CERT);
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!again.reused, "%s, %s: a session serialised before a narrowing change resumed",
                  k->name, cache_names[style]);
    ck_assert_msg(again.ok, "%s, %s: alice refused after bob's removal", k->name,
                  cache_names[style]);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* The change comes while the session sits in the cache and alice is removed herself. */
START_TEST(test_removed_client_not_resumed)
{
    const th_resumption_kind *k = case_of(_i);
    SSL_CTX *client;
    th_outcome first, again;

    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    th_unmap_leaf(&fx, SUITE_NAME, "alice", CS_KIND_CERT);
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!again.reused && !again.ok, "%s, %s: a removed client resumed", k->name,
                  cache_names[style]);
    th_assert_log_has(&fx, "result=reject reason=no-mapping");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* The mapping ends while the session sits in the cache: resumed before, never after. */
#define MAPPING_LIFETIME 2 /* seconds */

START_TEST(test_not_resumed_past_mapping_end)
{
    const th_resumption_kind *k = &th_resumption_kinds[_i / 2 == 0 ? 0 : 3];
    int64_t not_after = (int64_t)time(NULL) + MAPPING_LIFETIME;
    cs_db *db = th_store_begin(fx.db, SUITE_NAME);
    char fp[CS_FP_HEX_LEN + 1];
    SSL_CTX *client;
    th_outcome first, before, after;

    style = _i % 2 == 0 ? CACHE_REWRITES : CACHE_KEEPS;
    ck_assert_int_eq(cs_pin_add(db, fx.pki->ca_a.cert, "partner A", fp), CS_OK);
    th_map_leaf(&fx, db, "alice", "alice@partner-a", CS_KIND_CERT, CS_TIME_NONE, not_after);
    th_store_commit(db);
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    before = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(before.ok && before.reused, "%s, %s: not resumed before the mapping ended",
                  k->name, cache_names[style]);
    while ((int64_t)time(NULL) <= not_after + 1)
        sleep(1);
    after = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!after.reused && !after.ok, "%s, %s: resumed after the mapping ended", k->name,
                  cache_names[style]);
    th_assert_log_has(&fx, "result=reject reason=mapping-expired");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* ---- another context sharing the cache -------------------------------------------------- */

/*
 * Two bind lines as HAProxy makes them: two contexts, one shared cache (the
 * table above), the same application session-id context. The second asks
 * for certificates of another CA set (the twin root store is the same
 * object here; the contexts alone must keep them apart).
 */
START_TEST(test_not_resumed_on_another_bind)
{
    const th_resumption_kind *k = case_of(_i);
    SSL_CTX *client, *bind_a, *bind_b;
    th_outcome first, same, other;

    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    bind_a = fx.server;
    fx.server = NULL;
    th_make_server(&fx, k->options, k->max_version, 0);
    use_cache(fx.server);
    bind_b = fx.server;
    other = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!other.reused, "%s, %s: a session of one bind resumed on the other", k->name,
                  cache_names[style]);
    ck_assert(other.ok);
    fx.server = bind_a;
    same = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(same.ok && same.reused, "%s, %s: not resumed on its own bind", k->name,
                  cache_names[style]);
    SSL_CTX_free(bind_b);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/*
 * Two SNI virtual hosts sharing the cache, switched in the ClientHello
 * callback (HAProxy, Apache) or in the servername callback (nginx), which
 * OpenSSL 3.0 calls after it looked a TLS 1.2 session up.
 */
static SSL_CTX *vhost_b;

static int switch_in_servername(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (name != NULL && strcmp(name, "b.test") == 0)
        SSL_set_SSL_CTX(ssl, vhost_b);
    return SSL_TLSEXT_ERR_OK;
}

static int switch_in_client_hello(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *ext;
    size_t len;

    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) && len > 5 &&
        len - 5 == strlen("b.test") && memcmp(ext + 5, "b.test", 6) == 0)
        SSL_set_SSL_CTX(ssl, vhost_b);
    return SSL_CLIENT_HELLO_SUCCESS;
}

START_TEST(test_not_resumed_on_another_vhost)
{
    const th_resumption_kind *k = case_of(_i % N_CASES);
    int in_client_hello = _i < N_CASES;
    th_connect_opts on_a = {.sni = "a.test"}, on_b = {.sni = "b.test"};
    SSL_CTX *client, *a;
    th_outcome first, same, other;

    store_standard();
    th_load_provider_with(&fx, "");
    th_make_server(&fx, k->options, k->max_version, 0);
    a = fx.server;
    fx.server = NULL;
    th_make_server(&fx, k->options, k->max_version, 0);
    vhost_b = fx.server;
    fx.server = a;
    use_cache(a);
    use_cache(vhost_b);
    if (in_client_hello)
        SSL_CTX_set_client_hello_cb(a, switch_in_client_hello, NULL);
    else
        SSL_CTX_set_tlsext_servername_callback(a, switch_in_servername);
    client = th_make_client(&fx, "alice");
    first = th_connect_ex(&fx, client, NULL, 1, &on_b);
    ck_assert_msg(first.ok, "%s, %s: first handshake on b failed", k->name, cache_names[style]);
    other = th_connect_ex(&fx, client, first.session, 0, &on_a);
    ck_assert_msg(!other.reused, "%s, %s, %s: a session made on vhost b resumed on vhost a",
                  k->name, cache_names[style],
                  in_client_hello ? "ClientHello callback" : "servername callback");
    ck_assert(other.ok);
    same = th_connect_ex(&fx, client, first.session, 0, &on_b);
    ck_assert_msg(same.ok && same.reused, "%s, %s: not resumed on its own vhost", k->name,
                  cache_names[style]);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
    SSL_CTX_free(vhost_b);
}
END_TEST

/* ---- a stamp that cannot be verified ---------------------------------------------------- */

#define N_FATES 2 /* dropped, the application's own */

/* Only the kinds that go through the cache: TLS 1.2 session IDs, TLS 1.3 stateful tickets. */
static const th_resumption_kind *cached_kind_of(int i)
{
    return &th_resumption_kinds[i / N_FATES == 0 ? 0 : 3];
}

START_TEST(test_unverifiable_stamp_not_resumed)
{
    const th_resumption_kind *k = cached_kind_of(_i);
    SSL_CTX *client;
    th_outcome first, again;

    style = CACHE_REWRITES;
    store_standard();
    th_load_provider_with(&fx, "");
    client = first_handshake(k, &first);
    fate = _i % N_FATES == 0 ? APPDATA_DROPPED : APPDATA_APPLICATIONS;
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_int_gt(cache_hits, 0);
    ck_assert_msg(!again.reused, "%s: a session whose stamp is %s resumed", k->name,
                  fate == APPDATA_DROPPED ? "gone" : "the application's");
    ck_assert(again.ok);
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

/* Audit lets carol (unpinned CA) in; her session must not resume undecided. */
START_TEST(test_audit_session_not_resumed)
{
    const th_resumption_kind *k = case_of(_i);
    SSL_CTX *client;
    th_outcome first, again;
    char lines[1200];

    store_standard();
    snprintf(lines, sizeof(lines), "mode = audit\n");
    th_load_provider_with(&fx, lines);
    th_make_server(&fx, k->options, k->max_version, 0);
    use_cache(fx.server);
    client = th_make_client(&fx, "carol");
    first = th_connect_with(&fx, client, NULL, 1);
    ck_assert_msg(first.ok, "%s, %s: audit refused carol", k->name, cache_names[style]);
    again = th_connect_with(&fx, client, first.session, 0);
    ck_assert_msg(!again.reused, "%s, %s: a session certstore did not accept resumed", k->name,
                  cache_names[style]);
    th_assert_log_has(&fx, "result=would-reject");
    SSL_SESSION_free(first.session);
    SSL_CTX_free(client);
}
END_TEST

static Suite *external_cache_suite(void)
{
    Suite *s = suite_create("external_cache");
    TCase *kept = tcase_create("nothing_narrowed");
    TCase *narrowed = tcase_create("narrowed");
    TCase *contexts = tcase_create("other_contexts");
    TCase *stamps = tcase_create("stamps");

    tcase_add_checked_fixture(kept, setup, teardown);
    tcase_add_loop_test(kept, test_resumed_while_nothing_narrowed, 0, N_CASES);
    suite_add_tcase(s, kept);

    tcase_add_checked_fixture(narrowed, setup, teardown);
    tcase_add_loop_test(narrowed, test_not_resumed_after_narrowing, 0, N_CASES);
    tcase_add_loop_test(narrowed, test_removed_client_not_resumed, 0, N_CASES);
    tcase_add_loop_test(narrowed, test_not_resumed_past_mapping_end, 0, 4);
    suite_add_tcase(s, narrowed);

    tcase_add_checked_fixture(contexts, setup, teardown);
    tcase_add_loop_test(contexts, test_not_resumed_on_another_bind, 0, N_CASES);
    tcase_add_loop_test(contexts, test_not_resumed_on_another_vhost, 0, 2 * N_CASES);
    suite_add_tcase(s, contexts);

    tcase_add_checked_fixture(stamps, setup, teardown);
    tcase_add_loop_test(stamps, test_unverifiable_stamp_not_resumed, 0, 2 * N_FATES);
    tcase_add_loop_test(stamps, test_audit_session_not_resumed, 0, N_CASES);
    suite_add_tcase(s, stamps);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(external_cache_suite());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
