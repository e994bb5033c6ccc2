#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what certstore needs on Debian 12, build it, and run either the
# demo or the whole test suite. This is what README.md tells a newcomer to
# run, and what CI runs (.ci/run).
#
#   tools/bootstrap.sh demo   build dependencies, build, live demo
#   tools/bootstrap.sh test   all test dependencies (incl. stunnel4, haproxy,
#                             nginx, apache2), ASan+UBSan build and its
#                             suite, then the release build and every test
set -euo pipefail

usage() {
    echo "usage: tools/bootstrap.sh demo|test" >&2
    exit 2
}
[ $# -eq 1 ] || usage
mode=$1
case "$mode" in demo | test) ;; *) usage ;; esac

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

build_deps=(build-essential cmake pkg-config libssl-dev openssl libsqlite3-dev sqlite3 check
            libunistring-dev libcurl4-openssl-dev libldap-dev libsasl2-dev libkrb5-dev)
test_deps=(clang valgrind curl stunnel4 haproxy nginx apache2 util-linux lintian groff-base man-db
           python3 nginx-dev apache2-dev liblua5.3-dev slapd ldap-utils samba-ad-dc
           samba-ad-provision linux-perf krb5-user libsasl2-modules-gssapi-mit)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    # Server packages must not start their daemons on this machine: the
    # tests start their own on 127.0.0.1.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
        as_root chmod 755 "$guard"
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    [ -z "$guard" ] || as_root rm -f "$guard"
}

build() {
    local dir=$1
    shift
    cmake -S "$top" -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
}

case "$mode" in
demo)
    install_packages "${build_deps[@]}"
    build "$top/build"
    CERTSTORE_BUILD="$top/build" bash "$top/tools/demo.sh"
    echo
    CERTSTORE_BUILD="$top/build" bash "$top/tools/demo_live.sh"
    ;;
test)
    install_packages "${build_deps[@]}" "${test_deps[@]}"
    # Sanitized build: everything that runs in our own processes. Tests that
    # load the module into foreign programs (openssl, stunnel, haproxy,
    # nginx, apache2) need an uninstrumented module: the release build below
    # runs them.
    echo "== ASan+UBSan build"
    build "$top/build-asan" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
        -DCERTSTORE_SANITIZE=ON
    (cd "$top/build-asan" &&
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
            ctest --output-on-failure -j"$jobs" -E '^(servers\.|provider\.test_)')
    # ThreadSanitizer: handshake threads against live CLI changes.
    echo "== ThreadSanitizer build: the concurrency suite"
    cmake -S "$top" -B "$top/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCERTSTORE_TSAN=ON >/dev/null
    cmake --build "$top/build-tsan" -j"$jobs" --target check_concurrency certstore \
        certstore_provider
    (cd "$top/build-tsan" &&
        CERTSTORE_CONCURRENCY_CYCLES=200 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
            ctest --output-on-failure -R '^provider\.check_concurrency$')
    # Fuzz targets: replay the committed corpus, then fuzz each for 60 s.
    # Their own build: fuzzing instruments the store library for coverage.
    echo "== fuzz build and replay"
    build "$top/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
        -DCERTSTORE_FUZZ=ON -DCERTSTORE_SANITIZE=ON
    FUZZ_BUILD_DIR="$top/build-fuzz" bash "$top/tests/fuzz/run.sh" 60
    echo "== release build"
    build "$top/build"
    cd "$top/build" && ctest --output-on-failure
    ;;
esac
