"""Finding projections: installed ones (entry point group `agentlog.projections`) or `module:attribute`."""

from __future__ import annotations

from importlib.metadata import entry_points

from eventstore.errors import NotFoundError
from eventstore.loading import load_object
from projections.projection import Projection, check_projection

ENTRY_POINT_GROUP = "agentlog.projections"


class ProjectionNotFoundError(NotFoundError):
    """No projection of that name; `agentlog report` and `agentlog replay --help` list what is installed."""


def installed_projections() -> dict[str, Projection]:
    found: dict[str, Projection] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        candidate = entry_point.load()
        if not isinstance(candidate, Projection):
            raise ProjectionNotFoundError(f"entry point {entry_point.name} is not a projection")
        found[candidate.name] = check_projection(candidate)
    return dict(sorted(found.items()))


def resolve_projection(spec: str) -> Projection:
    if ":" in spec:
        try:
            candidate = load_object(spec)
        except (ImportError, AttributeError) as error:
            raise ProjectionNotFoundError(f"cannot load projection {spec!r}: {error}") from error
        if not isinstance(candidate, Projection):
            raise ProjectionNotFoundError(f"{spec} is not a projection")
        return check_projection(candidate)
    projections = installed_projections()
    if spec not in projections:
        known = ", ".join(projections) or "none installed"
        raise ProjectionNotFoundError(f"no projection named {spec!r} (installed: {known})")
    return projections[spec]
