"""Pure pieces of the command line: exit codes and the tail line format."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import typer

from agentlog.cli.common import ExitCode, exit_code_for
from agentlog.cli.log_commands import format_event
from agentlog.cli.remote import api_url
from agentlog.eventstore import (
    DatabaseUnavailableError,
    EventIdConflictError,
    InvalidStreamIdError,
    RecordedEvent,
    UnknownEventTypeError,
    WrongExpectedVersionError,
)


def test_each_kind_of_error_has_its_exit_code() -> None:
    assert exit_code_for(InvalidStreamIdError()) is ExitCode.INVALID_INPUT
    assert exit_code_for(UnknownEventTypeError()) is ExitCode.INVALID_INPUT
    assert exit_code_for(WrongExpectedVersionError("s", 1, 2)) is ExitCode.CONFLICT
    assert exit_code_for(EventIdConflictError()) is ExitCode.CONFLICT
    assert exit_code_for(DatabaseUnavailableError()) is ExitCode.DATABASE_UNAVAILABLE


def test_a_tail_line_has_position_stream_version_type_data_metadata() -> None:
    event = RecordedEvent(
        global_position=42,
        transaction_id=900,
        event_id=uuid.uuid4(),
        stream_id="document-plan",
        stream_version=3,
        category="document",
        event_type="PersonLeft",
        schema_version=1,
        data={"user_id": "ada", "people_present": 0},
        metadata={"actor": "ada"},
        recorded_at=datetime(2026, 11, 21, tzinfo=UTC),
    )
    assert format_event(event).split() == [
        "42", "document-plan", "v3", "PersonLeft", '{"user_id":"ada","people_present":0}', '{"actor":"ada"}'
    ]
    assert event.as_json()["recorded_at"] == "2026-11-21T00:00:00+00:00"


@pytest.mark.parametrize(
    "text", ["http://[::1", "http://127.0.0.1:99999999999999999999", "http://127.0.0.1:70000", "ftp://x", "nohost", ""]
)
def test_a_malformed_api_url_is_one_line_not_a_traceback(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        api_url(text)
    assert exited.value.exit_code == ExitCode.USAGE
    assert "AGENTLOG_URL" in capsys.readouterr().err


def test_a_good_api_url_is_kept() -> None:
    assert api_url("http://127.0.0.1:8787") == "http://127.0.0.1:8787"
    assert api_url("https://agentlog.example/base") == "https://agentlog.example/base"


def test_the_clients_wait_before_a_retry_is_what_the_server_asks_within_bounds() -> None:
    """`Retry-After: 0` (a proxy) made a client waiting out a first try under way send 2,000 requests a second;
    an HTTP date (RFC 9110) raised ValueError."""
    from email.utils import format_datetime

    from agentlog.client.client import _asked_wait, _retry_after

    def answer(retry_after: str) -> httpx.Response:
        return httpx.Response(409, headers={"retry-after": retry_after})

    assert 0.5 <= _retry_after(answer("0")) <= 0.6
    assert 30 <= _retry_after(answer("3600")) <= 36
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 <= _asked_wait(answer(soon)) <= 21 and 15 <= _retry_after(answer(soon)) <= 25
    assert _asked_wait(answer("whenever")) == 1.0
