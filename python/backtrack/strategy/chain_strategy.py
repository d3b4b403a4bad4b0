"""ChainStrategy: several strategies as one, C and Python alike."""
import ctypes

from .. import _capi as C
from .. import _bridge
from ..errors import BacktrackError
from ._c_strategy import CStrategy
from .base_strategy import BaseStrategy


class ChainStrategy(CStrategy):
    """The original's ChainStrategy, run by the C chain: strategies in list order; a token
    is final only when every strategy agrees; when several want to rewind at the same
    token only the first counts; every member hears of a rewind (on_rewind).

    Members may be the built-in (C) strategies and your BaseStrategy subclasses, mixed.
    The chain takes the built-in members over: use the chain from now on (their stats
    stay readable).
    """

    def __init__(self, strategies):
        strategies = list(strategies)
        if not strategies:
            raise ValueError("ChainStrategy needs at least one strategy")
        for s in strategies:  # check everything before taking anything
            if isinstance(s, CStrategy):
                s._c_ptr()
        self.strategies = strategies
        ptrs = []
        try:
            for s in strategies:
                if isinstance(s, CStrategy):
                    ptrs.append(s._take(self))
                else:
                    ptrs.append(_bridge.strategy_handle(s, BaseStrategy))
        except BaseException:
            for s, p in zip(strategies, ptrs):  # give back what was taken
                if isinstance(s, CStrategy):
                    s._chain = None
                else:
                    C.bt_strategy_free(p)
            raise
        arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
        ptr = C.bt_chain_strategy_init(arr, len(ptrs))
        if not ptr:  # the members are freed by now
            for s in strategies:
                if isinstance(s, CStrategy):
                    s._chain = None
                    s._dead = "freed by a ChainStrategy that failed to build"
            raise BacktrackError(C.last_error() or "ChainStrategy failed")
        self._ptr = ptr
