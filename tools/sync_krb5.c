/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A private Kerberos login from a keytab (MIT krb5): kinit -k -t KEYTAB
 * PRINCIPAL into a cache in a fresh 0700 temp directory, so the sync never
 * reads or replaces the ticket cache of whoever runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <krb5.h>

#include "sync_krb5.h"

#define CACHE_FILE "ccache"

static void krb_fail(krb5_context ctx, krb5_error_code code, const char *what, const char *arg,
                     char *err, size_t errlen)
{
    const char *msg = ctx != NULL ? krb5_get_error_message(ctx, code) : NULL;

    snprintf(err, errlen, "%s %s: %s", what, arg, msg != NULL ? msg : "Kerberos error");
    if (msg != NULL)
        krb5_free_error_message(ctx, msg);
}

static int login_into(krb5_context ctx, const char *keytab, const char *principal,
                      const char *cache, char *err, size_t errlen)
{
    krb5_principal client = NULL;
    krb5_keytab kt = NULL;
    krb5_ccache cc = NULL;
    krb5_creds creds;
    krb5_error_code code;
    int got = 0, rc = -1;

    memset(&creds, 0, sizeof(creds));
    if ((code = krb5_parse_name(ctx, principal, &client)) != 0)
        krb_fail(ctx, code, "--principal", principal, err, errlen);
    else if ((code = krb5_kt_resolve(ctx, keytab, &kt)) != 0)
        krb_fail(ctx, code, "--keytab", keytab, err, errlen);
    else if ((code = krb5_get_init_creds_keytab(ctx, &creds, client, kt, 0, NULL, NULL)) != 0)
        krb_fail(ctx, code, "Kerberos login as", principal, err, errlen);
    else if ((got = 1, code = krb5_cc_resolve(ctx, cache, &cc)) != 0 ||
             (code = krb5_cc_initialize(ctx, cc, client)) != 0 ||
             (code = krb5_cc_store_cred(ctx, cc, &creds)) != 0)
        krb_fail(ctx, code, "credential cache", cache, err, errlen);
    else
        rc = 0;
    if (got)
        krb5_free_cred_contents(ctx, &creds);
    if (cc != NULL)
        krb5_cc_close(ctx, cc);
    if (kt != NULL)
        krb5_kt_close(ctx, kt);
    krb5_free_principal(ctx, client);
    return rc;
}

int sync_krb5_login(const char *keytab, const char *principal, char **dir, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    char templ[512], cache[600];
    krb5_context ctx = NULL;
    krb5_error_code code;
    int rc;

    *dir = NULL;
    if (access(keytab, R_OK) != 0) {
        snprintf(err, errlen, "--keytab %s: cannot be read", keytab);
        return -1;
    }
    snprintf(templ, sizeof(templ), "%s/certstore-sync-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(templ) == NULL || (*dir = strdup(templ)) == NULL) {
        snprintf(err, errlen, "cannot make a private credential cache directory under %s",
                 tmp != NULL && *tmp ? tmp : "/tmp");
        if (*dir == NULL)
            rmdir(templ);
        return -1;
    }
    snprintf(cache, sizeof(cache), "FILE:%s/" CACHE_FILE, templ);
    if ((code = krb5_init_context(&ctx)) != 0) {
        snprintf(err, errlen, "Kerberos: cannot initialise (error %ld)", (long)code);
        rc = -1;
    } else {
        rc = login_into(ctx, keytab, principal, cache, err, errlen);
        krb5_free_context(ctx);
    }
    if (rc == 0 && setenv("KRB5CCNAME", cache, 1) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc != 0) {
        sync_krb5_logout(*dir);
        *dir = NULL;
    }
    return rc;
}

void sync_krb5_logout(char *dir)
{
    char path[600];

    if (dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/" CACHE_FILE, dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}
