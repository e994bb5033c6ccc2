#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Many-to-one rules enforced by the provider under an unmodified
# `openssl s_server`: a rule accepts, a deny rule beats a later allow, a
# rule added while the server runs is in force at the next handshake, and
# require_strong refuses rule acceptances (enforce) or logs would-reject
# (audit) while one-to-one mappings still pass.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}" "${CERTSTORE_MODULE_DIR:?}"

work=$(mktemp -d /tmp/certstore-rules-XXXXXX)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pki=$work/pki db=$work/certstore.db
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
cs() { "$CERTSTORE_BIN" --db "$db" "$@" >/dev/null; }

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
fp=$(openssl x509 -in "$pki/ca-a.pem" -outform DER | sha256sum | cut -d' ' -f1)

# start_server NAME [extra openssl.cnf lines...]: s_server with its own log.
start_server() {
    local name=$1 port_found=
    shift
    log=$work/$name.log
    cat >"$work/$name.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
certstore = certstore_sect
[default_sect]
activate = 1
[certstore_sect]
module = $CERTSTORE_MODULE_DIR/certstore.so
activate = 1
db = $db
log = $log
EOF
    printf '%s\n' "$@" >>"$work/$name.cnf"
    OPENSSL_CONF=$work/$name.cnf timeout 120 openssl s_server -accept 127.0.0.1:0 \
        -cert "$pki/server.pem" -key "$pki/server.key" -CAfile "$pki/root.pem" -Verify 3 \
        -rev >"$work/$name.out" 2>&1 &
    server_pid=$!
    port=
    for _ in $(seq 1 50); do
        port_found=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$work/$name.out" | head -n 1)
        [ -n "$port_found" ] && break
        sleep 0.1
    done
    [ -n "$port_found" ] || {
        cat "$work/$name.out" >&2
        echo "FAIL: s_server ($name) did not start" >&2
        exit 1
    }
    port=$port_found
}

# client NAME: one connection; its output in $work/out.
client() {
    (printf 'certstore-probe\n'; sleep 1) |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$pki/root.pem" -cert "$pki/$1.pem" -key "$pki/$1.key" \
            -cert_chain "$pki/$1-chain.pem" >"$work/out" 2>&1 || true
}
data_flowed() { grep -q 'eborp-erotstrec' "$work/out"; }
expect_accepted() {
    client "$1"
    data_flowed || { cat "$work/out" >&2; fail "$1 was not accepted ($2)"; }
}
expect_rejected() {
    client "$1"
    ! data_flowed || fail "$1 was accepted ($2)"
}
expect_log() {
    grep -q "$1" "$log" || { cat "$log" >&2; fail "log lacks: $1"; }
}

# ---- enforce: rules decide ---------------------------------------------------
start_server enforce
expect_rejected alice "no rule yet"
expect_log 'result=reject reason=no-mapping account="" subject="CN=alice,O=certstore tests'

# Added while the server runs: in force at the next handshake.
cs rule add --pin "$fp" --account partners --create-account --subject 'O=certstore tests,CN=*'
expect_accepted alice "allow rule"
expect_log 'result=accept reason=none account="partners" subject="CN=alice,O=certstore tests'
expect_log 'detail="rule 1"'
expect_accepted bob "allow rule"

# A deny with a lower priority number is tried first and beats the allow.
cs rule add --pin "$fp" --deny --priority 10 --subject 'CN=bob'
expect_rejected bob "deny rule"
expect_log 'result=reject reason=denied-by-rule account="" subject="CN=bob,O=certstore tests'
expect_accepted alice "deny is for bob only"

# A one-to-one mapping decides before any rule, the deny included.
cs map add "$pki/bob.pem" --account bob --create-account
expect_accepted bob "one-to-one mapping before rules"
expect_log 'result=accept reason=none account="bob" subject="CN=bob,O=certstore tests'

# DN injection: a subject pattern never matches across attributes.
cs rule disable 1
expect_rejected alice "allow rule disabled"
cs rule add --pin "$fp" --account partners --subject 'CN=certstore tests'
expect_rejected alice "O value does not satisfy CN"
cs rule enable 1
stop_server

# ---- enforce + require_strong ---------------------------------------------------
start_server strong 'require_strong = yes'
expect_rejected alice "weak under require_strong"
expect_log 'result=reject reason=weak-mapping-refused account="" subject="CN=alice,O=certstore tests'
expect_log 'detail="rule 1 maps it to account partners"'
expect_accepted bob "strong mapping under require_strong"
stop_server

# ---- audit + require_strong: Windows' compatibility mode ---------------------------
start_server audit 'mode = audit' 'require_strong = yes'
expect_accepted alice "audit lets it through"
expect_log 'result=would-reject reason=weak-mapping-refused account="" subject="CN=alice,O=certstore tests'
expect_log 'mode=audit'
stop_server

# ---- a typo in require_strong denies everyone -------------------------------------
start_server typo 'require_strong = maybe'
expect_rejected bob "config error"
expect_log 'reason=config-error'
stop_server

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "rules under s_server: all outcomes as expected"
