#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore crl fetch against Python's http.server on 127.0.0.1 serving CRLs
# made by `openssl ca`: a first fetch revokes, a second is a conditional GET
# answered 304, redirects are followed and bounded, file:// works; a 404, a
# response slower than the timeout, an oversized body, a body that is no CRL
# and a CRL of a twin-DN CA each fail with one line and a non-zero exit, keep
# the stored CRL and are recorded for `crl ls`.
#
# Needs CERTSTORE_BIN and MKPKI_BIN (set by ctest).
set -euo pipefail

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}"

work=$(mktemp -d /tmp/certstore-crlfetch-XXXXXX)
httpd_pid=
cleanup() {
    if [ -n "$httpd_pid" ]; then
        kill "$httpd_pid" 2>/dev/null || true
        wait "$httpd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pki=$work/pki db=$work/certstore.db srv=$work/srv
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
cs() { "$CERTSTORE_BIN" --db "$db" "$@"; }

"$MKPKI_BIN" "$pki" >/dev/null
cs init >/dev/null
cs pin add "$pki/ca-a.pem" >/dev/null
cs map add "$pki/alice.pem" --account alice --create-account >/dev/null
pin_a=$(cs pin ls --json | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p')

mkca() {
    local dir=$work/$1 ca=$2
    mkdir -p "$dir"
    : >"$dir/index.txt"
    echo 01 >"$dir/crlnumber"
    printf '[ca]\ndefault_ca = s\n[s]\ndatabase = %s\ncrlnumber = %s\ncertificate = %s\nprivate_key = %s\ndefault_md = sha256\ndefault_crl_days = 7\n' \
        "$dir/index.txt" "$dir/crlnumber" "$pki/$ca.pem" "$pki/$ca.key" >"$dir/ca.cnf"
}
ca() {
    local name=$1
    shift
    openssl ca -config "$work/$name/ca.cnf" -batch "$@" >/dev/null 2>&1
}
mkdir -p "$srv"
mkca a ca-a
mkca twin ca-twin
ca a -revoke "$pki/alice.pem" -crl_reason keyCompromise
ca a -gencrl -out "$srv/current.pem"
ca twin -gencrl -out "$srv/twin.pem"
cp "$pki/alice.pem" "$srv/notacrl.pem"

: >"$work/httpd.out" # before the background job opens it: the wait below reads it at once
python3 "$(dirname "$0")/crl_httpd.py" "$srv" "$work/requests.log" >"$work/httpd.out" 2>&1 &
httpd_pid=$!
port=
for _ in $(seq 1 50); do
    port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/httpd.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/httpd.out" >&2; echo "FAIL: httpd did not start" >&2; exit 1; }
base=http://127.0.0.1:$port

snapshot() { sqlite3 "$db" 'SELECT generation FROM meta; SELECT fp, number FROM crls; SELECT count(*) FROM revoked'; }
# fetch_fails WORDS ARGS...: one line naming WORDS, exit 1, the stored CRL and generation unchanged.
fetch_fails() {
    local words=$1 before rc=0
    shift
    before=$(snapshot)
    cs crl fetch "$@" >"$work/stdout" 2>"$work/stderr" || rc=$?
    [ "$rc" -eq 1 ] || fail "crl fetch $*: exit $rc"
    [ "$(wc -l <"$work/stderr")" -eq 1 ] || { cat "$work/stderr" >&2; fail "crl fetch $*: not one line"; }
    grep -q -- "$words" "$work/stderr" || { cat "$work/stderr" >&2; fail "crl fetch $*: no '$words'"; }
    [ "$before" = "$(snapshot)" ] || fail "crl fetch $*: the store changed"
}
alice_decision() { cs check "$pki/alice-chain.pem" --ca "$pki/root.pem" | head -n 1; }

fetch_fails "no CRL source known" # nothing remembered yet
[ "$(alice_decision)" = "accept account=alice kind=cert mapping=1" ] || fail "alice before: $(alice_decision)"

# First fetch: stored through the checks of crl add; alice is revoked from now on.
cs crl fetch --url "$base/crl/current.pem" >"$work/stdout" || fail "first fetch failed"
grep -q '1 newly revoked' "$work/stdout" || fail "first fetch: $(cat "$work/stdout")"
[ "$(alice_decision)" = "reject revoked" ] || fail "alice after: $(alice_decision)"
cs crl ls >"$work/ls"
grep -q "url=$base/crl/current.pem fetched=.* result=ok: updated" "$work/ls" || fail "crl ls: $(cat "$work/ls")"

# Second fetch from the remembered URL: conditional, 304, nothing written but the note.
gen=$(sqlite3 "$db" 'SELECT generation FROM meta')
cs crl fetch >"$work/stdout" || fail "second fetch failed"
grep -q "^not modified: pin $pin_a" "$work/stdout" || fail "second fetch: $(cat "$work/stdout")"
tail -n 1 "$work/requests.log" | grep -q '^/crl/current.pem 304 "[0-9a-f]*"$' ||
    fail "no conditional GET: $(tail -n 1 "$work/requests.log")"
[ "$gen" = "$(sqlite3 "$db" 'SELECT generation FROM meta')" ] || fail "a 304 bumped the generation"

# A new CRL at the same URL: fetched again (the ETag changed).
ca a -gencrl -out "$srv/current.pem"
cs crl fetch --pin "$pin_a" >"$work/stdout" || fail "third fetch failed"
grep -q '0 newly revoked' "$work/stdout" || fail "third fetch: $(cat "$work/stdout")"
[ "$gen" = "$(sqlite3 "$db" 'SELECT generation FROM meta')" ] || fail "a refresh revoking nothing new bumped"

# Redirects are followed (no validators for another URL: a full GET, the same CRL) and bounded.
cs crl fetch --pin "$pin_a" --url "$base/redirect" >"$work/stdout" || fail "redirect failed"
grep -q '^unchanged' "$work/stdout" || fail "redirect: $(cat "$work/stdout")"
fetch_fails "too many redirects" --pin "$pin_a" --url "$base/loop"

# file:// works too.
ca a -gencrl -out "$work/file.pem"
cs crl fetch --url "file://$work/file.pem" >"$work/stdout" || fail "file:// failed"
grep -q '0 newly revoked' "$work/stdout" || fail "file://: $(cat "$work/stdout")"

# Failures: the stored CRL stays, one line each, the result recorded.
fetch_fails "HTTP status 404" --pin "$pin_a" --url "$base/missing"
cs crl ls | grep -q "result=failed: $base/missing: HTTP status 404" || fail "404 not recorded: $(cs crl ls)"
fetch_fails "timed out after 2 s" --pin "$pin_a" --url "$base/slow" --timeout 2
fetch_fails "larger than 100000 bytes" --pin "$pin_a" --url "$base/big" --max-size 100000
fetch_fails "not a CRL" --pin "$pin_a" --url "$base/crl/notacrl.pem"
fetch_fails "another CA with the same name" --url "$base/crl/twin.pem"
fetch_fails "Protocol" --url "ftp://127.0.0.1:$port/crl/current.pem"
fetch_fails "not newer" --url "$base/crl/current.pem" # older than the file:// one
[ "$(alice_decision)" = "reject revoked" ] || fail "alice after the failures: $(alice_decision)"
# The remembered URL is still the last one that served a stored CRL.
cs crl ls --json | grep -q "\"url\":\"file://$work/file.pem\"" || fail "remembered URL: $(cs crl ls --json)"
rc=0
cs crl fetch --timeout 0 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--timeout 0: exit $rc"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "crl fetch: all outcomes as expected"
