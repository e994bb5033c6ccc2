#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# HAProxy chrooted as in Debian's configuration, WITHOUT a bind mount:
# master-worker (-W), nbthread 2, user/group haproxy, chroot to an empty
# directory of this test's own, where the database's path names nothing.
# The provider, loaded by the master as root before the chroot, keeps a
# descriptor on the database's directory and the workers reach the
# database, its -wal and -shm through it, with their own credentials.
# TAP-style.

. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/haproxy_common.sh"

cs_require_server haproxy
cs_setup haproxy-chroot
cs_make_pki
cs_db_standard
cs_db_grant haproxy
cs_log_grant haproxy
cs_write_openssl_cnf "$WORK/openssl.cnf"

# An empty jail, owned by root: nothing of $WORK is below it.
CHROOT=$WORK/jail
mkdir -m 0755 "$CHROOT"

PORT=$(cs_free_port) || exit 1
BACKEND_PORT=$(cs_free_port) || exit 1
URL=https://localhost:$PORT/

# With the HAProxy Lua module built, lua.certstore_account (its own reads of
# the database, in the worker) must reach the database through the jail too.
if [ -n "${CERTSTORE_HAPROXY_LUA:-}" ] && [ -f "$CERTSTORE_HAPROXY_LUA" ] &&
    [ -n "${CERTSTORE_LUA_CPATH:-}" ]; then
    LUA=1
    export LUA_CPATH_5_3="$CERTSTORE_LUA_CPATH/?.so;;"
    BODY_OF() { echo "^hello cn=$1 account=$2\$"; }
    cs_haproxy_config 'http-request set-header X-Client-CN %[ssl_c_s_dn(CN)]
    http-request set-header X-Certstore-Account %[lua.certstore_account]' \
        'hello cn=%[req.hdr(x-client-cn)] account=%[req.hdr(x-certstore-account)]\n'
    sed -i "s|^    chroot .*|&\n    lua-load $CERTSTORE_HAPROXY_LUA|" "$WORK/haproxy.cfg"
else
    LUA=0
    cs_diag "certstore_haproxy.so not built: lua.certstore_account not checked"
    BODY_OF() { echo "^hello cn=$1\$"; }
    cs_haproxy_config 'http-request set-header X-Client-CN %[ssl_c_s_dn(CN)]' \
        'hello cn=%[req.hdr(x-client-cn)]\n'
fi
cs_haproxy_start

worker_pids() { cs_child_pids "$MASTER_PID"; }
cs_diag "haproxy master $MASTER_PID, worker(s) $(worker_pids | tr '\n' ' ')on 127.0.0.1:$PORT"

accept_as() { cs_expect_curl_accept "$URL" "$1" "$(BODY_OF "$1" "$2")" "$2"; }
reject_as() { cs_expect_curl_reject "$URL" "$1" "$2"; }

# The worker runs in the jail, as haproxy, and cannot see the database by path.
check_worker_jailed_without_mount() {
    local pid root uid
    pid=$(worker_pids | head -n 1)
    [ -n "$pid" ] || { cs_diag "no worker"; return 1; }
    root=$(readlink "/proc/$pid/root")
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
    if [ "$root" != "$CHROOT" ] || [ "$uid" != "$(id -u haproxy)" ]; then
        cs_diag "worker $pid: root $root, uid $uid; expected $CHROOT, $(id -u haproxy)"
        return 1
    fi
    if [ -e "$CHROOT$CS_DB" ] || grep -q " $CHROOT[/ ]" /proc/self/mountinfo; then
        cs_diag "the database is reachable by path inside $CHROOT"
        return 1
    fi
}

check_mapped_accepted() { accept_as alice alice; }

check_unmapped_rejected() { reject_as bob no-mapping; }

check_removed_mapping_rejected_without_reload() {
    local before
    before=$(worker_pids)
    cs_cli map rm "$PKI/alice.pem" &&
        reject_as alice no-mapping || return 1
    [ "$(worker_pids)" = "$before" ] || { cs_diag "the worker changed"; return 1; }
}

# A deploy tool's replacement: copy, change the copy, rename it (with its
# checkpointed -wal and -shm) over the live database.
check_replaced_by_rename_noticed() {
    local next=$WORK/db/next.db
    cp -p -- "$CS_DB" "$next" &&
        "$CERTSTORE_BIN" --db "$next" map add "$PKI/bob.pem" --account bob \
            >"$WORK/out/cli-next.txt" 2>&1 || {
        cs_diag_file "$WORK/out/cli-next.txt"
        return 1
    }
    reject_as bob no-mapping &&
        mv -- "$next-wal" "$CS_DB-wal" &&
        mv -- "$next-shm" "$CS_DB-shm" &&
        mv -- "$next" "$CS_DB" &&
        accept_as bob bob
}

# The directory closed to haproxy: the descriptor widens nothing.
check_unreadable_directory_fails_closed() {
    local ok=0
    chmod 0700 "$WORK/db" || return 1
    reject_as bob store-unavailable || ok=1
    chmod 0750 "$WORK/db" || return 1
    [ "$ok" -eq 0 ] && accept_as bob bob
}

# USR2: the master re-executes itself, loads the provider again and opens
# the directory afresh; the new workers decide through it.
reload_haproxy() {
    local old new i
    old=$(worker_pids)
    kill -USR2 "$MASTER_PID" || return 1
    for ((i = 0; i < 200; i++)); do
        new=$(worker_pids)
        if [ -n "$new" ] && [ -z "$(comm -12 <(echo "$old") <(echo "$new"))" ]; then
            cs_wait_port "$PORT" 10 "$MASTER_PID"
            return
        fi
        sleep 0.1
    done
    cs_diag "no new worker replaced $(echo "$old" | tr '\n' ' ')after USR2"
    return 1
}

# A directory replaced as a whole cannot be followed through the
# descriptor: rejected, saying so, until a reload.
check_replaced_directory_fails_closed_until_reload() {
    local mark
    mv -- "$WORK/db" "$WORK/db.old" && cp -a -- "$WORK/db.old" "$WORK/db" || return 1
    mark=$(cs_log_mark)
    reject_as bob store-unavailable &&
        cs_log_wait "$mark" 'directory replaced or removed since load' &&
        reload_haproxy &&
        accept_as bob bob &&
        reject_as alice no-mapping
}

cs_check 1 "worker chrooted to an empty directory as haproxy, no bind mount" \
    check_worker_jailed_without_mount
cs_check 2 "mapped client accepted, account logged (and from lua.certstore_account)" \
    check_mapped_accepted
cs_check 3 "unmapped client rejected" check_unmapped_rejected
cs_check 4 "map rm: the next handshake is rejected, no reload" \
    check_removed_mapping_rejected_without_reload
cs_check 5 "database replaced by rename (cp + mv): noticed" check_replaced_by_rename_noticed
cs_check 6 "database directory unreadable to haproxy: store-unavailable; readable: accepted" \
    check_unreadable_directory_fails_closed
cs_check 7 "directory replaced as a whole: store-unavailable until reload, then accepted" \
    check_replaced_directory_fails_closed_until_reload
[ "$CS_FAILS" -eq 0 ] || cs_diag_file "$WORK/log/haproxy.log" 40
cs_finish
