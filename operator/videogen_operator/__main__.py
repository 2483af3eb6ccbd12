"""`videogen-operator` / `python -m videogen_operator`: run the operator.

Settings come from VIDEOGEN_* environment variables and the optional
VIDEOGEN_CONFIG_FILE (see settings.py). Runs with kopf peering on, so a second
replica waits instead of acting twice; the liveness endpoint is /healthz.
"""

from __future__ import annotations

import sys

import kopf

from videogen_operator import handlers  # noqa: F401  (registers the handlers)
from videogen_operator.logs import configure_logging
from videogen_operator.settings import load_settings


def main() -> int:
    try:
        settings = load_settings()
    except (ValueError, OSError) as err:
        print(f"videogen-operator: {err}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=False,
        peering_name=settings.peering_name,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
