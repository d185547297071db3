"""Finding places in text: the `LocationExtractor` port and its providers (an offline gazetteer, the default, and
any OpenAI-compatible chat-completions endpoint). Callers build one with `make_extractor` and use only the port.

Providers are imported on first use: a worker on the gazetteer then never loads httpx (about 20 MB of RSS).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentlog.llm.port import Extraction, LLMProviderError, LocationExtractor, Place

if TYPE_CHECKING:
    from agentlog.llm.gazetteer import GazetteerExtractor
    from agentlog.llm.openai_compatible import OpenAICompatibleExtractor
    from agentlog.llm.providers import PROVIDERS, make_extractor

_LAZY = {
    "GazetteerExtractor": "agentlog.llm.gazetteer",
    "OpenAICompatibleExtractor": "agentlog.llm.openai_compatible",
    "PROVIDERS": "agentlog.llm.providers",
    "make_extractor": "agentlog.llm.providers",
}

__all__ = [
    "PROVIDERS",
    "Extraction",
    "GazetteerExtractor",
    "LLMProviderError",
    "LocationExtractor",
    "OpenAICompatibleExtractor",
    "Place",
    "make_extractor",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
