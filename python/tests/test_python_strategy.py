"""Strategies written in Python, run by the C loop: the original's conventions, bans that
hold over many seeds, chains with the C strategies, and the same behaviour without numpy."""
import json
import logging
import os
import subprocess
import sys

import pytest
from conftest import PYDIR
from pystrategies import (BanWord, DuckTyped, ForceToken, ForceTokenNumpy, OffsetLogits,
                          UndoAt)

from backtrack import (AntiSlopStrategy, BacktrackSampler, ChainStrategy, HumanGuidanceStrategy,
                       LlamacppProvider, _bridge)

PROMPT = "Once upon a time"


def texts(sampler, seeds, n=150, **kw):
    return ["".join(sampler.generate_text(PROMPT, max_new_tokens=n, seed=s, **kw)) for s in seeds]


def test_python_ban_never_lets_the_word_through(provider):
    plain = texts(BacktrackSampler(provider), range(20))
    assert sum("Lily" in t for t in plain) >= 3  # the model does reach for it
    ban = BanWord(provider, "Lily")
    sampler = BacktrackSampler(provider, ban)
    rewinds = 0
    for seed in range(20):
        text = "".join(sampler.generate_text(PROMPT, max_new_tokens=150, seed=seed))
        assert "Lily" not in text, seed
        assert sampler.stats.n_released > 0 and sampler.stats.stop_reason in ("max_new_tokens", "eog")
        rewinds += sampler.stats.n_rewinds
    assert rewinds > 0 and ban.rewinds == rewinds


def test_python_strategy_chained_with_antislop(provider):
    plain = texts(BacktrackSampler(provider), range(20))
    assert sum("park" in t or "ball" in t for t in plain) >= 2
    ban = BanWord(provider, "Lily")
    anti = AntiSlopStrategy(provider, ["park", "ball"])
    sampler = BacktrackSampler(provider, ChainStrategy([ban, anti]))
    matches = 0
    for seed in range(20):
        text = "".join(sampler.generate_text(PROMPT, max_new_tokens=150, seed=seed))
        low = text.lower()
        assert "Lily" not in text and "park" not in low and "ball" not in low, (seed, text)
        matches += anti.stats.matches
    assert ban.rewinds > 0 and matches > 0  # both members did their part
    # the C member now belongs to the chain
    with pytest.raises(ValueError, match="ChainStrategy"):
        BacktrackSampler(provider, anti)
    # C strategies first, the Python one last: the same guarantees
    sampler2 = BacktrackSampler(provider, ChainStrategy([AntiSlopStrategy(provider, ["park"]),
                                                         BanWord(provider, "Lily")]))
    for text in texts(sampler2, range(10)):
        assert "Lily" not in text and "park" not in text.lower()


def test_keep_index_follows_the_original_release_rule(provider, caplog):
    # the original releases the tokens before get_keep_index() - 1: with the DebugStrategy
    # rule (keep index = len(continuation)) two tokens are unreleased at each step
    undo = UndoAt(at=10, n=2)
    sampler = BacktrackSampler(provider, undo)
    toks = list(sampler.generate(PROMPT, max_new_tokens=40, seed=5))
    assert sampler.stats.n_discarded == 2 and sampler.stats.n_rewinds == 1
    assert len(toks) == 40 and undo.rewound == [(8, 2)] and undo.resets == 1
    # a third token was already released: the sampler clamps the request and says so
    undo3 = UndoAt(at=10, n=3)
    with caplog.at_level(logging.WARNING, logger="backtrack"):
        list(BacktrackSampler(provider, undo3).generate(PROMPT, max_new_tokens=40, seed=5))
    assert any("asked to undo 3 tokens, only 2" in r.getMessage() for r in caplog.records)


def test_on_probs_can_force_a_filtered_token(provider):
    # token 300 is outside top_k=1's single candidate: on_probs appends it
    greedy = list(BacktrackSampler(provider).generate(PROMPT, max_new_tokens=5, top_k=1, seed=1))
    assert 300 not in greedy
    for strat in (ForceToken(300), ForceTokenNumpy(300) if _bridge.np is not None else None):
        if strat is None:
            continue
        toks = list(BacktrackSampler(provider, strat).generate(PROMPT, max_new_tokens=12,
                                                               top_k=1, seed=1))
        assert toks == [300] * 12 and strat.calls == 12


def test_on_logits_may_return_a_new_array(provider):
    toks = list(BacktrackSampler(provider, OffsetLogits(77)).generate(PROMPT, max_new_tokens=10,
                                                                      seed=2))
    assert toks == [77] * 10


def test_duck_typed_strategy_and_reuse(provider):
    d = DuckTyped()
    sampler = BacktrackSampler(provider, d)
    a = list(sampler.generate(PROMPT, max_new_tokens=30, seed=9))
    b = list(BacktrackSampler(provider).generate(PROMPT, max_new_tokens=30, seed=9))
    assert a == b and d.seen == 30  # pass-through methods change nothing


def test_human_guidance_with_a_python_chooser(provider):
    menus = []

    def choose(menu):
        menus.append(menu)
        if len(menus) == 6:
            return HumanGuidanceStrategy.GO_BACK
        return 1

    strat = HumanGuidanceStrategy(provider, top_k=3, choose=choose)
    sampler = BacktrackSampler(provider, strat)
    toks = list(sampler.generate(PROMPT, max_new_tokens=15, seed=4))
    assert len(toks) == 15 and sampler.stats.n_discarded == 2
    m = menus[0]
    assert len(m.tokens) == 3 and m.probs == sorted(m.probs, reverse=True)
    assert m.labels == [provider.decode([t]) for t in m.tokens] and not m.can_go_back
    assert menus[5].can_go_back and menus[5].text == provider.decode(toks[:5], errors="replace")


SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
from backtrack import BacktrackSampler, LlamacppProvider, ChainStrategy, AntiSlopStrategy, _bridge
from pystrategies import BanWord, ForceToken, OffsetLogits, UndoAt
p = LlamacppProvider(sys.argv[3])
out = {"numpy": _bridge.np is not None}
s = BacktrackSampler(p, ChainStrategy([BanWord(p, "Lily"), AntiSlopStrategy(p, ["park"])]))
out["ban"] = ["".join(s.generate_text("Once upon a time", max_new_tokens=150, seed=k)) for k in range(6)]
out["force"] = list(BacktrackSampler(p, ForceToken(300)).generate("Once upon a time", max_new_tokens=6, top_k=1, seed=1))
out["offset"] = list(BacktrackSampler(p, OffsetLogits(77)).generate("Once upon a time", max_new_tokens=6, seed=2))
s = BacktrackSampler(p, UndoAt(10, 2)); list(s.generate("Once upon a time", max_new_tokens=40, seed=5))
out["undo"] = s.stats.n_discarded
print(json.dumps(out))
"""


def test_the_same_without_numpy(model_path):
    """BACKTRACK_NO_NUMPY=1: the arrays are ctypes arrays; everything behaves the same."""
    runs = {}
    for flag in ("1", ""):
        env = dict(os.environ, BACKTRACK_NO_NUMPY=flag)
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(PYDIR),
                            os.path.dirname(__file__), model_path],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        runs[flag] = json.loads(r.stdout)
    assert runs["1"]["numpy"] is False
    if not runs[""]["numpy"]:
        pytest.skip("numpy is not installed: only the ctypes path ran")
    a, b = runs["1"], runs[""]
    assert a["ban"] == b["ban"] and a["force"] == b["force"] == [300] * 6
    assert a["offset"] == b["offset"] == [77] * 6 and a["undo"] == b["undo"] == 2
    assert not any("Lily" in t or "park" in t.lower() for t in a["ban"])
