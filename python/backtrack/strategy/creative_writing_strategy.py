"""CreativeWritingStrategy: less common words, without gibberish."""
import ctypes

from .. import _capi as C
from ..errors import check_ptr
from ._c_strategy import CStrategy


class CreativeWritingStrategy(CStrategy):
    """The original's CreativeWritingStrategy, in C: bans the most probable token (unless it
    ends the text); where the distribution is flat (top_k_threshold_flat or more tokens
    needed to reach top_p_flat) it rewinds and takes the argmax instead; the
    end-of-generation probability is multiplied by eos_penalty."""

    def __init__(self, provider=None, top_p_flat=0.65, top_k_threshold_flat=9, eos_penalty=0.8):
        self.provider = provider
        p = C.bt_creative_writing_default_params()
        p.top_p_flat = top_p_flat
        p.top_k_threshold_flat = top_k_threshold_flat
        p.eos_penalty = eos_penalty
        self._ptr = check_ptr(C.bt_creative_writing_strategy_init(ctypes.byref(p)),
                              "CreativeWritingStrategy")
