"""What the API refused, as exceptions: one per status, each carrying the answer's `code` and details."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API refused the request; `status`, `code` and `detail` say why, `body` is the whole answer."""

    status = 0

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("code", ""))
        self.detail = body.get("detail")
        super().__init__(f"{status} {self.code}: {self.detail}")


class UnauthorizedError(ApiError):
    """401: no token, or one the server does not accept (expired, revoked, another database's)."""


class ForbiddenError(ApiError):
    """403: the token's kind or agent may not do this."""


class NotFoundError(ApiError):
    """404: no such agent, lock or claim."""


class ConflictError(ApiError):
    """409: held by another (`holder`, `conflicts`), or a stale grant (`fencing_token` is the current one)."""

    @property
    def holder(self) -> str | None:
        holder = self.body.get("holder")
        return None if holder is None else str(holder)

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        return list(self.body.get("conflicts") or [])


class PreconditionFailedError(ApiError):
    """412: If-Match named a version the entity is no longer at (`current_version`)."""

    @property
    def current_version(self) -> int | None:
        version = self.body.get("current_version")
        return None if version is None else int(version)


class InvalidRequestError(ApiError):
    """422: the request does not fit (`detail` names each field)."""


class RateLimitedError(ApiError):
    """429: too many requests for this token; retry after `retry_after` seconds."""

    retry_after: float = 1.0


BY_STATUS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    422: InvalidRequestError,
    429: RateLimitedError,
}
