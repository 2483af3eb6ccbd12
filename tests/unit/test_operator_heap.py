"""The heap trimmer: paced by its interval, and on glibc it really returns free pages."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from videogen_operator import heap
from videogen_operator.heap import HeapTrimmer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_at_most_once_per_interval() -> None:
    calls: list[int] = []
    clock = FakeClock()
    trimmer = HeapTrimmer(interval=10.0, trim=lambda pad: calls.append(pad) or 1, clock=clock)
    assert trimmer.maybe_trim() is True
    clock.now += 9.9
    assert trimmer.maybe_trim() is False
    clock.now += 0.2
    assert trimmer.maybe_trim() is True
    assert calls == [0, 0]  # pad 0: keep nothing spare at the top of the heap


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on musl, whose C library has no malloc_trim.
    monkeypatch.setattr(heap, "_load_malloc_trim", lambda: None)
    trimmer = HeapTrimmer()
    assert trimmer.available is False
    assert trimmer.maybe_trim() is False


def test_free_pages_below_live_objects_leave_rss() -> None:
    trimmer = HeapTrimmer(interval=0.0)
    if not trimmer.available:
        pytest.skip("this C library has no malloc_trim")
    proc = psutil.Process()
    # 96 MiB in 2 KiB buffers (above CPython's small-object limit: they come from malloc's heap),
    # then every buffer freed but one in 64: the survivors pin the heap's top, so free() alone
    # cannot give the holes back.
    buffers = [bytearray(2048) for _ in range(48 * 1024)]
    keep = buffers[::64]
    del buffers
    gc.collect()
    before = proc.memory_info().rss
    assert trimmer.maybe_trim() is True
    after = proc.memory_info().rss
    assert before - after > 48 * 2**20, (before, after)
    assert all(len(b) == 2048 for b in keep)  # what is still in use is untouched


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_takes_what_lives_out_of_full_collections(collector_restored: None) -> None:
    # Start-up's long-lived objects: a view of decoded bodies, each a few containers.
    resident = [
        {"metadata": {"name": f"j{i}", "labels": {"a": "b"}}, "status": {"phase": "Succeeded"}} for i in range(20_000)
    ]
    tracked_before = len(gc.get_objects())
    frozen = heap.settle_collector()
    assert frozen >= 3 * len(resident), "every body and its nested dicts are frozen"
    assert gc.get_threshold() == heap.GC_THRESHOLDS
    # A full collection no longer walks them ...
    assert len(gc.get_objects()) < tracked_before - 3 * len(resident)
    assert not any(o is resident for o in gc.get_objects())
    # ... and reference counting still frees them: nothing is kept alive by the freeze.
    probe = resident[0]
    del resident
    assert sys.getrefcount(probe) == 2  # only `probe` and the call's argument


# Run in a fresh interpreter: arenas, once made, stay for the life of a process.
_ARENA_PROBE = r"""
import ctypes, ctypes.util, re, sys, tempfile, threading
from videogen_operator import heap

if sys.argv[1] == "limited":
    assert heap.limit_arenas(2) is True
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
all_in = threading.Barrier(9)
blocks = []

def allocate():
    blocks.append(libc.malloc(64 * 1024))  # ctypes drops the GIL: each thread mallocs on its own
    all_in.wait()  # every thread alive at once, each having allocated
    all_in.wait()

threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
all_in.wait()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(len(re.findall(r'<heap nr="\d+">', open(out.name).read())))
all_in.wait()
for t in threads:
    t.join()
"""


def test_limited_arenas_keep_many_threads_heaps_to_the_cap() -> None:
    """limit_arenas (called at the operator's start) caps glibc's per-thread arenas: eight threads that
    allocate at once share two heaps instead of getting one each."""
    if heap._libc_function("mallopt") is None or heap._libc_function("malloc_info") is None:
        pytest.skip("not glibc")

    def heaps(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _ARENA_PROBE, mode], capture_output=True, text=True, timeout=60, check=True
        )
        return int(out.stdout.strip())

    assert heaps("default") > 2, "without the cap each thread gets an arena of its own (the probe proves nothing)"
    assert heaps("limited") <= 2
