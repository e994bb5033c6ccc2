#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The exported server maps load in the servers themselves and say what the
# policy says: a certificate with several mappings (cert and spki, as
# certstore(1) shows for alice) is one line, with the account
# `certstore check` decides; one the policy rejects is not in the map.
# `nginx -t` refuses a key twice ("conflicting parameter"); `haproxy -c`
# parses the map as HAProxy loads it.
# shellcheck disable=SC2317 # the check functions run through cs_check
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cs_require_server nginx
NGINX_BIN=$CS_SERVER_BIN
cs_require_server haproxy
HAPROXY_BIN=$CS_SERVER_BIN
cs_setup map-export
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki

# alice: cert -> acme, spki -> globex (the policy: cert first, acme).
# bob: a disabled cert mapping and an spki one (the policy: mapping-disabled).
# carol: cert -> carol, whose account is disabled (account-disabled).
# eve: cert -> acme with the backdating check, made after eve's notBefore
# (issued-before-mapping).
if ! { cs_cli init &&
    cs_cli pin add "$PKI/ca-a.pem" &&
    cs_cli pin add "$PKI/ca-b.pem" &&
    cs_cli account add acme && cs_cli account add globex &&
    cs_cli map add "$PKI/alice.pem" --account acme &&
    cs_cli map add "$PKI/alice.pem" --kind spki --account globex &&
    cs_cli map add "$PKI/bob.pem" --account globex &&
    cs_cli map add "$PKI/bob.pem" --kind spki --account acme &&
    cs_cli map disable "$PKI/bob.pem" &&
    cs_cli map add "$PKI/carol.pem" --account carol --create-account &&
    cs_cli account disable carol &&
    cs_cli map add "$PKI/eve.pem" --account acme --not-issued-before created; }; then
    echo "Bail out! could not build the test database" >&2
    exit 1
fi

NMAP=$WORK/nginx.map
HMAP=$WORK/haproxy.map
"$CERTSTORE_BIN" --db "$CS_DB" export --format nginx-map >"$NMAP" 2>"$WORK/out/nginx-export.err" ||
    { cs_diag_file "$WORK/out/nginx-export.err"; echo "Bail out! export nginx-map failed" >&2; exit 1; }
"$CERTSTORE_BIN" --db "$CS_DB" export --format haproxy-map >"$HMAP" 2>"$WORK/out/haproxy-export.err" ||
    { cs_diag_file "$WORK/out/haproxy-export.err"; echo "Bail out! export haproxy-map failed" >&2; exit 1; }

der_digest() { openssl x509 -in "$PKI/$2.pem" -outform DER | openssl dgst "-$1" -r | cut -d' ' -f1; }

# The account `certstore check` decides for NAME's chain, or "" when rejected.
decided_account() {
    "$CERTSTORE_BIN" --db "$CS_DB" check "$PKI/$1-chain.pem" --ca "$PKI/roots.pem" 2>/dev/null |
        sed -n '1s/^accept account=\([^ ]*\).*/\1/p'
}

# map_line_is MAP DIGEST NAME SUFFIX: the map has NAME's line exactly as
# the policy decides it, or none when the policy rejects NAME.
map_line_is() {
    local map=$1 digest=$2 name=$3 suffix=$4 key account lines
    key=$(der_digest "$digest" "$name")
    account=$(decided_account "$name")
    lines=$(grep -c "^$key " "$map")
    if [ -z "$account" ]; then
        [ "$lines" -eq 0 ] && return 0
        cs_diag "$name is rejected by the policy but is in $map:"
    else
        [ "$lines" -eq 1 ] && grep -qx "$key $account$suffix" "$map" && return 0
        cs_diag "$map: wanted one line '$key $account$suffix' for $name:"
    fi
    cs_diag_file "$map" 10
    return 1
}

check_nginx_map_follows_policy() {
    [ "$(decided_account alice)" = acme ] || { cs_diag "check alice: not acme"; return 1; }
    map_line_is "$NMAP" sha1 alice ';' && map_line_is "$NMAP" sha1 bob ';' &&
        map_line_is "$NMAP" sha1 carol ';' && map_line_is "$NMAP" sha1 eve ';'
}

check_haproxy_map_follows_policy() {
    map_line_is "$HMAP" sha256 alice '' && map_line_is "$HMAP" sha256 bob '' &&
        map_line_is "$HMAP" sha256 carol '' && map_line_is "$HMAP" sha256 eve ''
}

check_nginx_loads_map() {
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<NGX
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 16; }
http {
    access_log off;
    map \$ssl_client_fingerprint \$certstore_account {
        include $NMAP;
        default "";
    }
}
NGX
    "$NGINX_BIN" -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/out/nginx-t.txt" 2>&1 ||
        { cs_diag "nginx -t refuses the exported map:"; cs_diag_file "$WORK/out/nginx-t.txt" 5; return 1; }
}

check_haproxy_loads_map() {
    cat >"$WORK/haproxy.cfg" <<HAP
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend tls
    bind 127.0.0.1:$(cs_free_port) ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required
    http-request set-header X-Certstore-Account %[ssl_c_der,digest(sha256),hex,lower,map($HMAP)]
    http-request return status 200
HAP
    "$HAPROXY_BIN" -c -f "$WORK/haproxy.cfg" >"$WORK/out/haproxy-c.txt" 2>&1 ||
        { cs_diag "haproxy -c refuses the exported map:"; cs_diag_file "$WORK/out/haproxy-c.txt" 5; return 1; }
}

check_left_out_counted() {
    if grep -q "1 mapping-disabled" "$WORK/out/nginx-export.err" &&
        grep -q "1 account-disabled" "$WORK/out/nginx-export.err" &&
        grep -q "1 issued-before-mapping" "$WORK/out/nginx-export.err"; then
        return 0
    fi
    cs_diag "export did not count what it left out:"
    cs_diag_file "$WORK/out/nginx-export.err"
    return 1
}

cs_check 1 "nginx-map: one line per certificate, the account the policy decides" \
    check_nginx_map_follows_policy
cs_check 2 "nginx -t loads the exported map" check_nginx_loads_map
cs_check 3 "haproxy-map: the account the policy decides, rejected ones left out" \
    check_haproxy_map_follows_policy
cs_check 4 "haproxy -c loads the exported map" check_haproxy_loads_map
cs_check 5 "what the maps leave out is counted by reason on stderr" check_left_out_counted
cs_finish
