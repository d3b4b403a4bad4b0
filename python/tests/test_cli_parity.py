"""Every strategy through Python gives exactly the CLI's text for the same model, prompt,
seed and options: the Python layer adds nothing to (and loses nothing of) the C loop."""
import subprocess

import pytest

from backtrack import (AdaptiveTemperatureStrategy, AntiSlopStrategy, BacktrackSampler,
                       ChainStrategy, CreativeWritingStrategy, DebugStrategy, LlamacppProvider,
                       NoopStrategy, ReplaceStrategy)

PROMPT = "Once upon a time"
SEEDS = [1, 7, 42]
SLOPS = ["Lily", "little girl", "park", "ball"]

# name -> (CLI strategy arguments, a function making the Python strategy)
CASES = {
    "none": ([], lambda p: None),
    "noop": (["-s", "noop"], lambda p: NoopStrategy(p)),
    "antislop": (["-s", "antislop"] + sum([["--slop", s] for s in SLOPS], []),
                 lambda p: AntiSlopStrategy(p, SLOPS)),
    "antislop-options": (["-s", "antislop", "--slop", "lily", "--slop", "Tim", "--whole-word",
                          "--no-variants", "--keep-index-buffer", "2", "--skip-tokens", "3",
                          "--max-retries", "3", "--slop-regex", "b[a-z]+l"],
                         lambda p: AntiSlopStrategy(p, ["lily", "Tim"], keep_index_buffer=2,
                                                    with_variants=False, skip_tokens=3,
                                                    whole_word=True, regexes=["b[a-z]+l"],
                                                    max_retries=3)),
    "replace": (["-s", "replace", "--find", "Lily", "--find", " girl", "--replace",
                 " dragon", "--max-replacements", "2"],
                lambda p: ReplaceStrategy(p, find=["Lily", " girl"], replace=" dragon",
                                          max_replacements=2)),
    "creative-writing": (["-s", "creative-writing", "--top-p-flat", "0.5", "--eos-penalty",
                          "0.75"],
                         lambda p: CreativeWritingStrategy(p, top_p_flat=0.5, eos_penalty=0.75)),
    "adaptive-temperature": (["-s", "adaptive-temperature", "--c0", "-0.03", "--c4", "-1.5"],
                             lambda p: AdaptiveTemperatureStrategy(
                                 [-0.03, 0.481, -2.3, 4.917, -1.5])),
    "chain": (["-s", "antislop", "--slop", "Lily", "-s", "creative-writing", "-s", "replace",
               "--find", "park", "--replace", " forest"],
              lambda p: ChainStrategy([AntiSlopStrategy(p, ["Lily"]), CreativeWritingStrategy(p),
                                       ReplaceStrategy(p, "park", " forest")])),
}

SAMPLING = {
    "defaults": ([], {}),
    "filters-penalties": (["--temp", "0.8", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.05",
                           "--repeat-penalty", "1.1", "--presence-penalty", "0.2",
                           "--frequency-penalty", "0.1", "-l", "300+2", "-l", "301-inf"],
                          dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.05,
                               repeat_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.1,
                               logit_bias={300: 2.0, 301: float("-inf")})),
}


def run_cli(cli, model, args, seed, n):
    r = subprocess.run([cli, "-m", model, "-p", PROMPT, "-n", str(n), "--seed", str(seed)] + args,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.endswith(b"\n")
    return r.stdout[:-1], r.stderr.decode()


@pytest.mark.parametrize("sampling", list(SAMPLING))
@pytest.mark.parametrize("case", list(CASES))
def test_python_equals_cli(case, sampling, cli, model_path):
    cli_args, make = CASES[case]
    s_args, s_kw = SAMPLING[sampling]
    provider = LlamacppProvider(model_path)
    sampler = BacktrackSampler(provider, make(provider))
    for seed in SEEDS:
        want, _ = run_cli(cli, model_path, s_args + cli_args, seed, 120)
        # the cache of the previous generation is not reused: a cold run, as the CLI's
        text = "".join(sampler.generate_text(PROMPT, max_new_tokens=120, seed=seed,
                                             cache_prompt=False, **s_kw))
        assert text.encode() == want, f"{case}/{sampling} seed {seed}"
        assert sampler.stats.seed == seed
        toks = list(sampler.generate(PROMPT, max_new_tokens=120, seed=seed, cache_prompt=False,
                                     **s_kw))
        assert b"".join(provider.token_bytes(t) for t in toks) == want
        assert sampler.stats.n_released == len(toks)


def test_debug_lines_equal_the_cli(cli, model_path):
    provider = LlamacppProvider(model_path)
    lines = []
    sampler = BacktrackSampler(provider, DebugStrategy(provider, emit=lines.append))
    text = "".join(sampler.generate_text(PROMPT, max_new_tokens=30, seed=3, cache_prompt=False))
    want, err = run_cli(cli, model_path, ["-s", "debug"], 3, 30)
    assert text.encode() == want
    cli_lines = [ln for ln in err.splitlines() if ln.startswith("[debug]")]
    assert len(lines) == 30 and lines == cli_lines


def test_stats_and_strategy_stats_equal_the_cli(cli, model_path):
    provider = LlamacppProvider(model_path)
    strat = AntiSlopStrategy(provider, SLOPS)
    sampler = BacktrackSampler(provider, strat)
    text = "".join(sampler.generate_text(PROMPT, max_new_tokens=200, seed=42, cache_prompt=False))
    want, err = run_cli(cli, model_path, ["--stats", "-s", "antislop"]
                        + sum([["--slop", s] for s in SLOPS], []), 42, 200)
    assert text.encode() == want
    st = sampler.stats
    line = next(ln for ln in err.splitlines() if ln.startswith("stats: prompt="))
    for key, val in (("prompt", st.n_prompt), ("released", st.n_released),
                     ("discarded", st.n_discarded), ("rewinds", st.n_rewinds),
                     ("steps", st.n_steps), ("stop", st.stop_reason), ("seed", st.seed)):
        assert f" {key}={val} " in f" {line} ", (key, val, line)
    a = strat.stats
    assert (f"stats: antislop: matches={a.matches} hard_bans={a.hard_bans} soft_bans="
            f"{a.soft_bans} rewound_further={a.rewound_further} let_through={a.let_through}") in err
    assert a.matches > 0  # the bans were exercised
