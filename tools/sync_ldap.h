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

/* One bound connection, kept open by `sync --follow`. */
typedef struct sync_conn sync_conn;

/* Connect and bind. 0, or -1 with one line in err (unreachable, TLS, bind). */
int sync_ldap_open(const sync_config *cfg, sync_conn **out, char *err, size_t errlen);
void sync_ldap_close(sync_conn *c);

/*
 * AD: the DC the connection reached (its dsServiceName and invocationId,
 * hex) and its highestCommittedUSN, from the root DSE. 0 or -1 (err).
 */
int sync_ldap_ad_position(sync_conn *c, cs_sync_mark *pos, char *err, size_t errlen);
/* AD: only highestCommittedUSN (one root DSE read: --follow's poll). */
int sync_ldap_ad_usn(sync_conn *c, long long *usn, char *err, size_t errlen);

/* What one read did. */
typedef struct {
    long entries;        /* user entries read */
    long deleted;        /* tombstones read (AD Deleted Objects) */
    long left;           /* entries changed that no longer match the filter */
    int deleted_objects; /* incremental AD: 1 when Deleted Objects could be read */
    long long pins_usn;  /* AD: uSNChanged of the pins' object (in: last seen) */
} sync_read_info;

/*
 * Read the directory into snap: in full when since is 0, else (AD) only
 * the entries whose uSNChanged is above since, the users deleted since
 * then (Deleted Objects, where the bind may read it) and the pins' object
 * only when it changed (cs_sync_snapshot_keep_pins otherwise). 0 on
 * success; -1 with one line in err (a search that did not end in success,
 * a referral, malformed entries, a lost connection): then snap must be
 * thrown away.
 */
int sync_ldap_read(sync_conn *c, long long since, cs_sync_snapshot *snap, sync_read_info *info,
                   sync_note_fn note, void *arg, char *err, size_t errlen);

#endif
