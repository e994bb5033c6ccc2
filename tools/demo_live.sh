#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore live demo: an unmodified `openssl s_server` enforces the store
# through openssl.cnf alone, and a mapping removed with the CLI is refused on
# the very next connection, without restarting the server.
#
#   tools/demo_live.sh [BUILD_DIR]
#
# Builds nothing. Finds the binaries and the module in BUILD_DIR (or
# $CERTSTORE_BUILD), or takes them from $CERTSTORE_BIN, $MKPKI_BIN and
# $CERTSTORE_MODULE_DIR. Everything happens in a temp dir on 127.0.0.1; the
# server is bounded by a timeout and killed on exit. Exits non-zero when any
# outcome differs from the expected one.
set -euo pipefail

build=${1:-${CERTSTORE_BUILD:-}}
certstore=${CERTSTORE_BIN:-${build:+$build/tools/certstore}}
mkpki=${MKPKI_BIN:-${build:+$build/tests/common/mkpki}}
module_dir=${CERTSTORE_MODULE_DIR:-${build:+$build/provider}}

if [ -z "$certstore" ] || [ -z "$mkpki" ] || [ -z "$module_dir" ]; then
    echo "usage: tools/demo_live.sh BUILD_DIR" \
        "(or set CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR)" >&2
    exit 2
fi
for file in "$certstore" "$mkpki"; do
    [ -x "$file" ] || { echo "demo_live: $file not found (build first)" >&2; exit 2; }
done
[ -f "$module_dir/certstore.so" ] ||
    { echo "demo_live: $module_dir/certstore.so not found (build first)" >&2; exit 2; }

work=$(mktemp -d /tmp/certstore-live-XXXXXX)
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

pki=$work/pki
db=$work/certstore.db
log=$work/decisions.log
failures=0

if [ -t 1 ]; then
    bold=$'\033[1m' green=$'\033[32m' red=$'\033[31m' plain=$'\033[0m'
else
    bold='' green='' red='' plain=''
fi

say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
run() {
    printf '  $ certstore %s\n' "$*"
    "$certstore" --db "$db" "$@" | sed 's/^/    /'
}

# connect NAME: one TLS connection as client NAME; prints "accepted" when the
# server echoed our line back (reversed), "rejected" otherwise.
connect() {
    local name=$1 out chain_opt=()
    [ ! -f "$pki/$name-chain.pem" ] || chain_opt=(-cert_chain "$pki/$name-chain.pem")
    out=$( (printf 'certstore-probe\n'; sleep 1) |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$pki/root.pem" -cert "$pki/$name.pem" -key "$pki/$name.key" \
            ${chain_opt[@]+"${chain_opt[@]}"} -quiet 2>&1) || true
    if printf '%s' "$out" | grep -q 'eborp-erotstrec'; then
        echo accepted
    else
        echo rejected
    fi
}

# expect NAME OUTCOME WHY
expect() {
    local name=$1 want=$2 why=$3 got
    got=$(connect "$name")
    if [ "$got" = "$want" ]; then
        printf '  %s%-6s %s%s  (%s)\n' "$green" "$name" "$got" "$plain" "$why"
    else
        printf '  %s%-6s %s, expected %s%s  (%s)\n' "$red" "$name" "$got" "$want" "$plain" "$why"
        failures=$((failures + 1))
    fi
    local line
    line=$(grep "subject=\"[^\"]*CN=$name[,\"]" "$log" 2>/dev/null | tail -n 1 || true)
    [ -z "$line" ] || printf '         log: %s\n' "${line#*certstore: }"
}

say "A test PKI and a store: Partner CA A pinned, alice mapped"
"$mkpki" "$pki" >/dev/null
run init
run pin add "$pki/ca-a.pem" --note "Partner CA A"
run map add "$pki/alice.pem" --account alice --create-account

say "openssl s_server under the certstore provider (openssl.cnf only)"
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
module = $module_dir/certstore.so
activate = 1
db = $db
log = $log
EOF
sed 's/^/    /' "$work/openssl.cnf"
OPENSSL_CONF=$work/openssl.cnf timeout 120 openssl s_server -accept 127.0.0.1:0 \
    -cert "$pki/server.pem" -key "$pki/server.key" -CAfile "$pki/root.pem" -Verify 3 \
    -rev >"$work/server.out" 2>&1 &
server_pid=$!
port=
for _ in $(seq 1 50); do
    port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "demo_live: s_server did not start:" >&2
    cat "$work/server.out" >&2
    exit 1
fi
echo "  listening on 127.0.0.1:$port (pid $server_pid)"

say "Clients connect"
expect alice accepted "pinned CA, mapped to account alice"
expect carol rejected "valid chain, but its CA (Partner CA B) is not pinned"
expect bob rejected "pinned CA, but no mapping"

say "Remove alice's mapping while the server runs"
run map rm "$pki/alice.pem"
expect alice rejected "mapping removed: refused on the next connection, no reload"

if [ "$failures" -ne 0 ]; then
    printf '\n%s%d unexpected outcome(s)%s\n' "$red" "$failures" "$plain"
    exit 1
fi
printf '\n%sAll outcomes as expected.%s\n' "$green" "$plain"
