"""A control plane that counts one client's API requests where they land: the API server's audit log.

The operator gets its own token user (`AUDITED_USER`, in system:masters like the admin);
the audit policy logs that user's requests at Metadata level, one JSON line per finished
request. `count_requests()` groups them by verb and resource, so a benchmark reports what
the API server saw, not what the client believes it sent.

A second token user (`SUBMITTER_USER`) has its creates of VideoGenJobs logged too, so that
`completed_at()` times a job from the API server's answer to its creation to the answer to
the operator's create of its Job, both on the API server's clock (microseconds), whatever
the load on the benchmark's own process.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ControlPlane
from .kubeconfig import write_kubeconfig
from .procs import ManagedProcess

AUDITED_USER = "videogen-operator"
SUBMITTER_USER = "videogen-bench-submitter"

_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One line per request: when it completed (watches: when the stream ended).
    "omitStages": ["RequestReceived", "ResponseStarted", "Panic"],
    "rules": [
        {"level": "Metadata", "users": [AUDITED_USER]},
        {
            "level": "Metadata",
            "users": [SUBMITTER_USER],
            "verbs": ["create"],
            "resources": [{"group": "videogen.dev", "resources": ["videogenjobs"]}],
        },
        {"level": "None"},
    ],
}


class AuditedControlPlane(ControlPlane):
    """ControlPlane plus an audit log of `AUDITED_USER`'s requests and a kubeconfig for that user."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audited_token = secrets.token_hex(24)
        self.submitter_token = secrets.token_hex(24)

    @property
    def audit_log_path(self) -> Path:
        return self.logs_dir / "audit.jsonl"

    @property
    def audited_kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig-audited"

    @property
    def submitter_kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig-submitter"

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        if name == "kube-apiserver":
            policy = self.state_dir / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(_POLICY))
            token_file = self.state_dir / "tokens.csv"
            with token_file.open("a") as fh:
                fh.write(f"{self.audited_token},{AUDITED_USER},{AUDITED_USER},system:masters\n")
                fh.write(f"{self.submitter_token},{SUBMITTER_USER},{SUBMITTER_USER},system:masters\n")
            argv = [
                *argv,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ]
        return super()._spawn(name, argv, env)

    def start(self) -> AuditedControlPlane:
        super().start()
        assert self.pki is not None
        write_kubeconfig(
            self.audited_kubeconfig_path,
            server=self.api_url,
            ca_cert=self.pki.ca_cert,
            token=self.audited_token,
            name=self.name,
        )
        write_kubeconfig(
            self.submitter_kubeconfig_path,
            server=self.api_url,
            ca_cert=self.pki.ca_cert,
            token=self.submitter_token,
            name=self.name,
        )
        return self

    def audit_offset(self) -> int:
        """Where the log ends now: count_requests(since=...) counts only what came after."""
        return self.audit_log_path.stat().st_size if self.audit_log_path.exists() else 0

    def _events(self, since: int, user: str) -> Iterator[dict[str, Any]]:
        if not self.audit_log_path.exists():
            return
        with self.audit_log_path.open("rb") as fh:
            fh.seek(since)
            for line in fh:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and (event.get("user") or {}).get("username") == user:
                    yield event

    def completed_at(
        self, user: str, verb: str, resource: str, since: int = 0, *, received: bool = False
    ) -> dict[tuple[str, str], float]:
        """(namespace, name) -> when the API server answered `user`'s successful `verb` of that
        `resource` (its stageTimestamp at ResponseComplete, seconds since the epoch); the first one.
        `received`: when the API server received that request instead."""
        out: dict[tuple[str, str], float] = {}
        for event in self._events(since, user):
            ref = event.get("objectRef") or {}
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            if event.get("verb") != verb or ref.get("resource") != resource or ref.get("subresource"):
                continue
            if not 200 <= code < 300 or not ref.get("name"):
                continue
            field = "requestReceivedTimestamp" if received else "stageTimestamp"
            stamp = datetime.fromisoformat(str(event[field]).replace("Z", "+00:00")).timestamp()
            out.setdefault((str(ref.get("namespace") or ""), str(ref["name"])), stamp)
        return out

    def count_requests(self, since: int = 0) -> Counter[tuple[str, str]]:
        """(verb, resource[/subresource]) -> requests the audited user made."""
        counts: Counter[tuple[str, str]] = Counter()
        for event in self._events(since, AUDITED_USER):
            ref = event.get("objectRef") or {}
            resource = str(ref.get("resource") or event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += f"/{ref['subresource']}"
            counts[(str(event.get("verb")), resource)] += 1
        return counts
