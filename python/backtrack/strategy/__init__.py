"""Strategies: the built-in ones (run in C) and BaseStrategy for your own."""
from .adaptive_temperature_strategy import AdaptiveTemperatureStrategy
from .antislop_strategy import AntiSlopStats, AntiSlopStrategy
from .base_strategy import BaseStrategy
from .chain_strategy import ChainStrategy
from .creative_writing_strategy import CreativeWritingStrategy
from .debug_strategy import DebugStrategy
from .human_guidance_strategy import GuidanceMenu, HumanGuidanceStrategy
from .noop_strategy import NoopStrategy
from .replace_strategy import ReplaceStrategy

__all__ = ["AdaptiveTemperatureStrategy", "AntiSlopStats", "AntiSlopStrategy", "BaseStrategy",
           "ChainStrategy", "CreativeWritingStrategy", "DebugStrategy", "GuidanceMenu",
           "HumanGuidanceStrategy", "NoopStrategy", "ReplaceStrategy"]
