/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the import path (cs_import on a FILE, as `certstore import` calls it)
 * against a real SQLite store in a temp dir that already holds an account
 * and a mapping, so clashes and account reuse are reachable. Every input is
 * imported inside a transaction that is then rolled back.
 *
 * Checked beyond "no crash": only CS_OK or CS_INVALID come back; a failure
 * names its line; the pure parser (cs_import_parse) never accepts less than
 * the import does; every row it hands out has a valid account name (NUL,
 * control characters and invalid UTF-8 from \u escapes never reach the
 * store); the mapping count grows by exactly the rows reported; and a
 * rollback leaves the store as it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle failure is a crash libFuzzer keeps, with the broken promise named. */
#define require(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static cs_db *db;
static char tmpdir[512];
static char db_path[sizeof(tmpdir) + 16];
static int64_t base_mappings;

static void remove_store(void)
{
    char path[sizeof(db_path) + 8];

    cs_db_close(db);
    db = NULL;
    unlink(db_path);
    snprintf(path, sizeof(path), "%s-wal", db_path);
    unlink(path);
    snprintf(path, sizeof(path), "%s-shm", db_path);
    unlink(path);
    rmdir(tmpdir);
}

static int64_t mapping_count(void)
{
    cs_stats stats;

    require(cs_stats_get(db, &stats) == CS_OK);
    return stats.mappings;
}

/* One account "existing" with one cert mapping whose key is 32 bytes of 0x11. */
static void make_store(void)
{
    cs_mapping_spec spec;

    /*
     * libFuzzer ends a timed run with _exit (no atexit handlers): run.sh
     * points TMPDIR at a directory it removes itself.
     */
    snprintf(tmpdir, sizeof(tmpdir), "%s/certstore-fuzz-import-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    require(mkdtemp(tmpdir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/fuzz.db", tmpdir);
    atexit(remove_store);
    require(cs_db_open(&db, db_path, CS_OPEN_CREATE) == CS_OK);
    require(cs_db_migrate(db) == CS_OK);
    require(cs_db_begin(db, "fuzz_import setup") == CS_OK);
    memset(&spec, 0, sizeof(spec));
    spec.kind = CS_KIND_CERT;
    spec.key.len = 32;
    memset(spec.key.bytes, 0x11, 32);
    spec.account = "existing";
    spec.not_before = spec.not_after = spec.cert_not_after = CS_TIME_NONE;
    require(cs_mapping_add(db, &spec, 1, NULL) == CS_OK);
    require(cs_db_commit(db) == CS_OK);
    base_mappings = mapping_count();
}

static cs_status check_row(const cs_import_row *row, int64_t line, void *arg)
{
    const cs_mapping_spec *spec = &row->mapping;
    int64_t *rows = arg;

    require(line >= 1);
    require(spec->account != NULL && cs_account_name_valid(spec->account));
    require(spec->kind < CS_KIND_COUNT && spec->key.len > 0 && spec->key.len <= CS_KEY_MAX);
    require(spec->note == NULL || strlen(spec->note) <= CS_NOTE_MAX);
    require(row->enabled == 0 || row->enabled == 1);
    require(row->account_enabled >= -1 && row->account_enabled <= 1);
    (*rows)++;
    return CS_OK;
}

static cs_status parse_only(const uint8_t *data, size_t size, int64_t *rows)
{
    int64_t bad_line = -1;
    char msg[256];
    cs_status status;

    *rows = 0;
    msg[0] = '\0';
    status =
        cs_import_parse(data, size, CS_IMPORT_AUTO, check_row, rows, &bad_line, msg, sizeof(msg));
    require(status == CS_OK || status == CS_INVALID);
    require(status == CS_OK ? bad_line == 0 : bad_line >= 0 && msg[0] != '\0');
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_import_result result;
    cs_status parsed, imported;
    int64_t parsed_rows;
    FILE *in;

    if (db == NULL)
        make_store();
    parsed = parse_only(data, size, &parsed_rows);
    in = fmemopen((void *)data, size, "r");
    if (in == NULL)
        return 0; /* size 0 on older C libraries */
    require(cs_db_begin(db, "fuzz_import") == CS_OK);
    memset(&result, 0, sizeof(result));
    imported = cs_import(db, in, CS_IMPORT_AUTO, NULL, &result, NULL, NULL);
    fclose(in);
    require(imported == CS_OK || imported == CS_INVALID);
    if (imported == CS_OK) {
        require(parsed == CS_OK && result.rows == parsed_rows);
        require(result.bad_line == 0);
        require(mapping_count() == base_mappings + result.rows);
    }
    cs_db_rollback(db);
    require(mapping_count() == base_mappings);
    return 0;
}
