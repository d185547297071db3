"""`agentlog chat SESSION "message"`: ask the planner and watch the turn live (rich); `agentlog session`: read a
session, cancel its plan — through the API."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from agentlog.cli.common import ExitCode, fail, handles_errors
from agentlog.cli.remote import print_json, through_api

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient

app = typer.Typer(no_args_is_help=True, help="Planner sessions: show, cancel a plan.")


def _line(name: str, data: dict[str, Any]) -> str:
    """One event of the turn as a person reads it."""
    who = escape(str(data.get("agent_id") or ""))
    step = f" [dim]{escape(str(data['step_id']))}[/dim]" if data.get("step_id") else ""
    if name == "analysis":
        return f"[bold]analysis[/bold] {data['strategy']}: {escape(data['analysis'])}"
    if name == "plan_created":
        steps = "; ".join(f"{s['step_id']} {s['title']}{' (executor)' if s['executor'] else ''}"
                          for s in data["steps"])  # fmt: skip
        return f"[bold]plan[/bold] {escape(data['plan_id'])}: {escape(steps)}"
    if name in ("step_started", "executor_spawned", "step_completed", "step_failed"):
        detail = data.get("error") or (data.get("content") or "")[:200]
        return f"[cyan]{name.replace('_', ' ')}[/cyan]{step} {who} {escape(detail)}"
    if name == "tool_call":
        return f"[yellow]→ {escape(data['tool'])}[/yellow]{step} {who} {escape(json.dumps(data['arguments']))[:200]}"
    if name == "tool_result":
        state = "[red]refused[/red]" if data["refused"] else "ok" if data["ok"] else "[red]failed[/red]"
        said = escape(data["error"] or data["content"])[:200]
        return f"[yellow]← {escape(data['tool'])}[/yellow]{step} {state} {said}"
    if name == "text":
        return f"[green]{who}[/green]{step}: {escape(data['content'] or '(kept by reference)')}"
    if name == "plan_finished":
        return f"[bold]plan {data['status']}[/bold] {escape(data['reason'])}"
    if name == "done":
        return f"[bold green]answer[/bold green] {escape(data['content'] or '')}"
    return f"[bold red]{data.get('status', 'error')}[/bold red] {escape(str(data.get('error', '')))}"


@handles_errors
def chat_command(
    session_id: Annotated[str, typer.Argument(help="the session (made on its first message)")],
    message: Annotated[str, typer.Argument(help="what to ask the planner")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per event")] = False,
) -> None:
    """Ask the planner in a session and print the turn as it happens: its analysis, plan, executors, tool calls
    and results, and the answer. Exits 1 when the turn ends in an error."""
    console = Console(highlight=False)

    async def follow(client: AgentlogClient) -> str:
        last = ""
        live = console.is_terminal and not as_json
        with console.status("the planner is working…", spinner="dots") if live else contextlib.nullcontext():
            async for name, data in client.ask(session_id, message):
                last = name
                if as_json:
                    typer.echo(json.dumps({"event": name, **data}))
                else:
                    console.print(_line(name, data))
        return last

    if through_api(follow) != "done":
        fail("the turn did not end with an answer", ExitCode.FAILED)


@app.command("show")
@handles_errors
def show_command(session_id: str) -> None:
    """A session as its stream says now: its turns, their plans and steps (JSON)."""
    print_json(through_api(lambda client: client.session(session_id)))


@app.command("cancel")
@handles_errors
def cancel_command(session_id: str, plan_id: str, reason: Annotated[str, typer.Option("--reason")] = "") -> None:
    """Cancel a plan: the step running stops after its current call; the turn ends `cancelled`."""
    print_json(through_api(lambda client: client.cancel_plan(session_id, plan_id, reason)))
