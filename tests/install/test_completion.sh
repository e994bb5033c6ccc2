#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bash completion against the built CLI: commands, subcommands, options
# and option values from the CLI's help, fingerprints and account names
# from a real database.
#
#   test_completion.sh CERTSTORE_BIN MKPKI_BIN COMPLETION_FILE
set -uo pipefail

bin=$(readlink -f "${1:?usage: test_completion.sh CERTSTORE_BIN MKPKI_BIN COMPLETION_FILE}")
mkpki=${2:?}
completion=${3:?}

WORK=$(mktemp -d /tmp/certstore-compl-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# The completion resolves the CLI by its first word, as typed.
mkdir "$WORK/bin"
ln -s "$bin" "$WORK/bin/certstore"
PATH=$WORK/bin:$PATH
# shellcheck source=/dev/null
. "$completion"

db=$WORK/db
"$mkpki" "$WORK/pki" >/dev/null || { echo "Bail out! mkpki failed"; exit 1; }
if ! { certstore --db "$db" init &&
    certstore --db "$db" pin add "$WORK/pki/ca-a.pem" &&
    certstore --db "$db" map add "$WORK/pki/alice.pem" --account alice --create-account; } \
    >/dev/null; then
    echo "Bail out! database setup failed"
    exit 1
fi
fp=$(certstore --db "$db" pin ls --json | grep -o '"fingerprint":"[0-9a-f]*"' | cut -d'"' -f4)

fails=0
n=0

# expect "WANTED WORDS" WORDS... : complete the last word; every wanted word
# must be offered.
expect() {
    local wanted=$1 w
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _certstore
    n=$((n + 1))
    for w in $wanted; do
        if ! printf '%s\n' "${COMPREPLY[@]}" | grep -qxF -- "$w"; then
            printf 'not ok %d - [%s] offers %s (got: %s)\n' "$n" "$*" "$w" "${COMPREPLY[*]}"
            fails=$((fails + 1))
            return
        fi
    done
    printf 'ok %d - [%s] offers %s\n' "$n" "$*" "$wanted"
}

# expect_only "WORDS" WORDS...: exactly these, in any order.
expect_only() {
    local wanted=$1 got
    shift
    expect "$wanted" "$@"
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')
    if [ "$got" != "$(tr -s ' ' '\n' <<<"$wanted" | grep -v '^$' | sort | tr '\n' ' ')" ]; then
        printf 'not ok %d - [%s] offers exactly %s (got: %s)\n' "$n" "$*" "$wanted" "$got"
        fails=$((fails + 1))
    fi
}

all_commands=$(certstore --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }' | tr '\n' ' ')
expect_only "$all_commands" certstore ""
expect "pin" certstore p
expect "--db --help --version" certstore --
expect_only "add rm disable enable ls revocation --help" certstore pin ""
expect_only "add ls rm enable disable --help" certstore rule ""
expect "--all --kind" certstore map rm x.pem --
expect "--commands" certstore --
expect "--account --kind --pin --not-before --not-after --note --create-account" \
    certstore map add x.pem --
expect_only "cert issuer-serial ski spki" certstore map add x.pem --kind ""
expect_only "csv json haproxy-map nginx-map" certstore export --format ""
expect_only "$fp" certstore --db "$db" pin rm ""
expect_only "$fp" certstore --db "$db" map add x.pem --account alice --pin ""
expect_only "alice" certstore --db "$db" map add x.pem --account ""
expect_only "alice" certstore --db="$db" account disable ""
expect "$WORK/pki/alice.pem" certstore check "$WORK/pki/ali"
expect_only "refresh ls --help" certstore ocsp ""
expect "--pin --url --timeout --json" certstore ocsp refresh --
expect_only "$fp" certstore --db "$db" ocsp refresh --pin ""
expect_only "$fp" certstore --db "$db" crl rm ""

echo "1..$n"
[ "$fails" -eq 0 ]
