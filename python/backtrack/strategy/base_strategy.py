"""BaseStrategy: the original's abstract base class, for strategies written in Python."""
import sys


class BaseStrategy:
    """Subclass it and implement any of these methods; the C loop calls them each step,
    in this order: on_logits, (filters, softmax) on_probs, (draw) on_next_token,
    backtrack, on_rewind (after any rewind), get_keep_index; reset after each generation.

    A method you do not implement costs nothing (its slot stays empty in the C vtable:
    without on_logits, for instance, the logits are never copied). You need not call
    BaseStrategy.__init__.

    Arrays: `logits` and `probs` are 1-D float32 arrays of the vocabulary's size (numpy
    arrays when numpy is installed, ctypes float arrays otherwise) over the library's own
    buffers: change them in place, or return a new array of the same size. They are valid
    only during the call (copy what you keep). `continuation_tokens` is a fresh list of the
    token ids generated so far (the prompt excluded).
    """

    def on_logits(self, logits, continuation_tokens):
        """The logits of the next token (temperature already applied). Return them
        (changed in place, or a new array); -inf bans a token here."""
        return logits

    def on_probs(self, probs, continuation_tokens):
        """The probabilities after the filters (min_p, top_k, top_p) and softmax: 0 for
        filtered tokens. Return them, changed as you like (any token may get a probability;
        they need not sum to 1: the draw is proportional)."""
        return probs

    def on_next_token(self, continuation_tokens, probs):
        """The token just drawn is continuation_tokens[-1]; `probs` is what it was drawn
        from."""

    def backtrack(self, continuation_tokens):
        """Return the continuation to keep: a shorter list undoes the tokens past its
        length (only tokens not yet released can be undone)."""
        return continuation_tokens

    def get_keep_index(self):
        """As in the original, the tokens before get_keep_index() - 1 are final and are
        released to the caller. Not implemented: every token is final at once."""
        return sys.maxsize

    def reset(self):
        """Called after every generation: forget per-generation state."""

    # Beyond the original: on_rewind(self, continuation_tokens, n) is called after every
    # rewind (whoever asked for it, in a chain), with the shortened continuation.
