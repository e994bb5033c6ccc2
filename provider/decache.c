/*
 * Acceptances kept per thread, valid while nothing is committed.
 *
 * Inside a handshake the store read is the costly part of a decision, and
 * not for SQLite's work: the handshake's own cryptography has evicted
 * SQLite's code and pages from the CPU caches since the last connection.
 * A partner reconnecting with the same certificate gets the same answer as
 * long as the store has not changed, and the wal-index header says whether
 * it has (csp_dbpool_mark). So an acceptance is kept with the mark taken
 * before it was read, and reused only when:
 *   - the same leaf and issuer (SHA-256 of each) ask again on this thread;
 *   - through the same database handle (a reopen after a replaced,
 *     changed or unreadable file, or a fork, forgets everything);
 *   - nothing has been committed since the mark, by the CLI or anything
 *     else writing the file through SQLite;
 *   - and the time is within what the acceptance allowed: not before it was
 *     made, not after its valid_until (mapping not_after, certificate ends).
 * Rejections are never kept: each one is decided and logged anew. A thread
 * keeps CSP_DECACHE_SLOTS entries, direct-mapped by fingerprint.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "csp.h"

#define CSP_DECACHE_SLOTS 32

typedef struct {
    int used;
    int64_t decided_at;
    cs_decision decision;
    csp_policy_state state;
    csp_store_mark mark;
} csp_decache_entry;

static pthread_key_t csp_decache_key;
static pthread_once_t csp_decache_once = PTHREAD_ONCE_INIT;
static int csp_decache_key_ok;

static void csp_decache_key_create(void)
{
    csp_decache_key_ok = pthread_key_create(&csp_decache_key, free) == 0;
}

/* This thread's table; created on first use when `create`, else NULL until then. */
static csp_decache_entry *csp_decache_table(int create)
{
    csp_decache_entry *table;

    pthread_once(&csp_decache_once, csp_decache_key_create);
    if (!csp_decache_key_ok)
        return NULL;
    table = pthread_getspecific(csp_decache_key);
    if (table != NULL || !create)
        return table;
    table = calloc(CSP_DECACHE_SLOTS, sizeof(*table));
    if (table != NULL && pthread_setspecific(csp_decache_key, table) != 0) {
        free(table);
        table = NULL;
    }
    return table;
}

static unsigned csp_decache_slot(const char *leaf_fp, const char *issuer_fp)
{
    unsigned h = 2166136261u;

    for (int i = 0; i < 8 && leaf_fp[i] != '\0'; i++)
        h = (h ^ (unsigned char)leaf_fp[i]) * 16777619u;
    for (int i = 0; i < 8 && issuer_fp[i] != '\0'; i++)
        h = (h ^ (unsigned char)issuer_fp[i]) * 16777619u;
    return h % CSP_DECACHE_SLOTS;
}

int csp_decache_get(const char *leaf_fp, const char *issuer_fp, int64_t now, cs_decision *d,
                    csp_policy_state *state)
{
    csp_decache_entry *table = csp_decache_table(0), *e;

    if (table == NULL)
        return 0;
    e = &table[csp_decache_slot(leaf_fp, issuer_fp)];
    if (!e->used || strcmp(e->decision.leaf_fp, leaf_fp) != 0 ||
        strcmp(e->decision.issuer_fp, issuer_fp) != 0)
        return 0;
    if (now < e->decided_at || now > e->decision.valid_until || !csp_dbpool_unchanged(&e->mark)) {
        e->used = 0;
        return 0;
    }
    *d = e->decision;
    *state = e->state;
    return 1;
}

void csp_decache_put(const cs_decision *d, const csp_policy_state *state,
                     const csp_store_mark *mark, int64_t now)
{
    csp_decache_entry *table, *e;

    if (!d->accept || !mark->valid || d->leaf_fp[0] == '\0' || d->issuer_fp[0] == '\0' ||
        (table = csp_decache_table(1)) == NULL)
        return;
    e = &table[csp_decache_slot(d->leaf_fp, d->issuer_fp)];
    e->used = 1;
    e->decided_at = now;
    e->decision = *d;
    e->state = *state;
    e->mark = *mark;
}
