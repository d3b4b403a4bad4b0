#!/usr/bin/env bash
# story.sh: set everything up, then stream a story from the default model with a
# backtracking strategy. Extra arguments go to `backtrack`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
exec "$root/build/backtrack" -m "$root/models/stories260K.gguf" \
    -p "Once upon a time" -n 200 --stats -s debug "$@"
