"""Errors: an exception raised in any Python callback (strategy or provider) ends the
generation and is raised in the caller, the sampler stays usable (the next generation is
exactly a fresh one), nothing crashes; the library's errors arrive as BacktrackError with
its message."""
import gc
import os
import threading
import traceback

import pytest
from test_python_provider import PROMPT as MPROMPT
from test_python_provider import BANS, NumpyModel

from backtrack import (AntiSlopStrategy, BacktrackError, BacktrackSampler, BaseStrategy,
                       ChainStrategy, DebugStrategy, HumanGuidanceStrategy, LlamacppProvider,
                       ReplaceStrategy)

PROMPT = "Once upon a time"


class Boom(Exception):
    pass


class Faulty(BaseStrategy):
    """Raises in `where` on its `at`-th call there, once armed; otherwise behaves like the
    original DebugStrategy (holds the last token back)."""

    def __init__(self, where, at=5):
        self.where, self.at, self.calls, self.armed, self.idx = where, at, 0, True, 0
        self.undone = False

    def _tick(self, name):
        if name == self.where and self.armed:
            self.calls += 1
            if self.calls == self.at:
                self.armed = False
                raise Boom(f"{name} failed")

    def on_logits(self, logits, continuation_tokens):
        self._tick("on_logits")
        return logits

    def on_probs(self, probs, continuation_tokens):
        self._tick("on_probs")
        return probs

    def on_next_token(self, continuation_tokens, probs):
        self._tick("on_next_token")
        self.idx = len(continuation_tokens)

    def backtrack(self, continuation_tokens):
        self._tick("backtrack")
        if len(continuation_tokens) == 12 and not self.undone:  # one rewind per generation
            self.undone = True
            return continuation_tokens[:-1]
        return continuation_tokens

    def on_rewind(self, continuation_tokens, n):
        self._tick("on_rewind")

    def get_keep_index(self):
        self._tick("get_keep_index")
        return self.idx

    def reset(self):
        self.idx = 0
        self.undone = False
        self._tick("reset")


WHERE = ["on_logits", "on_probs", "on_next_token", "backtrack", "on_rewind", "get_keep_index",
         "reset"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("text_mode", [False, True])
def test_strategy_exception_is_raised_and_the_sampler_reusable(provider, where, text_mode):
    strat = Faulty(where, at=1 if where in ("on_rewind", "reset") else 5)
    sampler = BacktrackSampler(provider, strat)
    gen = sampler.generate_text if text_mode else sampler.generate
    with pytest.raises(Boom, match=f"{where} failed") as ei:
        for _ in gen(PROMPT, max_new_tokens=40, seed=11):
            pass
    # the traceback reaches into the strategy's own method
    assert any(fr.name == "_tick" for fr in traceback.extract_tb(ei.value.__traceback__))
    if where != "reset":
        assert sampler.stats.stop_reason in ("caller", "error")
        assert sampler.stats.n_steps < 40
    # disarmed now: the same sampler gives exactly what a fresh one gives
    again = list(gen(PROMPT, max_new_tokens=40, seed=11, cache_prompt=False))
    fresh = list(getattr(BacktrackSampler(provider, Faulty("none")), gen.__name__)(
        PROMPT, max_new_tokens=40, seed=11, cache_prompt=False))
    assert again == fresh and len(again) > 0
    assert sampler.stats.stop_reason == "max_new_tokens"


def test_strategy_exception_inside_a_chain(provider):
    anti = AntiSlopStrategy(provider, ["Lily"])
    sampler = BacktrackSampler(provider, ChainStrategy([anti, Faulty("backtrack", at=7)]))
    with pytest.raises(Boom):
        list(sampler.generate(PROMPT, max_new_tokens=40, seed=3))
    assert len(list(sampler.generate(PROMPT, max_new_tokens=40, seed=3))) == 40
    assert anti.stats.matches >= 0


def test_base_exceptions_too(provider):
    class Exit(BaseStrategy):
        def on_logits(self, logits, continuation_tokens):
            raise SystemExit(3)

    with pytest.raises(SystemExit):
        list(BacktrackSampler(provider, Exit()).generate(PROMPT, max_new_tokens=10))


def test_callbacks_of_c_strategies(provider):
    def emit(line):
        raise Boom("emit")

    with pytest.raises(Boom, match="emit"):
        list(BacktrackSampler(provider, DebugStrategy(emit=emit)).generate(PROMPT, max_new_tokens=5))

    def choose(menu):
        return 99

    with pytest.raises(ValueError, match="returned 99"):
        list(BacktrackSampler(provider, HumanGuidanceStrategy(choose=choose)).generate(
            PROMPT, max_new_tokens=5))


class FaultyModel(NumpyModel):
    def __init__(self, where, at):
        super().__init__()
        self.where, self.at, self.n = where, at, 0

    def _tick(self, name):
        if name == self.where:
            self.n += 1
            if self.n == self.at:
                raise Boom(name)

    def generate(self, input_ids):
        self._tick("generate")
        return super().generate(input_ids)

    def encode(self, text, add_special_tokens=True):
        self._tick("encode")
        return super().encode(text, add_special_tokens)

    def remove_latest_cache(self, nr):
        self._tick("remove_latest_cache")
        super().remove_latest_cache(nr)

    def get_eos_token_id(self):
        self._tick("get_eos_token_id")
        return super().get_eos_token_id()

    def token_bytes(self, t):
        self._tick("token_bytes")
        return super().token_bytes(t)


@pytest.mark.parametrize("where,at", [("generate", 4), ("encode", 1), ("remove_latest_cache", 1),
                                      ("get_eos_token_id", 3), ("token_bytes", 7)])
def test_provider_exception_is_raised_and_the_sampler_reusable(where, at):
    m = FaultyModel(where, at)
    # AntiSlop makes it rewind (remove_latest_cache); the ban is frequent on this model
    strat = AntiSlopStrategy(m, BANS, with_variants=False)
    with pytest.raises(Boom, match=where):
        sampler = BacktrackSampler(m, strat)
        for seed in range(5):
            list(sampler.generate(MPROMPT, max_new_tokens=60, seed=seed))
    sampler = BacktrackSampler(m, AntiSlopStrategy(m, BANS, with_variants=False))
    got = [list(sampler.generate(MPROMPT, max_new_tokens=60, seed=s)) for s in range(3)]
    m2 = NumpyModel()
    want = [list(BacktrackSampler(m2, AntiSlopStrategy(m2, BANS, with_variants=False))
                 .generate(MPROMPT, max_new_tokens=60, seed=s)) for s in range(3)]
    assert got == want


def test_breaking_out_stops_the_generation(provider):
    sampler = BacktrackSampler(provider, AntiSlopStrategy(provider, ["Lily"]))
    for i, _ in enumerate(sampler.generate(PROMPT, max_new_tokens=200, seed=1)):
        if i == 3:
            break
    gc.collect()
    assert sampler.stats is not None and sampler.stats.stop_reason in ("caller", "max_new_tokens")
    assert sampler.stats.n_released < 200
    # reusable, and no cancel left behind
    assert len(list(sampler.generate(PROMPT, max_new_tokens=50, seed=1))) == 50


def test_one_generation_at_a_time_per_provider(provider):
    a = BacktrackSampler(provider)
    b = BacktrackSampler(provider)
    g = a.generate(PROMPT, max_new_tokens=50, seed=1)
    next(g)
    with pytest.raises(RuntimeError, match="already running"):
        next(b.generate(PROMPT, max_new_tokens=5))
    g.close()
    assert len(list(b.generate(PROMPT, max_new_tokens=5))) == 5


def test_cancel_from_another_thread(provider):
    sampler = BacktrackSampler(provider)
    out = []
    for tok in sampler.generate(PROMPT, max_new_tokens=None, seed=2):  # until the context is full
        out.append(tok)
        if len(out) == 5:
            threading.Thread(target=sampler.cancel).start()
    assert sampler.stats.stop_reason == "caller" and len(out) < 2000


def test_library_errors_carry_its_message(provider, model_path, tmp_path):
    with pytest.raises(BacktrackError) as ei:
        LlamacppProvider(str(tmp_path / "missing.gguf"))
    assert "missing.gguf" in str(ei.value)
    (tmp_path / "bad.gguf").write_bytes(b"not a model at all" * 10)
    with pytest.raises(BacktrackError):
        LlamacppProvider(str(tmp_path / "bad.gguf"))
    sampler = BacktrackSampler(provider)
    with pytest.raises(BacktrackError, match=r"top_p must be in \(0, 1\]"):
        sampler.generate(PROMPT, top_p=2)
    with pytest.raises(BacktrackError, match="outside the vocabulary") as ei:
        sampler.generate(PROMPT, logit_bias={100000: 1.0})
    assert ei.value.status is None  # a constructor (bt_sampler_init) says NULL, no status
    with pytest.raises(BacktrackError, match="context") as ei:
        list(sampler.generate("Once upon a time " * 1000))
    assert ei.value.status_name == "BT_ERR_CONTEXT_FULL"
    with pytest.raises(BacktrackError, match="outside the vocabulary"):
        list(sampler.generate([1, 2, 99999]))
    with pytest.raises(ValueError, match="empty"):
        sampler.generate("")
    with pytest.raises(BacktrackError, match="b\\[a"):  # the message names the bad regex
        AntiSlopStrategy(provider, regexes=["b[a"])
    with pytest.raises(BacktrackError):
        AntiSlopStrategy(provider, [])
    with pytest.raises(BacktrackError):
        ReplaceStrategy(provider, find=[], replace="x")
    with pytest.raises(BacktrackError):
        AntiSlopStrategy(provider, slop_files=[str(tmp_path / "nope.txt")])
    with pytest.raises(TypeError, match="runs in C"):
        class Sub(AntiSlopStrategy):
            def on_logits(self, logits, continuation_tokens):
                return logits
    # after all that, the sampler works
    assert len(list(sampler.generate(PROMPT, max_new_tokens=10))) == 10


def test_no_leak_of_c_objects(provider):
    """Samplers, chains and Python strategy handles are freed with their Python objects."""
    from backtrack import _bridge
    gc.collect()
    before = len(_bridge._registry)
    for _ in range(20):
        s = BacktrackSampler(provider, ChainStrategy([Faulty("none"), AntiSlopStrategy(provider,
                                                                                      ["x"])]))
        list(s.generate(PROMPT, max_new_tokens=3))
        del s
        m = NumpyModel()
        list(BacktrackSampler(m, Faulty("none")).generate(MPROMPT, max_new_tokens=3))
    gc.collect()
    assert len(_bridge._registry) == before


def test_two_generators_made_before_either_runs(provider):
    s = BacktrackSampler(provider)
    g1 = s.generate(PROMPT, max_new_tokens=20, seed=1)
    g2 = s.generate(PROMPT, max_new_tokens=20, seed=1)
    next(g1)
    with pytest.raises(RuntimeError, match="already running"):
        next(g2)
    assert len(list(g1)) == 19


def test_a_closed_provider_is_refused_not_used(model_path):
    p = LlamacppProvider(model_path)
    s = BacktrackSampler(p)
    assert len(list(s.generate(PROMPT, max_new_tokens=5))) == 5
    p.close()
    with pytest.raises(ValueError, match="closed"):
        s.generate(PROMPT, max_new_tokens=5)
    with pytest.raises(ValueError, match="closed"):
        p.encode("x")


def test_the_c_sampler_is_kept_while_the_parameters_stay(provider):
    s = BacktrackSampler(provider)
    list(s.generate(PROMPT, max_new_tokens=3, logit_bias={5: 1.0}, seed=1))
    first, first_key = s._smp, s._smp_key
    list(s.generate(PROMPT, max_new_tokens=3, logit_bias={5: 1.0}, seed=1))
    assert s._smp == first and s._smp_key == first_key  # the same C sampler, not a new one
    list(s.generate(PROMPT, max_new_tokens=3, logit_bias={5: 2.0}, seed=1))
    assert s._smp_key != first_key


def test_generators_made_with_other_parameters_run_on_their_own_sampler(provider):
    s = BacktrackSampler(provider)
    g1 = s.generate(PROMPT, max_new_tokens=30, seed=4, temperature=1.0, cache_prompt=False)
    g2 = s.generate(PROMPT, max_new_tokens=30, seed=4, temperature=0.5, cache_prompt=False)
    a, b = list(g1), list(g2)  # g1's C sampler was replaced by g2's before g1 ran
    want_a = list(BacktrackSampler(provider).generate(PROMPT, max_new_tokens=30, seed=4,
                                                      cache_prompt=False))
    want_b = list(BacktrackSampler(provider).generate(PROMPT, max_new_tokens=30, seed=4,
                                                      temperature=0.5, cache_prompt=False))
    assert a == want_a and b == want_b and a != b
    g3 = s.generate(PROMPT, max_new_tokens=5)
    s.close()
    with pytest.raises(ValueError, match="closed"):
        next(g3)
