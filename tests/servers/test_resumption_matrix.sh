#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Which sessions Debian's servers resume under certstore, in the shapes
# people run them: nginx with two server blocks (SNI) on one port, Apache
# with two name-based <VirtualHost>s, HAProxy with two bind lines in its
# chroot. For each server and each way a client resumes (TLS 1.2 session
# ID, TLS 1.2 ticket, TLS 1.3 ticket): is a session resumed while nothing
# narrowed, in the server's other context (the other virtual host; HAProxy's
# other bind line, which shares its session cache), and after a narrowing
# change (another client's mapping removed)? The table is printed (README's
# resumption table comes from it); what is required: every kind resumes
# while nothing narrowed, on every server (HAProxy 2.6 keeps TLS 1.2
# session IDs in its own cache, which rewrites their session-id context);
# none resumes after a narrowing change, nor in the other host or bind.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || cs_skip "nginx not installed"
command -v apache2 >/dev/null || [ -x /usr/sbin/apache2 ] || cs_skip "apache2 not installed"
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || cs_skip "haproxy not installed"
cs_setup resumption-matrix
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki
cs_db_standard
cs_cli map add "$PKI/bob.pem" --account bob || exit 1
chgrp www-data "$WORK/db" && chmod 0750 "$WORK/db"
for f in "$CS_DB" "$CS_DB-wal" "$CS_DB-shm"; do
    [ -e "$f" ] && chgrp www-data "$f" && chmod 0640 "$f"
done
# HAProxy's user reads it too: through "other" on the directory and files.
chmod 0755 "$WORK/db"
for f in "$CS_DB" "$CS_DB-wal" "$CS_DB-shm"; do [ -e "$f" ] && chmod 0644 "$f"; done
chmod 0777 "$WORK/log"
chmod 0666 "$CS_LOG"
cs_write_openssl_cnf "$WORK/openssl.cnf"
MODULES=/usr/lib/apache2/modules
CHROOT=/var/lib/haproxy
[ -d "$CHROOT" ] || mkdir -p "$CHROOT"
cs_chroot_bind "$CHROOT" "$WORK/db" || { echo "Bail out! bind mount failed" >&2; exit 1; }
echo "resume-ok" >"$WORK/index.html"
chmod 0644 "$WORK/index.html"

start_nginx() {
    local d=$WORK/nginx
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes 2;
user www-data;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    ssl_certificate $PKI/server.pem;
    ssl_certificate_key $PKI/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate $PKI/roots.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    server { listen 127.0.0.1:$PORT ssl; server_name localhost; return 200 "resume-ok\n"; }
    server { listen 127.0.0.1:$PORT ssl; server_name other.example; return 200 "other\n"; }
}
EOF
    http_start_server "$d/out.txt" nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log"
}

start_haproxy_nt() { start_haproxy no-tls-tickets; }

start_apache() {
    local d=$WORK/apache v
    mkdir -p "$d/run"
    {
        cat <<EOF
ServerRoot $d
ServerName localhost
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule mime_module $MODULES/mod_mime.so
LoadModule dir_module $MODULES/mod_dir.so
LoadModule socache_shmcb_module $MODULES/mod_socache_shmcb.so
LoadModule ssl_module $MODULES/mod_ssl.so
User www-data
Group www-data
PidFile $d/run/httpd.pid
DefaultRuntimeDir $d/run
Mutex file:$d/run default
ErrorLog $d/error.log
TypesConfig /etc/mime.types
Listen 127.0.0.1:$PORT https
SSLSessionCache shmcb:$d/run/ssl_scache(512000)
EOF
        for v in localhost other.example; do
            cat <<EOF
<VirtualHost 127.0.0.1:$PORT>
    ServerName $v
    DocumentRoot $WORK
    DirectoryIndex index.html
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile $PKI/server.pem
    SSLCertificateKeyFile $PKI/server.key
    SSLCACertificateFile $PKI/roots.pem
    SSLVerifyClient require
    SSLVerifyDepth 3
    SSLSessionTickets on
    <Directory $WORK>
        Require all granted
    </Directory>
</VirtualHost>
EOF
        done
    } >"$d/httpd.conf"
    http_start_server "$d/out.txt" apache2 -DFOREGROUND -f "$d/httpd.conf"
}

# start_haproxy [BIND_OPTIONS]: no-tls-tickets makes TLS 1.3 tickets stateful,
# kept in HAProxy's shared session cache like TLS 1.2 session IDs.
start_haproxy() {
    local d=$WORK/haproxy opts=${1:-}
    mkdir -p "$d"
    cat >"$d/haproxy.cfg" <<EOF
global
    master-worker
    nbthread 2
    user haproxy
    group haproxy
    chroot $CHROOT
    pidfile $d/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$PORT ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required $opts
    bind 127.0.0.1:$PORT2 ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required $opts
    http-request return status 200 content-type text/plain string "resume-ok"
EOF
    http_start_server "$d/out.txt" haproxy -W -db -f "$d/haproxy.cfg"
}

# measure SERVER: one row per resumption kind into $WORK/table. The other
# context: the other virtual host by SNI (nginx, Apache: the same settings;
# nginx switches hosts after OpenSSL looked a TLS 1.2 session up, so the
# server name in certstore's binding keeps them apart) or HAProxy's other
# bind line (another SSL_CTX, the same shared session cache).
measure() {
    local server=$1 kind opts sess=$WORK/out/m.sess again=$WORK/out/m2.sess before other after
    local other_port=$PORT other_opts="-servername other.example"
    case $server in haproxy*) other_port=$PORT2 other_opts= ;; esac
    for kind in "${HTTP_RESUME_KINDS[@]}"; do
        opts=${kind#*:}
        http_session_save "$PORT" alice "$opts" "$sess" resume-ok alice || {
            cs_diag "$server ${kind%%:*}: no accepted full handshake"
            return 1
        }
        http_session_offer "$PORT" alice "$opts" "$sess" "$again" resume-ok
        before=$HTTP_OFFER
        http_session_offer "$other_port" alice "$opts $other_opts" "$sess" "$again" \
            'resume-ok|other'
        other=$HTTP_OFFER
        # The handshake decides here: nginx answers 421 to a request for
        # localhost on the other host's connection, and refuses outright a
        # TLS 1.3 ticket offered under another name.
        if [ "$other" = failed ]; then
            if cs_out_alerted; then
                other=refused
            elif cs_out_has 'Reused, TLS'; then
                other=reused
            elif cs_out_has 'New, TLS'; then
                other=new
            fi
        fi
        cs_cli map rm "$PKI/bob.pem" || return 1
        http_session_offer "$PORT" alice "$opts" "$sess" "$again" resume-ok
        after=$HTTP_OFFER
        cs_cli map add "$PKI/bob.pem" --account bob || return 1
        printf '%s %s %s %s %s\n' "$server" "${kind%%:*}" "$before" "$other" "$after" \
            >>"$WORK/table"
        [ "$after" != reused ] || {
            cs_diag "$server ${kind%%:*}: resumed after a narrowing change"
            return 1
        }
        [ "$before" = reused ] || {
            cs_diag "$server ${kind%%:*}: not resumed while nothing changed"
            return 1
        }
        [ "$other" != reused ] || {
            cs_diag "$server ${kind%%:*}: a session resumed in the other host or bind line"
            return 1
        }
    done
}

n=0
for server in nginx apache haproxy haproxy-nt; do
    n=$((n + 1))
    PORT=$(cs_free_port) && PORT2=$(cs_free_port) || exit 1
    "start_${server//-/_}" || exit 1
    if ! cs_wait_port "$PORT" 20 "$HTTP_SERVER_PID"; then
        cs_diag_file "$WORK/${server%-nt}/out.txt"
        cs_not_ok "$n" "$server starts"
        continue
    fi
    sleep 0.5 # the workers
    cs_check "$n" "$server: every kind resumes while nothing narrowed, none elsewhere or after" \
        measure "$server"
    http_stop_group "$HTTP_SERVER_PID"
done

cs_diag "server     kind              unchanged  other-context  after-narrowing"
while read -r server kind before other after; do
    cs_diag "$(printf '%-10s %-17s %-10s %-14s %s' "$server" "$kind" "$before" "$other" "$after")"
done <"$WORK/table"
cs_finish
