# SPDX-License-Identifier: Apache-2.0
# HAProxy in Debian's production shape, shared by the HAProxy tests:
# master-worker (-W), nbthread 2, user/group haproxy, chroot /var/lib/haproxy
# with the database bind-mounted into it at the same path (optional since the
# provider keeps a directory descriptor; test_haproxy_chroot.sh runs without). A TLS frontend
# on $PORT sets one request header and proxies to a plain HTTP frontend on
# $BACKEND_PORT (the "application"), which answers with what it received.
# Sourced after common.sh.

CHROOT=/var/lib/haproxy

# Bind the database directory into the chroot (after cs_db_standard).
cs_haproxy_chroot() {
    [ -d "$CHROOT" ] || mkdir -p "$CHROOT"
    cs_chroot_bind "$CHROOT" "$WORK/db" || { echo "Bail out! bind mount failed" >&2; exit 1; }
}

# Write $WORK/haproxy.cfg. HEADER_RULE: the TLS frontend's request rule;
# BODY: the application's answer, an HAProxy log-format string.
cs_haproxy_config() { # HEADER_RULE BODY
    cat >"$WORK/haproxy.cfg" <<EOF
global
    master-worker
    nbthread 2
    user haproxy
    group haproxy
    chroot $CHROOT
    pidfile $WORK/haproxy.pid
    stats socket $WORK/haproxy.sock mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend fe_tls
    bind 127.0.0.1:$PORT ssl crt $PKI/server-combined.pem ca-file $PKI/roots.pem verify required
    $1
    default_backend be_app

backend be_app
    server app 127.0.0.1:$BACKEND_PORT

frontend fe_app
    bind 127.0.0.1:$BACKEND_PORT
    http-request return status 200 content-type text/plain lf-string "$2"
EOF
}

# Check the configuration, then start the master in the foreground with
# certstore's OPENSSL_CONF; sets MASTER_PID (stopped on exit).
cs_haproxy_start() {
    if ! "$CS_SERVER_BIN" -c -f "$WORK/haproxy.cfg" >"$WORK/out/haproxy-check.txt" 2>&1; then
        cs_diag_file "$WORK/out/haproxy-check.txt"
        echo "Bail out! haproxy rejects its configuration" >&2
        exit 1
    fi
    OPENSSL_CONF=$CS_CNF "$CS_SERVER_BIN" -W -db -f "$WORK/haproxy.cfg" \
        >"$WORK/log/haproxy.log" 2>&1 &
    MASTER_PID=$!
    cs_kill_on_exit "$MASTER_PID"
    if ! cs_wait_port "$PORT" 20 "$MASTER_PID" || ! cs_wait_port "$BACKEND_PORT" 5 "$MASTER_PID"; then
        cs_diag_file "$WORK/log/haproxy.log"
        echo "Bail out! haproxy did not start" >&2
        exit 1
    fi
}
