"""Coalescing dispatch of blocking reconciles onto worker threads.

Watch events arrive in bursts (the runner patches progress, pods change state,
the Job controller updates counts). Each reconcile re-reads the object from the
API server, so N events that arrive while one reconcile runs need exactly one
more reconcile afterwards, not N: a per-key dirty flag gives that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class Coalescer:
    def __init__(self, work: Callable[[Hashable], object]) -> None:
        self._work = work
        self._dirty: set[Hashable] = set()
        self._running: set[Hashable] = set()

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
                except Exception:
                    # The periodic sweep retries; one bad object must not stop the others.
                    log.exception("reconcile of %s failed; will retry on the next sweep", key)
        finally:
            self._running.discard(key)

    @property
    def busy(self) -> int:
        return len(self._running)
