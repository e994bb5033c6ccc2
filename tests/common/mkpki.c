/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mkpki DIR [--rsa]: write the shared test PKI (see testpki.h) as PEM files
 * into DIR, creating DIR if it does not exist.
 */
#include "testpki.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int usage(void)
{
    fputs("usage: mkpki DIR [--rsa]\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int rsa = 0;
    testpki *pki;
    int ok;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rsa") == 0)
            rsa = 1;
        else if (argv[i][0] == '-' || dir != NULL)
            return usage();
        else
            dir = argv[i];
    }
    if (dir == NULL)
        return usage();
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkpki: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    pki = testpki_new(rsa);
    if (pki == NULL) {
        fputs("mkpki: building the test PKI failed\n", stderr);
        return 1;
    }
    ok = testpki_write(pki, dir);
    testpki_free(pki);
    if (!ok) {
        fprintf(stderr, "mkpki: writing into %s failed: %s\n", dir, strerror(errno));
        return 1;
    }
    return 0;
}
