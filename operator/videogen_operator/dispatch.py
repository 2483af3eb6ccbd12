"""Coalescing dispatch of blocking reconciles onto worker threads, with retry and backoff.

Watch events arrive in bursts (the runner patches progress, pods change state,
the Job controller updates counts). Each reconcile reads the current state from
the views, so N events that arrive while one reconcile runs need exactly one
more reconcile afterwards, not N: a per-key dirty flag gives that.

A reconcile that fails is retried for that key alone, with exponential backoff
(throttling, server errors, timeouts); the other keys go on. A write that lost
a resourceVersion race is retried at once: the newer object is already in view
or on its way. After repeated failures the error is handed to `on_error`, which
puts it on the job's status and in a Warning Event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

from videogen_operator.kube import ConflictError, is_transient

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
CONFLICT_RETRY = 0.3
# Transient errors (timeouts, 5xx, 429) are shown on the job only once they persist.
TRANSIENT_FAILURES_SHOWN = 3


class Coalescer:
    def __init__(
        self,
        work: Callable[[Hashable], object],
        on_error: Callable[[Hashable, BaseException], object] | None = None,
    ) -> None:
        self._work = work
        self._on_error = on_error
        self._dirty: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._retries: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def kick(self, key: Hashable) -> None:
        self._dirty.add(key)
        if key in self._running:
            return
        self._running.add(key)
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                try:
                    await asyncio.to_thread(self._work, key)
                except ConflictError:
                    log.debug("%s changed while it was reconciled; again", key)
                    self._retry_later(key, CONFLICT_RETRY)
                except Exception as err:
                    await self._failed(key, err)
                else:
                    self._failures.pop(key, None)
        finally:
            self._running.discard(key)

    async def _failed(self, key: Hashable, err: Exception) -> None:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (count - 1))
        transient = is_transient(err)
        if transient:
            log.warning("reconcile of %s failed (%s); retrying in %.0fs", key, err, delay)
        else:
            log.exception("reconcile of %s failed; retrying in %.0fs", key, delay)
        if self._on_error is not None and (not transient or count >= TRANSIENT_FAILURES_SHOWN):
            try:
                await asyncio.to_thread(self._on_error, key, err)
            except Exception:
                log.warning("could not record the error of %s on its status", key, exc_info=True)
        self._retry_later(key, delay)

    def _retry_later(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        old = self._retries.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._retries.pop(key, None)
            task = loop.create_task(self.kick(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._retries[key] = loop.call_later(delay, fire)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    @property
    def busy(self) -> int:
        return len(self._running)
