"""The operator's Prometheus metrics, from the status writes the reconciler makes."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from videogen_operator import metrics
from videogen_operator.observe import view_job
from videogen_operator.phases import Transition


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def body(name: str, namespace: str = "team-m", reason: str = "Queued", model: str = "hf://org/m") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"model": model},
        "status": {"phase": "Queued", "reason": reason},
    }


@pytest.mark.parametrize(
    ("method", "url", "verb"),
    [
        ("GET", "https://k:6443/apis/videogen.dev/v1alpha1/namespaces/a/videogenjobs/x", "get"),
        ("GET", "https://k:6443/apis/videogen.dev/v1alpha1/namespaces/a/videogenjobs", "list"),
        ("GET", "https://k:6443/apis/videogen.dev/v1alpha1/videogenjobs", "list"),
        ("GET", "https://k:6443/apis/batch/v1/jobs?labelSelector=a%3Db", "list"),
        ("GET", "https://k:6443/api/v1/namespaces/a/pods?watch=true", "watch"),
        ("GET", "https://k:6443/api/v1/namespaces/a", "get"),
        ("GET", "https://k:6443/api/v1/namespaces", "list"),
        ("GET", "https://k:6443/api/v1/namespaces/a/secrets/s", "get"),
        ("PATCH", "https://k:6443/apis/videogen.dev/v1alpha1/namespaces/a/videogenjobs/x/status", "patch"),
        ("POST", "https://k:6443/api/v1/namespaces/a/events", "create"),
        ("DELETE", "https://k:6443/apis/batch/v1/namespaces/a/jobs/j", "delete"),
        ("PUT", "https://k:6443/apis/batch/v1/namespaces/a/jobs/j", "update"),
    ],
)
def test_request_verbs_follow_kubernetes(method: str, url: str, verb: str) -> None:
    assert metrics.request_verb(method, url) == verb


def test_a_finished_job_counts_once_with_its_waits_and_gpu_time() -> None:
    b = body("done-1")
    finished = {
        "phase": "Succeeded",
        "reason": "Succeeded",
        "startTime": "2026-01-01T00:00:30Z",
        "completionTime": "2026-01-01T00:02:00Z",
        "gpuSeconds": 180.0,
    }
    before_runs = sample("videogen_job_run_seconds_count", model="hf://org/m", result="Succeeded")
    before_le60 = sample("videogen_job_queue_wait_seconds_bucket", model="hf://org/m", result="Succeeded", le="30.0")
    metrics.status_written(b, b["status"], finished, Transition("Succeeded", "Succeeded", "done"))
    assert sample("videogen_jobs_finished_total", namespace="team-m", result="Succeeded", reason="Succeeded") >= 1
    assert sample("videogen_gpu_seconds_total", namespace="team-m", model="hf://org/m") >= 180.0
    assert sample("videogen_job_run_seconds_count", model="hf://org/m", result="Succeeded") == before_runs + 1
    # 30 s in the queue falls into the le="30.0" bucket; the run of 90 s does not fall into le="60.0".
    assert (
        sample("videogen_job_queue_wait_seconds_bucket", model="hf://org/m", result="Succeeded", le="30.0")
        == before_le60 + 1
    )
    # A write that is not a transition (progress, details) counts nothing.
    total = sample("videogen_jobs_finished_total", namespace="team-m", result="Succeeded", reason="Succeeded")
    metrics.status_written(b, finished, dict(finished, message="x"), None)
    assert sample("videogen_jobs_finished_total", namespace="team-m", result="Succeeded", reason="Succeeded") == total


def test_admission_wait_is_observed_when_a_waiting_job_gets_its_slot() -> None:
    before = sample("videogen_admission_wait_seconds_count")
    b = body("admitted-1")
    metrics.status_written(
        b, {"reason": "Queued"}, {"reason": "PodStarting"}, Transition("Queued", "PodStarting", "admitted")
    )
    assert sample("videogen_admission_wait_seconds_count") == before + 1
    # A retry's pod starting again is not an admission.
    metrics.status_written(
        b,
        {"reason": "Retrying", "startTime": "2026-01-01T00:00:30Z"},
        {"reason": "PodStarting", "startTime": "2026-01-01T00:00:30Z"},
        Transition("Queued", "PodStarting", "starting"),
    )
    assert sample("videogen_admission_wait_seconds_count") == before + 1


def test_jobs_gauge_counts_phases_per_namespace_without_job_labels() -> None:
    for i, phase in enumerate(["Queued", "Queued", "Running"]):
        metrics.job_seen({"metadata": {"namespace": "gauge-ns", "name": f"j{i}"}, "status": {"phase": phase}})
    metrics.job_seen({"metadata": {"namespace": "gauge-ns", "name": "fresh"}})
    assert sample("videogen_jobs", namespace="gauge-ns", phase="Queued") == 2
    assert sample("videogen_jobs", namespace="gauge-ns", phase="Running") == 1
    assert sample("videogen_jobs", namespace="gauge-ns", phase="Pending") == 1
    metrics.job_gone({"metadata": {"namespace": "gauge-ns", "name": "j0"}})
    assert sample("videogen_jobs", namespace="gauge-ns", phase="Queued") == 1
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'name="' not in text and "j0" not in text


def test_jobs_gauge_counts_the_watch_fed_view_when_given_one() -> None:
    view = [
        {"metadata": {"namespace": "view-ns", "name": "a"}, "status": {"phase": "Queued"}},
        {"metadata": {"namespace": "view-ns", "name": "b"}, "status": {"phase": "Succeeded"}},
        {"metadata": {"namespace": "view-ns", "name": "c"}},
    ]
    metrics.use_job_source(lambda: view)
    try:
        assert sample("videogen_jobs", namespace="view-ns", phase="Queued") == 1
        assert sample("videogen_jobs", namespace="view-ns", phase="Succeeded") == 1
        assert sample("videogen_jobs", namespace="view-ns", phase="Pending") == 1
        view.pop(0)  # read at scrape time, not copied
        assert sample("videogen_jobs", namespace="view-ns", phase="Queued") == 0
    finally:
        metrics.PHASES._source = None


def test_errors_are_counted_by_kind_and_still_raised() -> None:
    def work(key: object) -> None:
        raise RuntimeError("boom")

    before = sample("videogen_reconcile_errors_total", kind="videogenjob")
    counted = metrics.count_errors(work, lambda _: "videogenjob")
    with pytest.raises(RuntimeError):
        counted(("a", "b"))
    assert sample("videogen_reconcile_errors_total", kind="videogenjob") == before + 1


def pod(start: str | None, finished: str | None, running: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": start}} if running else {}
    if finished:
        state = {"terminated": {"exitCode": 0, "finishedAt": finished}}
    return {
        "metadata": {"name": f"p-{start}", "creationTimestamp": start},
        "status": {"phase": "Running", "startTime": start, "containerStatuses": [{"name": "runner", "state": state}]},
    }


def test_held_seconds_sum_ended_pods_only() -> None:
    job = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}, "status": {}}
    view = view_job(
        job,
        [
            pod("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
            pod("2026-01-01T00:02:00Z", "2026-01-01T00:02:30Z"),
            pod("2026-01-01T00:03:00Z", None, running=True),
        ],
    )
    assert view.held_seconds == 90.0
