"""Fixtures for the operator's end-to-end tests: the real operator process,
tiny models in a model cache, a bucket, and helpers that read VideoGenJobs
the way a user does (kubectl)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import (
    BUCKET,
    OPERATOR_NAMESPACE,
    S3_SECRET,
    TINY_MODELS,
    Jobs,
    OperatorProcess,
    free_port,
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model-cache volume (hostPath) with tiny Wan pipelines in the Hugging Face cache layout."""
    root = tmp_path_factory.mktemp("model-cache")
    for family, repo_id in TINY_MODELS.values():
        out = root / "build" / family
        subprocess.run(
            [
                sys.executable,
                "-m",
                "videogen_runner.tiny_models",
                "--family",
                family,
                "--out",
                str(out),
                "--hf-cache",
                str(root / "hf"),
                "--repo-id",
                repo_id,
            ],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    return root


@pytest.fixture(scope="session")
def operator_base(devcluster: Any, videogen_crds: None) -> dict[str, str]:
    """The operator's namespace, its S3 credentials Secret, and the bucket."""
    s3 = devcluster.s3
    env = s3.env()
    devcluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    devcluster.kubectl(
        "create",
        "secret",
        "generic",
        S3_SECRET,
        "-n",
        OPERATOR_NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']}",
    )
    client = devcluster.s3_client()
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    return env


@pytest.fixture
def start_operator(
    devcluster: Any, operator_base: dict[str, str], model_cache: Path, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator watching the test's namespace; settings as VIDEOGEN_* overrides."""
    started: list[OperatorProcess] = []
    # Peering is on (as in production): the namespaced peering object must exist.
    devcluster.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {"name": "videogen-operator", "namespace": namespace},
            }
        ),
    )

    def start(**settings: Any) -> OperatorProcess:
        port = free_port()
        env = {
            **os.environ,
            **devcluster.env(),
            "VIDEOGEN_NAMESPACES": namespace,
            "VIDEOGEN_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "VIDEOGEN_S3_ENDPOINT": operator_base["AWS_ENDPOINT_URL"],
            "VIDEOGEN_S3_BUCKET": BUCKET,
            "VIDEOGEN_S3_SECRET_NAME": S3_SECRET,
            "VIDEOGEN_MODEL_CACHE_TYPE": "hostPath",
            "VIDEOGEN_MODEL_CACHE_HOST_PATH": str(model_cache),
            "VIDEOGEN_RUNNER_CPU_REQUEST": "100m",
            "VIDEOGEN_RUNNER_MEMORY_REQUEST": "256Mi",
            "VIDEOGEN_RESYNC_SECONDS": "1",
            "VIDEOGEN_LIVENESS_PORT": str(port),
            "VIDEOGEN_PEERING_LIFETIME_SECONDS": "5",
            "VIDEOGEN_LOG_LEVEL": "INFO",
        }
        env.update({f"VIDEOGEN_{k.upper()}": str(v) for k, v in settings.items()})
        op = OperatorProcess(env, tmp_path / f"operator-{len(started)}.log", port)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the operator's log: it usually explains the failure."""
    report = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "call" and report.failed and tmp is not None:
        for path in sorted(Path(tmp).glob("operator-*.log")):
            report.sections.append((f"operator log {path.name}", path.read_text(errors="replace")[-20000:]))
    return report


@pytest.fixture
def jobs(devcluster: Any, namespace: str) -> Jobs:
    return Jobs(devcluster, namespace)
