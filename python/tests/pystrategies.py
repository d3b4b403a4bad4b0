"""Strategies written in Python for the tests, in the original's style (no call to
BaseStrategy.__init__, the original's method signatures), working with numpy arrays or
with the ctypes arrays the package hands over when numpy is absent."""
from backtrack import BaseStrategy

NEG_INF = float("-inf")


class BanWord(BaseStrategy):
    """Never lets `word` into the text: when it appears, rewind to the token holding its
    first byte and ban that token at that position (the original AntiSlop's rule, in a few
    lines). Holds back `hold` tokens, the room to rewind."""

    def __init__(self, provider, word, hold=12):
        self.provider = provider
        self.word = word.encode()
        self.hold = hold
        self.rewinds = 0
        self.reset()

    def reset(self):
        self.bans = {}       # position -> tokens banned there
        self.keep = 0

    def on_logits(self, logits, continuation_tokens):
        for t in self.bans.get(len(continuation_tokens), ()):
            logits[t] = NEG_INF
        return logits

    def on_next_token(self, continuation_tokens, probs):
        self.keep = max(0, len(continuation_tokens) - self.hold)

    def backtrack(self, continuation_tokens):
        pieces = [self.provider.token_bytes(t) for t in continuation_tokens]
        at = b"".join(pieces).find(self.word)
        if at < 0:
            return continuation_tokens
        pos = 0
        for k, piece in enumerate(pieces):
            pos += len(piece)
            if pos > at:
                break
        self.bans.setdefault(k, set()).add(continuation_tokens[k])
        self.rewinds += 1
        # forget bans past the new end: those positions will be drawn afresh
        self.bans = {p: b for p, b in self.bans.items() if p <= k}
        return continuation_tokens[:k]

    def get_keep_index(self):
        return self.keep


class ForceToken(BaseStrategy):
    """on_probs: all the probability on one token, even one the filters dropped."""

    def __init__(self, token):
        self.token = token
        self.calls = 0

    def on_probs(self, probs, continuation_tokens):
        self.calls += 1
        for i in range(len(probs)):
            probs[i] = 0.0
        probs[self.token] = 1.0
        return probs


class ForceTokenNumpy(ForceToken):
    def on_probs(self, probs, continuation_tokens):
        self.calls += 1
        out = probs * 0      # a new array: the package copies it back
        out[self.token] = 1.0
        return out


class OffsetLogits(BaseStrategy):
    """on_logits returning a NEW sequence (not the buffer): a strong bias for `token`."""

    def __init__(self, token, bias=100.0):
        self.token, self.bias = token, bias

    def on_logits(self, logits, continuation_tokens):
        out = list(logits)
        out[self.token] += self.bias
        return out


class UndoAt(BaseStrategy):
    """The original DebugStrategy's keep index (len(continuation) after each token); at
    step `at` it asks to undo `n` tokens once."""

    def __init__(self, at, n):
        self.at, self.n = at, n
        self.done = False
        self.idx = 0
        self.resets = 0
        self.rewound = []

    def reset(self):
        self.idx = 0
        self.done = False
        self.resets += 1

    def on_next_token(self, continuation_tokens, probs):
        self.idx = len(continuation_tokens)

    def backtrack(self, continuation_tokens):
        if not self.done and len(continuation_tokens) == self.at:
            self.done = True
            for _ in range(self.n):
                continuation_tokens.pop()   # in place, as the original's strategies do
        return continuation_tokens

    def on_rewind(self, continuation_tokens, n):
        self.rewound.append((len(continuation_tokens), n))

    def get_keep_index(self):
        return self.idx


class DuckTyped:
    """Not a BaseStrategy subclass: every method of the original's abstract class."""

    def __init__(self):
        self.seen = 0

    def get_keep_index(self):
        return 10**9

    def on_logits(self, logits, continuation_tokens):
        self.seen += 1
        return logits

    def on_probs(self, probs, continuation_tokens):
        return probs

    def on_next_token(self, continuation_tokens, probs):
        pass

    def backtrack(self, continuation_tokens):
        return continuation_tokens

    def reset(self):
        pass
