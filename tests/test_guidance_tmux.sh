#!/usr/bin/env bash
# test_guidance_tmux.sh BACKTRACK MODEL -- the HumanGuidance menu driven for real: the CLI
# runs in a tmux terminal, keys are sent, the screen is read back with capture-pane.
set -u
bin=$1
model=$2
command -v tmux >/dev/null || { echo "tmux is required (scripts/setup.sh installs it)"; exit 1; }
sock="bt_test_$$"
T() { tmux -L "$sock" "$@"; }
trap 'T kill-server 2>/dev/null' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
S=hg1 # the session of the current case
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; T capture-pane -p -t "$S" >&2 2>/dev/null; }

# wait_for TEXT: until the screen shows TEXT (5 s at most)
wait_for() {
    for _ in $(seq 1 50); do
        T capture-pane -p -t "$S" 2>/dev/null | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    return 1
}

# wait_gone TEXT: wait (up to 5 s) until the screen no longer shows TEXT
wait_gone() {
    for _ in $(seq 1 50); do
        T capture-pane -p -t "$S" 2>/dev/null | grep -qF -- "$1" || return 0
        sleep 0.1
    done
    return 1
}

start() {
    S=$1
    T new-session -d -s "$S" -x 100 -y 30 \
        "'$bin' -m '$model' -p 'Once upon a time' -n 4 --seed 1 -s human-guidance; echo EXIT=\$?; sleep 30"
}

# 1. choose the second entry, then stop guiding: the text starts with that token
start hg1
wait_for "enter: choose" && ok || bad "no menu appeared"
screen=$(T capture-pane -p -t "$S")
label=$(printf '%s\n' "$screen" | sed -n "s/^  2 .*%  '\(.*\)'$/\1/p")
[ -n "$label" ] && ok || bad "no second entry on the menu"
printf '%s\n' "$screen" | grep -q "Go back" && bad "Go back offered before any token" || ok
T send-keys -t "$S" Down Enter
wait_for "Go back" && ok || bad "second menu (with Go back) did not appear"
T send-keys -t "$S" q
wait_for "EXIT=0" && ok || bad "did not exit 0"
out=$(T capture-pane -p -t "$S" | grep -v '^$' | head -1)
[[ "$out" == "$label"* ]] && ok || bad "text '$out' does not start with the chosen '$label'"

# 2. choose the second entry, then "Go back": the first menu returns; take the first
start hg2
wait_for "enter: choose" || bad "no menu appeared"
first=$(T capture-pane -p -t "$S" | sed -n "s/^  1 .*%  '\(.*\)'$/\1/p")
T send-keys -t "$S" Down Enter
wait_for "Go back" || bad "no Go back"
T send-keys -t "$S" Down Down Down Enter   # the 4th entry: Go back
wait_gone "Go back" && wait_for "enter: choose" && ! T capture-pane -p -t "$S" | grep -q "Go back" &&
    ok || bad "not back at the first menu"
T send-keys -t "$S" Enter                   # the first entry
wait_for "Go back" || bad "no second menu"
T send-keys -t "$S" q
wait_for "EXIT=0" && ok || bad "did not exit 0 after going back"
out=$(T capture-pane -p -t "$S" | grep -v '^$' | head -1)
[[ "$out" == "$first"* ]] && [[ "$out" != "$label"* ]] && ok || bad "text '$out' should start with '$first'"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
