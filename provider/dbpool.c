/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Read-only database handles, one per thread, opened lazily.
 *
 * Why per thread: a cs_db is used by one thread at a time and the verify
 * hook must not take a global lock. Why lazily: servers load openssl.cnf as
 * root, then fork, drop privileges and chroot; the handle must be opened by
 * the process that uses it. Each handle remembers the pid that opened it: a
 * forked child finds its parent's handle and abandons it without calling
 * into SQLite (sharing an SQLite connection across fork corrupts locks),
 * then opens its own. A handle whose file was replaced (atomic rename by a
 * deploy tool) or changed behind SQLite's back (permissions, owner, size or
 * mtime: chmod 000, truncation, bytes written over it) is closed and
 * reopened, so the server decides from what the file says now and not from
 * an open descriptor or SQLite's page cache; a failed open is retried on the
 * next handshake, so a store that comes back is picked up without a reload.
 * A committed write goes to the -wal file and leaves the database file
 * alone until a checkpoint, so reopening costs one open per checkpoint.
 * A failed open is not retried for CSP_RETRY_MS unless the file changes:
 * an open that waits on a lock costs the store's busy timeout, and one
 * handshake may ask twice (ClientHello binding, then decision).
 *
 * Chroot: servers load the provider as root and chroot afterwards (HAProxy's
 * `chroot /var/lib/haproxy`), where the database's path names nothing.
 * csp_dbpool_attach_dir(), at activation, opens the database's directory
 * once per process load (store/db_dir.c: close-on-exec, inherited by
 * forked workers); an open whose directory path does not resolve goes
 * through that descriptor, with the process's credentials at that time,
 * and the per-handshake check stats the file through it too, so a file
 * replaced by rename in that directory is still noticed. A directory
 * replaced as a whole cannot be followed through the descriptor: the open
 * then fails (store-unavailable, saying so) until the server is reloaded.
 * Where the directory's path resolves, everything is done by path as before.
 *
 * Each handle gets an epoch, unique in the process, so that what was read
 * through one handle (change marks, kept acceptances) is never taken for
 * what another, reopened one would read.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "csp.h"

#define CSP_RETRY_MS 1000

/* What to open, set once at activation (csp_dbpool_configure). */
static char csp_db_path[PATH_MAX];
static int csp_db_busy_timeout_ms;

void csp_dbpool_configure(const char *path, int busy_timeout_ms)
{
    snprintf(csp_db_path, sizeof(csp_db_path), "%s", path);
    csp_db_busy_timeout_ms = busy_timeout_ms;
}

typedef struct {
    cs_db *db;
    uint64_t epoch; /* distinct for every handle this process opens */
    pid_t pid;
    int routed;           /* opened through the directory descriptor (chroot) */
    struct stat opened;   /* the file as it was just before the open */
    int64_t failed_at_ms; /* last failed open (monotonic), 0 if none */
    char failed_why[256];
} csp_thread_db;

static pthread_key_t csp_db_key;
static pthread_once_t csp_db_key_once = PTHREAD_ONCE_INIT;
static int csp_db_key_ok;

/*
 * This process's pid, forgotten in the child of every fork() (the atfork
 * handler), so the handshake path need not ask the kernel each time.
 */
static pid_t csp_pid_cached;
static int csp_pid_watched;
static pthread_once_t csp_pid_once = PTHREAD_ONCE_INIT;

static void csp_forget_pid(void)
{
    __atomic_store_n(&csp_pid_cached, 0, __ATOMIC_RELAXED);
}

static void csp_watch_forks(void)
{
    csp_pid_watched = pthread_atfork(NULL, NULL, csp_forget_pid) == 0;
}

pid_t csp_process_pid(void)
{
    pid_t pid;

    /* Registered before anything is cached, or a child could see its parent's pid. */
    pthread_once(&csp_pid_once, csp_watch_forks);
    if (!csp_pid_watched)
        return getpid();
    pid = __atomic_load_n(&csp_pid_cached, __ATOMIC_RELAXED);
    if (pid == 0) {
        pid = getpid();
        __atomic_store_n(&csp_pid_cached, pid, __ATOMIC_RELAXED);
    }
    return pid;
}

/* Close the handle (or, in a forked child, abandon the parent's). */
static void csp_thread_db_drop(csp_thread_db *t)
{
    if (t->db != NULL && t->pid == csp_process_pid())
        cs_db_close(t->db);
    t->db = NULL;
}

static void csp_thread_db_free(void *p)
{
    csp_thread_db_drop(p);
    free(p);
}

static void csp_db_key_create(void)
{
    csp_db_key_ok = pthread_key_create(&csp_db_key, csp_thread_db_free) == 0;
}

static csp_thread_db *csp_thread_slot(void)
{
    csp_thread_db *t;

    pthread_once(&csp_db_key_once, csp_db_key_create);
    if (!csp_db_key_ok)
        return NULL;
    t = pthread_getspecific(csp_db_key);
    if (t != NULL)
        return t;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    if (pthread_setspecific(csp_db_key, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static cs_db *csp_db_open_readonly(const char *path, char *why, size_t why_len)
{
    cs_db *db = NULL;
    cs_status st;

    st = cs_db_open_ex(&db, path, CS_OPEN_READONLY, csp_db_busy_timeout_ms);
    if (st == CS_OK)
        return db;
    snprintf(why, why_len, "%s", db != NULL ? cs_db_errmsg(db) : "out of memory");
    cs_db_close(db);
    return NULL;
}

static int csp_same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
           a->st_uid == b->st_uid && a->st_gid == b->st_gid && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* stat(2) of the database the way this handle reaches it. */
static int csp_db_stat(const csp_thread_db *t, struct stat *st)
{
    char why[8];

    if (!t->routed)
        return stat(csp_db_path, st);
    if (cs_db_dir_replaced(why, sizeof(why)))
        return -1;
    return cs_db_dir_stat(st);
}

/* Nonzero when the file is not the one, or not in the state, the handle opened. */
static int csp_file_changed(const csp_thread_db *t)
{
    struct stat now;

    return csp_db_stat(t, &now) != 0 || !csp_same_file_state(&t->opened, &now);
}

static int64_t csp_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A recent failed open on an unchanged file: answer with it, without waiting again. */
static int csp_recent_failure(const csp_thread_db *t, pid_t pid, char *why, size_t why_len)
{
    if (t->failed_at_ms == 0 || t->pid != pid ||
        csp_monotonic_ms() - t->failed_at_ms >= CSP_RETRY_MS || csp_file_changed(t))
        return 0;
    snprintf(why, why_len, "%s", t->failed_why);
    return 1;
}

static uint64_t csp_epoch_counter;

/*
 * By path where the directory's path names something (no chroot, a bind
 * mount, or a directory the process may not search: refused as before),
 * else through the descriptor opened at load: 1 if routed. The routing is
 * process-wide, and every thread of a process sees the same file system.
 */
static int csp_choose_route(void)
{
    int routed = cs_db_dir_absent();

    if (routed != cs_db_dir_routed()) {
        CSP_DEBUG("opening %s %s", csp_db_path,
                  routed ? "through the directory descriptor opened at load" : "by path");
        cs_db_dir_route(routed);
    }
    return routed;
}

static void csp_open_for_thread(csp_thread_db *t, pid_t pid, char *why, size_t why_len)
{
    t->routed = csp_choose_route();
    /* Stat first: a change between stat and open is seen next time. */
    if (csp_db_stat(t, &t->opened) != 0)
        memset(&t->opened, 0, sizeof(t->opened));
    if (t->routed && cs_db_dir_replaced(why, why_len))
        t->db = NULL; /* fail closed: the descriptor shows the old directory */
    else
        t->db = csp_db_open_readonly(csp_db_path, why, why_len);
    t->pid = pid;
    t->failed_at_ms = 0;
    t->epoch = __atomic_add_fetch(&csp_epoch_counter, 1, __ATOMIC_RELAXED);
    if (t->db == NULL) {
        t->failed_at_ms = csp_monotonic_ms();
        snprintf(t->failed_why, sizeof(t->failed_why), "%s", why);
    }
}

cs_db *csp_dbpool_get(char *why, size_t why_len)
{
    csp_thread_db *t = csp_thread_slot();
    pid_t pid = csp_process_pid();

    if (t == NULL) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    if (t->db != NULL && t->pid != pid) {
        CSP_DEBUG("pid changed (%d -> %d): abandoning the inherited handle", (int)t->pid, (int)pid);
        csp_thread_db_drop(t); /* the parent's connection: never touch it here */
    }
    if (t->db != NULL && csp_file_changed(t)) {
        CSP_DEBUG("database file replaced or changed: reopening");
        csp_thread_db_drop(t);
    }
    if (t->db == NULL && !csp_recent_failure(t, pid, why, why_len))
        csp_open_for_thread(t, pid, why, why_len);
    return t->db;
}

void csp_dbpool_discard(void)
{
    csp_thread_db *t = csp_thread_slot();

    if (t != NULL)
        csp_thread_db_drop(t);
}

/* ---- change marks ------------------------------------------------------------ */

int csp_dbpool_mark(csp_store_mark *mark)
{
    csp_thread_db *t = csp_thread_slot();

    memset(mark, 0, sizeof(*mark));
    if (t == NULL || t->db == NULL || t->pid != csp_process_pid() ||
        cs_db_wal_mark(t->db, mark->hdr) != CS_OK)
        return 0;
    mark->epoch = t->epoch;
    mark->valid = 1;
    return 1;
}

int csp_dbpool_unchanged(const csp_store_mark *mark)
{
    csp_thread_db *t = csp_thread_slot();
    unsigned char now[CS_WAL_MARK_LEN];

    return mark->valid && t != NULL && t->db != NULL && t->epoch == mark->epoch &&
           t->pid == csp_process_pid() && cs_db_wal_mark(t->db, now) == CS_OK &&
           memcmp(now, mark->hdr, CS_WAL_MARK_LEN) == 0;
}

/* ---- the policy state ---------------------------------------------------------- */

/*
 * The state this thread last read, with the change mark taken just before
 * reading it: while nothing has been committed since (and the handle is
 * the same), it is still the state, and no SQLite read is needed.
 */
static __thread struct {
    csp_policy_state state;
    csp_store_mark mark;
} csp_last_state;

int csp_current_policy_state(csp_policy_state *state)
{
    char why[256];
    csp_store_mark mark;
    cs_db *db = csp_dbpool_get(why, sizeof(why));

    if (db == NULL)
        return 0;
    if (csp_dbpool_unchanged(&csp_last_state.mark)) {
        *state = csp_last_state.state;
        return 1;
    }
    csp_dbpool_mark(&mark); /* before the read: a commit after it shows as a change */
    /* The file first: a generation read from a replaced file binds nothing. */
    if (cs_db_identity(db, &state->file) != CS_OK ||
        cs_db_generation(db, &state->generation) != CS_OK) {
        csp_last_state.mark.valid = 0;
        csp_dbpool_discard(); /* replaced, or cannot read: reopen next time */
        return 0;
    }
    csp_last_state.state = *state;
    csp_last_state.mark = mark;
    return 1;
}

int csp_policy_state_equal(const csp_policy_state *a, const csp_policy_state *b)
{
    return a->generation == b->generation && a->file.dev == b->file.dev &&
           a->file.ino == b->file.ino && a->file.birth_sec == b->file.birth_sec &&
           a->file.birth_nsec == b->file.birth_nsec;
}

void csp_dbpool_close_current(void)
{
    csp_thread_db *t;

    if (!csp_db_key_ok)
        return;
    t = pthread_getspecific(csp_db_key);
    if (t == NULL)
        return;
    pthread_setspecific(csp_db_key, NULL);
    csp_thread_db_free(t);
}

int csp_dbpool_attach_dir(char *why, size_t why_len)
{
    char reason[256];

    if (cs_db_dir_attached())
        return 1;
    if (cs_db_dir_attach(csp_db_path, reason, sizeof(reason)) == CS_OK)
        return 1;
    snprintf(why, why_len, "%s", reason);
    return 0;
}

/* The module is never unloaded (-z nodelete): this runs at process exit. */
__attribute__((destructor)) static void csp_dbpool_unload(void)
{
    cs_db_dir_detach();
}

int csp_dbpool_probe(const char *path, char *why, size_t why_len)
{
    cs_db *db = csp_db_open_readonly(path, why, why_len);

    if (db == NULL)
        return 0;
    cs_db_close(db);
    return 1;
}
