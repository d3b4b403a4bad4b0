#!/usr/bin/env bash
# fuzz.sh [SECONDS]: build the libFuzzer targets (clang, ASan+UBSan) in build-fuzz/ and run
# each for SECONDS (default $BT_FUZZ_SECONDS or 30), starting from the seed corpus in
# fuzz/corpus/ (copied: the repository's corpus is not modified). Prints the executions
# per target; exits non-zero on the first crash, leak or invariant failure (the input is
# kept in build-fuzz/crashes/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${BT_FUZZ_SECONDS:-30}}
cd "$root"
CC=clang cmake -S . -B build-fuzz -DBT_FUZZ=ON -DBT_BUILD_TESTS=OFF -DBT_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
mkdir -p build-fuzz/crashes
status=0
for t in lists cli matcher loop request replay; do
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/"
    log=build-fuzz/fuzz_$t.log
    if (cd build-fuzz/crashes && "$root/build-fuzz/fuzz/fuzz_$t" -max_total_time="$secs" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work" >"$root/$log" 2>&1); then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz_$t: ${execs:-?} executions in ${secs} s, no failure"
    else
        echo "fuzz_$t: FAILED (see $log and build-fuzz/crashes/)"
        grep -E "ERROR|SUMMARY" "$log" | head -5
        status=1
    fi
    rm -rf "$work"
done
exit $status
