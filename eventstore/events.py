"""Typed events and the catalogue that knows every type, its schema versions and its upcasters.

An event type is a frozen pydantic model with a type name and a schema version. History is never edited: when an
event's shape changes, the new shape is registered as the next schema version together with an upcaster that
turns a payload of the previous version into the new one. Reading always yields the newest version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from agentlog.eventstore.errors import (
    EventSchemaError,
    InvalidEventError,
    NewerSchemaVersionError,
    UnknownEventTypeError,
)
from agentlog.eventstore.loading import PLUGIN_FAILURES, PluginError, describe_error, log_plugin_errors

EVENT_TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,127}$")

EVENT_TYPES_ENTRY_POINTS = "agentlog.event_types"

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class Event(BaseModel):
    """Base of every event type. Subclasses set `event_type`, `schema_version` and `category`.

    NaN and Infinity are written as such (`ser_json_inf_nan`), not as `null`: the store then finds them in the
    bytes and refuses the event (`storable`), where `null` would have changed the data without a word."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    category: ClassVar[str] = ""
    """The stream category the event belongs to (documentation and the catalogue listing)."""

    def to_data(self) -> Payload:
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        """The payload as JSON, straight from pydantic's serializer (the append path sends these bytes)."""
        return self.__pydantic_serializer__.to_json(self)


E = TypeVar("E", bound=type[Event])


@dataclass(frozen=True, slots=True)
class EventTypeVersion:
    """One schema version of one event type, as `agentlog types` lists it."""

    event_type: str
    schema_version: int
    category: str
    model: type[Event]
    description: str

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    def payload_rules(self) -> dict[str, Any]:
        """What the log's SQL path checks of a payload of this version (`agentlog.payload_problem`): required and
        allowed fields, and the JSON types of the fields whose schema names them plainly. Payloads from other
        languages meet these before they can reach a handler that would fail to decode them."""
        schema = self.json_schema()
        properties: dict[str, Any] = schema.get("properties", {})
        property_types = {name: types for name, spec in properties.items() if (types := _json_types(spec))}
        return {
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "required": sorted(schema.get("required", [])),
            "allowed": sorted(properties) if schema.get("additionalProperties") is False else None,
            "property_types": property_types,
            "json_schema": schema,
        }


def _json_types(spec: dict[str, Any]) -> list[str] | None:
    """The JSON types a property allows, when its schema says so plainly (a type, or anyOf plain types)."""
    kind = spec.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list) and all(isinstance(item, str) for item in kind):
        return list(kind)
    options = spec.get("anyOf")
    if isinstance(options, list) and options and all(set(option) == {"type"} for option in options):
        return [str(option["type"]) for option in options]
    return None


def _owner_of(module: str) -> str:
    """The top-level package a module belongs to: every schema version of a type and its upcasters come from the
    package that first registered it, so one package (a plugin) cannot reshape another's events."""
    return module.partition(".")[0].partition(":")[0]


def _format_validation_error(event_type: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(payload)"
        problems.append(f"{where}: {item['msg']}")
    return f"payload does not match {event_type}: " + "; ".join(problems)


class EventCatalogue:
    """Registry of event types by name and schema version, with upcasters between consecutive versions.

    A catalogue made with an `entry_point_group` fills itself from that group the first time it is asked about a
    type: each entry point names a module that registers its types on import (agentlog's own domains do so), an
    `Event` subclass, or an iterable of them. One that fails to load is logged in one line, kept in
    `plugin_errors`, and the others load all the same.
    """

    def __init__(self, entry_point_group: str | None = None) -> None:
        self._versions: dict[str, dict[int, EventTypeVersion]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._entry_point_group = entry_point_group
        self._loaded = entry_point_group is None
        self.plugin_errors: list[PluginError] = []

    def load_plugins(self) -> list[PluginError]:
        """Load the entry points once (every lookup does so first); the errors of the ones that failed."""
        if self._loaded:
            return self.plugin_errors
        self._loaded = True  # first: a plugin module that looks a type up while it loads must not recurse
        assert self._entry_point_group is not None
        # agentlog's own domains first: a plugin sorting before them must not take a name of ours and break them.
        ordered = sorted(
            metadata.entry_points(group=self._entry_point_group),
            key=lambda ep: (_owner_of(ep.value) != "agentlog", ep.name, ep.value),
        )
        for entry_point in ordered:
            versions = {name: dict(by_version) for name, by_version in self._versions.items()}
            upcasters = dict(self._upcasters)
            try:
                self._register_loaded(entry_point.load())
            except PLUGIN_FAILURES as error:
                # A plugin that breaks halfway registers nothing: what it registered before failing is taken out
                # (but not agentlog's own types, should it have imported a module of ours for the first time).
                added = [entry for entry in self._iter_all()
                         if entry.schema_version not in versions.get(entry.event_type, {})]  # fmt: skip
                kept_upcasters = {key: step for key, step in self._upcasters.items()
                                  if key not in upcasters and _owner_of(step.__module__) == "agentlog"}  # fmt: skip
                self._versions, self._upcasters = versions, {**upcasters, **kept_upcasters}
                for entry in added:
                    if _owner_of(entry.model.__module__) == "agentlog":
                        self._versions.setdefault(entry.event_type, {})[entry.schema_version] = entry
                self.plugin_errors.append(
                    PluginError(self._entry_point_group, entry_point.name, entry_point.value, describe_error(error))
                )
        log_plugin_errors(self.plugin_errors)
        return self.plugin_errors

    def _register_loaded(self, loaded: object) -> None:
        if isinstance(loaded, type) and issubclass(loaded, Event):
            self.register(loaded)
        elif isinstance(loaded, Iterable) and not isinstance(loaded, str | bytes):
            for model in loaded:
                if not (isinstance(model, type) and issubclass(model, Event)):
                    raise InvalidEventError(f"{model!r} is not an Event subclass")
                self.register(model)
        elif not hasattr(loaded, "__path__") and not hasattr(loaded, "__file__"):
            raise InvalidEventError(f"{loaded!r} is neither a module, an Event subclass nor a list of them")

    def _iter_all(self) -> Iterator[EventTypeVersion]:
        for versions in self._versions.values():
            yield from versions.values()

    def register(self, model: E) -> E:
        """Class decorator: add `model` to the catalogue under its type name and schema version."""
        event_type = getattr(model, "event_type", None)
        if not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
            raise InvalidEventError(f"{model.__name__} needs an event_type matching {EVENT_TYPE_PATTERN.pattern}")
        version = model.schema_version
        versions = self._versions.get(event_type, {})
        owners = {_owner_of(entry.model.__module__): entry.model for entry in versions.values()}
        theirs = next((other for owner, other in owners.items() if owner != _owner_of(model.__module__)), None)
        if theirs is not None:
            raise InvalidEventError(
                f"{event_type} belongs to {_owner_of(theirs.__module__)} ({theirs.__module__}.{theirs.__qualname__}):"
                f" {model.__module__}.{model.__qualname__} may not add schema version {version} to it; give the"
                " type a name of its own"
            )
        versions = self._versions.setdefault(event_type, {})
        existing = versions.get(version)
        if existing is not None and existing.model is not model:
            raise InvalidEventError(f"{event_type} schema version {version} is already registered")
        versions[version] = EventTypeVersion(
            event_type, version, model.category, model, (model.__doc__ or "").strip()
        )
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register the function turning `from_version` payloads into `from_version + 1` payloads."""

        def decorate(function: Upcaster) -> Upcaster:
            owner = _owner_of(function.__module__)
            models = [entry.model for entry in self._versions.get(event_type, {}).values()]
            others = [model for model in models if _owner_of(model.__module__) != owner]
            earlier = self._upcasters.get((event_type, from_version))
            if others or (earlier is not None and _owner_of(earlier.__module__) != owner):
                raise InvalidEventError(
                    f"{event_type} belongs to another package: {function.__module__}.{function.__qualname__} may"
                    f" not upcast its schema version {from_version}"
                )
            self._upcasters[(event_type, from_version)] = function
            return function

        return decorate

    def __contains__(self, event_type: object) -> bool:
        if not self._loaded:
            self.load_plugins()
        return event_type in self._versions

    def __iter__(self) -> Iterator[EventTypeVersion]:
        if not self._loaded:
            self.load_plugins()
        for event_type in sorted(self._versions):
            versions = self._versions[event_type]
            for version in sorted(versions):
                yield versions[version]

    def latest(self, event_type: str) -> EventTypeVersion:
        if not self._loaded:
            self.load_plugins()
        versions = self._versions.get(event_type)
        if not versions:
            raise UnknownEventTypeError(
                f"unknown event type {event_type!r}; run `agentlog types` to list the catalogue"
            )
        return versions[max(versions)]

    def version(self, event_type: str, schema_version: int) -> EventTypeVersion:
        """One registered schema version of a type."""
        if not self._loaded:
            self.load_plugins()
        entry = self._versions.get(event_type, {}).get(schema_version)
        if entry is None:
            self.latest(event_type)  # an unknown type says so
            raise UnknownEventTypeError(f"{event_type} has no schema version {schema_version} in the catalogue")
        return entry

    def parse(self, event_type: str, data: Mapping[str, Any]) -> Event:
        """Validate a payload of the newest schema version of `event_type` (e.g. from the CLI)."""
        entry = self.latest(event_type)
        try:
            return entry.model.model_validate(dict(data))
        except ValidationError as error:
            raise EventSchemaError(_format_validation_error(event_type, error)) from error

    def upcast(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> tuple[int, Payload]:
        """Bring a stored payload up to the newest schema version of its type.

        A payload no upcaster can take (an upcaster raising on it) is an `EventSchemaError`, like one that fails
        its schema; a version newer than the catalogue knows is a `NewerSchemaVersionError`: this process is older
        than the one that wrote it.
        """
        target = self.latest(event_type).schema_version
        if schema_version > target:
            raise NewerSchemaVersionError(
                f"{event_type} schema version {schema_version} is newer than this catalogue knows ({target}): "
                "the event was written by a newer release; run that release here"
            )
        payload = dict(data)
        version = schema_version
        while version < target:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise EventSchemaError(f"{event_type} has no upcaster from schema version {version}")
            try:
                payload = step(payload)
            except Exception as error:
                raise EventSchemaError(
                    f"{event_type} schema version {version} payload cannot be upcast: "
                    f"{type(error).__name__}: {error}"
                ) from error
            version += 1
        return version, payload

    def decode(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> Event:
        """The typed event for a stored payload, upcast to the newest schema version."""
        if not isinstance(data, Mapping):
            raise EventSchemaError(f"payload of {event_type} is a JSON {type(data).__name__}, not an object")
        _, payload = self.upcast(event_type, schema_version, data)
        return self.parse(event_type, payload)


catalogue = EventCatalogue(entry_point_group=EVENT_TYPES_ENTRY_POINTS)
"""The catalogue every part of agentlog reads: filled from the `agentlog.event_types` entry points (agentlog's own
domains and any installed plugin's) on first use; a type registers itself on import as well."""
