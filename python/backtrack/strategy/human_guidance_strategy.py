"""HumanGuidanceStrategy: choose the next token yourself."""
import ctypes
from collections import namedtuple

from .. import _capi as C
from .. import _bridge
from ..errors import check_ptr
from ._c_strategy import CStrategy

GuidanceMenu = namedtuple("GuidanceMenu", "text tokens probs labels can_go_back")
GO_BACK = C.BT_GUIDE_GO_BACK
STOP = C.BT_GUIDE_STOP


class HumanGuidanceStrategy(CStrategy):
    """The original's HumanGuidanceStrategy, in C: before each pick whose top probability
    is below min_autopass, a menu of the top_k tokens; the choice's probability is
    multiplied by 10000, "Go back" removes the token just drawn and the one before.

    choose: None for the terminal menu (ncurses; stdin and stdout must be a terminal), or
    a callable receiving a GuidanceMenu(text, tokens, probs, labels, can_go_back) and
    returning an index into tokens, HumanGuidanceStrategy.GO_BACK or .STOP (stop asking
    for the rest of this generation).
    """

    GO_BACK = GO_BACK
    STOP = STOP

    def __init__(self, provider=None, top_k=3, min_autopass=1.0, *, choose=None):
        self.provider = provider
        self.choose = choose
        p = C.bt_human_guidance_default_params()
        p.top_k = top_k
        p.min_autopass = min_autopass
        if choose is not None:
            def cb(user, m):
                try:
                    mm = m.contents
                    n = mm.n
                    menu = GuidanceMenu(
                        ctypes.string_at(mm.text, mm.text_len).decode("utf-8", "replace")
                        if mm.text_len else "",
                        mm.tokens[:n], mm.probs[:n],
                        [(mm.labels[i] or b"").decode("utf-8", "replace") for i in range(n)],
                        bool(mm.can_go_back))
                    r = int(choose(menu))
                    if r not in (GO_BACK, STOP) and not 0 <= r < n:
                        raise ValueError(f"choose() returned {r}: not an index in [0, {n}), "
                                         "GO_BACK or STOP")
                    return r
                except BaseException as e:
                    _bridge._fail(e)
                    return STOP
            self._cb = C.GUIDANCE_FN(cb)
            p.choose = self._cb
        self._ptr = check_ptr(C.bt_human_guidance_strategy_init(ctypes.byref(p)),
                              "HumanGuidanceStrategy")
