"""Settings from the environment (prefix AGENTLOG_), read once at an entry point and passed explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTLOG_", extra="ignore")

    database_url: str | None = Field(default=None, description="PostgreSQL URL; unset = embedded server")
    home: Path = Field(default=Path(".agentlog"), description="state directory (embedded server's data)")
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    poll_interval_s: float = Field(default=1.0, gt=0, description="subscribers' fallback poll")
    notify_interval_s: float = Field(default=0.002, ge=0, description="post-commit NOTIFY coalescing window")
    handler_batch_size: int = Field(default=500, ge=1, le=100_000)
    handler_lock_retry_s: float = Field(default=1.0, gt=0, description="standby's retry of the handler lock")
    lag_log_interval_s: float = Field(default=10.0, gt=0)
