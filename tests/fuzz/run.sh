#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Replay each fuzz target's committed corpus, then fuzz it for SECONDS
# (default 60). New inputs go to a scratch directory, never into the
# committed corpus. Exits non-zero on the first crash, leak or broken
# oracle; the reproducer is kept under $FUZZ_ARTIFACTS (default: a
# fuzz-artifacts directory beside the targets).
#
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang \
#         -DCERTSTORE_FUZZ=ON -DCERTSTORE_SANITIZE=ON
#   cmake --build build-fuzz -j2
#   tests/fuzz/run.sh [SECONDS]
#
# FUZZ_BUILD_DIR names the build directory (default build-fuzz beside the
# source tree); FUZZ_TARGETS limits the run ("fuzz_uri fuzz_import").
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILD_DIR:-$here/../../build-fuzz}
bin=$build/tests/fuzz
targets=${FUZZ_TARGETS:-fuzz_decide fuzz_certs fuzz_import fuzz_uri fuzz_rules}
artifacts=${FUZZ_ARTIFACTS:-$bin/fuzz-artifacts}
scratch=$(mktemp -d /tmp/certstore-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# The targets' own stores go here too: a timed libFuzzer run skips atexit.
export TMPDIR=$scratch

mkdir -p "$artifacts"
for target in $targets; do
    if [[ ! -x $bin/$target ]]; then
        echo "$0: $bin/$target not built (configure with -DCERTSTORE_FUZZ=ON and clang)" >&2
        exit 1
    fi
done

for target in $targets; do
    corpus=$here/corpus/$target
    log=$scratch/$target.log
    mkdir -p "$scratch/$target"
    echo "== $target: replaying $(find "$corpus" -type f | wc -l) corpus inputs"
    if ! "$bin/$target" -artifact_prefix="$artifacts/$target-" "$corpus"/* >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "$0: $target failed on its committed corpus" >&2
        exit 1
    fi
    echo "== $target: fuzzing for ${seconds}s"
    if ! "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
        "$scratch/$target" "$corpus" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "$0: $target found a problem; reproducer in $artifacts" >&2
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
done
echo "all fuzz targets clean"
