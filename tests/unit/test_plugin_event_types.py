"""Hostile or careless plugins of `agentlog.event_types`, each in a fresh interpreter (the catalogue fills itself
once per process): fake entry points are added to the installed ones before agentlog is imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """\
import json, sys
from importlib import metadata
sys.path.insert(0, {plugins!r})
_real = metadata.entry_points
def _entry_points(**selection):
    found = list(_real(**selection))
    if selection.get("group") == "agentlog.event_types":
        found += [metadata.EntryPoint(name, value, "agentlog.event_types") for name, value in {entry_points!r}]
    return found
metadata.entry_points = _entry_points
"""


def _run(tmp_path: Path, modules: dict[str, str], entry_points: list[tuple[str, str]], script: str) -> object:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    for name, text in modules.items():
        (plugins / f"{name}.py").write_text(textwrap.dedent(text))
    program = PRELUDE.format(plugins=str(plugins), entry_points=entry_points) + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


HIJACK = """\
from agentlog.eventstore import Event, catalogue

@catalogue.register
class PersonJoined(Event):
    event_type = "PersonJoined"
    schema_version = {version}
    category = "document"

    whatever: str
"""

REPORT = """\
from agentlog.eventstore import catalogue
errors = catalogue.load_plugins()
latest = catalogue.latest("PersonJoined")
from agentlog.domains.documents.events import PersonJoined  # ours still imports
print(json.dumps({"model": latest.model.__module__, "version": latest.schema_version,
                  "errors": [str(error) for error in errors]}))
"""


def test_a_plugin_cannot_add_a_schema_version_to_one_of_our_types(tmp_path: Path) -> None:
    seen = _run(tmp_path, {"hijack": HIJACK.format(version=3)}, [("zz_hijack", "hijack")], REPORT)
    assert seen["model"] == "agentlog.domains.documents.events" and seen["version"] == 2  # type: ignore[index]
    (error,) = seen["errors"]  # type: ignore[index]
    assert "zz_hijack" in error and "PersonJoined belongs to agentlog" in error


def test_a_plugin_sorting_first_cannot_take_our_type_and_break_our_domain(tmp_path: Path) -> None:
    seen = _run(tmp_path, {"hijack": HIJACK.format(version=2)}, [("aaa", "hijack")], REPORT)
    assert seen["model"] == "agentlog.domains.documents.events"  # type: ignore[index]
    (error,) = seen["errors"]  # type: ignore[index]
    assert "'aaa'" in error and "belongs to agentlog" in error


def test_a_plugin_cannot_replace_our_upcaster(tmp_path: Path) -> None:
    upcaster = """\
        from agentlog.eventstore import catalogue

        @catalogue.upcaster("PersonJoined", 1)
        def _mine(data):
            return {**data, "connection_id": "stolen", "server_id": "stolen"}
        """
    script = """\
        from agentlog.eventstore import catalogue
        errors = catalogue.load_plugins()
        event = catalogue.decode("PersonJoined", 1, {"user_id": "ada", "people_present": 1})
        print(json.dumps({"connection": event.connection_id, "errors": [str(error) for error in errors]}))
        """
    seen = _run(tmp_path, {"upcaster": upcaster}, [("aaa", "upcaster")], script)
    assert seen["connection"] != "stolen"  # type: ignore[index]
    assert len(seen["errors"]) == 1  # type: ignore[index, arg-type]


def test_a_plugin_that_breaks_halfway_registers_nothing(tmp_path: Path) -> None:
    half = """\
        from agentlog.eventstore import Event, catalogue

        @catalogue.register
        class HalfDone(Event):
            event_type = "HalfDone"
            x: int

        raise RuntimeError("broke after registering")
        """
    script = """\
        from agentlog.eventstore import catalogue
        errors = catalogue.load_plugins()
        print(json.dumps({"known": "HalfDone" in catalogue, "ours": "PersonJoined" in catalogue,
                          "errors": [str(error) for error in errors]}))
        """
    seen = _run(tmp_path, {"half": half}, [("half", "half")], script)
    assert seen == {  # the error names the entry point; the type it registered before failing is gone
        "known": False,
        "ours": True,
        "errors": ["entry point 'half' (half) in agentlog.event_types: RuntimeError: broke after registering"],
    }


def test_a_plugin_calling_sys_exit_on_import_is_a_broken_plugin_not_the_end_of_the_process(tmp_path: Path) -> None:
    found = _run(
        tmp_path,
        {"quitter": "import sys\nsys.exit(3)\n"},
        [("quitter", "quitter")],
        """\
        from agentlog.eventstore import catalogue
        from agentlog.eventstore.loading import load_entry_points
        errors = catalogue.load_plugins()
        loaded = load_entry_points("agentlog.event_types", lambda plugin: plugin, lambda plugin: "x")
        print(json.dumps({"catalogue": [str(e) for e in errors], "loader": [str(e) for e in loaded.errors]}))
        """,
    )
    assert isinstance(found, dict)
    assert any("quitter" in error and "SystemExit" in error for error in found["catalogue"]), found
    assert any("quitter" in error for error in found["loader"]), found
