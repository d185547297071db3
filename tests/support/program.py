"""An agent program as the program runner starts it, for tests: registers its agent with the token it was given,
heartbeats every `--beat-s`, and ends on SIGTERM (with status 0), or ignores it (`--ignore-term`, to be killed
after the stop grace), or crashes with status 3 after `--crash-after-s`.

    python -m tests.support.program [--beat-s 0.5] [--ignore-term] [--crash-after-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from agentlog.client import AgentlogClient


async def run(beat_s: float, ignore_term: bool, crash_after_s: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    agent_id = os.environ["AGENTLOG_AGENT_ID"]
    started = loop.time()
    async with AgentlogClient(os.environ["AGENTLOG_URL"], os.environ["AGENTLOG_TOKEN"]) as client:
        await client.register(agent_id, metadata={"run": os.environ["AGENTLOG_PROGRAM_RUN_NUMBER"]})
        sys.stdout.write(f"registered {agent_id} run {os.environ['AGENTLOG_PROGRAM_RUN_NUMBER']}\n")
        sys.stdout.flush()
        while not stop.is_set():
            if crash_after_s is not None and loop.time() - started >= crash_after_s:
                return 3
            await client.heartbeat(agent_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), beat_s)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beat-s", type=float, default=0.5)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--crash-after-s", type=float, default=None)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(run(arguments.beat_s, arguments.ignore_term, arguments.crash_after_s)))


if __name__ == "__main__":
    main()
