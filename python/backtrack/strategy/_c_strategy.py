"""CStrategy: the base of the strategies that run in the C library."""
from .. import _capi as C

_PY_METHODS = ("on_logits", "on_probs", "on_next_token", "backtrack", "get_keep_index",
               "on_rewind")


class CStrategy:
    """A strategy implemented in libbacktrack. It owns its bt_strategy until a
    ChainStrategy takes it over."""

    _ptr = None
    _chain = None   # the ChainStrategy that owns the C object now
    _dead = None    # why the C object is gone

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in _PY_METHODS:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__}.{name}: {cls.__mro__[1].__name__} runs in C and never "
                    "calls Python methods; write a BaseStrategy subclass and chain the two "
                    "with ChainStrategy([...])")

    def _c_ptr(self):
        """The bt_strategy * for a sampler (borrowed)."""
        if self._dead:
            raise ValueError(f"{type(self).__name__}: {self._dead}")
        if self._chain is not None:
            raise ValueError(f"this {type(self).__name__} belongs to a ChainStrategy: use the "
                             "chain, or create another one")
        return self._ptr

    def _take(self, chain):
        """Hand the C object over to `chain` (bt_chain_strategy_init owns it from now)."""
        ptr = self._c_ptr()
        self._chain = chain
        return ptr

    def __del__(self):
        ptr, self._ptr = self._ptr, None
        if ptr and self._chain is None and not self._dead:
            try:
                C.bt_strategy_free(ptr)
            except Exception:  # interpreter shutdown
                pass


def strs(items, what):
    """A list of str from one str or an iterable of them."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)):
        items = [items]
    out = []
    for s in items:
        if isinstance(s, bytes):
            s = s.decode("utf-8")
        if not isinstance(s, str):
            raise TypeError(f"{what}: expected strings, got {type(s).__name__}")
        out.append(s)
    return out


def int32_or_unlimited(v, what):
    """None or anything >= 2**31 - 1 (the original's sys.maxsize) means no limit: -1."""
    if v is None or v >= 2**31 - 1:
        return -1
    if v < 0:
        raise ValueError(f"{what} must be >= 0")
    return int(v)
