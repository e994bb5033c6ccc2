#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build ngx_http_certstore_module.so the way Debian builds its libnginx-mod-*
# packages: nginx-dev's source tree configured with the very flags of
# Debian's nginx (conf_flags, --with-compat), then `make modules` only.
#   build-module.sh NGINX_SRC MODULE_DIR WORK_DIR OUTPUT
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: build-module.sh NGINX_SRC MODULE_DIR WORK_DIR OUTPUT" >&2; exit 2; }
src=$1 module=$2 work=$3 out=$4

rm -rf "$work"
mkdir -p "$work"
cp -R "$src/." "$work/"
cd "$work"
# shellcheck disable=SC1091 # nginx-dev's: NGX_CONF_FLAGS=( ... )
. ./conf_flags
if ! ./configure "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$module" >configure.log 2>&1; then
    cat configure.log >&2
    exit 1
fi
make -f objs/Makefile modules >make.log 2>&1 || { cat make.log >&2; exit 1; }
cp objs/ngx_http_certstore_module.so "$out"
