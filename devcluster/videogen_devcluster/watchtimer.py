"""When a plain watcher of its own sees each new VideoGenJob: the API server's watch delay, apart
from the operator's.

`python -m videogen_devcluster.watchtimer KUBECONFIG OUT` watches VideoGenJobs cluster-wide (from
resourceVersion 0: the listed ones arrive first, as ADDED) and writes one line per ADDED event,
`<seconds since the epoch> <namespace>/<name>`, stamped when its bytes were read. It does nothing
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

import urllib3
from kubernetes import client, config

from videogen_api import v1alpha1 as api


def watch(kubeconfig: str, out: Path) -> None:
    config.load_kube_config(kubeconfig)  # type: ignore[no-untyped-call]
    conf = client.Configuration.get_default_copy()
    headers = {}
    token = conf.auth_settings().get("BearerToken")
    if token:
        headers["Authorization"] = str(token["value"])
    pool = urllib3.PoolManager(ca_certs=conf.ssl_ca_cert, cert_file=conf.cert_file, key_file=conf.key_file)
    url = f"{conf.host}/apis/{api.GROUP}/{api.VERSION}/{api.PLURAL}?watch=1&resourceVersion=0"
    with out.open("w", buffering=1) as sink:
        while True:
            response = pool.request(
                "GET", url, headers=headers, preload_content=False, timeout=urllib3.Timeout(connect=5, read=None)
            )
            pending = b""
            for chunk in response.stream(65536):
                now = time.time()
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    event = json.loads(line)
                    if event.get("type") == "ADDED":
                        meta = (event.get("object") or {}).get("metadata") or {}
                        sink.write(f"{now:.4f} {meta.get('namespace')}/{meta.get('name')}\n")
            # The server ended the watch: start again (an event seen twice keeps its first time).


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
