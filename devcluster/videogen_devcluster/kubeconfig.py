"""Admin kubeconfig files and small HTTP probes against loopback components."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import yaml


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, token: str, name: str) -> Path:
    """A self-contained kubeconfig (CA embedded) that kubectl, helm and the Python client all accept."""
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"},
            }
        ],
        "current-context": name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    # Atomic, so a reader never sees half a file (the CLI's `env` may race with `up`).
    tmp.replace(path)
    return path


def http_get(
    url: str,
    *,
    ca_cert: Path | None = None,
    insecure: bool = False,
    token: str | None = None,
    timeout: float = 2.0,
) -> tuple[int, str]:
    """(status, body) of a GET, (0, error text) if nothing answered."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)
