"""How long a sentence whose extraction failed waits before it is tried again: a pure value, like procrastinate's
`RetryStrategy`, that the worker asks and acts on.

Why per sentence: a sentence can fail alone (a provider that chokes on its content, an answer that does not
parse), and it must not hold the others back, nor be retried on every keystroke. Why capped and finite: a
provider that is down is retried at most once per `cap_s` per sentence, and a sentence that keeps failing is given
up after `attempts` tries (it is tried again when someone edits it, since an edited sentence is a new one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    attempts: int = 10
    """Tries in all, the first one included; after that many failures in a row the sentence is given up."""

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.factor < 1 or self.cap_s < self.first_s or self.attempts < 1:
            raise ValueError(f"a back-off needs 0 < first_s <= cap_s, factor >= 1 and attempts >= 1: {self}")

    def delay(self, failures: int) -> float | None:
        """Seconds to wait after `failures` failures in a row, or None: give up."""
        if failures < 1:
            return 0.0
        if failures >= self.attempts:
            return None
        return float(min(self.cap_s, self.first_s * self.factor ** (failures - 1)))
