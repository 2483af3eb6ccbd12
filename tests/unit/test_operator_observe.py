"""Reading runner Jobs and pods: success results, failure classes, why a pod is stuck."""

from __future__ import annotations

import json
from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_operator.observe import job_failure, view_job


def job(conditions: list[dict[str, str]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"suspend": False},
        "status": {"conditions": conditions or [], **status},
    }


def pod(
    name: str, phase: str, state: dict[str, Any], created: str = "2026-01-01T00:00:01Z", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}], **status},
    }


RESULT = {
    "output": {"uri": "s3://b/k.mp4", "sizeBytes": 10, "sha256": "ab"},
    "seed": 7,
    "timings": {"total": 1.5},
    "memoryMode": "none (cpu)",
    "adjustments": [],
    "specHash": "abc",
}


def test_succeeded_job_yields_the_runner_result() -> None:
    view = view_job(
        job([{"type": "Complete", "status": "True"}], succeeded=1),
        [pod("p1", "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(RESULT)}})],
    )
    assert view.complete and view.result is not None
    assert view.result.output.uri == "s3://b/k.mp4"
    assert view.current_pod == "p1"


def test_non_retryable_exit_code_maps_to_its_reason_with_the_runners_message() -> None:
    failure = json.dumps(
        {"reason": "ModelNotFound", "message": "spec.model: hf://x/y is not in the cache", "exitCode": 11}
    )
    view = view_job(
        job([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "x"}], failed=1),
        [
            pod(
                "p1",
                "Failed",
                {"terminated": {"exitCode": 11, "message": failure, "finishedAt": "2026-01-01T00:01:00Z"}},
            )
        ],
    )
    f = job_failure(view)
    assert (f.reason, f.exit_code, f.location) == (api.Reason.MODEL_NOT_FOUND, 11, "runner")
    assert "not in the cache" in f.message


def test_deadline_exceeded() -> None:
    view = view_job(
        job(
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ]
        ),
        [],
    )
    assert job_failure(view).reason == api.Reason.DEADLINE_EXCEEDED


def test_oom_killed_is_named() -> None:
    view = view_job(job(failed=1), [pod("p1", "Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})])
    assert view.last_failure is not None and view.last_failure.reason == api.Reason.OOM_KILLED


def test_unschedulable_pod_is_explained() -> None:
    p = pod(
        "p1",
        "Pending",
        {},
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    view = view_job(job(active=1), [p])
    assert view.waiting is not None
    assert view.waiting.reason == api.Reason.UNSCHEDULABLE
    assert "Insufficient nvidia.com/gpu" in view.waiting.message


def test_image_pull_backoff_is_explained() -> None:
    view = view_job(
        job(active=1),
        [pod("p1", "Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}})],
    )
    assert view.waiting is not None and view.waiting.reason == "ImagePullBackOff"


def test_retry_counts_attempts_and_keeps_the_last_failure() -> None:
    view = view_job(
        job(active=1, failed=1),
        [
            pod(
                "p1",
                "Failed",
                {"terminated": {"exitCode": 15, "message": "upload failed"}},
                created="2026-01-01T00:00:01Z",
            ),
            pod("p2", "Running", {"running": {"startedAt": "2026-01-01T00:02:00Z"}}, created="2026-01-01T00:01:59Z"),
        ],
    )
    assert view.attempts == 2
    assert view.running_pod == "p2"
    assert view.last_failure is not None and view.last_failure.reason == api.Reason.UPLOAD_ERROR


def test_a_pod_that_succeeded_completes_the_job_before_the_job_controller_says_so() -> None:
    view = view_job(
        job(active=0, succeeded=1),
        [pod("p1", "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(RESULT)}})],
    )
    assert view.finished_pod == "p1" and view.complete and view.running_pod is None
    assert view.result is not None and view.result.output.uri == "s3://b/k.mp4"


def test_a_succeeded_pod_does_not_complete_a_job_that_is_failing() -> None:
    # The Job ran past its deadline as the pod finished: the Job controller's verdict stands.
    view = view_job(
        job([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}], succeeded=1),
        [pod("p1", "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(RESULT)}})],
    )
    assert view.failed and not view.complete


@pytest.mark.parametrize("code", [c for c in api.ExitCode if c is not api.ExitCode.OK])
def test_every_runner_exit_code_becomes_its_reason(code: api.ExitCode) -> None:
    view = view_job(job(failed=1), [pod("p1", "Failed", {"terminated": {"exitCode": int(code), "message": "boom"}})])
    assert view.last_failure is not None
    assert view.last_failure.reason == api.EXIT_CODE_REASONS[code]
    assert view.last_failure.message == "boom"


def test_a_pod_counted_both_active_and_succeeded_is_one_attempt() -> None:
    view = view_job(
        job([{"type": "Complete", "status": "True"}], active=1, succeeded=1),
        [pod("p1", "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(RESULT)}})],
    )
    assert view.attempts == 1


def test_the_runners_first_start_is_kept_even_when_it_was_never_seen_running() -> None:
    # A short job can start and finish between two reconciles: its start still comes from the pods.
    view = view_job(
        job(failed=1),
        [
            pod("p1", "Failed", {"terminated": {"exitCode": 20, "startedAt": "2026-01-01T00:00:05Z"}}),
            pod("p2", "Running", {"running": {"startedAt": "2026-01-01T00:01:00Z"}}, created="2026-01-01T00:00:50Z"),
        ],
    )
    assert view.runner_started_at is not None
    assert view.runner_started_at.isoformat() == "2026-01-01T00:00:05+00:00"
    assert (
        view_job(job(), [pod("p1", "Pending", {"waiting": {"reason": "ContainerCreating"}})]).runner_started_at is None
    )
