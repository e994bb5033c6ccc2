/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening the database for a command and wrapping writes in one
 * transaction: a command either commits all it did or leaves the database
 * exactly as it was.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cli.h"

int cli_store_fail(const cli_ctx *ctx, const cs_db *db)
{
    return cli_fail(ctx, "%s", db != NULL ? cs_db_errmsg(db) : "out of memory");
}

/* The library's message, led by the path once: most of its messages name it already. */
static int fail_on_path(const cli_ctx *ctx, const char *what, const char *msg)
{
    size_t n = strlen(ctx->db_path);
    if (strncmp(msg, ctx->db_path, n) == 0 && (msg[n] == ':' || msg[n] == ' '))
        return what != NULL ? cli_fail(ctx, "%s: %s %s", ctx->db_path, what, msg)
                            : cli_fail(ctx, "%s", msg);
    return cli_fail(ctx, "%s: %s%s%s", ctx->db_path, what != NULL ? what : "",
                    what != NULL ? " " : "", msg);
}

static int group_or_other_writable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

void cli_warn_permissions(const cli_ctx *ctx)
{
    char *copy = strdup(ctx->db_path);
    if (copy == NULL)
        return;
    const char *dir = dirname(copy);
    int file_writable = group_or_other_writable(ctx->db_path);
    int dir_writable = group_or_other_writable(dir);
    if (file_writable && dir_writable)
        cli_warn(ctx, "%s and its directory %s are writable by group or others", ctx->db_path, dir);
    else if (file_writable)
        cli_warn(ctx, "%s is writable by group or others", ctx->db_path);
    else if (dir_writable)
        cli_warn(ctx, "directory %s of the database is writable by group or others", dir);
    free(copy);
}

/* Writers only: name the override, which the library does not know. */
static int unsafe_dir_refused(const cli_ctx *ctx)
{
    char why[512];

    if (ctx->allow_unsafe_dir || cs_db_check_dir(ctx->db_path, why, sizeof(why)) == CS_OK)
        return 0;
    cli_fail(ctx, "%s: %s (--allow-unsafe-dir or CERTSTORE_ALLOW_UNSAFE_DIR=1 if intended)",
             ctx->db_path, why);
    return 1;
}

static int wait_ms(const cli_ctx *ctx)
{
    return ctx->wait_ms >= 0 ? ctx->wait_ms : CLI_WAIT_DEFAULT_MS;
}

/*
 * Who holds the write lock: in WAL mode a writer holds an exclusive POSIX
 * lock on byte 120 of the -shm file (SQLite's WAL_WRITE_LOCK) for its whole
 * transaction; /proc/locks names the process. Readers (servers) hold only
 * shared locks there, so they are never blamed. "" when it cannot be told.
 */
#define SQLITE_WAL_WRITE_LOCK_OFFSET 120
static void lock_holder(const char *db_path, char *buf, size_t len)
{
    char shm[4096], line[512];
    struct stat st;
    buf[0] = '\0';
    snprintf(shm, sizeof(shm), "%s-shm", db_path);
    FILE *locks = stat(shm, &st) == 0 ? fopen("/proc/locks", "r") : NULL;
    if (locks == NULL)
        return;
    while (fgets(line, sizeof(line), locks) != NULL) {
        char kind[16], mode[16];
        long pid;
        unsigned major, minor;
        unsigned long long ino;
        char start[32], stop[32];
        if (sscanf(line, "%*[^:]: %15s %*s %15s %ld %x:%x:%llu %31s %31s", kind, mode, &pid, &major,
                   &minor, &ino, start, stop) != 8 ||
            strcmp(kind, "POSIX") != 0 || strcmp(mode, "WRITE") != 0 || ino != st.st_ino ||
            major != major(st.st_dev) || minor != minor(st.st_dev) || pid <= 0 ||
            pid == (long)getpid())
            continue;
        long long from = atoll(start), to = strcmp(stop, "EOF") == 0 ? -1 : atoll(stop);
        if (from > SQLITE_WAL_WRITE_LOCK_OFFSET || (to >= 0 && to < SQLITE_WAL_WRITE_LOCK_OFFSET))
            continue;
        char path[64], cmd[256] = "";
        snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "r");
        size_t n = f != NULL ? fread(cmd, 1, sizeof(cmd) - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        cmd[n] = '\0';
        for (size_t i = 0; i + 1 < n; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        snprintf(buf, len, "process %ld (%s)", pid, n > 0 ? cmd : "command line not readable");
        break;
    }
    fclose(locks);
}

/* A lock held past --wait: say so, and by whom. */
static void busy_fail(const cli_ctx *ctx, const cs_db *db)
{
    char holder[400], *text = NULL;
    size_t text_len = 0;
    lock_holder(ctx->db_path, holder, sizeof(holder));
    /* The holder's command line is someone's input: shown escaped. */
    FILE *out = open_memstream(&text, &text_len);
    if (out != NULL) {
        cli_put_text(out, holder);
        fclose(out);
    }
    cli_fail(ctx, "%s: %s: still locked after %.3g s, held by %s (wait longer with --wait SECONDS)",
             ctx->db_path, cs_db_errmsg(db), wait_ms(ctx) / 1000.0,
             text != NULL && *text != '\0' ? text : "another writer");
    free(text);
}

static cs_db *open_db(const cli_ctx *ctx, unsigned flags)
{
    cs_db *db = NULL;
    if (!(flags & CS_OPEN_READONLY)) {
        if (unsafe_dir_refused(ctx))
            return NULL;
        if (ctx->allow_unsafe_dir)
            flags |= CS_OPEN_ALLOW_UNSAFE_DIR;
    }
    cs_status st = cs_db_open_ex(&db, ctx->db_path, flags, wait_ms(ctx));
    if (st != CS_OK) {
        if (st == CS_BUSY && db != NULL)
            busy_fail(ctx, db);
        else if (db != NULL)
            fail_on_path(ctx, NULL, cs_db_errmsg(db));
        else
            cli_fail(ctx, "%s: cannot open database (out of memory)", ctx->db_path);
        cs_db_close(db);
        return NULL;
    }
    cli_warn_permissions(ctx);
    return db;
}

cs_db *cli_open_read(const cli_ctx *ctx)
{
    /* The CLI's own read-only open refuses what servers would refuse, too. */
    return open_db(ctx, CS_OPEN_READONLY);
}

cs_db *cli_open_create(const cli_ctx *ctx)
{
    return open_db(ctx, CS_OPEN_CREATE);
}

/*
 * Root can write a 0444 file, and SQLite may silently fall back to a
 * read-only handle, so say plainly when the file is not writable for us.
 */
static int check_writable(const cli_ctx *ctx)
{
    if (access(ctx->db_path, F_OK) != 0) {
        cli_fail(ctx, "%s: no database here (run 'certstore init' first)", ctx->db_path);
        return 0;
    }
    if (access(ctx->db_path, W_OK) != 0) {
        cli_fail(ctx, "%s: database is read-only (%s)", ctx->db_path, strerror(errno));
        return 0;
    }
    return 1;
}

static cs_db *begin_write(const cli_ctx *ctx, cs_status (*begin)(cs_db *, const char *))
{
    if (!check_writable(ctx))
        return NULL;
    cs_db *db = open_db(ctx, 0);
    if (db == NULL)
        return NULL;
    cs_status st = begin(db, ctx->command_line);
    if (st == CS_BUSY) {
        busy_fail(ctx, db);
        cs_db_close(db);
        return NULL;
    }
    if (st != CS_OK) {
        fail_on_path(ctx, NULL, cs_db_errmsg(db));
        cs_db_close(db);
        return NULL;
    }
    return db;
}

cs_db *cli_begin_write(const cli_ctx *ctx)
{
    return begin_write(ctx, cs_db_begin);
}

cs_db *cli_begin_import(const cli_ctx *ctx)
{
    return begin_write(ctx, cs_db_begin_import);
}

int cli_end_write(const cli_ctx *ctx, cs_db *db, cs_status status)
{
    int rc = CLI_OK;
    if (status != CS_OK) {
        cs_db_rollback(db);
        rc = CLI_FAIL;
    } else if ((status = cs_db_commit(db)) != CS_OK) {
        if (status == CS_BUSY)
            busy_fail(ctx, db);
        else
            fail_on_path(ctx, "commit failed, nothing changed:", cs_db_errmsg(db));
        cs_db_rollback(db);
        rc = CLI_FAIL;
    }
    cs_db_close(db);
    return rc;
}

int cli_listing_row(cli_listing *l)
{
    if (l->json)
        cli_json_list_row(&l->list);
    return l->json;
}

int cli_run_listing(cli_ctx *ctx, const cli_option *opts, int argc, char **argv, cli_listing *l,
                    cli_list_fn list, void *arg, const char *not_found)
{
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    cs_status st;
    cs_db *db;

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if ((db = cli_open_read(ctx)) == NULL)
        return CLI_FAIL;
    if (l->json)
        cli_json_list_begin(&l->list, stdout);
    st = list(db, l, arg);
    if (st == CS_NOTFOUND && not_found != NULL) {
        rc = cli_fail(ctx, "%s", not_found);
    } else if (st != CS_OK) {
        rc = cli_store_fail(ctx, db);
    } else {
        if (l->json)
            cli_json_list_end(&l->list);
        rc = CLI_OK;
    }
    cs_db_close(db);
    return rc;
}
