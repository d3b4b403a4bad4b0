#!/usr/bin/env bash
# story.sh: set everything up, then stream a story from the default model with a
# backtracking strategy: AntiSlop banning the model's favourite words, so every time it
# reaches for "Lily", "little girl", "park" or "ball" it rewinds and writes something else.
# The statistics line (stderr) shows the rewinds. Extra arguments go to `backtrack`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
exec "$root/build/backtrack" -m "$root/models/stories260K.gguf" \
    -p "Once upon a time" -n 300 --stats "$@" \
    -s antislop --slop "Lily" --slop "little girl" --slop "park" --slop "ball"
