#!/usr/bin/env bash
# test_valgrind.sh BACKTRACK MODEL -- the CLI's real runs under memcheck: no error, no
# definitely or indirectly lost byte. (llama.cpp's own "still reachable" globals are not
# leaks and are not counted.)
set -u
bin=$1
model=$2
slop=$(cd "$(dirname "$0")/../.." && pwd)/shared/slop
command -v valgrind >/dev/null || { echo "valgrind is required (scripts/setup.sh installs it)"; exit 1; }
pass=0
fail=0
vg() { # NAME ARGS...
    local name=$1
    shift
    if valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect -q "$bin" -m "$model" -p "Once upon a time" \
        -n 60 --seed 1 "$@" >/dev/null 2>"$TMPDIR_VG/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $name" >&2
        cat "$TMPDIR_VG/err" >&2
    fi
}
TMPDIR_VG=$(mktemp -d)
trap 'rm -rf "$TMPDIR_VG"' EXIT
vg plain
vg debug -s debug
if [ -f "$slop/slop_phrase_prob_adjustments_full_list.json" ]; then
    vg antislop-50k -s antislop --slop-file "$slop/slop_phrase_prob_adjustments_full_list.json" \
        --slop-regex-file "$slop/slop_regexes.txt"
fi
vg antislop -s antislop --slop Lily --slop "little girl" --slop park --slop ball --whole-word
vg replace -s replace --find . --replace '!\nWait, but' --max-replacements 3
vg creative -s creative-writing
vg adaptive -s adaptive-temperature
vg chain -s antislop --slop Lily -s replace --find " park" --replace " forest" -s creative-writing
# error paths must not leak either
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect -q \
    "$bin" -m "$model" -p "Once upon a time" -s antislop --slop-regex "(" >/dev/null 2>"$TMPDIR_VG/err"
[ $? -eq 1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: error path"; cat "$TMPDIR_VG/err"; }
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect -q \
    "$bin" -m "$model" -p "Once upon a time" -c 32 -n 0 >/dev/null 2>"$TMPDIR_VG/err"
[ $? -eq 1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: context full"; cat "$TMPDIR_VG/err"; }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
