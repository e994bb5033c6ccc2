/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the unit suites share: a fresh store per test (a writer that
 * created and migrated it, a read-only reader), running the certstore
 * binary against it, and main()'s set-up of the test PKI and temp root.
 * Helpers fail the running Check test (ck_assert) when set-up goes wrong.
 */
#ifndef CERTSTORE_UNIT_SUPPORT_H
#define CERTSTORE_UNIT_SUPPORT_H

#include <check.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>

#include "cs_store.h"
#include "testpki.h"

typedef struct {
    char dir[PATH_MAX];
    char db[PATH_MAX + 32];
    cs_db *writer; /* created and migrated the store */
    cs_db *reader; /* read-only, as the provider opens it */
} us_store;

/* A new directory under tmp_root with certstore.db in it, both handles open. */
void us_store_open(us_store *s, const char *tmp_root);
void us_store_close(us_store *s);

/*
 * Run $CERTSTORE_BIN --db DB ARGS... (NULL-terminated); its stdout, and
 * its stderr too when with_stderr, in out. Returns the exit status.
 */
int us_cli_v(const char *db, int with_stderr, char *out, size_t out_len, const char *first,
             va_list ap);

/*
 * main() of a suite: builds the test PKI and temp root (into *pki and
 * *tmp_root for the tests), runs the suite, removes it all (failed tests
 * skip their teardown). Returns the process exit status.
 */
int us_run_suite(Suite *suite, const char *name, testpki **pki, char **tmp_root);

#endif
