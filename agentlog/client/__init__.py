"""A typed async client of the agentlog API; `agentlog.client.models` are the server's own request and answer models.

from agentlog.client import AgentlogClient
"""

from agentlog.client.client import AgentlogClient
from agentlog.client.errors import (
    ApiError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitedError,
    UnauthorizedError,
)

__all__ = [
    "AgentlogClient",
    "ApiError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PreconditionFailedError",
    "RateLimitedError",
    "UnauthorizedError",
]
