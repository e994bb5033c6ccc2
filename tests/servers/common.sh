# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash disable=SC2034  # variables here are for the scripts that source it
# Shared helpers for the real-server drop-in tests (tests/servers/test_*.sh).
#
# Source it from bash, then call cs_setup first:
#
#   . "$(dirname "$0")/common.sh"
#   cs_require_server stunnel4 stunnel      # exit 77 if not installed
#   cs_setup stunnel                        # temp dir, trap, tools check
#   cs_make_pki                             # $PKI = mkpki output
#   cs_db_standard                          # pins ca-a, maps alice, bob unmapped
#   cs_db_grant stunnel4                    # server's group may read, not write
#   cs_write_openssl_cnf "$WORK/openssl.cnf"
#
# Environment (set by ctest, see CMakeLists.txt): CERTSTORE_BIN, MKPKI_BIN,
# CERTSTORE_MODULE_DIR. Everything lives under one mkdtemp directory ($WORK)
# that the EXIT trap removes after running every registered cleanup (LIFO),
# so a failing or interrupted test leaves no process, mount or file behind.
#
# Variables the helpers set or read:
#   WORK      temp directory (0755 so the servers' users can reach files)
#   PKI       $WORK/pki, the mkpki layout
#   CS_DB     $WORK/db/certstore.db (directory $WORK/db)
#   CS_LOG    $WORK/log/decisions.log, the provider's decision log
#   CS_CNF    the openssl.cnf written by cs_write_openssl_cnf
#   CS_OUT    last client transcript file
#   CS_FAILS  number of "not ok" lines so far
#
# Only add to this file; other scripts depend on each function's behaviour.

# shellcheck source=../common/openssl_cnf.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/openssl_cnf.sh"

set -u

CS_FAILS=0
CS_CLEANUPS=()
CS_PORTS_TAKEN=" "
CS_SEQ=0
CS_TIMEOUT=${CS_TIMEOUT:-15}

# ---- reporting ----------------------------------------------------------

cs_diag() { printf '# %s\n' "$*"; }

cs_skip() {
    printf '1..0 # SKIP %s\n' "$*"
    exit 77
}

cs_ok() { printf 'ok %s - %s\n' "$1" "$2"; }

cs_not_ok() {
    printf 'not ok %s - %s\n' "$1" "$2"
    CS_FAILS=$((CS_FAILS + 1))
}

# cs_check N DESCRIPTION COMMAND [ARGS...]: run COMMAND, report ok/not ok.
# COMMAND prints its own "# ..." diagnostics on failure.
cs_check() {
    local n=$1 desc=$2
    shift 2
    if "$@"; then
        cs_ok "$n" "$desc"
    else
        cs_not_ok "$n" "$desc"
    fi
}

# Exit status for the script: non-zero when any check failed.
cs_finish() {
    if [ "$CS_FAILS" -ne 0 ]; then
        cs_diag "$CS_FAILS check(s) failed"
        exit 1
    fi
    exit 0
}

# Print a file as diagnostics (last N lines, default 25).
cs_diag_file() {
    local file=$1 lines=${2:-25}
    [ -f "$file" ] || { cs_diag "($file missing)"; return 0; }
    cs_diag "--- last $lines lines of $file"
    tail -n "$lines" "$file" | sed 's/^/#   /'
}

# ---- setup and cleanup ----------------------------------------------------

# cs_require_server BINARY...: exit 77 unless one of them is installed;
# sets CS_SERVER_BIN to the first found.
cs_require_server() {
    local b d
    for b in "$@"; do
        CS_SERVER_BIN=$(command -v "$b" 2>/dev/null) && return 0
        for d in /usr/sbin /usr/bin /sbin; do
            if [ -x "$d/$b" ]; then
                CS_SERVER_BIN=$d/$b
                return 0
            fi
        done
    done
    cs_skip "server binary not installed: $* (install its Debian package)"
}

# Register a cleanup command (a string evaluated at exit, last in first out).
cs_on_exit() { CS_CLEANUPS+=("$1"); }

# Kill a process (and wait for it) at exit.
cs_kill_on_exit() { cs_on_exit "cs_stop_pid $1"; }

# Stop a process: TERM, then KILL after 5 s. Quiet if already gone.
cs_stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cs_run_cleanups() {
    local status=$? i
    trap - EXIT INT TERM HUP
    for ((i = ${#CS_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CS_CLEANUPS[$i]}" || true
    done
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        if [ -n "${CS_KEEP:-}" ]; then
            cs_diag "kept $WORK (CS_KEEP set)"
        else
            rm -rf -- "$WORK"
        fi
    fi
    return "$status"
}

# cs_setup NAME: check the tools, make $WORK and install the trap.
cs_setup() {
    local name=${1:-server}
    local v
    for v in CERTSTORE_BIN MKPKI_BIN CERTSTORE_MODULE_DIR; do
        if [ -z "${!v:-}" ]; then
            echo "Bail out! $v is not set (run through ctest)" >&2
            exit 1
        fi
    done
    [ -x "$CERTSTORE_BIN" ] || { echo "Bail out! no CLI at $CERTSTORE_BIN" >&2; exit 1; }
    [ -x "$MKPKI_BIN" ] || { echo "Bail out! no mkpki at $MKPKI_BIN" >&2; exit 1; }
    [ -f "$CERTSTORE_MODULE_DIR/certstore.so" ] ||
        { echo "Bail out! no certstore.so in $CERTSTORE_MODULE_DIR" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "Bail out! no openssl CLI" >&2; exit 1; }

    WORK=$(mktemp -d "/tmp/certstore-$name.XXXXXX") || exit 1
    trap cs_run_cleanups EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    # The servers drop privileges; they must reach files below $WORK.
    chmod 0755 "$WORK"
    mkdir -p "$WORK/out" "$WORK/log" "$WORK/db"
    CS_DB=$WORK/db/certstore.db
    CS_LOG=$WORK/log/decisions.log
    : >"$CS_LOG"
    cs_diag "work dir $WORK"
}

# ---- PKI and database ----------------------------------------------------

# cs_make_pki [--rsa]: the shared test PKI in $PKI.
cs_make_pki() {
    PKI=$WORK/pki
    "$MKPKI_BIN" "$PKI" "$@" >"$WORK/out/mkpki.txt" 2>&1 || {
        cs_diag_file "$WORK/out/mkpki.txt"
        echo "Bail out! mkpki failed" >&2
        exit 1
    }
    # Certificates world-readable, keys for root only: servers load them
    # before dropping privileges.
    chmod -R a+rX "$PKI"
    chmod 0600 "$PKI"/*.key
    # Servers that take one file with certificate and key (HAProxy).
    cat "$PKI/server.pem" "$PKI/server.key" >"$PKI/server-combined.pem"
    chmod 0600 "$PKI/server-combined.pem"
}

# cs_cli ARGS...: the certstore CLI on $CS_DB; output in $WORK/out/cli.txt.
cs_cli() {
    if ! "$CERTSTORE_BIN" --db "$CS_DB" "$@" >"$WORK/out/cli.txt" 2>&1; then
        cs_diag "certstore $* failed:"
        cs_diag_file "$WORK/out/cli.txt" 10
        return 1
    fi
}

# The standard store: ca-a pinned, accounts alice and bob, only alice mapped
# (bob is "an unmapped client from a pinned CA" until a test maps him).
cs_db_standard() {
    cs_cli init &&
        cs_cli pin add "$PKI/ca-a.pem" &&
        cs_cli account add alice &&
        cs_cli account add bob &&
        cs_cli map add "$PKI/alice.pem" --account alice || {
        echo "Bail out! could not build the test database" >&2
        exit 1
    }
}

# cs_db_grant GROUP: the server's group may read the database, never write
# it or its directory (db, -wal and -shm 0640, directory 0750, owner root).
cs_db_grant() {
    local group=$1 f
    chown root:"$group" "$WORK/db"
    chmod 0750 "$WORK/db"
    for f in "$CS_DB" "$CS_DB-wal" "$CS_DB-shm"; do
        [ -e "$f" ] || continue
        chown root:"$group" "$f"
        chmod 0640 "$f"
    done
}

# The decision log: owned by the server's user in case the provider opens
# it after the server dropped privileges.
cs_log_grant() {
    local user=$1 group=${2:-$1}
    chown "$user:$group" "$WORK/log" "$CS_LOG"
    chmod 0750 "$WORK/log"
    chmod 0640 "$CS_LOG"
}

# Make the database unavailable (renamed away) and bring it back.
cs_db_hide() { mv -- "$CS_DB" "$CS_DB.away"; }
cs_db_unhide() { mv -- "$CS_DB.away" "$CS_DB"; }

# cs_write_openssl_cnf FILE [MODE]: the openssl.cnf a server gets through
# OPENSSL_CONF, loading the freshly built provider. Sets CS_CNF.
cs_write_openssl_cnf() {
    local file=$1
    cs_provider_cnf "$file" "$CERTSTORE_MODULE_DIR/certstore.so" "$CS_DB" "$CS_LOG" \
        "mode = ${2:-enforce}"
    chmod 0644 "$file"
    CS_CNF=$file
}

# ---- ports and processes --------------------------------------------------

cs_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A TCP port on 127.0.0.1 nobody listens on, never the same one twice.
cs_free_port() {
    local p i
    for i in $(seq 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        case $CS_PORTS_TAKEN in *" $p "*) continue ;; esac
        if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q . && ! cs_port_open "$p"; then
            CS_PORTS_TAKEN="$CS_PORTS_TAKEN$p "
            echo "$p"
            return 0
        fi
    done
    echo "Bail out! no free port" >&2
    return 1
}

# cs_wait_port PORT [SECONDS] [PID]: wait until something listens on PORT;
# fails early if PID (the server) died.
cs_wait_port() {
    local port=$1 secs=${2:-20} pid=${3:-} i
    for ((i = 0; i < secs * 10; i++)); do
        cs_port_open "$port" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            cs_diag "process $pid died before listening on $port"
            return 1
        fi
        sleep 0.1
    done
    cs_diag "nothing listens on port $port after ${secs}s"
    return 1
}

cs_pid_alive() { kill -0 "$1" 2>/dev/null; }

# ---- the decision log -----------------------------------------------------

# Current line count of the decision log: pass it to cs_log_wait.
cs_log_mark() { wc -l <"$CS_LOG" | tr -d ' '; }

# cs_log_wait MARK ERE [SECONDS]: a log line after MARK matches ERE.
cs_log_wait() {
    local mark=$1 re=$2 secs=${3:-5} i
    for ((i = 0; i < secs * 10; i++)); do
        tail -n "+$((mark + 1))" "$CS_LOG" | grep -Eq -- "$re" && return 0
        sleep 0.1
    done
    cs_diag "no decision log line matching /$re/ after line $mark; new lines:"
    tail -n "+$((mark + 1))" "$CS_LOG" | tail -n 10 | sed 's/^/#   /'
    return 1
}

# The log line for a rejection / acceptance.
# Keys may come in any order; values may be quoted.
cs_log_reject_re() {
    echo "\\bresult=reject\\b.*\\breason=\"?$1([\" ]|\$)|\\breason=\"?$1[\" ].*\\bresult=reject\\b"
}
cs_log_accept_re() {
    echo "\\bresult=accept\\b.*\\baccount=\"?$1([\" ]|\$)|\\baccount=\"?$1[\" ].*\\bresult=accept\\b"
}

# ---- clients --------------------------------------------------------------

# What cs_tls_client sends once connected: an HTTP/1.0 request by default
# (a line an echo backend sends back, too).
CS_PAYLOAD=${CS_PAYLOAD:-$'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'}

cs_next_out() {
    CS_SEQ=$((CS_SEQ + 1))
    CS_OUT=$WORK/out/$CS_SEQ-$1.txt
}

# cs_tls_client PORT NAME [s_client ARGS...]: openssl s_client with client
# certificate $PKI/NAME.pem (and NAME-chain.pem), sends $CS_PAYLOAD and reads until the server
# closes (bounded by $CS_TIMEOUT). NAME "-" sends no certificate.
# Transcript (stdout+stderr) in $CS_OUT; returns s_client's status.
cs_tls_client() {
    local port=$1 name=$2
    shift 2
    local certargs=()
    [ "$name" = - ] || certargs=(-cert "$PKI/$name.pem" -key "$PKI/$name.key")
    # The server trusts only the root: the client sends its intermediate.
    [ -f "$PKI/$name-chain.pem" ] && certargs+=(-cert_chain "$PKI/$name-chain.pem")
    cs_next_out "s_client-$name"
    # Wait before sending: a TLS 1.3 client is done before the server has
    # judged its certificate, and data sent into a connection the server
    # is closing turns the alert into a reset. $CS_PAYLOAD_DELAY seconds.
    { sleep "${CS_PAYLOAD_DELAY:-0.3}"; printf '%s' "$CS_PAYLOAD"; } |
        timeout "$CS_TIMEOUT" openssl s_client -connect "127.0.0.1:$port" \
            -servername localhost -CAfile "$PKI/roots.pem" -verify_return_error \
            -ign_eof "${certargs[@]}" "$@" >"$CS_OUT" 2>&1
}

# The handshake was refused by the server: s_client reports the alert it got.
cs_out_alerted() { grep -Eq 'SSL alert number [0-9]+|alert (bad certificate|certificate required|handshake failure|unknown ca|access denied)' "$CS_OUT"; }

cs_out_has() { grep -Eq -- "$1" "$CS_OUT"; }

# cs_expect_accept PORT NAME MARKER_ERE ACCOUNT [s_client ARGS...]:
# application data came back and the log says accept with ACCOUNT.
cs_expect_accept() {
    local port=$1 name=$2 marker=$3 account=$4 mark
    shift 4
    mark=$(cs_log_mark)
    cs_tls_client "$port" "$name" "$@"
    if ! cs_out_has "$marker"; then
        cs_diag "$name: no application data matching /$marker/"
        cs_diag_file "$CS_OUT" 15
        return 1
    fi
    cs_log_wait "$mark" "$(cs_log_accept_re "$account")"
}

# cs_expect_reject PORT NAME REASON [s_client ARGS...]: the handshake got
# an alert, no application data, and the log says reject with REASON.
# Set CS_NO_DATA_ERE to what must not appear (default: HTTP or echo data).
cs_expect_reject() {
    local port=$1 name=$2 reason=$3 mark
    shift 3
    mark=$(cs_log_mark)
    cs_tls_client "$port" "$name" "$@"
    if ! cs_out_alerted; then
        cs_diag "$name: s_client shows no alert from the server"
        cs_diag_file "$CS_OUT" 15
        return 1
    fi
    # Unanchored: s_client interleaves its own notes with the data.
    if cs_out_has "${CS_NO_DATA_ERE:-HTTP/1\.[01] [1-5][0-9][0-9]|echo:}"; then
        cs_diag "$name: rejected client still got application data"
        cs_diag_file "$CS_OUT" 15
        return 1
    fi
    cs_log_wait "$mark" "$(cs_log_reject_re "$reason")"
}

# cs_save_session PORT NAME PROTO SESSFILE MARKER ACCOUNT: an accepted
# connection (PROTO -tls1_2 or -tls1_3) whose session is saved to SESSFILE.
cs_save_session() {
    local port=$1 name=$2 proto=$3 sess=$4 marker=$5 account=$6
    rm -f "$sess"
    cs_expect_accept "$port" "$name" "$marker" "$account" "$proto" -sess_out "$sess" ||
        return 1
    if [ ! -s "$sess" ]; then
        cs_diag "$name $proto: no session was saved to $sess"
        return 1
    fi
}

# cs_resume_accepted PORT NAME PROTO SESSFILE MARKER: offering the saved
# session resumes it ("Reused") and the connection is served. A resumption
# is no new decision, so no log line is waited for.
cs_resume_accepted() {
    local port=$1 name=$2 proto=$3 sess=$4 marker=$5
    cs_tls_client "$port" "$name" "$proto" -sess_in "$sess"
    if ! cs_out_has 'Reused, TLS' || ! cs_out_has "$marker"; then
        cs_diag "$name $proto: the session was not resumed and served, though nothing changed"
        cs_diag_file "$CS_OUT" 15
        return 1
    fi
}

# cs_resume_rejected PORT NAME PROTO SESSFILE REASON: offering the saved
# session must not resume ("Reused") and the full handshake is rejected.
cs_resume_rejected() {
    local port=$1 name=$2 proto=$3 sess=$4 reason=$5
    cs_expect_reject "$port" "$name" "$reason" "$proto" -sess_in "$sess" || return 1
    if cs_out_has 'Reused, TLS'; then
        cs_diag "$name $proto: the old session was resumed"
        return 1
    fi
}

# cs_curl URL NAME [curl ARGS...]: curl with client certificate NAME;
# body+headers in $CS_OUT, stderr in $CS_OUT.err, exit code in CS_CURL_RC.
cs_curl() {
    local url=$1 name=$2
    shift 2
    local certargs=()
    # curl sends every certificate of a PEM file: leaf plus intermediate.
    if [ -f "$PKI/$name-chain.pem" ]; then
        certargs=(--cert "$PKI/$name-chain.pem" --key "$PKI/$name.key")
    elif [ "$name" != - ]; then
        certargs=(--cert "$PKI/$name.pem" --key "$PKI/$name.key")
    fi
    cs_next_out "curl-$name"
    CS_CURL_RC=0
    curl -sS -i --max-time "$CS_TIMEOUT" --cacert "$PKI/roots.pem" "${certargs[@]}" \
        "$@" "$url" >"$CS_OUT" 2>"$CS_OUT.err" || CS_CURL_RC=$?
    return "$CS_CURL_RC"
}

# cs_expect_curl_accept URL NAME BODY_ERE ACCOUNT [curl ARGS...]
cs_expect_curl_accept() {
    local url=$1 name=$2 body=$3 account=$4 mark
    shift 4
    mark=$(cs_log_mark)
    if ! cs_curl "$url" "$name" "$@" || ! cs_out_has "$body"; then
        cs_diag "curl as $name: exit $CS_CURL_RC, expected body /$body/"
        cs_diag_file "$CS_OUT.err" 5
        cs_diag_file "$CS_OUT" 10
        return 1
    fi
    cs_log_wait "$mark" "$(cs_log_accept_re "$account")"
}

# cs_expect_curl_reject URL NAME REASON [curl ARGS...]: curl fails with an
# SSL error (35 handshake, 56 receive: TLS 1.3 alerts come after Finished)
# and the log says reject with REASON.
cs_expect_curl_reject() {
    local url=$1 name=$2 reason=$3 mark
    shift 3
    mark=$(cs_log_mark)
    cs_curl "$url" "$name" "$@"
    case $CS_CURL_RC in
    35 | 56) ;;
    *)
        cs_diag "curl as $name: exit $CS_CURL_RC, expected an SSL error (35 or 56)"
        cs_diag_file "$CS_OUT.err" 5
        cs_diag_file "$CS_OUT" 10
        return 1
        ;;
    esac
    if grep -q '^HTTP/' "$CS_OUT"; then
        cs_diag "curl as $name: rejected client still got an HTTP response"
        return 1
    fi
    cs_log_wait "$mark" "$(cs_log_reject_re "$reason")"
}

# ---- chroot ---------------------------------------------------------------

# cs_chroot_bind CHROOT DIR: make DIR visible at the same path inside
# CHROOT (a bind mount), undone at exit together with the directories it
# had to create. Register it before starting the server so the server is
# stopped (LIFO) before the unmount.
cs_chroot_bind() {
    local dir=$2 target=$1$2 created d
    created=$(mkdir -pv -- "$target" | sed -E "s/^mkdir: created directory '(.*)'$/\\1/") ||
        return 1
    for d in $created; do
        cs_on_exit "rmdir -- '$d' 2>/dev/null"
    done
    mount --bind -- "$dir" "$target" || return 1
    cs_on_exit "umount -- '$target' 2>/dev/null || umount -l -- '$target'"
}

# cs_child_pids PID: the direct children of PID, one per line, sorted
# (from /proc, so no procps needed).
cs_child_pids() {
    local parent=$1 f pid rest ppid
    for f in /proc/[0-9]*/stat; do
        { read -r pid rest <"$f"; } 2>/dev/null || continue
        # Field 4, after the ")" that closes the command name.
        rest=${rest##*) }
        read -r _ ppid _ <<<"$rest"
        [ "$ppid" = "$parent" ] && echo "$pid"
    done | sort
}
