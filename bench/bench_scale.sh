#!/usr/bin/env bash
# bench_scale.sh [MODEL]: the scale-out figures (docs/scale-out.md), as Markdown on stdout
# for BENCHMARKS.md:
#   1. tokens/s of MODEL (default: the random-weight 109M model, bench/out/bench-100m.gguf,
#      made here when missing) with every layer on two local RPC workers (rpc-server)
#      against the local run: greedy, and AntiSlop with the shared phrase list. On one
#      machine this measures the protocol's overhead, not a speed-up.
#   2. aggregate tokens/s of two `backtrack serve` replicas behind nginx (deploy/nginx/)
#      against one server, 8 clients (bench/bench_server.mjs): the cores are shared, so
#      this measures what nginx and the split cost, not the gain of a second machine.
#   3. the resident memory (VmHWM) of each server after its run.
# Needs scripts/setup.sh (build/, the RPC build, nginx). Run it on an idle machine: ggml's
# threads spin at their barriers, and any other busy process makes the figures meaningless.
#   BT_SCALE_TOKENS (200) tokens per CLI run, BT_SCALE_RUNS (3) alternating runs per
#   configuration (medians), BT_SCALE_WORKER_THREADS (half the CPUs: the two workers share
#   this machine's cores, and more threads than cores spin against each other in ggml's
#   barriers, hundreds of times slower) per rpc-server,
#   BT_SCALE_REQUESTS (64) requests of BT_SCALE_MAX_TOKENS (64) from BT_SCALE_CLIENTS (8)
#   clients.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BT_BUILD_DIR:-build} # the build to measure
bin=$build/backtrack
rpcdir=.deps/llama.cpp-v0.4.0/rpc
model=${1:-bench/out/bench-100m.gguf}
tokens=${BT_SCALE_TOKENS:-200}
runs=${BT_SCALE_RUNS:-3}
requests=${BT_SCALE_REQUESTS:-64}
clients=${BT_SCALE_CLIENTS:-8}
max_tokens=${BT_SCALE_MAX_TOKENS:-64}
cpus=$(nproc)
half=$((cpus / 2 > 0 ? cpus / 2 : 1))
wthreads=${BT_SCALE_WORKER_THREADS:-$half}
say() { printf 'bench_scale: %s\n' "$*" >&2; }

[ -x "$bin" ] || { say "no $bin: run scripts/setup.sh"; exit 1; }
[ -x "$rpcdir/rpc-server" ] || { say "no $rpcdir/rpc-server: BT_LLAMA_RPC=1 scripts/get-llama.sh"; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { say "no nginx: apt-get install nginx"; exit 1; }
if [ ! -f "$model" ] && [ "$model" = bench/out/bench-100m.gguf ]; then
    mkdir -p bench/out
    "$build/bench/make_model" .deps/llama.cpp-v0.4.0/src/models/ggml-vocab-llama-bpe.gguf "$model" 100m
fi
[ -f "$model" ] || { say "no model $model"; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: a port nothing listens on
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % 20000)) # below the ephemeral range (32768-60999)
        port_free "$p" && { echo "$p"; return; }
    done
}
# wait_port PORT: until something accepts connections there
wait_port() {
    for _ in $(seq 1 200); do port_free "$1" || return 0; sleep 0.05; done
    say "nothing listens on $1"
    exit 1
}
# hwm PID: peak resident memory in MiB
hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "## Scale-out"
echo
echo "Written by \`bash bench/bench_scale.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
echo "$(lscpu | sed -n 's/^Model name: *//p'), $cpus CPUs. Model: \`$(basename "$model")\`."

# ---- 1. two RPC workers against the local run -------------------------------------------
w1=$(free_port)
"$rpcdir/rpc-server" -H 127.0.0.1 -p "$w1" -t "$wthreads" >"$tmp/w1.log" 2>&1 &
pids+=($!)
wait_port "$w1"
w2=$(free_port)
"$rpcdir/rpc-server" -H 127.0.0.1 -p "$w2" -t "$wthreads" >"$tmp/w2.log" 2>&1 &
pids+=($!)
wait_port "$w2"
rpc="127.0.0.1:$w1,127.0.0.1:$w2"
slop=../shared/slop/slop_phrases_2025-04-07.json
[ -f "$slop" ] || slop=$root/../shared/slop/slop_phrases_2025-04-07.json

# tps ARGS...: tokens/s of one CLI run (its --stats line)
tps() {
    "$bin" -m "$model" -p "Once upon a time" -n "$tokens" --top-k 1 --stats "$@" 2>&1 >/dev/null |
        sed -n 's/.*tok_per_s=\([0-9.]*\).*/\1/p'
}
echo
echo "### One model on two RPC workers (one machine: the protocol's overhead)"
echo
echo "\`backtrack -m MODEL -p 'Once upon a time' -n $tokens --top-k 1 --stats\` locally ($cpus"
echo "threads), then with \`--rpc $rpc -ngl 99\` (every layer on the two"
echo "workers, \`rpc-server -t $wthreads\` each, the KV cache with them). Median of $runs alternating runs."
echo
echo "| strategy | local tok/s | two RPC workers tok/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
for strat in greedy antislop; do
    S=()
    [ "$strat" = antislop ] && S=(-s antislop --slop-file "$slop")
    : >"$tmp/local"
    : >"$tmp/rpc"
    for _ in $(seq 1 "$runs"); do
        tps "${S[@]}" >>"$tmp/local"
        tps "${S[@]}" --rpc "$rpc" -ngl 99 >>"$tmp/rpc"
    done
    l=$(median <"$tmp/local")
    r=$(median <"$tmp/rpc")
    echo "| $strat | $l | $r | $(awk -v a="$r" -v b="$l" 'BEGIN {printf "%.2f", a / b}') |"
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
pids=()

# ---- 2. two replicas behind nginx against one server --------------------------------------
# serve PORT PARALLEL THREADS: a server in the background, its pid in $spid
serve() {
    "$bin" serve -m "$model" --port "$1" --parallel "$2" -t "$3" -c 512 2>>"$tmp/serve.log" &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.1; done
    say "server on $1 did not start"
    cat "$tmp/serve.log" >&2
    exit 1
}
echo
echo "### Two replicas behind nginx against one server ($clients clients)"
echo
echo "\`node bench/bench_server.mjs URL $requests $clients $max_tokens\` (completions, no session header:"
echo "nginx's round robin). One server: \`--parallel $clients -t $cpus\`; two replicas on the same"
echo "machine: \`--parallel $((clients / 2)) -t $half\` each, behind deploy/nginx/ (render.sh)."
echo "Latencies in ms; memory: each server's peak resident set (VmHWM) after the run."
echo
echo "| set-up | requests | clients | max_tokens | requests/s | tokens/s | p50 | p90 | p99 | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
one=$(free_port)
serve "$one" "$clients" "$cpus"
node bench/bench_server.mjs "http://127.0.0.1:$one" "$requests" "$clients" "$max_tokens" "one server"
mem_one=$(hwm "$spid")
kill "$spid"
wait "$spid" 2>/dev/null || true
pids=()

r1=$(free_port)
serve "$r1" $((clients / 2)) "$half"
p1=$spid
r2=$(free_port)
serve "$r2" $((clients / 2)) "$half"
p2=$spid
lb=$(free_port)
bash deploy/nginx/render.sh "$tmp/nginx" "127.0.0.1:$lb" "127.0.0.1:$r1" "127.0.0.1:$r2" >/dev/null
"$nginx" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
pids+=($!)
wait_port "$lb"
node bench/bench_server.mjs "http://127.0.0.1:$lb" "$requests" "$clients" "$max_tokens" "two replicas + nginx"
echo
echo "Peak resident memory: one server (--parallel $clients) $mem_one MiB; each replica"
echo "(--parallel $((clients / 2))) $(hwm "$p1") and $(hwm "$p2") MiB."
