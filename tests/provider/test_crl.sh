#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Revocation, live: CRLs made by `openssl ca -revoke` and `-gencrl` for the
# pinned CA, stored with `certstore crl add` while an unmodified
# `openssl s_server` runs under the provider. The next handshake of a
# revoked client is rejected `revoked` with no reload, and the sessions it
# saved before do not resume; a client not revoked keeps resuming across a
# refresh that revokes nothing new. Every bad CRL gets one line, a non-zero
# exit and leaves the store as it was. soft and hard on a stale CRL.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init crl

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
cs map add "$pki/alice.pem" --account alice --create-account
cs map add "$pki/bob.pem" --account bob --create-account
pin_a=$("$CERTSTORE_BIN" --db "$db" pin ls --json | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p')

# mkca NAME CA [extra ca_sect lines]: an `openssl ca` set-up signing with pki/CA.
mkca() {
    local dir=$work/$1 ca=$2
    mkdir -p "$dir"
    : >"$dir/index.txt"
    echo 01 >"$dir/crlnumber"
    cat >"$dir/ca.cnf" <<EOF
[ca]
default_ca = ca_sect
[ca_sect]
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $pki/$ca.pem
private_key = $pki/$ca.key
default_md = sha256
default_crl_days = 7
EOF
}
ca() {
    local name=$1
    shift
    openssl ca -config "$work/$name/ca.cnf" -batch "$@" >/dev/null 2>&1
}

mkca a ca-a
mkca twin ca-twin
mkca b ca-b
ca a -gencrl -out "$work/empty.pem"

tp_openssl_cnf "$work/openssl.cnf"
tp_start_s_server "$work/openssl.cnf"

snapshot() {
    sqlite3 "$db" 'SELECT generation FROM meta; SELECT * FROM crls; SELECT count(*) FROM revoked;
                   SELECT revocation, revocation_grace FROM pins'
}
# bad WORDS ARGS...: `certstore ARGS` fails with one line naming WORDS; the store unchanged.
bad() {
    local words=$1 before rc=0
    shift
    before=$(snapshot)
    "$CERTSTORE_BIN" --db "$db" "$@" >"$work/stdout" 2>"$work/stderr" || rc=$?
    [ "$rc" -ne 0 ] || fail "$* succeeded"
    [ "$(grep -vc '^Try ' "$work/stderr")" -eq 1 ] || { cat "$work/stderr" >&2; fail "$*: not one line"; }
    grep -q -- "$words" "$work/stderr" || { cat "$work/stderr" >&2; fail "$*: no '$words'"; }
    [ "$before" = "$(snapshot)" ] || fail "$*: the store changed"
}

# ---- bad input: one line, non-zero exit, the store unchanged ------------------------
# refused FILE WORDS...: `crl add FILE` fails with one line containing WORDS.
refused() {
    local file=$1 words=$2 before rc=0
    shift 2
    before=$(snapshot)
    "$CERTSTORE_BIN" --db "$db" crl add "$file" "$@" >"$work/stdout" 2>"$work/stderr" || rc=$?
    [ "$rc" -ne 0 ] || fail "crl add $(basename "$file") succeeded"
    [ "$(wc -l <"$work/stderr")" -eq 1 ] || { cat "$work/stderr" >&2; fail "$(basename "$file"): not one line"; }
    grep -q "$words" "$work/stderr" || { cat "$work/stderr" >&2; fail "$(basename "$file"): no '$words'"; }
    [ ! -s "$work/stdout" ] || fail "$(basename "$file"): printed on stdout"
    [ "$before" = "$(snapshot)" ] || fail "$(basename "$file"): the store changed"
}

ca twin -gencrl -out "$work/twin.pem"
refused "$work/twin.pem" "another CA with the same name"
ca b -gencrl -out "$work/unpinned.pem"
refused "$work/unpinned.pem" "no pinned CA issued this CRL"
head -c 300 "$work/empty.pem" >"$work/truncated.pem"
refused "$work/truncated.pem" "malformed PEM CRL"
printf 'not a crl at all\n' >"$work/garbage.der"
refused "$work/garbage.der" "not a CRL"
: >"$work/empty-file"
refused "$work/empty-file" "empty file"
refused "$work/no-such-file" "No such file"
refused "$pki/alice.pem" "not a CRL"
openssl crl -in "$work/empty.pem" -outform DER -out "$work/empty.der"
cat "$work/empty.der" "$work/empty.der" >"$work/doubled.der"
refused "$work/doubled.der" "trailing data"
# A delta CRL (openssl ca writes one as an arbitrary extension, 2.5.29.27 deltaCRLIndicator).
cat >>"$work/a/ca.cnf" <<EOF
[delta_ext]
2.5.29.27 = critical,ASN1:INTEGER:1
EOF
ca a -gencrl -crlexts delta_ext -out "$work/delta.pem"
refused "$work/delta.pem" "delta CRL"
bad "not a SHA-256 fingerprint" crl add --pin nothex "$work/empty.pem"

# ---- a live revocation ------------------------------------------------------------------
"$CERTSTORE_BIN" --db "$db" crl add "$work/empty.pem" >"$work/stdout" || fail "empty CRL refused"
grep -q '0 entries' "$work/stdout" || fail "empty CRL: $(cat "$work/stdout")"
expect_accepted alice "empty CRL" -tls1_2 -sess_out "$work/alice12"
expect_accepted alice "empty CRL" -tls1_3 -sess_out "$work/alice13"
expect_accepted bob "empty CRL" -tls1_2 -sess_out "$work/bob12"
expect_accepted bob "empty CRL" -tls1_3 -sess_out "$work/bob13"
"$CERTSTORE_BIN" --db "$db" check "$pki/alice-chain.pem" --ca "$pki/root.pem" >"$work/check" ||
    fail "check rejected alice"
grep -q '^revocation: good' "$work/check" || fail "check: $(cat "$work/check")"

# The older CRL after a newer one is refused.
ca a -gencrl -out "$work/empty2.pem"
cs crl add "$work/empty2.pem"
refused "$work/empty.pem" "not newer"

ca a -revoke "$pki/alice.pem" -crl_reason keyCompromise
ca a -gencrl -out "$work/revoked.pem"
"$CERTSTORE_BIN" --db "$db" crl add "$work/revoked.pem" >"$work/stdout" || fail "CRL refused"
grep -q '1 newly revoked' "$work/stdout" || fail "crl add: $(cat "$work/stdout")"

expect_rejected alice "revoked"
expect_log 'result=reject reason=revoked account="" subject="CN=alice'
expect_log 'detail="revoked .* (keyCompromise)'
for v in 2 3; do
    client alice "$work/out" -tls1_$v -sess_in "$work/alice1$v"
    ! reused "$work/out" || fail "alice's TLS 1.$v session resumed after her revocation"
    ! data_flowed "$work/out" || fail "alice's TLS 1.$v resumption was accepted"
done
# bob was not revoked: accepted, and from now on resumes across an unchanged refresh.
expect_accepted bob "not revoked" -tls1_2 -sess_out "$work/bob12"
expect_accepted bob "not revoked" -tls1_3 -sess_out "$work/bob13"
ca a -gencrl -out "$work/refresh.pem"
"$CERTSTORE_BIN" --db "$db" crl add "$work/refresh.pem" >"$work/stdout" || fail "refresh refused"
grep -q '0 newly revoked' "$work/stdout" || fail "refresh: $(cat "$work/stdout")"
for v in 2 3; do
    client bob "$work/out" -tls1_$v -sess_in "$work/bob1$v"
    reused "$work/out" && data_flowed "$work/out" ||
        fail "bob's TLS 1.$v session did not resume across a refresh that revoked nothing"
done
if "$CERTSTORE_BIN" --db "$db" check "$pki/alice-chain.pem" --ca "$pki/root.pem" >"$work/check"; then
    fail "check accepted revoked alice"
fi
grep -q '^reject revoked' "$work/check" && grep -q '^revocation: revoked' "$work/check" ||
    fail "check: $(cat "$work/check")"
"$CERTSTORE_BIN" --db "$db" crl ls >"$work/ls"
grep -q "^$pin_a state=good policy=default grace=7d number=.* entries=1" "$work/ls" ||
    fail "crl ls: $(cat "$work/ls")"
"$CERTSTORE_BIN" --db "$db" crl ls --json | grep -q '"entries":1,' || fail "crl ls --json"

doctor_revocation() { # the doctor's revocation lines (JSON), whatever else it finds here
    OPENSSL_MODULES=$CERTSTORE_MODULE_DIR "$CERTSTORE_BIN" doctor --config "$work/openssl.cnf" \
        --json 2>/dev/null | grep -o '{"level":"[a-z]*","check":"revocation"[^}]*}' || true
}
[ -z "$(doctor_revocation)" ] || fail "doctor complains about a current CRL: $(doctor_revocation)"

# ---- a stale CRL: soft accepts and says so, hard rejects ---------------------------------
ca a -gencrl -crlsec 1 -out "$work/short.pem"
cs crl add "$work/short.pem"
cs pin revocation "$pin_a" soft --grace 1s
sleep 3
expect_accepted bob "soft, stale CRL"
expect_log 'result=accept reason=none account="bob".* revocation=stale'
"$CERTSTORE_BIN" --db "$db" expiring >"$work/expiring" && fail "expiring passed on a stale CRL"
grep -q "crl of pin $pin_a revocation=stale" "$work/expiring" || fail "expiring: $(cat "$work/expiring")"
doctor_revocation | grep -q '"level":"fail".*revocation stale' || fail "doctor: $(doctor_revocation)"
expect_rejected alice "stale CRL, still listed"
cs pin revocation "$pin_a" hard --grace 1s
expect_rejected bob "hard, stale CRL"
expect_log 'result=reject reason=revocation-unknown account="" subject="CN=bob'
bad "not a revocation policy" pin revocation "$pin_a" strict
bad "not a duration" pin revocation "$pin_a" soft --grace 7
bad "not a duration" pin revocation "$pin_a" soft --grace 4000d
bad "no pin with fingerprint" pin revocation "${pin_a//?/0}" hard
bad "not a SHA-256 fingerprint" crl rm nothex
bad "missing" pin revocation "$pin_a"
cs pin revocation "$pin_a" off
expect_accepted alice "policy off: the CRL is not consulted"
cs pin revocation "$pin_a" default
cs crl rm "$pin_a"
bad "has no CRL" crl rm "$pin_a"
expect_accepted alice "default policy, no CRL: nothing to enforce"

kill -0 "$server_pid" 2>/dev/null || fail "s_server died"
tp_finish "crl"
