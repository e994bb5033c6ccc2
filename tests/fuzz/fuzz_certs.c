/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the CLI's certificate file loader (tools/cli_certs.c): PEM with any
 * number of blocks or one DER certificate, detected by content. The input
 * goes through a memfd, so the loader reads it exactly as it reads a file.
 *
 * Every certificate it hands back is then used the way the CLI uses one
 * (subject text, fingerprint, each mapping key), and the loader's promises
 * are checked: a non-empty stack or NULL, and an empty OpenSSL error queue.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle failure is a crash libFuzzer keeps, with the broken promise named. */
#define require(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int input_fd = -1;
static char input_path[64];

static void open_input(void)
{
    input_fd = memfd_create("fuzz-certs", MFD_CLOEXEC);
    require(input_fd >= 0);
    snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
}

static void set_input(const uint8_t *data, size_t size)
{
    require(ftruncate(input_fd, 0) == 0);
    require(size == 0 || pwrite(input_fd, data, size, 0) == (ssize_t)size);
}

static void use_like_the_cli(X509 *cert)
{
    char fp[CS_FP_HEX_LEN + 1];
    char *subject = cli_subject_text(cert);
    int kind;

    OPENSSL_free(subject);
    require(cs_fp_of_cert(cert, fp) == 1);
    for (kind = 0; kind < CS_KIND_COUNT; kind++) {
        cs_key key;
        char text[2 * CS_KEY_MAX + 2];
        cs_key parsed;

        if (cs_key_from_cert(cert, (cs_kind)kind, &key) != CS_OK)
            continue;
        /* The text form the CLI prints must parse back to the same key. */
        cs_key_format((cs_kind)kind, &key, text, sizeof(text));
        require(cs_key_parse((cs_kind)kind, text, &parsed) == 1);
        require(parsed.len == key.len && memcmp(parsed.bytes, key.bytes, key.len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cli_ctx ctx = {.name = "fuzz"};
    STACK_OF(X509) * certs;
    int i;

    if (input_fd < 0)
        open_input();
    set_input(data, size);
    certs = cli_read_certs(&ctx, input_path);
    require(ERR_peek_error() == 0);
    if (certs == NULL)
        return 0;
    require(sk_X509_num(certs) > 0);
    for (i = 0; i < sk_X509_num(certs); i++)
        use_like_the_cli(sk_X509_value(certs, i));
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    return 0;
}
