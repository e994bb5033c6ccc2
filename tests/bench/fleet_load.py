#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Add every entry of an LDIF file to a stopped Samba AD DC in one transaction.

Usage: fleet_load.py SMB_CONF LDIF

The fleet benchmark (tests/bench/fleet.sh) fills a freshly provisioned DC
with tens of thousands of users this way: through Samba's own Python
bindings (Debian python3-samba, which samba-tool itself runs on), so every
DSDB module runs as it does for an LDAP add (SIDs, RIDs, defaults, schema
checks), but without one LDAP round trip and one transaction per user
(an ldapadd of 1,000 users over LDAPS takes about 40 s; this, about 2 s).
Run it with the interpreter named on samba-tool's first line.
"""
import sys

from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: fleet_load.py SMB_CONF LDIF\n")
        return 2
    lp = LoadParm()
    lp.load(sys.argv[1])
    db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
    with open(sys.argv[2], encoding="utf-8") as f:
        ldif = f.read()
    db.transaction_start()
    try:
        db.add_ldif(ldif)
    except Exception:
        db.transaction_cancel()
        raise
    db.transaction_commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
