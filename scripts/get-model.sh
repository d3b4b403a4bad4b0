#!/usr/bin/env bash
# get-model.sh: make sure models/stories260K.gguf exists and has the pinned sha256.
# Order: models/ (already there), then the public source (Hugging Face, ggml-org/models),
# then ../shared/models/ (the development machines' copy). Never committed (gitignored).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
name=stories260K.gguf
sha=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
url="https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/$name"
out="$root/models/$name"

say() { printf 'get-model: %s\n' "$*" >&2; }
ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

mkdir -p "$root/models"
ok "$out" && exit 0
[ -f "$out" ] && { say "$out has the wrong sha256; fetching it again"; rm -f "$out"; }

if command -v curl >/dev/null &&
   curl -fsSL --connect-timeout 5 --max-time 120 -o "$out.part" "$url" 2>/dev/null &&
   ok "$out.part"; then
    mv "$out.part" "$out"
    say "downloaded $name"
    exit 0
fi
rm -f "$out.part"

if ok "$root/../shared/models/$name"; then
    cp "$root/../shared/models/$name" "$out" && chmod 644 "$out"
    say "copied $name from ../shared/models/"
    exit 0
fi
say "could not obtain $name (no network and no ../shared/models/ copy)"
exit 1
