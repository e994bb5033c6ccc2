#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# HAProxy, unmodified, enforces certstore through OPENSSL_CONF alone:
# Debian's binary in master-worker mode (-W), nbthread 2, user/group
# haproxy, chroot /var/lib/haproxy as in Debian's default configuration,
# with the database bind-mounted into the chroot at the same path. The TLS
# frontend proxies to a plain HTTP backend (a second HAProxy frontend).
# The seven checks of issue 5, TAP-style.

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

# The application answers with the client the TLS frontend saw.
cs_haproxy_config 'http-request set-header X-Client-CN %[ssl_c_s_dn(CN)]' \
    'hello cn=%[req.hdr(x-client-cn)]\n'
cs_haproxy_start

worker_pids() { cs_child_pids "$MASTER_PID"; }
cs_diag "haproxy master $MASTER_PID, worker(s) $(worker_pids | tr '\n' ' ')on 127.0.0.1:$PORT"

accept_as() { cs_expect_curl_accept "$URL" "$1" "$(BODY_OF "$1")" "$2"; }
reject_as() { cs_expect_curl_reject "$URL" "$1" "$2"; }
CS_PAYLOAD=$'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'

check_mapped_accepted() { accept_as alice alice; }

check_unpinned_ca_rejected() {
    reject_as carol issuer-not-pinned &&
        cs_expect_reject "$PORT" carol issuer-not-pinned
}

check_unmapped_rejected() {
    reject_as bob no-mapping &&
        cs_expect_reject "$PORT" bob no-mapping
}

check_removed_mapping_rejected_also_on_resume() {
    cs_save_session "$PORT" alice -tls1_2 "$WORK/alice12.sess" "hello cn=alice" alice &&
        cs_save_session "$PORT" alice -tls1_3 "$WORK/alice13.sess" "hello cn=alice" alice &&
        cs_resume_accepted "$PORT" alice -tls1_2 "$WORK/alice12.sess" "hello cn=alice" &&
        cs_resume_accepted "$PORT" alice -tls1_3 "$WORK/alice13.sess" "hello cn=alice" &&
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
    if ! cs_pid_alive "$MASTER_PID" || [ -z "$(worker_pids)" ]; then
        cs_diag "haproxy master or worker died while the store was unavailable"
        ok=1
    fi
    cs_db_unhide || return 1
    [ "$ok" -eq 0 ] && accept_as bob bob
}

# USR2 to the master: it re-executes itself (re-reading openssl.cnf) and
# forks a new worker; the old one leaves once idle.
reload_haproxy() {
    local old new i
    old=$(worker_pids)
    kill -USR2 "$MASTER_PID" || return 1
    for ((i = 0; i < 200; i++)); do
        new=$(worker_pids)
        if [ -n "$new" ] && [ -z "$(comm -12 <(echo "$old") <(echo "$new"))" ]; then
            cs_diag "reloaded: worker(s) $(echo "$old" | tr '\n' ' ')-> $(echo "$new" | tr '\n' ' ')"
            cs_wait_port "$PORT" 10 "$MASTER_PID"
            return
        fi
        sleep 0.1
    done
    cs_diag "no new worker replaced $(echo "$old" | tr '\n' ' ')after USR2"
    cs_diag_file "$WORK/log/haproxy.log"
    return 1
}

check_reload_keeps_enforcement() {
    reload_haproxy &&
        accept_as bob bob &&
        reject_as alice no-mapping &&
        reject_as carol issuer-not-pinned
}

cs_check 1 "mapped client from a pinned CA is accepted" check_mapped_accepted
cs_check 2 "client of an unpinned CA under the same root is rejected" check_unpinned_ca_rejected
cs_check 3 "unmapped client from a pinned CA is rejected" check_unmapped_rejected
cs_check 4 "sessions resume while mapped; mapping removed live: rejected, also when resuming (TLS 1.2, 1.3)" \
    check_removed_mapping_rejected_also_on_resume
cs_check 5 "mapping added live: accepted on the next connection" check_added_mapping_accepted
cs_check 6 "database unavailable: rejected, server up; back: accepted" \
    check_store_unavailable_fails_closed
cs_check 7 "haproxy master-worker reload (USR2) keeps enforcement" check_reload_keeps_enforcement
[ "$CS_FAILS" -eq 0 ] || cs_diag_file "$WORK/log/haproxy.log" 40
cs_finish
