"""Providers: llama.cpp (in C) and BaseProvider for models run by Python."""
from .base_provider import BaseProvider
from .llamacpp_provider import LlamacppProvider

__all__ = ["BaseProvider", "LlamacppProvider"]
