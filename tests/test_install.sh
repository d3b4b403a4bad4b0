#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR MODEL -- `cmake --install` into a fresh prefix, then
# build examples/minimal.c against it with pkg-config alone, run it, and run the installed
# CLI: the install is complete and relocatable.
set -eu
build=$1
src=$2
model=$3
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
test "$(pkg-config --modversion backtrack)" = 0.2.0
cc -Wall -Wextra "$src/examples/minimal.c" -o "$prefix/minimal" $(pkg-config --cflags --libs backtrack)
out=$("$prefix/minimal" "$model")
[ ${#out} -gt 50 ]
out=$("$prefix/bin/backtrack" -m "$model" -p "Once upon a time" -n 20 --seed 1 -s antislop --slop Lily)
[ ${#out} -gt 20 ]
echo "1 passed, 0 failed"
