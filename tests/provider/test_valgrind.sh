#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The in-process provider suites (check_provider, check_attacks) under
# valgrind memcheck: zero errors, zero definite or indirect leaks, in every
# process.
#
# The suites must fork one process per test (the hook keeps the
# configuration of the first activation, see check_provider.c), so they run
# in Check's fork mode rather than CK_FORK=no: valgrind follows fork() by
# itself, and each test's process is checked, leaks included, when it exits.
# Every process writes its own valgrind log; any log with an error fails the
# test, whatever Check made of the exit status.
#
# Exits 77 (skip) when valgrind is missing or the binaries carry a sanitizer
# runtime (valgrind cannot run those; the sanitizer build checks them).
# Runs from the suites' build directory (ctest's working directory), or
# CHECK_SUITE_DIR. Needs OPENSSL_MODULES / CERTSTORE_MODULE (set by ctest).
set -euo pipefail

: "${CERTSTORE_MODULE:?}"
suite_dir=${CHECK_SUITE_DIR:-$PWD}
suites=(check_provider check_attacks)

if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: skipped"
    exit 77
fi
for bin in "${suites[@]/#/$suite_dir/}" "$CERTSTORE_MODULE"; do
    if [ ! -e "$bin" ]; then
        echo "$bin not built" >&2
        exit 1
    fi
    # The runtime may be linked statically (clang): look at the bytes.
    if LC_ALL=C grep -qa -e __asan_init -e __tsan_init -e __ubsan_handle "$bin"; then
        echo "$bin is sanitizer-instrumented: valgrind cannot run it; skipped"
        exit 77
    fi
done

work=$(mktemp -d /tmp/certstore-valgrind-XXXXXX)
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -- "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Under valgrind a test runs tens of times slower than natively.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-10}
export CK_FORK=yes

run_suite() { # NAME
    local name=$1
    mkdir -p "$work/$name"
    timeout 1500 valgrind --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --num-callers=30 --log-file="$work/$name/vg.%p.log" \
        "$suite_dir/$name" >"$work/$name/check.out" 2>&1
}

# The two suites in parallel: the machine has a core for each.
for name in "${suites[@]}"; do
    run_suite "$name" &
    pids+=("$!")
done
status=0
for i in "${!suites[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "FAIL: ${suites[$i]} under valgrind:" >&2
        tail -n 30 "$work/${suites[$i]}/check.out" >&2
        status=1
    fi
done
pids=()

processes=0
for log in "$work"/*/vg.*.log; do
    processes=$((processes + 1))
    if ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
        echo "FAIL: valgrind errors in $(basename "$(dirname "$log")") ($log):" >&2
        grep -E '^==[0-9]+== ' "$log" | head -n 80 >&2
        status=1
    fi
done
# One log per test process plus the runners: fewer means valgrind did not follow.
if [ "$processes" -lt 10 ]; then
    echo "FAIL: only $processes valgrind logs: forked tests were not checked" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "valgrind: ${suites[*]} clean in $processes processes"
fi
exit "$status"
