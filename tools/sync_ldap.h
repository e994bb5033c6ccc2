/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a directory for `certstore sync` with OpenLDAP's libldap: the
 * whole of what the sync needs, into a cs_sync_snapshot, or nothing.
 */
#ifndef SYNC_LDAP_H
#define SYNC_LDAP_H

#include <stddef.h>

#include "cs_store.h"

typedef enum { SYNC_SCHEMA_AD = 0, SYNC_SCHEMA_LDAP } sync_schema;

typedef struct {
    const char *uri;      /* ldap://, ldaps:// or ldapi:// */
    const char *ca_file;  /* NULL: libldap's default trust (ldap.conf TLS_CACERT) */
    int insecure;         /* ldap:// without StartTLS */
    const char *bind_dn;  /* NULL: anonymous */
    const char *password; /* with bind_dn */
    const char *base;
    sync_schema schema;
    const char *account_attr;  /* one value per user: the account name */
    const char *mapping_attr;  /* altSecurityIdentities-style strings; NULL: none */
    const char *cert_attr;     /* whole DER certificates; NULL: none */
    const char *pins_dn;       /* NULL: AD's NTAuth object (ad), or no pins (ldap) */
    const char *pins_attr;     /* DER CA certificates */
    const char *filter;        /* NULL: users with a mapping attribute */
    const char *disabled_attr; /* ldap: ATTR or ATTR=VALUE marking a disabled user */
    int timeout;               /* seconds for connect and each operation */
} sync_config;

/* Told about entries skipped (no account name); where is the entry number. */
typedef void (*sync_note_fn)(long where, const char *why, void *arg);

/*
 * Read the directory into snap. 0 on success; -1 with one line in err
 * (unreachable, TLS, bind, a search that did not end in success, a
 * referral, malformed entries): then snap must be thrown away.
 */
int sync_ldap_read(const sync_config *cfg, cs_sync_snapshot *snap, sync_note_fn note, void *arg,
                   char *err, size_t errlen);

#endif
