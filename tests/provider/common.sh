# SPDX-License-Identifier: Apache-2.0
# What the provider's shell tests share: a work directory removed at exit
# with every process the test started, failure counting, the CLI on the
# test's store, an openssl.cnf that loads the provider, an unmodified
# `openssl s_server` on 127.0.0.1 and `s_client` connections to it.
# Sourced after `set -euo pipefail`; ctest sets CERTSTORE_BIN, MKPKI_BIN
# and CERTSTORE_MODULE_DIR.

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}" "${CERTSTORE_MODULE_DIR:?}"
. "$(dirname "${BASH_SOURCE[0]}")/../common/openssl_cnf.sh"

failures=0
server_pid=
port=
TP_PIDS=()
TP_AS=() # a command prefix the server runs under (e.g. setpriv to nobody)
# TP_SERVER_CA: what client certificates must chain to (default $pki/root.pem);
# TP_CLIENT_DIR: where NAME.pem, NAME.key (and NAME-chain.pem) are (default $pki).

# tp_init NAME: $work (new, removed at exit), and $pki, $db, $log in it.
tp_init() {
    work=$(mktemp -d "/tmp/certstore-$1-XXXXXX")
    pki=$work/pki db=$work/certstore.db log=$work/decisions.log
    trap tp_cleanup EXIT
    trap 'exit 130' INT TERM
}

tp_cleanup() {
    local pid
    for pid in ${TP_PIDS[@]+"${TP_PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

# tp_track PID: a background process of the test, killed at exit.
tp_track() { TP_PIDS+=("$1"); }

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# The CLI on the test's store, its output dropped (errors still show).
cs() { "$CERTSTORE_BIN" --db "$db" "$@" >/dev/null; }

# tp_finish WHAT: the verdict line and the exit status.
tp_finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures failure(s)" >&2
        exit 1
    fi
    echo "$1: all outcomes as expected"
}

# tp_openssl_cnf FILE [LINE...]: the provider just built on $db, logging to
# $log, with each LINE added to its section (e.g. 'mode = audit').
tp_openssl_cnf() { cs_provider_cnf "$1" "$CERTSTORE_MODULE_DIR/certstore.so" "$db" "$log" "${@:2}"; }

# tp_start_s_server CONF [s_server option...]: `openssl s_server -rev` under
# CONF on a free port of 127.0.0.1 (in $port), asking for a client
# certificate that chains to TP_SERVER_CA; run as TP_AS; its output in
# $work/server.out. The test fails at once if it does not start.
tp_start_s_server() {
    local conf=$1 found=
    shift
    : >"$work/server.out"
    OPENSSL_CONF=$conf timeout "${TP_SERVER_SECONDS:-240}" ${TP_AS[@]+"${TP_AS[@]}"} \
        openssl s_server -accept 127.0.0.1:0 -cert "$pki/server.pem" -key "$pki/server.key" \
        -CAfile "${TP_SERVER_CA:-$pki/root.pem}" -Verify 3 -rev "$@" >"$work/server.out" 2>&1 &
    server_pid=$!
    tp_track "$server_pid"
    for _ in $(seq 1 50); do
        found=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out" | head -n 1)
        [ -n "$found" ] && break
        sleep 0.1
    done
    [ -n "$found" ] || {
        cat "$work/server.out" >&2
        echo "FAIL: s_server did not start" >&2
        exit 1
    }
    port=$found
}

tp_stop_s_server() {
    [ -n "$server_pid" ] || return 0
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# client NAME OUT [s_client option...]: one connection presenting NAME's
# certificate (and chain, where the PKI has one) and sending a probe line
# that `s_server -rev` sends back reversed; the output is kept in OUT.
client() {
    local name=$1 out=$2 dir=${TP_CLIENT_DIR:-$pki} chain_opt=()
    shift 2
    [ ! -f "$dir/$name-chain.pem" ] || chain_opt=(-cert_chain "$dir/$name-chain.pem")
    (printf 'certstore-probe\n'; sleep 1) |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$pki/root.pem" -cert "$dir/$name.pem" -key "$dir/$name.key" \
            ${chain_opt[@]+"${chain_opt[@]}"} "$@" >"$out" 2>&1 || true
}
data_flowed() { grep -q 'eborp-erotstrec' "$1"; }
reused() { grep -q '^Reused' "$1"; }

# expect_accepted NAME WHY [s_client option...]: served (the probe came back).
expect_accepted() {
    client "$1" "$work/out" "${@:3}"
    data_flowed "$work/out" || {
        cat "$work/out" >&2
        fail "$1 was not accepted ($2)"
    }
}
# expect_rejected NAME WHY [s_client option...]: not served.
expect_rejected() {
    client "$1" "$work/out" "${@:3}"
    ! data_flowed "$work/out" || fail "$1 was accepted ($2)"
}
# expect_log PATTERN: a decision line matches (grep's basic regex).
expect_log() {
    grep -q -- "$1" "$log" || {
        cat "$log" >&2
        fail "log lacks: $1"
    }
}
