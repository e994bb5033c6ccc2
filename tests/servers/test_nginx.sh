#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# nginx (Debian's 1.22) enforces certstore with nothing but OPENSSL_CONF:
# the production shape (master as root, 2 workers as www-data, shared session
# cache and tickets on, ordinary ssl_verify_client) and the seven checks of
# the drop-in proof. Reload is the operators' `kill -HUP master`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server nginx
cs_setup nginx
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki
cs_db_standard
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

PORT=$(cs_free_port) || exit 1
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"

# `env OPENSSL_CONF;` keeps the variable for a binary upgrade (USR2), which
# execs a new master with nginx's filtered environment.
cat >"$NGX/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user www-data;
env OPENSSL_CONF;
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
    server {
        listen 127.0.0.1:$PORT ssl;
        server_name localhost;
        ssl_certificate $PKI/server.pem;
        ssl_certificate_key $PKI/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate $PKI/roots.pem;
        ssl_verify_depth 3;
        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets on;
        location / {
            default_type text/plain;
            return 200 "certstore-nginx-ok \$ssl_client_s_dn\n";
        }
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
cs_diag "nginx master $HTTP_SERVER_PID, workers $(http_children "$HTTP_SERVER_PID")"

HTTP_URL=https://127.0.0.1:$PORT/
HTTP_PORT=$PORT
HTTP_MARKER='certstore-nginx-ok '
HTTP_WORKER_USER=www-data
HTTP_WORKERS=2
HTTP_EXPECT_REUSE=1
HTTP_RELOAD_NAME="reload (kill -HUP master)"
# shellcheck disable=SC2317 # called by http_check_reload
http_server_reload() { kill -HUP "$HTTP_SERVER_PID"; }

http_run_checks

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$NGX/error.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
