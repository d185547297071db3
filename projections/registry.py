"""Finding projections: installed ones (entry point group `agentlog.projections`) or `module:attribute`.

The contract for a plugin: its entry point names a `Projection` instance, or a callable taking no arguments that
returns one. The projection's own `name` counts (its tables' schema and its checkpoint are named after it). A
plugin that fails to load, or whose projection fails its checks, is reported in one line
(`installed_projections().errors`) and the others work all the same.
"""

from __future__ import annotations

from agentlog.eventstore.errors import NotFoundError
from agentlog.eventstore.loading import Plugins, describe_error, load_entry_points, load_object
from agentlog.projections.projection import Projection, check_projection

ENTRY_POINT_GROUP = "agentlog.projections"


class ProjectionNotFoundError(NotFoundError):
    """No projection of that name; `agentlog report` and `agentlog replay --help` list what is installed."""


def as_projection(target: object) -> Projection:
    """`target` itself, or what calling it returns, when that is a valid projection."""
    factory = isinstance(target, type) or (callable(target) and not isinstance(target, Projection))
    candidate = target() if factory else target  # type: ignore[operator]
    if not isinstance(candidate, Projection):
        raise TypeError(f"{candidate!r} is not a projection")
    return check_projection(candidate)


def installed_projections() -> Plugins[Projection]:
    plugins = load_entry_points(ENTRY_POINT_GROUP, as_projection, lambda projection: projection.name)
    plugins.found = dict(sorted(plugins.found.items()))
    return plugins


def resolve_projection(spec: str, installed: Plugins[Projection] | None = None) -> Projection:
    if ":" in spec:
        try:
            return as_projection(load_object(spec))
        except Exception as error:
            raise ProjectionNotFoundError(f"cannot load projection {spec!r}: {describe_error(error)}") from error
    plugins = installed if installed is not None else installed_projections()
    if spec not in plugins.found:
        known = ", ".join(plugins.found) or "none installed"
        broken = "".join(f"; broken: {problem}" for problem in plugins.errors)
        raise ProjectionNotFoundError(f"no projection named {spec!r} (installed: {known}){broken}")
    return plugins.found[spec]
