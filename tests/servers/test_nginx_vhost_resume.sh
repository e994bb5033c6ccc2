#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two name-based virtual hosts on one nginx port, each with its own client
# CA list: a.test trusts the partners' root, b.test trusts none of them. A
# session alice made on a.test must not resume on b.test (SNI b.test) and
# hand b.test her account: b.test would reject her chain in a full
# handshake.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server nginx
[ -n "${CERTSTORE_NGINX_MODULE:-}" ] && [ -f "$CERTSTORE_NGINX_MODULE" ] ||
    cs_skip "ngx_http_certstore_module.so not built (install nginx-dev)"
cs_setup nginx-vhost-resume
# shellcheck disable=SC2119
cs_make_pki
cs_db_standard
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

PORT=$(cs_free_port) || exit 1
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"
SHOW='host=[$server_name] account=[$certstore_account] verify=[$ssl_client_verify]'
cat >"$NGX/nginx.conf" <<EOF
load_module $CERTSTORE_NGINX_MODULE;
daemon off;
master_process on;
worker_processes 1;
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
    ssl_verify_depth 3;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$PORT ssl default_server;
        server_name a.test;
        ssl_client_certificate $PKI/roots.pem;
        ssl_verify_client on;
        location / { return 200 "$SHOW\n"; }
    }
    server {
        listen 127.0.0.1:$PORT ssl;
        server_name b.test;
        ssl_client_certificate $PKI/selfsigned.pem;
        ssl_verify_client on;
        location / { return 200 "$SHOW\n"; }
    }
}
EOF

http_start_server "$NGX/stdout.txt" "$CS_SERVER_BIN" -p "$NGX/" -c "$NGX/nginx.conf" \
    -e "$NGX/error.log" || exit 1
if ! cs_wait_port "$PORT" 20 "$HTTP_SERVER_PID" || ! http_wait_children "$HTTP_SERVER_PID" 1; then
    cs_diag_file "$NGX/stdout.txt"
    cs_diag_file "$NGX/error.log"
    echo "Bail out! nginx did not start" >&2
    exit 1
fi
esc() { printf '%s' "$1" | sed 's/[][]/\\&/g'; }
REQ_A=$'GET / HTTP/1.0\r\nHost: a.test\r\n\r\n'
REQ_B=$'GET / HTTP/1.0\r\nHost: b.test\r\n\r\n'

b_rejects_alice() {
    CS_PAYLOAD=$REQ_B cs_tls_client "$PORT" alice -tls1_2 -servername b.test
    if cs_out_has 'account=\[alice\]'; then
        cs_diag "b.test served alice in a full handshake"
        cs_diag_file "$CS_OUT" 10
        return 1
    fi
}
cs_check 1 "b.test does not take alice in a full handshake" b_rejects_alice

# not_resumed_on_b KIND OPTS: a session of a.test offered to b.test.
not_resumed_on_b() {
    local kind=$1 opts=$2 sess=$WORK/out/a.sess again=$WORK/out/b.sess
    # shellcheck disable=SC2086
    CS_PAYLOAD=$REQ_A http_session_save "$PORT" alice "$opts -servername a.test" "$sess" \
        "$(esc "host=[a.test] account=[alice]")" alice || return 1
    # shellcheck disable=SC2086
    CS_PAYLOAD=$REQ_B cs_tls_client "$PORT" alice $opts -servername b.test \
        -sess_in "$sess" -sess_out "$again"
    if cs_out_has 'Reused, TLS' && cs_out_has 'account=\[alice\]'; then
        cs_diag "$kind: a.test's session resumed on b.test with alice's account"
        cs_diag_file "$CS_OUT" 12
        return 1
    fi
}
n=2
for kind in "${HTTP_RESUME_KINDS[@]}"; do
    cs_check "$n" "${kind%%:*}: a.test's session does not resume on b.test with its account" \
        not_resumed_on_b "${kind%%:*}" "${kind#*:}"
    n=$((n + 1))
done

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$NGX/error.log" 30
    cs_diag_file "$CS_LOG" 20
fi
cs_finish
