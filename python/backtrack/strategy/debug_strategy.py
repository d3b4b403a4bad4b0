"""DebugStrategy: shows the two most probable tokens before each draw."""
import ctypes
import sys

from .. import _capi as C
from .. import _bridge
from ..errors import check_ptr
from ._c_strategy import CStrategy


class DebugStrategy(CStrategy):
    """The original's DebugStrategy, in C: before each draw, one line with the two most
    probable candidates and their probabilities. Never rewinds.

    emit: a callable receiving each line (str); default: print it on stderr.
    """

    def __init__(self, provider=None, *, emit=None):
        self.provider = provider
        self.emit = emit if emit is not None else (lambda line: print(line, file=sys.stderr))

        def cb(user, line):
            try:
                self_emit(line.decode("utf-8", "replace"))
            except BaseException as e:
                _bridge._fail(e)

        self_emit = self.emit
        self._cb = C.EMIT_FN(cb)  # C calls it: it lives as long as the strategy
        p = C.bt_debug_default_params()
        p.emit = self._cb
        self._ptr = check_ptr(C.bt_debug_strategy_init(ctypes.byref(p)), "DebugStrategy")
