"""`agentlog program`: agents registered with a command line, started, stopped and restarted — through the API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from agentlog.cli.common import ExitCode, fail, handles_errors, out
from agentlog.cli.remote import print_json, through_api

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient

app = typer.Typer(no_args_is_help=True, help="Agent programs: define, start, stop, restart, list, show.")


@app.command("define")
@handles_errors
def define_command(
    agent_id: Annotated[str, typer.Argument(help="the agent the program runs as")],
    command: Annotated[list[str], typer.Argument(help="the command line, after --: agentlog program define a1 -- "
                                                       "python -m my_agent")],
    env: Annotated[list[str] | None, typer.Option("--env", help="NAME=VALUE, repeat")] = None,
    working_dir: Annotated[str | None, typer.Option("--working-dir")] = None,
    max_restarts: Annotated[int, typer.Option("--max-restarts")] = 3,
    restart_delay_s: Annotated[float, typer.Option("--restart-delay", help="seconds, doubling per crash")] = 1.0,
    stop_grace_s: Annotated[float, typer.Option("--stop-grace", help="seconds from SIGTERM to SIGKILL")] = 10.0,
    proven_after_s: Annotated[float, typer.Option("--proven-after", help="seconds of running that forgive its "
                                                                         "crashes")] = 60.0,
) -> None:  # fmt: skip
    """Define (or change) the program an agent runs as (an admin's token); prints its state (JSON)."""
    variables: dict[str, str] = {}
    for item in env or []:
        name, equals, value = item.partition("=")
        if not equals:
            fail(f"--env {item!r}: give NAME=VALUE", ExitCode.USAGE)
        variables[name] = value
    policy: dict[str, Any] = {"env": variables, "working_dir": working_dir, "max_restarts": max_restarts,
                              "restart_delay_s": restart_delay_s, "stop_grace_s": stop_grace_s,
                              "proven_after_s": proven_after_s}  # fmt: skip

    async def define(client: AgentlogClient) -> Any:
        return (await client.define_program(agent_id, list(command), **policy)).model_dump(mode="json")

    print_json(through_api(define))


def _act(action: str) -> Any:
    def act(
        agent_id: Annotated[str, typer.Argument(help="the program's agent")],
        reason: Annotated[str, typer.Option("--reason")] = "",
    ) -> None:
        async def run(client: AgentlogClient) -> Any:
            method = getattr(client, f"{action}_program")
            return (await method(agent_id, reason)).model_dump(mode="json")

        print_json(through_api(run))

    act.__doc__ = {"start": "Start the program.", "stop": "Stop it: SIGTERM, then SIGKILL after its grace.",
                   "restart": "Stop it and start it again."}[action]  # fmt: skip
    return handles_errors(act)


for _action in ("start", "stop", "restart"):
    app.command(_action)(_act(_action))


@app.command("list")
@handles_errors
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every program: status, run, pid and host, restarts in a row, runs started and crashes, the last exit."""
    rows = through_api(lambda client: client.programs())
    if as_json:
        out.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    table = Table("agent", "status", "run", "pid", "host", "restarts", "runs", "crashes", "last exit", "reason",
                  box=None)  # fmt: skip
    for row in rows:
        table.add_row(row.agent_id, row.status, str(row.run), "" if row.pid is None else str(row.pid), row.host,
                      str(row.restart), str(row.runs_started), str(row.crashes),
                      "" if row.last_exit_code is None else str(row.last_exit_code), row.reason)  # fmt: skip
    out.print(table)


@app.command("show")
@handles_errors
def show_command(agent_id: str) -> None:
    """The program as its stream says now, with its health while it runs (JSON)."""

    async def show(client: AgentlogClient) -> Any:
        return (await client.program(agent_id)).model_dump(mode="json")

    print_json(through_api(show))
