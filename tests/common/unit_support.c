/* SPDX-License-Identifier: Apache-2.0 */
#include "unit_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define US_CLI_ARGS_MAX 40

void us_store_open(us_store *s, const char *tmp_root)
{
    memset(s, 0, sizeof(*s));
    ck_assert_int_lt(snprintf(s->dir, sizeof(s->dir), "%s/t-XXXXXX", tmp_root),
                     (int)sizeof(s->dir));
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    snprintf(s->db, sizeof(s->db), "%s/certstore.db", s->dir);
    ck_assert_int_eq(cs_db_open(&s->writer, s->db, CS_OPEN_CREATE), CS_OK);
    ck_assert_msg(cs_db_migrate(s->writer) == CS_OK, "migrating: %s", cs_db_errmsg(s->writer));
    ck_assert_int_eq(cs_db_open(&s->reader, s->db, CS_OPEN_READONLY), CS_OK);
}

void us_store_close(us_store *s)
{
    cs_db_close(s->reader);
    cs_db_close(s->writer);
    s->reader = s->writer = NULL;
    testpki_rmtree(s->dir);
}

int us_cli_v(const char *db, int with_stderr, char *out, size_t out_len, const char *first,
             va_list ap)
{
    const char *bin = getenv("CERTSTORE_BIN");
    const char *argv[US_CLI_ARGS_MAX];
    int argc = 0, pipefd[2], status = 0;
    pid_t pid;
    size_t used = 0;
    ssize_t n;

    ck_assert_msg(bin != NULL, "CERTSTORE_BIN is not set");
    ck_assert(out_len > 0);
    argv[argc++] = bin;
    argv[argc++] = "--db";
    argv[argc++] = db;
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        ck_assert_msg(argc < US_CLI_ARGS_MAX - 1, "too many arguments for the CLI");
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    ck_assert_int_eq(pipe(pipefd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        if (with_stderr)
            dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    while ((n = read(pipefd[0], out + used, out_len - 1 - used)) > 0)
        used += (size_t)n;
    out[used] = '\0';
    close(pipefd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int us_run_suite(Suite *suite, const char *name, testpki **pki, char **tmp_root)
{
    SRunner *runner;
    int failed;

    *pki = testpki_new(0);
    *tmp_root = testpki_tmpdir();
    if (*pki == NULL || *tmp_root == NULL) {
        fprintf(stderr, "%s: cannot build the test PKI or temp dir\n", name);
        return EXIT_FAILURE;
    }
    runner = srunner_create(suite);
    srunner_run_all(runner, CK_ENV);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    testpki_rmtree(*tmp_root);
    free(*tmp_root);
    testpki_free(*pki);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
