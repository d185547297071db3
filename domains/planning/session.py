"""The one rule of what a planner session does next, as a function of its stream.

`Session.fold(events)` gives the session as recorded; `next_action(session)` names the one thing to do now: read a
request (`Analyse`), ask a model (`CallModel`), run a tool call a model asked for (`CallTool`), start, complete or
fail a step, finish a plan or a turn — or nothing, when every turn is finished. The runtime does that one thing,
records what came of it, folds again and asks again. So a runtime that stops anywhere (a crash, a lost turn of
the handler lock) resumes from the log: a step completed is never started again, a tool call answered never made
again, and the only work that can be done twice is the one in flight when it stopped.

A thread is one agent's conversation in one turn: the turn's own (`None`), one per plan step, and the final answer
after the steps (`FINAL_THREAD`). Its state is its model answers and its tool answers in log order; a thread whose
last answer asked for tools runs them one by one, then asks its model again, up to `MAX_MODEL_CALLS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from agentlog.domains.planning.events import (
    FINAL_THREAD,
    ModelAnswered,
    PlanCancelRequested,
    PlanCreated,
    PlanFinished,
    PlanStep,
    SessionOpened,
    StepCompleted,
    StepFailed,
    StepStarted,
    ToolAnswered,
    ToolCallRecord,
    TurnAnalysed,
    TurnFinished,
    UserMessagePosted,
)
from agentlog.eventstore.events import Event

MAX_MODEL_CALLS = 8
"""Model calls one thread may make; a model still asking for tools after that is stopped (a loop costs tokens)."""

StepStatus = Literal["pending", "running", "completed", "failed"]


@dataclass
class Thread:
    """One agent's model calls and tool answers in one turn."""

    answers: list[ModelAnswered] = field(default_factory=list)
    tool_answers: dict[str, ToolAnswered] = field(default_factory=dict)

    @property
    def last(self) -> ModelAnswered | None:
        return self.answers[-1] if self.answers else None

    def unanswered(self) -> ToolCallRecord | None:
        """The first tool call of the last answer that has no answer yet."""
        last = self.last
        if last is None:
            return None
        return next((call for call in last.tool_calls if call.call_id not in self.tool_answers), None)

    def finished_text(self) -> ModelAnswered | None:
        """The last answer, when it asked for no tools: the thread's result."""
        last = self.last
        return last if last is not None and not last.tool_calls else None


@dataclass
class Step:
    spec: PlanStep
    status: StepStatus = "pending"
    agent_id: str | None = None
    result: StepCompleted | None = None
    error: str = ""


@dataclass
class Plan:
    created: PlanCreated
    steps: dict[str, Step]
    cancel: PlanCancelRequested | None = None
    finished: PlanFinished | None = None

    @property
    def plan_id(self) -> str:
        return self.created.plan_id


@dataclass
class Turn:
    asked: UserMessagePosted
    analysed: TurnAnalysed | None = None
    plan: Plan | None = None
    threads: dict[str | None, Thread] = field(default_factory=dict)
    finished: TurnFinished | None = None

    @property
    def turn_id(self) -> str:
        return self.asked.message_id

    def thread(self, step_id: str | None) -> Thread:
        return self.threads.setdefault(step_id, Thread())


@dataclass
class Session:
    session_id: str
    opened: SessionOpened | None = None
    turns: dict[str, Turn] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)

    @classmethod
    def fold(cls, session_id: str, events: Iterable[Event]) -> Session:
        session = cls(session_id)
        for event in events:
            session.evolve(event)
        return session

    def evolve(self, event: Event) -> None:
        if isinstance(event, SessionOpened):
            self.opened = self.opened or event
        elif isinstance(event, UserMessagePosted):
            self.turns.setdefault(event.message_id, Turn(event))
        elif (turn := self.turns.get(getattr(event, "turn_id", ""))) is not None:
            _evolve_turn(self, turn, event)
        elif (plan := self.plans.get(getattr(event, "plan_id", ""))) is not None:
            _evolve_plan(plan, event)

    def open_turns(self) -> list[Turn]:
        return [turn for turn in self.turns.values() if turn.finished is None]


def _evolve_turn(session: Session, turn: Turn, event: Event) -> None:
    if isinstance(event, TurnAnalysed):
        turn.analysed = turn.analysed or event
    elif isinstance(event, PlanCreated) and turn.plan is None:
        turn.plan = Plan(event, {step.step_id: Step(step) for step in event.steps})
        session.plans[event.plan_id] = turn.plan
    elif isinstance(event, ModelAnswered):
        thread = turn.thread(event.step_id)
        if event.call_index == len(thread.answers):  # a call recorded twice (a resumed runtime) counts once
            thread.answers.append(event)
    elif isinstance(event, ToolAnswered):
        turn.thread(event.step_id).tool_answers.setdefault(event.call_id, event)
    elif isinstance(event, TurnFinished):
        turn.finished = turn.finished or event


def _evolve_plan(plan: Plan, event: Event) -> None:
    step = plan.steps.get(getattr(event, "step_id", ""))
    if isinstance(event, StepStarted) and step is not None and step.status == "pending":
        step.status, step.agent_id = "running", event.agent_id
    elif isinstance(event, StepCompleted) and step is not None and step.status == "running":
        step.status, step.result = "completed", event
    elif isinstance(event, StepFailed) and step is not None and step.status in ("pending", "running"):
        step.status, step.error = "failed", event.error
    elif isinstance(event, PlanCancelRequested):
        plan.cancel = plan.cancel or event
    elif isinstance(event, PlanFinished):
        plan.finished = plan.finished or event


# -- what to do next ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analyse:
    turn: Turn


@dataclass(frozen=True, slots=True)
class CallModel:
    turn: Turn
    step: Step | None
    thread_id: str | None
    call_index: int


@dataclass(frozen=True, slots=True)
class CallTool:
    turn: Turn
    step: Step | None
    thread_id: str | None
    call: ToolCallRecord
    agent_id: str


@dataclass(frozen=True, slots=True)
class StartStep:
    turn: Turn
    plan: Plan
    step: Step


@dataclass(frozen=True, slots=True)
class CompleteStep:
    turn: Turn
    plan: Plan
    step: Step
    answer: ModelAnswered


@dataclass(frozen=True, slots=True)
class FailStep:
    turn: Turn
    plan: Plan
    step: Step
    error: str


@dataclass(frozen=True, slots=True)
class FinishPlan:
    turn: Turn
    plan: Plan
    status: Literal["completed", "failed", "cancelled"]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FinishTurn:
    turn: Turn
    status: Literal["done", "error", "cancelled"]
    answer: ModelAnswered | None = None
    error: str = ""


Action = Analyse | CallModel | CallTool | StartStep | CompleteStep | FailStep | FinishPlan | FinishTurn


def next_action(session: Session) -> Action | None:
    """The one thing to do next for the oldest unfinished turn; None when there is none."""
    for turn in session.open_turns():
        return _next_in_turn(turn)
    return None


def _next_in_turn(turn: Turn) -> Action:
    if turn.analysed is None:
        return Analyse(turn)
    plan = turn.plan
    if plan is None:
        return _next_in_thread(turn, None, None, lambda answer: FinishTurn(turn, "done", answer),
                               lambda error: FinishTurn(turn, "error", error=error))  # fmt: skip
    if plan.finished is None:
        return _next_in_plan(turn, plan)
    if plan.finished.status == "cancelled":
        return FinishTurn(turn, "cancelled", error=plan.finished.reason)
    if plan.finished.status == "failed":
        return FinishTurn(turn, "error", error=plan.finished.reason)
    return _next_in_thread(turn, None, FINAL_THREAD, lambda answer: FinishTurn(turn, "done", answer),
                           lambda error: FinishTurn(turn, "error", error=error))  # fmt: skip


def _next_in_plan(turn: Turn, plan: Plan) -> Action:
    steps = list(plan.steps.values())
    if plan.cancel is not None:
        why = plan.cancel.reason or f"cancelled by {plan.cancel.requested_by}"
        running = next((step for step in steps if step.status == "running"), None)
        if running is not None:  # it stops (its executor leaves), then the plan ends
            return FailStep(turn, plan, running, f"the plan was cancelled: {why}")
        return FinishPlan(turn, plan, "cancelled", why)
    for step in steps:  # a step whose dependency failed cannot run: it fails with that reason
        if step.status == "pending":
            failed = [d for d in step.spec.depends_on if plan.steps[d].status == "failed"]
            if failed:
                return FailStep(turn, plan, step, f"step {failed[0]} it depends on failed")
    running = next((step for step in steps if step.status == "running"), None)
    if running is not None:
        return _next_in_thread(turn, running, running.spec.step_id,
                               lambda answer: CompleteStep(turn, plan, running, answer),
                               lambda error: FailStep(turn, plan, running, error))  # fmt: skip
    for step in steps:
        if step.status == "pending" and all(plan.steps[d].status == "completed" for d in step.spec.depends_on):
            return StartStep(turn, plan, step)
    failed_steps = [step for step in steps if step.status == "failed"]
    if failed_steps:
        first = failed_steps[0]
        return FinishPlan(turn, plan, "failed", f"step {first.spec.step_id} failed: {first.error}")
    return FinishPlan(turn, plan, "completed")


def _next_in_thread(turn: Turn, step: Step | None, thread_id: str | None,
                    finish: Callable[[ModelAnswered], Action], fail: Callable[[str], Action]) -> Action:  # fmt: skip
    thread = turn.threads.get(thread_id) or Thread()
    pending = thread.unanswered()
    if pending is not None:
        assert thread.last is not None
        return CallTool(turn, step, thread_id, pending, thread.last.agent_id)
    done = thread.finished_text()
    if done is not None:
        return finish(done)
    if len(thread.answers) >= MAX_MODEL_CALLS:
        return fail(f"the model still asked for tools after {MAX_MODEL_CALLS} calls")
    return CallModel(turn, step, thread_id, len(thread.answers))


def validate_steps(steps: Iterable[PlanStep]) -> list[PlanStep]:
    """The steps of a plan, checked: ids unique, dependencies on earlier-named or later steps of the plan only,
    and no cycle. Raises ValueError saying what is wrong (a model's plan is input like any other)."""
    listed = list(steps)
    ids = [step.step_id for step in listed]
    if len(set(ids)) != len(ids):
        raise ValueError("step ids repeat")
    if FINAL_THREAD in ids:
        raise ValueError(f"a step may not be called {FINAL_THREAD!r}")
    known = set(ids)
    for step in listed:
        unknown = [d for d in step.depends_on if d not in known]
        if unknown:
            raise ValueError(f"step {step.step_id} depends on unknown step {unknown[0]}")
        if step.step_id in step.depends_on:
            raise ValueError(f"step {step.step_id} depends on itself")
    done: set[str] = set()
    remaining = {step.step_id: set(step.depends_on) for step in listed}
    while remaining:
        ready = [sid for sid, deps in remaining.items() if deps <= done]
        if not ready:
            raise ValueError(f"steps {', '.join(sorted(remaining))} depend on each other in a cycle")
        for sid in ready:
            done.add(sid)
            del remaining[sid]
    return listed


# -- checking a recorded session against the rule ---------------------------------------------------------------

EXTERNAL_TYPES = frozenset({"SessionOpened", "UserMessagePosted", "PlanCancelRequested"})
"""What people record in a session; everything else is the runtime's, and follows `next_action`."""


def follows(action: Action | None, event: Event, before: Event | None) -> bool:
    """Whether `event`, recorded by a runtime, is what `action` leads to (`before`: the event recorded just before
    it, for the analysis, whose model answer, reading and plan are recorded together)."""
    turn_id = getattr(event, "turn_id", None)
    if isinstance(event, PlanCreated):
        return isinstance(before, TurnAnalysed) and before.turn_id == event.turn_id and before.strategy == "complex"
    if action is None:
        return False
    if isinstance(action, Analyse):
        return turn_id == action.turn.turn_id and (
            isinstance(event, TurnAnalysed) or (isinstance(event, ModelAnswered) and event.step_id == "analysis")
        )
    if isinstance(action, CallModel):
        ends = isinstance(event, TurnFinished) and event.status == "error" and action.step is None
        fails = isinstance(event, StepFailed) and action.step is not None and event.step_id == action.thread_id
        answered = (isinstance(event, ModelAnswered) and event.step_id == action.thread_id
                    and event.call_index == action.call_index)  # fmt: skip
        return turn_id in (action.turn.turn_id, None) and (answered or ends or fails)
    if isinstance(action, CallTool):
        return isinstance(event, ToolAnswered) and (event.step_id, event.call_id) == (action.thread_id,
                                                                                       action.call.call_id)  # fmt: skip
    if isinstance(action, StartStep):
        return isinstance(event, StepStarted) and event.step_id == action.step.spec.step_id
    if isinstance(action, CompleteStep):
        return isinstance(event, StepCompleted) and event.step_id == action.step.spec.step_id
    if isinstance(action, FailStep):
        return isinstance(event, StepFailed) and event.step_id == action.step.spec.step_id
    if isinstance(action, FinishPlan):
        return isinstance(event, PlanFinished) and event.status == action.status
    return isinstance(event, TurnFinished) and event.status == action.status and turn_id == action.turn.turn_id


def departures(session_id: str, events: Iterable[Event]) -> list[tuple[int, Event, Action | None]]:
    """The events of a session's stream (with their index) that the rule would not have recorded where they are.

    A runtime decides on what it has read, so a request or a cancel recorded while it was acting may not have
    been seen yet: each runtime event is checked against the rule both without and with the people's events
    recorded since; once one follows only with them, they count as seen."""
    seen = Session(session_id)
    seen_events: list[Event] = []
    unseen: list[Event] = []
    found: list[tuple[int, Event, Action | None]] = []
    before: Event | None = None
    for index, event in enumerate(events):
        if event.event_type in EXTERNAL_TYPES:
            unseen.append(event)
            continue
        behind = next_action(seen)
        if not follows(behind, event, before) and unseen:
            ahead = next_action(Session.fold(session_id, [*seen_events, *unseen]))
            if not follows(ahead, event, before):
                found.append((index, event, ahead))
            for pending in unseen:
                seen.evolve(pending)
            seen_events.extend(unseen)
            unseen.clear()
        elif not follows(behind, event, before):
            found.append((index, event, behind))
        seen.evolve(event)
        seen_events.append(event)
        before = event
    return found
