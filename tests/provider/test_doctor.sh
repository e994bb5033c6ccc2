#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore doctor against real configurations, a real database and the
# module just built: a good setup passes, and each way a server ends up not
# enforcing is reported on its own line with exit status 1.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init doctor
# Server users must be able to reach the store for the reader checks.
chmod 0755 "$work"

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
cs map add "$pki/alice.pem" --account alice --create-account
chmod 0644 "$db" "$db-wal" "$db-shm"
schema=$("$CERTSTORE_BIN" --db "$db" stats | sed -n 's/^schema-version: //p')
[ -n "$schema" ] || { echo "FAIL: certstore stats shows no schema version" >&2; exit 1; }

# write_config FILE DB [extra lines for the certstore section...]
write_config() { (db=$2 && tp_openssl_cnf "$1" "${@:3}"); }

# doctor NAME ARGS...: runs the doctor; output in $work/NAME.out, status in $rc.
rc=0
doctor() {
    local name=$1
    shift
    rc=0
    timeout 60 "$CERTSTORE_BIN" doctor "$@" >"$work/$name.out" 2>&1 || rc=$?
}
expect_rc() {
    [ "$rc" -eq "$2" ] || { cat "$work/$1.out" >&2; fail "$1: exit $rc, expected $2"; }
}
# expect_line NAME TEXT: a line of the output starts with TEXT.
expect_line() {
    awk -v t="$2" 'index($0, t) == 1 { found = 1 } END { exit !found }' "$work/$1.out" ||
        { cat "$work/$1.out" >&2; fail "$1: no line starting with: $2"; }
}
expect_no_line() {
    ! grep -qF -- "$2" "$work/$1.out" || { cat "$work/$1.out" >&2; fail "$1: unexpected: $2"; }
}

# ---- a good configuration -------------------------------------------------
write_config "$work/good.cnf" "$db"
doctor good --config "$work/good.cnf"
expect_rc good 0
expect_line good "OK   config: $work/good.cnf (--config) read"
expect_line good "OK   provider: certstore "
expect_line good "OK   default-provider: active"
expect_line good "OK   mode: enforce"
expect_line good "OK   database: $db opens read-only, schema version $schema"
expect_line good "OK   store: 1 pins (1 enabled), 1 accounts (1 enabled), 1 mappings (1 enabled)"
expect_line good "OK   permissions: database $db: mode 0644"
expect_line good "OK   hook: active: an unpinned test client was refused (issuer-not-pinned)"
expect_line good "certstore is enforcing with this configuration"
expect_no_line good "FAIL"
if [ "$(id -u)" -eq 0 ] && getent passwd nobody >/dev/null; then
    expect_line good "OK   reader: nobody can read the store"
fi
# The test handshake is a real decision: it is in the configured log.
grep -q 'result=reject reason=issuer-not-pinned .*subject="CN=certstore doctor test client"' \
    "$log" || fail "the doctor's test rejection is not in the decision log"

# The same, found through $OPENSSL_CONF.
rc=0
OPENSSL_CONF=$work/good.cnf timeout 60 "$CERTSTORE_BIN" doctor >"$work/env.out" 2>&1 || rc=$?
expect_rc env 0
expect_line env "OK   config: $work/good.cnf (\$OPENSSL_CONF) read"

# --config wins, and the process's own $OPENSSL_CONF is not loaded beside it
# (a second certstore activation would change the process-wide policy).
write_config "$work/off.cnf" "$db" "mode = off"
rc=0
OPENSSL_CONF=$work/good.cnf timeout 60 "$CERTSTORE_BIN" doctor --config "$work/off.cnf" \
    >"$work/both.out" 2>&1 || rc=$?
expect_rc both 1
expect_line both "OK   config: $work/off.cnf (--config) read"
expect_line both "FAIL hook: not active: an unpinned test client was accepted"

# JSON: one object, the same verdict.
doctor json --config "$work/good.cnf" --json
expect_rc json 0
grep -q '"enforcing":true}$' "$work/json.out" || fail "json: no \"enforcing\":true"
grep -qF '{"level":"ok","check":"hook","message":"active: an unpinned test client was refused' \
    "$work/json.out" || fail "json: no hook row"
if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["enforcing"] is True' \
        "$work/json.out" || fail "json: not valid JSON"
fi

# ---- a real client chain ---------------------------------------------------
doctor alice --config "$work/good.cnf" --chain "$pki/alice-chain.pem" --key "$pki/alice.key" \
    --ca "$pki/root.pem"
expect_rc alice 0
expect_line alice "OK   decision: $pki/alice-chain.pem accepted as account \"alice\""
doctor carol --config "$work/good.cnf" --chain "$pki/carol-chain.pem" --key "$pki/carol.key" \
    --ca "$pki/root.pem"
expect_rc carol 0
expect_line carol "WARN decision: $pki/carol-chain.pem rejected by certstore (issuer-not-pinned)"
doctor bob --config "$work/good.cnf" --chain "$pki/bob-chain.pem" --key "$pki/bob.key" \
    --ca "$pki/root.pem"
expect_line bob "WARN decision: $pki/bob-chain.pem rejected by certstore (no-mapping)"

# ---- no certstore section: nothing is enforced ------------------------------
cat >"$work/plain.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
[default_sect]
activate = 1
EOF
doctor plain --config "$work/plain.cnf"
expect_rc plain 1
expect_line plain "FAIL provider: certstore not loaded"
expect_line plain "FAIL hook: not active: an unpinned test client was accepted"
expect_line plain "certstore is NOT enforcing with this configuration"

# A module path that does not exist: OpenSSL says nothing, the doctor does.
write_config "$work/nomodule.cnf" "$db"
sed -i "s|^module = .*|module = $work/nowhere/certstore.so|" "$work/nomodule.cnf"
doctor nomodule --config "$work/nomodule.cnf"
expect_rc nomodule 1
expect_line nomodule "FAIL provider: certstore not loaded: provider \"certstore\": module $work/nowhere/certstore.so: No such file or directory"

# A configuration file that is not there.
doctor noconfig --config "$work/absent.cnf"
expect_rc noconfig 1
expect_line noconfig "FAIL config: $work/absent.cnf (--config): cannot read: No such file or directory"

# ---- the database is missing: every client rejected, reported -----------------
write_config "$work/nodb.cnf" "$work/absent.db"
doctor nodb --config "$work/nodb.cnf"
expect_rc nodb 1
expect_line nodb "FAIL database: store-unavailable: $work/absent.db"
expect_line nodb "OK   hook: active: an unpinned test client was refused (store-unavailable)"
[ ! -e "$work/absent.db" ] || fail "nodb: the doctor created the database"

# ---- a typo in mode: deny-all, with its cause --------------------------------
write_config "$work/badmode.cnf" "$db" "mode = enforcing"
doctor badmode --config "$work/badmode.cnf"
expect_rc badmode 1
expect_line badmode "FAIL mode: deny-all: every client certificate is rejected: mode must be enforce, audit or off, not \"enforcing\""
expect_line badmode "OK   hook: active: an unpinned test client was refused (config-error)"

# ---- a misspelt key: deny-all, and the doctor names it -------------------------------
write_config "$work/typo.cnf" "$db" "require_stong = yes"
doctor typo --config "$work/typo.cnf"
expect_rc typo 1
expect_line typo "FAIL mode: deny-all: every client certificate is rejected: unknown key \"require_stong\" in section [certstore_sect]"
expect_line typo "OK   hook: active: an unpinned test client was refused (config-error)"
expect_line typo "certstore is NOT enforcing with this configuration"
# The same file through $OPENSSL_CONF, as a server finds it.
rc=0
OPENSSL_CONF=$work/typo.cnf timeout 60 "$CERTSTORE_BIN" doctor >"$work/typoenv.out" 2>&1 || rc=$?
expect_rc typoenv 1
expect_line typoenv "FAIL mode: deny-all: every client certificate is rejected: unknown key \"require_stong\""

# ---- mode = off: loaded but not enforcing ----------------------------------------
write_config "$work/off.cnf" "$db" "mode = off"
doctor off --config "$work/off.cnf"
expect_rc off 1
expect_line off "FAIL mode: off: not enforcing (no hook is installed)"
expect_line off "FAIL hook: not active: an unpinned test client was accepted"

# ---- mode = audit: logs, does not enforce ------------------------------------------
write_config "$work/audit.cnf" "$db" "mode = audit"
doctor audit --config "$work/audit.cnf"
expect_rc audit 1
expect_line audit "FAIL mode: audit: not enforcing"

# ---- a group-writable database: a warning, still enforcing -------------------------
chmod 0664 "$db"
doctor groupw --config "$work/good.cnf"
expect_rc groupw 0
expect_line groupw "WARN permissions: database $db is writable by group (mode 0664)"
chmod 0644 "$db"
chmod 0666 "$db-shm"
doctor shmw --config "$work/good.cnf"
expect_rc shmw 0
expect_line shmw "WARN permissions: file $db-shm is writable by others (mode 0666)"
chmod 0644 "$db-shm"

# ---- --server: the start-up check a server's systemd unit runs ---------------------
# A server whose configuration never mentions certstore is not stopped by it.
doctor srvplain --server nginx --config "$work/plain.cnf"
expect_rc srvplain 0
expect_line srvplain "SKIP server: nginx: $work/plain.cnf (--config) does not mention certstore"
# ... unless it is required to enforce.
doctor srvreq --server nginx --require --config "$work/plain.cnf"
expect_rc srvreq 1
expect_line srvreq "FAIL provider: certstore not loaded"
rc=0
CERTSTORE_REQUIRE=1 timeout 60 "$CERTSTORE_BIN" doctor --server nginx --config "$work/plain.cnf" \
    >"$work/srvreqenv.out" 2>&1 || rc=$?
expect_rc srvreqenv 1
# Every way a certstore configuration would leave the server without policy.
doctor srvnomodule --server haproxy --config "$work/nomodule.cnf"
expect_rc srvnomodule 1
expect_line srvnomodule "FAIL provider: certstore not loaded"
write_config "$work/relmodule.cnf" "$db"
sed -i "s|^module = .*|module = lib/certstore.so|" "$work/relmodule.cnf"
rc=0
(cd / && env -u OPENSSL_MODULES timeout 60 "$CERTSTORE_BIN" doctor --server stunnel4 \
    --config "$work/relmodule.cnf") >"$work/srvrel.out" 2>&1 || rc=$?
expect_rc srvrel 1
expect_line srvrel "FAIL provider: certstore not loaded"
rc=0
OPENSSL_CONF=$work/absent.cnf timeout 60 "$CERTSTORE_BIN" doctor --server apache2 \
    >"$work/srvabsent.out" 2>&1 || rc=$?
expect_rc srvabsent 1
expect_line srvabsent "FAIL config: $work/absent.cnf (\$OPENSSL_CONF): cannot read"
doctor srvtypo --server nginx --config "$work/typo.cnf"
expect_rc srvtypo 1
doctor srvaudit --server nginx --config "$work/audit.cnf"
expect_rc srvaudit 1
doctor srvgood --server nginx --config "$work/good.cnf"
expect_rc srvgood 0
expect_line srvgood "certstore is enforcing with this configuration"

# ---- an unbound ski mapping (a store from before binding): inert, and said so ----
# Written past the CLI, which refuses it; the trigger bumps the generation.
ski=$(openssl x509 -in "$pki/bob.pem" -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' :')
sqlite3 "$db" "INSERT INTO mappings (kind, key, account_id, created)
               VALUES (2, x'$ski', (SELECT id FROM accounts WHERE name = 'alice'), 1)"
doctor unbound --config "$work/good.cnf"
expect_rc unbound 0
expect_line unbound "WARN store: 1 ski/issuer-serial mappings are unbound: they never match; re-add them with --pin"
"$CERTSTORE_BIN" --db "$db" map ls >"$work/unbound-ls.out"
grep -q "unbound: never matches, re-add with --pin" "$work/unbound-ls.out" ||
    fail "map ls does not flag the unbound mapping"
sqlite3 "$db" "DELETE FROM mappings WHERE kind = 2"

# ---- usage ------------------------------------------------------------------------
doctor usage --config "$work/good.cnf" --chain "$pki/alice-chain.pem"
expect_rc usage 2
expect_line usage "certstore: doctor: --chain, --key and --ca go together"
doctor extra --config "$work/good.cnf" stray
expect_rc extra 2
doctor help --help
expect_rc help 0
expect_line help "Usage: certstore doctor"

tp_finish "doctor"
