#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Fill a stopped, freshly provisioned Samba AD DC for the fleet benchmark.

Usage: fleet_load.py SMB_CONF USERS ISSUER_DN CA_DER

Adds the forest's NTAuth object holding the CA certificate CA_DER (as
certutil -dspublish would) and USERS users u000001, u000002, ... under
CN=Users, each a normal account that needs no password (none is set) with
one altSecurityIdentities value X509:<I>ISSUER_DN<SR>serial (serial least
significant byte first, as AD stores it; unique per user).

It goes through Samba's own Python bindings (Debian python3-samba, which
samba-tool itself runs on), so every DSDB module runs as for an LDAP add
(SIDs, RIDs, defaults, schema checks), without an LDAP round trip per user:
an ldapadd of 1,000 users over LDAPS took about 40 s. Adds are committed
500 at a time: Samba's cost per add grows with the entries already in its
index lists, and within one long transaction it grows about three times as
fast. Run it with the interpreter named on samba-tool's first line.
"""
import sys
import time

from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

CHUNK = 500


def main():
    if len(sys.argv) != 5:
        sys.stderr.write("usage: fleet_load.py SMB_CONF USERS ISSUER_DN CA_DER\n")
        return 2
    conf, users, issuer, ca_der = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    lp = LoadParm()
    lp.load(conf)
    db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
    base = str(db.domain_dn())
    with open(ca_der, "rb") as f:
        der = f.read()
    db.add({"dn": "CN=NTAuthCertificates,CN=Public Key Services,CN=Services,"
                  "CN=Configuration," + base,
            "objectClass": "certificationAuthority",
            "cn": "NTAuthCertificates",
            "cACertificate": [der],
            "authorityRevocationList": [b"\0"],
            "certificateRevocationList": [b"\0"]})
    start = time.monotonic()
    i = 1
    while i <= users:
        db.transaction_start()
        try:
            for n in range(i, min(i + CHUNK, users + 1)):
                serial = "%02x%02x%02x10" % (n % 256, n // 256 % 256, n // 65536 % 256)
                db.add({"dn": "CN=u%06d,CN=Users,%s" % (n, base),
                        "objectClass": "user",
                        "sAMAccountName": "u%06d" % n,
                        "userAccountControl": "544",
                        "altSecurityIdentities": "X509:<I>%s<SR>%s" % (issuer, serial)})
        except Exception:
            db.transaction_cancel()
            raise
        db.transaction_commit()
        i += CHUNK
        if (i - 1) % 5000 == 0 or i > users:
            sys.stderr.write("fleet_load: %d users, %.0f s\n"
                             % (min(i - 1, users), time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
