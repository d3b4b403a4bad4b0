"""Review (issue 12): a strategy (C or Python, alone or in a chain) runs in one generation at
a time, as a provider does: a C strategy's state is per generation, and two generations
at once corrupted it. A provider is not reset under a running generation."""
import pytest
from test_review_semantics import PopInPlace

from backtrack import AntiSlopStrategy, BacktrackSampler, ChainStrategy, LlamacppProvider

PROMPT = "Once upon a time"

BANS = ["Lily", "park", "ball", "the"]


def test_a_c_strategy_in_two_samplers_never_runs_twice_at_once(model_path):
    """Two samplers (two providers) sharing one C strategy: its state is per generation;
    two generations at once corrupted it (every text differed from the lone run)."""
    p1, p2 = LlamacppProvider(model_path), LlamacppProvider(model_path)
    anti = AntiSlopStrategy(p1, BANS)
    want = list(BacktrackSampler(p1, AntiSlopStrategy(p1, BANS)).generate(
        PROMPT, max_new_tokens=100, seed=5, cache_prompt=False))
    s1, s2 = BacktrackSampler(p1, anti), BacktrackSampler(p2, anti)
    g1 = s1.generate(PROMPT, max_new_tokens=100, seed=5, cache_prompt=False)
    next(g1)
    with pytest.raises(RuntimeError, match="already running"):
        next(s2.generate(PROMPT, max_new_tokens=100, seed=5, cache_prompt=False))
    g1.close()
    # one after the other: both give the lone run's text
    for s in (s1, s2):
        assert list(s.generate(PROMPT, max_new_tokens=100, seed=5, cache_prompt=False)) == want
    # the same through a chain that holds a Python strategy used elsewhere at once
    py = PopInPlace()
    s3 = BacktrackSampler(p1, ChainStrategy([AntiSlopStrategy(p1, BANS), py]))
    s4 = BacktrackSampler(p2, py)
    g3 = s3.generate(PROMPT, max_new_tokens=50, seed=5)
    next(g3)
    with pytest.raises(RuntimeError, match="already running"):
        next(s4.generate(PROMPT, max_new_tokens=50, seed=5))
    g3.close()
    assert len(list(s4.generate(PROMPT, max_new_tokens=50, seed=5))) == 50


def test_provider_reset_is_refused_while_it_generates(provider):
    s = BacktrackSampler(provider)
    g = s.generate(PROMPT, max_new_tokens=50, seed=1)
    next(g)
    with pytest.raises(RuntimeError, match="running"):
        provider.reset()
    g.close()
    provider.reset()
