"""AdaptiveTemperatureStrategy: temperature from the entropy of the distribution."""
import ctypes

from .. import _capi as C
from ..errors import check_ptr
from ._c_strategy import CStrategy


class AdaptiveTemperatureStrategy(CStrategy):
    """The original's AdaptiveTemperatureStrategy, in C: logits scaled by beta(H), H the
    entropy of the distribution, beta = c0 H^4 + c1 H^3 + c2 H^2 + c3 H + c4 (1 if
    H <= 0.5, at least 1 otherwise).

    poly_coeffs: the five coefficients (a list, numpy array or torch tensor); default
    [-0.037, 0.481, -2.3, 4.917, -1.791]; or c0..c4 one by one (the CLI's --c0..--c4). A
    provider may be given first (it is not needed).
    """

    def __init__(self, poly_coeffs=None, *, provider=None, c0=None, c1=None, c2=None, c3=None,
                 c4=None):
        if poly_coeffs is not None and hasattr(poly_coeffs, "encode") and \
                hasattr(poly_coeffs, "decode"):
            provider, poly_coeffs = poly_coeffs, None  # AdaptiveTemperatureStrategy(provider)
        self.provider = provider
        p = C.bt_adaptive_temperature_default_params()
        if poly_coeffs is not None:
            if hasattr(poly_coeffs, "tolist"):
                poly_coeffs = poly_coeffs.tolist()
            vals = [float(x) for x in poly_coeffs]
            if len(vals) != 5:
                raise ValueError(f"poly_coeffs needs 5 coefficients, got {len(vals)}")
            for i, x in enumerate(vals):
                p.coeffs[i] = x
        for i, c in enumerate((c0, c1, c2, c3, c4)):  # the catalog's names, one by one
            if c is not None:
                p.coeffs[i] = float(c)
        self.poly_coeffs = list(p.coeffs)
        self._ptr = check_ptr(C.bt_adaptive_temperature_strategy_init(ctypes.byref(p)),
                              "AdaptiveTemperatureStrategy")
