"""/tools: the tool catalogue (`agentlog.tools.catalogue`) listed and called over HTTP.

A call runs the tool with the caller's own token against this API (loopback), so every route it uses decides as
it would for the caller. A read-only token (an executor's) calling a tool that writes is refused here, before the
tool runs, and the refusal is recorded (`ToolCallRefused`: who, which tool, which arguments, which session and
step). Idempotency: the call's own `Idempotency-Key` (kept by the guard) also keys each write the tool makes, so a
call run again after a crash writes nothing twice.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, Field, ValidationError

from agentlog.api.auth import bearer_token
from agentlog.api.errors import ApiError, not_found
from agentlog.api.guard import SESSION_HEADER, STEP_HEADER
from agentlog.api.services import Svc, Who
from agentlog.client import AgentlogClient
from agentlog.client import errors as client_errors
from agentlog.domains.planning.events import SessionId, StepId, ToolCallRefused, refusals_stream, refused_arguments
from agentlog.tools.catalogue import CATALOGUE, TOOLS, Permission

router = APIRouter(tags=["tools"])
ToolPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the tool's name")]


class ToolInfo(BaseModel):
    name: str
    description: str
    permission: Permission
    parameters: dict[str, Any]


class ToolCall(BaseModel):
    arguments: dict[str, Any] = Field(default_factory=dict)
    session_id: SessionId | None = Field(default=None, description="the planner session the call is made in")
    step_id: StepId | None = None


class ToolResult(BaseModel):
    tool: str
    result: Any


@router.get("/tools", summary="The tool catalogue: each tool's arguments (JSON schema) and permission")
async def list_tools(_who: Who) -> list[ToolInfo]:
    return [ToolInfo(name=t.name, description=t.description, permission=t.permission, parameters=t.schema())
            for t in TOOLS]  # fmt: skip


@router.post("/tools/{name}", summary="Call a tool as the caller (a read-only token calls read tools only)")
async def call_tool(
    name: ToolPath, body: ToolCall, request: Request, services: Svc, who: Who,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ToolResult:  # fmt: skip
    tool = CATALOGUE.get(name)
    if tool is None:
        raise not_found(f"no tool {name!r}; GET /api/v1/tools lists them")
    try:
        arguments = tool.arguments.model_validate(body.arguments)
    except ValidationError as wrong:
        details = [{"loc": ["body", "arguments", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                   for e in wrong.errors(include_url=False, include_context=False)]  # fmt: skip
        raise ApiError(422, "invalid", details) from wrong
    if tool.permission == "write" and who.identity.read_only:
        reason = f"tool {name} writes, and this token may only read (scope read)"
        refusal = ToolCallRefused(
            agent_id=who.name, holder_kind=who.kind, tool=name, arguments=refused_arguments(body.arguments),
            session_id=body.session_id, step_id=body.step_id, reason=reason,
        )  # fmt: skip
        await services.store.append(refusals_stream(who.name), [refusal])
        raise ApiError(403, "read_only_token", reason, tool=name)
    client = await _client_of(request)
    headers = {SESSION_HEADER: body.session_id or "", STEP_HEADER: body.step_id or ""}
    keyed = client.keyed(idempotency_key, {k: v for k, v in headers.items() if v})
    try:
        result = await tool.run(keyed, who.name, arguments)
    except client_errors.ApiError as refused:
        extra = {k: v for k, v in refused.body.items() if k not in ("detail", "code")}
        raise ApiError(refused.status, refused.code or "refused", refused.detail, tool=name, **extra) from refused
    return ToolResult(tool=name, result=result)


async def _client_of(request: Request) -> AgentlogClient:
    """An API client with the caller's own token (one per token, kept by the MCP's client pool)."""
    token = bearer_token(request.headers.getlist("authorization"), request.query_params.get("token"))
    if not token:
        raise ApiError(401, "unauthorized", "no token")
    client: AgentlogClient = await request.app.state.mcp_clients.get(token)
    return client
