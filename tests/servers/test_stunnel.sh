#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# stunnel4, unmodified, enforces certstore through OPENSSL_CONF alone:
# Debian's binary in its production shape (foreground, setuid/setgid to
# stunnel4, verifyChain + requireCert against the test root), with a
# service that runs a one-line echo program behind the TLS endpoint.
# The seven checks of issue 5, TAP-style.

. "$(dirname "$0")/common.sh"

cs_require_server stunnel4 stunnel
cs_setup stunnel
cs_make_pki
cs_db_standard
cs_db_grant stunnel4
cs_log_grant stunnel4
cs_write_openssl_cnf "$WORK/openssl.cnf"

# stunnel re-reads its key on reload (SIGHUP) after it has dropped
# privileges: its group may read the key, as Debian's /etc/stunnel keys do.
chgrp stunnel4 "$PKI/server.key"
chmod 0640 "$PKI/server.key"

PORT=$(cs_free_port) || exit 1
MARKER='echo:GET / HTTP/1.0'

cat >"$WORK/echo.sh" <<'EOF'
#!/bin/sh
# The application behind stunnel: reads the request up to its blank line
# (closing earlier would reset the connection under stunnel's feet) and
# answers with the first line.
IFS= read -r first
while IFS= read -r line && [ -n "$(printf '%s' "$line" | tr -d '\r')" ]; do :; done
printf 'echo:%s\n' "$(printf '%s' "$first" | tr -d '\r')"
EOF
chmod 0755 "$WORK/echo.sh"

: >"$WORK/log/stunnel.log"
chown stunnel4:stunnel4 "$WORK/log/stunnel.log"
cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
output = $WORK/log/stunnel.log
debug = info
setuid = stunnel4
setgid = stunnel4

[certstore-test]
accept = 127.0.0.1:$PORT
exec = $WORK/echo.sh
cert = $PKI/server.pem
key = $PKI/server.key
CAfile = $PKI/roots.pem
verifyChain = yes
requireCert = yes
EOF

start_stunnel() {
    OPENSSL_CONF=$CS_CNF "$CS_SERVER_BIN" "$WORK/stunnel.conf" \
        >"$WORK/log/stunnel.stdout" 2>&1 &
    STUNNEL_PID=$!
    cs_kill_on_exit "$STUNNEL_PID"
    if ! cs_wait_port "$PORT" 20 "$STUNNEL_PID"; then
        cs_diag_file "$WORK/log/stunnel.log"
        cs_diag_file "$WORK/log/stunnel.stdout"
        echo "Bail out! stunnel did not start" >&2
        exit 1
    fi
    cs_diag "stunnel pid $STUNNEL_PID on 127.0.0.1:$PORT"
}

accept_as() { cs_expect_accept "$PORT" "$1" "$MARKER" "$2" "${@:3}"; }
reject_as() { cs_expect_reject "$PORT" "$1" "$2" "${@:3}"; }

check_mapped_accepted() { accept_as alice alice; }

check_unpinned_ca_rejected() { reject_as carol issuer-not-pinned; }

check_unmapped_rejected() { reject_as bob no-mapping; }

check_removed_mapping_rejected_also_on_resume() {
    cs_save_session "$PORT" alice -tls1_2 "$WORK/alice12.sess" "$MARKER" alice &&
        cs_save_session "$PORT" alice -tls1_3 "$WORK/alice13.sess" "$MARKER" alice &&
        cs_cli map rm "$PKI/alice.pem" &&
        reject_as alice no-mapping &&
        cs_resume_rejected "$PORT" alice -tls1_2 "$WORK/alice12.sess" no-mapping &&
        cs_resume_rejected "$PORT" alice -tls1_3 "$WORK/alice13.sess" no-mapping
}

check_added_mapping_accepted() {
    reject_as bob no-mapping &&
        cs_cli map add "$PKI/bob.pem" --account bob &&
        accept_as bob bob
}

check_store_unavailable_fails_closed() {
    local ok=0
    cs_db_hide || return 1
    reject_as bob store-unavailable || ok=1
    if ! cs_pid_alive "$STUNNEL_PID"; then
        cs_diag "stunnel died while the store was unavailable"
        ok=1
    fi
    cs_db_unhide || return 1
    [ "$ok" -eq 0 ] && accept_as bob bob
}

check_reload_keeps_enforcement() {
    local mark
    mark=$(grep -c 'Reading configuration from file' "$WORK/log/stunnel.log")
    kill -HUP "$STUNNEL_PID" || return 1
    # stunnel logs the re-read; wait for it (bounded) before testing.
    local i
    for i in $(seq 100); do
        [ "$(grep -c 'Reading configuration from file' "$WORK/log/stunnel.log")" -gt "$mark" ] &&
            grep -q 'Configuration successful' "$WORK/log/stunnel.log" && break
        sleep 0.1
    done
    if [ "$(grep -c 'Reading configuration from file' "$WORK/log/stunnel.log")" -le "$mark" ]; then
        cs_diag "stunnel did not reload on SIGHUP"
        cs_diag_file "$WORK/log/stunnel.log"
        return 1
    fi
    sleep 0.5
    cs_pid_alive "$STUNNEL_PID" || { cs_diag "stunnel died on reload"; return 1; }
    accept_as bob bob &&
        reject_as alice no-mapping &&
        reject_as carol issuer-not-pinned
}

start_stunnel
cs_check 1 "mapped client from a pinned CA is accepted" check_mapped_accepted
cs_check 2 "client of an unpinned CA under the same root is rejected" check_unpinned_ca_rejected
cs_check 3 "unmapped client from a pinned CA is rejected" check_unmapped_rejected
cs_check 4 "mapping removed live: rejected, also when resuming (TLS 1.2, 1.3)" \
    check_removed_mapping_rejected_also_on_resume
cs_check 5 "mapping added live: accepted on the next connection" check_added_mapping_accepted
cs_check 6 "database unavailable: rejected, server up; back: accepted" \
    check_store_unavailable_fails_closed
cs_check 7 "stunnel reload (SIGHUP) keeps enforcement" check_reload_keeps_enforcement
[ "$CS_FAILS" -eq 0 ] || cs_diag_file "$WORK/log/stunnel.log" 40
cs_finish
