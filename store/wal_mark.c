/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wal-index peek: the one place that knows SQLite's internals. A
 * change mark is the wal-index header, which SQLite in WAL mode rewrites at
 * every commit (see cs_db_wal_mark in cs_store.h); two equal marks read
 * through one handle mean nothing was committed in between. The header's
 * layout is SQLite's file format (walIndexHdr, "wal.c"), stable since
 * 3.7.0, and checked here: another version reads as "changed".
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "cs_internal.h"

#define WALINDEX_REGION 32768     /* SQLite's wal-index page size */
#define WALINDEX_VERSION 3007000u /* the format since SQLite 3.7.0 */
#define WALINDEX_ISINIT_OFFSET 12

cs_status cs_db_wal_mark(cs_db *db, unsigned char mark[CS_WAL_MARK_LEN])
{
    sqlite3_file *file = NULL;
    void volatile *region = NULL;
    const volatile unsigned char *hdr;
    unsigned char both[2 * CS_WAL_MARK_LEN];
    uint32_t version;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    /* The pager's file lives as long as the connection: look it up (by name) once. */
    if (db->main_file == NULL && sqlite3_file_control(db->sql, "main", SQLITE_FCNTL_FILE_POINTER,
                                                      &db->main_file) != SQLITE_OK)
        db->main_file = NULL;
    file = db->main_file;
    if (file == NULL || file->pMethods == NULL || file->pMethods->iVersion < 2 ||
        file->pMethods->xShmMap == NULL ||
        file->pMethods->xShmMap(file, 0, WALINDEX_REGION, 0, &region) != SQLITE_OK ||
        region == NULL)
        return CS_ERR;
    /* SQLite writes copy 2 then copy 1; read 1 then 2, as its readers do. */
    hdr = region;
    for (size_t i = 0; i < CS_WAL_MARK_LEN; i++)
        both[i] = hdr[i];
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    for (size_t i = CS_WAL_MARK_LEN; i < sizeof(both); i++)
        both[i] = hdr[i];
    if (memcmp(both, both + CS_WAL_MARK_LEN, CS_WAL_MARK_LEN) != 0)
        return CS_ERR;
    memcpy(&version, both, sizeof(version));
    if (version != WALINDEX_VERSION || both[WALINDEX_ISINIT_OFFSET] != 1)
        return CS_ERR;
    memcpy(mark, both, CS_WAL_MARK_LEN);
    return CS_OK;
}
