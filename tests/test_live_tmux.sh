#!/usr/bin/env bash
# test_live_tmux.sh BACKTRACK MODEL -- `--live` on a real terminal (tmux): held text is
# dim, a rewind erases the banned word from the screen, the final screen is the plain
# output with no styling left. The screen is sampled with capture-pane while it runs
# (--live-delay slows each step down enough to see it).
set -u
bin=$1
model=$2
command -v tmux >/dev/null || { echo "tmux is required (scripts/setup.sh installs it)"; exit 1; }
sock="bt_live_$$"
T() { tmux -L "$sock" "$@"; }
tmp=$(mktemp -d)
trap 'T kill-server 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

args=(-m "$model" -p "Once upon a time" -n 24 --seed 3 -s antislop --slop Lily)
want=$("$bin" "${args[@]}" 2>/dev/null) # the plain output: seed 3 writes "Lily" at token 10
"$bin" "${args[@]}" --trace "$tmp/t.jsonl" >/dev/null 2>&1
grep -q '"ev":"rewind"' "$tmp/t.jsonl" || { echo "the test's generation no longer rewinds"; exit 1; }

T new-session -d -s live -x 100 -y 20 \
    "'$bin' ${args[*]@Q} --live --live-delay 60; echo; echo EXIT=\$?; sleep 30"
saw_lily=0 saw_dim=0 saw_strike=0 done=0
for _ in $(seq 1 300); do
    T capture-pane -e -p -t live >"$tmp/frame" 2>/dev/null || break
    grep -q 'Lily' "$tmp/frame" && saw_lily=1
    grep -q $'\e\\[2m' "$tmp/frame" && saw_dim=1
    grep -qE $'\e\\[(0;)?9[;m]' "$tmp/frame" && saw_strike=1
    grep -q '^EXIT=' "$tmp/frame" && { done=1; break; }
    sleep 0.03
done
[ "$done" = 1 ] && ok || bad "the generation did not finish in tmux"
grep -q '^EXIT=0' "$tmp/frame" && ok || bad "exit status: $(grep EXIT "$tmp/frame")"
[ "$saw_dim" = 1 ] && ok || bad "held text was never shown dim"
[ "$saw_lily" = 1 ] && ok || bad "the banned word never appeared before its rewind"
[ "$saw_strike" = 1 ] && ok || bad "the rewound text was never shown struck through"
T capture-pane -p -J -t live | sed '/^EXIT=/,$d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >"$tmp/final"
grep -q 'Lily' "$tmp/final" && bad "the banned word is still on the screen" || ok
# the final screen holds exactly the plain output (joined lines: tmux wraps at 100)
[ "$(tr -d '\n' <"$tmp/final")" = "$(printf '%s' "$want" | tr -d '\n')" ] && ok ||
    bad "final screen differs from the plain output:"$'\n'"$(cat "$tmp/final")"$'\n'"---"$'\n'"$want"
T capture-pane -e -p -t live | grep -qE $'\e\\[(0;)?[29][;m]' && bad "styling left on the final screen" || ok

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
