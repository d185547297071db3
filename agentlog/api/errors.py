"""Refusals as HTTP answers: one exception, its status, a stable code, and what it is about. Nothing is appended
for any of them (each is raised before the append, or is the append's own refusal)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from agentlog.domains.budgets.ledger import (
    BudgetBelowCommittedError,
    BudgetError,
    BudgetExceededError,
    BudgetNotSetError,
    InvalidBudgetError,
    ReservationNotYoursError,
    UnknownReservationError,
)
from agentlog.domains.coordination.errors import HeldError, NotFoundError, StaleGrantError
from agentlog.domains.coordination.names import InvalidNameError
from agentlog.domains.schedules.schedule import (
    InvalidScheduleError,
    ScheduleError,
    ScheduleExistsError,
    ScheduleTooLargeError,
    UnknownScheduleError,
)
from agentlog.eventstore import InvalidEventError
from agentlog.eventstore.errors import EventIdConflictError, EventTooLargeError

KEEP_IT_ELSEWHERE = "keep large content elsewhere and send its reference instead (a task's `payload_ref`)"
"""What to do about a body or an event over a size limit (the log's is 1 MiB, `MAX_EVENT_DATA_BYTES`)."""


class ApiError(Exception):
    """A request refused with `status`; `code` names the kind of refusal, `extra` goes into the answer."""

    def __init__(self, status: int, code: str, detail: Any, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(str(detail))
        self.status, self.code, self.detail, self.headers, self.extra = status, code, detail, headers, extra


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="agentlog"'})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def invalid(field: str, message: str, **extra: Any) -> ApiError:
    """A 422 naming one field of the body (`tasks.1.depends_on`), as FastAPI's own validation names fields."""
    loc: list[str | int] = ["body", *(int(part) if part.isdigit() else part for part in field.split("."))]
    return ApiError(422, "invalid", [{"loc": loc, "msg": message, "type": "value_error"}], **extra)


def problem(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"detail": error.detail, "code": error.code, **error.extra}, status_code=error.status, headers=error.headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return problem(error)

    @app.exception_handler(HeldError)
    async def held(_request: Request, error: HeldError) -> JSONResponse:
        conflicts = [{k: v for k, v in vars(c).items() if v is not None} for c in error.conflicts]
        holder = error.conflicts[0].holder if error.conflicts else None
        return problem(ApiError(409, "held", str(error), conflicts=conflicts, holder=holder))

    @app.exception_handler(StaleGrantError)
    async def stale(_request: Request, error: StaleGrantError) -> JSONResponse:
        return problem(ApiError(409, "stale_grant", str(error), holder=error.current_holder,
                                fencing_token=error.current_fencing_token))  # fmt: skip

    @app.exception_handler(NotFoundError)
    async def missing(_request: Request, error: NotFoundError) -> JSONResponse:
        return problem(not_found(str(error)))

    @app.exception_handler(InvalidNameError)
    async def invalid_name(_request: Request, error: InvalidNameError) -> JSONResponse:
        field = getattr(error, "field", None)  # a domain's error naming the body's field, else a name in the path
        loc = ["body", field] if isinstance(field, str) else ["path"]
        return problem(ApiError(422, "invalid_name", [{"loc": loc, "msg": str(error), "type": "value_error"}]))

    @app.exception_handler(BudgetError)
    async def budget_refused(_request: Request, error: BudgetError) -> JSONResponse:
        if isinstance(error, BudgetExceededError):
            return problem(ApiError(409, "budget_exceeded", str(error), budget_id=error.budget_id,
                                    remaining_tokens=error.remaining, period=error.period))  # fmt: skip
        if isinstance(error, BudgetBelowCommittedError):
            return problem(invalid("limit_tokens", str(error)))
        if isinstance(error, InvalidBudgetError):  # "time_zone: ..." names its field
            return problem(invalid(str(error).partition(":")[0], str(error)))
        if isinstance(error, ReservationNotYoursError):
            return problem(forbidden(str(error)))
        if isinstance(error, BudgetNotSetError | UnknownReservationError):
            return problem(not_found(str(error)))
        return problem(ApiError(409, "budget_refused", str(error)))

    @app.exception_handler(ScheduleError)
    async def schedule_refused(_request: Request, error: ScheduleError) -> JSONResponse:
        if isinstance(error, ScheduleTooLargeError):  # a firing's event would be over the log's limit
            return problem(ApiError(413, "too_large", str(error), limit_bytes=error.limit))
        if isinstance(error, InvalidScheduleError):  # "cron: ..." or "action.task.priority: ..." names its field
            field = str(error).partition(":")[0]
            named = all(part.isidentifier() or part.isdigit() for part in field.split("."))
            return problem(invalid(field if named else "body", str(error)))
        if isinstance(error, UnknownScheduleError):
            return problem(not_found(str(error)))
        if isinstance(error, ScheduleExistsError):
            return problem(ApiError(409, "exists", str(error)))
        return problem(ApiError(409, "schedule_refused", str(error)))

    @app.exception_handler(InvalidEventError)
    async def event_refused(_request: Request, error: InvalidEventError) -> JSONResponse:
        """The log's own refusal of what a request would append, never a 500: an event over the log's size limit
        (a body under the API's limit can make one, with the fields the event adds, and `API_MAX_BODY_BYTES` may
        be set above it) is a 413 saying the limit; anything else a 422 (the guard refuses a body holding a NUL
        first, naming its field; this is what is left, such as an event a route derived from the body)."""
        if isinstance(error, EventTooLargeError):
            made = f"the {error.event_type} event" if error.event_type else "an event"
            return problem(ApiError(
                413, "too_large", f"{made} this request makes would be {error.size:,} bytes; the log keeps events of "
                f"up to {error.limit:,} bytes: {KEEP_IT_ELSEWHERE}", limit_bytes=error.limit,
            ))  # fmt: skip
        return problem(ApiError(422, "invalid", [{"loc": ["body"], "msg": str(error), "type": "value_error"}]))

    @app.exception_handler(EventIdConflictError)
    async def replayed_otherwise(_request: Request, error: EventIdConflictError) -> JSONResponse:
        """A request run again under its Idempotency-Key (its first run was cut off after it appended, and its
        answer lost) that decides otherwise now: its events' ids are the first run's, with other content."""
        return problem(ApiError(
            409, "idempotency_key_replayed", "a request with this Idempotency-Key was recorded already and would "
            "now record something else: read what it did, or send the request with a new key to do it again",
        ))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
        return problem(ApiError(422, "invalid", errors))
