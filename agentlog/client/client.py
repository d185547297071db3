"""`AgentlogClient`: the API as typed async methods (httpx), and the live feed as an async iterator (websockets)
that reconnects and resumes from the last position it yielded by itself.

    async with AgentlogClient("http://127.0.0.1:8787", token) as client:
        await client.register("claude-1", working_on="the parser")
        lock = await client.acquire("src/parser.py", ttl_s=300)
        ...
        await client.release("src/parser.py", lock.fencing_token)

POSTs carry an `Idempotency-Key` (made per call) and are retried with it after a lost connection, a 5xx, a 429, or
a 409 saying the key's first try is still under way, so a retry never appends twice. Other requests are retried
when they are safe to repeat (reads).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, TypeAdapter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentlog.client import models
from agentlog.client.errors import BY_STATUS, ApiError, RateLimitedError

M = TypeVar("M", bound=BaseModel)
RETRIED = (httpx.TransportError,)
UNDER_WAY_WAIT_S = 75.0
"""How long a POST waits while the server says its first try is still under way: past the server's lease on an
Idempotency-Key (60 s, beyond the longest request, a 30 s task claim), after which a retry runs it again."""
RESUMABLE_CLOSES = {1006, 1011, 1012, 1013}
"""Feed closes after which it reconnects by itself (abnormal, server error, restart, fell behind); others end it."""


def _id(value: str) -> str:
    """An id as one path segment: a `/` or `..` in it (a model's choice, say) names no other route."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _path(resource: str) -> str:
    return quote(resource, safe="/")


class AgentlogClient:
    def __init__(
        self, base_url: str, token: str, *, retries: int = 4, timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=timeout,
            transport=transport,
        )  # fmt: skip
        self._key: str | None = None
        self._keys_used = 0
        self._headers: dict[str, str] = {}

    def keyed(self, key: str | None, headers: dict[str, str] | None = None) -> AgentlogClient:
        """This client for one operation that may be run again (a planner's tool call after a crash): its POSTs
        carry Idempotency-Keys derived from `key` (`key/1`, `key/2`, ... in order), so the server answers a run
        again as it answered the first and records nothing twice (None: fresh keys, as usual); `headers` go with
        every request. It shares
        this client's connections: close this one, not it."""
        view = object.__new__(AgentlogClient)
        view.base_url, view.token, view.retries, view._http = self.base_url, self.token, self.retries, self._http
        view._key, view._keys_used, view._headers = key, 0, {**self._headers, **(headers or {})}
        return view

    def acting_as(self, token: str) -> AgentlogClient:
        """This client with another token: the same connections (a client of its own costs its TLS context,
        ~40 ms, and a pool), for a process acting for many agents. Close this one, not it."""
        view = self.keyed(None, {"authorization": f"Bearer {token}"})
        view.token = token
        return view

    async def __aenter__(self) -> AgentlogClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- the transport -----------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        headers = self._headers | dict(headers or {})
        retry = method in ("GET", "POST")
        if method == "POST" and self._key is not None:
            self._keys_used += 1
            headers.setdefault("idempotency-key", f"{self._key}/{self._keys_used}")
        elif method == "POST":
            headers.setdefault("idempotency-key", uuid.uuid4().hex)
        params = {key: value for key, value in (params or {}).items() if value is not None}
        under_way_until: float | None = None
        attempt = -1
        while attempt < self.retries:
            attempt += 1
            try:
                answer = await self._http.request(method, path, json=json, params=params, headers=headers)
            except RETRIED:
                if not retry or attempt == self.retries:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            if _first_try_under_way(answer):
                # Its first try still runs (or ran in a process that died, which holds the key for the server's
                # lease): waiting costs no retry, for as long as such a try can last.
                now = time.monotonic()
                under_way_until = now + UNDER_WAY_WAIT_S if under_way_until is None else under_way_until
                if now < under_way_until:
                    attempt -= 1
                    await asyncio.sleep(_retry_after(answer))
                    continue
            if answer.status_code == 429 and attempt < self.retries:
                await asyncio.sleep(_retry_after(answer))
                continue
            if answer.status_code >= 500 and retry and attempt < self.retries:
                await asyncio.sleep(_backoff(attempt))
                continue
            if answer.status_code >= 400:
                raise _error(answer)
            return answer
        raise AssertionError("unreachable")

    async def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json((await self._request(method, path, **kwargs)).content)

    async def _models(self, model: type[M], path: str, **kwargs: Any) -> list[M]:
        answer = await self._request("GET", path, **kwargs)
        return TypeAdapter(list[model]).validate_json(answer.content)  # type: ignore[valid-type]

    # -- the registry ----------------------------------------------------------------------------------------

    async def register(self, agent_id: str, *, if_match: int | None = None, **fields: Any) -> models.Agent:
        """Register or update (`name`, `status`, `working_on`, `capabilities`, `metadata`, `heartbeat_timeout_s`)."""
        body = models.AgentUpsert(**fields).model_dump(exclude_none=True)
        headers = {} if if_match is None else {"if-match": f'"{if_match}"'}
        return await self._model(models.Agent, "PUT", f"/agents/{_id(agent_id)}", json=body, headers=headers)

    async def heartbeat(self, agent_id: str) -> models.Agent:
        return await self._model(models.Agent, "POST", f"/agents/{_id(agent_id)}/heartbeat")

    async def deregister(self, agent_id: str, reason: str = "") -> models.Agent:
        return await self._model(models.Agent, "DELETE", f"/agents/{_id(agent_id)}", params={"reason": reason})

    async def agents(self, *, state: str | None = None, status: str | None = None, capability: str | None = None,
                     after: str = "", limit: int = 100) -> list[models.Agent]:  # fmt: skip
        params = {"state": state, "status": status, "capability": capability, "after": after, "limit": limit}
        return await self._models(models.Agent, "/agents", params=params)

    async def agent(self, agent_id: str) -> models.AgentDetails:
        return await self._model(models.AgentDetails, "GET", f"/agents/{_id(agent_id)}")

    async def health(self, agent_id: str) -> models.Health:
        return await self._model(models.Health, "GET", f"/agents/{_id(agent_id)}/health")

    async def hot_start(self, agent_id: str) -> models.HotStart:
        return await self._model(models.HotStart, "GET", f"/agents/{_id(agent_id)}/hot-start")

    # -- messages --------------------------------------------------------------------------------------------

    async def post_chat(self, body: str, *, mentions: Iterable[str] = (), data: dict[str, Any] | None = None
                        ) -> models.Posted:  # fmt: skip
        payload = models.ChatPost(body=body, mentions=list(mentions), data=data or {}).model_dump()
        return await self._model(models.Posted, "POST", "/chat", json=payload)

    async def chat(self, *, after: int = 0, limit: int = 100) -> models.ChatPage:
        return await self._model(models.ChatPage, "GET", "/chat", params={"after": after, "limit": limit})

    async def send(self, to: str, body: str, *, data: dict[str, Any] | None = None, thread_id: str | None = None,
                   task_id: str | None = None) -> models.Posted:  # fmt: skip
        payload = models.DirectMessage(body=body, data=data or {}, thread_id=thread_id, task_id=task_id)
        return await self._model(models.Posted, "POST", f"/agents/{_id(to)}/inbox", json=payload.model_dump())

    async def inbox(self, agent_id: str, *, unread: bool = True, after: int = 0, limit: int = 100
                    ) -> models.InboxPage:  # fmt: skip
        params = {"unread": str(unread).lower(), "after": after, "limit": limit}
        return await self._model(models.InboxPage, "GET", f"/agents/{_id(agent_id)}/inbox", params=params)

    async def acknowledge(self, agent_id: str, message_ids: Iterable[str]) -> models.Acknowledged:
        payload = {"message_ids": list(message_ids)}
        return await self._model(models.Acknowledged, "POST", f"/agents/{_id(agent_id)}/inbox/ack", json=payload)

    # -- checkpoints and memories ----------------------------------------------------------------------------

    async def save_checkpoint(self, agent_id: str, summary: str = "", state: dict[str, Any] | None = None
                              ) -> models.Checkpoint:  # fmt: skip
        payload = {"summary": summary, "state": state or {}}
        return await self._model(models.Checkpoint, "POST", f"/agents/{_id(agent_id)}/checkpoint", json=payload)

    async def checkpoint(self, agent_id: str) -> models.Checkpoint | None:
        try:
            return await self._model(models.Checkpoint, "GET", f"/agents/{_id(agent_id)}/checkpoint")
        except BY_STATUS[404]:
            return None

    async def checkpoint_history(self, agent_id: str, *, limit: int = 20) -> list[models.Checkpoint]:
        return await self._models(models.Checkpoint, f"/agents/{_id(agent_id)}/checkpoint/history",
                                  params={"limit": limit})  # fmt: skip

    async def remember(self, agent_id: str, text: str, *, tags: Iterable[str] = (), kind: str = "learning"
                       ) -> models.Memory:  # fmt: skip
        payload = {"text": text, "tags": list(tags), "kind": kind}
        return await self._model(models.Memory, "POST", f"/agents/{_id(agent_id)}/memories", json=payload)

    async def recall(self, query: str | None = None, *, agent_id: str | None = None, tag: str | None = None,
                     kind: str | None = None, limit: int = 20) -> list[models.Memory]:  # fmt: skip
        path = "/memories" if agent_id is None else f"/agents/{_id(agent_id)}/memories"
        return await self._models(models.Memory, path, params={"q": query, "tag": tag, "kind": kind, "limit": limit})

    async def forget(self, agent_id: str, memory_id: str, reason: str = "") -> models.Memory:
        return await self._model(models.Memory, "DELETE", f"/agents/{_id(agent_id)}/memories/{_id(memory_id)}",
                                 params={"reason": reason})  # fmt: skip

    # -- locks and claims ------------------------------------------------------------------------------------

    async def acquire(self, resource: str, *, ttl_s: float = 300, reason: str = "", agent_id: str | None = None
                      ) -> models.Lock:  # fmt: skip
        payload = models.LockAcquire(agent_id=agent_id, ttl_s=ttl_s, reason=reason).model_dump(exclude_none=True)
        return await self._model(models.Lock, "POST", f"/locks/{_path(resource)}", json=payload)

    async def renew(self, resource: str, fencing_token: int, *, ttl_s: float = 300, agent_id: str | None = None
                    ) -> models.Lock:  # fmt: skip
        payload = models.LockRenew(agent_id=agent_id, fencing_token=fencing_token, ttl_s=ttl_s)
        return await self._model(models.Lock, "PATCH", f"/locks/{_path(resource)}",
                                 json=payload.model_dump(exclude_none=True))  # fmt: skip

    async def release(self, resource: str, fencing_token: int, *, agent_id: str | None = None) -> models.Lock:
        return await self._model(models.Lock, "DELETE", f"/locks/{_path(resource)}",
                                 params={"fencing_token": fencing_token, "agent_id": agent_id})  # fmt: skip

    async def lock(self, resource: str) -> models.Lock | None:
        try:
            return await self._model(models.Lock, "GET", f"/locks/{_path(resource)}")
        except BY_STATUS[404]:
            return None

    async def locks(self, *, holder: str | None = None) -> list[models.Lock]:
        return await self._models(models.Lock, "/locks", params={"holder": holder})

    async def lock_history(self, resource: str) -> list[models.LockEvent]:
        return await self._models(models.LockEvent, f"/lock-history/{_path(resource)}")

    async def claim(self, pattern: str, *, kind: str = "path", exclusive: bool = True, ttl_s: float = 1800,
                    reason: str = "", agent_id: str | None = None) -> models.Claim:  # fmt: skip
        fields = {"agent_id": agent_id, "pattern": pattern, "kind": kind, "exclusive": exclusive, "ttl_s": ttl_s,
                  "reason": reason}  # fmt: skip
        payload = models.ClaimRequest.model_validate(fields)
        return await self._model(models.Claim, "POST", "/claims", json=payload.model_dump(exclude_none=True))

    async def claims(self, *, holder: str | None = None, state: str | None = "held") -> list[models.Claim]:
        return await self._models(models.Claim, "/claims", params={"holder": holder, "state": state})

    async def release_claim(self, claim_id: str, *, agent_id: str | None = None) -> models.Claim:
        return await self._model(models.Claim, "DELETE", f"/claims/{_id(claim_id)}", params={"agent_id": agent_id})

    async def hand_off(self, claim_id: str, to_agent: str, *, note: str = "", context: dict[str, Any] | None = None,
                       agent_id: str | None = None) -> models.Claim:  # fmt: skip
        payload = models.Handoff(agent_id=agent_id, to_agent=to_agent, note=note, context=context or {})
        return await self._model(models.Claim, "POST", f"/claims/{_id(claim_id)}/handoff",
                                 json=payload.model_dump(exclude_none=True))  # fmt: skip

    # -- tasks ---------------------------------------------------------------------------------------------

    async def create_task(self, task_type: str, **fields: Any) -> models.TaskState:
        """Queue a task (`payload`, `priority`, `capabilities`, `depends_on`, `run_at`, ... as `TaskCreate`)."""
        body = models.TaskCreate(task_type=task_type, **fields).model_dump(mode="json", exclude_none=True)
        return await self._model(models.TaskState, "POST", "/tasks", json=body)

    async def create_workflow(self, tasks: Iterable[models.TaskCreate]) -> list[models.TaskState]:
        body = models.Workflow(tasks=list(tasks)).model_dump(mode="json", exclude_none=True)
        answer = await self._request("POST", "/workflows", json=body)
        return TypeAdapter(list[models.TaskState]).validate_json(answer.content)

    async def task(self, task_id: str) -> models.Task:
        return await self._model(models.Task, "GET", f"/tasks/{_id(task_id)}")

    async def tasks(self, *, status: str | None = None, agent_id: str | None = None, task_type: str | None = None,
                    after: str = "", limit: int = 100) -> list[models.Task]:  # fmt: skip
        params = {"status": status, "agent_id": agent_id, "task_type": task_type, "after": after, "limit": limit}
        return await self._models(models.Task, "/tasks", params=params)

    async def queue_depth(self) -> list[models.QueueDepth]:
        return await self._models(models.QueueDepth, "/tasks/queue")

    async def cancel_task(self, task_id: str, reason: str = "") -> models.TaskState:
        return await self._model(models.TaskState, "POST", f"/tasks/{_id(task_id)}/cancel", json={"reason": reason})

    async def requeue_task(self, task_id: str, reason: str = "") -> models.TaskState:
        return await self._model(models.TaskState, "POST", f"/tasks/{_id(task_id)}/requeue", json={"reason": reason})

    async def claim_task(self, *, task_types: Iterable[str] = (), wait_s: float = 5.0, agent_id: str | None = None
                         ) -> models.ClaimAnswer:  # fmt: skip
        """Ask for a task; the answer has the `assignment` (its `attempt` goes with every later command), or why
        none (`declined`), or `pending` when the dispatcher did not answer within `wait_s`."""
        body = models.TaskClaim(agent_id=agent_id, task_types=list(task_types), wait_s=wait_s)
        return await self._model(models.ClaimAnswer, "POST", "/task-claims", json=body.model_dump(exclude_none=True))

    async def assignment(self, task_id: str) -> models.Assignment:
        return await self._model(models.Assignment, "GET", f"/tasks/{_id(task_id)}/assignment")

    async def _attempt(self, task_id: str, step: str, body: models.AttemptCommand) -> models.TaskState:
        return await self._model(models.TaskState, "POST", f"/tasks/{_id(task_id)}/{step}",
                                 json=body.model_dump(mode="json", exclude_none=True))  # fmt: skip

    async def start_task(self, task_id: str, attempt: int, *, agent_id: str | None = None) -> models.TaskState:
        return await self._attempt(task_id, "start", models.AttemptCommand(agent_id=agent_id, attempt=attempt))

    async def task_heartbeat(self, task_id: str, attempt: int, *, progress: dict[str, Any] | None = None,
                             agent_id: str | None = None) -> models.TaskState:  # fmt: skip
        """Still at it; a `ConflictError` with rule `task-finished` means the task was cancelled: stop."""
        body = models.TaskHeartbeat(agent_id=agent_id, attempt=attempt, progress=progress or {})
        return await self._attempt(task_id, "heartbeat", body)

    async def complete_task(self, task_id: str, attempt: int, *, result: dict[str, Any] | None = None,
                            agent_id: str | None = None) -> models.TaskState:  # fmt: skip
        body = models.TaskCompletion(agent_id=agent_id, attempt=attempt, result=result or {})
        return await self._attempt(task_id, "complete", body)

    async def fail_task(self, task_id: str, attempt: int, error: str, *, retryable: bool = True,
                        agent_id: str | None = None) -> models.TaskState:  # fmt: skip
        body = models.TaskFailure(agent_id=agent_id, attempt=attempt, error=error, retryable=retryable)
        return await self._attempt(task_id, "fail", body)

    async def snooze_task(self, task_id: str, attempt: int, delay_s: float, *, reason: str = "",
                          agent_id: str | None = None) -> models.TaskState:  # fmt: skip
        body = models.TaskSnooze(agent_id=agent_id, attempt=attempt, delay_s=delay_s, reason=reason)
        return await self._attempt(task_id, "snooze", body)

    async def overview(self) -> models.Overview:
        return await self._model(models.Overview, "GET", "/overview")

    async def statistics(self, agent_id: str) -> models.TaskStatistics:
        return await self._model(models.TaskStatistics, "GET", f"/agents/{_id(agent_id)}/statistics")

    # -- schedules -----------------------------------------------------------------------------------------

    async def create_schedule(self, cron: str, action: dict[str, Any], **fields: Any) -> models.ScheduleState:
        """A schedule (`time_zone`, `overlap`, `catch_up`, `catch_up_window_s`, `grace_s`, `schedule_id`); `action`
        is `{"kind": "task", "task": {...}}` or `{"kind": "chat", "body": ...}`."""
        body = models.ScheduleCreate.model_validate({"cron": cron, "action": action, **fields})
        return await self._model(models.ScheduleState, "POST", "/schedules",
                                 json=body.model_dump(mode="json", exclude_none=True))  # fmt: skip

    async def change_schedule(self, schedule_id: str, **changes: Any) -> models.ScheduleState:
        return await self._model(models.ScheduleState, "PATCH", f"/schedules/{_id(schedule_id)}", json=changes)

    async def pause_schedule(self, schedule_id: str, reason: str = "") -> models.ScheduleState:
        return await self._model(models.ScheduleState, "POST", f"/schedules/{_id(schedule_id)}/pause",
                                 json={"reason": reason})  # fmt: skip

    async def resume_schedule(self, schedule_id: str) -> models.ScheduleState:
        return await self._model(models.ScheduleState, "POST", f"/schedules/{_id(schedule_id)}/resume")

    async def delete_schedule(self, schedule_id: str, reason: str = "") -> models.ScheduleState:
        return await self._model(models.ScheduleState, "DELETE", f"/schedules/{_id(schedule_id)}",
                                 params={"reason": reason})  # fmt: skip

    async def schedules(self) -> list[models.ScheduleRow]:
        return await self._models(models.ScheduleRow, "/schedules")

    async def schedule(self, schedule_id: str) -> models.ScheduleRow:
        return await self._model(models.ScheduleRow, "GET", f"/schedules/{_id(schedule_id)}")

    # -- agent programs ------------------------------------------------------------------------------------

    async def define_program(self, agent_id: str, command: list[str], **policy: Any) -> models.ProgramState:
        """The command line the agent runs as (`env`, `working_dir`, `max_restarts`, `restart_delay_s`,
        `stop_grace_s`, `proven_after_s`); an admin's token."""
        body = models.ProgramDefine(command=command, **policy)
        return await self._model(models.ProgramState, "PUT", f"/programs/{_id(agent_id)}", json=body.model_dump())

    async def start_program(self, agent_id: str, reason: str = "") -> models.ProgramState:
        return await self._model(models.ProgramState, "POST", f"/agents/{_id(agent_id)}/start", json={"reason": reason})

    async def stop_program(self, agent_id: str, reason: str = "") -> models.ProgramState:
        return await self._model(models.ProgramState, "POST", f"/agents/{_id(agent_id)}/stop", json={"reason": reason})

    async def restart_program(self, agent_id: str, reason: str = "") -> models.ProgramState:
        return await self._model(models.ProgramState, "POST", f"/agents/{_id(agent_id)}/restart",
                                 json={"reason": reason})  # fmt: skip

    async def programs(self) -> list[models.ProgramRow]:
        return await self._models(models.ProgramRow, "/programs")

    async def program(self, agent_id: str) -> models.ProgramState:
        return await self._model(models.ProgramState, "GET", f"/programs/{_id(agent_id)}")

    # -- budgets -------------------------------------------------------------------------------------------

    async def set_budget(self, budget_id: str, limit_tokens: int, *, reset_hour: int = 0, time_zone: str = "UTC"
                         ) -> models.Budget:  # fmt: skip
        body = models.BudgetLimit(limit_tokens=limit_tokens, reset_hour=reset_hour, time_zone=time_zone)
        return await self._model(models.Budget, "PUT", f"/budgets/{_id(budget_id)}", json=body.model_dump())

    async def budget(self, budget_id: str) -> models.Budget:
        return await self._model(models.Budget, "GET", f"/budgets/{_id(budget_id)}")

    async def budgets(self) -> list[models.Budget]:
        return await self._models(models.Budget, "/budgets")

    async def reserve_tokens(self, tokens: int, *, ttl_s: float = 600.0, purpose: str = "",
                             reservation_id: str | None = None, agent_id: str | None = None
                             ) -> models.Reservation:  # fmt: skip
        """Hold tokens before an LLM call; `ConflictError` (code `budget_exceeded`) names the budget that has too
        little left (`body["budget_id"]`, `body["remaining_tokens"]`)."""
        body = models.ReservationRequest(agent_id=agent_id, tokens=tokens, ttl_s=ttl_s, purpose=purpose,
                                         reservation_id=reservation_id)  # fmt: skip
        return await self._model(models.Reservation, "POST", "/budgets/reservations",
                                 json=body.model_dump(exclude_none=True))  # fmt: skip

    async def settle_tokens(self, reservation_id: str, used_tokens: int, *, agent_id: str | None = None
                            ) -> models.Settlement:  # fmt: skip
        body = models.SettlementRequest(agent_id=agent_id, used_tokens=used_tokens).model_dump(exclude_none=True)
        path = f"/budgets/reservations/{_id(reservation_id)}/settle"
        return await self._model(models.Settlement, "POST", path, json=body)

    async def release_tokens(self, reservation_id: str, *, reason: str = "", agent_id: str | None = None
                             ) -> list[models.BudgetLeft]:  # fmt: skip
        body = models.ReleaseRequest(agent_id=agent_id, reason=reason).model_dump(exclude_none=True)
        answer = await self._request("POST", f"/budgets/reservations/{_id(reservation_id)}/release", json=body)
        return TypeAdapter(list[models.BudgetLeft]).validate_json(answer.content)

    # -- tools -----------------------------------------------------------------------------------------------

    async def tool_catalogue(self) -> list[dict[str, Any]]:
        answer = await self._request("GET", "/tools")
        listed: list[dict[str, Any]] = answer.json()
        return listed

    async def call_tool(self, name: str, arguments: dict[str, Any], *, session_id: str | None = None,
                        step_id: str | None = None, idempotency_key: str | None = None) -> Any:  # fmt: skip
        """A tool of the catalogue, run as this client's token; its result. A tool's refusal is an `ApiError` as
        its route would raise it (a read-only token's write: 403, code `read_only_token`)."""
        body = {"arguments": arguments, "session_id": session_id, "step_id": step_id}
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        answer = await self._request("POST", f"/tools/{quote(name, safe='')}", json=body, headers=headers)
        return answer.json()["result"]

    async def document_text(self, document_id: str) -> dict[str, Any]:
        """A collaborative document's text as stored (`layout`, `text`, `truncated`, `updates`)."""
        answer = await self._request("GET", f"/documents/{quote(document_id, safe='')}/text")
        found: dict[str, Any] = answer.json()
        return found

    async def mark_place(self, document_id: str, text: str, latitude: float, longitude: float, *,
                         occurrences: str = "all") -> dict[str, Any]:  # fmt: skip
        """Mark a place where `text` stands in a document; how many occurrences were marked."""
        body = {"text": text, "latitude": latitude, "longitude": longitude, "occurrences": occurrences}
        answer = await self._request("POST", f"/documents/{_id(document_id)}/marks", json=body)
        found: dict[str, Any] = answer.json()
        return found

    # -- planner sessions ------------------------------------------------------------------------------------

    async def ask(self, session_id: str, content: str, *, title: str = "") -> AsyncIterator[tuple[str, Any]]:
        """Post a request to a planner session and follow its turn as it happens: (event name, data) pairs —
        `analysis`, `plan_created`, `step_started`, `executor_spawned`, `text`, `tool_call`, `tool_result`,
        `step_completed`, `step_failed`, `plan_finished`, then `done` or `error`."""
        body = {"content": content, "title": title}
        headers = {"accept": "text/event-stream", "idempotency-key": uuid.uuid4().hex}
        async with self._http.stream("POST", f"/sessions/{quote(session_id, safe='')}/messages", json=body,
                                     headers=headers, timeout=httpx.Timeout(30, read=None)) as answer:  # fmt: skip
            if answer.status_code >= 400:
                await answer.aread()
                raise _error(answer)
            name = ""
            async for line in answer.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    yield name, orjson.loads(line.removeprefix("data: "))

    async def session(self, session_id: str) -> dict[str, Any]:
        answer = await self._request("GET", f"/sessions/{quote(session_id, safe='')}")
        found: dict[str, Any] = answer.json()
        return found

    async def cancel_plan(self, session_id: str, plan_id: str, reason: str = "") -> dict[str, Any]:
        path = f"/sessions/{quote(session_id, safe='')}/plans/{quote(plan_id, safe='')}/cancel"
        answer = await self._request("POST", path, json={"reason": reason})
        found: dict[str, Any] = answer.json()
        return found

    def use_token(self, token: str) -> None:
        """Send `token` from now on (a renewed one)."""
        self.token = token
        self._http.headers["authorization"] = f"Bearer {token}"

    # -- the live feed ---------------------------------------------------------------------------------------

    async def feed(self, topics: Iterable[str], *, after: str | None = None) -> AsyncIterator[models.FeedEvent]:
        """The events of `topics` after `after` (the start of the log when None), live; reconnects after a lost
        connection and resumes from the last position seen (events and the feed's position marks alike), so
        nothing is lost or repeated. Ends on a close the server means (a bad token, a topic out of scope)."""
        position = after
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/api/v1/ws"
        attempt = 0
        while True:
            query = {"topics": ",".join(topics), "token": self.token, **({"after": position} if position else {})}
            address = url + "?" + "&".join(f"{k}={quote(v, safe=',:/')}" for k, v in query.items())
            try:
                async with connect(address, max_size=16 * 1024 * 1024) as socket:
                    attempt = 0
                    async for raw in socket:
                        item = orjson.loads(raw)
                        if item.get("position"):
                            position = item["position"]
                        if item.get("type") == "event":
                            yield models.FeedEvent.model_validate(item)
                    code = socket.close_code
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError) as error:
                code = getattr(getattr(error, "rcvd", None), "code", 1006)
            if code not in RESUMABLE_CLOSES and code != 1000:
                return
            await asyncio.sleep(_backoff(attempt))
            attempt += 1


def _retry_after(answer: httpx.Response) -> float:
    """How long to wait before trying again: what the answer asks, kept between 0.5 and 30 s with a little jitter
    (a `Retry-After: 0` from a proxy must not make a waiting client send thousands of requests a second)."""
    return min(max(_asked_wait(answer), 0.5), 30.0) * random.uniform(1.0, 1.2)


def _asked_wait(answer: httpx.Response) -> float:
    """The answer's `Retry-After` in seconds: a number or an HTTP date (RFC 9110); 1 when absent or unreadable."""
    given = answer.headers.get("retry-after", "1").strip()
    try:
        return float(given)
    except ValueError:
        pass
    try:
        return (email.utils.parsedate_to_datetime(given) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return 1.0


def _first_try_under_way(answer: httpx.Response) -> bool:
    """The same request (its Idempotency-Key) is still under way from an earlier try."""
    return answer.status_code == 409 and answer.headers.get("content-type", "").startswith("application/json") and (
        answer.json().get("code") == "idempotency_key_in_progress"
    )


def _backoff(attempt: int) -> float:
    return float(min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.0))


def _error(answer: httpx.Response) -> ApiError:
    try:
        body = answer.json()
    except ValueError:
        body = {"detail": answer.text}
    if not isinstance(body, dict):
        body = {"detail": body}
    error = BY_STATUS.get(answer.status_code, ApiError)(answer.status_code, body)
    if isinstance(error, RateLimitedError):
        error.retry_after = max(_asked_wait(answer), 0.0)
    return error
