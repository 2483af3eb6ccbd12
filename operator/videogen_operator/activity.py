"""Is this replica the active one? kopf's peering rule, applied to our own periodic work.

kopf pauses its watches and handlers in every replica but the one with the highest
priority among the live peers in the peering object (and in all of them when two
live peers share a priority). Our sweep and admission pass run beside kopf, so they
ask the same question of the same object before acting: a paused replica, whose
views have stopped updating, never admits anything.

Each replica's priority is derived from its start time, oldest first: a new
replica (a rolling update, a stray second copy) never takes over from a running
one; it becomes active only after the old one's peering record expires.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# Far in the future, so that every start-time-derived priority stays positive.
_PRIORITY_EPOCH_MS = 10**13


def start_priority(now: float | None = None) -> int:
    """Higher for replicas started earlier (milliseconds resolution)."""
    return _PRIORITY_EPOCH_MS - int((time.time() if now is None else now) * 1000)


def own_identity() -> str:
    """Unique per process, readable in the peering object (kopf uses POD_ID when set)."""
    pod = os.environ.get("POD_ID")
    base = pod or f"{getpass.getuser()}@{socket.gethostname()}"
    return f"{base}/{os.getpid()}/{secrets.token_hex(3)}"


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_active(peerings: Iterable[Mapping[str, Any] | None], identity: str, priority: int, now: datetime) -> bool:
    """True when, in every peering object, no other live peer has our priority or a higher one,
    and we are listed ourselves (until kopf has announced us, it has not started either)."""
    for body in peerings:
        if body is None:
            return False  # no peering object: kopf stays paused (mandatory peering)
        peers = body.get("status") or {}
        if identity not in peers:
            return False
        for other, info in peers.items():
            if other == identity or not isinstance(info, Mapping):
                continue
            seen = _parse(info.get("lastseen"))
            lifetime = timedelta(seconds=int(info.get("lifetime") or 60))
            if seen is None or seen + lifetime <= now:
                continue  # dead
            if int(info.get("priority") or 0) >= priority:
                return False
    return True
