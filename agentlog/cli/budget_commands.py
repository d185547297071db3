"""`agentlog budget`: set daily token budgets and see what they have left — through the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from agentlog.cli.common import handles_errors, out
from agentlog.cli.remote import print_json, through_api

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient
    from agentlog.client.models import Budget

app = typer.Typer(no_args_is_help=True, help="Daily token budgets: `global` and `agent-<agent id>`.")


@app.command("set")
@handles_errors
def set_command(
    budget_id: Annotated[str, typer.Argument(help="global, or agent-<agent id>")],
    limit_tokens: Annotated[int, typer.Argument(help="tokens a day")],
    reset_hour: Annotated[int, typer.Option("--reset-hour", min=0, max=23, help="the hour a day begins")] = 0,
    time_zone: Annotated[str, typer.Option("--time-zone", help="an IANA name, like Europe/Paris")] = "UTC",
) -> None:
    """Set or change a budget (refused below what today has already spent and holds)."""

    async def set_budget(client: AgentlogClient) -> Budget:
        return await client.set_budget(budget_id, limit_tokens, reset_hour=reset_hour, time_zone=time_zone)

    print_json(through_api(set_budget).model_dump(mode="json"))


@app.command("show")
@handles_errors
def show_command(budget_id: Annotated[str | None, typer.Argument(help="one budget (all when none)")] = None) -> None:
    """What the budgets have settled, hold and have left today, and the warnings given."""

    async def budgets(client: AgentlogClient) -> list[Budget]:
        return [await client.budget(budget_id)] if budget_id else await client.budgets()

    table = Table("budget", "period", "limit", "settled", "reserved", "left", "warned", "unbudgeted", box=None)
    for budget in through_api(budgets):
        table.add_row(budget.budget_id, budget.period, f"{budget.limit_tokens:,}", f"{budget.settled_tokens:,}",
                      f"{budget.reserved_tokens:,}", f"{budget.remaining_tokens:,}",
                      ",".join(f"{w}%" for w in budget.warned), f"{budget.unbudgeted_tokens:,}")  # fmt: skip
    out.print(table)
