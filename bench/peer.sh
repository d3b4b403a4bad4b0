#!/usr/bin/env bash
# bench/peer.sh: `backtrack serve` against llama-server itself (built from the bundled
# llama.cpp source by bench/build-peer.sh, with the same prebuilt CPU kernels), on the
# same model file, same slots and per-slot context, one server after the other. Prints
# Markdown (bench/run.sh appends it to BENCHMARKS.md when BT_BENCH_PEER=1).
#   - chat turns: time to first token of turn 1 (cold) and turn 2 (history + reply + one
#     message) of a 1,500-token conversation; prompt positions evaluated in turn 2;
#   - aggregate completion tokens/s, 8 clients, --parallel 8: no strategy, and (backtrack)
#     AntiSlop with the 50,046-phrase list on every request.
# Settings: BT_PEER_ROUNDS (3 rounds of fresh servers, interleaved; medians reported),
# BT_PEER_SECONDS (8: each load run is the steady state of 8 clients for that long; 0: a
# fixed BT_PEER_REQUESTS, 48, and the time until the last answer), BT_PEER_THREADS (all
# CPUs, both servers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash bench/build-peer.sh
peer=.deps/llama-server-v0.4.0/bin/llama-server
out=bench/out
model=$out/bench-100m-q8.gguf
vocab=.deps/llama.cpp-v0.4.0/src/models/ggml-vocab-llama-bpe.gguf
slop=../shared/slop/slop_phrase_prob_adjustments_full_list.json
export BT_PEER_REQUESTS=${BT_PEER_REQUESTS:-48} BT_PEER_SECONDS=${BT_PEER_SECONDS:-8}
[[ $BT_PEER_SECONDS =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "BT_PEER_SECONDS: a number of seconds" >&2; exit 2; }
cmake --build build --target backtrack_cli load_client >&2   # no-ops when up to date
[ -f "$model" ] || build/bench/make_model "$vocab" "$model" 100m q8_0 >&2
slots=8
ctx=2048
threads=${BT_PEER_THREADS:-$(nproc)}   # both servers get the same threads

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; pids=(); }
trap cleanup EXIT

# serve NAME ARGS...: start a server on a fresh port, wait for /health; sets $url. Ports
# come from below Linux's ephemeral range (32768-60999), where a client's socket may hold
# the one picked; a server that exits at once (the port was taken after all) is started
# again on another.
serve() {
    local name=$1
    shift
    for _try in 1 2 3 4 5; do
        local port=$((20000 + RANDOM % 12000)) pid
        if [ "$name" = llama-server ]; then
            "$peer" -m "$model" --port "$port" -np "$slots" -c $((slots * ctx)) -t "$threads" \
                --chat-template chatml --no-webui "$@" >/dev/null 2>&1 &
        else
            build/backtrack serve -m "$model" --port "$port" --parallel "$slots" -c "$ctx" \
                -t "$threads" --chat-template chatml "$@" 2>/dev/null &
        fi
        pid=$!
        pids+=("$pid")
        url="http://127.0.0.1:$port"
        for _ in $(seq 1 600); do
            curl -sf "$url/health" 2>/dev/null | grep -q '"ok"' && return 0
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null
    done
    echo "$name did not start" >&2
    return 1
}

echo "Model: \`$model\` (random weights, 109M parameters, Q8_0, Llama 3's tokenizer), $slots slots"
echo "of $ctx tokens each (llama-server: \`-np $slots -c $((slots * ctx))\`), $threads threads, chatml template,"
echo "temperature 1, top_k 40, top_p 0.95, min_p 0.05 on both. llama-server: v0.4.0 built by"
echo "\`bench/build-peer.sh\` with the prebuilt CPU kernels backtrack uses."
echo
echo '```'
echo "bash bench/peer.sh"
echo "node bench/bench_peer.mjs URL LABEL turns"
echo "build/bench/load_client URL LABEL native|openai \$BT_PEER_REQUESTS 8 64 \$BT_PEER_SECONDS"
echo '```'
echo
echo "### Chat turns (1,500-token history; median of 8 conversations)"
echo
echo "| server | turn 2 prompt tokens | turn 1 time to first token, ms | turn 2 time to first token, ms | turn 2 prompt positions evaluated |"
echo "| --- | ---: | ---: | ---: | ---: |"
serve llama-server
node bench/bench_peer.mjs "$url" "llama-server" turns
cleanup
serve backtrack
node bench/bench_peer.mjs "$url" "backtrack serve" turns
cleanup
echo
rounds=${BT_PEER_ROUNDS:-3}
if awk "BEGIN { exit !($BT_PEER_SECONDS > 0) }"; then
    echo "### Aggregate throughput (8 clients, each with a request of 64 tokens always in flight, over $BT_PEER_SECONDS s; median of $rounds rounds)"
    echo
    echo "The steady state: a request that straddles the end of the window counts for its share"
    echo "inside it, and the clients keep the batch full until it ends (\`bench/load_client.c\`)."
    echo "\`BT_PEER_SECONDS=0\` runs $BT_PEER_REQUESTS requests instead, timed to the last answer: then"
    echo "the last requests run in ever smaller batches."
else
    echo "### Aggregate throughput (8 clients, $BT_PEER_REQUESTS completion requests of 64 tokens; median of $rounds rounds)"
fi
echo
echo "Each round starts each server afresh and runs the load once; the order turns by one"
echo "server each round (rounds interleave the servers, so a slow spell of the machine hits all"
echo "of them); ratios are taken within a round, then their median."
echo
# load LABEL: one load run on the server at $url (llama-server on its native /completion,
# which reports tokens_predicted); prints its completion tokens/s, errors
load() {
    local api=openai
    [ "$1" = llama-server ] && api=native
    build/bench/load_client "$url" "$1" "$api" "$BT_PEER_REQUESTS" 8 64 "$BT_PEER_SECONDS" |
        awk -F'|' '{gsub(/ /, "", $6); gsub(/ /, "", $7); print $6, $7}'
}
declare -A runs errs
labels=("llama-server" "backtrack serve, no strategy")
[ -f "$slop" ] && labels+=("backtrack serve, AntiSlop, 50,046 phrases")
n_labels=${#labels[@]}
for r in $(seq 1 "$rounds"); do
    # each round starts with another server (no server always runs first)
    for k in $(seq 0 $((n_labels - 1))); do
        l=${labels[$(((r - 1 + k) % n_labels))]}
        case $l in
        llama-server) serve llama-server ;;
        *AntiSlop*) serve backtrack -s antislop --slop-file "$slop" ;;
        *) serve backtrack ;;
        esac
        read -r tps err < <(load "$l")
        cleanup
        runs[$l]="${runs[$l]:+${runs[$l]} }$tps"
        errs[$l]=$(( ${errs[$l]:-0} + err ))
    done
done
# median of the numbers in $1 (an even count: the mean of the two middle ones)
median() { tr ' ' '\n' <<<"$1" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# ratios LABEL BASE: the round-by-round ratios of LABEL's runs to BASE's (same round)
ratios() {
    paste -d' ' <(tr ' ' '\n' <<<"${runs[$1]}") <(tr ' ' '\n' <<<"${runs[$2]}") |
        awk '{printf "%s%.2f", (NR > 1 ? " " : ""), ($2 > 0 ? $1 / $2 : 0)}'
}
echo "| server | completion tokens/s (median) | runs | errors (all runs) | vs llama-server, round by round | median of those |"
echo "| --- | ---: | --- | ---: | --- | ---: |"
for l in "${labels[@]}"; do
    r=$(ratios "$l" llama-server)
    echo "| $l | $(median "${runs[$l]}") | ${runs[$l]// /, } | ${errs[$l]} | ${r// /, } | $(median "$r")x |"
done
if [ -f "$slop" ]; then
    r=$(ratios "backtrack serve, AntiSlop, 50,046 phrases" "backtrack serve, no strategy")
    echo
    echo "AntiSlop with the 50,046-phrase list on every request, against no strategy, round by round:"
    echo "${r// /, }; median $(median "$r")x."
fi
