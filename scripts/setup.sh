#!/usr/bin/env bash
# setup.sh: everything backtrack needs on a fresh Debian 12 machine, then a build.
#   - Debian packages (compiler, CMake, npm, PCRE2, cJSON, ncurses, tmux, valgrind, and
#     clang with its sanitizer/fuzzer runtime)
#   - llama.cpp v0.4.0 (scripts/get-llama.sh) and the default model (scripts/get-model.sh);
#     BT_LLAMA_RPC=1: with llama.cpp's RPC backend and rpc-server (about 2 minutes once,
#     for test_rpc)
#   - nginx, for test_replicas (replicas behind a load balancer, deploy/nginx/)
#   - the npm package "openai" for the server's tests (tests/server, npm ci)
#   - Debian's chromium (and a font) and the npm package "puppeteer-core" for the replay
#     page's tests in a real browser (tests/replay, npm ci; no browser download)
#   - a Release-with-debug-info build in build/
# Idempotent and quiet when everything is already there. Run as root (apt-get).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf 'setup: %s\n' "$*" >&2; }

pkgs=(build-essential cmake pkg-config git curl ca-certificates libpcre2-dev libncurses-dev
      libmicrohttpd-dev libcjson-dev libutf8proc-dev tmux valgrind clang libclang-rt-14-dev
      chromium fonts-dejavu-core)
pkgs+=(nginx) # test_replicas runs its own unprivileged instance (deploy/nginx/)
pkgs+=(python3 python3-pytest python3-numpy python3-venv) # test_python: the Python package (python/)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BT_LLAMA_RPC=1 bash scripts/get-llama.sh
bash scripts/get-model.sh
# the official OpenAI client, for the server's tests (versions pinned by the lock file)
if [ ! -d tests/server/node_modules/openai ]; then
    (cd tests/server && npm ci --silent --no-audit --no-fund >/dev/null)
fi
# puppeteer-core drives the system's Chromium (tests/replay)
if [ ! -d tests/replay/node_modules/puppeteer-core ]; then
    (cd tests/replay && npm ci --silent --no-audit --no-fund >/dev/null)
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
say "built build/backtrack"
