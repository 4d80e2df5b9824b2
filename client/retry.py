"""When to send a request again, and to which node.

Theory of operation. Every request the client sends is safe to repeat: reads change nothing,
and every appended event carries an event id the client generated, so the server recognises a
repeated append and answers with the stored position instead of writing it twice (protocol
point 5). What is not safe is repeating a request whose failure is final, so the decision
rests on the failure alone:

* a dropped, refused or timed-out connection, and the error codes the contract calls
  retryable (`TRYAGAIN`, `TIMEOUT`, `QUORUMFAILED`, `INSUFFICIENTREPLICAS`, `CLUSTERDOWN`,
  `NOTLEADER`, and the reference's `CIRCUITOPEN`-like codes), are retried;
* any other error (`WRONGVER`, `DUPLICATE`, `INVALIDARG`, ...) is final and raised at once.

Connection failures, `CLUSTERDOWN` and `NOTLEADER` also move the client to the next node of its
address list (failover), so a request finds a live node when one is listed.

Retries are bounded twice, by a number of attempts and by the time elapsed since the first one,
and spaced by exponential backoff with full jitter (a random delay between 0 and
`base_delay_s * 2**retry`, capped at `max_delay_s`), so clients that failed together do not
come back together. `Attempts` is the state machine of one request: it is fed each failure and
answers how long to wait before the next attempt, or None to give up. It does no I/O and reads
the clock it is given, so the sync and asyncio clients share it and tests can drive it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import SierraDBError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int | None = 10
    """Attempts in all, the first one included; None: bounded by `max_elapsed_s` only."""
    max_elapsed_s: float = 10.0
    """No attempt starts later than this after the first one."""
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed_s < 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("durations must be >= 0")

    def start(
        self,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> Attempts:
        return Attempts(self, clock, rng)


DEFAULT_RETRY = RetryPolicy()
SUBSCRIPTION_RETRY = RetryPolicy(max_attempts=None, max_elapsed_s=60.0)
"""Subscriptions wait longer for a node to come back than single requests do."""


class Attempts:
    def __init__(
        self,
        policy: RetryPolicy,
        clock: Callable[[], float],
        rng: Callable[[float, float], float],
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng
        self._started = clock()
        self.failures = 0

    def next_delay(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt after `error`, or None to give up."""
        self.failures += 1
        if not (isinstance(error, SierraDBError) and error.retryable):
            return None
        p = self.policy
        if p.max_attempts is not None and self.failures >= p.max_attempts:
            return None
        delay = self._rng(0.0, min(p.max_delay_s, p.base_delay_s * (2 ** (self.failures - 1))))
        if self._clock() + delay - self._started > p.max_elapsed_s:
            return None
        return delay
