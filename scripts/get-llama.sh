#!/usr/bin/env bash
# get-llama.sh: obtain llama.cpp release v0.4.0 into .deps/llama.cpp-v0.4.0/
#
#   include/   llama.h and the ggml headers of that release
#   lib/       the prebuilt CPU libraries (libllama, libggml, one libggml-cpu per CPU family)
#   src/       the full source tree of the release (vocabulary GGUFs, CMake build)
#   rpc/       with BT_LLAMA_RPC=1: llama.cpp's RPC worker (rpc-server), see below
#
# Source: the npm packages node-llama-cpp@3.21.1 (source bundle of the tag) and
# @node-llama-cpp/linux-x64@3.21.1 (the same tag, prebuilt). Both tarballs are checked
# against pinned sha512 integrity values before anything is unpacked.
#
# BT_LLAMA_FROM_SOURCE=1 builds lib/ from src/ with CMake instead of using the prebuilt
# libraries (for GPU builds pass extra flags in BT_LLAMA_CMAKE_FLAGS, e.g. -DGGML_CUDA=ON).
# The build is portable, never -march=native (whose AMX kernels die with SIGILL on Sapphire
# Rapids, docs in ../shared): ggml's backends are loaded at run time (GGML_BACKEND_DL) and
# the CPU backend is the prebuilt release's one library per CPU family, picked at run time
# (BT_LLAMA_CPU=source builds those variants from src/ instead: GGML_CPU_ALL_VARIANTS,
# slower; the default on other machines than x86-64).
#
# BT_LLAMA_RPC=1 also builds llama.cpp's RPC backend from src/ (about 1.5 minutes on 2
# cores: ggml and the RPC backend only, not libllama), reusing a previous build:
#   lib/libggml-rpc.so  the RPC client, loaded at run time beside lib/'s libraries: it
#                       gives `backtrack --rpc HOST:PORT,...` its devices
#   rpc/                a self-contained worker folder to copy to each worker machine:
#                       rpc-server (starts ggml-rpc-server with SIGPIPE ignored, so a
#                       client that disconnects mid-answer does not kill it), libggml,
#                       libggml-base, the RPC backend and lib/'s CPU backends. With
#                       BT_LLAMA_CMAKE_FLAGS=-DGGML_CUDA=ON (etc.) it also holds that
#                       backend, for workers with a GPU.
# BT_LLAMA_DEST puts it elsewhere (then configure with LLAMA_CPP_DIR=that folder).
# Idempotent: does nothing when the folder (and with BT_LLAMA_RPC=1, rpc/) is complete.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="${BT_LLAMA_DEST:-$root/.deps/llama.cpp-v0.4.0}"
tag=v0.4.0
src_pkg=node-llama-cpp@3.21.1
src_sha512='E3N0Ev2Va0wzydvXYFwM9Hvyo07PoWjt8T/9GMc43Cvt8YkV/NU/tYUgEMC1grTPv2o9PRjQi0G3Wb5P/awiMg=='
bin_pkg=@node-llama-cpp/linux-x64@3.21.1
bin_sha512='Totj6RTDMGo3FoK2yNUaz/oGmZD0olAqTrRluFUWmu0kW2i9TOzHSW0OWCAiGkzRCVX0WsU2CyUQo/W2NYtdPA=='

say() { printf 'get-llama: %s\n' "$*" >&2; }
jobs=$(nproc)

# CMake flags of every source build here: shared libraries finding each other in their
# folder ($ORIGIN), unversioned names (a module built here links to the prebuilt
# libggml-base.so by that name), backends loaded at run time, no -march=native.
# shellcheck disable=SC2016
src_flags=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=ON
    -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DCMAKE_PLATFORM_NO_VERSIONED_SONAME=ON
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN')

# The RPC worker folder and lib/libggml-rpc.so (BT_LLAMA_RPC=1), built in build-rpc/.
build_rpc() {
    if [ -f "$dest/rpc/.complete" ] && [ -f "$dest/lib/libggml-rpc.so" ]; then
        return 0
    fi
    if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
        say "the RPC build needs cmake and g++ (build-essential)"
        exit 1
    fi
    local b="$dest/build-rpc" t0=$SECONDS
    local flags="${src_flags[*]} -DGGML_CPU=OFF -DGGML_RPC=ON -DLLAMA_BUILD_TOOLS=ON ${BT_LLAMA_CMAKE_FLAGS:-}"
    # A build folder is reused only with the same flags: CMake's cache keeps every value it
    # was given, so a flag dropped since (or one that made the configure fail, like
    # -DGGML_CUDA=ON without CUDA) would stay in force and fail every later run.
    [ "$(cat "$b/.bt-flags" 2>/dev/null)" = "$flags" ] || rm -rf "$b"
    say "building llama.cpp's RPC backend and rpc-server from $dest/src"
    # shellcheck disable=SC2086
    cmake -S "$dest/src" -B "$b" "${src_flags[@]}" -DGGML_CPU=OFF -DGGML_RPC=ON \
        -DLLAMA_BUILD_TOOLS=ON ${BT_LLAMA_CMAKE_FLAGS:-} >"$b.log" 2>&1 ||
        { rm -rf "$b"; say "cmake failed, see $b.log"; exit 1; }
    printf '%s' "$flags" >"$b/.bt-flags"
    # the server links ggml, which depends on every backend module enabled (RPC, GPUs)
    cmake --build "$b" --target ggml-rpc-server -j"$jobs" >>"$b.log" 2>&1 ||
        { say "the build failed, see $b.log"; exit 1; }
    rm -rf "$dest/rpc.new"
    mkdir -p "$dest/rpc.new"
    cp "$b/bin/ggml-rpc-server" "$b/bin/"lib*.so "$dest/rpc.new/"
    cp "$dest/lib/"libggml-cpu*.so "$dest/rpc.new/" 2>/dev/null || true
    cat >"$dest/rpc.new/rpc-server" <<'WRAP'
#!/bin/sh
# llama.cpp's RPC worker with SIGPIPE ignored: ggml writes to its client without
# MSG_NOSIGNAL, so a client that disappears in the middle of an answer would kill it.
# Options: ggml-rpc-server -h (-H HOST, -p PORT, -t THREADS, -d DEVICES, -c).
trap '' PIPE
exec "$(dirname "$0")/ggml-rpc-server" "$@"
WRAP
    chmod +x "$dest/rpc.new/rpc-server"
    "$dest/rpc.new/rpc-server" --help >/dev/null 2>&1 ||
        { say "the built rpc-server does not run"; exit 1; }
    cp "$b/bin/libggml-rpc.so" "$dest/lib/"
    rm -rf "$dest/rpc"
    mv "$dest/rpc.new" "$dest/rpc"
    echo "$tag" >"$dest/rpc/.complete"
    say "RPC backend in $dest/lib, rpc-server in $dest/rpc ($((SECONDS - t0)) s)"
}

if [ -f "$dest/.complete" ]; then
    [ "${BT_LLAMA_RPC:-0}" = 1 ] && build_rpc
    exit 0
fi

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
    cpu=${BT_LLAMA_CPU:-$([ "$(uname -m)" = x86_64 ] && echo prebuilt || echo source)}
    case $cpu in
        prebuilt) cpu_flags=(-DGGML_CPU=OFF) ;;
        source) cpu_flags=(-DGGML_CPU=ON -DGGML_CPU_ALL_VARIANTS=ON) ;;
        *) say "BT_LLAMA_CPU must be prebuilt or source"; exit 1 ;;
    esac
    say "building $tag from source, CPU backends: $cpu (about 7 minutes on 2 cores)"
    t0=$SECONDS
    # shellcheck disable=SC2086
    cmake -S "$dest/src" -B "$tmp/build" "${src_flags[@]}" "${cpu_flags[@]}" \
        -DLLAMA_BUILD_TOOLS=OFF ${BT_LLAMA_CMAKE_FLAGS:-} >/dev/null
    # llama links ggml, which depends on every backend module enabled
    cmake --build "$tmp/build" --target llama -j"$jobs" >/dev/null
    find "$tmp/build" -name '*.so*' -exec cp -P {} "$dest/lib/" \;
    if [ "$cpu" = prebuilt ]; then
        cp "$tmp/bin-pkg/package/bins/linux-x64/"libggml-cpu-*.so "$dest/lib/"
    fi
    # Give the libraries the names the prebuilt release uses so one link line fits both.
    (cd "$dest/lib" && ln -sf libllama.so libllama.v0.4.0.so && ln -sf libggml.so libggml.v0.4.0.so)
    say "built in $((SECONDS - t0)) s"
else
    cp "$tmp/bin-pkg/package/bins/linux-x64/"lib*.so "$dest/lib/"
    rm -f "$dest/lib/libllama-common.so"
fi

echo "$tag" > "$dest/.complete"
say "llama.cpp $tag ready in $dest"
[ "${BT_LLAMA_RPC:-0}" = 1 ] && build_rpc
exit 0
