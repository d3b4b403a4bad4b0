"""A provider written in Python (a small deterministic numpy model) drives the C loop and the
C strategies: AntiSlop and Replace work on it, and every result equals the one the C
scripted provider gives for the same model (the bridge adds nothing, loses nothing)."""
import ctypes

import numpy as np
import pytest
from pystrategies import BanWord

from backtrack import (AntiSlopStrategy, BacktrackSampler, BaseProvider, ChainStrategy,
                       ReplaceStrategy)
from backtrack import _capi as C

WORDS = ["", " the", " cat", " dog", " sat", " on", " mat", " a", " and", " ran", " to",
         " park", " big", " red", " ball", " he", " she", ".", "The", " saw", " with", " fox",
         " cattle", " happy", " day", " one"]
EOS = 0
V = len(WORDS)
_rng = np.random.default_rng(1234)
W1 = (_rng.normal(size=(V, V)) * 2.0).astype(np.float32)
W2 = (_rng.normal(size=(V, V)) * 0.7).astype(np.float32)


def model_logits(seq):
    """The model: logits from the last two tokens; the end grows likelier with length."""
    x = W1[seq[-1]] + (W2[seq[-2]] if len(seq) > 1 else 0)
    x = x.copy()
    x[EOS] = -4.0 + 0.04 * len(seq)
    return x


def greedy_tokenize(text):
    out, i = [], 0
    while i < len(text):
        best = max((t for t in range(V) if WORDS[t] and text.startswith(WORDS[t], i)),
                   key=lambda t: len(WORDS[t]), default=None)
        if best is None:
            raise ValueError(f"cannot spell {text[i:]!r}")
        out.append(best)
        i += len(WORDS[best])
    return out


class NumpyModel(BaseProvider):
    """The original's provider interface; it checks the C loop's promise about the cache:
    generate() sees a sequence that extends what it saw, once remove_latest_cache(nr)
    has dropped exactly the forgotten positions."""

    def __init__(self):
        self.cache = []
        self.evaluated = 0
        self.removed = 0

    def encode(self, text, add_special_tokens=True):
        return greedy_tokenize(text)

    def decode(self, tokens):
        return "".join(WORDS[t] for t in tokens)

    def generate(self, input_ids):
        assert input_ids[:len(self.cache)] == self.cache, "the sequence does not extend the cache"
        self.evaluated += len(input_ids) - len(self.cache)
        self.cache = list(input_ids)
        return model_logits(input_ids)

    def get_eos_token_id(self):
        return EOS

    def remove_latest_cache(self, nr):
        assert 0 < nr <= len(self.cache)
        self.removed += nr
        self.cache = self.cache[:-nr]

    def reset(self):
        self.cache = []

    def get_vocab_size(self):
        return V


class Scripted:
    """The same model as a C scripted provider (the logits from a ctypes callback)."""

    def __init__(self):
        def logits(user, seq, n, out, nv):
            vals = model_logits(seq[:n])
            ctypes.memmove(out, vals.ctypes.data, 4 * nv)
        self._cb = C.SCRIPTED_LOGITS_FN(logits)
        self._words = (ctypes.c_char_p * V)(*[w.encode() for w in WORDS])
        p = C.bt_scripted_default_params()
        p.n_vocab, p.tokens, p.eos, p.logits = V, self._words, EOS, self._cb
        self._ptr = C.bt_scripted_provider_init(ctypes.byref(p))
        assert self._ptr

    def _c_provider(self):
        return self._ptr

    def decode(self, tokens):
        return "".join(WORDS[t] for t in tokens)

    def token_bytes(self, t):
        return WORDS[t].encode()


PROMPT = "The cat"


def run(provider, strategy, seeds, **kw):
    sampler = BacktrackSampler(provider, strategy)
    out = []
    for s in seeds:
        out.append(list(sampler.generate(PROMPT, max_new_tokens=60, seed=s, **kw)))
    return out, sampler


def text(tokens):
    return "".join(WORDS[t] for t in tokens)


def test_python_provider_plain_equals_the_c_provider():
    m = NumpyModel()
    py, sampler = run(m, None, range(10))
    c, _ = run(Scripted(), None, range(10))
    assert py == c
    assert all(len(t) > 0 for t in py)
    assert sampler.stats.n_evaluated > 0 and m.evaluated > 0


BANS = [" cat on", " with the", " ran ball"]  # each spans two tokens


def test_python_provider_drives_antislop():
    plain, _ = run(NumpyModel(), None, range(20))
    for phrase in BANS:  # the model says them without the ban
        assert sum(phrase in text(t) for t in plain) >= 5
    m = NumpyModel()
    strat = AntiSlopStrategy(m, BANS, with_variants=False)
    got, sampler = run(m, strat, range(20))
    matches = 0
    for toks in got:
        assert not any(phrase in text(toks) for phrase in BANS)
        matches += strat.stats.matches
    assert matches > 0 and m.removed > 0  # it rewound positions the model had seen
    c, _ = run(Scripted(), AntiSlopStrategy(None, BANS, with_variants=False), range(20))
    assert got == c


def test_python_provider_drives_replace():
    m = NumpyModel()
    strat = ReplaceStrategy(m, find=" with the", replace=" dog and a fox")
    got, sampler = run(m, strat, range(20))
    total = 0
    for toks in got:
        t = text(toks)
        assert " with the" not in t
        total += strat.replacements
    assert total > 0 and m.removed > 0 and any(" dog and a fox" in text(t) for t in got)
    c, _ = run(Scripted(), ReplaceStrategy(None, find=" with the", replace=" dog and a fox"),
               range(20))
    assert got == c


def test_python_provider_with_a_python_strategy_in_a_chain():
    m = NumpyModel()
    got, _ = run(m, ChainStrategy([BanWord(m, " the"), AntiSlopStrategy(m, [" red"])]), range(10))
    for toks in got:
        assert " the" not in text(toks) and " red" not in text(toks)
    s = Scripted()
    c, _ = run(s, ChainStrategy([BanWord(s, " the"), AntiSlopStrategy(s, [" red"])]), range(10))
    assert got == c


def test_logits_as_lists_and_2d_arrays():
    class ListModel(NumpyModel):
        def generate(self, input_ids):
            return model_logits(input_ids).tolist()

    class TwoD(NumpyModel):
        def generate(self, input_ids):
            return model_logits(input_ids)[None, :]   # the original's (1, n_vocab) tensors

    want, _ = run(NumpyModel(), None, range(3))
    assert run(ListModel(), None, range(3))[0] == want
    assert run(TwoD(), None, range(3))[0] == want


def test_a_provider_must_say_its_vocabulary_size():
    class NoSize(NumpyModel):
        get_vocab_size = BaseProvider.get_vocab_size

    with pytest.raises(TypeError, match="vocabulary size"):
        BacktrackSampler(NoSize(), None)

    class Wrong(NumpyModel):
        def generate(self, input_ids):
            return np.zeros(V + 1, dtype=np.float32)

    with pytest.raises(ValueError, match=f"{V + 1} values; the vocabulary has {V}"):
        list(BacktrackSampler(Wrong(), None).generate(PROMPT, max_new_tokens=3))
