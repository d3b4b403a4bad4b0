#!/usr/bin/env bash
# build-peer.sh: build llama-server (and llama-batched-bench) from the bundled llama.cpp
# v0.4.0 source, to measure backtrack against the peer its users would otherwise run.
# A benchmark step (15-25 minutes on 2 cores), never part of the tests. Reuses a previous
# build. Result: .deps/llama-server-v0.4.0/bin/{llama-server,llama-batched-bench}.
#
# The peer must compute with the same CPU kernels as backtrack, or the comparison measures
# the compilers: it is built with dynamic backends and no CPU backend of its own, and the
# prebuilt release's CPU libraries (the ones backtrack loads, chosen per CPU at run time)
# are copied beside it. That also avoids GGML_NATIVE, whose -march=native build dies with
# SIGILL on some CPUs (AMX on Sapphire Rapids).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
llama=$root/.deps/llama.cpp-v0.4.0
dest=$root/.deps/llama-server-v0.4.0
say() { printf 'build-peer: %s\n' "$*" >&2; }

[ -x "$dest/bin/llama-server" ] && [ -f "$dest/.complete" ] && { say "reusing $dest"; exit 0; }
[ -f "$llama/.complete" ] || bash "$root/scripts/get-llama.sh"
command -v g++ >/dev/null || { say "needs g++ (build-essential)"; exit 1; }

say "building llama-server from $llama/src (15-25 minutes on 2 cores)"
# shellcheck disable=SC2016
cmake -S "$llama/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU=OFF -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
    -DCMAKE_INSTALL_RPATH='$ORIGIN' >/dev/null
cmake --build "$dest/build" --target llama-server llama-batched-bench -j"$(nproc)" >/dev/null
mkdir -p "$dest/bin"
cp "$dest/build/bin/llama-server" "$dest/build/bin/llama-batched-bench" "$dest/bin/"
find "$dest/build" -name '*.so*' -exec cp -P {} "$dest/bin/" \;
cp "$llama/lib/"libggml-cpu-*.so "$dest/bin/"
"$dest/bin/llama-server" --version >/dev/null 2>&1 || { say "the built llama-server does not run"; exit 1; }
touch "$dest/.complete"
say "llama-server ready in $dest/bin"
