#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The provider under an unmodified `openssl s_server`, configured through
# OPENSSL_CONF only: accept, each rejection, a live removal, and sessions
# (TLS 1.2 and 1.3) that try to resume after the removal.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}" "${CERTSTORE_MODULE_DIR:?}"

work=$(mktemp -d /tmp/certstore-sserver-XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pki=$work/pki db=$work/certstore.db log=$work/decisions.log
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
cs() { "$CERTSTORE_BIN" --db "$db" "$@" >/dev/null; }

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
cs map add "$pki/alice.pem" --account alice --create-account

cat >"$work/openssl.cnf" <<EOF
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

OPENSSL_CONF=$work/openssl.cnf timeout 240 openssl s_server -accept 127.0.0.1:0 \
    -cert "$pki/server.pem" -key "$pki/server.key" -CAfile "$pki/root.pem" -Verify 3 \
    -rev >"$work/server.out" 2>&1 &
server_pid=$!
port=
for _ in $(seq 1 50); do
    port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/server.out" >&2; echo "FAIL: s_server did not start" >&2; exit 1; }

# client NAME OUTFILE [s_client options...]: one connection; the output is kept.
client() {
    local name=$1 out=$2 chain_opt=()
    shift 2
    [ ! -f "$pki/$name-chain.pem" ] || chain_opt=(-cert_chain "$pki/$name-chain.pem")
    (printf 'certstore-probe\n'; sleep 1) |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$pki/root.pem" -cert "$pki/$name.pem" -key "$pki/$name.key" \
            ${chain_opt[@]+"${chain_opt[@]}"} "$@" >"$out" 2>&1 || true
}
data_flowed() { grep -q 'eborp-erotstrec' "$1"; }
reused() { grep -q '^Reused' "$1"; }

expect_accepted() {
    client "$1" "$work/out" "${@:2}"
    data_flowed "$work/out" || { cat "$work/out" >&2; fail "$1 was not accepted"; }
    grep -q 'Verify return code: 0 (ok)' "$work/out" || fail "$1: server chain not verified"
}
expect_rejected() {
    client "$1" "$work/out" "${@:2}"
    ! data_flowed "$work/out" || fail "$1 was accepted"
}
expect_log() {
    grep -q "$1" "$log" || { cat "$log" >&2; fail "log lacks: $1"; }
}

# Accepted, with sessions saved for the resumption checks below.
expect_accepted alice -tls1_2 -sess_out "$work/sess12"
expect_accepted alice -tls1_3 -sess_out "$work/sess13"
expect_log 'result=accept reason=none account="alice" subject="CN=alice'
expect_log 'peer=127.0.0.1:'

# Resumption works while nothing narrowed.
client alice "$work/out" -tls1_2 -sess_in "$work/sess12"
reused "$work/out" && data_flowed "$work/out" || fail "TLS 1.2 session did not resume"
client alice "$work/out" -tls1_3 -sess_in "$work/sess13"
reused "$work/out" && data_flowed "$work/out" || fail "TLS 1.3 session did not resume"

expect_rejected carol
expect_log 'result=reject reason=issuer-not-pinned account="" subject="CN=carol'
expect_rejected bob
expect_log 'result=reject reason=no-mapping account="" subject="CN=bob'
expect_rejected direct
expect_rejected mallory

# Live removal: the next connection, and every saved session, is refused.
cs map rm "$pki/alice.pem"
expect_rejected alice
expect_log 'result=reject reason=no-mapping account="" subject="CN=alice'
client alice "$work/out" -tls1_2 -sess_in "$work/sess12"
! reused "$work/out" || fail "TLS 1.2 session resumed after the mapping was removed"
! data_flowed "$work/out" || fail "TLS 1.2 resumption after removal was accepted"
client alice "$work/out" -tls1_3 -sess_in "$work/sess13"
! reused "$work/out" || fail "TLS 1.3 session resumed after the mapping was removed"
! data_flowed "$work/out" || fail "TLS 1.3 resumption after removal was accepted"

[ "$(grep -c 'result=reject' "$log")" -ge 7 ] || { cat "$log" >&2; fail "missing reject lines"; }
kill -0 "$server_pid" 2>/dev/null || fail "s_server died"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "s_server: all outcomes as expected"
