"""`videogen-operator` / `python -m videogen_operator`: run the operator.

Settings come from VIDEOGEN_* environment variables and the optional
VIDEOGEN_CONFIG_FILE (see settings.py). Runs with kopf peering on, so a second
replica waits instead of acting twice; the liveness endpoint is /healthz.
"""

from __future__ import annotations

import sys

import kopf
from kopf._core.engines.peering import Identity  # kopf.run takes it; not re-exported

from videogen_operator import handlers, heap, watch_json  # handlers register themselves on import
from videogen_operator.activity import own_identity, start_priority
from videogen_operator.kube import load_client_config
from videogen_operator.logs import configure_logging
from videogen_operator.settings import load_settings


def main() -> int:
    heap.limit_arenas()  # before any thread exists (heap.py says why)
    try:
        settings = load_settings()
    except (ValueError, OSError) as err:
        print(f"videogen-operator: {err}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # Our identity and priority in kopf's peering, known to us too: the periodic work
    # asks the peering object whether this replica is the active one (activity.py).
    identity, priority = own_identity(), start_priority()
    load_client_config()
    handlers.watch_kueue_workloads(settings)
    watch_json.install()
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=False,
        peering_name=settings.peering_name,
        identity=Identity(identity),
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
        memo=kopf.Memo(settings=settings, identity=identity, priority=priority),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
