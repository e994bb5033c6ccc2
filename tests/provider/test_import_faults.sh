#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A 1-million-row import that does not finish: the CLI killed with SIGKILL
# at several points, and a disk that fills up (ulimit -f, with SIGXFSZ
# ignored so writes fail with EFBIG, or left to kill the CLI; and a small
# tmpfs when the test may mount one). Afterwards the database must pass
# PRAGMA integrity_check and hold all of the import or none of it, decide
# as before, and take the next write.
#
# Needs CERTSTORE_BIN and MKPKI_BIN (set by ctest).
set -euo pipefail

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}"

work=$(mktemp -d /tmp/certstore-importfaults-XXXXXX)
import_pid=
tiny_mounted=
cleanup() {
    if [ -n "$import_pid" ]; then
        kill -9 "$import_pid" 2>/dev/null || true
        wait "$import_pid" 2>/dev/null || true
    fi
    [ -z "$tiny_mounted" ] || umount "$work/tiny" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pki=$work/pki csv=$work/big.csv
rows=1000000
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

"$MKPKI_BIN" "$pki" >/dev/null
awk -v n="$rows" 'BEGIN {
    print "kind,key,account"
    for (i = 1; i <= n; i++) printf "cert,%064x,bulk%d\n", i, i % 1000
}' >"$csv"

# base_db FILE: pin ca-a, map alice; one mapping before any import.
base_db() {
    rm -f "$1" "$1-wal" "$1-shm"
    "$CERTSTORE_BIN" --db "$1" init >/dev/null
    "$CERTSTORE_BIN" --db "$1" pin add "$pki/ca-a.pem" >/dev/null
    "$CERTSTORE_BIN" --db "$1" map add "$pki/alice.pem" --account alice --create-account >/dev/null
}

mapping_count() { sqlite3 "$1" 'SELECT count(*) FROM mappings'; }

# intact FILE CASE: integrity ok, all or none of the import, alice still
# decided as before, and the next write goes through.
intact() {
    local file=$1 name=$2 integrity count
    integrity=$(sqlite3 "$file" 'PRAGMA integrity_check' 2>&1)
    [ "$integrity" = ok ] || fail "$name: integrity_check says: $integrity"
    count=$(mapping_count "$file")
    case $count in
    1) echo "$name: none of the import (1 mapping)" ;;
    $((rows + 1))) echo "$name: all of the import ($count mappings)" ;;
    *) fail "$name: $count mappings, neither all nor none of the import" ;;
    esac
    "$CERTSTORE_BIN" --db "$file" check "$pki/alice-chain.pem" --ca "$pki/root.pem" >/dev/null ||
        fail "$name: alice no longer accepted"
    "$CERTSTORE_BIN" --db "$file" map add "$pki/bob.pem" --account bob --create-account \
        >/dev/null 2>&1 || fail "$name: the next write failed"
    [ "$(mapping_count "$file")" -eq $((count + 1)) ] || fail "$name: the next write was lost"
}

# The full import, timed: the reference for "all" and for the kill points.
db=$work/full.db
base_db "$db"
start=$(date +%s%N)
"$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv" >/dev/null
full_ms=$((($(date +%s%N) - start) / 1000000))
[ "$(mapping_count "$db")" -eq $((rows + 1)) ] || fail "the full import did not import every row"
echo "full import of $rows rows: $full_ms ms"

# ---- SIGKILL at 10% and 50% of the import's time, and in its commit -------------------
# The writer keeps the import's pages in its cache until the commit, which
# then writes them all to the -wal: a growing -wal means a commit under way.
kill_import() {
    local name=$1 required=$2 status=0
    if kill -9 "$import_pid" 2>/dev/null; then
        wait "$import_pid" 2>/dev/null || status=$?
        [ "$status" -eq 137 ] || fail "$name: exit status $status, not SIGKILL"
    else
        wait "$import_pid" 2>/dev/null || true
        if [ "$required" = required ]; then
            fail "$name: the import had already finished"
        else
            echo "note: $name: the import finished before the kill"
        fi
    fi
    import_pid=
}
for percent in 10 50; do
    db=$work/killed-$percent.db
    base_db "$db"
    "$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv" >/dev/null 2>&1 &
    import_pid=$!
    sleep "$(awk -v ms="$full_ms" -v p="$percent" 'BEGIN { printf "%.3f", ms * p / 100000 }')"
    kill_import "SIGKILL at $percent%" required
    intact "$db" "SIGKILL at $percent%"
done
db=$work/killed-commit.db
base_db "$db"
"$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv" >/dev/null 2>&1 &
import_pid=$!
for _ in $(seq 1 6000); do
    [ "$(stat -c %s "$db-wal" 2>/dev/null || echo 0)" -lt 4194304 ] || break
    kill -0 "$import_pid" 2>/dev/null || break
    sleep 0.01
done
echo "SIGKILL in the commit: -wal at $(stat -c %s "$db-wal") bytes"
kill_import "SIGKILL in the commit" optional
intact "$db" "SIGKILL in the commit"

# ---- the file size limit: writes fail with EFBIG ------------------------------------
db=$work/efbig.db
base_db "$db"
status=0
(
    trap '' XFSZ
    ulimit -f 8192 # KiB: the import's pages cannot all be written
    exec "$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv"
) >/dev/null 2>"$work/efbig.err" || status=$?
[ "$status" -ne 0 ] || fail "EFBIG: the import claimed success"
grep -q 'certstore: import' "$work/efbig.err" || fail "EFBIG: no error message: $(cat "$work/efbig.err")"
echo "EFBIG: exit $status: $(head -n 1 "$work/efbig.err")"
intact "$db" "EFBIG"

# ---- the file size limit with its default signal: SIGXFSZ kills the CLI ----------------
db=$work/xfsz.db
base_db "$db"
status=0
(
    ulimit -f 8192
    exec "$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv"
) >/dev/null 2>&1 || status=$?
[ "$status" -ne 0 ] || fail "SIGXFSZ: the import claimed success"
echo "SIGXFSZ: exit status $status"
intact "$db" "SIGXFSZ"

# ---- a full file system (tmpfs of 4 MiB), when we may mount one -------------------------
mkdir "$work/tiny"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=4m,mode=755 tmpfs "$work/tiny" 2>/dev/null; then
    tiny_mounted=1
    db=$work/tiny/certstore.db
    base_db "$db"
    status=0
    "$CERTSTORE_BIN" --db "$db" import --create-accounts "$csv" >/dev/null 2>"$work/full.err" || status=$?
    [ "$status" -ne 0 ] || fail "ENOSPC: the import claimed success"
    grep -q 'certstore: import' "$work/full.err" || fail "ENOSPC: no error message"
    echo "ENOSPC: exit $status: $(grep -v warning "$work/full.err" | head -n 1)"
    # Room for the next write: the failed import's -wal may hold pages.
    intact "$db" "ENOSPC"
    umount "$work/tiny"
    tiny_mounted=
else
    echo "SKIP: ENOSPC on tmpfs needs root and permission to mount"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "import faults: all or nothing, every time"
