#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The fleet benchmark (issue 18), section `fleet` of tests/bench/run.sh, which
# runs this script (in a network namespace of its own when it can: Samba's
# LDAP ports are fixed, and the namespace keeps them apart from the
# servers.test_sync_* tests) with:
#
#   FLEET_CLI       the certstore binary        FLEET_PKI    mkpki output
#   FLEET_CACHE     where the provisioned DC is kept between runs
#   FLEET_WORK      an empty scratch directory (the caller removes it)
#   FLEET_GATEWAYS  stores, one sync process each     FLEET_USERS  users in AD
#   FLEET_CHANGES   directory changes to time         FLEET_REST   seconds at rest
#   FLEET_POLL      seconds between a gateway's looks at the directory
#   FLEET_TIMEOUT   seconds a change may take to reach every store
#   FLEET_NETNS=1   we are alone in a new network namespace: bring lo up
#   FLEET_FORM      follow (default when `certstore sync --help` has --follow)
#                   or loop (plain `certstore sync` every FLEET_POLL seconds)
#
# One Samba AD DC (provisioned once into FLEET_CACHE, FLEET_USERS users each
# with one altSecurityIdentities value X509:<I>Partner CA A<SR>serial, the
# NTAuth object pinning Partner CA A), copied into FLEET_WORK and run in the
# foreground on 127.0.0.1 (LDAPS only, one process, log level 5 so that it
# logs every bind and every search). FLEET_GATEWAYS stores, each kept in sync
# by its own process. Measured: the first full sync of one store alone
# (time, entries read, requests, store bytes), the rest of the fleet's
# first syncs all at once, then FLEET_CHANGES changes made with ldapmodify
# (in turn: a user disabled, a value added to a user, that value removed),
# each timed from the moment ldapmodify returns to the moment every store
# shows it (read from the stores with sqlite3), and the directory's requests
# per minute at rest, counted in the DC's own log. Prints a Markdown section;
# exits non-zero when a store never converges.
set -euo pipefail

: "${FLEET_CLI:?}" "${FLEET_PKI:?}" "${FLEET_CACHE:?}" "${FLEET_WORK:?}" "${FLEET_GATEWAYS:?}" \
    "${FLEET_USERS:?}" "${FLEET_CHANGES:?}" "${FLEET_REST:?}"
CLI=$FLEET_CLI PKI=$FLEET_PKI W=$FLEET_WORK
N=$FLEET_GATEWAYS USERS=$FLEET_USERS CHANGES=$FLEET_CHANGES REST=$FLEET_REST
POLL=${FLEET_POLL:-5} TIMEOUT=${FLEET_TIMEOUT:-120}
BASE=DC=example,DC=com
ADMINPW='Adm1n-Passw0rd!'
IP=127.0.0.1

note() { echo "fleet: $*" >&2; }
die() { echo "fleet: $*" >&2; exit 1; }
now_ns() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }

if [ -z "${FLEET_FORM:-}" ]; then
    # Not `| grep -q`: under pipefail its early exit would fail the pipe.
    case $("$CLI" sync --help 2>&1) in
    *--follow*) FLEET_FORM=follow ;;
    *) FLEET_FORM=loop ;;
    esac
fi

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "${FLEET_NETNS:-0}" -eq 0 ] || ip link set lo up

# ---- the directory -------------------------------------------------------------

SAMBA_PY=$(sed -n '1s/^#! *//p' "$(command -v samba-tool)")
DC_CACHE=$FLEET_CACHE/fleet-dc-$USERS

# Provision once; FLEET_USERS users and the NTAuth object go in offline
# (fleet_load.py). Cached with the seconds each step took.
ensure_dc() {
    [ -f "$DC_CACHE.done" ] && return 0
    rm -rf "$DC_CACHE" "$DC_CACHE.done" "$DC_CACHE.info"
    local t0 t1 t2 issuer
    note "provisioning a Samba AD DC with $USERS users (one-time, cached in $FLEET_CACHE)"
    t0=$(now_ns)
    samba-tool domain provision --server-role=dc --dns-backend=NONE --realm=EXAMPLE.COM \
        --domain=EXAMPLE --adminpass="$ADMINPW" --targetdir="$DC_CACHE" \
        --option="interfaces=$IP" --option='bind interfaces only=yes' \
        >"$W/provision.log" 2>&1 || { tail -5 "$W/provision.log" >&2; die "samba-tool domain provision failed"; }
    t1=$(now_ns)
    issuer=$(openssl x509 -in "$PKI/ca-a.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
    openssl x509 -in "$PKI/ca-a.pem" -outform DER -out "$W/ca-a.der"
    "$SAMBA_PY" "$(dirname "$0")/fleet_load.py" "$DC_CACHE/etc/smb.conf" "$USERS" "$issuer" \
        "$W/ca-a.der" >"$W/load.out" 2> >(tee "$W/load.log" | grep --line-buffered '^fleet_load: ' >&2) &
    PIDS+=("$!")
    wait "$!" || { sleep 1; tail -5 "$W/load.log" >&2; die "loading $USERS users failed"; }
    t2=$(now_ns)
    echo "$(secs $((t1 - t0))) $(secs $((t2 - t1))) $(date -u +%Y-%m-%d)" >"$DC_CACHE.info"
    touch "$DC_CACHE.done"
}

DC=$W/dc
DCLOG=$W/samba.out
SAMBA_PID=
# A fresh copy of the cached DC for every run (the changes stay there):
# LDAPS only, our certificate, one process, every bind and search logged.
start_dc() {
    cp -a "$DC_CACHE" "$DC"
    mkdir -m 0700 "$DC/tls"
    cp "$PKI/server.pem" "$PKI/root.pem" "$DC/tls/"
    install -m 0600 "$PKI/server.key" "$DC/tls/server.key"
    sed -i -e "s#$DC_CACHE\([/ ]\|\$\)#$DC\1#g" \
        -e 's/^\tserver services = .*/\tserver services = ldap/' \
        -e '/^\tlog file = /d' -e '/^\tlog level = /d' -e '/^\tmax log size = /d' "$DC/etc/smb.conf"
    # Its pid file in the copy too: the default, /run/samba, would stop a second DC.
    mkdir "$DC/run"
    sed -i "/^\[global\]/a\\
\tpid directory = $DC/run\\
\tlog level = 5\\
\tmax log size = 0\\
\ttls certfile = $DC/tls/server.pem\\
\ttls keyfile = $DC/tls/server.key\\
\ttls cafile = $DC/tls/root.pem" "$DC/etc/smb.conf"
    if ss -Htln "( sport = :389 or sport = :636 )" 2>/dev/null | grep -q .; then
        die "something already listens on port 389 or 636 (servers.test_sync_ad running?)"
    fi
    samba -i -M single -s "$DC/etc/smb.conf" >"$DCLOG" 2>&1 &
    SAMBA_PID=$!
    PIDS+=("$SAMBA_PID")
    local i
    for i in $(seq 300); do
        (exec 3<>"/dev/tcp/$IP/636") 2>/dev/null && return 0
        kill -0 "$SAMBA_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$DCLOG" >&2
    die "samba did not start"
}

# Requests the DC served since line $1 of its log: "SEARCHES BINDS".
dc_lines() { wc -l <"$DCLOG"; }
dc_requests() {
    tail -n +"$(($1 + 1))" "$DCLOG" | awk '
        /ldapsrv_SearchRequest: .*LDAP Query/ { s++ }
        /MaxQueryDuration.*timeout exceeded in SearchRequest/ { s++ }
        /^Auth: \[LDAP,/ { b++ }
        END { printf "%d %d\n", s, b }'
}
cpu_ticks() { # PID...: user+system time of each, children it waited for included
    local total=0 pid f
    for pid in "$@"; do
        f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + $(echo "$f" | awk '{ print $12 + $13 + $14 + $15 }')))
    done
    echo "$total"
}
TCK=$(getconf CLK_TCK)

printf '%s' "$ADMINPW" >"$W/admin.pw" # ldapmodify -y takes every byte
printf '%s\n' "$ADMINPW" >"$W/sync.pw"
chmod 0600 "$W/admin.pw" "$W/sync.pw"
export LDAPTLS_CACERT=$PKI/root.pem
ldap() {
    ldapmodify -H "ldaps://$IP" -x -D Administrator@example.com -y "$W/admin.pw" \
        >>"$W/ldap.out" 2>&1 || { tail -5 "$W/ldap.out" >&2; return 1; }
}

# ---- the gateways --------------------------------------------------------------

CONF=$W/sync.conf
cat >"$CONF" <<EOF
uri = ldaps://$IP
ca = $PKI/root.pem
base = $BASE
bind-dn = Administrator@example.com
password-file = $W/sync.pw
EOF
chmod 0600 "$CONF"
store() { echo "$W/gw$1.db"; }

# The one place that says how a gateway keeps its store equal to the directory.
gateway() {
    local db
    db=$(store "$1")
    if [ "$FLEET_FORM" = follow ]; then
        exec "$CLI" --db "$db" sync --config "$CONF" --follow --poll "$POLL"
    fi
    local child=
    trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 0' TERM
    while :; do
        "$CLI" --db "$db" sync --config "$CONF" &
        child=$!
        wait "$child" || true
        sleep "$POLL" &
        child=$!
        wait "$child" || true
    done
}
GW_PIDS=()
start_gateways() {
    local i
    for i in $(seq 2 "$N"); do
        "$CLI" --db "$(store "$i")" init >/dev/null
    done
    for i in $(seq 1 "$N"); do
        gateway "$i" >"$W/gw$i.log" 2>&1 &
        GW_PIDS+=("$!")
        PIDS+=("$!")
    done
}

# USER DB: the store's view of a user, "enabled:mappings" (empty when absent).
SQL_TIMEOUT=".timeout 5000"
user_state() {
    sqlite3 -readonly -cmd "$SQL_TIMEOUT" "$2" "SELECT a.enabled || ':' || count(m.id)
        FROM accounts a LEFT JOIN mappings m ON m.account_id = a.id WHERE a.name = '$1'
        GROUP BY a.id;" 2>/dev/null || true
}
accounts_in() { sqlite3 -readonly -cmd "$SQL_TIMEOUT" "$1" "SELECT count(*) FROM accounts;" 2>/dev/null || echo 0; }
# The gateways' log lines since a mark.
gw_mark() {
    local f
    for f in "$W"/gw*.log; do echo "$f $(wc -l <"$f")"; done >"$W/$1"
}
gw_since() {
    local f n
    while read -r f n; do tail -n +"$((n + 1))" "$f"; done <"$W/$1"
}
gateways_alive() {
    local pid
    for pid in "${GW_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}

# Wait until every store answers CHECK ARGS... with WANT; prints the
# nanoseconds from T0 at which each store first did, one a line; returns 1
# past FLEET_TIMEOUT (the stores that never did print nothing).
await_fleet() {
    local t0=$1 want=$2 deadline i got now
    shift 2
    deadline=$((t0 + TIMEOUT * 1000000000))
    local -a done_at=()
    while :; do
        local pending=0
        for i in $(seq 1 "$N"); do
            [ -z "${done_at[$i]:-}" ] || continue
            got=$("$@" "$(store "$i")")
            now=$(now_ns)
            if [ "$got" = "$want" ]; then
                done_at[i]=$((now - t0))
            else
                pending=$((pending + 1))
            fi
        done
        [ "$pending" -gt 0 ] || break
        now=$(now_ns)
        if [ "$now" -gt "$deadline" ] || ! gateways_alive; then
            for i in "${!done_at[@]}"; do echo "${done_at[$i]}"; done
            note "$pending of $N stores did not get there within ${TIMEOUT} s (want '$want' from $*)"
            return 1
        fi
        sleep 0.05
    done
    for i in "${!done_at[@]}"; do echo "${done_at[$i]}"; done
}

# ---- the run -------------------------------------------------------------------

mkdir -p "$FLEET_CACHE"
ensure_dc
read -r PROVISION_S LOAD_S DC_DATE <"$DC_CACHE.info"
start_dc

# 1. The first full sync of one store, alone.
"$CLI" --db "$(store 1)" init >/dev/null
l0=$(dc_lines)
t0=$(now_ns)
"$CLI" --db "$(store 1)" sync --config "$CONF" >"$W/first.out" 2>&1 || { cat "$W/first.out" >&2; die "the first sync failed"; }
t1=$(now_ns)
read -r FIRST_SEARCHES FIRST_BINDS <<<"$(dc_requests "$l0")"
FIRST_S=$(secs $((t1 - t0)))
FIRST_USERS=$(sed -n 's/.*: \([0-9]*\) users;.*/\1/p' "$W/first.out")
FIRST_BYTES=0
for f in "$(store 1)" "$(store 1)-wal"; do
    [ -f "$f" ] && FIRST_BYTES=$((FIRST_BYTES + $(stat -c %s "$f")))
done
[ "$FIRST_USERS" = "$USERS" ] || { cat "$W/first.out" >&2; die "the first sync read ${FIRST_USERS:-?} users, not $USERS"; }
[ "$(accounts_in "$(store 1)")" -eq "$USERS" ] || die "the first sync left $(accounts_in "$(store 1)") accounts, not $USERS"
note "first sync: $FIRST_S s, $FIRST_USERS users, $FIRST_BYTES bytes"

# 2. Every gateway starts; the other N-1 stores fill at once.
l0=$(dc_lines)
t0=$(now_ns)
start_gateways
COLD=$(await_fleet "$t0" "$USERS" accounts_in) || die "the fleet's first syncs did not finish"
COLD_S=$(echo "$COLD" | sort -n | tail -1)
COLD_S=$(secs "$COLD_S")
read -r COLD_SEARCHES COLD_BINDS <<<"$(dc_requests "$l0")"
note "the fleet's first syncs: $COLD_S s"

# 3. Changes, one at a time, each awaited in every store.
issuer=$(openssl x509 -in "$PKI/ca-a.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
user_of() { printf 'u%06d' $((1 + ($1 * 7919) % USERS)); }
: >"$W/changes.txt"
: >"$W/stores.txt"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
l0=$(dc_lines)
gw_mark changes.mark
for k in $(seq 1 "$CHANGES"); do
    # A random pause first, so that changes fall anywhere in the gateways' poll cycle.
    sleep "$(awk -v p="$POLL" -v r="$RANDOM" 'BEGIN { printf "%.2f", p * r / 32768 }')"
    case $(((k - 1) % 3)) in
    0)
        user=$(user_of "$k") kind=disable want=0:1
        ldap <<EOF
dn: CN=$user,CN=Users,$BASE
changetype: modify
replace: userAccountControl
userAccountControl: 546
EOF
        ;;
    1)
        user=$(user_of "$k") kind=add want=1:2
        value=$(printf 'X509:<I>%s<SR>a5%06x20' "$issuer" "$k")
        ldap <<EOF
dn: CN=$user,CN=Users,$BASE
changetype: modify
add: altSecurityIdentities
altSecurityIdentities: $value
EOF
        ;;
    2)
        kind=remove want=1:1 # the value the previous change added
        ldap <<EOF
dn: CN=$user,CN=Users,$BASE
changetype: modify
delete: altSecurityIdentities
altSecurityIdentities: $value
EOF
        ;;
    esac
    t0=$(now_ns)
    ok=1
    times=$(await_fleet "$t0" "$want" user_state "$user") || ok=0
    # Per change: the slowest store (the fleet has it), in ms; then every store's time.
    worst=$(echo "$times" | sort -n | tail -1)
    [ "$ok" -eq 1 ] || worst=$((TIMEOUT * 1000000000))
    echo "$k $kind $user $((worst / 1000000)) $(echo "$times" | grep -c .)" >>"$W/changes.txt"
    echo "$times" | awk 'NF { printf "%d\n", $1 / 1e6 }' >>"$W/stores.txt"
    [ "$ok" -eq 1 ] || { FAILED=1; break; }
done
note "$(wc -l <"$W/changes.txt") changes made"
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
read -r CH_SEARCHES CH_BINDS <<<"$(dc_requests "$l0")"
# What each gateway read for the changes: its syncs' "N entries read".
read -r CH_SYNCS CH_ENTRIES <<<"$(gw_since changes.mark |
    sed -n 's/.*(\(full\|incremental\): \([0-9]*\) entries read.*/\2/p' |
    awk '{ n++; e += $1 } END { printf "%d %d\n", n, e }')"

# 4. At rest: nothing changes in the directory for FLEET_REST seconds.
l0=$(dc_lines)
c0=$(cpu_ticks "$SAMBA_PID")
g0=$(cpu_ticks "${GW_PIDS[@]}")
gw_mark rest.mark
sleep "$REST"
read -r REST_SEARCHES REST_BINDS <<<"$(dc_requests "$l0")"
REST_LINES=$(gw_since rest.mark | grep -c . || true)
REST_ERRORS=$(gw_since rest.mark | grep -cv '^\(applied\|synced\) ' || true)
REST_DC_CPU=$(($(cpu_ticks "$SAMBA_PID") - c0))
REST_GW_CPU=$(($(cpu_ticks "${GW_PIDS[@]}") - g0))
gateways_alive || die "a gateway's sync process died (see its log)"

# ---- the report ----------------------------------------------------------------

pct() { # P: the P-th percentile (nearest rank) of the numbers on stdin
    sort -n | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
        r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; print v[r] }'
}
per_min() { awk -v n="$1" -v s="$REST" 'BEGIN { printf "%.1f", n * 60 / s }'; }
worsts=$(awk '{ print $4 }' "$W/changes.txt")
made=$(wc -l <"$W/changes.txt")
if [ "$FLEET_FORM" = follow ]; then
    form="\`certstore sync --follow --poll $POLL\`"
else
    form="plain \`certstore sync\` in a loop, $POLL s apart (the stand-in until \`--follow\` lands)"
fi
echo "### Fleet: $N gateways, one Samba AD DC, $USERS users"
echo
echo "One Samba $(samba -V | awk '{ print $2 }') AD DC (\`samba -M single\`, LDAPS only) on 127.0.0.1 holding"
echo "$USERS users, each with one altSecurityIdentities issuer-serial value, and the NTAuth object;"
echo "$N stores, each kept equal to it by its own process: $form, simple bind over LDAPS."
echo "The DC, the gateways and this script share the machine's $(nproc) cores (with other work:"
echo "load average $LOAD_BEFORE when the changes began, $LOAD_AFTER when they ended)."
echo "Changes are made with \`ldapmodify\` one at a time, in turn a user disabled, a value added,"
echo "that value removed; each is timed from \`ldapmodify\`'s return to the moment every store"
echo "shows it (each store read with sqlite3 every 50 ms or so). Requests are counted on the DC"
echo "(its log at level 5 has one line per search and per bind). Provisioning the DC took"
echo "$PROVISION_S s and loading the users offline $LOAD_S s ($DC_DATE; cached since)."
echo
echo "| measure | value |"
echo "| --- | ---: |"
echo "| first full sync of one store, alone | $FIRST_S s |"
echo "| entries read / requests to the DC (searches + binds) | $FIRST_USERS / $FIRST_SEARCHES + $FIRST_BINDS |"
echo "| store size after it (database + WAL) | $FIRST_BYTES bytes ($(awk -v b="$FIRST_BYTES" -v n="$USERS" 'BEGIN { printf "%.0f", b / n }') per user) |"
echo "| the other $((N - 1)) stores' first syncs, all at once | $COLD_S s, $COLD_SEARCHES searches + $COLD_BINDS binds |"
echo "| change to every store, p50 / p99 / max ($made changes) | $(echo "$worsts" | pct 50) / $(echo "$worsts" | pct 99) / $(echo "$worsts" | pct 100) ms |"
echo "| syncs that applied the changes, entries they read (all stores) | $CH_SYNCS, $CH_ENTRIES |"
echo "| DC requests while the changes were made (the binds are ldapmodify's) | $CH_SEARCHES searches + $CH_BINDS binds |"
echo "| change to one store, p50 / p99 ($(grep -c . "$W/stores.txt") store-changes) | $(pct 50 <"$W/stores.txt") / $(pct 99 <"$W/stores.txt") ms |"
echo "| DC requests per minute at rest, whole fleet ($REST s counted) | $(per_min "$REST_SEARCHES") searches + $(per_min "$REST_BINDS") binds |"
echo "| gateways' log lines at rest (of which failures) | $REST_LINES ($REST_ERRORS) |"
echo "| CPU per minute at rest: DC / all gateways together | $(awk -v t="$REST_DC_CPU" -v k="$TCK" -v s="$REST" 'BEGIN { printf "%.2f", t / k * 60 / s }') / $(awk -v t="$REST_GW_CPU" -v k="$TCK" -v s="$REST" 'BEGIN { printf "%.2f", t / k * 60 / s }') s |"
echo
if [ "${FAILED:-0}" -eq 1 ]; then
    die "change $made did not reach every store within $TIMEOUT s"
fi
