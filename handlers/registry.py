"""Finding handlers by name: installed ones (entry point group `agentlog.handlers`) or `module:attribute`."""

from __future__ import annotations

from importlib.metadata import entry_points

from eventstore.errors import NotFoundError
from eventstore.loading import load_object
from handlers.handler import Handler

ENTRY_POINT_GROUP = "agentlog.handlers"


class HandlerNotFoundError(NotFoundError):
    """No handler of that name; `agentlog handler list` shows the installed ones."""


def _as_handler(target: object, source: str) -> Handler:
    candidate = target() if callable(target) and not isinstance(target, Handler) else target
    if not isinstance(candidate, Handler):
        raise HandlerNotFoundError(f"{source} is not a handler (needs name, event_types and handle)")
    return candidate


def installed_handlers() -> dict[str, Handler]:
    """Every handler the installed distributions declare, by name."""
    found: dict[str, Handler] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        handler = _as_handler(entry_point.load(), f"entry point {entry_point.name}")
        found[handler.name] = handler
    return found


def resolve_handler(spec: str) -> Handler:
    """A handler by installed name, or by `package.module:attribute` (a handler or a factory of one)."""
    if ":" in spec:
        try:
            target = load_object(spec)
        except (ImportError, AttributeError) as error:
            raise HandlerNotFoundError(f"cannot load handler {spec!r}: {error}") from error
        return _as_handler(target, spec)
    handlers = installed_handlers()
    if spec not in handlers:
        known = ", ".join(sorted(handlers)) or "none installed"
        raise HandlerNotFoundError(f"no handler named {spec!r} (installed: {known})")
    return handlers[spec]
