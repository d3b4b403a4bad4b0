#!/usr/bin/env bash
# bench/run.sh: build, make the benchmark models, run every benchmark and write
# BENCHMARKS.md (machine, date, commands, tables). Takes about 10 minutes on 2 cores.
#   BT_BENCH_1B=0 skips the ~1B-parameter model (2.5 GB file, the slowest part).
#   BT_BENCH_PEER=1 adds llama-server itself (bench/peer.sh: builds it from the bundled
#   source once, 15-25 minutes on 2 cores) for prompt reuse and server throughput.
# Run it on an otherwise idle machine: ggml's threads spin at their barriers, and another
# busy process makes every figure meaningless (tens of times slower).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
B=build/bench
out=bench/out
mkdir -p "$out"
vocab=.deps/llama.cpp-v0.4.0/src/models/ggml-vocab-llama-bpe.gguf
slop=../shared/slop
[ -f "$out/bench-100m.gguf" ] || $B/make_model "$vocab" "$out/bench-100m.gguf" 100m
if [ "${BT_BENCH_1B:-1}" = 1 ] && [ ! -f "$out/bench-1b.gguf" ]; then
    $B/make_model "$vocab" "$out/bench-1b.gguf" 1b
fi
cpus=$(nproc)
md=BENCHMARKS.md.tmp

# run CMD...: print the command into the report, then its output
run() {
    printf '\n```\n%s\n```\n\n' "$*" >>"$md"
    "$@" | tee -a "$md"
}

{
echo "# Benchmarks"
echo
echo "Written by \`bash bench/run.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $cpus CPUs, $(free -g | awk '/Mem:/{print $2}') GiB,"
echo "$(. /etc/os-release && echo "$PRETTY_NAME"), llama.cpp v0.4.0 (prebuilt CPU libraries)."
echo "Each comparison runs both sides in one process, alternating, and reports medians."
echo
echo "Models: \`stories260K.gguf\` (the default model, 512-token vocabulary) and random-weight"
echo "llama-architecture models with Llama 3's real 128,256-token tokenizer, made by"
echo "\`bench/make_model\` (\`bench-100m.gguf\`: 109M parameters, F16; \`bench-1b.gguf\`: 1.2B, F16,"
echo "tied embeddings). Their text is noise; their cost per token is that of real models of"
echo "that shape."
echo
echo "## 1. Sampler pipeline cost per token (128,256 logits)"
echo
echo "backtrack's whole per-token path (\`bt_generate\`, no-op strategy, on a provider whose"
echo "logits are precomputed, so only sampling is timed) against llama.cpp's sampler chain"
echo "(token-data array built from the logits, then top_k, top_p, min_p, temp, dist) on the"
echo "same 16 realistic logit vectors (Zipf-like head, shuffled). Target: ratio <= 1.0."
} >"$md"
run $B/bench_sampler 128256 2000 9

{
echo
echo "The top_k-off case is the one that makes the original sort the whole vocabulary every"
echo "token; here top_p selects by probability mass with 1,024 buckets and sorts only the kept set."
echo
echo "## 2. End-to-end decoding throughput"
echo
echo "Tokens/s of backtrack's generation path (llama.cpp provider, no-op strategy) against a"
echo "plain loop written against llama.h (llama_decode one token at a time, llama.cpp's"
echo "sampler chain), same model, threads, context, prompt and token count. Target: >= 0.98."
echo
echo '```'
echo "$B/bench_e2e models/stories260K.gguf 256 9 1"
echo "$B/bench_e2e $out/bench-100m.gguf 128 7 $cpus"
echo "$B/bench_e2e $out/bench-1b.gguf 24 3 $cpus      # unless BT_BENCH_1B=0"
echo '```'
echo
echo "| model | sampling | threads | tokens | backtrack tok/s | plain llama.cpp tok/s | ratio |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
} >>"$md"
e2e() { "$@" | tee -a "$md"; }
e2e $B/bench_e2e models/stories260K.gguf 256 9 1
e2e $B/bench_e2e "$out/bench-100m.gguf" 128 7 "$cpus"
if [ -f "$out/bench-1b.gguf" ]; then e2e $B/bench_e2e "$out/bench-1b.gguf" 24 3 "$cpus"; fi
{
echo
echo "## 3. Rewind cost and memory"
echo
echo "A strategy that undoes the last 3 tokens after every 8 kept ones, against the same"
echo "generation without rewinds, with the logits window (rewinds inside it cost no model"
echo "evaluation) and without it (re-decode one token). Evaluations per kept token count"
echo "every position the model ran after the prompt; prompt positions evaluated twice must"
echo "be 0. Time is per kept token (best of 3). Peak RSS is the whole process (model mapped"
echo "in, KV cache sized by the context), one process per row."
echo
echo '```'
echo "$B/bench_rewind $out/bench-100m.gguf plain|rewind TOKENS WINDOW   # undo 3 every 8"
echo '```'
echo
echo "| model | rewinds | logits window | kept | rewinds | discarded | evaluations per kept token | prompt re-evaluated | ms per kept token | peak RSS MiB |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >>"$md"
for args in "plain 256 32" "rewind 256 32" "rewind 256 0" "plain 1024 32" "rewind 1024 32" "rewind 1024 0"; do
    # shellcheck disable=SC2086
    e2e $B/bench_rewind "$out/bench-100m.gguf" $args
done
{
echo
echo "Every discarded token was drawn; all but the last of each rewind had been evaluated, so"
echo "with the window the extra evaluations are exactly the undone ones that reached the model"
echo "(2 per rewind here); without it each rewind costs one more. Memory does not grow with"
echo "the rewinds or the text: the logits kept for rewinding are bounded by the window"
echo "(32 x 128,256 floats at most; only the slots in use are touched)."
echo
echo "AntiSlop on the real model, banning its favourite and most frequent words:"
} >>"$md"
cmd=(build/backtrack -m models/stories260K.gguf -p "Once upon a time" -n 1000 --seed 1 --stats
     -s antislop --slop Lily --slop "little girl" --slop park --slop ball --slop " the " --slop " was ")
printf '\n```\n%s\n```\n\n```\n' "$(printf '%q ' "${cmd[@]}")" >>"$md"
"${cmd[@]}" 2>&1 >/dev/null | tee -a "$md"
printf '```\n' >>"$md"
{
echo
echo "## 4. Phrase-list scaling"
echo
echo "AntiSlop's load time (parse + automaton) and per-token cost of its callbacks over a real"
echo "8,000-token stream written by stories260K (the strategy sees it token by token; its"
echo "rewinds are counted, not applied, so every list sees the same text), and the same for"
echo "the phrase scan alone (feeding new bytes, hold-back point), medians of 11 runs."
echo "Target: 50,046 phrases within 1.5x of 10. The automaton is a breadth-first array with"
echo "dense rows (by byte class) for the states of depth <= 2, where walks mostly stay."
} >>"$md"
run $B/bench_antislop models/stories260K.gguf "$slop" 8000 11
{
echo
echo "The synthetic row holds as many phrases as the full list (random words of 6 to 12"
echo "letters: the text walks as deep into the automaton, nothing matches): it measures what"
echo "the list's size alone costs. The real full list also holds 442 fragments of at most"
echo "three letters (\"the\", \"as\", \"ti\", \"ou\", \"ne\", ...) that occur all over ordinary"
echo "text: 125 matches per 1,000 tokens here, each a real ban to handle. In absolute terms"
echo "every list costs well under 0.1 microsecond per token, against hundreds of microseconds"
echo "for the smallest model's step."
} >>"$md"
{
echo
echo "## 5. The server: batched decoding against one generation at a time"
echo
echo "\`backtrack serve\` with \`--parallel 8\` (8 generations on one context, one llama_decode per"
echo "step for all) against \`--parallel 1\` (the queue serves one at a time), the same clients:"
echo "\`node bench/bench_server.mjs URL REQUESTS CLIENTS MAX_TOKENS\` (completions, seed per"
echo "request, temperature 1). Latencies in ms."
echo
echo "| server | requests | clients | max_tokens | requests/s | tokens/s | p50 | p90 | p99 | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >>"$md"
serve_bench() { # MODEL PARALLEL REQUESTS CLIENTS TOKENS CTX
    local port=$((30000 + RANDOM % 20000))
    build/backtrack serve -m "$1" --port "$port" --parallel "$2" -c "$6" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    node bench/bench_server.mjs "http://127.0.0.1:$port" "$3" "$4" "$5" "$(basename "$1"), --parallel $2" | tee -a "$md"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
serve_bench models/stories260K.gguf 1 200 16 64 512
serve_bench models/stories260K.gguf 8 200 16 64 512
serve_bench "$out/bench-100m.gguf" 1 48 8 32 256
serve_bench "$out/bench-100m.gguf" 8 48 8 32 256
{
echo
echo "On 2 cores the 100M model is compute-bound, so batching 8 sequences per step buys less"
echo "than on a GPU; the server's own overhead (HTTP, JSON, queue) shows in the tiny model's"
echo "rows. The load test in \`tests/test_server.sh\` (200 requests from 16 clients through the"
echo "official OpenAI client, stories260K, \`--parallel 4\`) prints its figures with the tests."
} >>"$md"
{
echo
echo "## 6. Prompt reuse across turns (C API)"
echo
echo "Three \`bt_generate\` turns of a growing conversation on one sampler (each turn's prompt:"
echo "the last prompt, the text released for it and a new message), with \`cache_prompt\` on"
echo "(the default) and off. Positions evaluated: prompt tokens minus those taken from the"
echo "provider's cache."
echo
echo '```'
echo "$B/bench_reuse $out/bench-100m-q8.gguf 1100 32 $cpus"
echo '```'
echo
echo "| cache_prompt | turn | prompt tokens | from the cache | prompt positions evaluated | prompt ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
} >>"$md"
[ -f "$out/bench-100m-q8.gguf" ] || $B/make_model "$vocab" "$out/bench-100m-q8.gguf" 100m q8_0
e2e $B/bench_reuse "$out/bench-100m-q8.gguf" 1100 32 "$cpus"
{
echo
echo "## 6b. A hole between busy sequences (the server's batching)"
echo
echo "One step of 1 token per busy sequence on a context set up as the server's pool (8"
echo "sequences, a cache each): llama.cpp makes one pass over the weights per run of"
echo "consecutive sequence ids; the pool fills a hole of up to 3 idle sequences with a token"
echo "each, removed after the decode."
echo
echo '```'
echo "$B/bench_holes $out/bench-100m-q8.gguf $cpus"
echo '```'
echo
} >>"$md"
$B/bench_holes "$out/bench-100m-q8.gguf" "$cpus" | tee -a "$md"
if [ "${BT_BENCH_PEER:-0}" = 1 ]; then
    {
    echo
    echo "## 7. Against llama-server"
    echo
    } >>"$md"
    bash bench/peer.sh | tee -a "$md"
fi
mv "$md" BENCHMARKS.md
echo "wrote BENCHMARKS.md"
