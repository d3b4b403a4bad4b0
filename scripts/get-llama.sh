#!/usr/bin/env bash
# get-llama.sh: obtain llama.cpp release v0.4.0 into .deps/llama.cpp-v0.4.0/
#
#   include/   llama.h and the ggml headers of that release
#   lib/       the prebuilt CPU libraries (libllama, libggml, one libggml-cpu per CPU family)
#   src/       the full source tree of the release (vocabulary GGUFs, CMake build)
#
# Source: the npm packages node-llama-cpp@3.21.1 (source bundle of the tag) and
# @node-llama-cpp/linux-x64@3.21.1 (the same tag, prebuilt). Both tarballs are checked
# against pinned sha512 integrity values before anything is unpacked.
#
# BT_LLAMA_FROM_SOURCE=1 builds lib/ from src/ with CMake instead of using the prebuilt
# libraries (for GPU builds pass extra flags in BT_LLAMA_CMAKE_FLAGS, e.g. -DGGML_CUDA=ON).
# BT_LLAMA_DEST puts it elsewhere (then configure with LLAMA_CPP_DIR=that folder).
# Idempotent: does nothing when the folder is complete.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="${BT_LLAMA_DEST:-$root/.deps/llama.cpp-v0.4.0}"
tag=v0.4.0
src_pkg=node-llama-cpp@3.21.1
src_sha512='E3N0Ev2Va0wzydvXYFwM9Hvyo07PoWjt8T/9GMc43Cvt8YkV/NU/tYUgEMC1grTPv2o9PRjQi0G3Wb5P/awiMg=='
bin_pkg=@node-llama-cpp/linux-x64@3.21.1
bin_sha512='Totj6RTDMGo3FoK2yNUaz/oGmZD0olAqTrRluFUWmu0kW2i9TOzHSW0OWCAiGkzRCVX0WsU2CyUQo/W2NYtdPA=='

if [ -f "$dest/.complete" ]; then
    exit 0
fi

say() { printf 'get-llama: %s\n' "$*" >&2; }

# Verify a tarball against an npm integrity string (sha512, base64).
check_sha512() {
    local got
    got=$(node -e 'const c=require("crypto"),f=require("fs");
        process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1")
    if [ "$got" != "$2" ]; then
        say "checksum mismatch for $1"
        say "  expected sha512-$2"
        say "  got      sha512-$got"
        exit 1
    fi
}

command -v npm >/dev/null || { say "npm is required (apt-get install npm)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$dest"
mkdir -p "$dest"

say "fetching $src_pkg and $bin_pkg from the npm registry"
(cd "$tmp" && npm pack --silent "$src_pkg" "$bin_pkg" >/dev/null)
check_sha512 "$tmp/node-llama-cpp-3.21.1.tgz" "$src_sha512"
check_sha512 "$tmp/node-llama-cpp-linux-x64-3.21.1.tgz" "$bin_sha512"

mkdir -p "$tmp/src-pkg" "$tmp/bin-pkg"
tar xzf "$tmp/node-llama-cpp-3.21.1.tgz" -C "$tmp/src-pkg"
tar xzf "$tmp/node-llama-cpp-linux-x64-3.21.1.tgz" -C "$tmp/bin-pkg"

info_tag=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$tmp/src-pkg/package/llama/llama.cpp.info.json")
[ "$info_tag" = "$tag" ] || { say "source bundle is $info_tag, expected $tag"; exit 1; }

say "unpacking the $tag source tree"
git clone -q "$tmp/src-pkg/package/llama/gitRelease.bundle" "$dest/src" 2>/dev/null
rm -rf "$dest/src/.git"

mkdir -p "$dest/include" "$dest/lib"
cp "$dest/src/include/llama.h" "$dest/src/include/llama-cpp.h" "$dest/include/"
cp "$dest/src/ggml/include/"*.h "$dest/include/"

if [ "${BT_LLAMA_FROM_SOURCE:-0}" = 1 ]; then
    say "building $tag from source (about 7 minutes on 2 cores)"
    # $ORIGIN: the libraries find each other in lib/, as the prebuilt ones do
    # shellcheck disable=SC2086
    cmake -S "$dest/src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=ON \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
        ${BT_LLAMA_CMAKE_FLAGS:-} >/dev/null
    cmake --build "$tmp/build" --target llama -j"$(nproc)" >/dev/null
    find "$tmp/build" -name '*.so*' -exec cp -P {} "$dest/lib/" \;
    # Give the libraries the names the prebuilt release uses so one link line fits both.
    (cd "$dest/lib" && ln -sf libllama.so libllama.v0.4.0.so && ln -sf libggml.so libggml.v0.4.0.so)
else
    cp "$tmp/bin-pkg/package/bins/linux-x64/"lib*.so "$dest/lib/"
    rm -f "$dest/lib/libllama-common.so"
fi

echo "$tag" > "$dest/.complete"
say "llama.cpp $tag ready in $dest"
