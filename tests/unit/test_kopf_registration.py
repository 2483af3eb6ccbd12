"""The operator registers only on.event handlers and indices with kopf (plus startup, cleanup and the
probe): handlers.UnusedDiffBase relies on it, since kopf's diff base feeds only on.create/update/
resume/delete handlers, daemons and timers."""

from __future__ import annotations

import kopf

from videogen_operator import handlers
from videogen_operator.handlers import UnusedDiffBase


def test_no_handler_needs_kopfs_diff_base() -> None:
    registry = kopf.get_default_registry()
    assert handlers.videogenjob_event is not None  # the module's decorators have run
    assert not list(registry._changing.get_all_handlers()), "on.create/update/delete need a real diff base"
    assert not list(registry._spawning.get_all_handlers()), "daemons and timers need a real diff base"
    assert list(registry._watching.get_all_handlers()) and list(registry._indexing.get_all_handlers())


def test_the_unused_diff_base_copies_nothing() -> None:
    storage = UnusedDiffBase()
    body = kopf.Body({"metadata": {"name": "j"}, "spec": {"prompt": "x" * 10_000}, "status": {}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
