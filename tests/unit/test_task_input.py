"""What a task may be given (`domains.tasks`): whole numbers that are numbers (a boolean or a string is no
priority), delays no shorter than `MIN_DELAY_S` (each one is a timer, two events in the log), and a back-off base no
larger than its maximum — the same rules for a task created through the API and one a schedule fires."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agentlog.domains.schedules.events import TaskTemplate
from agentlog.domains.tasks.backoff import check_backoff
from agentlog.domains.tasks.events import MIN_DELAY_S, TaskCreated, TaskSnoozed


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": True}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"priority": 5.0}, "priority"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"concurrency_limit": True}, "concurrency_limit"),
        ({"execution_timeout_s": 1e-300}, "execution_timeout_s"),
        ({"heartbeat_interval_s": MIN_DELAY_S / 2}, "heartbeat_interval_s"),
        ({"backoff_base_s": 1e-300}, "backoff_base_s"),
        ({"backoff_max_s": 0.0}, "backoff_max_s"),
    ],
)  # fmt: skip
def test_lax_values_are_refused_by_the_task_and_by_a_schedules_template(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        TaskCreated(task_id="t", task_type="x", **fields)
    assert refused.value.errors()[0]["loc"] == (field,)
    template_fields = {key: value for key, value in fields.items() if key in TaskTemplate.model_fields}
    if template_fields:
        with pytest.raises(ValidationError):
            TaskTemplate(task_type="x", **template_fields)


def test_the_shortest_delays_and_whole_numbers_are_taken() -> None:
    task = TaskCreated(task_id="t", task_type="x", priority=10, execution_timeout_s=MIN_DELAY_S,
                       heartbeat_interval_s=MIN_DELAY_S, backoff_base_s=MIN_DELAY_S, backoff_max_s=1)  # fmt: skip
    assert task.priority == 10 and task.execution_timeout_s == MIN_DELAY_S
    assert TaskCreated(task_id="t", task_type="x", execution_timeout_s=60).execution_timeout_s == 60.0
    with pytest.raises(ValidationError):
        TaskSnoozed(task_id="t", attempt=1, agent_id="w", delay_s=1e-300)
    with pytest.raises(ValidationError):
        TaskSnoozed(task_id="t", attempt=True, agent_id="w", delay_s=5)


def test_a_backoff_base_above_its_maximum_is_refused_naming_both() -> None:
    check_backoff(10, 10)
    check_backoff(1, 3600)
    with pytest.raises(ValueError, match="backoff_base_s") as refused:
        check_backoff(100, 10)
    assert "backoff_max_s" in str(refused.value)
