"""Names in the coordination domain: agent ids, lock resources and claim patterns, and the streams they live on.

Every entity is a stream: an agent's registry entry (`member-<id>`), its heartbeats (`heartbeat-<id>`), inbox,
checkpoints and memories, one stream per lock resource, one stream for the chat and one for every claim (claims
conflict across each other, so their order is one stream's: an append at the version read is the whole check).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Annotated

from pydantic import StringConstraints

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
_AGENT_ID = re.compile(AGENT_ID_PATTERN)

MAX_RESOURCE_CHARS = 512
_FORBIDDEN_IN_RESOURCE = re.compile(r"[\x00-\x1f\x7f\\]")

CHAT_STREAM = "chat"
CLAIMS_STREAM = "claims"


class InvalidNameError(ValueError):
    """An agent id, lock resource or claim pattern the coordination domain refuses; the message says why."""


def check_agent_id(agent_id: str) -> str:
    if not _AGENT_ID.match(agent_id):
        raise InvalidNameError(
            f"agent id {agent_id[:80]!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return agent_id


def normalise_resource(resource: str) -> str:
    """The one name of a lock resource: `src/./a.py`, `src//a.py` and `./src/a.py` are `src/a.py`.

    Paths are relative to the repository: a leading `/`, a `..` that climbs out of it, backslashes, control
    characters and empty names are refused (a resource is a name, never a file the server opens).
    """
    if not isinstance(resource, str) or not resource.strip():
        raise InvalidNameError("a resource name is empty")
    if len(resource) > MAX_RESOURCE_CHARS:
        raise InvalidNameError(f"a resource name is at most {MAX_RESOURCE_CHARS} characters")
    if _FORBIDDEN_IN_RESOURCE.search(resource):
        raise InvalidNameError("a resource name may not hold control characters or backslashes")
    if resource.startswith("/"):
        raise InvalidNameError(f"resource {resource!r} is absolute; name it relative to the repository")
    normal = posixpath.normpath(resource)
    if normal == ".." or normal.startswith("../"):
        raise InvalidNameError(f"resource {resource!r} climbs out of the repository ('..')")
    if normal == ".":
        raise InvalidNameError(f"resource {resource!r} names the repository itself; name a path in it")
    return normal


def check_pattern(pattern: str) -> str:
    """A claim's path glob (`src/**`, `docs/*.md`) or topic, normalised as resources are (globs keep their stars)."""
    return normalise_resource(pattern)


def member_stream(agent_id: str) -> str:
    return f"member-{agent_id}"


def heartbeat_stream(agent_id: str) -> str:
    return f"heartbeat-{agent_id}"


def inbox_stream(agent_id: str) -> str:
    return f"inbox-{agent_id}"


def checkpoint_stream(agent_id: str) -> str:
    return f"checkpoint-{agent_id}"


def memory_stream(agent_id: str) -> str:
    return f"memory-{agent_id}"


def lock_stream(resource: str) -> str:
    """One stream per normalised resource, named by a digest (resources may hold any printable character)."""
    return f"lock-{hashlib.sha256(resource.encode()).hexdigest()[:32]}"


def agent_of_stream(stream_id: str) -> str:
    """The agent id of a `member-`, `heartbeat-`, `inbox-`, `checkpoint-` or `memory-` stream."""
    return stream_id.split("-", 1)[1]
