"""Give the heap's free pages back to the system, and keep the garbage collector's pauses short.

CPython frees objects into the C allocator, and glibc's malloc returns memory to the
system only from the top of each heap. A start-up with thousands of VideoGenJobs (kopf's
listing decoded, each object's event processed, the bodies dropped) or a burst of watch
events leaves most of what it freed in holes below memory still in use: in the scale
benchmark, 5,000 resident jobs left about 70 MiB of free pages counted in the operator's
RSS (`bench/results/operator-scale.json`). `malloc_trim(0)` hands every whole free page of
every arena back (madvise), moving nothing, so it is safe at any time; the periodic sweep
calls it at most every `TRIM_INTERVAL_SECONDS`. Other C libraries (musl) have no such call,
and there this is a no-op.

The cyclic garbage collector stops every thread while it runs, the event loop included: kopf's
watch streams wait, and so does a new job on its way to its Job. Its full collections walk every
tracked object, and start-up leaves hundreds of thousands (the listed VideoGenJobs in the views,
imported modules) that live as long as the process. In a 1,000-job burst on top of 1,000 resident
jobs the scale benchmark saw 20 full collections of about 0.5 s each, and the event loop late by
up to 0.7 s. `settle_collector` (called once the start-up listing is in the views) moves what
exists then out of the collector's sight (`gc.freeze`: reference counting still frees those
objects; only a reference cycle among them would stay until exit, and plain JSON bodies have
none) and collects the young generation less often, so short-lived event bodies die by reference
counting before they are promoted and promotions trigger fewer full collections.

glibc gives each new thread an arena of its own (up to eight per CPU) and a freed block goes back
to the arena it came from: the operator's sixty-odd threads (reconciles, starters, kopf's executor)
each kept their own free holes, and a burst's peak RSS grew with the number of threads that had
touched the heap. `limit_arenas` (called first thing in main, before any thread exists) caps them
at ARENA_MAX: the GIL serialises nearly every allocation anyway, so arenas buy no parallelism here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 10.0
# malloc arenas the process may have (glibc's M_ARENA_MAX, mallopt parameter -8).
ARENA_MAX = 2
_M_ARENA_MAX = -8
# Allocations (net of frees) between young collections; CPython's default is 700. A watch event's
# decoded body is a few hundred objects, so at the default a burst promoted most of them.
GC_THRESHOLDS = (50_000, 20, 10)


def settle_collector() -> int:
    """Collect once, then freeze what survives and widen the collection thresholds. Returns the
    number of objects frozen. Call it once, after start-up has built what lives until exit."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    frozen = gc.get_freeze_count()
    log.info("garbage collector settled", extra={"frozen_objects": frozen, "thresholds": GC_THRESHOLDS})
    return frozen


def _libc_function(name: str) -> Any:
    """A glibc function by name, or None (no libc found, or one without it, e.g. musl)."""
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        return getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):
        return None


def _load_malloc_trim() -> Callable[[int], int] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas (see the module); True when the C library took the setting.
    Only arenas created afterwards are affected: call it before starting threads."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped", extra={"arenas": arenas, "taken": taken})
    return taken


class HeapTrimmer:
    """Calls malloc_trim(0) when asked, at most once per interval (ctypes drops the GIL meanwhile).
    One caller: the sweep loop."""

    def __init__(
        self,
        interval: float = TRIM_INTERVAL_SECONDS,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._clock = clock
        self._last: float | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe_trim(self) -> bool:
        """Trim when the last trim is older than the interval; True when it trimmed."""
        if self._trim is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        started = time.perf_counter()
        self._trim(0)
        log.debug("heap trimmed", extra={"seconds": round(time.perf_counter() - started, 4)})
        return True
