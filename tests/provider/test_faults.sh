#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Faults while serving, under an unmodified `openssl s_server` that runs as
# an unprivileged user (nobody) when the test runs as root, as servers do
# after dropping privileges: the database missing at start, deleted, made
# unreadable, truncated, overwritten with random bytes, replaced by a text
# file, stamped with a newer schema. Each: every client rejected with
# store-unavailable, one log line per cause under a flood of handshakes,
# the server keeps serving, and it recovers by itself when a good database
# is back. Then: atomic replacement by rename, a long write transaction,
# and the warning for a database or directory writable by others.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init faults

chmod 755 "$work" # the server user must reach the PKI and the database
dbdir=$work/store stage=$work/stage
db=$dbdir/certstore.db
mkdir -m 755 "$dbdir" "$stage"

# The server's user: nobody when we are root, so that chmod 000 means something.
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null || { echo "FAIL: setpriv (util-linux) missing" >&2; exit 1; }
    TP_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi

"$MKPKI_BIN" "$pki" >/dev/null
chmod -R a+rX "$pki"
: >"$log"
[ "${#TP_AS[@]}" -eq 0 ] || chown nobody "$log"

# build_db FILE ACCOUNT [LEAF...]: a fresh store at FILE pinning ca-a and
# mapping each LEAF to ACCOUNT, built with the CLI and checkpointed.
build_db() {
    local file=$1 account=$2 leaf
    shift 2
    rm -f "$file" "$file-wal" "$file-shm"
    "$CERTSTORE_BIN" --db "$file" init >/dev/null
    "$CERTSTORE_BIN" --db "$file" pin add "$pki/ca-a.pem" >/dev/null
    "$CERTSTORE_BIN" --db "$file" account add "$account" >/dev/null
    for leaf in "$@"; do
        "$CERTSTORE_BIN" --db "$file" map add "$pki/$leaf.pem" --account "$account" >/dev/null
    done
    chmod 644 "$file"
}

# install_good_db: the deploy-tool way, a file built elsewhere renamed over
# the live one. The staged file is converted to rollback-journal mode so a
# reader that may not create -wal/-shm can open it without them.
install_good_db() {
    build_db "$stage/good.db" alice alice
    sqlite3 "$stage/good.db" 'PRAGMA journal_mode = DELETE' >/dev/null
    rm -f "$db-wal" "$db-shm"
    mv "$stage/good.db" "$db"
}

tp_openssl_cnf "$work/openssl.cnf" 'busy_timeout_ms = 3000'
chmod 644 "$work/openssl.cnf"
start_server() { TP_SERVER_SECONDS=280 tp_start_s_server "$work/openssl.cnf"; }

# handshake NAME: 0 if the server accepted NAME's certificate. TLS 1.2, so
# the server's verdict comes before the client's handshake completes: no
# probe to wait for, so the floods below stay quick (these expect_* replace
# common.sh's).
handshake() {
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_2 \
        -CAfile "$pki/root.pem" -cert "$pki/$1.pem" -key "$pki/$1.key" \
        -cert_chain "$pki/$1-chain.pem" </dev/null >"$work/client.out" 2>&1
}
expect_accepted() {
    handshake "$1" || { cat "$work/client.out" >&2; fail "$2: $1 was rejected"; }
}
expect_rejected() {
    ! handshake "$1" || fail "$2: $1 was accepted"
}
server_alive() {
    kill -0 "$server_pid" 2>/dev/null || fail "$1: s_server died"
}
log_count() { grep -c -- "$1" "$log" || true; }

# fault_case NAME: the fault is in place; check the rejections, the log under a
# flood, then put a good database back and check the recovery.
fault_case() {
    local name=$1 before lines i
    before=$(wc -l <"$log")
    expect_rejected alice "$name"
    for i in $(seq 1 50); do
        handshake alice && fail "$name: flood handshake $i accepted"
    done
    expect_rejected bob "$name"
    server_alive "$name"
    lines=$(tail -n +"$((before + 1))" "$log" | grep -c 'result=reject reason=store-unavailable' || true)
    if [ "$lines" -lt 1 ] || [ "$lines" -gt 3 ]; then
        tail -n +"$((before + 1))" "$log" >&2
        fail "$name: $lines store-unavailable lines for 52 handshakes (want 1..3)"
    fi
    echo "$name: $(tail -n +"$((before + 1))" "$log" |
        sed -n 's/.*reason=store-unavailable.*detail="\(.*\)"$/\1/p' | head -n 1)"
    install_good_db
    expect_accepted alice "$name, after recovery"
    tail -n +"$((before + 1))" "$log" | grep -q 'similar messages suppressed (reason=store-unavailable' ||
        fail "$name: no suppressed-count line after recovery"
    server_alive "$name"
}

# ---- missing at start ---------------------------------------------------------
start_server
grep -q 'store-unavailable' "$log" || fail "missing at start: no notice at start"
fault_case "missing at start"

# ---- deleted while serving ----------------------------------------------------
expect_accepted alice "before deletion"
rm -f "$db" "$db-wal" "$db-shm"
fault_case "deleted while serving"

# ---- unreadable (needs an unprivileged server) ----------------------------------
if [ "${#TP_AS[@]}" -ne 0 ]; then
    expect_accepted alice "before chmod 000"
    chmod 000 "$db"
    fault_case "chmod 000"
else
    echo "SKIP: chmod 000 needs root to run the server as nobody"
fi

# ---- truncated ------------------------------------------------------------------
expect_accepted alice "before truncation"
truncate -s 4096 "$db"
fault_case "truncated"

# ---- random bytes over its pages (header kept) -----------------------------------
expect_accepted alice "before overwrite"
size=$(stat -c %s "$db")
head -c "$((size - 100))" /dev/urandom | dd of="$db" bs=1 seek=100 conv=notrunc status=none
fault_case "random bytes"

# ---- a text file in its place ------------------------------------------------------
expect_accepted alice "before text file"
printf 'this is not a database\n' >"$stage/text"
chmod 644 "$stage/text"
mv "$stage/text" "$db"
fault_case "text file"

# ---- a newer schema, shipped by rename ----------------------------------------------
expect_accepted alice "before newer schema"
build_db "$stage/newer.db" alice alice
sqlite3 "$stage/newer.db" 'PRAGMA user_version = 99; PRAGMA journal_mode = DELETE' >/dev/null
mv "$stage/newer.db" "$db"
fault_case "schema version 99"

# ---- a newer schema, written in place ----------------------------------------------
expect_accepted alice "before in-place newer schema"
sqlite3 "$db" 'PRAGMA user_version = 99' >/dev/null
fault_case "schema version 99 in place"

# ---- atomic replacement by rename ---------------------------------------------------
# The live store is in rollback-journal mode here (install_good_db).
expect_accepted alice "before rename"
expect_rejected bob "before rename"
build_db "$stage/next.db" partner-b bob
[ ! -s "$stage/next.db-wal" ] || fail "rename: the CLI left a non-empty -wal behind"
if [ "${#TP_AS[@]}" -ne 0 ]; then
    # A WAL-mode file shipped alone: a reader that may not create -wal/-shm
    # cannot open it. It must fail closed, never keep the old content.
    cp "$stage/next.db" "$stage/alone.db"
    mv "$stage/alone.db" "$db"
    before=$(wc -l <"$log")
    expect_rejected alice "rename, WAL file without -wal/-shm"
    expect_rejected bob "rename, WAL file without -wal/-shm"
    tail -n +"$((before + 1))" "$log" | grep -q 'reason=store-unavailable' ||
        fail "rename, WAL file without -wal/-shm: not store-unavailable"
    echo "WAL file shipped alone: $(tail -n 1 "$log" | sed -n 's/.*detail="\(.*\)"$/\1/p')"
fi
# A WAL-mode file shipped with its (checkpointed) -wal and -shm, renamed in
# last: the next handshake sees the new content.
mv "$stage/next.db-wal" "$db-wal"
mv "$stage/next.db-shm" "$db-shm"
mv "$stage/next.db" "$db"
expect_accepted bob "rename, WAL file with its -wal/-shm"
grep -q 'result=accept reason=none account="partner-b" subject="CN=bob' "$log" ||
    fail "rename: bob not accepted as partner-b"
expect_rejected alice "rename, WAL file with its -wal/-shm"
# A file in rollback-journal mode needs nothing beside it.
install_good_db
expect_accepted alice "rename, rollback-journal file"
expect_rejected bob "rename, rollback-journal file"
server_alive "rename"

# ---- a writer holding a long write transaction ----------------------------------------
# The CLI writes, so the live file is back in WAL mode with its -wal/-shm.
"$CERTSTORE_BIN" --db "$db" map add "$pki/bob.pem" --account alice >/dev/null
expect_accepted bob "before the long transaction"
fifo=$work/sql.fifo
mkfifo "$fifo"
sqlite3 "$db" <"$fifo" >"$work/sqlite.out" 2>&1 &
holder_pid=$!
tp_track "$holder_pid"
exec 7>"$fifo"
printf 'BEGIN EXCLUSIVE;\nDELETE FROM mappings;\nSELECT count(*) FROM mappings;\n' >&7
for _ in $(seq 1 50); do
    [ -s "$work/sqlite.out" ] && break
    sleep 0.1
done
grep -qx 0 "$work/sqlite.out" || fail "long transaction: the writer did not start"
# A reader that waited on the lock would be rejected after the busy timeout
# (3 s): the acceptance proves it did not wait; the time shows by how much.
slowest=0
timed() {
    local start ms
    start=$(date +%s%N)
    "$@"
    ms=$((($(date +%s%N) - start) / 1000000))
    [ "$ms" -le "$slowest" ] || slowest=$ms
}
for i in $(seq 1 10); do
    timed expect_accepted alice "during the long transaction ($i)"
    timed expect_rejected carol "during the long transaction ($i)"
done
echo "long transaction: slowest handshake ${slowest} ms"
[ "$slowest" -lt 1500 ] || fail "long transaction: a handshake took $slowest ms (busy timeout 3000)"
printf 'ROLLBACK;\n.quit\n' >&7
exec 7>&-
wait "$holder_pid" || true
holder_pid=
expect_accepted bob "after the rollback"

# The CLI mid-import: decided from the last committed state until it commits.
awk 'BEGIN {
    print "kind,key,account"
    for (i = 1; i <= 300000; i++) printf "cert,%064x,bulk\n", i
}' >"$work/big.csv"
"$CERTSTORE_BIN" --db "$db" import --create-accounts "$work/big.csv" >"$work/import.out" 2>&1 &
holder_pid=$!
tp_track "$holder_pid"
slowest=0 during=0
for i in $(seq 1 200); do
    kill -0 "$holder_pid" 2>/dev/null || break
    timed expect_accepted alice "during the import ($i)"
    during=$i
done
wait "$holder_pid" || { cat "$work/import.out" >&2; fail "import failed"; }
holder_pid=
echo "import: $during handshakes during the import, slowest ${slowest} ms"
[ "$during" -ge 1 ] || echo "note: the import finished before the first handshake"
[ "$slowest" -lt 1500 ] || fail "import: a handshake took $slowest ms (busy timeout 3000)"
server_alive "long writers"
tp_stop_s_server

# ---- writable by others -----------------------------------------------------------------
grep -q 'writable by group or others' "$log" && fail "permission warning without cause"
chmod 666 "$db"
chmod 777 "$dbdir"
start_server
expect_accepted alice "group-writable store"
grep -q "warning: $db is writable by group or others" "$log" ||
    fail "no start-up warning for a group/other-writable database"
grep -q "warning: directory $dbdir of the database is writable by group or others" "$log" ||
    fail "no start-up warning for a group/other-writable directory"
tp_stop_s_server
for cmd in stats "pin ls" "map ls"; do
    # shellcheck disable=SC2086 # cmd is two words on purpose
    "$CERTSTORE_BIN" --db "$db" $cmd 2>"$work/cli.err" >/dev/null || fail "CLI $cmd failed"
    grep -q 'warning:.*writable by group or others' "$work/cli.err" ||
        fail "CLI $cmd did not warn about permissions"
done
chmod 644 "$db"
chmod 755 "$dbdir"

tp_finish "faults"
