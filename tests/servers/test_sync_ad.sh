#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# certstore sync (the default AD schema) against a real Samba AD DC,
# provisioned here into a temp directory and run in the foreground on one
# loopback address with only its LDAP service: the forest's NTAuth object
# (added as certutil -dspublish would) becomes the pins, users'
# altSecurityIdentities the mappings, userAccountControl ACCOUNTDISABLE a
# disabled account. A running openssl s_server under the provider rejects
# a user disabled in AD after the next sync, and does not resume their
# saved session. Later syncs are incremental (counted entries, tombstones
# from Deleted Objects); sync --follow applies a change within seconds and
# rides out the DC going away.
. "$(dirname "$0")/common.sh"

cs_require_server samba
command -v samba-tool >/dev/null || cs_skip "samba-tool not installed (Debian samba-ad-dc)"
command -v ldapmodify >/dev/null || cs_skip "ldapmodify not installed (Debian ldap-utils)"
[ "$(id -u)" -eq 0 ] || cs_skip "a Samba AD DC must run as root"
cs_setup sync-ad
cs_make_pki

# Samba's LDAP ports are fixed (389, 636) and it serves only addresses an
# interface has: 127.0.0.1, which must be free (tests run one at a time).
IP=127.0.0.1
if ss -Htln "( sport = :389 or sport = :636 )" 2>/dev/null | grep -q .; then
    echo "Bail out! something already listens on port 389 or 636" >&2
    exit 1
fi

DC=$WORK/dc
BASE=DC=example,DC=com
NTAUTH="CN=NTAuthCertificates,CN=Public Key Services,CN=Services,CN=Configuration,$BASE"
ADMINPW='Adm1n-Passw0rd!'
printf '%s' "$ADMINPW" >"$WORK/admin.pw" # ldapmodify -y takes every byte
chmod 0600 "$WORK/admin.pw"
URI=ldaps://$IP
export LDAPTLS_CACERT=$PKI/root.pem

t0=$SECONDS
samba-tool domain provision --server-role=dc --dns-backend=NONE --realm=EXAMPLE.COM \
    --domain=EXAMPLE --adminpass="$ADMINPW" --targetdir="$DC" \
    --option="interfaces=$IP" --option='bind interfaces only=yes' \
    >"$WORK/log/provision.log" 2>&1 || {
    cs_diag_file "$WORK/log/provision.log"
    echo "Bail out! samba-tool domain provision failed" >&2
    exit 1
}
cs_diag "provisioned in $((SECONDS - t0)) s"
# Only LDAP; our certificate; logs in the temp directory.
sed -i -e 's/^\tserver services = .*/\tserver services = ldap/' \
    -e '/^\tlog file = /d' "$DC/etc/smb.conf"
sed -i "/^\[global\]/a\\
\tlog file = $WORK/log/samba.log\\
\ttls certfile = $PKI/server.pem\\
\ttls keyfile = $PKI/server.key\\
\ttls cafile = $PKI/root.pem" "$DC/etc/smb.conf"

SAMBA_PID=
start_dc() {
    samba -i -M single -s "$DC/etc/smb.conf" >>"$WORK/log/samba.out" 2>&1 &
    SAMBA_PID=$!
    cs_kill_on_exit "$SAMBA_PID"
    local i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/$IP/636") 2>/dev/null && return 0
        kill -0 "$SAMBA_PID" 2>/dev/null || break
        sleep 0.1
    done
    cs_diag_file "$WORK/log/samba.out"
    return 1
}
start_dc || { echo "Bail out! samba did not start" >&2; exit 1; }

tool() { samba-tool "$@" -s "$DC/etc/smb.conf" -H "$DC/private/sam.ldb" >>"$WORK/out/tool.txt" 2>&1 ||
    { cs_diag "samba-tool $* failed"; cs_diag_file "$WORK/out/tool.txt" 5; return 1; }; }
ldap() { ldapmodify -H "$URI" -x -D "Administrator@example.com" -y "$WORK/admin.pw" \
    >>"$WORK/out/ldap.txt" 2>&1 || { cs_diag_file "$WORK/out/ldap.txt" 10; return 1; }; }

der() { openssl x509 -in "$PKI/$1.pem" -outform DER -out "$WORK/$1.der"; }
der ca-a && der ca-b
printf '\0' >"$WORK/zero.bin"
altsec_of() { # X509:<I>issuer<SR>serial, serial least significant byte first
    local issuer serial
    issuer=$(openssl x509 -in "$PKI/$1.pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
    serial=$(openssl x509 -in "$PKI/$1.pem" -noout -serial | sed 's/^serial=//')
    [ $((${#serial} % 2)) -eq 0 ] || serial=0$serial
    printf 'X509:<I>%s<SR>%s' "$issuer" "$(echo "$serial" | fold -w2 | tac | tr -d '\n')"
}

tool user create alice 'Al1ce-Passw0rd!' && tool user create bob 'B0b-Passw0rd!!' || exit 1
ldap <<EOF || exit 1
dn: $NTAUTH
changetype: add
objectClass: certificationAuthority
cn: NTAuthCertificates
cACertificate:< file://$WORK/ca-a.der
authorityRevocationList:< file://$WORK/zero.bin
certificateRevocationList:< file://$WORK/zero.bin

dn: CN=alice,CN=Users,$BASE
changetype: modify
add: altSecurityIdentities
altSecurityIdentities: $(altsec_of alice)

dn: CN=bob,CN=Users,$BASE
changetype: modify
add: altSecurityIdentities
altSecurityIdentities: $(altsec_of bob)
altSecurityIdentities: X509:<I>CN=Partner CA A,O=certstore tests<S>CN=bob,O=certstore tests
EOF

cs_cli init || exit 1
printf '%s\n' "$ADMINPW" >"$WORK/sync.pw"
chmod 0600 "$WORK/sync.pw"
SYNC_OUT=$WORK/out/sync.txt
sync_dc() {
    "$CERTSTORE_BIN" --db "$CS_DB" sync --uri "$URI" --ca "$PKI/root.pem" --base "$BASE" \
        --bind-dn Administrator@example.com --password-file "$WORK/sync.pw" "$@" \
        >"$SYNC_OUT" 2>&1
}
sync_ok() { sync_dc "$@" && return 0; cs_diag "sync $* failed:"; cs_diag_file "$SYNC_OUT" 10; return 1; }
sync_has() { grep -Eq -- "$1" "$SYNC_OUT" && return 0; cs_diag "sync output lacks /$1/:"; cs_diag_file "$SYNC_OUT" 10; return 1; }
store_state() {
    for c in "pin ls --json" "account ls --json" "map ls --json" "stats --json"; do
        # shellcheck disable=SC2086
        "$CERTSTORE_BIN" --db "$CS_DB" $c 2>&1
    done
}
fails_unchanged() {
    local re=$1 before
    shift
    before=$(store_state)
    if sync_dc "$@"; then cs_diag "sync $* succeeded"; return 1; fi
    [ "$(wc -l <"$SYNC_OUT")" -eq 1 ] || { cs_diag "not one line:"; cs_diag_file "$SYNC_OUT"; return 1; }
    sync_has "$re" && sync_has "store is unchanged" || return 1
    [ "$(store_state)" = "$before" ] || { cs_diag "the store changed"; return 1; }
}

# The provider under openssl s_server, reading the store the syncs write.
cs_write_openssl_cnf "$WORK/openssl.cnf"
SPORT=$(cs_free_port) || exit 1
OPENSSL_CONF=$CS_CNF timeout 500 openssl s_server -accept "127.0.0.1:$SPORT" \
    -cert "$PKI/server.pem" -key "$PKI/server.key" -CAfile "$PKI/root.pem" -Verify 3 -rev \
    >"$WORK/log/s_server.out" 2>&1 &
cs_kill_on_exit $!
cs_wait_port "$SPORT" 20 $! || { echo "Bail out! s_server did not start" >&2; exit 1; }
# s_server -rev sends each line back reversed and closes on CLOSE.
CS_PAYLOAD=$'hello certstore\nCLOSE\n'
CS_NO_DATA_ERE='erotstrec olleh'
MARK='erotstrec olleh'
SESS=$WORK/alice.sess

t_first() {
    sync_ok && sync_has "2 users; pins \+1 -0; accounts \+2 -0" && sync_has "mappings \+2 -0" &&
        sync_has "1 refused" && grep -q "<I>..<S>.. is a weak mapping" "$SYNC_OUT" &&
        cs_expect_accept "$SPORT" alice "$MARK" alice &&
        cs_expect_accept "$SPORT" bob "$MARK" bob
}
cs_check 1 "first sync from the DC: NTAuth pinned, strong altSecurityIdentities mapped, weak refused" t_first

t_weak() {
    sync_ok --allow-weak && sync_has "rules \+1 -0" &&
        "$CERTSTORE_BIN" --db "$CS_DB" rule ls >"$WORK/out/rules.txt" 2>&1 &&
        grep -q "bob" "$WORK/out/rules.txt" && sync_ok && sync_has "rules \+0 -1"
}
cs_check 2 "--allow-weak turns <I>..<S>.. into a rule; without it the next sync removes the rule" t_weak

t_unchanged() {
    local before
    cs_save_session "$SPORT" alice -tls1_2 "$SESS" "$MARK" alice || return 1
    before=$(store_state)
    sync_ok && sync_has "incremental: 0 entries read" && [ "$(store_state)" = "$before" ] &&
        sync_ok --full && sync_has "full: 2 entries read" &&
        sync_has "mappings \+0 -0 \(2 unchanged\)" && [ "$(store_state)" = "$before" ] &&
        cs_resume_accepted "$SPORT" alice -tls1_2 "$SESS" "$MARK"
}
cs_check 3 "an unchanged directory changes nothing (incremental: 0 entries; --full): alice's session still resumes" t_unchanged

t_disabled() {
    tool user disable alice && sync_ok && sync_has "1 disabled" &&
        cs_resume_rejected "$SPORT" alice -tls1_2 "$SESS" account-disabled &&
        cs_expect_accept "$SPORT" bob "$MARK" bob
}
cs_check 4 "samba-tool user disable: the next sync rejects alice (account-disabled), her session does not resume" t_disabled

t_enabled() {
    tool user enable alice && sync_ok && sync_has "1 enabled" &&
        cs_expect_accept "$SPORT" alice "$MARK" alice
}
cs_check 5 "enabled again in AD: accepted again" t_enabled

t_value_removed() {
    ldap <<EOF || return 1
dn: CN=bob,CN=Users,$BASE
changetype: modify
delete: altSecurityIdentities
altSecurityIdentities: $(altsec_of bob)
EOF
    fails_unchanged "no longer names 1 of the 2 mappings" &&
        sync_ok --allow-mass-removal && sync_has "mappings \+0 -1" &&
        cs_expect_reject "$SPORT" bob no-mapping
}
cs_check 6 "a value removed in AD: refused past the guard, then removed with --allow-mass-removal" t_value_removed

t_ca_removed() {
    ldap <<EOF || return 1
dn: $NTAUTH
changetype: modify
add: cACertificate
cACertificate:< file://$WORK/ca-b.der
EOF
    sync_ok && sync_has "pins \+1 -0" || return 1
    ldap <<EOF || return 1
dn: $NTAUTH
changetype: modify
delete: cACertificate
cACertificate:< file://$WORK/ca-a.der
EOF
    sync_ok && sync_has "pins \+0 -1" && cs_expect_reject "$SPORT" alice issuer-not-pinned
}
cs_check 7 "a CA added to and removed from NTAuth: pinned, then unpinned (issuer-not-pinned)" t_ca_removed

t_wrong_base() {
    fails_unchanged "does not exist|No such object" --base "OU=nowhere,$BASE" &&
        fails_unchanged "Invalid credentials" --password-file <(printf 'wrong\n')
}
cs_check 8 "a wrong base DN, a wrong password: one line, exit 1, store unchanged" t_wrong_base

t_upn() {
    local db2=$WORK/db/upn.db
    "$CERTSTORE_BIN" --db "$db2" init >/dev/null 2>&1 &&
        "$CERTSTORE_BIN" --db "$db2" sync --uri "$URI" --ca "$PKI/root.pem" --base "$BASE" \
            --bind-dn Administrator@example.com --password-file "$WORK/sync.pw" \
            --account-attribute userPrincipalName >"$SYNC_OUT" 2>&1 &&
        "$CERTSTORE_BIN" --db "$db2" account ls >"$WORK/out/upn.txt" 2>&1 &&
        grep -q "^alice@example.com " "$WORK/out/upn.txt" ||
        { cs_diag_file "$SYNC_OUT"; cs_diag_file "$WORK/out/upn.txt"; return 1; }
}
cs_check 9 "--account-attribute userPrincipalName names accounts by UPN" t_upn

# ---- incremental syncs (uSNChanged), deletions, --follow ----
json_has() {
    local want
    for want in "$@"; do
        grep -Fq -- "$want" "$SYNC_OUT" || { cs_diag "sync --json lacks $want:"; cs_diag_file "$SYNC_OUT" 5; return 1; }
    done
}

t_incremental() {
    ldap <<EOF || return 1
dn: $NTAUTH
changetype: modify
add: cACertificate
cACertificate:< file://$WORK/ca-a.der
EOF
    tool user disable bob || return 1
    # Only bob changed (and the NTAuth object): one user entry read.
    sync_ok --json && json_has '"pass":"incremental"' '"entries":1,' '"users":1,' \
        '"pins_added":1,' '"accounts_disabled":1,' &&
        cs_expect_accept "$SPORT" alice "$MARK" alice
}
cs_check 10 "incremental: after bob is disabled and CA A is back in NTAuth, one user entry is read" t_incremental

t_deleted() {
    "$CERTSTORE_BIN" --db "$CS_DB" account ls >"$WORK/out/accounts.txt" 2>&1 &&
        grep -q "^bob " "$WORK/out/accounts.txt" || { cs_diag "no account bob before"; return 1; }
    tool user delete bob || return 1
    sync_ok --json && json_has '"pass":"incremental"' '"deleted":1,' \
        '"deletions":"deleted-objects"' '"accounts_removed":1,' || return 1
    "$CERTSTORE_BIN" --db "$CS_DB" account ls >"$WORK/out/accounts.txt" 2>&1 &&
        ! grep -q "^bob " "$WORK/out/accounts.txt" || { cs_diag_file "$WORK/out/accounts.txt"; return 1; }
}
cs_check 11 "a user deleted in AD: the incremental sync reads its tombstone (Deleted Objects) and removes the account" t_deleted

t_full_again() {
    command -v sqlite3 >/dev/null || { cs_diag "sqlite3 not installed"; return 1; }
    sqlite3 "$CS_DB" "UPDATE sync_state SET invocation_id = 'restored-from-backup'" &&
        sync_ok --json && json_has '"pass":"full"' '"entries":1,' || return 1
    sync_ok --json && json_has '"pass":"incremental"' '"entries":0,' || return 1
    sqlite3 "$CS_DB" "DELETE FROM sync_state" && sync_ok --json && json_has '"pass":"full"' &&
        sync_ok --json --full-every 0 && json_has '"pass":"full"' &&
        sync_ok --json --allow-weak && json_has '"pass":"full"' '"rules_added":0,'
}
cs_check 12 "another invocationId, no state, --full-every 0 or other options: a full pass" t_full_again

FOLLOW_OUT=$WORK/out/follow.txt
FOLLOW_PID=
follow_waits() { # ERE SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        grep -Eq -- "$1" "$FOLLOW_OUT" && return 0
        sleep 0.1
    done
    cs_diag "sync --follow printed no /$1/ within $2 s:"
    cs_diag_file "$FOLLOW_OUT" 10
    return 1
}

t_follow() {
    local t0
    "$CERTSTORE_BIN" --db "$CS_DB" sync --uri "$URI" --ca "$PKI/root.pem" --base "$BASE" \
        --bind-dn Administrator@example.com --password-file "$WORK/sync.pw" --timeout 3 \
        --follow --poll 1 >"$FOLLOW_OUT" 2>&1 &
    FOLLOW_PID=$!
    cs_kill_on_exit "$FOLLOW_PID"
    follow_waits "^applied sync:$BASE" 20 || return 1
    cs_save_session "$SPORT" alice -tls1_2 "$SESS" "$MARK" alice || return 1
    t0=$(date +%s%N)
    tool user disable alice || return 1
    follow_waits "^applied .*incremental: 1 entries read.*1 disabled" 20 || return 1
    cs_diag "samba-tool user disable -> applied in $((($(date +%s%N) - t0) / 1000000)) ms"
    cs_resume_rejected "$SPORT" alice -tls1_2 "$SESS" account-disabled
}
cs_check 13 "sync --follow: alice disabled in AD is rejected (account-disabled) within seconds, her session does not resume" t_follow

t_follow_outage() {
    local before rc
    [ -n "$FOLLOW_PID" ] || return 1
    before=$(store_state)
    cs_stop_pid "$SAMBA_PID"
    follow_waits "Can't contact LDAP server.*store is unchanged; retrying in [0-9]+ s" 20 || return 1
    sleep 2
    kill -0 "$FOLLOW_PID" 2>/dev/null || { cs_diag "sync --follow exited"; return 1; }
    [ "$(store_state)" = "$before" ] || { cs_diag "the store changed during the outage"; return 1; }
    cs_expect_reject "$SPORT" alice account-disabled || return 1
    start_dc || return 1
    tool user enable alice || return 1
    follow_waits "^applied .*1 enabled" 90 || return 1
    cs_expect_accept "$SPORT" alice "$MARK" alice || return 1
    kill -TERM "$FOLLOW_PID"
    wait "$FOLLOW_PID"
    rc=$?
    [ "$rc" -eq 0 ] || { cs_diag "sync --follow exited $rc on SIGTERM"; return 1; }
    # Each failure is one line of its own.
    ! grep -v -E "^applied |^certstore: sync: .*; the store is unchanged; retrying in [0-9]+ s$" \
        "$FOLLOW_OUT" | grep -q . || { cs_diag "unexpected output:"; cs_diag_file "$FOLLOW_OUT" 20; return 1; }
}
cs_check 14 "the DC stopped under sync --follow: one line per retry, store unchanged; back: applied; SIGTERM: exit 0" t_follow_outage

t_dc_stopped() {
    cs_stop_pid "$SAMBA_PID"
    fails_unchanged "Can't contact LDAP server" --timeout 3
}
cs_check 15 "the DC stopped: one line, exit 1, store unchanged" t_dc_stopped

t_doctor() {
    "$CERTSTORE_BIN" --db "$CS_DB" doctor --config "$CS_CNF" >"$WORK/out/doctor.txt" 2>&1
    grep -Eq "sync.*last successful directory sync [0-9]+ minutes ago" "$WORK/out/doctor.txt" && return 0
    cs_diag_file "$WORK/out/doctor.txt"
    return 1
}
cs_check 16 "doctor reports the age of the last successful sync" t_doctor

cs_finish
