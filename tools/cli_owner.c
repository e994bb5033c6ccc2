/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI leaves rows a directory sync owns alone unless --force: the next
 * sync would put them back, so a local change there only looks like one.
 */
#include "cli.h"

cs_status cli_owner_check(const cli_ctx *ctx, cs_db *db, cs_status lookup,
                          const char source[CS_SOURCE_MAX], int force)
{
    if (lookup == CS_NOTFOUND)
        return CS_OK; /* the change itself says "no such ..." */
    if (lookup != CS_OK) {
        cli_store_fail(ctx, db);
        return lookup;
    }
    if (source[0] == '\0')
        return CS_OK;
    if (!force) {
        cli_fail(ctx,
                 "owned by %s: change it in the directory, or use --force (the next sync "
                 "puts it back)",
                 source);
        return CS_INVALID;
    }
    cli_warn(ctx, "changing a row owned by %s: the next sync puts it back", source);
    return CS_OK;
}
