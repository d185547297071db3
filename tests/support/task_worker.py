"""A task worker as a real process, for tests that kill it: registers (pull mode), claims one task, starts it,
prints its assignment as one JSON line, then beats every `--beat-s` until killed.

    python -m tests.support.task_worker URL TOKEN AGENT_ID [--beat-s 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from agentlog.client import AgentlogClient


async def work(url: str, token: str, agent_id: str, beat_s: float) -> int:
    async with AgentlogClient(url, token) as client:
        await client.register(agent_id, metadata={"task_mode": "pull"})
        while True:
            answer = await client.claim_task(wait_s=10)
            if answer.assignment is not None:
                break
        task = answer.assignment
        await client.start_task(task.task_id, task.attempt)
        sys.stdout.write(task.model_dump_json() + "\n")
        sys.stdout.flush()
        while True:
            await asyncio.sleep(beat_s)
            await client.task_heartbeat(task.task_id, task.attempt)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("agent_id")
    parser.add_argument("--beat-s", type=float, default=0.1)
    args = parser.parse_args()
    return asyncio.run(work(args.url, args.token, args.agent_id, args.beat_s))


if __name__ == "__main__":
    raise SystemExit(main())
