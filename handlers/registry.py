"""Finding handlers by name: installed ones (entry point group `agentlog.handlers`) or `module:attribute`.

The contract for a plugin: its entry point names a `Handler` instance, or a callable taking no arguments that
returns one (called once per process, so a factory can build its state fresh). The handler's own `name` counts:
it is the name of its checkpoint, so two packages may not claim one name. A plugin that fails to load is reported
in one line (`installed_handlers().errors`) and the others work all the same.
"""

from __future__ import annotations

from agentlog.eventstore.errors import NotFoundError
from agentlog.eventstore.loading import Plugins, describe_error, load_entry_points, load_object
from agentlog.handlers.handler import Handler

ENTRY_POINT_GROUP = "agentlog.handlers"


class HandlerNotFoundError(NotFoundError):
    """No handler of that name; `agentlog handler list` shows the installed ones."""


def as_handler(target: object) -> Handler:
    """`target` itself, or what calling it returns, when that is a handler."""
    factory = isinstance(target, type) or (callable(target) and not isinstance(target, Handler))
    candidate = target() if factory else target  # type: ignore[operator]
    if not isinstance(candidate, Handler):
        raise TypeError(f"{candidate!r} is not a handler (needs name, event_types and handle)")
    return candidate


def installed_handlers() -> Plugins[Handler]:
    """Every handler the installed distributions declare, by its name, and the entry points that failed."""
    return load_entry_points(ENTRY_POINT_GROUP, as_handler, lambda handler: handler.name)


def resolve_handler(spec: str, installed: Plugins[Handler] | None = None) -> Handler:
    """A handler by installed name, or by `package.module:attribute` (a handler or a factory of one)."""
    if ":" in spec:
        try:
            return as_handler(load_object(spec))
        except Exception as error:
            raise HandlerNotFoundError(f"cannot load handler {spec!r}: {describe_error(error)}") from error
    plugins = installed if installed is not None else installed_handlers()
    if spec not in plugins.found:
        known = ", ".join(sorted(plugins.found)) or "none installed"
        broken = "".join(f"; broken: {problem}" for problem in plugins.errors)
        raise HandlerNotFoundError(f"no handler named {spec!r} (installed: {known}){broken}")
    return plugins.found[spec]
