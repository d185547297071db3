"""Settings from the environment (prefix AGENTLOG_), read once at an entry point and passed explicitly."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentlog.domains.timers.events import MAX_TIMER_DELAY_S

COMPONENTS = ("handlers", "projections", "agents", "api")
"""What `agentlog up` can host beside the log (always there: database, migrations, the order checks).
handlers: the installed plugin handlers; projections: the installed projections, rebuilt when their version
changes; agents: the document server, the deciders, the timer service and this manager's agent workers; api: the
HTTP API under /api/v1 (on the same port as the document server when both are hosted)."""


def parse_components(text: str) -> tuple[str, ...]:
    """`handlers,projections` as a tuple of known component names; anything else is a clear error."""
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [part for part in chosen if part not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown component {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}")
    return chosen


def _default_manager_id() -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", socket.gethostname().lower()).strip("-._")
    return (name or "manager")[:64]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTLOG_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL of the application role; unset = embedded server"
    )
    owner_database_url: str | None = Field(
        default=None, description="URL of the schema's owner, for migrations (default: database_url)"
    )
    reporting_database_url: str | None = Field(
        default=None, description="URL of the read-only reporting role (`agentlog db url --role reporting`)"
    )
    home: Path = Field(default=Path(".agentlog"), description="state directory (embedded server's data)")
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    poll_interval_s: float = Field(default=1.0, gt=0, description="subscribers' fallback poll")
    notify_interval_s: float = Field(default=0.002, ge=0, description="post-commit NOTIFY coalescing window")
    handler_batch_size: int = Field(default=500, ge=1, le=100_000)
    handler_lock_retry_s: float = Field(default=1.0, gt=0, description="standby's retry of the handler lock")
    lag_log_interval_s: float = Field(default=10.0, gt=0)
    barrier_warn_s: float = Field(
        default=60.0, gt=0, description="warn when a transaction has held the visibility barrier back this long"
    )
    components: str = Field(
        default=",".join(COMPONENTS),
        description=f"what `agentlog up` hosts beside the log, comma-separated: {', '.join(COMPONENTS)}",
    )

    @field_validator("components")
    @classmethod
    def _known_components(cls, value: str) -> str:
        return ",".join(parse_components(value))

    def hosts(self, component: str) -> bool:
        """Whether `agentlog up` hosts `component` (one of `COMPONENTS`)."""
        return component in self.components.split(",")

    # The document server and the agents (`agentlog up`).
    host: str = Field(default="127.0.0.1", description="address the document server listens on")
    port: int = Field(default=8787, ge=0, le=65535, description="document server port (0 = any free port)")
    manager_id: str = Field(
        default_factory=_default_manager_id, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="this manager's id; unique among the managers sharing a database",
    )
    max_agents: int = Field(default=10, ge=0, le=10_000, description="agents this manager runs at once")
    warm_worker: bool = Field(
        default=True, description="keep one worker started and waiting, so a new agent only has to join"
    )
    idle_grace_s: float = Field(
        default=30.0, ge=0, le=MAX_TIMER_DELAY_S, description="wait after the last person left before idle"
    )
    ping_s: float = Field(default=30.0, gt=0, description="worker health check interval")
    metrics_s: float = Field(default=30.0, gt=0, description="worker metrics interval")
    stats_log_s: float = Field(default=60.0, gt=0, description="system stats log interval")
    max_restarts: int = Field(
        default=5, ge=0, le=1_000, description="restarts in a row before an agent is marked failed"
    )
    restart_backoff_s: float = Field(
        default=1.0, gt=0, le=MAX_TIMER_DELAY_S, description="first restart delay (doubles, at most 30 s)"
    )
    proven_run_s: float = Field(
        default=300.0,
        gt=0,
        le=MAX_TIMER_DELAY_S,
        description="a restarted agent joined this long ends its document's row of failures (more than a hang "
        "takes to notice: two missed pongs)",
    )
    agent_start_deadline_s: float = Field(
        default=60.0, gt=0, le=MAX_TIMER_DELAY_S, description="an agent not joined by then is abandoned"
    )
    agent_stop_deadline_s: float = Field(
        default=30.0, gt=0, le=MAX_TIMER_DELAY_S, description="an agent not exited by then is abandoned"
    )
    document_layout: Literal["tiptap", "text"] = Field(
        default="tiptap", description="tiptap: XmlFragment 'default' of paragraphs; text: a Y.Text named 'text'"
    )
    llm_provider: Literal["gazetteer", "openai"] = "gazetteer"
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. http://host/v1")
    llm_model: str | None = None
    planner_provider: Literal["local", "openai"] = Field(
        default="local", description="the planner's models: local (offline, deterministic) or an OpenAI-compatible "
        "endpoint (AGENTLOG_LLM_BASE_URL, AGENTLOG_LLM_API_KEY)",
    )  # fmt: skip
    planner_balanced_model: str | None = Field(
        default=None, description="the model of the `balanced` profile (planners); default AGENTLOG_LLM_MODEL"
    )
    planner_speed_model: str | None = Field(
        default=None, description="the model of the `speed` profile (executors); default the balanced one"
    )
    planner_balanced_temperature: float = Field(default=0.7, ge=0, le=2)
    planner_speed_temperature: float = Field(default=0.3, ge=0, le=2)
    planner_max_sessions: int = Field(default=8, ge=1, le=1_000, description="planner sessions driven at once")
    planner_local_delay_s: float = Field(
        default=0.0, ge=0, le=60, description="how long the local model takes per call (a hosted model's latency, "
        "for demonstrations and tests)",
    )  # fmt: skip
    max_concurrent_tasks: int = Field(
        default=100, ge=1, le=1_000_000, description="task attempts assigned or running at once, in all"
    )
    tasks_per_agent: int = Field(
        default=1, ge=1, le=10_000,
        description="task attempts one agent holds at once, unless its metadata says max_concurrent_tasks",
    )
    status_idle_after_s: float = Field(
        default=600.0, gt=0, le=MAX_TIMER_DELAY_S, description="a registered agent silent this long is idle"
    )
    status_offline_after_s: float = Field(
        default=3600.0, gt=0, le=MAX_TIMER_DELAY_S, description="... and offline after this long"
    )
    status_check_every_s: float = Field(
        default=60.0, gt=0, le=MAX_TIMER_DELAY_S, description="how often an agent heard from is checked (how late "
        "idle and offline are inferred, at most)",
    )  # fmt: skip
    program_handover_s: float = Field(
        default=30.0, gt=0, le=3_600, description="how long the program runner, cut off from the database, keeps its "
        "agent programs running before it stops them (a runner taking over elsewhere starts them after that)",
    )  # fmt: skip
    token_ttl_s: float = Field(default=7 * 24 * 3600, gt=0, description="lifetime of `agentlog token` tokens")
    agent_token_ttl_s: float = Field(
        default=900.0, ge=60, description="lifetime of an agent's token; its supervisor renews it at a third of that"
    )

    # What one client may ask of the API (per token).
    api_requests_per_s: float = Field(default=50.0, gt=0, description="API requests per second per token, sustained")
    api_burst: int = Field(default=200, ge=1, description="... and at once (then 429 with Retry-After)")
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="largest API request body (413)")

    # What one client may ask of a document server.
    document_max_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="largest WebSocket message a document socket may send"
    )
    document_messages_per_s: float = Field(
        default=200.0, gt=0, description="updates and awareness messages per second per socket, sustained"
    )
    document_burst: int = Field(default=1_000, ge=1, description="... and at once")
    document_max_pending_updates: int = Field(
        default=100, ge=1, description="updates with missing dependencies one socket may have waiting"
    )
    document_max_awareness_ids: int = Field(
        default=8, ge=1, description="awareness client ids one socket may announce (a Y.js client has one)"
    )
    document_max_sockets_per_person: int = Field(default=20, ge=1, description="sockets one person may have open")
    document_max_rooms: int = Field(default=1_000, ge=1, description="documents one server has open at once")
    document_outbox_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="bytes waiting to be sent to one socket before it is closed"
    )
    edit_activity_s: float = Field(
        default=60.0, gt=0, description="at most one DocumentEdited per document per this many seconds"
    )

