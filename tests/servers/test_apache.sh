#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Apache httpd (Debian's apache2 2.4, mod_ssl) enforces certstore with
# nothing but OPENSSL_CONF in the parent's environment: the production shape
# (event MPM, parent as root, children as www-data, shmcb session cache and
# tickets on, ordinary SSLVerifyClient require) and the seven checks of the
# drop-in proof. Reload is `apache2 -k graceful`, i.e. USR1 to the parent.
#
# The binary runs directly with a complete config of its own, so Debian's
# envvars and apache2ctl are not involved (they only fill in variables that
# this config spells out).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/http_common.sh"

cs_require_server apache2 httpd
cs_setup apache
# shellcheck disable=SC2119 # no options: the default ECDSA PKI
cs_make_pki
cs_db_standard
cs_db_grant www-data
cs_log_grant www-data
cs_write_openssl_cnf "$WORK/openssl.cnf"

MODULES=/usr/lib/apache2/modules
[ -f "$MODULES/mod_ssl.so" ] || cs_skip "mod_ssl not found in $MODULES"

PORT=$(cs_free_port) || exit 1
APA=$WORK/apache
mkdir -p "$APA/htdocs" "$APA/run"
echo "certstore-apache-ok" >"$APA/htdocs/index.html"
chmod -R a+rX "$APA"

cat >"$APA/httpd.conf" <<EOF
ServerRoot $APA
ServerName localhost
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule dir_module $MODULES/mod_dir.so
LoadModule mime_module $MODULES/mod_mime.so
LoadModule socache_shmcb_module $MODULES/mod_socache_shmcb.so
LoadModule ssl_module $MODULES/mod_ssl.so
User www-data
Group www-data
PidFile $APA/run/httpd.pid
DefaultRuntimeDir $APA/run
Mutex file:$APA/run default
ErrorLog $APA/error.log
LogLevel info
TypesConfig /etc/mime.types
StartServers 2
ServerLimit 4
ThreadsPerChild 25
MaxRequestWorkers 100
MinSpareThreads 25
MaxSpareThreads 100
Listen 127.0.0.1:$PORT https
SSLSessionCache shmcb:$APA/run/ssl_scache(512000)
SSLSessionCacheTimeout 300
<VirtualHost 127.0.0.1:$PORT>
    DocumentRoot $APA/htdocs
    DirectoryIndex index.html
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile $PKI/server.pem
    SSLCertificateKeyFile $PKI/server.key
    SSLCACertificateFile $PKI/roots.pem
    SSLVerifyClient require
    SSLVerifyDepth 3
    SSLSessionTickets on
    <Directory $APA/htdocs>
        Require all granted
    </Directory>
</VirtualHost>
EOF

http_start_server "$APA/stdout.txt" "$CS_SERVER_BIN" -DFOREGROUND -f "$APA/httpd.conf" || exit 1
if ! cs_wait_port "$PORT" 20 "$HTTP_SERVER_PID" || ! http_wait_children "$HTTP_SERVER_PID" 2; then
    cs_diag_file "$APA/stdout.txt"
    cs_diag_file "$APA/error.log"
    echo "Bail out! apache2 did not start" >&2
    exit 1
fi
cs_diag "apache2 parent $HTTP_SERVER_PID, children $(http_children "$HTTP_SERVER_PID")"

HTTP_URL=https://127.0.0.1:$PORT/
HTTP_PORT=$PORT
HTTP_MARKER='certstore-apache-ok'
HTTP_WORKER_USER=www-data
HTTP_WORKERS=2
# mod_ssl sets its own session id context on every connection; certstore
# binds its own at the ClientHello, so sessions resume while nothing changed.
HTTP_EXPECT_REUSE=1
HTTP_RELOAD_NAME="graceful restart (USR1 to the parent, apache2 -k graceful)"
# shellcheck disable=SC2317 # called by http_check_reload
http_server_reload() { kill -USR1 "$HTTP_SERVER_PID"; }

http_run_checks

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$APA/error.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
