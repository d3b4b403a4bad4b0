#!/usr/bin/env bash
# test_valgrind.sh BACKTRACK MODEL -- the CLI's real runs, and the server, under memcheck:
# no error, no definitely or indirectly lost byte. (llama.cpp's own "still reachable" globals are not
# leaks and are not counted.)
set -u
bin=$1
model=$2
slop=$(cd "$(dirname "$0")/../.." && pwd)/shared/slop
command -v valgrind >/dev/null || { echo "valgrind is required (scripts/setup.sh installs it)"; exit 1; }
pass=0
fail=0
vg() { # NAME ARGS...
    local name=$1
    shift
    if valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect -q "$bin" -m "$model" -p "Once upon a time" \
        -n 60 --seed 1 "$@" >/dev/null 2>"$TMPDIR_VG/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $name" >&2
        cat "$TMPDIR_VG/err" >&2
    fi
}
TMPDIR_VG=$(mktemp -d)
trap 'rm -rf "$TMPDIR_VG"' EXIT
vg plain
vg debug -s debug
if [ -f "$slop/slop_phrase_prob_adjustments_full_list.json" ]; then
    vg antislop-50k -s antislop --slop-file "$slop/slop_phrase_prob_adjustments_full_list.json" \
        --slop-regex-file "$slop/slop_regexes.txt"
fi
vg antislop -s antislop --slop Lily --slop "little girl" --slop park --slop ball --whole-word
vg replace -s replace --find . --replace '!\nWait, but' --max-replacements 3
vg creative -s creative-writing
vg adaptive -s adaptive-temperature
vg chain -s antislop --slop Lily -s replace --find " park" --replace " forest" -s creative-writing
# error paths must not leak either
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect -q \
    "$bin" -m "$model" -p "Once upon a time" -s antislop --slop-regex "(" >/dev/null 2>"$TMPDIR_VG/err"
[ $? -eq 1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: error path"; cat "$TMPDIR_VG/err"; }
# the end of the context: a normal stop
vg context-end -c 32 -n 0
# the server: a completion with banned strings, a stream with a strategy, a bad request,
# reused and cold prompts, a client that goes away mid-stream, then SIGTERM; memcheck must stay silent and exit 0
# a free port below Linux's ephemeral range (32768-60999), where a client's own port can block a bind
port=$((12000 + $$ % 8000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect -q "$bin" serve -m "$model" --port "$port" --parallel 2 \
    -c 256 >/dev/null 2>"$TMPDIR_VG/serve.err" &
vpid=$!
# ours answers: alive, and its log says it listens there (not another test's server)
for _ in $(seq 1 150); do
    kill -0 "$vpid" 2>/dev/null || break
    grep -q "on http://127.0.0.1:$port " "$TMPDIR_VG/serve.err" &&
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.2
done
U="http://127.0.0.1:$port/v1/completions"
curl -s "$U" -d '{"prompt":"Once upon a time","max_tokens":20,"banned_strings":["Lily"]}' >/dev/null
curl -sN "$U" -d '{"prompt":"Once upon a time","max_tokens":20,"stream":true,"strategies":[{"name":"replace","find":" Lily","replace":" Zed"}]}' >/dev/null
curl -s "$U" -d '{"prompt":5}' >/dev/null
# a null option is "not given" (the flag was once read uninitialised)
curl -sN "$U" -d '{"prompt":"Once upon a time","max_tokens":4,"stream":true,"stream_options":{"include_usage":null}}' >/dev/null
# prompt reuse: the same slot's cache, a longer prompt, then a cold request
curl -s "$U" -d '{"prompt":"Once upon a time","max_tokens":20,"seed":1}' >/dev/null
curl -s "$U" -d '{"prompt":"Once upon a time, there was a dog","max_tokens":20,"seed":1}' >/dev/null
curl -s "$U" -d '{"prompt":"Once upon a time, there was a dog","max_tokens":20,"cache_prompt":false}' >/dev/null
timeout 0.5 curl -sN "$U" -d '{"prompt":"Once upon a time","max_tokens":240,"stream":true}' >/dev/null
sleep 1
kill -TERM "$vpid"
wait "$vpid"
rc=$?
if [ "$rc" -eq 0 ] && ! grep -q "==[0-9]*==" "$TMPDIR_VG/serve.err"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: server under memcheck (exit $rc)"
    cat "$TMPDIR_VG/serve.err"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
