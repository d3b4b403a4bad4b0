"""backtrack: sampling strategies that can undo the tokens they just generated.

The original backtrack_sampler's API (BacktrackSampler, the providers, the strategies) over
libbacktrack, the C library: the generation loop, the filters, the phrase matcher and the
llama.cpp provider run in C; strategies and providers can still be written in Python.

    from backtrack import BacktrackSampler, AntiSlopStrategy
    from backtrack.provider.llamacpp_provider import LlamacppProvider
"""
from . import _bridge
from ._capi import lib_path as library_path
from .backtrack_sampler import BacktrackSampler, Stats
from .errors import BacktrackError
from .provider import BaseProvider, LlamacppProvider
from .strategy import (AdaptiveTemperatureStrategy, AntiSlopStats, AntiSlopStrategy,
                       BaseStrategy, ChainStrategy, CreativeWritingStrategy, DebugStrategy,
                       GuidanceMenu, HumanGuidanceStrategy, NoopStrategy, ReplaceStrategy)

__version__ = "0.2.0"

_bridge.install_log()


def _quiet_at_exit():
    # no library log line may reach Python once the interpreter is shutting down
    try:
        _bridge.uninstall_log()
    except Exception:
        pass


import atexit as _atexit  # noqa: E402

_atexit.register(_quiet_at_exit)

__all__ = ["AdaptiveTemperatureStrategy", "AntiSlopStats", "AntiSlopStrategy", "BacktrackError",
           "BacktrackSampler", "BaseProvider", "BaseStrategy", "ChainStrategy",
           "CreativeWritingStrategy", "DebugStrategy", "GuidanceMenu", "HumanGuidanceStrategy",
           "LlamacppProvider", "NoopStrategy", "ReplaceStrategy", "Stats", "library_path"]
