"""Retry back-off: exponential in the attempts spent, with jitter derived from the log, so replays agree.

The jitter is a hash of the task id and the failed attempt's number — no randomness and no clock — so
`agentlog replay --verify` refolds the same delay, and tasks failing together (an outage) still spread out.
"Equal jitter": half the exponential delay for sure, the other half scaled by the hash; never above the cap.
"""

from __future__ import annotations

import hashlib


def jitter_fraction(task_id: str, attempt: int) -> float:
    """A number in [0, 1) that depends only on the task and the attempt."""
    digest = hashlib.sha256(f"{task_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def retry_delay(task_id: str, attempt: int, attempts_spent: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before the retry after the failed `attempt`, the `attempts_spent`-th attempt spent."""
    exponent = min(max(attempts_spent - 1, 0), 60)
    ceiling = min(max_s, base_s * 2.0**exponent)
    return round(ceiling / 2 + ceiling / 2 * jitter_fraction(task_id, attempt), 3)


def check_backoff(base_s: float, max_s: float) -> None:
    """A `ValueError` naming both fields when a new task's back-off base is above its cap: every retry would wait
    the cap, and the base would say something the queue never does.

    Checked where a task is specified (the API), not by `TaskCreated`: older releases took it, the delay is capped
    anyway, and such a task recorded before must still read."""
    if base_s > max_s:
        raise ValueError(
            f"backoff_base_s ({base_s:g} s) is above backoff_max_s ({max_s:g} s): the first retry's wait cannot "
            "exceed the longest; lower backoff_base_s or raise backoff_max_s"
        )
