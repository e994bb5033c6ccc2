#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore demo: a generated PKI, a fresh database, and the decisions a
# server would make for a handful of client chains.
#
#   tools/demo.sh [BUILD_DIR]
#
# Builds nothing. Finds the binaries in BUILD_DIR (or $CERTSTORE_BUILD), or
# takes them from $CERTSTORE_BIN and $MKPKI_BIN. Exits non-zero when any
# outcome differs from the expected one.
#
# Each part of the demo is a function named section_*; they run in the
# order listed in SECTIONS at the bottom, sharing $work, $pki and $db.
set -euo pipefail

build=${1:-${CERTSTORE_BUILD:-}}
certstore=${CERTSTORE_BIN:-${build:+$build/tools/certstore}}
mkpki=${MKPKI_BIN:-${build:+$build/tests/common/mkpki}}

if [ -z "$certstore" ] || [ -z "$mkpki" ]; then
    echo "usage: tools/demo.sh BUILD_DIR   (or set CERTSTORE_BIN and MKPKI_BIN)" >&2
    exit 2
fi
for bin in "$certstore" "$mkpki"; do
    if [ ! -x "$bin" ]; then
        echo "demo: $bin not found or not executable (build first)" >&2
        exit 2
    fi
done

work=$(mktemp -d /tmp/certstore-demo-XXXXXX)
cleanup() {
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pki=$work/pki
db=$work/certstore.db
failures=0

if [ -t 1 ]; then
    bold=$'\033[1m' green=$'\033[32m' red=$'\033[31m' plain=$'\033[0m'
else
    bold='' green='' red='' plain=''
fi

say() {
    printf '\n%s== %s%s\n' "$bold" "$*" "$plain"
}

# Show a command, then run it.
run() {
    printf '  $ certstore'
    printf ' %q' "$@"
    printf '\n'
    "$certstore" --db "$db" "$@" | sed 's/^/    /'
}

# expect_check CHAIN EXPECTED WHY: run check and compare the decision line's
# first two words ("accept account=alice" or "reject no-mapping").
expect_check() {
    local chain=$1 expected=$2 why=$3 output decision status=0 want_status=1
    [ "${expected%% *}" = accept ] && want_status=0
    printf '  %s\n  $ certstore check %s --ca roots.pem\n' "$why" "$(basename "$chain")"
    output=$("$certstore" --db "$db" check "$chain" --ca "$pki/roots.pem" 2>&1) || status=$?
    printf '%s\n' "$output" | sed 's/^/    /'
    decision=$(printf '%s\n' "$output" | head -n 1 | awk '{print $1, $2}')
    if [ "$decision" = "$expected" ] && [ "$status" -eq "$want_status" ]; then
        printf '    %sas expected%s\n\n' "$green" "$plain"
    else
        printf '    %sUNEXPECTED: wanted "%s" with exit status %d%s\n\n' "$red" "$expected" \
            "$want_status" "$plain"
        failures=$((failures + 1))
    fi
}

section_setup() {
    say "A test PKI: one root, pinned 'Partner CA A', unpinned 'CA B', a twin of CA A"
    "$mkpki" "$pki" >/dev/null
    echo "  generated in $pki"
    say "A fresh database; pin CA A; map alice's certificate to account 'alice'"
    run init
    run pin add "$pki/ca-a.pem" --note "Partner CA A"
    run map add "$pki/alice.pem" --account alice --create-account --note "demo"
}

section_decisions() {
    say "What a server would decide, rule by rule"
    expect_check "$pki/alice-chain.pem" "accept account=alice" \
        "alice: issued by the pinned CA A and mapped -> accepted"
    expect_check "$pki/carol-chain.pem" "reject issuer-not-pinned" \
        "carol: valid chain to the same root, but through CA B, which is not pinned"
    expect_check "$pki/bob-chain.pem" "reject no-mapping" \
        "bob: issued by CA A, but no mapping for his certificate"
    expect_check "$pki/mallory-chain.pem" "reject issuer-not-pinned" \
        "mallory: issued by a CA with the very same name as CA A, but another key"
    expect_check "$pki/expired-chain.pem" "reject chain-invalid" \
        "expired: OpenSSL itself refuses the chain before the policy runs"
}

section_revocation() {
    say "Remove alice's mapping: the very next decision rejects her"
    run map rm "$pki/alice.pem"
    expect_check "$pki/alice-chain.pem" "reject no-mapping" \
        "alice after 'map rm': no mapping any more"
    say "The change log"
    run log
}

SECTIONS=(section_setup section_decisions section_revocation)

mkdir -p "$pki"
for section in "${SECTIONS[@]}"; do
    "$section"
done

echo
if [ "$failures" -ne 0 ]; then
    printf '%sdemo: %d outcome(s) differed from the expected ones%s\n' "$red" "$failures" "$plain"
    exit 1
fi
printf '%sdemo: every decision was the expected one%s\n' "$green" "$plain"
