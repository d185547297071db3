"""What planners and executors are told: the system prompts, the messages of a thread built from the session's
fold, and the analysis answer read back. Pure functions of the fold (and of the texts kept by reference, which
the caller resolves first), so that a resumed runtime sends a model exactly what the first one would have.

Each system prompt opens with a marker (`[agentlog:analyse]`, `[agentlog:planner]`, `[agentlog:executor]`,
`[agentlog:final]`): a hosted model reads the instructions after it; the offline local model reads the marker.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentlog.domains.planning.events import FINAL_THREAD, ModelAnswered, PlanStep, Strategy, ToolAnswered
from agentlog.domains.planning.session import Session, Step, Turn, validate_steps
from agentlog.llm.chat import ChatMessage, ToolCall, ToolSpec
from agentlog.tools.catalogue import Tool

ANALYSIS_THREAD = "analysis"
ANALYSE = "[agentlog:analyse]"
PLANNER = "[agentlog:planner]"
EXECUTOR = "[agentlog:executor]"
FINAL = "[agentlog:final]"

Resolve = Callable[[str, str | None], str]
"""(inline content, content_ref) → the text (the caller looks references up beforehand)."""


def _analysis_prompt(tools: Sequence[Tool]) -> str:
    listed = "\n".join(f"- {tool.name} ({tool.permission}): {tool.description}" for tool in tools)
    return (
        f"{ANALYSE} You are the planner of a fleet of agents. Read the user's request and decide how to handle it. "
        'Answer with one JSON object: {"strategy": "simple" | "tool" | "complex", "analysis": string, "steps": '
        '[{"step_id": string, "title": string, "instructions": string, "depends_on": [step_id...], '
        '"executor": boolean}]}. "simple": you can answer at once. "tool": you answer after calling tools. '
        '"complex": a plan of steps (1 to 20); a step with "executor": true is given to an executor that can only '
        "read; steps that change anything are yours (executor false). Steps get the results of the steps they "
        f"depend on. JSON only. The tools:\n{listed}"
    )


def planner_prompt() -> str:
    return (f"{PLANNER} You are the planner of a fleet of agents. Do what you are asked with the tools you have; "
            "when done, answer with a short summary of what you did and found (no tool call).")  # fmt: skip


def executor_prompt() -> str:
    return (f"{EXECUTOR} You are an executor: you look things up with read-only tools and report what you found. "
            "You cannot change anything. When done, answer with what you found (no tool call).")  # fmt: skip


def final_prompt() -> str:
    return (f"{FINAL} You are the planner. The steps of your plan are done; answer the user's request from their "
            "results, briefly.")  # fmt: skip


class StepAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step_id: str
    title: str
    instructions: str = ""
    depends_on: list[str] = Field(default_factory=list)
    executor: bool = True


class AnalysisAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    strategy: Strategy
    analysis: str = ""
    steps: list[StepAnswer] = Field(default_factory=list, max_length=20)


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.DOTALL)


def read_analysis(text: str) -> tuple[Strategy, str, list[PlanStep]]:
    """The strategy, the analysis and the checked steps of a model's analysis. An answer that is not one (not
    JSON, a plan that does not hold together) is taken as `tool`: the planner answers with tools, and the analysis
    says why — a model's mistake costs a plan, never the request."""
    fenced = _FENCE.match(text)
    try:
        answer = AnalysisAnswer.model_validate(json.loads(fenced.group(1) if fenced else text))
        steps = [PlanStep(step_id=s.step_id, title=s.title[:2_000], instructions=s.instructions[:4_000],
                          depends_on=s.depends_on, executor=s.executor) for s in answer.steps]  # fmt: skip
        if answer.strategy == "complex":
            if not steps:
                raise ValueError("a complex request needs steps")
            validate_steps(steps)
            if ANALYSIS_THREAD in {s.step_id for s in steps}:
                raise ValueError(f"a step may not be called {ANALYSIS_THREAD!r}")
        return answer.strategy, answer.analysis[:4_000], steps if answer.strategy == "complex" else []
    except ValidationError as wrong:
        first = wrong.errors()[0]
        reason = f"{'.'.join(str(part) for part in first['loc']) or 'the answer'}: {first['msg']}"[:300]
        return "tool", f"the analysis was not a usable plan ({reason}); answering with tools", []
    except (json.JSONDecodeError, ValueError) as wrong:
        reason = str(wrong).splitlines()[0][:300]
        return "tool", f"the analysis was not a usable plan ({reason}); answering with tools", []


HISTORY_TURNS = 10
"""Earlier turns a request is sent with (request and answer each): a long session's prompt stays bounded."""
HISTORY_CHARS = 4_000
"""Each earlier request and answer is sent cut to this many characters."""


def history(session: Session, turn: Turn, resolve: Resolve) -> list[ChatMessage]:
    """The last `HISTORY_TURNS` earlier turns (request and answer, each cut to `HISTORY_CHARS`) and this turn's
    request, as a conversation."""
    earlier_turns: list[Turn] = []
    for earlier in session.turns.values():
        if earlier is turn:
            break
        earlier_turns.append(earlier)
    messages: list[ChatMessage] = []
    for earlier in earlier_turns[-HISTORY_TURNS:]:
        messages.append(ChatMessage("user", _cut(resolve(earlier.asked.content, earlier.asked.content_ref))))
        if earlier.finished is not None and earlier.finished.status == "done":
            answer = resolve(earlier.finished.content, earlier.finished.content_ref)
            messages.append(ChatMessage("assistant", _cut(answer)))
    messages.append(ChatMessage("user", resolve(turn.asked.content, turn.asked.content_ref)))
    return messages


def _cut(text: str) -> str:
    return text if len(text) <= HISTORY_CHARS else text[: HISTORY_CHARS - 20] + " […cut]"


def thread_messages(session: Session, turn: Turn, step: Step | None, thread_id: str | None,
                    resolve: Resolve) -> list[ChatMessage]:  # fmt: skip
    """Everything a thread's next model call is sent: its system prompt, what it is asked, and its calls so far
    with their tool answers."""
    if thread_id is None:
        opening = [ChatMessage("system", planner_prompt()), *history(session, turn, resolve)]
    elif thread_id == FINAL_THREAD:
        opening = [ChatMessage("system", final_prompt()), *history(session, turn, resolve),
                   ChatMessage("user", _results_of(turn, resolve))]  # fmt: skip
    else:
        assert step is not None
        prompt = executor_prompt() if step.spec.executor else planner_prompt()
        opening = [ChatMessage("system", prompt), ChatMessage("user", _step_request(turn, step, resolve))]
    thread = turn.threads.get(thread_id)
    if thread is None:
        return opening
    for answer in thread.answers:
        opening.append(_assistant(answer, resolve))
        for call in answer.tool_calls:
            told = thread.tool_answers.get(call.call_id)
            if told is not None:
                opening.append(ChatMessage("tool", _tool_text(told, resolve), tool_call_id=call.call_id))
    return opening


def _assistant(answer: ModelAnswered, resolve: Resolve) -> ChatMessage:
    calls = tuple(ToolCall(c.call_id, c.tool, c.arguments) for c in answer.tool_calls)
    return ChatMessage("assistant", resolve(answer.content, answer.content_ref), calls)


def _tool_text(told: ToolAnswered, resolve: Resolve) -> str:
    if told.ok:
        return resolve(told.content, told.content_ref)
    kind = "refused" if told.refused else "failed"
    return json.dumps({kind: told.error})


def _step_request(turn: Turn, step: Step, resolve: Resolve) -> str:
    assert turn.plan is not None
    lines = [f"Step {step.spec.step_id}: {step.spec.title}", step.spec.instructions,
             f"The request it is part of: {resolve(turn.asked.content, turn.asked.content_ref)}"]  # fmt: skip
    for dependency in step.spec.depends_on:
        done = turn.plan.steps[dependency].result
        if done is not None:
            lines.append(f"Result of step {dependency}: {resolve(done.content, done.content_ref)}")
    return "\n".join(line for line in lines if line)


def _results_of(turn: Turn, resolve: Resolve) -> str:
    assert turn.plan is not None
    lines = ["The results of the plan's steps:"]
    for step in turn.plan.steps.values():
        text = resolve(step.result.content, step.result.content_ref) if step.result is not None else step.error
        lines.append(f"- {step.spec.step_id} ({step.spec.title}): {text}")
    return "\n".join(lines)


def tool_specs(tools: Sequence[Tool]) -> tuple[ToolSpec, ...]:
    return _specs(tuple(tools))


@functools.cache
def _specs(tools: tuple[Tool, ...]) -> tuple[ToolSpec, ...]:
    return tuple(ToolSpec(tool.name, tool.description, tool.schema()) for tool in tools)


@functools.cache
def analysis_prompt(tools: tuple[Tool, ...]) -> str:
    """The analysis prompt over `tools` (made once: it is the same for every request)."""
    return _analysis_prompt(tools)

def result_text(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)
