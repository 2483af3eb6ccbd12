"""Helpers for tests against the dev cluster: polling and small pod manifests."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from .kubeapi import JSON

T = TypeVar("T")


def wait_for(
    produce: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Polls ``produce`` until it returns something truthy, and returns that.

    On timeout the error carries ``describe()``: pass one that shows the state being waited on (the pod's
    status, its logs) so a failure explains itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = produce()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def python_pod(
    name: str,
    script: str,
    *,
    gpus: int = 0,
    restart_policy: str = "Never",
    **container: Any,
) -> JSON:
    """A pod whose single container runs ``python -c script`` (the project's virtualenv Python)."""
    spec_container: JSON = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", script],
        **container,
    }
    if gpus:
        spec_container.setdefault("resources", {})["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [spec_container],
        },
    }


class ConnectionRecorder:
    """A plain TCP listener on loopback that records every connection (it must see none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
