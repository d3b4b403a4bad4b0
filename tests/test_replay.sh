#!/usr/bin/env bash
# test_replay.sh BACKTRACK MODEL OUTDIR -- `backtrack replay`: bad traces and bad usage
# refused with a clear error, and the pages it writes opened in Debian's headless Chromium
# (puppeteer-core, tests/replay/replay.test.mjs): no console error, no request, one mark
# per rewind, the final text equal to the CLI's output, the player's state at every step
# checked against the trace, a 10,000-step trace still responsive (timings in
# OUTDIR/timings.json), and the README's screenshot (OUTDIR/replay.png).
set -u
bin=$1
model=$2
out=$3
here=$(cd "$(dirname "$0")" && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "test_replay: no Chromium at $chromium (scripts/setup.sh installs Debian's chromium)" >&2
    exit 1
fi
if [ ! -d "$here/replay/node_modules/puppeteer-core" ]; then
    echo "test_replay: tests/replay/node_modules is missing (scripts/setup.sh runs npm ci there)" >&2
    exit 1
fi
mkdir -p "$out"
BT_BIN=$bin BT_MODEL=$model BT_OUT=$out CHROMIUM=$chromium \
    exec node --test --test-concurrency=1 --test-reporter=spec "$here/replay/replay.test.mjs"
