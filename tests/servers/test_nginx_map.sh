#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The nginx map recipe, end to end: `certstore export --format nginx-map`
# turns the mappings into an nginx map on $ssl_client_fingerprint, nginx
# sends the account to the backend in X-Certstore-Account, and the backend
# (a second server block that answers with the header it received) sees
# the account of the client's certificate, never one the client claims.
# certstore still decides every handshake, so a stale map cannot let a
# removed client in.
# shellcheck disable=SC2317 # the check functions run through cs_check
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server nginx
cs_setup nginx-map
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki

# Account names unlike the certificates' CNs: what the backend sees can
# only have come from the store.
if ! { cs_cli init &&
    cs_cli pin add "$PKI/ca-a.pem" &&
    cs_cli account add acme-corp &&
    cs_cli account add globex &&
    cs_cli map add "$PKI/alice.pem" --account acme-corp &&
    cs_cli map add "$PKI/bob.pem" --account globex; }; then
    echo "Bail out! could not build the test database" >&2
    exit 1
fi
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

PORT=$(cs_free_port) || exit 1
BACKEND_PORT=$(cs_free_port) || exit 1
NGX=$WORK/nginx
MAP=$NGX/accounts.map
mkdir -p "$NGX/tmp"

# export_map: the operator's step after every change to the mappings.
export_map() {
    "$CERTSTORE_BIN" --db "$CS_DB" export --format nginx-map >"$MAP.new" 2>"$WORK/out/export.err" || {
        cs_diag "certstore export --format nginx-map failed"
        cs_diag_file "$WORK/out/export.err" 5
        return 1
    }
    mv "$MAP.new" "$MAP"
}
export_map || exit 1

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

    map \$ssl_client_fingerprint \$certstore_account {
        include $MAP;
        default "";
    }

    server {
        listen 127.0.0.1:$PORT ssl;
        server_name localhost;
        ssl_certificate $PKI/server.pem;
        ssl_certificate_key $PKI/server.key;
        ssl_verify_client on;
        ssl_client_certificate $PKI/roots.pem;
        ssl_verify_depth 3;
        location / {
            proxy_pass http://127.0.0.1:$BACKEND_PORT;
            proxy_set_header X-Certstore-Account \$certstore_account;
        }
    }

    # The backend: answers with the account header it received.
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / {
            default_type text/plain;
            return 200 "account=\$http_x_certstore_account\n";
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
URL=https://127.0.0.1:$PORT/

# SHA-1 of the DER, lowercase hex: nginx's $ssl_client_fingerprint.
sha1_of() { openssl x509 -in "$1" -outform DER | openssl dgst -sha1 -r | cut -d' ' -f1; }

check_export_lines() {
    local fp_alice fp_bob
    fp_alice=$(sha1_of "$PKI/alice.pem") && fp_bob=$(sha1_of "$PKI/bob.pem") || return 1
    if ! grep -qx "$fp_alice acme-corp;" "$MAP" || ! grep -qx "$fp_bob globex;" "$MAP"; then
        cs_diag "expected '$fp_alice acme-corp;' and '$fp_bob globex;' in the map"
        cs_diag_file "$MAP" 10
        return 1
    fi
}

# The backend's answer, exactly "account=ACCOUNT" on a line of its own.
backend_saw() {
    grep -qx "account=$1" "$CS_OUT" || {
        cs_diag "backend did not see account=$1"
        cs_diag_file "$CS_OUT" 12
        return 1
    }
}

check_account_reaches_backend() {
    http_accept "$URL" alice 'account=' acme-corp && backend_saw acme-corp &&
        http_accept "$URL" bob 'account=' globex && backend_saw globex
}

check_claimed_account_overwritten() {
    local mark
    mark=$(cs_log_mark)
    cs_curl "$URL" alice -H "X-Certstore-Account: globex" || {
        cs_diag "curl as alice failed (exit $CS_CURL_RC)"
        return 1
    }
    backend_saw acme-corp && cs_log_wait "$mark" "$(cs_log_accept_re acme-corp)"
}

# alice-renewed: same key as alice, new certificate, from the pinned CA, but
# mapped by nothing. certstore refuses the handshake; the map never matters.
check_unmapped_refused() {
    http_reject "$URL" alice-renewed no-mapping
}

# bob's mapping removed and the map not yet exported again: certstore
# already refuses him. Exported and reloaded: the map no longer has him and
# alice still gets her account through the new workers.
check_stale_map_cannot_admit() {
    local old
    cs_cli map rm "$PKI/bob.pem" && http_reject "$URL" bob no-mapping || return 1
    export_map || return 1
    if grep -q globex "$MAP"; then
        cs_diag "the exported map still has bob's account"
        return 1
    fi
    old=$(http_children "$HTTP_SERVER_PID")
    kill -HUP "$HTTP_SERVER_PID" && http_wait_replaced "$HTTP_SERVER_PID" "$old" 2 &&
        http_accept "$URL" alice 'account=' acme-corp && backend_saw acme-corp &&
        http_reject "$URL" bob no-mapping
}

cs_check 1 "export --format nginx-map writes '<sha1> <account>;' per mapping" check_export_lines
cs_check 2 "the backend receives each client's account in X-Certstore-Account" \
    check_account_reaches_backend
cs_check 3 "an account header sent by the client is replaced by the mapped one" \
    check_claimed_account_overwritten
cs_check 4 "an unmapped client from the pinned CA never reaches the backend" check_unmapped_refused
cs_check 5 "a removed mapping is refused before the map is exported again; after export and HUP the map agrees" \
    check_stale_map_cannot_admit

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$NGX/error.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
