"""Fixtures for the operator's end-to-end tests: the real operator process,
tiny models in a model cache, and the operator's namespace, Secret and bucket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_support import Jobs

from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.operator_process import (
    OperatorProcess,
    build_tiny_models,
    create_peering,
    operator_env,
    prepare_cluster,
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model-cache volume (hostPath) with tiny Wan pipelines in the Hugging Face cache layout."""
    root = tmp_path_factory.mktemp("model-cache")
    build_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def operator_base(devcluster: DevCluster, videogen_crds: None) -> DevCluster:
    prepare_cluster(devcluster)
    return devcluster


@pytest.fixture
def start_operator(
    operator_base: DevCluster, model_cache: Path, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator watching the test's namespace; keyword arguments are settings."""
    started: list[OperatorProcess] = []
    create_peering(operator_base, namespace)

    def start(**settings: Any) -> OperatorProcess:
        env = operator_env(operator_base, model_cache, [namespace], **settings)
        op = OperatorProcess(env, tmp_path / f"operator-{len(started)}.log")
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The operator's runner pods read the model cache at its mount path: they need mount namespaces."""
    for item in items:
        if "start_operator" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("mounts"):
            item.add_marker(pytest.mark.mounts)


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
def jobs(devcluster: DevCluster, namespace: str) -> Jobs:
    return Jobs(devcluster, namespace)
