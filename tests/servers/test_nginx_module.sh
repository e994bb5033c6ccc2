#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Debian's nginx with ngx_http_certstore_module: $certstore_account,
# $certstore_decision and $certstore_mapping reach a backend through
# proxy_set_header (and a `return`), for a cert, an spki and a rule
# mapping, over HTTP/1.1 and HTTP/2; a client cannot inject the header; a
# re-mapping shows on the next connection and a removed mapping gets no
# connection, with no reload; a resumed session reports the acceptance it
# was made with.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server nginx
[ -n "${CERTSTORE_NGINX_MODULE:-}" ] && [ -f "$CERTSTORE_NGINX_MODULE" ] ||
    cs_skip "ngx_http_certstore_module.so not built (install nginx-dev)"
cs_setup nginx-module
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki
cs_db_standard
# bob by his key (spki), carol (of the second CA) by a rule.
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
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

PORT=$(cs_free_port) && OPT_PORT=$(cs_free_port) && BACKEND_PORT=$(cs_free_port) &&
    H2_PORT=$(cs_free_port) || exit 1
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"
SHOW='account=[$certstore_account] decision=[$certstore_decision] mapping=[$certstore_mapping]'
SEEN='account=[$http_x_certstore_account] decision=[$http_x_certstore_decision] mapping=[$http_x_certstore_mapping]'

cat >"$NGX/nginx.conf" <<EOF
load_module $CERTSTORE_NGINX_MODULE;
daemon off;
master_process on;
worker_processes 2;
user www-data;
pid $NGX/nginx.pid;
error_log $NGX/error.log info;
events { worker_connections 64; }
http {
    access_log $NGX/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    default_type text/plain;
    ssl_certificate $PKI/server.pem;
    ssl_certificate_key $PKI/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate $PKI/roots.pem;
    ssl_verify_depth 3;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    proxy_set_header X-Certstore-Account \$certstore_account;
    proxy_set_header X-Certstore-Decision \$certstore_decision;
    proxy_set_header X-Certstore-Mapping \$certstore_mapping;
    server {
        listen 127.0.0.1:$PORT ssl;
        server_name localhost;
        ssl_verify_client on;
        location / { proxy_pass http://127.0.0.1:$BACKEND_PORT; }
        location /direct { return 200 "direct $SHOW\n"; }
    }
    server {
        listen 127.0.0.1:$OPT_PORT ssl;
        server_name localhost;
        ssl_verify_client optional;
        location / { proxy_pass http://127.0.0.1:$BACKEND_PORT; }
    }
    server {
        listen 127.0.0.1:$H2_PORT ssl http2;
        server_name localhost;
        ssl_verify_client on;
        location / { return 200 "h2 \$server_protocol $SHOW\n"; }
    }
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { return 200 "backend $SEEN\n"; }
    }
}
EOF

http_start_server "$NGX/stdout.txt" "$CS_SERVER_BIN" -p "$NGX/" -c "$NGX/nginx.conf" \
    -e "$NGX/error.log" || exit 1
if ! cs_wait_port "$PORT" 20 "$HTTP_SERVER_PID" || ! http_wait_children "$HTTP_SERVER_PID" 2; then
    cs_diag_file "$NGX/stdout.txt"
    cs_diag_file "$NGX/error.log"
    echo "Bail out! nginx did not start" >&2
    exit 1
fi
WORKERS=$(http_children "$HTTP_SERVER_PID")
cs_diag "nginx master $HTTP_SERVER_PID, workers $WORKERS"
URL=https://127.0.0.1:$PORT/
esc() { printf '%s' "$1" | sed 's/[][]/\\&/g'; }

# backend_sees NAME ACCOUNT DECISION MAPPING [curl ARGS...]
backend_sees() {
    local name=$1 account=$2 decision=$3 mapping=$4
    shift 4
    cs_expect_curl_accept "$URL" "$name" \
        "$(esc "backend account=[$account] decision=[$decision] mapping=[$mapping]")" \
        "$account" "$@"
}

cs_check 1 "a cert mapping's account reaches the backend" \
    backend_sees alice alice accept "cert:$ALICE_ID"
cs_check 2 "an spki mapping's account reaches the backend" \
    backend_sees bob bob accept "spki:$BOB_ID"
cs_check 3 "a rule's account reaches the backend" \
    backend_sees carol partner accept "rule:$RULE_ID"
cs_check 4 "the variables in a return" \
    cs_expect_curl_accept "${URL}direct" alice \
    "$(esc "direct account=[alice] decision=[accept] mapping=[cert:$ALICE_ID]")" alice

cs_check 5 "HTTP/2: a stream reads its connection's decision" \
    cs_expect_curl_accept "https://127.0.0.1:$H2_PORT/" alice \
    "$(esc "h2 HTTP/2.0 account=[alice] decision=[accept] mapping=[cert:$ALICE_ID]")" alice --http2

# The client's own headers of those names never reach the backend.
forged() {
    cs_expect_curl_accept "$URL" alice "$(esc "backend account=[alice] decision=[accept]")" alice \
        -H "X-Certstore-Account: mallory" -H "X-Certstore-Decision: forged" || return 1
    cs_curl "https://127.0.0.1:$OPT_PORT/" - -H "X-Certstore-Account: mallory" \
        -H "X-Certstore-Mapping: cert:1" || { cs_diag "no-certificate request failed"; return 1; }
    cs_out_has "$(esc "backend account=[] decision=[] mapping=[]")" || {
        cs_diag "a client without a certificate got an account or its own header through"
        cs_diag_file "$CS_OUT" 10
        return 1
    }
}
cs_check 6 "a client cannot inject the headers (set, never appended)" forged

# Resumption while mapped: each way a client resumes, the session's own acceptance.
resumes_with_account() {
    local kind opts sess=$WORK/out/resume.sess again=$WORK/out/resume2.sess
    local want
    want=$(esc "direct account=[alice] decision=[accept] mapping=[cert:$ALICE_ID]")
    for kind in "${HTTP_RESUME_KINDS[@]}"; do
        opts=${kind#*:}
        CS_PAYLOAD=$'GET /direct HTTP/1.0\r\nHost: localhost\r\n\r\n' \
            http_session_save "$PORT" alice "$opts" "$sess" "$want" alice || return 1
        CS_PAYLOAD=$'GET /direct HTTP/1.0\r\nHost: localhost\r\n\r\n' \
            http_session_offer "$PORT" alice "$opts" "$sess" "$again" "$want"
        [ "$HTTP_OFFER" = reused ] || {
            cs_diag "${kind%%:*}: offer was '$HTTP_OFFER', expected a resumption with the account"
            cs_diag_file "$CS_OUT" 20
            return 1
        }
    done
    cp "$sess" "$WORK/out/before-remap.sess"
}
cs_check 7 "a resumed session carries the account it was accepted with" resumes_with_account

# Re-map alice to bob's account: the next connection is bob's, no reload.
remapped() {
    cs_cli map rm "$ALICE_ID" && cs_cli map add "$PKI/alice.pem" --account bob || return 1
    NEW_ID=$(sed -n 's/^mapping \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt")
    backend_sees alice bob accept "cert:$NEW_ID"
}
cs_check 8 "a re-mapping shows on the next connection, with no reload" remapped

stale_session() {
    local want
    want=$(esc "direct account=[bob] decision=[accept] mapping=[cert:$NEW_ID]")
    CS_PAYLOAD=$'GET /direct HTTP/1.0\r\nHost: localhost\r\n\r\n' \
        http_session_offer "$PORT" alice -tls1_3 "$WORK/out/before-remap.sess" \
        "$WORK/out/after.sess" "$want"
    [ "$HTTP_OFFER" = new ] || {
        cs_diag "offer of the session made before the re-mapping: '$HTTP_OFFER' (expected new)"
        cs_diag_file "$CS_OUT" 20
        return 1
    }
}
cs_check 9 "a session made before the re-mapping is not resumed with the old account" stale_session

removed() {
    cs_cli map rm "$NEW_ID" || return 1
    cs_expect_curl_reject "$URL" alice no-mapping
}
cs_check 10 "a removed mapping gets no connection" removed

same_processes() {
    [ "$(http_children "$HTTP_SERVER_PID")" = "$WORKERS" ] || {
        cs_diag "workers were $WORKERS, now $(http_children "$HTTP_SERVER_PID")"
        return 1
    }
}
cs_check 11 "the same nginx workers served it all (no reload)" same_processes

# A configuration from the exported-map recipe defines $certstore_account
# itself: with the module loaded, it still loads (its map takes over).
map_recipe_still_loads() {
    cat >"$NGX/map.conf" <<EOF
load_module $CERTSTORE_NGINX_MODULE;
pid $NGX/map.pid;
error_log stderr;
events {}
http {
    map \$ssl_client_fingerprint \$certstore_account { default "from-map"; }
    server { listen 127.0.0.1:$BACKEND_PORT; return 200 "\$certstore_account"; }
}
EOF
    "$CS_SERVER_BIN" -t -q -p "$NGX/" -c "$NGX/map.conf" >"$WORK/out/map-t.txt" 2>&1 ||
        { cs_diag_file "$WORK/out/map-t.txt"; return 1; }
}
cs_check 12 "the exported-map recipe's own \$certstore_account still loads" map_recipe_still_loads

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$NGX/error.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
