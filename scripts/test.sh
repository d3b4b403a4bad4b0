#!/usr/bin/env bash
# test.sh: set everything up, then run every check:
#   1. the test suite (ctest) on the normal build, valgrind included;
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/);
#   3. the libFuzzer targets, $BT_FUZZ_SECONDS each (default 30; CI uses 60).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"

echo "== tests (build/)"
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== tests under ASan + UBSan (build-asan/)"
cmake -S . -B build-asan -DBT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DBT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$(nproc)" >/dev/null
# valgrind cannot run sanitized binaries, and an installed sanitized library cannot be
# linked into a plain program: both ran on the normal build above
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j"$(nproc)" -E "test_valgrind|test_install")

echo "== fuzzing"
bash scripts/fuzz.sh "${BT_FUZZ_SECONDS:-30}"
