/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kerberos for `certstore sync --sasl-mech GSSAPI`: a ticket for the
 * principal from its keytab, in a credential cache of our own (a temp
 * directory), never the user's default cache.
 */
#ifndef SYNC_KRB5_H
#define SYNC_KRB5_H

#include <stddef.h>

/*
 * Get a ticket-granting ticket for principal with the keys in keytab into
 * a new private cache, and point KRB5CCNAME at it (for the GSSAPI
 * mechanism of Cyrus SASL). *dir is the cache's temp directory, for
 * sync_krb5_logout. 0, or -1 with one line in err.
 */
int sync_krb5_login(const char *keytab, const char *principal, char **dir, char *err,
                    size_t errlen);
/* Destroy the cache and remove its directory; NULL is fine. */
void sync_krb5_logout(char *dir);

#endif
