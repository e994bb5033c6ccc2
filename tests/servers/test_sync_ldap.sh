#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# certstore sync --schema ldap against a real OpenLDAP slapd started here on
# 127.0.0.1 (foreground, temp directory, a small test schema for the
# altSecurityIdentities-like attributes): first sync, an unchanged
# directory, a disabled user, a removed value (and the mass-removal guard),
# local rows left alone, the CLI refusing synced rows, StartTLS verified
# against --ca, and every failure (unreachable, bad password, wrong base,
# malformed value, size limit) changing nothing. slapd runs the syncprov
# overlay: later syncs are RFC 4533 content syncs (counted entries,
# deletions), and sync --follow applies a change within seconds.
. "$(dirname "$0")/common.sh"

cs_require_server slapd
command -v ldapadd >/dev/null || cs_skip "ldapadd not installed (Debian ldap-utils)"
cs_setup sync-ldap
cs_make_pki

SUFFIX=dc=example,dc=com
ADMIN=cn=admin,$SUFFIX
NTAUTH=cn=NTAuth,$SUFFIX
PORT=$(cs_free_port) || exit 1
URI=ldap://127.0.0.1:$PORT
SLAPD=$WORK/slapd
mkdir -p "$SLAPD/db"
printf 'adminpw' >"$WORK/admin.pw" # ldapadd -y reads the newline too
printf 'wrong\n' >"$WORK/wrong.pw"
chmod 0600 "$WORK"/*.pw

# OpenLDAP's experimental arc (1.3.6.1.4.1.4203.666) is for tests like this;
# altSecurityIdentities keeps AD's own OID and syntax.
cat >"$SLAPD/certstore-test.schema" <<'EOF'
attributetype ( 1.2.840.113556.1.4.867 NAME 'altSecurityIdentities'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.4203.666.11.990.1 NAME 'nsAccountLock'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.990.2 NAME 'certstoreTestUser' SUP top AUXILIARY
    MAY ( altSecurityIdentities $ nsAccountLock ) )
EOF
cat >"$SLAPD/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $SLAPD/certstore-test.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
pidfile $SLAPD/slapd.pid
TLSCertificateFile $PKI/server.pem
TLSCertificateKeyFile $PKI/server.key
database mdb
maxsize 10485760
suffix "$SUFFIX"
rootdn "$ADMIN"
rootpw adminpw
directory $SLAPD/db
limits dn.exact="cn=limited,$SUFFIX" size=2
access to * by * read
index entryCSN,entryUUID eq
overlay syncprov
syncprov-checkpoint 1 1
EOF
slapd -d 0 -h "$URI/" -f "$SLAPD/slapd.conf" >"$WORK/log/slapd.log" 2>&1 &
SLAPD_PID=$!
cs_kill_on_exit "$SLAPD_PID"
cs_wait_port "$PORT" 20 "$SLAPD_PID" || {
    cs_diag_file "$WORK/log/slapd.log"
    echo "Bail out! slapd did not start" >&2
    exit 1
}

ldap() { # ldapadd/ldapmodify as the admin, LDIF on stdin
    "$@" -x -H "$URI" -D "$ADMIN" -y "$WORK/admin.pw" >>"$WORK/out/ldap.txt" 2>&1 ||
        { cs_diag_file "$WORK/out/ldap.txt" 10; return 1; }
}

der() { openssl x509 -in "$1" -outform DER -out "$2"; }
der "$PKI/ca-a.pem" "$WORK/ca-a.der"
der "$PKI/ca-b.pem" "$WORK/ca-b.der"
der "$PKI/bob.pem" "$WORK/bob.der"

# X509:<I>issuer<SR>serial as AD writes it: serial bytes least significant first.
altsec_of() {
    local issuer serial
    issuer=$(openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
    serial=$(openssl x509 -in "$1" -noout -serial | sed 's/^serial=//')
    [ $((${#serial} % 2)) -eq 0 ] || serial=0$serial
    printf 'X509:<I>%s<SR>%s' "$issuer" "$(echo "$serial" | fold -w2 | tac | tr -d '\n')"
}

ldap ldapadd <<EOF || exit 1
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: ou=empty,$SUFFIX
objectClass: organizationalUnit
ou: empty

dn: cn=limited,$SUFFIX
objectClass: person
cn: limited
sn: limited
userPassword: limitedpw

dn: $NTAUTH
objectClass: organizationalRole
objectClass: pkiCA
cn: NTAuth
cACertificate;binary:< file://$WORK/ca-a.der

dn: uid=alice,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: certstoreTestUser
uid: alice
cn: Alice
sn: Alice
altSecurityIdentities: $(altsec_of "$PKI/alice.pem")

dn: uid=bob,ou=people,$SUFFIX
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Bob
userCertificate;binary:< file://$WORK/bob.der

dn: uid=carol,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: certstoreTestUser
uid: carol
cn: Carol
sn: Carol
altSecurityIdentities: $(altsec_of "$PKI/carol.pem")
EOF

# carol and ca-b are local: the directory names them, the sync must not touch them.
cs_cli init || exit 1
cs_cli pin add "$PKI/ca-b.pem" || exit 1
cs_cli map add "$PKI/carol.pem" --account carol --create-account || exit 1

SYNC_OUT=$WORK/out/sync.txt
sync_dir() { # sync_dir [EXTRA OPTIONS...]: exit status of certstore sync
    "$CERTSTORE_BIN" --db "$CS_DB" sync --schema ldap --uri "$URI" --insecure \
        --base "ou=people,$SUFFIX" --bind-dn "$ADMIN" --password-file "$WORK/admin.pw" \
        --pins-dn "$NTAUTH" --cert-attribute 'userCertificate;binary' \
        --disabled-attribute nsAccountLock=TRUE "$@" >"$SYNC_OUT" 2>&1
}
sync_ok() {
    sync_dir "$@" && return 0
    cs_diag "sync $* failed:"
    cs_diag_file "$SYNC_OUT" 10
    return 1
}
sync_has() {
    grep -Eq -- "$1" "$SYNC_OUT" && return 0
    cs_diag "sync output lacks /$1/:"
    cs_diag_file "$SYNC_OUT" 10
    return 1
}

check_as() { # check_as NAME EXPECTED-REGEX
    "$CERTSTORE_BIN" --db "$CS_DB" check "$PKI/$1-chain.pem" --ca "$PKI/root.pem" \
        >"$WORK/out/check.txt" 2>&1
    grep -Eq -- "$2" "$WORK/out/check.txt" && return 0
    cs_diag "check $1: expected /$2/, got:"
    cs_diag_file "$WORK/out/check.txt" 5
    return 1
}

# Everything the policy reads, plus the generation: "unchanged" means equal.
store_state() {
    {
        "$CERTSTORE_BIN" --db "$CS_DB" pin ls --json
        "$CERTSTORE_BIN" --db "$CS_DB" account ls --json
        "$CERTSTORE_BIN" --db "$CS_DB" map ls --json
        "$CERTSTORE_BIN" --db "$CS_DB" stats --json
    } 2>&1
}
unchanged_since() {
    [ "$(store_state)" = "$1" ] && return 0
    cs_diag "the store changed"
    return 1
}
fails_unchanged() { # fails_unchanged REGEX SYNC-ARGS...: non-zero, one line, store as it was
    local re=$1 before
    shift
    before=$(store_state)
    if sync_dir "$@"; then
        cs_diag "sync $* succeeded"
        return 1
    fi
    [ "$(wc -l <"$SYNC_OUT")" -eq 1 ] || { cs_diag "not one line:"; cs_diag_file "$SYNC_OUT"; return 1; }
    sync_has "$re" && sync_has "store is unchanged" && unchanged_since "$before"
}

t_first_sync() {
    sync_ok && sync_has "3 users; pins \+1 -0; accounts \+2 " &&
        sync_has "mappings \+2 -0" && sync_has "1 conflicts" &&
        check_as alice "^accept account=alice kind=issuer-serial" &&
        check_as bob "^accept account=bob kind=cert" &&
        check_as carol "^accept account=carol kind=cert" &&
        cs_cli pin ls && grep -q "source=sync:ou=people,$SUFFIX" "$WORK/out/cli.txt"
}
cs_check 1 "first sync: ca-a pinned, alice (altSecurityIdentities) and bob (userCertificate) mapped, local carol untouched" t_first_sync

t_unchanged() {
    local before
    before=$(store_state)
    sync_ok && sync_has "incremental: 0 entries read" && unchanged_since "$before" &&
        sync_ok --full && sync_has "mappings \+0 -0 \(2 unchanged\)" && unchanged_since "$before"
}
cs_check 2 "an unchanged directory changes nothing, not even the generation" t_unchanged

t_cli_refuses() {
    local id
    id=$("$CERTSTORE_BIN" --db "$CS_DB" map ls --account bob | cut -d' ' -f1)
    if "$CERTSTORE_BIN" --db "$CS_DB" map rm "$id" >"$WORK/out/cli.txt" 2>&1; then
        cs_diag "map rm of a synced mapping succeeded"
        return 1
    fi
    grep -q "owned by sync:ou=people,$SUFFIX" "$WORK/out/cli.txt" &&
        ! "$CERTSTORE_BIN" --db "$CS_DB" account disable alice >/dev/null 2>&1 &&
        check_as bob "^accept account=bob"
}
cs_check 3 "the CLI refuses to change synced rows without --force" t_cli_refuses

t_disable() {
    ldap ldapmodify <<EOF || return 1
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
add: nsAccountLock
nsAccountLock: TRUE
EOF
    sync_ok && sync_has "1 disabled" && check_as alice "^reject account-disabled" &&
        check_as bob "^accept account=bob"
}
cs_check 4 "a user disabled in the directory: the next sync disables the account" t_disable

t_enable() {
    ldap ldapmodify <<EOF || return 1
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
delete: nsAccountLock
EOF
    sync_ok && sync_has "1 enabled" && check_as alice "^accept account=alice"
}
cs_check 5 "enabled again in the directory: accepted again" t_enable

# The source is named by --base: a filter that finds nobody stands for a wrong base.
t_wrong_base_same_source() {
    local before
    before=$(store_state)
    sync_dir --filter "(uid=nobody)" && { cs_diag "an empty result was applied"; return 1; }
    sync_has "refused: the directory no longer names 2 of the 2 mappings" &&
        unchanged_since "$before" && t_wrong_base_nosuch
}
t_wrong_base_nosuch() {
    fails_unchanged "No such object" --base "ou=nowhere,$SUFFIX"
}
cs_check 6 "a search that finds nobody (wrong filter or base) is refused by the mass-removal guard; a missing base fails" t_wrong_base_same_source

t_value_removed() {
    ldap ldapmodify <<EOF || return 1
dn: uid=bob,ou=people,$SUFFIX
changetype: modify
delete: userCertificate;binary
EOF
    fails_unchanged "no longer names 1 of the 2 mappings" &&
        sync_ok --max-removal 50 && sync_has "accounts \+0 -1" && sync_has "mappings \+0 -1" &&
        check_as bob "^reject no-mapping" && check_as alice "^accept account=alice"
}
cs_check 7 "a value removed in the directory: guarded past --max-removal, then removed locally" t_value_removed

t_pin_removed() {
    ldap ldapmodify <<EOF || return 1
dn: $NTAUTH
changetype: modify
add: cACertificate;binary
cACertificate;binary:< file://$WORK/ca-b.der
EOF
    # ca-b is pinned locally: the directory naming it changes nothing of it.
    sync_ok && sync_has "1 conflicts|2 conflicts|3 conflicts" &&
        fails_unchanged "no longer names any of the 1 CAs" --pins-dn "cn=limited,$SUFFIX" \
            --pins-attribute 'cACertificate;binary'
}
cs_check 8 "a CA the directory adds that is pinned locally stays local; every pin gone is refused" t_pin_removed

t_failures() {
    local dead
    dead=$(cs_free_port) || return 1
    fails_unchanged "Invalid credentials" --password-file "$WORK/wrong.pw" &&
        fails_unchanged "Can't contact LDAP server" --uri "ldap://127.0.0.1:$dead" &&
        fails_unchanged "Sizelimit exceeded|Size limit exceeded" --bind-dn "cn=limited,$SUFFIX" \
            --password-file <(printf 'limitedpw\n') --filter '(objectClass=*)'
}
cs_check 9 "bad credentials, an unreachable server, a size limit: one line, exit 1, store unchanged" t_failures

t_malformed() {
    ldap ldapmodify <<EOF || return 1
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
add: altSecurityIdentities
altSecurityIdentities: X509:<XYZ>not-a-form
EOF
    fails_unchanged "user alice: X509:<XYZ>not-a-form: unknown altSecurityIdentities form" &&
        ldap ldapmodify <<EOF
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
delete: altSecurityIdentities
altSecurityIdentities: X509:<XYZ>not-a-form
EOF
}
cs_check 10 "a malformed value in the directory: nothing changes" t_malformed

t_starttls() {
    "$CERTSTORE_BIN" --db "$CS_DB" sync --schema ldap --uri "$URI" --ca "$PKI/root.pem" \
        --base "ou=people,$SUFFIX" --bind-dn "$ADMIN" --password-file "$WORK/admin.pw" \
        --pins-dn "$NTAUTH" --cert-attribute 'userCertificate;binary' --dry-run \
        >"$SYNC_OUT" 2>&1 || { cs_diag_file "$SYNC_OUT"; return 1; }
    sync_has "^would sync" || return 1
    if "$CERTSTORE_BIN" --db "$CS_DB" sync --schema ldap --uri "$URI" --ca "$PKI/ca-b.pem" \
        --base "ou=people,$SUFFIX" --bind-dn "$ADMIN" --password-file "$WORK/admin.pw" \
        >"$SYNC_OUT" 2>&1; then
        cs_diag "StartTLS against the wrong CA succeeded"
        return 1
    fi
    sync_has "StartTLS"
}
cs_check 11 "StartTLS verified against --ca; a server the CA did not issue is refused" t_starttls

t_json_dry_run() {
    local before
    ldap ldapmodify <<EOF || return 1
dn: uid=bob,ou=people,$SUFFIX
changetype: modify
add: userCertificate;binary
userCertificate;binary:< file://$WORK/bob.der
EOF
    before=$(store_state)
    sync_ok --dry-run --json && sync_has '"dry_run":true' && sync_has '"mappings_added":1' &&
        unchanged_since "$before" && sync_ok --json && sync_has '"accounts_added":1' &&
        check_as bob "^accept account=bob"
}
cs_check 12 "--dry-run --json shows what would change and changes nothing" t_json_dry_run

t_config() {
    local conf=$WORK/sync.conf
    cat >"$conf" <<EOF
# what the command line would say, one option per line
schema = ldap
uri = $URI
insecure
base = ou=people,$SUFFIX
bind-dn = $ADMIN
password-file = $WORK/admin.pw
pins-dn = $NTAUTH
cert-attribute = userCertificate;binary
disabled-attribute = nsAccountLock=TRUE
EOF
    chmod 0600 "$conf"
    "$CERTSTORE_BIN" --db "$CS_DB" sync --config "$conf" --json --full >"$SYNC_OUT" 2>&1 ||
        { cs_diag_file "$SYNC_OUT"; return 1; }
    sync_has '"mappings_kept":2' || return 1
    chmod 0666 "$conf"
    if "$CERTSTORE_BIN" --db "$CS_DB" sync --config "$conf" >"$SYNC_OUT" 2>&1; then
        cs_diag "a configuration file others can write was used"
        return 1
    fi
    sync_has "writable by no one else" || return 1
    chmod 0600 "$conf"
    echo "bogus-key = 1" >>"$conf"
    ! "$CERTSTORE_BIN" --db "$CS_DB" sync --config "$conf" >"$SYNC_OUT" 2>&1 &&
        sync_has "sync.conf:11: unknown key 'bogus-key'"
}
cs_check 13 "--config: options from a file; refused when others can write it or it has an unknown key" t_config

# ---- RFC 4533 content sync (the syncprov overlay): incremental, deletions, --follow ----
json_has() {
    local want
    for want in "$@"; do
        grep -Fq -- "$want" "$SYNC_OUT" || { cs_diag "sync --json lacks $want:"; cs_diag_file "$SYNC_OUT" 5; return 1; }
    done
}

t_incremental() {
    ldap ldapmodify <<EOF || return 1
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
replace: cn
cn: Alice Liddell
EOF
    sync_ok --json && json_has '"pass":"incremental"' '"entries":1,' '"users":1,' \
        '"deletions":"content-sync"' '"mappings_removed":0,' &&
        check_as alice "^accept account=alice"
}
cs_check 14 "content sync: after one user changes, the next sync reads that one entry" t_incremental

t_deleted() {
    ldap ldapdelete <<EOF || return 1
uid=bob,ou=people,$SUFFIX
EOF
    sync_ok --json --allow-mass-removal && json_has '"pass":"incremental"' '"entries":0,' \
        '"accounts_removed":1,' '"mappings_removed":1,' &&
        check_as bob "^reject no-mapping" && check_as alice "^accept account=alice"
}
cs_check 15 "content sync: a user deleted in the directory is removed locally" t_deleted

t_state_wiped() {
    command -v sqlite3 >/dev/null || { cs_diag "sqlite3 not installed"; return 1; }
    sqlite3 "$CS_DB" "DELETE FROM sync_state" && sync_ok --json && json_has '"pass":"full"' &&
        sync_ok --json && json_has '"pass":"incremental"' '"entries":0,' &&
        sync_ok --json --full && json_has '"pass":"full"' '"mappings_kept":1,'
}
cs_check 16 "no stored state (or --full): a full pass; then incremental again" t_state_wiped

FOLLOW_OUT=$WORK/out/follow.txt
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
    local pid rc t0
    "$CERTSTORE_BIN" --db "$CS_DB" sync --schema ldap --uri "$URI" --insecure \
        --base "ou=people,$SUFFIX" --bind-dn "$ADMIN" --password-file "$WORK/admin.pw" \
        --pins-dn "$NTAUTH" --cert-attribute 'userCertificate;binary' \
        --disabled-attribute nsAccountLock=TRUE --follow --poll 1 --timeout 3 >"$FOLLOW_OUT" 2>&1 &
    pid=$!
    cs_kill_on_exit "$pid"
    follow_waits "^applied sync:ou=people" 20 || return 1
    t0=$(date +%s%N)
    ldap ldapmodify <<EOF || return 1
dn: uid=alice,ou=people,$SUFFIX
changetype: modify
add: nsAccountLock
nsAccountLock: TRUE
EOF
    follow_waits "^applied .*1 disabled" 20 || { cs_diag_file "$FOLLOW_OUT" 30; return 1; }
    cs_diag "ldapmodify -> applied in $((($(date +%s%N) - t0) / 1000000)) ms"
    check_as alice "^reject account-disabled" || return 1
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    [ "$rc" -eq 0 ] || { cs_diag "sync --follow exited $rc on SIGTERM"; return 1; }
}
cs_check 17 "sync --follow: a user disabled in slapd is disabled locally within seconds; SIGTERM: exit 0" t_follow

t_no_syncprov() {
    local port2 uri2 dir2=$WORK/slapd2 db2=$WORK/db/plain.db pid2
    port2=$(cs_free_port) || return 1
    uri2=ldap://127.0.0.1:$port2
    mkdir -p "$dir2/db"
    sed -e '/^moduleload syncprov/d' -e '/^overlay syncprov/d' -e '/^syncprov-/d' \
        -e "s|^directory .*|directory $dir2/db|" -e "s|^pidfile .*|pidfile $dir2/slapd.pid|" \
        "$SLAPD/slapd.conf" >"$dir2/slapd.conf"
    slapd -d 0 -h "$uri2/" -f "$dir2/slapd.conf" >"$WORK/log/slapd2.log" 2>&1 &
    pid2=$!
    cs_kill_on_exit "$pid2"
    cs_wait_port "$port2" 20 "$pid2" || { cs_diag_file "$WORK/log/slapd2.log"; return 1; }
    ldapadd -x -H "$uri2" -D "$ADMIN" -y "$WORK/admin.pw" >>"$WORK/out/ldap.txt" 2>&1 <<EOF || return 1
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: uid=alice,$SUFFIX
objectClass: inetOrgPerson
objectClass: certstoreTestUser
uid: alice
cn: Alice
sn: Alice
altSecurityIdentities: $(altsec_of "$PKI/alice.pem")

dn: uid=dave,$SUFFIX
objectClass: inetOrgPerson
uid: dave
cn: Dave
sn: Dave
userCertificate;binary:< file://$WORK/bob.der
EOF
    plain() {
        "$CERTSTORE_BIN" --db "$db2" sync --schema ldap --uri "$uri2" --insecure --base "$SUFFIX" \
            --bind-dn "$ADMIN" --password-file "$WORK/admin.pw" \
            --cert-attribute 'userCertificate;binary' --json "$@" >"$SYNC_OUT" 2>&1 ||
            { cs_diag_file "$SYNC_OUT"; return 1; }
    }
    "$CERTSTORE_BIN" --db "$db2" init >/dev/null 2>&1 || return 1
    plain && json_has '"pass":"full"' '"entries":2,' '"accounts_added":2,' || return 1
    ldapmodify -x -H "$uri2" -D "$ADMIN" -y "$WORK/admin.pw" >>"$WORK/out/ldap.txt" 2>&1 <<EOF || return 1
dn: uid=alice,$SUFFIX
changetype: modify
add: nsAccountLock
nsAccountLock: TRUE
EOF
    # modifyTimestamp reads look five minutes back: both entries are new enough.
    plain --disabled-attribute nsAccountLock=TRUE --full && json_has '"accounts_disabled":1,' &&
        ldapdelete -x -H "$uri2" -D "$ADMIN" -y "$WORK/admin.pw" "uid=dave,$SUFFIX" \
            >>"$WORK/out/ldap.txt" 2>&1 || return 1
    plain --disabled-attribute nsAccountLock=TRUE --allow-mass-removal &&
        json_has '"pass":"incremental"' '"deletions":"next-full-pass"' '"accounts_removed":0,' &&
        plain --disabled-attribute nsAccountLock=TRUE --allow-mass-removal --full &&
        json_has '"pass":"full"' '"accounts_removed":1,'
}
cs_check 18 "no syncprov: pages, then modifyTimestamp; a deletion waits for the full pass" t_no_syncprov

cs_finish
