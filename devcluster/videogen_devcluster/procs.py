"""Child process supervision: every process this package starts dies with it.

Three layers, because each one alone leaves gaps:

* each child runs in its own session (process group), so stopping it also stops whatever it forked;
* an ``atexit`` hook and a SIGTERM handler stop all live children when the Python process ends normally,
  on Ctrl-C, or on ``kill <pid>``;
* on Linux the child asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which covers
  ``kill -9`` of Python. The kernel ties that signal to the *thread* that started the child, so start
  long-lived children from a thread that outlives them (the main thread, or the thread that waits on them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

_PR_SET_PDEATHSIG = 1
_live_lock = threading.Lock()
_live: dict[int, ManagedProcess] = {}


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Loaded in the parent: the pre-exec hook runs in a forked child where loading libraries is unsafe.
_libc = _load_libc()


# Resolved now: the forked child must not allocate or look up symbols (other threads may hold locks).
_prctl = _libc.prctl if _libc is not None else None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Service:
    """Something with start() and stop(), usable as `with Thing() as thing:`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ManagedProcess:
    """A child in its own process group whose output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = True,
        append_log: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab" if append_log else "wb")  # noqa: SIM115 - closed in stop()
        preexec: Callable[[], None] | None = _die_with_parent if die_with_parent else None
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                # Safe despite threads: the hook only makes one system call through a pre-resolved symbol.
                preexec_fn=preexec,  # noqa: PLW1509
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self.popen.pid
        with _live_lock:
            _live[self.pid] = self
        _install_hooks()

    def poll(self) -> int | None:
        rc = self.popen.poll()
        if rc is not None:
            self._forget()
        return rc

    def wait(self, timeout: float | None = None) -> int:
        rc = self.popen.wait(timeout)
        self._forget()
        return rc

    def running(self) -> bool:
        return self.poll() is None

    def signal_group(self, sig: int) -> None:
        # The group id is the child's pid (start_new_session); the group can outlive the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM the whole group, SIGKILL it after ``grace`` seconds; returns the exit status."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Always sweep the group: a leader that exited may have left children behind.
        self.signal_group(signal.SIGKILL)
        rc = self.popen.wait()
        self._forget()
        return rc

    def tail(self, max_bytes: int = 4000) -> str:
        return tail_file(self.log_path, max_bytes)

    def _forget(self) -> None:
        with _live_lock:
            _live.pop(self.pid, None)
        if not self._log.closed:
            self._log.close()


def tail_file(path: Path, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def live_processes() -> list[ManagedProcess]:
    with _live_lock:
        return list(_live.values())


def stop_all(grace: float = 5.0) -> None:
    """Stops every child still alive, most recently started first (dependents before dependencies)."""
    for proc in sorted(live_processes(), key=lambda p: p.pid, reverse=True):
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in live_processes():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.0, deadline - time.monotonic()))
    for proc in live_processes():
        proc.stop(grace=0)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # KeyboardInterrupt rather than SystemExit: pytest treats it as an interrupted session and still runs
    # fixture teardown, and the CLI's foreground loop handles both signals alike.
    raise KeyboardInterrupt(f"signal {signum}")


@functools.cache
def _install_hooks() -> None:
    atexit.register(stop_all)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    failed: Callable[[], str | None] | None = None,
) -> None:
    """Polls ``check`` until it is true; ``failed`` may return a reason to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if failed is not None:
            reason = failed()
            if reason is not None:
                raise StartupError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class StartupError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""
