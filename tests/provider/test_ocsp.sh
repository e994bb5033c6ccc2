#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OCSP, prefetched: a CA made with `openssl ca` issues alice and bob (their
# authorityInfoAccess names the responder) and a responder certificate with
# the OCSP-signing EKU; `openssl ocsp -index` answers on 127.0.0.1 while an
# unmodified `openssl s_server` runs under the provider. good -> accepted;
# alice revoked, `ocsp refresh`, her next handshake is rejected `revoked`
# with no reload and her saved sessions do not resume, while a refresh that
# changes nothing lets bob's sessions resume. A responder signing with
# another CA's certificate is refused (store unchanged), a responder that is
# down keeps the last answer (non-zero exit), and a stale answer under a
# hard policy is revocation-unknown. Bad options: one line, non-zero exit.
# Last, `crl fetch` without a URL finds the CA's CRL through the CRL
# distribution points of the mapped certificates (crl_httpd.py serves it):
# deduplicated, the first that yields a valid CRL wins and is named.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init ocsp
ca=$work/ca
responder_pid= httpd_pid=
stop() { # stop PID: the background job this script started
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cs() { "$CERTSTORE_BIN" --db "$db" "$@"; } # output kept: the checks below read it

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ocsp_port=$(free_port)
srv=$work/srv
mkdir -p "$srv"
: >"$work/httpd.out"
python3 "$(dirname "$0")/crl_httpd.py" "$srv" "$work/requests.log" >"$work/httpd.out" 2>&1 &
httpd_pid=$!
tp_track "$httpd_pid"
http_port=
for _ in $(seq 1 50); do
    http_port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/httpd.out")
    [ -n "$http_port" ] && break
    sleep 0.1
done
[ -n "$http_port" ] || { cat "$work/httpd.out" >&2; echo "FAIL: httpd did not start" >&2; exit 1; }

# ---- a CA made with `openssl ca` -------------------------------------------------------
"$MKPKI_BIN" "$pki" >/dev/null # the server's certificate and root
# mkca DIR CN: a self-signed CA with an `openssl ca` database in DIR.
mkca() {
    local dir=$1 cn=$2
    mkdir -p "$dir/new"
    : >"$dir/index.txt"
    echo 1000 >"$dir/serial"
    echo 01 >"$dir/crlnumber"
    cat >"$dir/ca.cnf" <<EOF
[ca]
default_ca = ca_sect
[ca_sect]
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
default_crl_days = 7
new_certs_dir = $dir/new
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$ocsp_port/
crlDistributionPoints = URI:http://127.0.0.1:$http_port/missing,URI:http://127.0.0.1:$http_port/crl/ca.pem
[responder_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
noCheck = ignored
[plain_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
EOF
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
        -out "$dir/ca.pem" -subj "/CN=$cn" -days 30 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
}
# issue DIR NAME EXT: a key and a certificate for CN=NAME, signed by `openssl ca`.
issue() {
    local dir=$1 name=$2 ext=$3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$name.key" \
        -out "$work/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl ca -config "$dir/ca.cnf" -batch -notext -extensions "$ext" -in "$work/$name.csr" \
        -out "$work/$name.pem" >/dev/null 2>&1
}
mkca "$ca" "OCSP Test CA"
mkca "$work/other" "Other CA"
issue "$ca" alice client_ext
issue "$ca" bob client_ext
issue "$ca" responder responder_ext
issue "$ca" plain plain_ext            # the CA's, but without the OCSP-signing EKU
issue "$work/other" foreign responder_ext # the EKU, but another CA's

cs init >/dev/null
cs pin add "$ca/ca.pem" >/dev/null 2>&1
cs map add "$work/alice.pem" --account alice --create-account >/dev/null
cs map add "$work/bob.pem" --account bob --create-account >/dev/null
pin=$(cs pin ls --json | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/p')

# responder SIGNER [openssl ocsp options]: the responder on ocsp_port, answering from the index.
responder() {
    local signer=$1
    shift
    stop "$responder_pid"
    : >"$work/responder.out"
    timeout 240 openssl ocsp -index "$ca/index.txt" -port "$ocsp_port" \
        -rsigner "$work/$signer.pem" -rkey "$work/$signer.key" -CA "$ca/ca.pem" "$@" \
        >"$work/responder.out" 2>&1 &
    responder_pid=$!
    tp_track "$responder_pid"
    for _ in $(seq 1 50); do
        grep -qi 'waiting for OCSP client connections' "$work/responder.out" && return 0
        sleep 0.1
    done
    cat "$work/responder.out" >&2
    echo "FAIL: the OCSP responder did not start" >&2
    exit 1
}

tp_openssl_cnf "$work/openssl.cnf"
TP_SERVER_CA=$ca/ca.pem TP_CLIENT_DIR=$work
tp_start_s_server "$work/openssl.cnf"

# What decides: the generation and the answers (the last query's bookkeeping aside).
snapshot() {
    sqlite3 "$db" 'SELECT generation FROM meta;
                   SELECT hex(serial), status, revoked_at, this_update, next_update, url
                   FROM ocsp_answers ORDER BY serial'
}
generation() { sqlite3 "$db" 'SELECT generation FROM meta'; }
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
check_chain() { # check_chain NAME [check options]: the decision, as `check` prints it
    "$CERTSTORE_BIN" --db "$db" check "$work/$1.pem" --ca "$ca/ca.pem" "${@:2}" >"$work/check" 2>&1 || true
}

# ---- bad options ------------------------------------------------------------------------
bad "not a SHA-256 fingerprint" ocsp refresh --pin nothex
bad "not a number of seconds" ocsp refresh --timeout 0
bad "not an http:// or https:// URL" ocsp refresh --url ftp://127.0.0.1/
bad "unexpected\|too many" ocsp ls extra

# ---- good: stored, accepted, shown ------------------------------------------------------
# A pinned CA's certificate that names no responder (mkpki's alice) is skipped, not a
# failure; one of an unpinned CA (carol's ca-b) is not asked about at all.
cs pin add "$pki/ca-a.pem" >/dev/null 2>&1
cs map add "$pki/alice.pem" --account mkpki-alice --create-account >/dev/null
cs map add "$pki/carol.pem" --account carol --create-account >/dev/null
responder responder -ndays 1
cs ocsp refresh >"$work/refresh" 2>"$work/stderr" || { cat "$work/stderr" >&2; fail "first refresh failed"; }
[ "$(grep -c ': good (was none)' "$work/refresh")" -eq 2 ] || fail "first refresh: $(cat "$work/refresh")"
grep -q '^skipped: mapping 3 CN=alice.*: no OCSP responder in its authorityInfoAccess' "$work/refresh" ||
    fail "first refresh, no responder named: $(cat "$work/refresh")"
[ "$(grep -c '^skipped: ' "$work/refresh")" -eq 1 ] || fail "first refresh, skipped: $(cat "$work/refresh")"
cs ocsp ls >"$work/ls"
[ "$(grep -c "^$pin serial=.* status=good this-update=.* url=http://127.0.0.1:$ocsp_port/ .*result=ok" "$work/ls")" -eq 2 ] ||
    fail "ocsp ls: $(cat "$work/ls")"
cs ocsp ls --json | grep -q '"status":"good","current":true' || fail "ocsp ls --json"
expect_accepted alice "good answer" -tls1_2 -sess_out "$work/alice12"
expect_accepted alice "good answer" -tls1_3 -sess_out "$work/alice13"
expect_accepted bob "good answer" -tls1_2 -sess_out "$work/bob12"
expect_accepted bob "good answer" -tls1_3 -sess_out "$work/bob13"
check_chain alice
grep -q '^revocation: good' "$work/check" && grep -q '^ocsp: good' "$work/check" ||
    fail "check: $(cat "$work/check")"

# A refresh that changes nothing bumps nothing: bob's sessions keep resuming.
gen=$(generation)
cs ocsp refresh >"$work/refresh" || fail "unchanged refresh failed"
[ "$(grep -c '^unchanged: ' "$work/refresh")" -eq 2 ] || fail "unchanged refresh: $(cat "$work/refresh")"
[ "$(generation)" = "$gen" ] || fail "a refresh that changed nothing bumped the generation"
for v in 2 3; do
    client bob "$work/out" -tls1_$v -sess_in "$work/bob1$v"
    reused "$work/out" && data_flowed "$work/out" ||
        fail "bob's TLS 1.$v session did not resume across an unchanged refresh"
done

# ---- a responder of another CA, and one without the EKU: refused, store unchanged ---------
for signer in foreign plain; do
    responder "$signer" -ndays 1
    before=$(snapshot)
    rc=0
    cs ocsp refresh --pin "$pin" >"$work/stdout" 2>"$work/stderr" || rc=$?
    [ "$rc" -eq 1 ] || fail "$signer responder: exit $rc"
    [ "$(wc -l <"$work/stderr")" -eq 2 ] || { cat "$work/stderr" >&2; fail "$signer: not one line per certificate"; }
    grep -q 'not signed by the issuing CA or a responder it authorised' "$work/stderr" ||
        fail "$signer: $(cat "$work/stderr")"
    [ "$before" = "$(snapshot)" ] || fail "$signer responder: the store changed"
done
expect_accepted alice "refused responders stored nothing"

# ---- revoked: refresh, the next handshake is rejected, her sessions do not resume ---------
openssl ca -config "$ca/ca.cnf" -batch -revoke "$work/alice.pem" -crl_reason keyCompromise >/dev/null 2>&1
responder responder -ndays 1
gen=$(generation)
cs ocsp refresh --json >"$work/refresh" || fail "revoking refresh failed"
grep -q '"status":"revoked","was":"good".*"generation_bumped":true' "$work/refresh" ||
    fail "revoking refresh: $(cat "$work/refresh")"
[ "$(generation)" -gt "$gen" ] || fail "a refresh that revoked alice did not bump the generation"
expect_rejected alice "revoked by OCSP"
expect_log 'result=reject reason=revoked account="" subject="CN=alice'
expect_log 'detail="revoked .* (keyCompromise) by the OCSP answer'
for v in 2 3; do
    client alice "$work/out" -tls1_$v -sess_in "$work/alice1$v"
    ! reused "$work/out" || fail "alice's TLS 1.$v session resumed after her revocation"
    ! data_flowed "$work/out" || fail "alice's TLS 1.$v resumption was accepted"
done
expect_accepted bob "not revoked"
check_chain alice
grep -q '^reject revoked' "$work/check" && grep -q '^ocsp: revoked' "$work/check" ||
    fail "check: $(cat "$work/check")"
check_chain alice --explain
grep -q 'ocsp' "$work/check" || fail "check --explain: $(cat "$work/check")"

# ---- the responder down: non-zero, the last answer stays and the failure is recorded -------
stop "$responder_pid"
responder_pid=
before=$(snapshot)
rc=0
cs ocsp refresh --timeout 3 >"$work/stdout" 2>"$work/stderr" || rc=$?
[ "$rc" -eq 1 ] || fail "responder down: exit $rc"
grep -q 'the last answer stays' "$work/stderr" || fail "responder down: $(cat "$work/stderr")"
[ "$before" = "$(snapshot)" ] || fail "responder down: the answers changed"
cs ocsp ls >"$work/ls"
grep -q 'status=revoked .*result=failed: ' "$work/ls" || fail "ocsp ls after a failure: $(cat "$work/ls")"
expect_rejected alice "responder down: the revoked answer stays"
expect_accepted bob "responder down: the good answer stays"

# ---- a stale answer: soft accepts (stale), hard rejects revocation-unknown ----------------
later=$(date -u -d '+10 days' +%Y-%m-%dT%H:%M:%SZ)
cs pin revocation "$pin" soft >/dev/null
check_chain bob --at "$later"
grep -q '^accept' "$work/check" && grep -q '^revocation: stale' "$work/check" ||
    fail "soft, stale: $(cat "$work/check")"
cs pin revocation "$pin" hard >/dev/null
check_chain bob --at "$later"
grep -q '^reject revocation-unknown' "$work/check" || fail "hard, stale: $(cat "$work/check")"
check_chain bob
grep -q '^accept' "$work/check" || fail "hard, current: $(cat "$work/check")"
expect_accepted bob "hard, current answer"

# ---- a good answer past its nextUpdate: doctor and expiring fail until a refresh ------------
sqlite3 "$db" "UPDATE ocsp_answers SET this_update = strftime('%s','now') - 7200,
               next_update = strftime('%s','now') - 3600 WHERE status = 0" ||
    fail "could not age the answers"
rc=0
"$CERTSTORE_BIN" --db "$db" doctor --config "$work/openssl.cnf" >"$work/doctor" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "serial .*: OCSP answer stale since .*(certstore ocsp refresh)" "$work/doctor" ||
    fail "doctor on a stale answer (exit $rc): $(cat "$work/doctor")"
rc=0
cs expiring >"$work/expiring" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "^ocsp answer of pin $pin serial .* stale next-update=" "$work/expiring" ||
    fail "expiring on a stale answer (exit $rc): $(cat "$work/expiring")"
responder responder -ndays 1
cs ocsp refresh >/dev/null 2>&1 || fail "refresh after aging"
rc=0
cs expiring >"$work/expiring" 2>&1 || rc=$?
! grep -q '^ocsp answer' "$work/expiring" || fail "expiring after a refresh: $(cat "$work/expiring")"

# ---- crl fetch through the distribution points of the mapped certificates ---------------
openssl ca -config "$ca/ca.cnf" -batch -gencrl -out "$srv/ca.pem" >/dev/null 2>&1
: >"$work/requests.log"
cs crl fetch --pin "$pin" >"$work/stdout" 2>"$work/stderr" || { cat "$work/stderr" >&2; fail "CDP fetch failed"; }
grep -q "^crl for pin $pin from http://127.0.0.1:$http_port/crl/ca.pem: 1 entries, 1 newly revoked" "$work/stdout" ||
    fail "CDP fetch: $(cat "$work/stdout")"
grep -q "warning: http://127.0.0.1:$http_port/missing: HTTP status 404; trying the pin's next CRL source" "$work/stderr" ||
    fail "CDP fetch, the 404 first: $(cat "$work/stderr")"
[ "$(grep -c '^/missing ' "$work/requests.log")" -eq 1 ] && [ "$(grep -c '^/crl/ca.pem ' "$work/requests.log")" -eq 1 ] ||
    fail "CDP URLs not asked once each: $(cat "$work/requests.log")"
cs crl ls | grep -q "^$pin .*url=http://127.0.0.1:$http_port/crl/ca.pem fetched=.* result=ok: updated" ||
    fail "crl ls after the CDP fetch: $(cs crl ls)"
expect_rejected alice "revoked by the CDP's CRL"

kill -0 "$server_pid" 2>/dev/null || fail "s_server died"
tp_finish "ocsp"
