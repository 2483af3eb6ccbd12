"""A cap on running jobs: the rest wait in Queued, in order, with their position."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from operator_support import Jobs, tiny_job

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def test_cap_of_one_runs_three_jobs_one_after_another(jobs: Jobs, start_operator: Any) -> None:
    start_operator(max_running=1)
    names = ["q1", "q2", "q3"]
    for name in names:
        jobs.apply(tiny_job(name, cache=False))
        time.sleep(1.1)  # distinct creation timestamps: the queue is first come, first served

    samples: list[dict[str, dict[str, Any]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append({n: jobs.status(n) for n in names})
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for name in names:
            assert jobs.wait_phase(name, "Succeeded", "Failed", timeout=300)["phase"] == "Succeeded"
    finally:
        stop.set()
        sampler.join()

    for sample_ in samples:
        running = [n for n, s in sample_.items() if s.get("phase") == "Running"]
        assert len(running) <= 1, f"cap exceeded: {running}"
    positions = {
        (n, s.get("queuePosition")) for sample_ in samples for n, s in sample_.items() if s.get("queuePosition")
    }
    assert ("q3", 2) in positions or ("q3", 1) in positions, positions
    queued_messages = [s["message"] for sample_ in samples for s in sample_.values() if s.get("reason") == "Queued"]
    assert any("position" in m and "cap: 1 running cluster-wide" in m for m in queued_messages)
    finished = sorted(names, key=lambda n: jobs.status(n)["completionTime"])
    assert finished == names, "jobs run in creation order"
