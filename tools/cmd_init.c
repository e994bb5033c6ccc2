/* SPDX-License-Identifier: Apache-2.0 */
/* certstore init: create the database or migrate it to the current schema. */
#include "cli.h"

static int run_init(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_option opts[] = {CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE)
        return rc;
    if ((rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;

    cs_db *db = cli_open_create(ctx);
    if (db == NULL)
        return CLI_FAIL;
    int version = 0;
    if (cs_db_migrate(db) != CS_OK || cs_db_schema_version(db, &version) != CS_OK) {
        rc = cli_fail(ctx, "%s: %s", ctx->db_path, cs_db_errmsg(db));
        cs_db_close(db);
        return rc;
    }
    cs_db_close(db);
    printf("database ");
    cli_put_text(stdout, ctx->db_path);
    printf(" ready (schema version %d)\n", version);
    return CLI_OK;
}

const cli_command cli_cmd_init = {
    "init",
    "create the database, or migrate it to the current schema",
    run_init,
    "Usage: certstore [--db PATH] init\n"
    "\n"
    "Create the database file if it does not exist, or migrate an existing one\n"
    "forward to the schema this version knows. A database made by a newer\n"
    "version is refused and left untouched.\n",
};
