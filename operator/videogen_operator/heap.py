"""Give the heap's free pages back to the system.

CPython frees objects into the C allocator, and glibc's malloc returns memory to the
system only from the top of each heap. A start-up with thousands of VideoGenJobs (kopf's
listing decoded, each object's event processed, the bodies dropped) or a burst of watch
events leaves most of what it freed in holes below memory still in use: in the scale
benchmark, 5,000 resident jobs left about 70 MiB of free pages counted in the operator's
RSS (`bench/results/operator-scale.json`). `malloc_trim(0)` hands every whole free page of
every arena back (madvise), moving nothing, so it is safe at any time; the periodic sweep
calls it at most every `TRIM_INTERVAL_SECONDS`. Other C libraries (musl) have no such call,
and there this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 10.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # no libc by that name, or one without malloc_trim (musl)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


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
