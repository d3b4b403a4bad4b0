"""ReplaceStrategy: find and replace while generating."""
import ctypes

from .. import _capi as C
from ..errors import check_ptr
from ._c_strategy import CStrategy, int32_or_unlimited, strs


class ReplaceStrategy(CStrategy):
    """The original's ReplaceStrategy, in C: when one of the `find` strings appears in the
    text, rewind to the token holding its first byte and force the tokens of `replace`.

    find: a string or a list of strings; replace: the replacement text.
    max_replacements, max_new_tokens_for_replace: limits (None or sys.maxsize: none);
    skip_tokens: matches starting in the first N tokens are left alone; max_prob (None:
    1.0, the original's default): replace only where the model's probability for the first
    replaced token was <= max_prob. The arguments are the original's, in its order.
    """

    def __init__(self, provider=None, find=None, replace=None, max_replacements=None,
                 max_new_tokens_for_replace=None, skip_tokens=0, max_prob=None):
        self.provider = provider
        finds = [s.encode("utf-8") for s in strs(find, "find")]
        if replace is None:
            replace = ""
        rep = replace.encode("utf-8") if isinstance(replace, str) else bytes(replace)
        arr = (ctypes.c_char_p * max(1, len(finds)))(*finds)
        p = C.bt_replace_default_params()
        p.find = arr if finds else None
        p.n_find = len(finds)
        p.replace = rep
        p.max_replacements = int32_or_unlimited(max_replacements, "max_replacements")
        p.max_new_tokens_for_replace = int32_or_unlimited(max_new_tokens_for_replace,
                                                          "max_new_tokens_for_replace")
        p.skip_tokens = skip_tokens
        if max_prob is not None:
            p.max_prob = max_prob
        self._ptr = check_ptr(C.bt_replace_strategy_init(ctypes.byref(p)), "ReplaceStrategy")

    @property
    def replacements(self):
        """Replacements made in the last (or current) generation."""
        if not self._ptr:
            raise ValueError("ReplaceStrategy: " + (self._dead or "no C object"))
        return C.bt_replace_count(self._ptr)

    @property
    def stats(self):
        return {"replacements": self.replacements}
