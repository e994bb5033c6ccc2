#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package, end to end on this machine: build it with CPack,
# install it with apt-get, run the demo against the installed files only
# (/usr/bin/certstore and certstore.so in libcrypto's modules directory,
# loaded by name), check lintian, then remove (the database stays) and
# purge (it goes). The machine is left as it was found: an EXIT trap purges
# the package and drops the certstore group if this test created them.
#
#   test_package.sh BUILD_DIR SOURCE_DIR SANITIZED(0|1)
#
# TAP output. Exit 77 (skip) only when not root, dpkg/apt-get are missing,
# the build is sanitizer-instrumented (a package must not be), or a
# certstore package or /var/lib/certstore is already on the machine (the
# test would destroy it).
set -uo pipefail

build=${1:?usage: test_package.sh BUILD_DIR SOURCE_DIR SANITIZED}
src=${2:?usage: test_package.sh BUILD_DIR SOURCE_DIR SANITIZED}
sanitized=${3:-0}

skip() {
    printf '1..0 # SKIP %s\n' "$*"
    exit 77
}

[ "$(id -u)" -eq 0 ] || skip "installing a package needs root"
command -v dpkg >/dev/null || skip "dpkg missing"
command -v apt-get >/dev/null || skip "apt-get missing"
[ "$sanitized" = 0 ] || skip "sanitizer-instrumented build: not packaged"
if dpkg-query -W -f='${Status}' certstore 2>/dev/null | grep -q 'installed\|config-files'; then
    skip "a certstore package is already on this machine; not replacing it"
fi
[ ! -e /var/lib/certstore ] || skip "/var/lib/certstore exists; purge would delete it"

DATA_DIR=/var/lib/certstore
MODULES_DIR=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
WORK=$(mktemp -d /tmp/certstore-pkg-XXXXXX)
chmod 0755 "$WORK"
group_existed=0
getent group certstore >/dev/null && group_existed=1
fails=0
n=0

cleanup() {
    if dpkg-query -W -f='${Status}' libapache2-mod-certstore 2>/dev/null |
        grep -q 'installed\|config-files'; then
        "${APT[@]}" purge libapache2-mod-certstore >/dev/null 2>&1 ||
            dpkg --purge libapache2-mod-certstore >/dev/null 2>&1
    fi
    # Enabling mod_certstore enables mod_ssl too (a2enmod's dependency).
    if [ "${ssl_was_enabled:-1}" = 0 ] && [ -e /etc/apache2/mods-enabled/ssl.load ]; then
        a2dismod -q ssl >/dev/null 2>&1
    fi
    if dpkg-query -W -f='${Status}' libnginx-mod-http-certstore 2>/dev/null |
        grep -q 'installed\|config-files'; then
        "${APT[@]}" purge libnginx-mod-http-certstore >/dev/null 2>&1 ||
            dpkg --purge libnginx-mod-http-certstore >/dev/null 2>&1
    fi
    if dpkg-query -W -f='${Status}' certstore 2>/dev/null | grep -q 'installed\|config-files'; then
        echo "# cleanup: purging the certstore package"
        "${APT[@]}" purge certstore >/dev/null 2>&1 || dpkg --purge certstore >/dev/null 2>&1
    fi
    rm -rf "$DATA_DIR"
    if [ "$group_existed" = 0 ] && getent group certstore >/dev/null; then
        groupdel certstore
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

diag() { printf '# %s\n' "$*"; }
diag_file() { sed 's/^/#   /' "$1" | tail -n 40; }

check() {
    local desc=$1
    shift
    n=$((n + 1))
    if "$@"; then
        printf 'ok %d - %s\n' "$n" "$desc"
        return 0
    fi
    printf 'not ok %d - %s\n' "$n" "$desc"
    fails=$((fails + 1))
    return 1
}

# Bail out: later steps depend on this one.
require() {
    check "$@" || {
        echo "Bail out! $1"
        exit 1
    }
}

# ---- steps -----------------------------------------------------------------

# Checksums of every server's configuration, to show install touched none.
server_config_sums() {
    local d
    for d in /etc/ssl /etc/nginx /etc/apache2 /etc/haproxy /etc/stunnel /etc/default \
        /etc/systemd/system; do
        [ -d "$d" ] && find "$d" -type f -print0 | sort -z | xargs -0 -r sha256sum
    done
    ls /etc/systemd/system 2>/dev/null
}

build_package() {
    if ! cpack -G DEB -B "$WORK/pkg" --config "$build/CPackConfig.cmake" >"$WORK/cpack.log" 2>&1; then
        diag_file "$WORK/cpack.log"
        return 1
    fi
    DEB=$(find "$WORK/pkg" -maxdepth 1 -name 'certstore_*_amd64.deb' | head -n 1)
    APACHE_DEB=$(find "$WORK/pkg" -maxdepth 1 -name 'libapache2-mod-certstore_*_amd64.deb' |
        head -n 1)
    NGINX_DEB=$(find "$WORK/pkg" -maxdepth 1 -name 'libnginx-mod-http-certstore_*_amd64.deb' |
        head -n 1)
    [ -n "$DEB" ] || { diag "no certstore_*_amd64.deb in $WORK/pkg"; return 1; }
    diag "built $(basename "$DEB")"
}

package_name_and_depends() {
    local version depends
    version=$("$build/tools/certstore" --version | awk '{print $2}')
    [ "$(basename "$DEB")" = "certstore_${version}_amd64.deb" ] ||
        { diag "file name $(basename "$DEB"), version $version"; return 1; }
    depends=$(dpkg-deb -f "$DEB" Depends)
    diag "Depends: $depends"
    [[ $depends == *libssl3* && $depends == *libsqlite3-0* ]]
}

lintian_clean() {
    command -v lintian >/dev/null || { diag "lintian is not installed"; return 1; }
    # lintian dislikes running as root but works; errors (E:) fail the test.
    lintian --fail-on error "$DEB" >"$WORK/lintian.log" 2>&1
    local rc=$?
    grep -v '^running with root' "$WORK/lintian.log" | sed 's/^/# /'
    return $rc
}

install_package() {
    server_config_sums >"$WORK/etc.before"
    if ! "${APT[@]}" install --no-install-recommends "$DEB" >"$WORK/apt.log" 2>&1; then
        diag_file "$WORK/apt.log"
        return 1
    fi
}

installed_layout() {
    local f ok=0
    for f in /usr/bin/certstore "$MODULES_DIR/certstore.so" /usr/include/certstore.h \
        /usr/share/man/man1/certstore.1.gz /usr/share/man/man7/certstore-provider.7.gz \
        /usr/share/doc/certstore/openssl.cnf.example /usr/share/doc/certstore/copyright \
        /usr/share/doc/certstore/snippets/nginx.conf \
        /usr/share/bash-completion/completions/certstore; do
        [ -f "$f" ] || { diag "missing $f"; ok=1; }
    done
    return $ok
}

# The start-up checks: a drop-in per server unit, each running the doctor.
DROPINS=(nginx.service haproxy.service stunnel@.service stunnel4.service apache2.service
    apache2@.service)
dropins_installed() {
    local unit ok=0
    for unit in "${DROPINS[@]}"; do
        [ -f "/lib/systemd/system/$unit.d/certstore.conf" ] ||
            { diag "missing /lib/systemd/system/$unit.d/certstore.conf"; ok=1; }
    done
    return $ok
}

# systemd-analyze verify where there is one; else what it would insist on:
# a [Service] section and one ExecStartPre= with an absolute, existing program.
dropins_parse() {
    local unit f prog ok=0
    for unit in "${DROPINS[@]}"; do
        f=/lib/systemd/system/$unit.d/certstore.conf
        [ "$(grep -c '^\[Service\]$' "$f")" -eq 1 ] || { diag "$f: no [Service]"; ok=1; }
        [ "$(grep -c '^ExecStartPre=' "$f")" -eq 1 ] || { diag "$f: no ExecStartPre="; ok=1; }
        prog=$(sed -n 's/^ExecStartPre=\([^ ]*\).*/\1/p' "$f")
        [[ $prog == /* && -x $prog ]] || { diag "$f: '$prog' is not an absolute program"; ok=1; }
        if grep -v '^#' "$f" | grep -v '^\[Service\]$' | grep -v '^ExecStartPre=' | grep -q .; then
            diag "$f: unexpected lines"
            ok=1
        fi
        # stunnel4.service is generated from its init script: no unit file to verify.
        if command -v systemd-analyze >/dev/null && [ -f "/lib/systemd/system/$unit" ]; then
            local name=$unit
            [[ $name == *@.service ]] && name=${name/@./@test.}
            systemd-analyze verify --man=no "$name" >"$WORK/verify.log" 2>&1
            # Complaints about the servers' own units are theirs; none may name ours.
            if grep -i 'certstore' "$WORK/verify.log" | sed 's/^/# /' | grep -q .; then
                diag "systemd-analyze verify $name complains about certstore.conf"
                ok=1
            fi
        fi
    done
    return $ok
}

# The revocation refresher: installed, parsed by systemd, and not enabled.
refresh_timer_installed_not_enabled() {
    local u ok=0
    for u in certstore-refresh.service certstore-refresh.timer; do
        [ -f "/lib/systemd/system/$u" ] || { diag "missing /lib/systemd/system/$u"; ok=1; }
    done
    [ "$ok" -eq 0 ] || return 1
    grep -q "^ExecStart=/bin/sh -c '/usr/bin/certstore crl fetch; crl=\$?; /usr/bin/certstore ocsp refresh || exit 1; exit \$crl'$" \
        /lib/systemd/system/certstore-refresh.service ||
        { diag "the service does not run crl fetch and ocsp refresh"; ok=1; }
    if find /etc/systemd/system -name 'certstore-refresh*' 2>/dev/null | grep -q .; then
        diag "certstore-refresh is enabled after install"
        ok=1
    fi
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify --man=no /lib/systemd/system/certstore-refresh.timer \
            >"$WORK/verify.log" 2>&1 || { diag_file "$WORK/verify.log"; ok=1; }
    fi
    return $ok
}

# Each drop-in's command, run as systemd would (with its \$\$ and %i): a server
# whose configuration names a module that does not exist must not start,
# and one whose configuration never mentions certstore starts as before.
dropin_command() {
    sed -n 's/^ExecStartPre=//p' "/lib/systemd/system/$1.d/certstore.conf" |
        sed 's/\$\$/$/g; s/%i/test/g'
}
doctor_stops_servers_without_policy() {
    local unit cmd rc ok=0
    sed "s|^activate = 1|activate = 1\nmodule = $WORK/nowhere/certstore.so|" \
        "$WORK/by-name.cnf" >"$WORK/missing-module.cnf"
    grep -q '^module = ' "$WORK/missing-module.cnf" || { diag "no module line"; return 1; }
    /usr/bin/certstore doctor --server nginx --config "$WORK/missing-module.cnf" \
        >"$WORK/doctor.log" 2>&1
    rc=$?
    [ "$rc" -eq 1 ] || { diag "doctor --server nginx: exit $rc"; diag_file "$WORK/doctor.log"; ok=1; }
    for unit in "${DROPINS[@]}"; do
        cmd=$(dropin_command "$unit")
        rc=0
        (export OPENSSL_CONF=$WORK/missing-module.cnf && eval "$cmd") >"$WORK/doctor.log" 2>&1 ||
            rc=$?
        [ "$rc" -ne 0 ] || { diag "$unit: starts with a module that does not exist"; ok=1; }
        rc=0
        (unset OPENSSL_CONF && eval "$cmd") >"$WORK/doctor.log" 2>&1 || rc=$?
        [ "$rc" -eq 0 ] || {
            diag "$unit: stopped without any certstore configuration (exit $rc)"
            diag_file "$WORK/doctor.log"
            ok=1
        }
    done
    return $ok
}

data_dir_created() {
    getent group certstore >/dev/null || { diag "no certstore group"; return 1; }
    local mode
    mode=$(stat -c '%U:%G %a' "$DATA_DIR" 2>/dev/null)
    [ "$mode" = "root:certstore 750" ] || { diag "$DATA_DIR is '$mode'"; return 1; }
    # Nothing enabled: no database made for the administrator.
    [ -z "$(ls -A "$DATA_DIR")" ] || { diag "$DATA_DIR not empty"; return 1; }
}

no_server_config_changed() {
    server_config_sums >"$WORK/etc.after"
    diff -u "$WORK/etc.before" "$WORK/etc.after" | sed 's/^/# /'
    cmp -s "$WORK/etc.before" "$WORK/etc.after" || return 1
    ! dpkg -L certstore | grep -q '^/etc/'
}

# The provider loaded by name from the system modules directory reports
# the same name and version as the installed CLI.
provider_listed_by_name() {
    cat >"$WORK/by-name.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
certstore = certstore_sect
[default_sect]
activate = 1
[certstore_sect]
activate = 1
db = $WORK/none.db
mode = enforce
log = stderr
CNF
    local out version
    version=$(/usr/bin/certstore --version | awk '{print $2}')
    out=$(env -u OPENSSL_MODULES OPENSSL_CONF="$WORK/by-name.cnf" \
        openssl list -providers -verbose 2>&1)
    printf '%s\n' "$out" | sed 's/^/# /'
    printf '%s\n' "$out" | grep -A4 '^  certstore$' >"$WORK/listed" || return 1
    grep -q "name: certstore" "$WORK/listed" &&
        grep -q "version: $version\$" "$WORK/listed" &&
        grep -q "status: active" "$WORK/listed"
}

man_pages_installed() {
    command -v man >/dev/null || { diag "man not installed"; return 1; }
    man -w 1 certstore >/dev/null && man -w 7 certstore-provider >/dev/null
}

demo_against_installed() {
    (cd "$WORK" && env -u OPENSSL_MODULES -u CERTSTORE_BUILD CERTSTORE_BIN=/usr/bin/certstore \
        MKPKI_BIN="$build/tests/common/mkpki" bash "$src/tools/demo.sh") >"$WORK/demo.log" 2>&1 ||
        { diag_file "$WORK/demo.log"; return 1; }
}

live_demo_against_installed() {
    (cd "$WORK" && env -u OPENSSL_MODULES -u CERTSTORE_BUILD CERTSTORE_BIN=/usr/bin/certstore \
        MKPKI_BIN="$build/tests/common/mkpki" CERTSTORE_MODULE_DIR="$MODULES_DIR" \
        timeout 300 bash "$src/tools/demo_live.sh") >"$WORK/live.log" 2>&1 ||
        { diag_file "$WORK/live.log"; return 1; }
}

# ---- the nginx module's package (built where nginx-dev was installed) --------

NGINX_LINK=/etc/nginx/modules-enabled/50-mod-http-certstore.conf
nginx_module_package() {
    local depends
    depends=$(dpkg-deb -f "$NGINX_DEB" Depends)
    diag "libnginx-mod-http-certstore Depends: $depends"
    [[ $depends == *nginx-abi-* && $depends == *certstore* ]] || return 1
    lintian --fail-on error "$NGINX_DEB" >"$WORK/lintian-nginx.log" 2>&1
    local rc=$?
    grep -v '^running with root' "$WORK/lintian-nginx.log" | sed 's/^/# /'
    [ "$rc" -eq 0 ] || return 1
    "${APT[@]}" install --no-install-recommends "$NGINX_DEB" >"$WORK/apt.log" 2>&1 ||
        { diag_file "$WORK/apt.log"; return 1; }
    [ -f /usr/lib/nginx/modules/ngx_http_certstore_module.so ] &&
        [ -f /usr/share/nginx/modules-available/mod-http-certstore.conf ] &&
        [ -L "$NGINX_LINK" ] || { diag "module, its .conf or $NGINX_LINK missing"; return 1; }
}

# Debian's own nginx.conf (modules-enabled/*.conf) loads it, and knows its variables.
nginx_loads_module() {
    command -v nginx >/dev/null || { diag "nginx is not installed"; return 1; }
    cat >"$WORK/nginx-vars.conf" <<NGX
include /etc/nginx/modules-enabled/*.conf;
pid $WORK/nginx.pid;
error_log stderr;
events {}
http { server { listen 127.0.0.1:1; return 200 "\$certstore_account \$certstore_decision \$certstore_mapping"; } }
NGX
    nginx -t -q -c "$WORK/nginx-vars.conf" >"$WORK/nginx-t.log" 2>&1 ||
        { diag_file "$WORK/nginx-t.log"; return 1; }
}

nginx_module_removed() {
    "${APT[@]}" purge libnginx-mod-http-certstore >"$WORK/apt.log" 2>&1 ||
        { diag_file "$WORK/apt.log"; return 1; }
    [ ! -e "$NGINX_LINK" ] && [ ! -e "$NGINX_LINK.removed" ] &&
        [ ! -e /usr/lib/nginx/modules/ngx_http_certstore_module.so ]
}

# ---- the Apache module's package (built where apache2-dev was installed) ------

apache_module_package() {
    local depends
    depends=$(dpkg-deb -f "$APACHE_DEB" Depends)
    diag "libapache2-mod-certstore Depends: $depends"
    [[ $depends == *apache2-api-* && $depends == *certstore* ]] || return 1
    lintian --fail-on error "$APACHE_DEB" >"$WORK/lintian-apache.log" 2>&1
    local rc=$?
    grep -v '^running with root' "$WORK/lintian-apache.log" | sed 's/^/# /'
    [ "$rc" -eq 0 ] || return 1
    ssl_was_enabled=0
    [ -e /etc/apache2/mods-enabled/ssl.load ] && ssl_was_enabled=1
    "${APT[@]}" install --no-install-recommends "$APACHE_DEB" >"$WORK/apt.log" 2>&1 ||
        { diag_file "$WORK/apt.log"; return 1; }
    [ -f /usr/lib/apache2/modules/mod_certstore.so ] &&
        [ -f /etc/apache2/mods-available/certstore.load ] &&
        [ -L /etc/apache2/mods-enabled/certstore.load ] &&
        [ -L /etc/apache2/mods-enabled/ssl.load ] ||
        { diag "module, certstore.load or its mods-enabled links (and ssl's) missing"; return 1; }
}

# Debian's apache2.conf loads it, and knows its directives.
apache_loads_module() {
    command -v apache2ctl >/dev/null || { diag "apache2 is not installed"; return 1; }
    apache2ctl -M >"$WORK/apache-M.log" 2>&1 || { diag_file "$WORK/apache-M.log"; return 1; }
    grep -q 'certstore_module (shared)' "$WORK/apache-M.log" ||
        { diag_file "$WORK/apache-M.log"; return 1; }
}

apache_module_removed() {
    "${APT[@]}" purge libapache2-mod-certstore >"$WORK/apt.log" 2>&1 ||
        { diag_file "$WORK/apt.log"; return 1; }
    [ ! -e /etc/apache2/mods-enabled/certstore.load ] &&
        [ ! -e /etc/apache2/mods-available/certstore.load ] &&
        [ ! -e /usr/lib/apache2/modules/mod_certstore.so ]
}

# certstore.lua for lua-load, and the C module it requires, from the default Lua path.
haproxy_loads_lua() {
    command -v haproxy >/dev/null || { diag "haproxy is not installed"; return 1; }
    cat >"$WORK/haproxy-lua.cfg" <<CFG
global
    lua-load /usr/share/haproxy/certstore.lua
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:1
    http-request set-header X-Certstore-Account %[lua.certstore_account]
    http-request return status 200
CFG
    env -u LUA_CPATH -u LUA_CPATH_5_3 haproxy -c -f "$WORK/haproxy-lua.cfg" \
        >"$WORK/haproxy-c.log" 2>&1 || { diag_file "$WORK/haproxy-c.log"; return 1; }
}

make_system_database() {
    /usr/bin/certstore init >/dev/null &&
        /usr/bin/certstore account add kept >/dev/null &&
        [ -f "$DATA_DIR/certstore.db" ]
}

remove_keeps_database() {
    "${APT[@]}" remove certstore >"$WORK/apt.log" 2>&1 || { diag_file "$WORK/apt.log"; return 1; }
    [ ! -e /usr/bin/certstore ] || { diag "/usr/bin/certstore still there"; return 1; }
    [ ! -e "$MODULES_DIR/certstore.so" ] || { diag "module still there"; return 1; }
    [ -f "$DATA_DIR/certstore.db" ] || { diag "database gone after remove"; return 1; }
    [ "$(stat -c '%U:%G %a' "$DATA_DIR")" = "root:certstore 750" ]
}

purge_removes_data_dir() {
    "${APT[@]}" purge certstore >"$WORK/apt.log" 2>&1 || { diag_file "$WORK/apt.log"; return 1; }
    [ ! -e "$DATA_DIR" ] || { diag "$DATA_DIR still there after purge"; return 1; }
    ! dpkg-query -W -f='${Status}' certstore 2>/dev/null | grep -q 'installed\|config-files'
}

# ---- plan --------------------------------------------------------------------

require "package builds with cpack" build_package
check "file name certstore_<version>_amd64.deb, depends on libssl3 and libsqlite3-0" \
    package_name_and_depends
check "lintian reports no errors" lintian_clean
require "apt-get install ./certstore_*.deb" install_package
check "CLI, module, header, man pages, docs, snippets, completion installed" installed_layout
check "group certstore and $DATA_DIR root:certstore 0750, empty" data_dir_created
check "no server configuration changed, nothing under /etc" no_server_config_changed
check "openssl list -providers -verbose: certstore by name, same version, active" \
    provider_listed_by_name
check "systemd drop-ins for nginx, haproxy, stunnel and apache2 installed" dropins_installed
check "the drop-ins parse (systemd-analyze verify where present)" dropins_parse
check "certstore-refresh.service and .timer installed, verified, not enabled" \
    refresh_timer_installed_not_enabled
check "the drop-ins' doctor stops a server whose module does not exist, and only then" \
    doctor_stops_servers_without_policy
check "man finds certstore(1) and certstore-provider(7)" man_pages_installed
check "demo with the installed certstore" demo_against_installed
check "live demo: openssl s_server with the installed module" live_demo_against_installed
if [ -n "$NGINX_DEB" ]; then
    check "libnginx-mod-http-certstore: Depends, lintian, installed and enabled the Debian way" \
        nginx_module_package &&
        check "Debian's modules-enabled loads it: nginx -t knows \$certstore_account" \
            nginx_loads_module
    check "apt-get purge libnginx-mod-http-certstore: module and its link gone" \
        nginx_module_removed
else
    diag "no libnginx-mod-http-certstore package (nginx-dev not installed at build time)"
fi
if dpkg -L certstore | grep -q '^/usr/share/haproxy/certstore.lua$'; then
    check "haproxy -c: lua-load /usr/share/haproxy/certstore.lua finds its C module" \
        haproxy_loads_lua
else
    diag "no certstore.lua in the package (liblua5.3-dev not installed at build time)"
fi
if [ -n "$APACHE_DEB" ]; then
    check "libapache2-mod-certstore: Depends, lintian, installed and enabled with a2enmod" \
        apache_module_package &&
        check "Debian's apache2.conf loads it: apache2ctl -M lists certstore_module" \
            apache_loads_module
    check "apt-get purge libapache2-mod-certstore: module, .load and link gone" \
        apache_module_removed
else
    diag "no libapache2-mod-certstore package (apache2-dev not installed at build time)"
fi
require "certstore init makes the system database" make_system_database
check "apt-get remove: binaries gone, database kept" remove_keeps_database
check "apt-get purge: $DATA_DIR removed" purge_removes_data_dir

echo "1..$n"
[ "$fails" -eq 0 ]
