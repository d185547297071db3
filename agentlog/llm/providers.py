"""Choosing a provider from configuration, so that callers depend on the port and never on a provider module."""

from __future__ import annotations

from pathlib import Path

from agentlog.llm.gazetteer import MODEL as GAZETTEER_MODEL
from agentlog.llm.gazetteer import GazetteerExtractor
from agentlog.llm.port import LocationExtractor

PROVIDERS = ("gazetteer", "openai")
OPENAI_COMPATIBLE = "openai-compatible"  # what an OpenAICompatibleExtractor reports as its `provider`: an alias
_ALIASES = {OPENAI_COMPATIBLE: "openai"}


def make_extractor(
    provider: str = "gazetteer",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    cache_dir: Path | None = None,
    timeout_s: float = 30,
) -> LocationExtractor:
    """A configured extractor. Settings that cannot apply are refused rather than ignored, except connection
    settings for the offline gazetteer, so that one configuration can switch provider by name alone."""
    name = provider.strip().lower()
    name = _ALIASES.get(name, name)
    if name == "gazetteer":
        if model not in (None, GAZETTEER_MODEL):
            raise ValueError(f"the gazetteer provider has one model, {GAZETTEER_MODEL!r}, not {model!r}")
        return GazetteerExtractor(cache_dir)
    if name == "openai":
        if not base_url or not model:
            raise ValueError("the openai provider needs base_url and model")
        from agentlog.llm.openai_compatible import OpenAICompatibleExtractor  # httpx only where it is used

        return OpenAICompatibleExtractor(base_url, api_key, model, timeout_s)
    allowed = ", ".join(repr(p) for p in PROVIDERS)
    raise ValueError(f"unknown LLM provider {provider!r}: use one of {allowed} ({OPENAI_COMPATIBLE!r} = 'openai')")
