"""Loading what users plug in: objects named `package.module:attribute`, and entry points of installed packages.

A plugin that fails to load is one line naming its entry point and its error; the others load all the same, so one
broken package never takes down `up` or a healthy handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("agentlog.plugins")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PluginError:
    """An entry point that could not be loaded: named, with its error in one line."""

    group: str
    name: str
    value: str
    error: str

    def __str__(self) -> str:
        return f"entry point {self.name!r} ({self.value}) in {self.group}: {self.error}"


@dataclass(slots=True)
class Plugins(Generic[T]):
    """What one entry point group holds: the plugins that loaded, by their own name, and the ones that did not."""

    found: dict[str, T] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)


PLUGIN_FAILURES: tuple[type[BaseException], ...] = (Exception, SystemExit)
"""What loading a plugin may raise and still be only a broken plugin: a plugin's `sys.exit()` on import ends the
plugin, not the process (KeyboardInterrupt still stops it)."""


def describe_error(error: BaseException) -> str:
    """An exception as one line (a plugin's traceback is its author's business, not the operator's screen)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_object(spec: str) -> object:
    """The object `spec` names; ImportError or AttributeError say what could not be found."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def load_entry_points(group: str, convert: Callable[[object], T], name_of: Callable[[T], str]) -> Plugins[T]:
    """Every entry point of `group`, loaded and made a `T` by `convert` (which raises on anything else), keyed by
    the name the plugin gives itself (`name_of`); a second plugin claiming a name already taken is an error."""
    plugins: Plugins[T] = Plugins()
    for entry_point in sorted(metadata.entry_points(group=group), key=lambda ep: (ep.name, ep.value)):
        try:
            plugin = convert(entry_point.load())
            name = name_of(plugin)
            if name in plugins.found:
                raise ValueError(f"{name!r} is already the name of another plugin in {group}")
        except PLUGIN_FAILURES as error:
            plugins.errors.append(PluginError(group, entry_point.name, entry_point.value, describe_error(error)))
            continue
        plugins.found[name] = plugin
    return plugins


def log_plugin_errors(errors: list[PluginError]) -> None:
    """One error line per broken plugin."""
    for problem in errors:
        log.error("plugin.broken", group=problem.group, entry_point=problem.name, value=problem.value,
                  error=problem.error)  # fmt: skip
