#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Revocation under a running HAProxy (Debian's shape, as test_haproxy.sh):
# CRLs made by `openssl ca -revoke` and `-gencrl`, stored with `certstore
# crl add` and `certstore crl fetch` while HAProxy runs. A revoked client's
# next handshake is rejected `revoked` with no reload, and its saved
# sessions (TLS 1.2 and 1.3) do not resume; a client not revoked keeps
# resuming across a refresh that revokes nothing new. Then OCSP: alice's
# renewed certificate, revoked in the CA's index (not on any CRL stored),
# is rejected `revoked` after `certstore ocsp refresh` asked a real
# `openssl ocsp` responder, live and on resume. TAP-style.

. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/haproxy_common.sh"

cs_require_server haproxy
cs_setup haproxy
cs_make_pki
cs_db_standard
cs_db_grant haproxy
cs_log_grant haproxy
cs_write_openssl_cnf "$WORK/openssl.cnf"
cs_haproxy_chroot

PORT=$(cs_free_port) || exit 1
BACKEND_PORT=$(cs_free_port) || exit 1
URL=https://localhost:$PORT/
BODY_OF() { echo "^hello cn=$1\$"; }

cs_haproxy_config 'http-request set-header X-Client-CN %[ssl_c_s_dn(CN)]' \
    'hello cn=%[req.hdr(x-client-cn)]\n'
cs_haproxy_start

accept_as() { cs_expect_curl_accept "$URL" "$1" "$(BODY_OF "$1")" "$2"; }
reject_as() { cs_expect_curl_reject "$URL" "$1" "$2"; }
CS_PAYLOAD=$'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'

# The partner CA's own tooling: an `openssl ca` directory signing with ca-a.
CA=$WORK/ca
mkdir -p "$CA"
: >"$CA/index.txt"
echo 01 >"$CA/crlnumber"
printf '[ca]\ndefault_ca = s\n[s]\ndatabase = %s\ncrlnumber = %s\ncertificate = %s\nprivate_key = %s\ndefault_md = sha256\ndefault_crl_days = 7\n' \
    "$CA/index.txt" "$CA/crlnumber" "$PKI/ca-a.pem" "$PKI/ca-a.key" >"$CA/ca.cnf"
ca() { openssl ca -config "$CA/ca.cnf" -batch "$@" >"$WORK/out/ca.txt" 2>&1 || cs_diag_file "$WORK/out/ca.txt"; }

check_sessions_saved() {
    cs_cli map add "$PKI/bob.pem" --account bob &&
        ca -gencrl -out "$WORK/crl-empty.pem" &&
        cs_cli crl add "$WORK/crl-empty.pem" &&
        for who in alice bob; do
            cs_save_session "$PORT" "$who" -tls1_2 "$WORK/$who-12.sess" "hello cn=$who" "$who" &&
                cs_save_session "$PORT" "$who" -tls1_3 "$WORK/$who-13.sess" "hello cn=$who" "$who" ||
                return 1
        done
}

check_revoked_live_and_on_resume() {
    ca -revoke "$PKI/alice.pem" -crl_reason keyCompromise &&
        ca -gencrl -out "$WORK/crl-alice.pem" &&
        cs_cli crl add "$WORK/crl-alice.pem" &&
        grep -q '1 newly revoked' "$WORK/out/cli.txt" &&
        reject_as alice revoked &&
        cs_resume_rejected "$PORT" alice -tls1_2 "$WORK/alice-12.sess" revoked &&
        cs_resume_rejected "$PORT" alice -tls1_3 "$WORK/alice-13.sess" revoked
}

check_unchanged_refresh_keeps_sessions() {
    # bob's sessions predate alice's revocation: made anew, then a refresh that revokes nothing.
    cs_save_session "$PORT" bob -tls1_2 "$WORK/bob-12.sess" "hello cn=bob" bob &&
        cs_save_session "$PORT" bob -tls1_3 "$WORK/bob-13.sess" "hello cn=bob" bob &&
        ca -gencrl -out "$WORK/crl-refresh.pem" &&
        cs_cli crl add "$WORK/crl-refresh.pem" &&
        grep -q '0 newly revoked' "$WORK/out/cli.txt" &&
        cs_resume_accepted "$PORT" bob -tls1_2 "$WORK/bob-12.sess" "hello cn=bob" &&
        cs_resume_accepted "$PORT" bob -tls1_3 "$WORK/bob-13.sess" "hello cn=bob"
}

check_fetched_revocation() {
    ca -revoke "$PKI/bob.pem" -crl_reason superseded &&
        ca -gencrl -out "$WORK/crl-bob.pem" &&
        cs_cli crl fetch --url "file://$WORK/crl-bob.pem" &&
        reject_as bob revoked &&
        cs_resume_rejected "$PORT" bob -tls1_2 "$WORK/bob-12.sess" revoked &&
        cs_resume_rejected "$PORT" bob -tls1_3 "$WORK/bob-13.sess" revoked
}

OCSP_PORT=$(cs_free_port) || exit 1
RESPONDER_PID=
# The CA's OCSP responder (openssl ocsp, signing as ca-a) on OCSP_PORT.
start_responder() {
    : >"$WORK/out/responder.txt"
    timeout 120 openssl ocsp -index "$CA/index.txt" -port "$OCSP_PORT" -rsigner "$PKI/ca-a.pem" \
        -rkey "$PKI/ca-a.key" -CA "$PKI/ca-a.pem" -ndays 1 >"$WORK/out/responder.txt" 2>&1 &
    RESPONDER_PID=$!
    for _ in $(seq 1 50); do
        grep -qi 'waiting for OCSP client connections' "$WORK/out/responder.txt" && return 0
        sleep 0.1
    done
    cs_diag_file "$WORK/out/responder.txt"
    return 1
}

check_ocsp_revocation() {
    cs_cli map add "$PKI/alice-renewed.pem" --account alice --kind cert &&
        cs_save_session "$PORT" alice-renewed -tls1_2 "$WORK/renewed-12.sess" "hello cn=alice" alice &&
        cs_save_session "$PORT" alice-renewed -tls1_3 "$WORK/renewed-13.sess" "hello cn=alice" alice &&
        ca -revoke "$PKI/alice-renewed.pem" -crl_reason keyCompromise &&
        start_responder &&
        cs_cli ocsp refresh --url "http://127.0.0.1:$OCSP_PORT/" &&
        grep -q 'revoked (was none).*sessions decide again' "$WORK/out/cli.txt" &&
        reject_as alice-renewed revoked &&
        cs_resume_rejected "$PORT" alice-renewed -tls1_2 "$WORK/renewed-12.sess" revoked &&
        cs_resume_rejected "$PORT" alice-renewed -tls1_3 "$WORK/renewed-13.sess" revoked
}

check_server_up() { cs_pid_alive "$MASTER_PID" && [ -n "$(cs_child_pids "$MASTER_PID")" ]; }

cs_check 1 "clients accepted under an empty CRL; sessions saved (TLS 1.2, 1.3)" check_sessions_saved
cs_check 2 "crl add revoking alice: next handshake revoked, saved sessions do not resume" \
    check_revoked_live_and_on_resume
cs_check 3 "a refresh revoking nothing new: bob's sessions keep resuming" \
    check_unchanged_refresh_keeps_sessions
cs_check 4 "crl fetch (file://) revoking bob: rejected revoked, also on resume" \
    check_fetched_revocation
cs_check 5 "ocsp refresh (openssl ocsp responder) revoking alice's renewed certificate: rejected revoked, also on resume" \
    check_ocsp_revocation
[ -z "$RESPONDER_PID" ] || { kill "$RESPONDER_PID" 2>/dev/null; wait "$RESPONDER_PID" 2>/dev/null; }
cs_check 6 "haproxy never reloaded and still up" check_server_up
[ "$CS_FAILS" -eq 0 ] || cs_diag_file "$WORK/log/haproxy.log" 40
cs_finish
