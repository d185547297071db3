"""Loading an object named `package.module:attribute` (handlers and projections given on the command line)."""

from __future__ import annotations

import importlib


def load_object(spec: str) -> object:
    """The object `spec` names; ImportError or AttributeError say what could not be found."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
