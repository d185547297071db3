"""Drive the real Y.js client (`tests/support/yjs_client/client.mjs`: yjs + y-websocket on Node) from tests.

`ensure_node_client()` installs the client's npm dependencies once (`npm ci`, skipped while the lockfile is
unchanged, serialised across processes by a file lock); `run_yjs_client()` runs one client to completion and parses
its JSON-lines output. See `client.mjs` for the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENT_DIR = Path(__file__).resolve().parent / "yjs_client"
CLIENT_SCRIPT = CLIENT_DIR / "client.mjs"
_STAMP_NAME = ".agentlog-install-stamp"
_NPM_CI_TIMEOUT_S = 300.0
# How long past the client's own --timeout-ms we wait before killing it: node's start-up plus the clean disconnect.
_KILL_GRACE_S = 15.0
# Longer sentences go through stdin: Linux caps a single argv string at 128 KiB (MAX_ARG_STRLEN).
_MAX_ARGV_SENTENCE_BYTES = 32 * 1024

_install_lock = threading.Lock()
_installed: Path | None = None


class NodeClientError(RuntimeError):
    """The Node client could not be installed or run."""


@dataclass
class YjsClientResult:
    returncode: int
    marks: list[dict[str, Any]] = field(default_factory=list)
    """One `{"text": ..., "geo": ...}` per mark the client saw on the text it typed."""
    done: dict[str, Any] | None = None
    """The final `{"done": ...}` line, if any."""
    closed: dict[str, Any] | None = None
    """`{"closed": true, "code": ..., "reason": ..., "error": ..., "http_status": ...}` under `expect_close`."""
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.done is not None and self.done.get("done") is True

    def describe(self) -> str:
        """A summary for assertion messages."""
        return f"returncode={self.returncode}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


def node_available() -> bool:
    """Whether `node` and `npm` are on PATH."""
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _lockfile_digest() -> str:
    data = (CLIENT_DIR / "package-lock.json").read_bytes() + b"\0" + (CLIENT_DIR / "package.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def _lock_path() -> Path:
    key = hashlib.sha256(str(CLIENT_DIR).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"agentlog-yjs-client-{key}.lock"


def ensure_node_client() -> Path:
    """Install the client's npm dependencies if needed, and return the path of `client.mjs`.

    Runs `npm ci` into `tests/support/yjs_client/node_modules` unless a previous install of the same
    package-lock.json is there. Blocking; safe to call from parallel processes and threads.
    """
    global _installed  # noqa: PLW0603 - a per-process memo of the (idempotent) install
    if _installed is not None:
        return _installed
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise NodeClientError("node and npm must be on PATH to run the Y.js client")
    with _install_lock, _lock_path().open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            digest = _lockfile_digest()
            stamp = CLIENT_DIR / "node_modules" / _STAMP_NAME
            if not (stamp.is_file() and stamp.read_text().strip() == digest):
                try:
                    proc = subprocess.run(
                        [npm, "ci", "--no-audit", "--no-fund"],
                        cwd=CLIENT_DIR,
                        capture_output=True,
                        text=True,
                        timeout=_NPM_CI_TIMEOUT_S,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise NodeClientError(f"npm ci timed out after {_NPM_CI_TIMEOUT_S}s in {CLIENT_DIR}") from exc
                if proc.returncode != 0:
                    raise NodeClientError(
                        f"npm ci failed in {CLIENT_DIR} (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                    )
                stamp.write_text(digest + "\n")
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    _installed = CLIENT_SCRIPT
    return CLIENT_SCRIPT


def _parse_output(returncode: int, stdout: str, stderr: str) -> YjsClientResult:
    result = YjsClientResult(returncode=returncode, stdout=stdout, stderr=stderr)
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        if "closed" in obj:
            result.closed = obj
        elif "done" in obj:
            result.done = obj
        elif "geo" in obj:
            result.marks.append(obj)
    return result


async def run_yjs_client(
    url: str,
    room: str,
    token: str,
    *,
    mode: str,
    sentence: str,
    expect_marks: int,
    timeout_s: float,
    expect_close: bool = False,
    hold_ms: int = 0,
) -> YjsClientResult:
    """Run the Node Y.js client once against `url` (e.g. `ws://127.0.0.1:PORT/doc`) and collect its output.

    The client connects to `{url}/{room}?token={token}`, types `sentence` (`mode` "text" or "tiptap") and waits up to
    `timeout_s` for `expect_marks` `geo` marks on it. With `expect_close` it instead expects the server to refuse the
    socket. The process is killed if it outlives its own timeout by a grace period.
    """
    if mode not in ("text", "tiptap"):
        raise ValueError(f"mode must be 'text' or 'tiptap', not {mode!r}")
    script = await asyncio.to_thread(ensure_node_client)
    node = shutil.which("node")
    if node is None:
        raise NodeClientError("node is not on PATH")
    via_stdin = len(sentence.encode()) > _MAX_ARGV_SENTENCE_BYTES
    args = [
        str(script),
        "--url",
        url,
        "--room",
        room,
        "--token",
        token,
        "--mode",
        mode,
        *(["--type-stdin"] if via_stdin else ["--type", sentence]),
        "--expect-marks",
        str(expect_marks),
        "--timeout-ms",
        str(max(1, round(timeout_s * 1000))),
        "--hold-ms",
        str(hold_ms),
    ]
    if expect_close:
        args.append("--expect-close")
    proc = await asyncio.create_subprocess_exec(
        node,
        *args,
        cwd=CLIENT_DIR,
        stdin=asyncio.subprocess.PIPE if via_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    try:
        async with asyncio.timeout(timeout_s + hold_ms / 1000 + _KILL_GRACE_S):
            out, err = await proc.communicate(sentence.encode() if via_stdin else None)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        raise NodeClientError(
            f"the Node client outlived its timeout and was killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
        ) from None
    except BaseException:
        # Cancelled (e.g. the test timed out): don't leave the process behind.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    assert proc.returncode is not None
    return _parse_output(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
