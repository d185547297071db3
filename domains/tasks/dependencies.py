"""Dependencies between tasks: workflows are acyclic, and a task runs only after all it depends on completed.

A task may name tasks not created yet (a workflow created in any order); it waits for them. So a cycle can form
when a later task closes it: `find_cycle` is asked at every create (by the API, to refuse it with the cycle named,
and by the dispatcher, to dead-letter one appended past the API). A dependency dead-lettered or cancelled fails
its dependents with that reason (`blocked_by`); a requeued dependency does not revive them — requeue them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agentlog.domains.tasks.lifecycle import Status


class DependencyCycleError(ValueError):
    """`depends_on` would close a cycle of dependencies; the message names it."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__(f"depends_on: a cycle of dependencies {' -> '.join(cycle)}; a workflow must be acyclic")
        self.cycle = list(cycle)


def find_cycle(
    depends_on_of: Callable[[str], Sequence[str]], task_id: str, depends_on: Sequence[str]
) -> list[str] | None:
    """The cycle `task_id -> ... -> task_id` that giving it `depends_on` would close, or None.

    `depends_on_of` answers for every known task (an empty list for one unknown). Iterative, each task visited
    once: a deep chain does not overflow the stack."""
    parent: dict[str, str] = {}
    stack = [(dependency, task_id) for dependency in reversed(depends_on)]
    while stack:
        current, came_from = stack.pop()
        if current in parent:
            continue
        parent[current] = came_from
        if current == task_id:
            path = [task_id]
            node = came_from
            while node != task_id:
                path.append(node)
                node = parent[node]
            return [task_id, *reversed(path[1:]), task_id]
        stack.extend((dependency, current) for dependency in reversed(depends_on_of(current)))
    return None


def check_workflow(known: Mapping[str, Sequence[str]], new_tasks: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Raise `DependencyCycleError` if creating `new_tasks` (in order) after the `known` ones closes a cycle."""
    added: dict[str, Sequence[str]] = {}

    def depends_on_of(task_id: str) -> Sequence[str]:
        return added.get(task_id, known.get(task_id, ()))

    for task_id, depends_on in new_tasks:
        cycle = find_cycle(depends_on_of, task_id, depends_on)
        if cycle is not None:
            raise DependencyCycleError(cycle)
        added[task_id] = depends_on


@dataclass(frozen=True, slots=True)
class Blocked:
    """A dependency that will not complete: the dependent fails with `reason`."""

    dependency: str
    reason: str


def blocked_by(depends_on: Sequence[str], status_of: Callable[[str], Status | None]) -> Blocked | None:
    """The first dependency dead-lettered or cancelled, in the order named (None when none is)."""
    for dependency in depends_on:
        status = status_of(dependency)
        if status in {"dead_lettered", "cancelled"}:
            verb = "was dead-lettered" if status == "dead_lettered" else "was cancelled"
            return Blocked(dependency, f"dependency {dependency} {verb}")
    return None


def dependencies_met(depends_on: Sequence[str], status_of: Callable[[str], Status | None]) -> bool:
    return all(status_of(dependency) == "completed" for dependency in depends_on)
