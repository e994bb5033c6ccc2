/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening the database for a command and wrapping writes in one
 * transaction: a command either commits all it did or leaves the database
 * exactly as it was.
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static cs_db *open_db(const cli_ctx *ctx, unsigned flags)
{
    cs_db *db = NULL;
    if (!(flags & CS_OPEN_READONLY)) {
        if (unsafe_dir_refused(ctx))
            return NULL;
        if (ctx->allow_unsafe_dir)
            flags |= CS_OPEN_ALLOW_UNSAFE_DIR;
    }
    cs_status st = cs_db_open(&db, ctx->db_path, flags);
    if (st != CS_OK) {
        if (db != NULL)
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
    if (begin(db, ctx->command_line) != CS_OK) {
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
    } else if (cs_db_commit(db) != CS_OK) {
        fail_on_path(ctx, "commit failed, nothing changed:", cs_db_errmsg(db));
        cs_db_rollback(db);
        rc = CLI_FAIL;
    }
    cs_db_close(db);
    return rc;
}
