#!/usr/bin/env python3
"""The two quick-start commands, on a fresh machine with only Python 3.11+:

    python3 run.py up      # the whole system, on an embedded PostgreSQL unless AGENTLOG_DATABASE_URL is set
    python3 run.py test    # lint, types, layer contracts and the whole test suite (one test process per CPU)

Each creates `.venv` beside this file on first use and (re)installs the project when pyproject.toml changes.
`python3 run.py agentlog ARGS...` runs any other agentlog command in that environment.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("AGENTLOG_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTEST_NO_TESTS_COLLECTED = 5


def say(message: str) -> None:
    sys.stderr.write(f"run.py: {message}\n")


def ensure_environment(extras: str) -> None:
    """Create the virtualenv and install the project (with `extras`) unless it is already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py itself may be started by an older python3
        say(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
        raise SystemExit(1)
    if not (BIN / "python").exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    project = (ROOT / "pyproject.toml").read_bytes()
    digest = hashlib.sha256(project + extras.encode()).hexdigest()
    # A development install (extras "dev") also serves `up`, as long as it was made from this pyproject.toml.
    good_enough = {digest, hashlib.sha256(project + b"dev").hexdigest()} if extras == "" else {digest}
    stamp = VENV / ".agentlog-installed"
    if stamp.exists() and stamp.read_text() in good_enough:
        return
    say(f"installing agentlog{f'[{extras}]' if extras else ''} into {VENV}")
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-U", "pip"], check=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run([*pip, "install", "-e", target], cwd=ROOT, check=True)
    stamp.write_text(digest)


def run(command: list[str]) -> int:
    """Run `command` and return its exit code. Ctrl-C in a terminal reaches the child too, which shuts down in its
    own order (`agentlog up` detaches every agent first): this process waits for it instead of dying first."""
    child = subprocess.Popen(command, cwd=ROOT)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminate = signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))  # pass it on
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, terminate)


def test(arguments: list[str]) -> int:
    ensure_environment("dev")
    for name, check in (
        ("ruff", [str(BIN / "ruff"), "check", "."]),
        ("mypy", [str(BIN / "mypy")]),
        ("mypy on the benchmarks", [str(BIN / "mypy"), "--strict", "bench"]),
        ("mypy on the example plugin", [str(BIN / "mypy"), "--strict", "examples/orders/src"]),
        ("import contracts", [str(BIN / "lint-imports")]),
    ):
        say(f"checking {name}")
        if run(check) != 0:
            say(f"{name} failed")
            return 1
    code = run([str(BIN / "python"), "-m", "pytest", *_in_parallel(arguments), *arguments])
    if code == PYTEST_NO_TESTS_COLLECTED:
        say("pytest collected no tests: that is a failure, not a pass")
        return 1
    return code


def _in_parallel(arguments: list[str]) -> list[str]:
    """pytest-xdist's options for one test process per CPU, unless the arguments say how to run (`-n 0`, `-p
    no:xdist`, `--dist`). Most of the suite waits on other processes (`agentlog up`, workers, PostgreSQL); each
    test process has its own embedded PostgreSQL and every test its own database, so they never meet. Work
    stealing: a process left without tests takes some of another's, so the longest tests do not end up queued
    behind each other."""
    chosen = any(
        argument in {"-n", "--numprocesses", "--dist", "no:xdist", "-pno:xdist"}
        or argument.startswith(("--numprocesses=", "--dist=", "-n"))
        for argument in arguments
    )
    return [] if chosen else ["-n", "auto", "--dist", "worksteal"]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"up", "test", "agentlog"}:
        say("usage: python3 run.py up | test [pytest args] | agentlog ARGS...")
        return 2
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "test":
        return test(arguments)
    ensure_environment("")
    if command == "up":
        return run([str(BIN / "agentlog"), "up", *arguments])
    return run([str(BIN / "agentlog"), *arguments])


if __name__ == "__main__":
    raise SystemExit(main())
