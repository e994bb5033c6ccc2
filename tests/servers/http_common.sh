# SPDX-License-Identifier: Apache-2.0
# HTTP-server helpers for test_nginx.sh, test_nginx_map.sh and
# test_apache.sh, on top of common.sh (source that first).
#
# The HTTP servers trust only roots.pem, exactly as a production server
# trusts only its partners' roots, so every client sends its issuing
# intermediate (common.sh's clients present NAME-chain.pem).
#
# Servers run in a session of their own (setsid) so that the cleanup reaches
# the master and every worker, even a worker orphaned by a crashed master.

# ---- server processes -------------------------------------------------------
#
# Process facts come from /proc: CI images need not have procps.

# http_pgid PID: the process group of PID (field 5 of /proc/PID/stat).
http_pgid() {
    local rest pgrp
    { read -r _ rest <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${rest##*) }
    read -r _ _ pgrp _ <<<"$rest"
    echo "$pgrp"
}

# http_euid PID: the effective uid of PID.
http_euid() {
    local key effective
    while read -r key _ effective _; do
        [ "$key" = Uid: ] && { echo "$effective"; return 0; }
    done <"/proc/$1/status" 2>/dev/null
    return 1
}

# http_stop_group PGID: TERM the whole process group, KILL what is left
# after 10 s. Refuses to signal the test's own group.
http_stop_group() {
    local pgid=$1 i
    [ -n "$pgid" ] && [ "$pgid" -gt 1 ] || return 0
    [ "$pgid" != "$(http_pgid $$)" ] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 -- "-$pgid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null
    wait "$pgid" 2>/dev/null
    return 0
}

# http_start_server OUTFILE COMMAND [ARGS...]: start COMMAND (a server in
# the foreground) with OPENSSL_CONF=$CS_CNF as the only certstore-specific
# setting, in its own session; HTTP_SERVER_PID is its pid (= process group).
http_start_server() {
    local out=$1
    shift
    OPENSSL_CONF=$CS_CNF setsid "$@" >"$out" 2>&1 </dev/null &
    HTTP_SERVER_PID=$!
    cs_on_exit "http_stop_group $HTTP_SERVER_PID"
    # setsid forks (and the pid above is not the server) only when called
    # by a process group leader; this script never is one, but check, once
    # setsid has had the moment it needs to exec and call setsid().
    local pgid i
    for ((i = 0; i < 50; i++)); do
        pgid=$(http_pgid "$HTTP_SERVER_PID")
        [ "$pgid" = "$HTTP_SERVER_PID" ] && return 0
        sleep 0.1
    done
    cs_diag "server pid $HTTP_SERVER_PID is not its own process group (${pgid:-gone})"
    return 1
}

# Child pids of PID, sorted, one line.
http_children() { cs_child_pids "$1" | tr '\n' ' '; }

# http_wait_children PID COUNT [SECONDS]: PID has at least COUNT children.
http_wait_children() {
    local pid=$1 count=$2 secs=${3:-20} i n
    for ((i = 0; i < secs * 10; i++)); do
        n=$(cs_child_pids "$pid" | wc -l)
        [ "$n" -ge "$count" ] && return 0
        sleep 0.1
    done
    cs_diag "$pid has $(cs_child_pids "$pid" | wc -l) children, expected $count"
    return 1
}

# http_wait_replaced PID "OLD CHILDREN" COUNT [SECONDS]: after a reload, none
# of the old children is left and COUNT new ones run.
http_wait_replaced() {
    local pid=$1 old=$2 count=$3 secs=${4:-30} i c left now
    for ((i = 0; i < secs * 10; i++)); do
        left=0
        for c in $old; do
            kill -0 "$c" 2>/dev/null && left=1
        done
        now=$(cs_child_pids "$pid" | wc -l)
        [ "$left" -eq 0 ] && [ "$now" -ge "$count" ] && return 0
        sleep 0.1
    done
    cs_diag "reload: old children still running or too few new ones: $(http_children "$pid")"
    return 1
}

# Every child of PID runs as USER: the workers really dropped privileges.
http_children_run_as() {
    local pid=$1 user=$2 c uid want n=0
    want=$(id -u "$user") || return 1
    for c in $(cs_child_pids "$pid"); do
        uid=$(http_euid "$c") || continue # exited meanwhile
        n=$((n + 1))
        [ "$uid" = "$want" ] || {
            cs_diag "child $c runs as uid $uid, not $user ($want)"
            return 1
        }
    done
    [ "$n" -gt 0 ] || {
        cs_diag "$pid has no worker children"
        return 1
    }
}

# ---- clients ----------------------------------------------------------------

# http_accept URL NAME BODY_ERE ACCOUNT: curl (NAME with its chain)
# gets a response body matching BODY_ERE; the log says accept for ACCOUNT.
http_accept() {
    cs_expect_curl_accept "$1" "$2" "$3" "$4"
}

# http_reject URL NAME REASON: curl fails with an SSL error, no response,
# and the decision log says reject with REASON.
http_reject() {
    cs_expect_curl_reject "$1" "$2" "$3"
}

# http_reject_both URL PORT NAME REASON: rejected for curl, and for
# s_client over TLS 1.2 and TLS 1.3 (the alert reaches the client).
http_reject_both() {
    local url=$1 port=$2 name=$3 reason=$4 proto
    http_reject "$url" "$name" "$reason" || return 1
    for proto in -tls1_2 -tls1_3; do
        cs_expect_reject "$port" "$name" "$reason" "$proto" || {
            cs_diag "(s_client $proto)"
            return 1
        }
    done
}

# http_answers_tls PORT: the server still completes TLS up to sending its
# certificate (a client without a certificate, so no decision is made).
http_answers_tls() {
    local port=$1
    cs_tls_client "$port" - -tls1_2
    cs_out_has '^Server certificate' || {
        cs_diag "port $port did not answer a TLS handshake"
        cs_diag_file "$CS_OUT" 10
        return 1
    }
}

# ---- resumption ---------------------------------------------------------------

# The three ways a client resumes, as s_client options.
HTTP_RESUME_KINDS=("tls12-ticket:-tls1_2" "tls12-session-id:-tls1_2 -no_ticket" "tls13-ticket:-tls1_3")

# http_session_save PORT NAME OPTS SESSFILE MARKER ACCOUNT: an accepted full
# handshake whose session is saved to SESSFILE.
http_session_save() {
    local port=$1 name=$2 opts=$3 sess=$4 marker=$5 account=$6
    rm -f "$sess"
    # shellcheck disable=SC2086 # OPTS is a word list on purpose
    cs_expect_accept "$port" "$name" "$marker" "$account" $opts \
        -sess_out "$sess" || return 1
    [ -s "$sess" ] || {
        cs_diag "$name $opts: no session was saved"
        return 1
    }
}

# http_session_offer PORT NAME OPTS SESSIN SESSOUT MARKER: offer SESSIN
# again; sets HTTP_OFFER to "reused" (resumed, data came back), "new" (full
# handshake, data came back) or "failed".
http_session_offer() {
    local port=$1 name=$2 opts=$3 sin=$4 sout=$5 marker=$6
    rm -f "$sout"
    # shellcheck disable=SC2086
    cs_tls_client "$port" "$name" $opts \
        -sess_in "$sin" -sess_out "$sout"
    if cs_out_has 'Reused, TLS' && cs_out_has "$marker"; then
        HTTP_OFFER=reused
    elif cs_out_has "$marker"; then
        HTTP_OFFER=new
    else
        HTTP_OFFER=failed
    fi
}

# http_resume_refused PORT NAME OPTS SESSFILE REASON: the saved session is
# not resumed and the full handshake it falls back to is rejected.
http_resume_refused() {
    local port=$1 name=$2 opts=$3 sess=$4 reason=$5
    # shellcheck disable=SC2086
    cs_expect_reject "$port" "$name" "$reason" $opts \
        -sess_in "$sess" || return 1
    if cs_out_has 'Reused, TLS'; then
        cs_diag "$name $opts: the old session was resumed"
        return 1
    fi
}

# ---- the seven checks of the drop-in proof (issue 5) ----------------------------
#
# The test script starts its server, then sets:
#   HTTP_URL            https://127.0.0.1:PORT/ (curl)
#   HTTP_PORT           the TLS port (s_client)
#   HTTP_MARKER         ERE matching the response body the server sends
#   HTTP_SERVER_PID     the master / parent process
#   HTTP_WORKER_USER    the user the workers must run as
#   HTTP_WORKERS        how many worker children to expect
#   HTTP_EXPECT_REUSE   1 when sessions must resume under certstore while
#                       nothing narrowed (so check 4 proves something);
#                       0 when certstore makes the server's sessions
#                       non-resumable (reported, not required)
# and defines http_server_reload, the reload its operators use.
# The store is cs_db_standard's: ca-a pinned, alice mapped, bob not.

http_check_mapped_accepted() {
    http_accept "$HTTP_URL" alice "$HTTP_MARKER" alice &&
        cs_expect_accept "$HTTP_PORT" alice "$HTTP_MARKER" alice -tls1_2 &&
        http_children_run_as "$HTTP_SERVER_PID" "$HTTP_WORKER_USER"
}

http_check_unpinned_rejected() {
    http_reject_both "$HTTP_URL" "$HTTP_PORT" carol issuer-not-pinned
}

http_check_unmapped_rejected() {
    http_reject_both "$HTTP_URL" "$HTTP_PORT" bob no-mapping
}

# A session saved while alice was mapped, per resumption kind; then the
# mapping is removed and neither a new connection nor any saved session
# gets in.
http_check_removed_mapping() {
    local k kind opts sess
    for k in "${HTTP_RESUME_KINDS[@]}"; do
        kind=${k%%:*} opts=${k#*:} sess=$WORK/out/session-$kind
        http_session_save "$HTTP_PORT" alice "$opts" "$sess.0" "$HTTP_MARKER" alice ||
            return 1
        http_session_offer "$HTTP_PORT" alice "$opts" "$sess.0" "$sess.1" "$HTTP_MARKER"
        if [ "$HTTP_OFFER" = reused ]; then
            cs_diag "$kind: resumed while mapped"
        elif [ "$HTTP_EXPECT_REUSE" = 1 ]; then
            cs_diag "$kind: offering the session while still mapped gave '$HTTP_OFFER'," \
                "not a resumption, so refusing it later would prove nothing"
            cs_diag_file "$CS_OUT" 15
            return 1
        else
            cs_diag "$kind: not resumed while mapped ($HTTP_OFFER): certstore makes this" \
                "server's sessions non-resumable"
        fi
        # The newest session the client holds is the one it would offer.
        [ -s "$sess.1" ] || cp "$sess.0" "$sess.1"
    done
    cs_cli map rm "$PKI/alice.pem" || return 1
    http_reject "$HTTP_URL" alice no-mapping || return 1
    for k in "${HTTP_RESUME_KINDS[@]}"; do
        kind=${k%%:*} opts=${k#*:} sess=$WORK/out/session-$kind
        http_resume_refused "$HTTP_PORT" alice "$opts" "$sess.1" no-mapping || {
            cs_diag "($kind)"
            return 1
        }
        http_resume_refused "$HTTP_PORT" alice "$opts" "$sess.0" no-mapping || {
            cs_diag "($kind, first session)"
            return 1
        }
    done
}

# bob (refused in check 3) is mapped live and gets in; alice, removed in
# check 4, is mapped again for the checks that follow.
http_check_added_mapping() {
    cs_cli map add "$PKI/bob.pem" --account bob &&
        http_accept "$HTTP_URL" bob "$HTTP_MARKER" bob &&
        cs_cli map add "$PKI/alice.pem" --account alice &&
        http_accept "$HTTP_URL" alice "$HTTP_MARKER" alice
}

http_check_db_unavailable() {
    local rc=0
    http_accept "$HTTP_URL" alice "$HTTP_MARKER" alice || return 1
    cs_db_hide || return 1
    http_reject "$HTTP_URL" alice store-unavailable || rc=1
    cs_pid_alive "$HTTP_SERVER_PID" || {
        cs_diag "the server (pid $HTTP_SERVER_PID) died with the database gone"
        rc=1
    }
    http_answers_tls "$HTTP_PORT" || rc=1
    cs_db_unhide || return 1
    http_accept "$HTTP_URL" alice "$HTTP_MARKER" alice || rc=1
    return "$rc"
}

# After the reload, new workers decide, and they are live: a mapping removed
# after the reload is refused at once.
http_check_reload() {
    local old
    old=$(http_children "$HTTP_SERVER_PID")
    http_server_reload || return 1
    http_wait_replaced "$HTTP_SERVER_PID" "$old" "$HTTP_WORKERS" || return 1
    cs_diag "workers before reload: $old; after: $(http_children "$HTTP_SERVER_PID")"
    http_children_run_as "$HTTP_SERVER_PID" "$HTTP_WORKER_USER" &&
        http_accept "$HTTP_URL" alice "$HTTP_MARKER" alice &&
        http_reject "$HTTP_URL" carol issuer-not-pinned &&
        http_accept "$HTTP_URL" bob "$HTTP_MARKER" bob &&
        cs_cli map rm "$PKI/bob.pem" &&
        http_reject "$HTTP_URL" bob no-mapping
}

http_run_checks() {
    cs_check 1 "mapped client from a pinned CA is accepted and gets the response" \
        http_check_mapped_accepted
    cs_check 2 "client whose CA chains to the trusted root but is not pinned is rejected" \
        http_check_unpinned_rejected
    cs_check 3 "unmapped client from a pinned CA is rejected" http_check_unmapped_rejected
    cs_check 4 "mapping removed live: next connection and resumed TLS 1.2/1.3 sessions rejected" \
        http_check_removed_mapping
    cs_check 5 "mapping added live: accepted on the next connection" http_check_added_mapping
    cs_check 6 "database unavailable: rejected with store-unavailable, server up; back: accepted" \
        http_check_db_unavailable
    cs_check 7 "$HTTP_RELOAD_NAME keeps enforcement in the new workers" http_check_reload
}
