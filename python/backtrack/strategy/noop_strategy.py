"""NoopStrategy: plain sampling."""
from .. import _capi as C
from ..errors import check_ptr
from ._c_strategy import CStrategy


class NoopStrategy(CStrategy):
    """Releases every token at once and never rewinds (the same as no strategy)."""

    def __init__(self, provider=None):
        self.provider = provider
        self._ptr = check_ptr(C.bt_noop_strategy_init(), "NoopStrategy")
