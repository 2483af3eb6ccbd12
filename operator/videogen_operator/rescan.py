"""kopf's API discovery scanned again while a watched resource is not served yet.

kopf finds the resources it watches by API discovery: once at start, and again for a group on every
watch event of a CRD of that group (kopf/_core/reactor/observation.py). When a CRD is installed
while the operator runs (Kueue after the operator), the API server's discovery can still lag the
CRD's last event (its Established condition): kopf's scan then finds nothing, logs "Unresolved
resources cannot be served", and no later event makes it look again, so the resource is never
watched until a restart. The integration test that installs Kueue's Workload CRD after the operator
hit this in about one run of four.

`install` wraps kopf's resource observer so that, beside it, the group is scanned again every
`RESCAN_SECONDS` for as long as the resource is not among kopf's watched resources, exactly as a CRD
event would have it scanned (one discovery request for the group; kopf does the rest). kopf offers no
setting for this, so `install` checks first that the observer and the event processor still have
the shape it wraps; a kopf release that differs is left alone, with a warning, and the operator works
as before (the resource is picked up at the next restart).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

RESCAN_SECONDS = 15.0
_WRAPPED = "_videogen_rescans"


def served(insights: Any, group: str, plural: str) -> bool:
    """Whether kopf watches (group, plural) now."""
    return any(r.group == group and r.plural == plural for r in insights.watched_resources)


async def rescan_while_unserved(
    process: Callable[..., Awaitable[None]],
    *,
    settings: Any,
    registry: Any,
    insights: Any,
    group: str,
    plural: str,
    every: float = RESCAN_SECONDS,
) -> None:
    """Have kopf scan `group` again every `every` seconds while (group, plural) is not watched."""
    await insights.ready_resources.wait()  # kopf's own first scan
    while True:
        await asyncio.sleep(every)
        if served(insights, group, plural):
            continue  # a CRD deleted later makes it unserved again: keep looking
        try:
            # What a CRD event of the group makes kopf do (process_discovered_resource_event).
            raw_event = {"type": "MODIFIED", "object": {"spec": {"group": group}}}
            await process(raw_event=raw_event, settings=settings, registry=registry, insights=insights)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the next period tries again
            log.warning("could not scan API group %s for %s: %s", group, plural, err)
        else:
            if served(insights, group, plural):
                log.info("%s.%s served now: kopf watches it", plural, group)


def install(group: str, plural: str, *, every: float = RESCAN_SECONDS) -> bool:
    """Wrap kopf's resource observer with `rescan_while_unserved`; False (and a warning) where kopf's
    observer or event processor no longer has the shape this wraps."""
    from kopf._core.reactor import observation

    original = observation.resource_observer
    if getattr(original, _WRAPPED, None) == (group, plural):
        return True
    found = getattr(observation, "process_discovered_resource_event", None)
    wanted = {"settings", "registry", "insights"}
    if (
        found is None
        or not wanted <= set(inspect.signature(original).parameters)
        or not {"raw_event", *wanted} <= set(inspect.signature(found).parameters)
    ):
        log.warning("kopf's resource observer differs here: %s.%s is picked up at start-up only", plural, group)
        return False
    process: Callable[..., Awaitable[None]] = found

    async def resource_observer(*, settings: Any, registry: Any, insights: Any) -> None:
        rescans = asyncio.create_task(
            rescan_while_unserved(
                process,
                settings=settings,
                registry=registry,
                insights=insights,
                group=group,
                plural=plural,
                every=every,
            )
        )
        try:
            await original(settings=settings, registry=registry, insights=insights)
        finally:
            rescans.cancel()

    setattr(resource_observer, _WRAPPED, (group, plural))
    observation.resource_observer = resource_observer
    return True
