#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Debian's HAProxy with certstore.lua (lua-load): lua.certstore_account,
# lua.certstore_decision and lua.certstore_mapping reach the application
# through http-request set-header for a cert, an spki and a rule mapping;
# a client cannot inject the header; a TCP-mode frontend routes on the
# account; a re-mapping shows on the next connection and a removed mapping
# gets no connection, with no reload. HAProxy runs as in test_haproxy.sh:
# master-worker, nbthread 2, user haproxy, chroot (database bind-mounted).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/haproxy_common.sh"

cs_require_server haproxy
[ -n "${CERTSTORE_HAPROXY_LUA:-}" ] && [ -f "$CERTSTORE_HAPROXY_LUA" ] &&
    [ -n "${CERTSTORE_LUA_CPATH:-}" ] ||
    cs_skip "certstore_haproxy.so not built (install liblua5.3-dev)"
cs_setup haproxy-lua
cs_make_pki
cs_db_standard
cs_cli map add "$PKI/bob.pem" --account bob --kind spki &&
    BOB_ID=$(sed -n 's/^mapping \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt") &&
    cs_cli pin add "$PKI/ca-b.pem" &&
    CA_B=$(awk '/^pinned/ {print $2}' "$WORK/out/cli.txt") &&
    cs_cli rule add --pin "$CA_B" --subject CN=carol --account partner --create-account &&
    RULE_ID=$(sed -n 's/^rule \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt") || {
    echo "Bail out! could not build the test database" >&2
    exit 1
}
cs_cli map ls && ALICE_ID=$(awk '$2 == "cert" && /account=alice / {print $1}' "$WORK/out/cli.txt")
[ -n "$BOB_ID" ] && [ -n "$RULE_ID" ] && [ -n "$ALICE_ID" ] || {
    echo "Bail out! no mapping ids (alice '$ALICE_ID', bob '$BOB_ID', rule '$RULE_ID')" >&2
    exit 1
}
cs_db_grant haproxy
cs_log_grant haproxy
cs_write_openssl_cnf "$WORK/openssl.cnf"
cs_haproxy_chroot

PORT=$(cs_free_port) && TCP_PORT=$(cs_free_port) && BACKEND_PORT=$(cs_free_port) || exit 1
URL=https://localhost:$PORT/
cat >"$WORK/haproxy.cfg" <<EOF
global
    master-worker
    nbthread 2
    user haproxy
    group haproxy
    chroot $CHROOT
    pidfile $WORK/haproxy.pid
    log stdout format raw local0 info
    lua-load $CERTSTORE_HAPROXY_LUA

defaults
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend fe_tls
    mode http
    option httplog
    bind 127.0.0.1:$PORT ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required
    http-request set-header X-Certstore-Account %[lua.certstore_account]
    http-request set-header X-Certstore-Decision %[lua.certstore_decision]
    http-request set-header X-Certstore-Mapping %[lua.certstore_mapping]
    default_backend be_app

frontend fe_tcp
    mode tcp
    bind 127.0.0.1:$TCP_PORT ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required
    tcp-request content set-var(sess.account) lua.certstore_account
    tcp-request content reject unless { var(sess.account) -m str alice }
    default_backend be_tcp_app

backend be_app
    mode http
    server app 127.0.0.1:$BACKEND_PORT

backend be_tcp_app
    mode tcp
    server app 127.0.0.1:$BACKEND_PORT

frontend fe_app
    mode http
    bind 127.0.0.1:$BACKEND_PORT
    http-request return status 200 content-type text/plain lf-string "app account=[%[req.hdr(x-certstore-account)]] decision=[%[req.hdr(x-certstore-decision)]] mapping=[%[req.hdr(x-certstore-mapping)]]\n"
EOF
export LUA_CPATH_5_3="$CERTSTORE_LUA_CPATH/?.so;;"
if ! "$CS_SERVER_BIN" -c -f "$WORK/haproxy.cfg" >"$WORK/out/haproxy-check.txt" 2>&1; then
    cs_diag_file "$WORK/out/haproxy-check.txt"
    echo "Bail out! haproxy rejects its configuration" >&2
    exit 1
fi
OPENSSL_CONF=$CS_CNF "$CS_SERVER_BIN" -W -db -f "$WORK/haproxy.cfg" >"$WORK/log/haproxy.log" 2>&1 &
MASTER_PID=$!
cs_kill_on_exit "$MASTER_PID"
if ! cs_wait_port "$PORT" 20 "$MASTER_PID" || ! cs_wait_port "$BACKEND_PORT" 5 "$MASTER_PID"; then
    cs_diag_file "$WORK/log/haproxy.log"
    echo "Bail out! haproxy did not start" >&2
    exit 1
fi
WORKERS=$(cs_child_pids "$MASTER_PID" | tr '\n' ' ')
cs_diag "haproxy master $MASTER_PID, workers $WORKERS"
esc() { printf '%s' "$1" | sed 's/[][]/\\&/g'; }

# app_sees NAME ACCOUNT DECISION MAPPING [curl ARGS...]
app_sees() {
    local name=$1 account=$2 decision=$3 mapping=$4
    shift 4
    cs_expect_curl_accept "$URL" "$name" \
        "$(esc "app account=[$account] decision=[$decision] mapping=[$mapping]")" "$account" "$@"
}

cs_check 1 "a cert mapping's account reaches the application" \
    app_sees alice alice accept "cert:$ALICE_ID"
cs_check 2 "an spki mapping's account reaches the application" \
    app_sees bob bob accept "spki:$BOB_ID"
cs_check 3 "a rule's account reaches the application" \
    app_sees carol partner accept "rule:$RULE_ID"
cs_check 4 "a client cannot inject the header (set, never appended)" \
    app_sees alice alice accept "cert:$ALICE_ID" -H "X-Certstore-Account: mallory"

tcp_routes() {
    cs_expect_curl_accept "https://localhost:$TCP_PORT/" alice \
        "$(esc "app account=[] decision=[] mapping=[]")" alice || return 1
    cs_curl "https://localhost:$TCP_PORT/" bob
    if grep -q '^HTTP/' "$CS_OUT"; then
        cs_diag "bob got through the TCP frontend that admits alice only"
        return 1
    fi
}
cs_check 5 "TCP mode: a frontend admits by lua.certstore_account" tcp_routes

# A resumed session: the session's certificate, the same account. Which
# kinds HAProxy resumes under certstore is README's resumption table; a TLS
# 1.2 ticket must.
resumes_with_account() {
    local kind opts sess=$WORK/out/resume.sess again=$WORK/out/resume2.sess want
    want=$(esc "app account=[alice] decision=[accept] mapping=[cert:$ALICE_ID]")
    for kind in "tls12-ticket:-tls1_2" "tls12-session-id:-tls1_2 -no_ticket" "tls13-ticket:-tls1_3"; do
        opts=${kind#*:}
        rm -f "$sess" "$again"
        # shellcheck disable=SC2086 # word list on purpose
        cs_expect_accept "$PORT" alice "$want" alice $opts -sess_out "$sess" || return 1
        # shellcheck disable=SC2086
        cs_tls_client "$PORT" alice $opts -sess_in "$sess"
        if cs_out_has 'Reused, TLS'; then
            cs_out_has "$want" || { cs_diag "${kind%%:*}: resumed without the account"; return 1; }
            cs_diag "${kind%%:*}: resumed, with the account"
        else
            cs_diag "${kind%%:*}: not resumed (full handshake)"
            [ "${kind%%:*}" != tls12-ticket ] || return 1
        fi
    done
}
cs_check 6 "a resumed session carries the account it was accepted with" resumes_with_account

remapped() {
    cs_cli map rm "$ALICE_ID" && cs_cli map add "$PKI/alice.pem" --account bob || return 1
    NEW_ID=$(sed -n 's/^mapping \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt")
    app_sees alice bob accept "cert:$NEW_ID"
}
cs_check 7 "a re-mapping shows on the next connection, with no reload" remapped

removed() {
    cs_cli map rm "$NEW_ID" || return 1
    cs_expect_curl_reject "$URL" alice no-mapping
}
cs_check 8 "a removed mapping gets no connection" removed

same_processes() {
    [ "$(cs_child_pids "$MASTER_PID" | tr '\n' ' ')" = "$WORKERS" ] || {
        cs_diag "workers were $WORKERS, now $(cs_child_pids "$MASTER_PID" | tr '\n' ' ')"
        return 1
    }
}
cs_check 9 "the same HAProxy worker served it all (no reload)" same_processes

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$WORK/log/haproxy.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
