#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Debian's Apache httpd with mod_certstore: CERTSTORE_ACCOUNT,
# CERTSTORE_DECISION and CERTSTORE_MAPPING reach a CGI application for a
# cert, an spki and a rule mapping; CertstoreSetUser On makes the account
# the request's user (REMOTE_USER, %u, Require user); Require
# certstore-account authorizes by account; HTTP/2 streams read their
# connection's decision; a re-mapping shows on the next connection and a
# removed mapping gets no connection, with no reload; a resumed session
# reports the acceptance it was made with.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server apache2 httpd
[ -n "${CERTSTORE_APACHE_MODULE:-}" ] && [ -f "$CERTSTORE_APACHE_MODULE" ] ||
    cs_skip "mod_certstore.so not built (install apache2-dev)"
MODULES=/usr/lib/apache2/modules
[ -f "$MODULES/mod_ssl.so" ] || cs_skip "mod_ssl not found in $MODULES"
cs_setup apache-module
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki
cs_db_standard
cs_cli map add "$PKI/bob.pem" --account bob --kind spki &&
    BOB_ID=$(sed -n 's/^mapping \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt") &&
    cs_cli pin add "$PKI/ca-b.pem" &&
    CA_B=$(awk '/^pinned/ {print $2}' "$WORK/out/cli.txt") &&
    cs_cli rule add --pin "$CA_B" --subject CN=carol --account partner --create-account &&
    RULE_ID=$(sed -n 's/^rule \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt") || {
    echo "Bail out! could not build the test database" >&2
    exit 1
}
cs_cli map ls && ALICE_ID=$(awk '$2 == "cert" && /account=alice / {print $1}' "$WORK/out/cli.txt")
[ -n "$BOB_ID" ] && [ -n "$RULE_ID" ] && [ -n "$ALICE_ID" ] || {
    echo "Bail out! no mapping ids (alice '$ALICE_ID', bob '$BOB_ID', rule '$RULE_ID')" >&2
    exit 1
}
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

PORT=$(cs_free_port) && OPT_PORT=$(cs_free_port) || exit 1
APA=$WORK/apache
mkdir -p "$APA/cgi" "$APA/run" "$APA/htdocs"
cat >"$APA/cgi/env.sh" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
printf 'cgi account=[%s] decision=[%s] mapping=[%s] user=[%s]\n' "${CERTSTORE_ACCOUNT-}" \
    "${CERTSTORE_DECISION-}" "${CERTSTORE_MAPPING-}" "${REMOTE_USER-}"
EOF
chmod 0755 "$APA/cgi/env.sh"
chmod -R a+rX "$APA"

vhost_common() {
    cat <<EOF
    DocumentRoot $APA/htdocs
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile $PKI/server.pem
    SSLCertificateKeyFile $PKI/server.key
    SSLCACertificateFile $PKI/roots.pem
    SSLVerifyDepth 3
    SSLSessionTickets on
    ScriptAlias /env $APA/cgi/env.sh
    ScriptAlias /user $APA/cgi/env.sh
    ScriptAlias /only-alice $APA/cgi/env.sh
    <Directory $APA/cgi>
        Require all granted
    </Directory>
    <Location /user>
        CertstoreSetUser On
        Require user alice
    </Location>
    <Location /only-alice>
        Require certstore-account alice other
    </Location>
EOF
}

cat >"$APA/httpd.conf" <<EOF
ServerRoot $APA
ServerName localhost
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule authz_user_module $MODULES/mod_authz_user.so
LoadModule alias_module $MODULES/mod_alias.so
LoadModule cgid_module $MODULES/mod_cgid.so
LoadModule mime_module $MODULES/mod_mime.so
LoadModule socache_shmcb_module $MODULES/mod_socache_shmcb.so
LoadModule http2_module $MODULES/mod_http2.so
LoadModule certstore_module $CERTSTORE_APACHE_MODULE
LoadModule ssl_module $MODULES/mod_ssl.so
User www-data
Group www-data
PidFile $APA/run/httpd.pid
DefaultRuntimeDir $APA/run
Mutex file:$APA/run default
ScriptSock $APA/run/cgid.sock
ErrorLog $APA/error.log
LogLevel info
LogFormat "%u %r %>s" userlog
CustomLog $APA/access.log userlog
TypesConfig /etc/mime.types
StartServers 2
ServerLimit 4
ThreadsPerChild 25
MaxRequestWorkers 100
MinSpareThreads 25
MaxSpareThreads 100
Listen 127.0.0.1:$PORT https
Listen 127.0.0.1:$OPT_PORT https
SSLSessionCache shmcb:$APA/run/ssl_scache(512000)
SSLSessionCacheTimeout 300
<VirtualHost 127.0.0.1:$PORT>
$(vhost_common)
    Protocols h2 http/1.1
    SSLVerifyClient require
</VirtualHost>
<VirtualHost 127.0.0.1:$OPT_PORT>
$(vhost_common)
    SSLVerifyClient optional
</VirtualHost>
EOF

http_start_server "$APA/stdout.txt" "$CS_SERVER_BIN" -DFOREGROUND -f "$APA/httpd.conf" || exit 1
if ! cs_wait_port "$PORT" 20 "$HTTP_SERVER_PID" || ! http_wait_children "$HTTP_SERVER_PID" 2; then
    cs_diag_file "$APA/stdout.txt"
    cs_diag_file "$APA/error.log"
    echo "Bail out! apache2 did not start" >&2
    exit 1
fi
CHILDREN=$(http_children "$HTTP_SERVER_PID")
cs_diag "apache2 parent $HTTP_SERVER_PID, children $CHILDREN"
URL=https://127.0.0.1:$PORT
esc() { printf '%s' "$1" | sed 's/[][]/\\&/g'; }

# app_sees PATH NAME ACCOUNT DECISION MAPPING USER [curl ARGS...]
app_sees() {
    local path=$1 name=$2 account=$3 decision=$4 mapping=$5 user=$6
    shift 6
    cs_expect_curl_accept "$URL$path" "$name" \
        "$(esc "cgi account=[$account] decision=[$decision] mapping=[$mapping] user=[$user]")" \
        "$account" "$@"
}

# status_of URL NAME: the HTTP status a request gets.
status_is() {
    local url=$1 name=$2 want=$3
    cs_curl "$url" "$name" || { cs_diag "curl as $name: exit $CS_CURL_RC"; return 1; }
    cs_out_has "^HTTP/[0-9.]+ $want" || {
        cs_diag "$name on $url: expected $want"
        cs_diag_file "$CS_OUT" 5
        return 1
    }
}

cs_check 1 "a cert mapping's account in the application's environment" \
    app_sees /env alice alice accept "cert:$ALICE_ID" ""
cs_check 2 "an spki mapping's account in the application's environment" \
    app_sees /env bob bob accept "spki:$BOB_ID" ""
cs_check 3 "a rule's account in the application's environment" \
    app_sees /env carol partner accept "rule:$RULE_ID" ""

http2() {
    app_sees /user alice alice accept "cert:$ALICE_ID" alice --http2 || return 1
    cs_out_has '^HTTP/2 200' || { cs_diag "not served over HTTP/2"; cs_diag_file "$CS_OUT" 5; return 1; }
}
cs_check 4 "HTTP/2: a stream reads its connection's decision (and user)" http2

set_user() {
    app_sees /user alice alice accept "cert:$ALICE_ID" alice || return 1
    status_is "$URL/user" bob 403 || return 1
    grep -Eq '^alice GET /user HTTP/[0-9.]+ 200$' "$APA/access.log" || {
        cs_diag "access log has no '%u' = alice line"
        cs_diag_file "$APA/access.log" 5
        return 1
    }
}
cs_check 5 "CertstoreSetUser On: REMOTE_USER, %u and Require user" set_user

require_account() {
    app_sees /only-alice alice alice accept "cert:$ALICE_ID" "" || return 1
    status_is "$URL/only-alice" bob 403
}
cs_check 6 "Require certstore-account grants alice, denies bob" require_account

no_certificate() {
    cs_curl "https://127.0.0.1:$OPT_PORT/env" - -H "Certstore-Account: mallory" ||
        { cs_diag "no-certificate request failed"; return 1; }
    cs_out_has "$(esc "cgi account=[] decision=[] mapping=[] user=[]")" || {
        cs_diag "a client without a certificate got an account"
        cs_diag_file "$CS_OUT" 10
        return 1
    }
    status_is "https://127.0.0.1:$OPT_PORT/only-alice" - 403
}
cs_check 7 "a client without a certificate gets no account, and no certstore-account access" \
    no_certificate

resumes_with_account() {
    local kind opts sess=$WORK/out/resume.sess again=$WORK/out/resume2.sess want
    want=$(esc "cgi account=[alice] decision=[accept] mapping=[cert:$ALICE_ID] user=[alice]")
    for kind in "${HTTP_RESUME_KINDS[@]}"; do
        opts=${kind#*:}
        CS_PAYLOAD=$'GET /user HTTP/1.0\r\nHost: localhost\r\n\r\n' \
            http_session_save "$PORT" alice "$opts" "$sess" "$want" alice || return 1
        CS_PAYLOAD=$'GET /user HTTP/1.0\r\nHost: localhost\r\n\r\n' \
            http_session_offer "$PORT" alice "$opts" "$sess" "$again" "$want"
        [ "$HTTP_OFFER" = reused ] || {
            cs_diag "${kind%%:*}: offer was '$HTTP_OFFER', expected a resumption with the account"
            cs_diag_file "$CS_OUT" 20
            return 1
        }
    done
}
cs_check 8 "a resumed session carries the account it was accepted with" resumes_with_account

remapped() {
    cs_cli map rm "$ALICE_ID" && cs_cli map add "$PKI/alice.pem" --account bob || return 1
    NEW_ID=$(sed -n 's/^mapping \([0-9]*\):.*/\1/p' "$WORK/out/cli.txt")
    app_sees /env alice bob accept "cert:$NEW_ID" "" || return 1
    status_is "$URL/only-alice" alice 403
}
cs_check 9 "a re-mapping shows on the next connection, with no reload" remapped

removed() {
    cs_cli map rm "$NEW_ID" || return 1
    # HTTP/1.1: curl reports the TLS 1.3 alert as 35/56 only without h2.
    cs_expect_curl_reject "$URL/env" alice no-mapping --http1.1
}
cs_check 10 "a removed mapping gets no connection" removed

same_processes() {
    [ "$(http_children "$HTTP_SERVER_PID")" = "$CHILDREN" ] || {
        cs_diag "children were $CHILDREN, now $(http_children "$HTTP_SERVER_PID")"
        return 1
    }
}
cs_check 11 "the same Apache children served it all (no reload)" same_processes

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$APA/error.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
