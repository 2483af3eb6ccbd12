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

Urgent keys (a job seen for the first time, the admission pass) run on threads of
their own, and while any is pending no routine reconcile starts (for at most
URGENT_HOLD_SECONDS): the reconciles are GIL-bound, so in a burst the progress and
phase updates of running jobs would otherwise take the CPU the next Job's creation
needs. Routine work loses nothing by waiting: it reads the views when it runs.

A paced key (the admission pass: it reads every unfinished job and every runner Job) rests after
each run for a multiple of that run's duration before it runs again; the kicks that arrive
meanwhile are coalesced into that one next run. In a burst every new job, every finished Job and
every sweep kicks it: run back to back, the passes took a third of the operator's CPU in the scale
benchmark, CPU that the new jobs' starts and the API server (on the same host there) needed. A
pass then takes at most 1 / (1 + ratio) of the time, and the rest grows with the pass (a pass
slowed by load rests longer); when passes are cheap, so is the rest (milliseconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping

from videogen_operator.kube import ConflictError, is_transient

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
CONFLICT_RETRY = 0.3
# Transient errors (timeouts, 5xx, 429) are shown on the job only once they persist.
TRANSIENT_FAILURES_SHOWN = 3
# Routine work waits at most this long for urgent work to drain (no starvation in a long burst).
URGENT_HOLD_SECONDS = 2.0
URGENT_THREADS = 8
# The longest a paced key rests between runs (a freed GPU waits at most this long for its next job).
MAX_REST_SECONDS = 0.25


class Coalescer:
    def __init__(
        self,
        work: Callable[[Hashable], object],
        on_error: Callable[[Hashable, BaseException], object] | None = None,
        *,
        paced: Mapping[Hashable, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """`paced`: key → its rest after each run, as a multiple of that run's duration (see the module)."""
        self._work = work
        self._on_error = on_error
        self._paced = dict(paced or {})
        self._rest_until: dict[Hashable, float] = {}
        self._clock = clock
        self._sleep = sleep
        self._dirty: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._retries: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._urgent_keys: set[Hashable] = set()
        self._urgent_pending = 0
        self._urgent_idle = asyncio.Event()
        self._urgent_idle.set()
        self._urgent_pool = concurrent.futures.ThreadPoolExecutor(URGENT_THREADS, thread_name_prefix="urgent")

    async def kick(self, key: Hashable, *, urgent: bool = False) -> None:
        self._dirty.add(key)
        if urgent:
            self._mark_urgent(key)
        if key in self._running:
            return
        self._running.add(key)
        try:
            while key in self._dirty:
                await self._rest(key)  # the kicks that come meanwhile are this run's too
                self._dirty.discard(key)
                started = self._clock()
                try:
                    await self._run(key)
                except ConflictError:
                    log.debug("%s changed while it was reconciled; again", key)
                    self._retry_later(key, CONFLICT_RETRY)
                except Exception as err:
                    await self._failed(key, err)
                else:
                    self._failures.pop(key, None)
                finally:
                    ratio = self._paced.get(key)
                    if ratio:
                        ended = self._clock()
                        self._rest_until[key] = ended + min(MAX_REST_SECONDS, ratio * max(0.0, ended - started))
        finally:
            self._running.discard(key)
            if key in self._urgent_keys:  # marked, but its run had started: nothing left to do for it
                self._urgent_keys.discard(key)
                self._urgent_done()

    async def _rest(self, key: Hashable) -> None:
        left = self._rest_until.get(key, 0.0) - self._clock()
        if left > 0:
            await self._sleep(left)

    def _mark_urgent(self, key: Hashable) -> None:
        if key not in self._urgent_keys:
            self._urgent_keys.add(key)
            self._urgent_pending += 1
            self._urgent_idle.clear()

    def _urgent_done(self) -> None:
        self._urgent_pending -= 1
        if self._urgent_pending == 0:
            self._urgent_idle.set()

    async def _run(self, key: Hashable) -> None:
        loop = asyncio.get_running_loop()
        if key in self._urgent_keys:
            self._urgent_keys.discard(key)
            try:
                await loop.run_in_executor(self._urgent_pool, self._work, key)
            finally:
                self._urgent_done()
            return
        if not self._urgent_idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent_idle.wait(), URGENT_HOLD_SECONDS)
        await asyncio.to_thread(self._work, key)

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
