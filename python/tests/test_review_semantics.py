"""Review (issue 12): the original's calling conventions: max_new_tokens=0, ReplaceStrategy's
positional max_prob, backtrack() popping the list in place, encode(text,
add_special_tokens=...) by keyword."""
import pytest
from test_python_provider import PROMPT as MPROMPT
from test_python_provider import NumpyModel

from backtrack import BacktrackSampler, BaseStrategy, ReplaceStrategy

PROMPT = "Once upon a time"

def test_max_new_tokens_zero_yields_nothing(provider):
    """The original stops before the first token when max_new_tokens is 0 (the library
    takes 0 as no limit: it ran to the end of the context)."""
    s = BacktrackSampler(provider)
    assert list(s.generate(PROMPT, max_new_tokens=0, seed=1)) == []
    assert list(s.generate_text(PROMPT, max_new_tokens=0, seed=1)) == []
    assert s.stats.n_released == 0 and s.stats.stop_reason == "max_new_tokens"
    # None is the original's "no limit"
    assert len(list(s.generate(PROMPT, max_new_tokens=None, max_length=40, seed=1))) > 10


def test_replace_takes_max_prob_positionally(provider):
    """The original's signature: ReplaceStrategy(provider, find, replace, max_replacements,
    max_new_tokens_for_replace, skip_tokens, max_prob)."""
    r = ReplaceStrategy(provider, ["x"], "y", 3, 100, 0, 0.5)
    assert r.replacements == 0


class PopInPlace(BaseStrategy):
    """Pops tokens off the list it is given and returns nothing (the original's
    ChainStrategy ignores what backtrack returns and reads the list it passed)."""

    def __init__(self):
        self.done = False
        self.rewound = []

    def backtrack(self, continuation_tokens):
        if len(continuation_tokens) == 6 and not self.done:
            self.done = True
            continuation_tokens.pop()
            continuation_tokens.pop()

    def on_rewind(self, continuation_tokens, n):
        self.rewound.append(n)

    def get_keep_index(self):
        return 0  # everything held back until the end: any token can be undone

    def reset(self):
        self.done = False


def test_backtrack_that_pops_in_place_and_returns_none_rewinds(provider):
    st = PopInPlace()
    s = BacktrackSampler(provider, st)
    list(s.generate(PROMPT, max_new_tokens=10, seed=1))
    assert s.stats.n_rewinds == 1 and s.stats.n_discarded == 2 and st.rewound == [2]


def test_backtrack_returning_a_longer_list_is_an_error(provider):
    class Grow(BaseStrategy):
        def backtrack(self, continuation_tokens):
            return continuation_tokens + [1]

    with pytest.raises(ValueError, match="backtrack"):
        list(BacktrackSampler(provider, Grow()).generate(PROMPT, max_new_tokens=5, seed=1))


class KeywordEncode(NumpyModel):
    """encode's flag taken by keyword only: the original calls
    provider.encode(prompt, add_special_tokens=True)."""

    def encode(self, text, *, add_special_tokens=True):
        self.flags = getattr(self, "flags", []) + [add_special_tokens]
        return super().encode(text, add_special_tokens)


class KwargsEncode(NumpyModel):
    def encode(self, text, **kw):
        self.kw = kw
        return super().encode(text)


def test_provider_encode_gets_add_special_tokens_by_keyword():
    m = KeywordEncode()
    assert len(list(BacktrackSampler(m).generate(MPROMPT, max_new_tokens=5, seed=1))) == 5
    assert m.flags == [True]
    m = KwargsEncode()
    list(BacktrackSampler(m).generate(MPROMPT, max_new_tokens=5, seed=1, add_special=False))
    assert m.kw == {"add_special_tokens": False}
