#!/usr/bin/python3
"""bench_python.py -- tokens/s through the Python package against the C CLI, same settings.

    /usr/bin/python3 bench/bench_python.py MODEL [--tokens 128] [--reps 7] [--threads N]
                                           [--cli build/backtrack] [--slop-file FILE]

Three comparisons, each side run alternately REPS times, medians reported:

  (a) AntiSlop (the C strategy) driven from Python   vs  the CLI with -s antislop, same slops
  (b) a no-op Python BaseStrategy with on_logits     vs  the CLI with -s noop
  (c) the cost of that Python callback alone, per token, without a model: a Python provider
      returning fixed logits of the model's vocabulary size, with and without (b)'s
      strategy (the difference is the on_logits callback plus the copy of the logits it
      is handed, in microseconds per token)

tok/s is the CLI's own figure (--stats' tok_per_s: draws per second after the prompt) and
the same formula from sampler.stats for Python; "wall" is what a Python caller sees
(tokens over the wall time of consuming the generator, prompt excluded). Targets from issue
12: (a) >= 0.97, (b) >= 0.85. With torch installed it also times the original
backtrack_sampler's per-token sampling path (pure PyTorch: temperature, top_k, softmax,
multinomial) on the same vocabulary size, for comparison with (c).

Run it on an idle machine only (see bench/run.sh): other processes make the figures
meaningless. The model of BENCHMARKS.md is bench/out/bench-100m-q8.gguf (bench/make_model).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from backtrack import (AntiSlopStrategy, BacktrackSampler, BaseProvider,  # noqa: E402
                       BaseStrategy, LlamacppProvider, NoopStrategy, library_path)
from backtrack import _bridge  # noqa: E402

PROMPT = "Once upon a time"
SLOPS = ["Lily", "little girl", "park", "ball", "tapestry", "testament to", "a sense of",
         "shivers down", "barely above a whisper", "palpable"]


class NoopLogits(BaseStrategy):
    """Does nothing, through the on_logits slot: the C loop copies the logits for it and
    calls into Python once per token."""

    def on_logits(self, logits, continuation_tokens):
        return logits


class FixedLogits(BaseProvider):
    """No model: the same logits every step (a realistic spread), vocabulary of n."""

    def __init__(self, n):
        self.n = n
        import random
        rng = random.Random(1)
        vals = [rng.gauss(0.0, 2.0) for _ in range(n)]
        if _bridge.np is not None:
            self.logits = _bridge.np.asarray(vals, dtype=_bridge.np.float32)
        else:
            import ctypes
            self.logits = (ctypes.c_float * n)(*vals)

    def get_vocab_size(self):
        return self.n

    def encode(self, text, add_special_tokens=True):
        return [1, 2, 3, 4]

    def decode(self, tokens):
        return "".join(f"<{t}>" for t in tokens)

    def token_bytes(self, token_id):
        return b"x"

    def generate(self, input_ids):
        return self.logits

    def get_eos_token_id(self):
        return None


def cli_run(cli, model, tokens, threads, strategy_args, seed):
    cmd = [cli, "-m", model, "-p", PROMPT, "-n", str(tokens), "-t", str(threads), "--seed",
           str(seed), "--stats"] + strategy_args
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench_python: {' '.join(cmd)} failed:\n{r.stderr}")
    m = re.search(r"tok_per_s=([0-9.]+)", r.stderr)
    steps = int(re.search(r" steps=(\d+)", r.stderr).group(1))
    return float(m.group(1)), steps


def py_run(sampler, tokens, seed):
    t0 = time.perf_counter()
    n = sum(1 for _ in sampler.generate(PROMPT, max_new_tokens=tokens, seed=seed,
                                        cache_prompt=False))
    wall = time.perf_counter() - t0
    st = sampler.stats
    gen_s = wall - st.t_prompt_ms / 1000.0
    return st.tokens_per_s, (n / gen_s if gen_s > 0 else 0.0), st.n_steps


def original_sampler_us(n_vocab, steps=300):
    """The original's per-token sampling path in PyTorch (its defaults: top_k 50)."""
    try:
        import torch
    except ImportError:
        return None
    logits = torch.randn(1, n_vocab)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = logits / max(1.0, 1e-4)
        top, _ = torch.topk(x, 50)
        x = torch.where(x < top[:, -1].unsqueeze(-1), float("-inf"), x)
        probs = torch.softmax(x, dim=-1)
        torch.multinomial(probs, num_samples=1).item()
    return (time.perf_counter() - t0) / steps * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cli", default=str(ROOT / "build" / "backtrack"))
    ap.add_argument("--slop-file", help="phrases for AntiSlop (the CLI's --slop-file formats)")
    a = ap.parse_args()

    print(f"library: {library_path}; numpy: {'yes' if _bridge.np is not None else 'no'}; "
          f"model: {a.model}; threads: {a.threads}; tokens: {a.tokens}; reps: {a.reps}")
    provider = LlamacppProvider(a.model, n_threads=a.threads)
    nv = provider.n_vocab
    if a.slop_file:
        anti = AntiSlopStrategy(provider, slop_files=[a.slop_file])
        anti_args = ["-s", "antislop", "--slop-file", a.slop_file]
    else:
        anti = AntiSlopStrategy(provider, SLOPS)
        anti_args = ["-s", "antislop"] + sum([["--slop", s] for s in SLOPS], [])
    cases = [("(a) AntiSlop (C)", anti_args, BacktrackSampler(provider, anti), 0.97),
             ("(b) no-op Python on_logits", ["-s", "noop"],
              BacktrackSampler(provider, NoopLogits()), 0.85)]

    # warm-up: page the model in, start llama.cpp's threads
    cli_run(a.cli, a.model, 16, a.threads, [], 1)
    list(BacktrackSampler(provider, NoopStrategy()).generate(PROMPT, max_new_tokens=16, seed=1))

    rows = []
    for name, args, sampler, target in cases:
        c_tps, p_tps, p_wall = [], [], []
        for rep in range(a.reps):
            seed = 1000 + rep
            t, c_steps = cli_run(a.cli, a.model, a.tokens, a.threads, args, seed)
            c_tps.append(t)
            tps, wall, p_steps = py_run(sampler, a.tokens, seed)
            if p_steps != c_steps:
                sys.exit(f"bench_python: {name}: {p_steps} draws through Python, {c_steps} in "
                         "the CLI: not the same generation")
            p_tps.append(tps)
            p_wall.append(wall)
        c, p, w = (statistics.median(x) for x in (c_tps, p_tps, p_wall))
        rows.append((name, c, p, w, target))

    print()
    print("| comparison | CLI tok/s | Python tok/s | ratio | Python wall tok/s | wall ratio | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, c, p, w, target in rows:
        print(f"| {name} | {c:.1f} | {p:.1f} | {p / c:.3f} | {w:.1f} | {w / c:.3f} | >= {target} |")

    # (c) the callback alone, no model
    fixed = FixedLogits(nv)
    base = BacktrackSampler(fixed, None)
    cb = BacktrackSampler(fixed, NoopLogits())
    n = 2000
    t_base, t_cb = [], []
    for rep in range(a.reps):
        for sampler, out in ((base, t_base), (cb, t_cb)):
            list(sampler.generate([1, 2, 3, 4], max_new_tokens=n, seed=rep, cache_prompt=False))
            st = sampler.stats
            out.append((st.t_total_ms - st.t_prompt_ms) * 1000.0 / st.n_steps)
    ub, uc = statistics.median(t_base), statistics.median(t_cb)
    print()
    print(f"(c) per token, vocabulary {nv}, no model (a Python provider with fixed logits): "
          f"{ub:.1f} us without a Python strategy, {uc:.1f} us with the no-op on_logits: "
          f"the Python callback costs {uc - ub:.1f} us per token")
    orig = original_sampler_us(nv)
    if orig is None:
        print("the original's PyTorch sampling path: torch is not installed, not measured")
    else:
        print(f"the original's PyTorch sampling path (temperature, top_k 50, softmax, "
              f"multinomial): {orig:.1f} us per token")


if __name__ == "__main__":
    main()
