#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore benchmarks (issue 6): the one command that prints the table.
#
#   tests/bench/run.sh [--build DIR] [--no-build] [--fresh] [--no-servers] [--smoke]
#                      [--only SECTION,...]
#
# Builds a Release tree in build-bench (or DIR), then measures, each against
# plain OpenSSL in the same run: in-process handshakes with stores of 0, 10k,
# 1M and 10M mappings and with first-seen clients, callgrind instruction
# counts per server connection, decision latency warm and cold (and with a
# CRL of 1M revoked serials, REVOKED_N), peak RSS, import and
# map add/rm at scale, HAProxy with and without the provider, liveness, and
# end to end (issue 16): nginx and HAProxy full handshakes per second under
# `openssl s_time -new` and under bench_pool's first-seen clients; and a fleet
# (issue 18): 20 gateways' stores kept in sync with one Samba AD DC of 50,000
# users (tests/bench/fleet.sh; FLEET_GATEWAYS, FLEET_USERS, FLEET_CHANGES,
# FLEET_REST, FLEET_POLL change its size; FLEET_FORM=loop|follow how the
# gateways sync).
# The generated PKI, client pool and databases are cached in DIR/bench-cache
# and rebuilt only when missing (--fresh rebuilds them, re-measuring the
# imports). BENCH_MODULE=FILE measures that build of the provider instead;
# E2E_ROUNDS and E2E_SECONDS shorten the end-to-end section.
# --smoke: tiny store, a few handshakes, everything in a temp dir; checks that
# every part works (the provider rejects what it must, every server logs its
# decisions, no stale decisions), never how fast. --no-servers skips the
# servers (HAProxy, liveness, end to end).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/build-bench
do_build=1 fresh=0 smoke=0 servers=1
only="handshakes,instructions,profile,decisions,memory,admin,revocation,haproxy,liveness,e2e,fleet"
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$(cd "$2" && pwd); shift ;;
    --no-build) do_build=0 ;;
    --fresh) fresh=1 ;;
    --smoke) smoke=1 ;;
    --no-servers) servers=0 ;;
    --only) only=$2; shift ;;
    *) echo "usage: $0 [--build DIR] [--no-build] [--fresh] [--no-servers] [--smoke]" \
            "[--only handshakes,instructions,profile,decisions,memory,admin,revocation,haproxy,liveness,e2e,fleet]" >&2
       exit 2 ;;
    esac
    shift
done

if [ "$do_build" -eq 1 ]; then
    cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" --target certstore certstore_provider mkpki \
        bench_handshake bench_gen bench_decide bench_load bench_pool >/dev/null
fi
# shellcheck source=/dev/null
. "$build/tests/bench/bench_env.sh"
# BENCH_MODULE=path measures another build of the provider (an older commit's) instead.
CERTSTORE_MODULE=${BENCH_MODULE:-$CERTSTORE_MODULE}

RUN=$(mktemp -d /tmp/certstore-bench-XXXXXX)
SERVER_PIDS=()
cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "$*" >&2; }

if [ "$smoke" -eq 1 ]; then
    CACHE=$RUN/cache
    SIZES="0:0 1k:1000"
    DECIDE_SIZES="1k"
    REVOKED_N=${REVOKED_N:-10000} REVOKED_LABEL=${REVOKED_N:-10000}
    BIG=1k
    LEAVES_N=50 ROUNDS=2 HS_COUNT=20 HS_WARMUP=5 DECIDE_SAMPLES=1000
    HAP_ROUNDS=1 HAP_COUNT=20 LIVE_COUNT=3
    E2E_SIZE=1k E2E_ROUNDS=1 E2E_SECONDS=1 POOL_N=50 IR_COUNT=${IR_COUNT:-3} IR_WARMUP=${IR_WARMUP:-2}
    PROF_COUNT=20 PROF_WARMUP=5 PROF_FREQ=1000
    FLEET_GATEWAYS=${FLEET_GATEWAYS:-3} FLEET_USERS=${FLEET_USERS:-200} FLEET_CHANGES=${FLEET_CHANGES:-3}
    FLEET_REST=${FLEET_REST:-5} FLEET_POLL=${FLEET_POLL:-2} FLEET_TIMEOUT=${FLEET_TIMEOUT:-30}
else
    CACHE=$build/bench-cache
    SIZES="0:0 10k:10000 1m:1000000 10m:10000000"
    DECIDE_SIZES="10k 1m 10m"
    REVOKED_N=${REVOKED_N:-1000000} REVOKED_LABEL=${REVOKED_N:-1000000}
    BIG=10m
    # Many short rounds: the median of 31 paired ratios shrugs off the bursts
    # of a shared machine that a few long rounds soak up (see the A/A rows).
    LEAVES_N=1000 ROUNDS=31 HS_COUNT=300 HS_WARMUP=30 DECIDE_SAMPLES=200000
    HAP_ROUNDS=15 HAP_COUNT=1000 LIVE_COUNT=100
    E2E_SIZE=1m E2E_ROUNDS=${E2E_ROUNDS:-5} E2E_SECONDS=${E2E_SECONDS:-8} POOL_N=10000
    IR_COUNT=${IR_COUNT:-100} IR_WARMUP=${IR_WARMUP:-10}
    PROF_COUNT=${PROF_COUNT:-2000} PROF_WARMUP=50 PROF_FREQ=${PROF_FREQ:-4000}
    FLEET_GATEWAYS=${FLEET_GATEWAYS:-20} FLEET_USERS=${FLEET_USERS:-50000} FLEET_CHANGES=${FLEET_CHANGES:-30}
    FLEET_REST=${FLEET_REST:-120} FLEET_POLL=${FLEET_POLL:-5} FLEET_TIMEOUT=${FLEET_TIMEOUT:-600}
fi
[ "$fresh" -eq 0 ] || rm -rf "$CACHE"
PKI_EC=$CACHE/pki-ec PKI_RSA=$CACHE/pki-rsa LEAVES=$CACHE/leaves.pem
POOL=$CACHE/pool-$POOL_N.pem POOL_KEYS=$CACHE/pool-$POOL_N.key
# Clients that send their leaf alone (s_time) need Partner CA A among the trusted.
E2E_TRUST=$PKI_EC/root-and-ca-a.pem

cli() { "$CERTSTORE_CLI" --db "$1" "${@:2}"; }
now_ns() { date +%s%N; }

# ---- inputs (cached) ---------------------------------------------------------

ensure_pki() {
    [ -f "$CACHE/pki.done" ] && return 0
    # A new PKI invalidates every database made for the old one.
    rm -rf "$CACHE"
    mkdir -p "$PKI_EC" "$PKI_RSA"
    "$MKPKI" "$PKI_EC" >/dev/null
    "$MKPKI" "$PKI_RSA" --rsa >/dev/null
    "$BENCH_GEN" leaves --pki "$PKI_EC" --count "$LEAVES_N" --out "$LEAVES"
    touch "$CACHE/pki.done"
}

# The first-seen clients (sections 1, 1b and 7), each with its key; every store maps them.
ensure_pool() {
    [ -f "$POOL.done" ] && return 0
    note "bench: generating $POOL_N pool clients (one-time, cached in $CACHE)"
    "$BENCH_GEN" leaves --pki "$PKI_EC" --count "$POOL_N" --out "$POOL" --keys "$POOL_KEYS"
    rm -f "$CACHE"/db-*.db.done # stores made before the pool lack its mappings
    touch "$POOL.done"
}

db_bytes() {
    local total=0 f
    for f in "$1" "$1-wal"; do
        [ -f "$f" ] && total=$((total + $(stat -c %s "$f")))
    done
    echo "$total"
}

# The real certificates every store maps (so handshakes and decisions are
# accepted) plus `count` synthetic mappings.
ensure_db() {
    local size=$1 count=$2 db=$CACHE/db-$1.db
    if [ -f "$db.done" ]; then
        # A store cached by an older build: migrate it forward in place.
        cli "$db" init >/dev/null
        return 0
    fi
    rm -f "$db" "$db-wal" "$db-shm" "$db.import"
    local csv=$CACHE/import-$size.csv
    note "bench: generating the $size store (one-time, cached in $CACHE)"
    "$BENCH_GEN" csv --count "$count" --issuer "$PKI_EC/ca-a.pem" --out "$csv" \
        --real "$PKI_EC/alice.pem:alice" --real "$PKI_RSA/alice.pem:alice-rsa" \
        --real "$LEAVES:bench-leaf" --real "$POOL:pool-leaf"
    local rows=$(($(wc -l <"$csv") - 1))
    cli "$db" init >/dev/null
    cli "$db" pin add "$PKI_EC/ca-a.pem" --note "bench EC" >/dev/null
    cli "$db" pin add "$PKI_RSA/ca-a.pem" --note "bench RSA" >/dev/null
    local t0 t1
    t0=$(now_ns)
    cli "$db" import --create-accounts "$csv" >/dev/null
    t1=$(now_ns)
    rm -f "$csv"
    echo "$rows $((t1 - t0)) $(db_bytes "$db") $(date -u +%Y-%m-%dT%H:%MZ)" >"$db.import"
    touch "$db.done"
}

write_conf() { # FILE [DB]: with DB the certstore provider is active too
    {
        printf 'openssl_conf = openssl_init\n\n[openssl_init]\nproviders = provider_sect\n\n'
        printf '[provider_sect]\ndefault = default_sect\n'
        [ $# -lt 2 ] || printf 'certstore = certstore_sect\n'
        printf '\n[default_sect]\nactivate = 1\n'
        [ $# -lt 2 ] ||
            printf '\n[certstore_sect]\nmodule = %s\nactivate = 1\ndb = %s\nmode = enforce\nlog = %s\n' \
                "$CERTSTORE_MODULE" "$2" "$RUN/decisions.log"
    } >"$1"
}

# ---- the sections ------------------------------------------------------------

describe_machine() {
    echo "## certstore benchmark ($(date -u +%Y-%m-%d))"
    echo
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
    echo "- $(openssl version), SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?'), Linux $(uname -r)"
    [ "$smoke" -eq 0 ] || echo "- SMOKE RUN: tiny store, few handshakes; the numbers mean nothing"
    echo
}

section_handshakes() {
    echo "### 1. In-process handshakes (server CPU: SSL_new, SSL_do_handshake, SSL_free)"
    echo
    echo "TLS 1.3, mutual auth, memory BIO pair; median of $ROUNDS interleaved rounds of $HS_COUNT handshakes"
    echo "(after $HS_WARMUP warm-up) per side; ratio = median of per-round ratios."
    echo
    echo "| chain, synthetic mappings | hs/s off | hs/s on | ratio on/off | peak RSS off (MiB) | peak RSS on (MiB) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    local entry size
    # A/A: both sides without the provider; how far from 1.000 noise alone moves the ratio.
    "$BENCH_HANDSHAKE" --pki "$PKI_EC" --aa --conf-off "$RUN/off.cnf" --rounds "$ROUNDS" \
        --count "$HS_COUNT" --warmup "$HS_WARMUP" --label "A/A: ECDSA P-256, no provider on either side"
    for entry in $SIZES; do
        size=${entry%%:*}
        "$BENCH_HANDSHAKE" --pki "$PKI_EC" --conf-on "$RUN/on-$size.cnf" \
            --conf-off "$RUN/off.cnf" --rounds "$ROUNDS" --count "$HS_COUNT" \
            --warmup "$HS_WARMUP" --label "ECDSA P-256, $size" | tee -a "$RUN/handshakes.md"
    done
    # A different mapped client every handshake: each decided in full.
    "$BENCH_HANDSHAKE" --pki "$PKI_EC" --conf-on "$RUN/on-$E2E_SIZE.cnf" \
        --conf-off "$RUN/off.cnf" --rounds "$ROUNDS" --count "$HS_COUNT" \
        --warmup "$HS_WARMUP" --pool "$POOL" --pool-keys "$POOL_KEYS" \
        --label "ECDSA P-256, $E2E_SIZE, first-seen clients (pool of $POOL_N)"
    for size in 0 "$BIG"; do
        "$BENCH_HANDSHAKE" --pki "$PKI_RSA" --conf-on "$RUN/on-$size.cnf" \
            --conf-off "$RUN/off.cnf" --rounds "$ROUNDS" --count "$HS_COUNT" \
            --warmup "$HS_WARMUP" --label "RSA-2048, $size"
    done
    echo
}

# Callgrind's instructions per counted server connection (bench_handshake's
# worker toggles collection around its server part): CONF SIDE CLIENT.
callgrind_per_connection() {
    local out=$RUN/callgrind.out extra=() n=$((IR_COUNT + IR_WARMUP))
    if [ "$3" != returning ]; then
        # As many pool clients as connections: loading all of them under
        # valgrind would take minutes and change nothing counted.
        awk -v n="$n" '/BEGIN CERTIFICATE/ { i++ } i <= n' "$POOL" >"$RUN/ir-pool.pem"
        awk -v n="$n" '/-----BEGIN .*PRIVATE KEY-----/ { i++ } i <= n' "$POOL_KEYS" >"$RUN/ir-pool.key"
        extra=(--pool "$RUN/ir-pool.pem" --pool-keys "$RUN/ir-pool.key")
    fi
    rm -f "$out"
    if ! OPENSSL_CONF=$1 valgrind --tool=callgrind --collect-atstart=no \
        --callgrind-out-file="$out" "$BENCH_HANDSHAKE" worker --pki "$PKI_EC" --expect "$2" \
        --count "$IR_COUNT" --warmup "$IR_WARMUP" "${extra[@]}" >/dev/null 2>"$RUN/callgrind.err"; then
        tail -5 "$RUN/callgrind.err" >&2
        echo "bench: the worker under callgrind failed ($2, $3 client)" >&2
        return 1
    fi
    awk -v n="$IR_COUNT" '/^(summary|totals):/ { t = $2 } END { if (t > 0) printf "%.0f\n", t / n; else exit 1 }' "$out"
}

section_instructions() {
    echo "### 1b. Instructions per server connection (callgrind)"
    echo
    if [ "$BENCH_CALLGRIND" != 1 ] || [ "$BENCH_SANITIZED" = 1 ] || ! command -v valgrind >/dev/null; then
        echo "(valgrind or its callgrind header missing, or a sanitized build: skipped)"
        echo
        return 0
    fi
    echo "The server's part of a connection (SSL_new, every SSL_do_handshake step, SSL_free),"
    echo "user-space instructions as callgrind counts them, mean of $IR_COUNT connections after"
    echo "$IR_WARMUP warm-up; $E2E_SIZE store, ECDSA P-256, TLS 1.3 mutual auth, decision log to a file."
    echo "Machine load does not change these; system calls are not in them."
    echo
    echo "| client | instructions, plain | instructions, certstore | ratio | certstore's part |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    local client off on
    for client in returning first-seen; do
        off=$(callgrind_per_connection "$RUN/off.cnf" off "$client") || return 1
        on=$(callgrind_per_connection "$RUN/on-$E2E_SIZE.cnf" on "$client") || return 1
        awk -v c="$client" -v a="$off" -v b="$on" \
            'BEGIN { printf "| %s | %d | %d | %.4f | %d |\n", c, a, b, b / a, b - a }'
    done
    echo
}

# perf's samples of one worker's handshakes, with the provider: what each of
# certstore's parts costs per server handshake (perf_share.py says how parts
# are told apart). CLIENT: returning or first-seen.
profile_per_connection() {
    local client=$1 data=$RUN/perf.data extra=() n=$((PROF_COUNT + PROF_WARMUP)) out ns
    if [ "$client" != returning ]; then
        awk -v n="$n" '/BEGIN CERTIFICATE/ { i++ } i <= n' "$POOL" >"$RUN/prof-pool.pem"
        awk -v n="$n" '/-----BEGIN .*PRIVATE KEY-----/ { i++ } i <= n' "$POOL_KEYS" >"$RUN/prof-pool.key"
        extra=(--pool "$RUN/prof-pool.pem" --pool-keys "$RUN/prof-pool.key")
    fi
    if ! out=$(OPENSSL_CONF=$RUN/on-$E2E_SIZE.cnf perf record -q -F "$PROF_FREQ" \
        --call-graph dwarf,8192 -o "$data" "$BENCH_HANDSHAKE" worker --pki "$PKI_EC" \
        --expect on --count "$PROF_COUNT" --warmup "$PROF_WARMUP" "${extra[@]}" 2>"$RUN/perf.err"); then
        tail -5 "$RUN/perf.err" >&2
        echo "bench: the worker under perf failed ($client client)" >&2
        return 1
    fi
    ns=$(sed -n 's/.*server_cpu_ns=\([0-9]*\) count=\([0-9]*\).*/\1 \2/p' <<<"$out" |
        awk '{ if ($2 > 0) printf "%.0f", $1 / $2 }')
    [ -n "$ns" ] || { echo "bench: no server CPU time from the worker under perf" >&2; return 1; }
    perf script -i "$data" -F ip,sym,dso 2>/dev/null |
        python3 "$top/tests/bench/perf_share.py" --handshakes "$n" --freq "$PROF_FREQ" \
            --server-ns "$ns" --label "$client"
    rm -f "$data"
}

section_profile() {
    echo "### 1c. Where certstore's time goes (perf samples)"
    echo
    if [ "$BENCH_SANITIZED" = 1 ] || ! command -v perf >/dev/null ||
        ! perf record -q -o "$RUN/perf-probe.data" true >/dev/null 2>&1; then
        echo "(perf missing, not permitted here (perf_event_paranoid), or a sanitized build: skipped)"
        echo
        return 0
    fi
    rm -f "$RUN/perf-probe.data"
    echo "One worker, $PROF_COUNT TLS 1.3 mutual-auth handshakes after $PROF_WARMUP warm-up, the"
    echo "$E2E_SIZE store, decision log to a file, sampled at $PROF_FREQ Hz with DWARF call graphs."
    echo "Each part is a certstore function (or system call) with what it calls; OpenSSL's own"
    echo "chain verification and one-time initialisation are not counted. Time, unlike the"
    echo "instruction counts, includes system calls and cache misses, so machine load moves it."
    echo
    echo "| client: part | µs per handshake | share of server CPU |"
    echo "| --- | ---: | ---: |"
    profile_per_connection returning || return 1
    profile_per_connection first-seen || return 1
    echo
}

drop_page_cache() {
    sync
    if [ "$smoke" -eq 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        echo dropped
    else
        echo "not dropped"
    fi
}

section_decisions() {
    echo "### 2. Decision latency (cs_decide on a verified chain)"
    echo
    echo "$LEAVES_N distinct mapped leaves; warm: $DECIDE_SAMPLES decisions after one untimed pass;"
    echo "cold: fresh process, each leaf once. Last column: cs_db_open and the first decision."
    echo
    echo "| synthetic mappings | mode | p50 (µs) | p99 (µs) | max (µs) | samples | open / first (µs) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    local size dropped
    for size in $DECIDE_SIZES; do
        "$BENCH_DECIDE" --db "$CACHE/db-$size.db" --pki "$PKI_EC" --leaves "$LEAVES" \
            --mode warm --samples "$DECIDE_SAMPLES" --label "$size"
        dropped=$(drop_page_cache)
        "$BENCH_DECIDE" --db "$CACHE/db-$size.db" --pki "$PKI_EC" --leaves "$LEAVES" \
            --mode cold --label "$size (page cache $dropped)"
    done
    echo
}

section_memory() {
    local row off on
    row=$(grep "ECDSA P-256, $BIG " "$RUN/handshakes.md")
    off=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $6); print $6}')
    on=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $7); print $7}')
    echo "### 3. Memory"
    echo
    echo "Peak RSS (VmHWM) of the in-process benchmark, $BIG-mapping store: $on MiB with the"
    echo "provider, $off MiB without: +$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.1f", a - b }') MiB."
    echo
}

section_admin() {
    echo "### 4. Administration at scale"
    echo
    echo "| import | mappings | seconds | mappings/s | database bytes | bytes/mapping | measured |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    local entry size rows ns bytes when
    for entry in $SIZES; do
        size=${entry%%:*}
        [ "$size" != 0 ] || continue
        read -r rows ns bytes when <"$CACHE/db-$size.db.import"
        awk -v s="$size" -v r="$rows" -v ns="$ns" -v b="$bytes" -v w="$when" 'BEGIN {
            printf "| %s | %d | %.1f | %.0f | %d | %.0f | %s |\n",
                s, r, ns / 1e9, r / (ns / 1e9), b, b / r, w }'
    done
    echo
    echo "map add / map rm latency on the $BIG store (wall time of the CLI process) is in"
    echo "the liveness table below."
    echo
}

# Issue 14: a large CRL on the pinned CA of every benchmark leaf; none of them is on it.
section_revocation() {
    local db=$RUN/revocation.db crl=$CACHE/crl-$REVOKED_N.der before after t0 t1
    [ -f "$crl" ] || "$BENCH_GEN" crl --pki "$PKI_EC" --count "$REVOKED_N" --out "$crl"
    cp "$CACHE/db-$DECIDE_SIZES_FIRST.db" "$db"
    echo "### 4b. Revocation: a CRL of $REVOKED_LABEL serials"
    echo
    echo "\`crl add\` of a $(($(stat -c %s "$crl") / 1048576)) MiB DER CRL of $REVOKED_LABEL revoked serials into the"
    echo "$DECIDE_SIZES_FIRST store, then decision latency (warm, as in section 2) with no CRL and with it."
    echo
    echo "| decisions on the $DECIDE_SIZES_FIRST store | mode | p50 (µs) | p99 (µs) | max (µs) | samples | open / first (µs) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    "$BENCH_DECIDE" --db "$db" --pki "$PKI_EC" --leaves "$LEAVES" --mode warm \
        --samples "$DECIDE_SAMPLES" --label "no CRL"
    before=$(db_bytes "$db")
    t0=$(now_ns)
    cli "$db" crl add "$crl" >/dev/null
    t1=$(now_ns)
    after=$(db_bytes "$db")
    "$BENCH_DECIDE" --db "$db" --pki "$PKI_EC" --leaves "$LEAVES" --mode warm \
        --samples "$DECIDE_SAMPLES" --label "$REVOKED_LABEL revoked serials"
    echo
    awk -v n="$REVOKED_N" -v ns="$((t1 - t0))" -v d="$((after - before))" 'BEGIN {
        printf "crl add: %.1f s (%.0f serials/s); the store grew by %d bytes, %.1f bytes per serial.\n",
            ns / 1e9, n / (ns / 1e9), d, d / n }'
    echo
    rm -f "$db" "$db-wal" "$db-shm"
}

free_port() {
    local port tries=0
    while [ $tries -lt 100 ]; do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    return 1
}

wait_port() { # PORT PID
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Start HAProxy (one process, HAP_THREADS threads, 1 unless set) with OPENSSL_CONF=$1;
# sets HAP_PID, HAP_PORT.
haproxy_start() {
    local conf=$1 pki=$2 ca=$2/root.pem
    [ "$pki" != "$PKI_EC" ] || ca=$E2E_TRUST
    HAP_PORT=$(free_port)
    [ -f "$pki/server-combined.pem" ] || cat "$pki/server.pem" "$pki/server.key" >"$pki/server-combined.pem"
    cat >"$RUN/haproxy.cfg" <<EOF
global
    nbthread ${HAP_THREADS:-1}
    maxconn 2000
    tune.ssl.cachesize 0
    ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets

defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend fe_tls
    bind 127.0.0.1:$HAP_PORT ssl crt $pki/server-combined.pem ca-file $ca verify required
    http-request return status 200 content-type text/plain string ok
EOF
    OPENSSL_CONF=$conf haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
    HAP_PID=$!
    SERVER_PIDS+=("$HAP_PID")
    if ! wait_port "$HAP_PORT" "$HAP_PID"; then
        cat "$RUN/haproxy.log" >&2
        note "bench: haproxy did not start"
        return 1
    fi
}

haproxy_stop() {
    kill "$HAP_PID" 2>/dev/null || true
    wait "$HAP_PID" 2>/dev/null || true
}

# CPU time of every thread of a process, in ns (schedstat), else from ticks.
process_cpu_ns() {
    local total=0 f t
    for f in /proc/"$1"/task/*/schedstat; do
        read -r t _ <"$f" || return 1
        total=$((total + t))
    done
    echo "$total"
}

# One HAProxy run: prints "wall_hs_per_s cpu_hs_per_s".
haproxy_round() {
    local conf=$1 out cpu0 cpu1 count ns
    haproxy_start "$conf" "$PKI_EC" || return 1
    "$BENCH_LOAD" load --port "$HAP_PORT" --pki "$PKI_EC" --count 20 --threads 2 >/dev/null
    cpu0=$(process_cpu_ns "$HAP_PID")
    out=$("$BENCH_LOAD" load --port "$HAP_PORT" --pki "$PKI_EC" --count "$HAP_COUNT" --threads 2)
    cpu1=$(process_cpu_ns "$HAP_PID")
    haproxy_stop
    count=$(echo "$out" | sed -n 's/.*handshakes=\([0-9]*\).*/\1/p')
    ns=$(echo "$out" | sed -n 's/.*elapsed_ns=\([0-9]*\).*/\1/p')
    awk -v c="$count" -v ns="$ns" -v cpu="$((cpu1 - cpu0))" \
        'BEGIN { printf "%.1f %.1f\n", c / (ns / 1e9), c / (cpu / 1e9) }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Interleaved rounds of HAProxy under CONF_ON against plain HAProxy; prints the two rows.
haproxy_compare() { # CONF_ON LABEL
    local r on off hap=$RUN/hap.txt
    : >"$hap"
    for r in $(seq 1 "$HAP_ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then
            on=$(haproxy_round "$1")
            off=$(haproxy_round "$RUN/off.cnf")
        else
            off=$(haproxy_round "$RUN/off.cnf")
            on=$(haproxy_round "$1")
        fi
        echo "$off $on" >>"$hap"
    done
    printf '| %s, handshakes/s (wall) | %.0f | %.0f | %.3f |\n' "$2" \
        "$(awk '{ print $1 }' "$hap" | median)" "$(awk '{ print $3 }' "$hap" | median)" \
        "$(awk '{ print $3 / $1 }' "$hap" | median)"
    printf '| %s, handshakes per HAProxy CPU second | %.0f | %.0f | %.3f |\n' "$2" \
        "$(awk '{ print $2 }' "$hap" | median)" "$(awk '{ print $4 }' "$hap" | median)" \
        "$(awk '{ print $4 / $2 }' "$hap" | median)"
}

section_haproxy() {
    echo "### 5. HAProxy $(haproxy -v | head -1 | awk '{print $3}') (nbthread 1), $BIG store"
    echo
    echo "bench_load: 2 client threads, $HAP_COUNT full handshakes + one HTTP/1.0 request each, no"
    echo "resumption; median of $HAP_ROUNDS interleaved rounds; ratio = median of per-round ratios."
    echo "A/A: plain HAProxy on both sides, the noise floor of the method."
    echo
    echo "| measure | off | on | ratio on/off |"
    echo "| --- | ---: | ---: | ---: |"
    haproxy_compare "$RUN/off.cnf" "A/A"
    haproxy_compare "$RUN/on-$BIG.cnf" "provider"
    echo
}

section_liveness() {
    echo "### 6. Liveness and map add / rm latency (HAProxy running, $BIG store)"
    echo
    echo "Each of $LIVE_COUNT rounds: \`certstore map add\` (next handshake must be accepted), then"
    echo "\`certstore map rm\`; the very next handshake must be rejected, else it is stale."
    echo
    echo "| server | removals | stale | missed adds | rm → rejected p50 / max (ms) | map add p50 / p99 (ms) | map rm p50 / p99 (ms) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    haproxy_start "$RUN/on-$BIG.cnf" "$PKI_EC" || return 1
    "$BENCH_LOAD" live --port "$HAP_PORT" --pki "$PKI_EC" --cli "$CERTSTORE_CLI" \
        --db "$CACHE/db-$BIG.db" --count "$LIVE_COUNT" --label HAProxy
    haproxy_stop
    echo
}

# ---- end to end: nginx and HAProxy, one client certificate or first-seen ones --------

# Start nginx (master + 2 workers) with OPENSSL_CONF=$1; sets NGX_PID, NGX_PORT.
nginx_start() {
    local conf=$1 ngx=$RUN/nginx
    NGX_PORT=$(free_port)
    mkdir -p "$ngx/tmp"
    cat >"$ngx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user root;
env OPENSSL_CONF;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT ssl;
        server_name localhost;
        ssl_certificate $PKI_EC/server.pem;
        ssl_certificate_key $PKI_EC/server.key;
        ssl_protocols TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate $E2E_TRUST;
        ssl_verify_depth 3;
        location / {
            default_type text/plain;
            return 200 "ok \$ssl_client_verify\n";
        }
    }
}
EOF
    OPENSSL_CONF=$conf nginx -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/error.log" \
        >"$ngx/stdout.txt" 2>&1 &
    NGX_PID=$!
    SERVER_PIDS+=("$NGX_PID")
    if ! wait_port "$NGX_PORT" "$NGX_PID"; then
        cat "$ngx/error.log" "$ngx/stdout.txt" >&2 2>/dev/null || true
        note "bench: nginx did not start"
        return 1
    fi
}

nginx_stop() {
    kill -QUIT "$NGX_PID" 2>/dev/null || true
    wait "$NGX_PID" 2>/dev/null || true
}

# The server must be on the side it was told: an unmapped client (bob) is
# refused with the provider and served without it.
e2e_check_side() { # PORT on|off
    local served=1
    "$BENCH_LOAD" load --port "$1" --pki "$PKI_EC" --leaf bob --count 1 --threads 1 \
        >/dev/null 2>&1 || served=0
    if [ "$2" = on ] && [ "$served" -eq 1 ]; then
        note "bench: the provider did not refuse an unmapped client"
        return 1
    elif [ "$2" = off ] && [ "$served" -eq 0 ]; then
        note "bench: the plain server refused a client"
        return 1
    fi
}

# Full handshakes for E2E_SECONDS: s_time (one certificate), or the pool.
# Prints "handshakes_per_second handshakes".
e2e_measure() { # PORT CLIENT
    local out
    if [ "$2" = pool ]; then
        out=$("$BENCH_POOL" --port "$1" --pki "$PKI_EC" --leaves "$POOL" --keys "$POOL_KEYS" \
            --seconds "$E2E_SECONDS") || return 1
        echo "$out" | awk '{ split($1, n, "="); split($2, t, "=")
            printf "%.1f %d\n", n[2] / (t[2] / 1e9), n[2] }'
        return 0
    fi
    # s_time presents its leaf alone (Partner CA A is in the servers' trust file);
    # OPENSSL_CONF names the plain configuration so the client loads no provider.
    out=$(OPENSSL_CONF=$RUN/off.cnf openssl s_time -connect "127.0.0.1:$1" -new \
        -time "$E2E_SECONDS" -cert "$PKI_EC/alice.pem" -key "$PKI_EC/alice.key" \
        -CAfile "$PKI_EC/root.pem" -www / 2>&1) || {
        note "$out"
        return 1
    }
    echo "$out" | awk '/connections in .* real seconds/ { printf "%.1f %d\n", $1 / $4, $1; found = 1 }
        END { exit !found }'
}

decisions_logged() { grep -c 'result=accept' "$RUN/decisions.log" 2>/dev/null || true; }

# CPU time of a server: the process and its children (nginx's workers), in ns.
server_cpu_ns() {
    local total=0 pid t
    for pid in "$1" $(pgrep -P "$1" || true); do
        t=$(process_cpu_ns "$pid") || continue
        total=$((total + t))
    done
    echo "$total"
}

# One server run: start, prove the side, warm up, measure. Prints
# "handshakes_per_second handshakes_per_server_cpu_second".
e2e_round() { # SERVER CONF SIDE CLIENT
    local port pid rate="" before cpu0 cpu1
    if [ "$1" = nginx ]; then
        nginx_start "$2" || return 1
        port=$NGX_PORT pid=$NGX_PID
    else
        HAP_THREADS=2 haproxy_start "$2" "$PKI_EC" || return 1
        port=$HAP_PORT pid=$HAP_PID
    fi
    before=$(decisions_logged)
    if e2e_check_side "$port" "$3" &&
        "$BENCH_LOAD" load --port "$port" --pki "$PKI_EC" --count 20 --threads 1 >/dev/null; then
        cpu0=$(server_cpu_ns "$pid")
        rate=$(e2e_measure "$port" "$4") || rate=""
        cpu1=$(server_cpu_ns "$pid")
        [ -z "$rate" ] || rate=$(echo "$rate" | awk -v cpu="$((cpu1 - cpu0))" \
            '{ printf "%s %.1f\n", $1, $2 / (cpu / 1e9) }')
    fi
    if [ "$1" = nginx ]; then nginx_stop; else haproxy_stop; fi
    [ -n "$rate" ] || return 1
    # With the provider every handshake is decided and logged.
    if [ "$3" = on ] && [ "$(decisions_logged)" -le "${before:-0}" ]; then
        note "bench: no decision logged"
        return 1
    fi
    echo "$rate"
}

# Interleaved rounds, plain against CONF (plain again for A/A); prints one row.
e2e_compare() { # SERVER CONF SIDE CLIENT LABEL
    local r on off rows=$RUN/e2e.txt
    : >"$rows"
    for r in $(seq 1 "$E2E_ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then
            on=$(e2e_round "$1" "$2" "$3" "$4") || return 1
            off=$(e2e_round "$1" "$RUN/off.cnf" off "$4") || return 1
        else
            off=$(e2e_round "$1" "$RUN/off.cnf" off "$4") || return 1
            on=$(e2e_round "$1" "$2" "$3" "$4") || return 1
        fi
        echo "$off $on" >>"$rows"
    done
    printf '| %s | %.0f | %.0f | %.3f | %.0f | %.0f | %.3f |\n' "$5" \
        "$(awk '{ print $1 }' "$rows" | median)" "$(awk '{ print $3 }' "$rows" | median)" \
        "$(awk '{ print $3 / $1 }' "$rows" | median)" "$(awk '{ print $2 }' "$rows" | median)" \
        "$(awk '{ print $4 }' "$rows" | median)" "$(awk '{ print $4 / $2 }' "$rows" | median)"
}

section_e2e() {
    local conf=$RUN/on-$E2E_SIZE.cnf server servers=""
    command -v nginx >/dev/null && servers="nginx"
    command -v haproxy >/dev/null && servers="$servers haproxy"
    echo "### 7. End to end: full handshakes per second, $E2E_SIZE store"
    echo
    echo "nginx $(nginx -v 2>&1 | sed 's,.*/,,') (2 workers) and HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
    echo "(nbthread 2), TLS 1.3 mutual auth, decision log to a file; the client on the same"
    echo "machine: \`openssl s_time -new\` (one partner certificate, every handshake full) or"
    echo "\`bench_pool\` (the next of $POOL_N mapped clients each handshake: every client is seen"
    echo "for the first time). Median of $E2E_ROUNDS interleaved rounds of $E2E_SECONDS s per side;"
    echo "ratio = median of per-round ratios; per CPU s: the server's processes' CPU time"
    echo "(nginx's master and workers). A/A: the plain server on both sides."
    echo
    echo "| server, client | hs/s plain | hs/s certstore | ratio | hs per server CPU s, plain | certstore | ratio |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for server in $servers; do
        if [ "$smoke" -eq 1 ]; then
            # Each part once (both servers, both clients), no noise floor: under 10 s.
            if [ "$server" = nginx ]; then
                e2e_compare nginx "$conf" on pool "nginx, $POOL_N first-seen clients"
            else
                e2e_compare haproxy "$conf" on s_time "haproxy, s_time -new"
            fi
            continue
        fi
        e2e_compare "$server" "$RUN/off.cnf" off s_time "$server, A/A: plain on both sides"
        e2e_compare "$server" "$conf" on s_time "$server, s_time -new"
        e2e_compare "$server" "$conf" on pool "$server, $POOL_N first-seen clients"
    done
    echo
}

# The fleet (issue 18): tests/bench/fleet.sh measures and prints it. In a
# network namespace of its own when one can be made (Samba's LDAP ports are
# fixed: there it cannot meet the servers.test_sync_* tests' DC); without one,
# it refuses to start while anything listens on 389 or 636.
section_fleet() {
    if [ "$(id -u)" -ne 0 ] || ! command -v samba >/dev/null || ! command -v samba-tool >/dev/null ||
        ! command -v ldapmodify >/dev/null || ! command -v sqlite3 >/dev/null; then
        echo "(fleet skipped: it needs root, samba and samba-tool (samba-ad-dc), ldapmodify and sqlite3)"
        echo
        return 0
    fi
    local work=$RUN/fleet netns=0 pid
    local -a ns=()
    mkdir -p "$work"
    if command -v unshare >/dev/null && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
        ns=(unshare --net)
        netns=1
    fi
    FLEET_CLI=$CERTSTORE_CLI FLEET_PKI=$PKI_EC FLEET_CACHE=$CACHE FLEET_WORK=$work FLEET_NETNS=$netns \
        FLEET_GATEWAYS=$FLEET_GATEWAYS FLEET_USERS=$FLEET_USERS FLEET_CHANGES=$FLEET_CHANGES \
        FLEET_REST=$FLEET_REST FLEET_POLL=$FLEET_POLL FLEET_TIMEOUT=$FLEET_TIMEOUT \
        "${ns[@]}" bash "$top/tests/bench/fleet.sh" &
    pid=$!
    SERVER_PIDS+=("$pid")
    wait "$pid"
}

# ---- main --------------------------------------------------------------------

wanted() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

mkdir -p "$CACHE"
ensure_pki
if [ "$only" != fleet ]; then # the fleet needs the PKI only
    ensure_pool
    [ -f "$E2E_TRUST" ] || cat "$PKI_EC/root.pem" "$PKI_EC/ca-a.pem" >"$E2E_TRUST"
    write_conf "$RUN/off.cnf"
    for entry in $SIZES; do
        ensure_db "${entry%%:*}" "${entry##*:}"
        write_conf "$RUN/on-${entry%%:*}.cnf" "$CACHE/db-${entry%%:*}.db"
    done
fi

describe_machine
DECIDE_SIZES_FIRST=${DECIDE_SIZES%% *}
for section in handshakes instructions profile decisions memory admin revocation; do
    if wanted "$section"; then "section_$section"; fi
done
if [ "$servers" -eq 1 ] && command -v haproxy >/dev/null; then
    if wanted haproxy; then section_haproxy; fi
    if wanted liveness; then section_liveness; fi
    if wanted e2e; then section_e2e; fi
elif [ "$servers" -eq 1 ]; then
    echo "(haproxy not installed: server and liveness sections skipped)"
fi
if [ "$servers" -eq 1 ] && wanted fleet; then section_fleet; fi
