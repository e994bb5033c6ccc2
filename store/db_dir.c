/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reaching one database through a directory descriptor opened earlier.
 *
 * A server loads the provider as root, then chroots (HAProxy's `chroot
 * /var/lib/haproxy`) and drops privileges: after that, the database's path
 * names nothing. cs_db_dir_attach(), called once at load, opens the
 * database's directory (O_PATH, close-on-exec, inherited across fork) and
 * its parent, and overrides the unix VFS's system calls that take a path
 * (open, stat, lstat, access, readlink, unlink) with wrappers. While
 * routing is on (cs_db_dir_route(1), only when the directory's path does
 * not resolve), a wrapper given exactly the database's path, its -wal,
 * -shm or -journal, or the directory itself, does the same call relative
 * to the descriptor (openat, fstatat, faccessat, readlinkat, unlinkat);
 * every other path, and every path while routing is off, goes to SQLite's
 * own function untouched. So SQLite opens the very files it would by path,
 * with the same flags, and its locking, WAL and wal-index (-shm) code runs
 * unchanged on descriptors it got from openat: POSIX locks and the shared
 * memory belong to the inode, not to the name.
 *
 * Permissions are checked as for a path: the lookup relative to an O_PATH
 * descriptor needs search permission on the directory with the caller's
 * credentials at the time of the call (the worker's, after the privilege
 * drop), and the files are opened with them.
 *
 * A directory replaced as a whole (renamed away, removed) cannot be
 * followed through the descriptor, which keeps the old one:
 * cs_db_dir_replaced() tells by looking the directory's name up in the
 * parent descriptor, and the provider then refuses to open (fails closed)
 * until the server is reloaded.
 *
 * cs_db_open's own look-ups (links refused, the file's identity) go through
 * cs_db_dir_at. Another copy of this library in the process (HAProxy's Lua
 * module links its own) finds the attached copy's resolver through a VFS
 * registered by name only ("certstore-dir-1", never the default, opening
 * nothing), so its opens are routed the same way.
 *
 * The unix VFS's system-call table is process-wide: cs_db_dir_attach()
 * changes it, so it must run before other threads use SQLite (servers
 * load openssl.cnf at start, single-threaded). The wrappers stay installed
 * for the life of the process (the provider module is never unloaded);
 * cs_db_dir_detach() turns routing off, puts SQLite's functions back and
 * closes the descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cs_internal.h"

typedef int (*cs_open_fn)(const char *, int, int);
typedef int (*cs_stat_fn)(const char *, struct stat *);
typedef int (*cs_access_fn)(const char *, int);
typedef ssize_t (*cs_readlink_fn)(const char *, char *, size_t);
typedef int (*cs_unlink_fn)(const char *);

static struct {
    int attached;
    int dirfd, parentfd;
    dev_t dir_dev;
    ino_t dir_ino;
    char dir[PATH_MAX];          /* "/var/lib/certstore" */
    char dir_base[NAME_MAX + 1]; /* "certstore", its name in the parent */
    char db[PATH_MAX];           /* "/var/lib/certstore/certstore.db" */
    size_t dir_len;              /* strlen(dir), without a trailing '/' unless "/" */
    char name[NAME_MAX + 1];     /* "certstore.db" */
    size_t name_len;
    sqlite3_vfs *vfs;
    cs_open_fn real_open;
    cs_stat_fn real_stat, real_lstat;
    cs_access_fn real_access;
    cs_readlink_fn real_readlink;
    cs_unlink_fn real_unlink;
} cs_dir = {.dirfd = -1, .parentfd = -1};

static int cs_dir_routing; /* atomic: route the database's names through dirfd */

static const char *const cs_dir_suffixes[] = {"", "-wal", "-shm", "-journal"};

/* This copy's resolver: the directory this copy attached, if routed. */
static int cs_db_dir_at_local(const char *path, const char **name)
{
    size_t rest;

    *name = path;
    if (!__atomic_load_n(&cs_dir_routing, __ATOMIC_ACQUIRE) || path == NULL ||
        strncmp(path, cs_dir.dir, cs_dir.dir_len) != 0)
        return AT_FDCWD;
    if (path[cs_dir.dir_len] == '\0') {
        *name = ".";
        return cs_dir.dirfd;
    }
    if (cs_dir.dir_len > 1 && path[cs_dir.dir_len] != '/')
        return AT_FDCWD;
    path += cs_dir.dir_len + (cs_dir.dir_len > 1);
    if (strncmp(path, cs_dir.name, cs_dir.name_len) != 0)
        return AT_FDCWD;
    rest = strlen(path + cs_dir.name_len);
    for (size_t i = 0; i < sizeof(cs_dir_suffixes) / sizeof(cs_dir_suffixes[0]); i++)
        if (rest == strlen(cs_dir_suffixes[i]) &&
            strcmp(path + cs_dir.name_len, cs_dir_suffixes[i]) == 0) {
            *name = path;
            return cs_dir.dirfd;
        }
    return AT_FDCWD;
}

/*
 * Other copies of this library in the process (HAProxy's Lua module links
 * its own) find the attached copy's resolver through SQLite, which they
 * share: a VFS registered under a versioned name, never the default, that
 * opens nothing, whose pAppData is the resolver.
 */
#define CS_DIR_SHARE_MAGIC 0x63736431u /* "csd1" */

typedef struct {
    unsigned magic;
    int (*at)(const char *path, const char **name);
} cs_dir_share;

static const cs_dir_share cs_dir_shared = {CS_DIR_SHARE_MAGIC, cs_db_dir_at_local};

static int cs_dir_vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                           int *out_flags)
{
    file->pMethods = NULL;
    return SQLITE_CANTOPEN;
}

static int cs_dir_vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return SQLITE_IOERR_DELETE;
}

static int cs_dir_vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    *out = 0;
    return SQLITE_OK;
}

static int cs_dir_vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int len, char *out)
{
    return snprintf(out, (size_t)len, "%s", name) < len ? SQLITE_OK : SQLITE_CANTOPEN;
}

static int cs_dir_vfs_randomness(sqlite3_vfs *vfs, int len, char *out)
{
    memset(out, 0, (size_t)len);
    return 0;
}

static int cs_dir_vfs_sleep(sqlite3_vfs *vfs, int microseconds)
{
    return 0;
}

static int cs_dir_vfs_current_time(sqlite3_vfs *vfs, double *now)
{
    *now = 0;
    return SQLITE_ERROR;
}

static sqlite3_vfs cs_dir_vfs = {
    .iVersion = 1,
    .szOsFile = sizeof(sqlite3_file),
    .mxPathname = PATH_MAX,
    .zName = "certstore-dir-1",
    .pAppData = (void *)&cs_dir_shared,
    .xOpen = cs_dir_vfs_open,
    .xDelete = cs_dir_vfs_delete,
    .xAccess = cs_dir_vfs_access,
    .xFullPathname = cs_dir_vfs_full_pathname,
    .xRandomness = cs_dir_vfs_randomness,
    .xSleep = cs_dir_vfs_sleep,
    .xCurrentTime = cs_dir_vfs_current_time,
};

int cs_db_dir_at(const char *path, const char **name)
{
    const cs_dir_share *share;
    sqlite3_vfs *vfs;

    if (cs_dir.attached)
        return cs_db_dir_at_local(path, name);
    *name = path;
    /* Not attached here: the copy that attached, if any (the provider's). */
    vfs = sqlite3_vfs_find(cs_dir_vfs.zName);
    share = vfs != NULL ? vfs->pAppData : NULL;
    if (share == NULL || share->magic != CS_DIR_SHARE_MAGIC || share->at == cs_db_dir_at_local)
        return AT_FDCWD;
    return share->at(path, name);
}

/* ---- the wrappers SQLite's unix VFS calls ------------------------------------ */

static int cs_dir_open(const char *path, int flags, int mode)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_open(path, flags, mode);
    return openat(fd, name, flags, mode);
}

static int cs_dir_stat(const char *path, struct stat *st)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_stat(path, st);
    return fstatat(fd, name, st, 0);
}

static int cs_dir_lstat(const char *path, struct stat *st)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_lstat(path, st);
    return fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW);
}

static int cs_dir_access(const char *path, int mode)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_access(path, mode);
    /* access(2) checks with the real ids; so does faccessat without AT_EACCESS. */
    return faccessat(fd, name, mode, 0);
}

static ssize_t cs_dir_readlink(const char *path, char *buf, size_t len)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_readlink(path, buf, len);
    return readlinkat(fd, name, buf, len);
}

static int cs_dir_unlink(const char *path)
{
    const char *name;
    int fd = cs_db_dir_at_local(path, &name);

    if (fd == AT_FDCWD)
        return cs_dir.real_unlink(path);
    return unlinkat(fd, name, 0);
}

/* ---- attach / detach ----------------------------------------------------------- */

static const struct {
    const char *name;
    sqlite3_syscall_ptr wrapper;
} cs_dir_calls[] = {
    {"open", (sqlite3_syscall_ptr)cs_dir_open},
    {"stat", (sqlite3_syscall_ptr)cs_dir_stat},
    {"lstat", (sqlite3_syscall_ptr)cs_dir_lstat},
    {"access", (sqlite3_syscall_ptr)cs_dir_access},
    {"readlink", (sqlite3_syscall_ptr)cs_dir_readlink},
    {"unlink", (sqlite3_syscall_ptr)cs_dir_unlink},
};
#define CS_DIR_CALLS (sizeof(cs_dir_calls) / sizeof(cs_dir_calls[0]))

static sqlite3_syscall_ptr *cs_dir_real_slot(size_t i)
{
    static sqlite3_syscall_ptr *const slots[CS_DIR_CALLS] = {
        (sqlite3_syscall_ptr *)&cs_dir.real_open,     (sqlite3_syscall_ptr *)&cs_dir.real_stat,
        (sqlite3_syscall_ptr *)&cs_dir.real_lstat,    (sqlite3_syscall_ptr *)&cs_dir.real_access,
        (sqlite3_syscall_ptr *)&cs_dir.real_readlink, (sqlite3_syscall_ptr *)&cs_dir.real_unlink,
    };
    return slots[i];
}

static void cs_dir_close_fds(void)
{
    if (cs_dir.dirfd >= 0)
        close(cs_dir.dirfd);
    if (cs_dir.parentfd >= 0)
        close(cs_dir.parentfd);
    cs_dir.dirfd = cs_dir.parentfd = -1;
}

/* Put back what SQLite had, for the first n calls. */
static void cs_dir_restore(size_t n)
{
    for (size_t i = 0; i < n; i++)
        cs_dir.vfs->xSetSystemCall(cs_dir.vfs, cs_dir_calls[i].name, *cs_dir_real_slot(i));
}

/* Split "/a/b/c.db" into dir "/a/b", its name "b" and parent "/a", and "c.db". */
static int cs_dir_split(const char *db_path, char *parent, size_t parent_len, char *why,
                        size_t why_len)
{
    char *slash;

    if (db_path == NULL || db_path[0] != '/' ||
        snprintf(cs_dir.db, sizeof(cs_dir.db), "%s", db_path) >= (int)sizeof(cs_dir.db)) {
        snprintf(why, why_len, "not an absolute path of at most %d bytes", PATH_MAX - 1);
        return 0;
    }
    snprintf(cs_dir.dir, sizeof(cs_dir.dir), "%s", db_path);
    slash = strrchr(cs_dir.dir, '/');
    if (slash[1] == '\0' || strlen(slash + 1) > NAME_MAX) {
        snprintf(why, why_len, "no file name at the end");
        return 0;
    }
    snprintf(cs_dir.name, sizeof(cs_dir.name), "%s", slash + 1);
    slash[slash == cs_dir.dir ? 1 : 0] = '\0';
    cs_dir.dir_len = strlen(cs_dir.dir);
    cs_dir.name_len = strlen(cs_dir.name);
    /* The parent: where the directory's own name is looked up again. */
    snprintf(parent, parent_len, "%s", cs_dir.dir);
    slash = strrchr(parent, '/');
    if (cs_dir.dir_len == 1) {
        cs_dir.dir_base[0] = '\0'; /* the root has no name to replace */
        return 1;
    }
    snprintf(cs_dir.dir_base, sizeof(cs_dir.dir_base), "%s", slash + 1);
    slash[slash == parent ? 1 : 0] = '\0';
    return 1;
}

cs_status cs_db_dir_attach(const char *db_path, char *why, size_t why_len)
{
    char parent[PATH_MAX];
    struct stat st;
    size_t i;

    why[0] = '\0';
    if (cs_dir.attached) {
        snprintf(why, why_len, "already attached to %s", cs_dir.db);
        return CS_INVALID;
    }
    if (!cs_dir_split(db_path, parent, sizeof(parent), why, why_len))
        return CS_INVALID;
    cs_dir.dirfd = open(cs_dir.dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cs_dir.dirfd < 0 || fstat(cs_dir.dirfd, &st) != 0) {
        snprintf(why, why_len, "%s: %s", cs_dir.dir, strerror(errno));
        cs_dir_close_fds();
        return CS_ERR;
    }
    cs_dir.dir_dev = st.st_dev;
    cs_dir.dir_ino = st.st_ino;
    /* Without the parent, a replaced directory is noticed only once removed. */
    if (cs_dir.dir_base[0] != '\0')
        cs_dir.parentfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sqlite3_initialize() != SQLITE_OK || (cs_dir.vfs = sqlite3_vfs_find("unix")) == NULL ||
        cs_dir.vfs->iVersion < 3 || cs_dir.vfs->xSetSystemCall == NULL) {
        snprintf(why, why_len, "SQLite has no unix VFS with replaceable system calls");
        cs_dir_close_fds();
        return CS_ERR;
    }
    for (i = 0; i < CS_DIR_CALLS; i++) {
        sqlite3_syscall_ptr real = cs_dir.vfs->xGetSystemCall(cs_dir.vfs, cs_dir_calls[i].name);

        *cs_dir_real_slot(i) = real;
        if (real == NULL || cs_dir.vfs->xSetSystemCall(cs_dir.vfs, cs_dir_calls[i].name,
                                                       cs_dir_calls[i].wrapper) != SQLITE_OK) {
            snprintf(why, why_len, "SQLite's unix VFS does not let \"%s\" be replaced",
                     cs_dir_calls[i].name);
            cs_dir_restore(i);
            cs_dir_close_fds();
            return CS_ERR;
        }
    }
    /* Found by name only; a failure leaves other copies by path, as before. */
    sqlite3_vfs_register(&cs_dir_vfs, 0);
    cs_dir.attached = 1;
    return CS_OK;
}

void cs_db_dir_detach(void)
{
    if (!cs_dir.attached)
        return;
    __atomic_store_n(&cs_dir_routing, 0, __ATOMIC_RELEASE);
    sqlite3_vfs_unregister(&cs_dir_vfs);
    cs_dir_restore(CS_DIR_CALLS);
    cs_dir_close_fds();
    cs_dir.attached = 0;
}

int cs_db_dir_attached(void)
{
    return cs_dir.attached;
}

void cs_db_dir_route(int on)
{
    if (cs_dir.attached)
        __atomic_store_n(&cs_dir_routing, on != 0, __ATOMIC_RELEASE);
}

int cs_db_dir_routed(void)
{
    return __atomic_load_n(&cs_dir_routing, __ATOMIC_ACQUIRE);
}

int cs_db_dir_absent(void)
{
    struct stat st;

    /*
     * Only a path that names nothing (a chroot) is routed: a directory the
     * process may not search (EACCES) stays refused, as by path, so the
     * descriptor never lets a process past a directory closed to it.
     */
    return cs_dir.attached && stat(cs_dir.dir, &st) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

int cs_db_dir_stat(struct stat *st)
{
    if (!cs_dir.attached) {
        errno = EBADF;
        return -1;
    }
    return fstatat(cs_dir.dirfd, cs_dir.name, st, 0);
}

int cs_db_dir_replaced(char *why, size_t why_len)
{
    struct stat st;

    if (!cs_dir.attached)
        return 0;
    if (cs_dir.parentfd >= 0 &&
        fstatat(cs_dir.parentfd, cs_dir.dir_base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (st.st_dev == cs_dir.dir_dev && st.st_ino == cs_dir.dir_ino)
            return 0;
    } else if ((cs_dir.parentfd < 0 || errno == EACCES) && fstat(cs_dir.dirfd, &st) == 0 &&
               st.st_nlink > 0) {
        /* The parent cannot be searched: only a removed directory shows. */
        return 0;
    }
    /* The caller names the database; the descriptor can only show the old directory. */
    snprintf(why, why_len, "directory replaced or removed since load (reload the server)");
    return 1;
}

const char *cs_db_dir_path(void)
{
    return cs_dir.dir;
}
