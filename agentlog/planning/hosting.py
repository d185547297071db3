"""The planner runtime as configured (`Settings`): its provider, its profiles and the tokens it acts with."""

from __future__ import annotations

import os

from agentlog.config import Settings
from agentlog.eventstore import EventStore
from agentlog.llm.chat import DEFAULT_PROFILES, ChatProvider, Profile
from agentlog.planning.local_model import MODEL as LOCAL_MODEL
from agentlog.planning.local_model import LocalChatModel
from agentlog.planning.runtime import PlannerRuntime, RuntimeSettings
from agentlog.tokens import Keyring, issue

RUNTIME_ADMIN = "planner-runtime"
"""The name the runtime's own admin token carries (it registers executors and reserves their tokens)."""


def chat_provider(settings: Settings) -> tuple[ChatProvider, dict[str, Profile]]:
    """The configured provider and the models of its two profiles; a setting that cannot apply is an error."""
    if settings.planner_provider == "local":
        provider: ChatProvider = LocalChatModel(delay_s=settings.planner_local_delay_s)
        balanced = speed = LOCAL_MODEL
    else:
        if not settings.llm_base_url:
            raise ValueError("AGENTLOG_PLANNER_PROVIDER=openai needs AGENTLOG_LLM_BASE_URL")
        balanced_model = settings.planner_balanced_model or settings.llm_model
        if not balanced_model:
            raise ValueError("AGENTLOG_PLANNER_PROVIDER=openai needs AGENTLOG_PLANNER_BALANCED_MODEL or "
                             "AGENTLOG_LLM_MODEL")  # fmt: skip
        from agentlog.llm.openai_chat import OpenAICompatibleChat  # httpx streaming only where it is used

        provider = OpenAICompatibleChat(settings.llm_base_url, os.environ.get("AGENTLOG_LLM_API_KEY"))
        balanced, speed = balanced_model, settings.planner_speed_model or balanced_model
    temperatures = {"balanced": settings.planner_balanced_temperature, "speed": settings.planner_speed_temperature}
    profiles = {name: Profile(name, model, temperatures[name], DEFAULT_PROFILES[name][1])
                for name, model in (("balanced", balanced), ("speed", speed))}  # fmt: skip
    return provider, profiles


def planner_runtime(store: EventStore, settings: Settings, api_url: str, keys: Keyring) -> PlannerRuntime:
    provider, profiles = chat_provider(settings)
    ttl = settings.agent_token_ttl_s
    return PlannerRuntime(
        store,
        RuntimeSettings(api_url, profiles, max_sessions=settings.planner_max_sessions, token_renewal_s=ttl / 3),
        provider,
        token=lambda agent_id, read_only: issue(keys, "agent", agent_id, ttl_s=ttl, read_only=read_only),
        admin_token=lambda: issue(keys, "admin", RUNTIME_ADMIN, ttl_s=ttl),
    )
