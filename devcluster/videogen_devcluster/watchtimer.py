"""When a plain watcher of its own sees each new VideoGenJob: the API server's watch delay, apart
from the operator's.

`python -m videogen_devcluster.watchtimer KUBECONFIG OUT` watches VideoGenJobs cluster-wide (from
resourceVersion 0: the listed ones arrive first, as ADDED) and writes one line per ADDED event,
`<seconds since the epoch> <namespace>/<name>`, stamped when its line was read. It does nothing
else, in a process of its own, so neither the operator's event loop nor the benchmark's busy
process (submitter and fast node) delays it. The scale benchmark compares these times with the
API server's answers to the creates (its audit log, the same host clock): what is left of
create → Job once the watch has delivered is the operator's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from videogen_api import v1alpha1 as api

from .kubeapi import new_client


def watch(kubeconfig: str, out: Path) -> None:
    from kubernetes import client
    from kubernetes.watch.watch import iter_resp_lines

    custom = client.CustomObjectsApi(new_client(Path(kubeconfig)))
    with out.open("w", buffering=1) as sink:
        while True:  # the server ends a watch now and then: start again (a job seen twice keeps its first time)
            response: Any = custom.list_cluster_custom_object(
                api.GROUP, api.VERSION, api.PLURAL, watch=True, resource_version="0", _preload_content=False
            )
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                now = time.time()
                event = json.loads(line) if line else {}
                if event.get("type") == "ADDED":
                    meta = (event.get("object") or {}).get("metadata") or {}
                    sink.write(f"{now:.4f} {meta.get('namespace')}/{meta.get('name')}\n")


def read(path: Path) -> dict[tuple[str, str], float]:
    """(namespace, name) -> when the watcher first saw it."""
    seen: dict[tuple[str, str], float] = {}
    for line in path.read_text().splitlines():
        stamp, _, ref = line.partition(" ")
        namespace, _, name = ref.partition("/")
        seen.setdefault((namespace, name), float(stamp))
    return seen


if __name__ == "__main__":
    watch(sys.argv[1], Path(sys.argv[2]))
