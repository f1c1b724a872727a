"""Per-client back-off for failed logins (brute-force protection).

Each client (its address) gets a few free attempts; after that every failure
doubles the time it must wait before the next attempt, up to a cap.  While a
client waits, its attempts are refused without checking the secret, so the
lockout cannot be used to test guesses.  A success clears the record.  Memory
is bounded: the least recently seen clients are forgotten first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from traitlets import Float, Int
from traitlets.config import Configurable

log = logging.getLogger("zasperhub")


class LoginThrottle(Configurable):
    """Exponential back-off per client after repeated failed logins."""

    free_attempts = Int(3, config=True, help="Failed logins a client may make before it must wait.")
    base_delay = Float(1.0, config=True, help="Wait (seconds) after the first failure beyond the free ones; doubles each time.")
    max_delay = Float(300.0, config=True, help="Longest wait (seconds) between attempts.")
    forget_after = Float(3600.0, config=True, help="A client with no failures for this long starts afresh.")
    max_clients = Int(10000, config=True, help="Clients remembered at most (oldest forgotten first).")

    def __init__(self, clock: Callable[[], float] = time.monotonic, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        # client -> (failures, locked_until, last_failure)
        self._clients: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def _entry(self, client: str) -> tuple[int, float, float]:
        entry = self._clients.get(client)
        if entry is None:
            return (0, 0.0, 0.0)
        if self._clock() - entry[2] > self.forget_after:
            del self._clients[client]
            return (0, 0.0, 0.0)
        return entry

    def retry_after(self, client: str) -> float:
        """Seconds `client` must still wait before its next attempt (0: go ahead)."""
        _, locked_until, _ = self._entry(client)
        return max(0.0, locked_until - self._clock())

    def failure(self, client: str) -> float:
        """Record a failed attempt; returns the wait now imposed on `client`."""
        failures, _, _ = self._entry(client)
        failures += 1
        now = self._clock()
        over = failures - self.free_attempts
        delay = 0.0 if over <= 0 else min(self.max_delay, self.base_delay * 2 ** min(over - 1, 62))
        self._clients[client] = (failures, now + delay, now)
        self._clients.move_to_end(client)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if delay:
            log.warning("Failed login from %s (%d failures); next attempt allowed in %.0fs", client, failures, delay)
        else:
            log.warning("Failed login from %s (%d failures)", client, failures)
        return delay

    def success(self, client: str) -> None:
        """Forget `client`'s failures after a successful login."""
        self._clients.pop(client, None)
