"""Every way a job can fail ends Failed with its own reason — never stuck, never
retried when retrying cannot help."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from operator_support import BUCKET, TINY_I2V, Jobs, tiny_job

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def failed(jobs: Jobs, name: str, timeout: float = 240) -> dict[str, Any]:
    status = jobs.wait_phase(name, "Failed", "Succeeded", timeout=timeout)
    assert status["phase"] == "Failed", status
    return status


def test_missing_model_fails_at_once_without_retries(jobs: Jobs, start_operator: Any) -> None:
    start_operator()
    jobs.apply(tiny_job("no-model", model="hf://nobody/does-not-exist", retries=3))
    status = failed(jobs, "no-model")
    assert status["reason"] == "ModelNotFound"
    assert status["lastFailure"]["exitCode"] == 11
    assert status["lastFailure"]["location"] == "runner"
    assert "nobody/does-not-exist" in status["message"]
    assert status["attempts"] == 1, "a non-retryable failure is not retried"


def test_corrupt_weights_are_a_model_load_error(jobs: Jobs, model_cache: Path, start_operator: Any) -> None:
    broken = model_cache / "corrupt-wan"
    if not broken.exists():
        shutil.copytree(model_cache / "build" / "wan-t2v", broken)
        for weights in (broken / "transformer").glob("*.safetensors"):
            weights.write_bytes(b"this is not a safetensors file")
    start_operator()
    jobs.apply(tiny_job("corrupt", model="/models/corrupt-wan"))
    status = failed(jobs, "corrupt")
    assert status["reason"] == "ModelLoadError"
    assert status["attempts"] == 1


def test_bad_input_image_is_an_input_image_error(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    devcluster.s3_client().put_object(
        Bucket=BUCKET, Key=f"videogen/{namespace}/inputs/bad.png", Body=b"not an image at all"
    )
    start_operator()
    jobs.apply(
        tiny_job(
            "bad-image",
            model=TINY_I2V,
            task="image-to-video",
            image=f"s3://{BUCKET}/videogen/{namespace}/inputs/bad.png",
        )
    )
    status = failed(jobs, "bad-image")
    assert status["reason"] == "InputImageError"
    assert status["attempts"] == 1


def test_upload_errors_are_retried_up_to_retries(jobs: Jobs, start_operator: Any) -> None:
    start_operator(
        extra_runner_env='{"VIDEOGEN_S3_MAX_ATTEMPTS": "1", "VIDEOGEN_S3_TRANSFER_ATTEMPTS": "1", "VIDEOGEN_S3_BACKOFF_SECONDS": "0"}',
        allowed_buckets='["bucket-that-does-not-exist"]',  # the policy allows it; the store does not have it
    )
    jobs.apply(tiny_job("no-bucket", output={"bucket": "bucket-that-does-not-exist"}, retries=1))
    status = failed(jobs, "no-bucket", timeout=300)
    assert status["reason"] == "UploadError"
    assert status["attempts"] == 2, "one try and one retry"
    assert status["lastFailure"]["exitCode"] == 15


def test_semantic_validation_fails_without_a_pod(jobs: Jobs, start_operator: Any) -> None:
    start_operator(max_gpus_per_job=1)
    jobs.apply(tiny_job("too-many-gpus", resources={"gpus": 4}))
    status = failed(jobs, "too-many-gpus", timeout=30)
    assert status["reason"] == "ValidationFailed"
    assert "spec.resources.gpus" in status["message"]
    assert jobs.runner_jobs() == []
    assert "ValidationFailed" in [e["reason"] for e in jobs.events("too-many-gpus")]


def test_unschedulable_job_fails_on_the_startup_deadline_with_the_schedulers_reason(
    jobs: Jobs, start_operator: Any
) -> None:
    start_operator()
    jobs.apply(tiny_job("too-big", resources={"gpus": 2}, startupTimeoutSeconds=10))
    status = failed(jobs, "too-big", timeout=60)
    assert status["reason"] == "StartupTimeout"
    assert status["lastFailure"]["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in status["message"]
    assert jobs.runner_jobs() == [] or all(j["metadata"].get("deletionTimestamp") for j in jobs.runner_jobs())


def test_job_running_past_its_timeout_fails_with_deadline_exceeded(jobs: Jobs, start_operator: Any) -> None:
    start_operator(extra_runner_env='{"VIDEOGEN_TEST_STEP_DELAY_SECONDS": "1"}')
    jobs.apply(tiny_job("too-slow", steps=60, timeoutSeconds=15))
    status = failed(jobs, "too-slow", timeout=120)
    assert status["reason"] == "DeadlineExceeded"


def test_unknown_priority_class_is_a_validation_failure(jobs: Jobs, start_operator: Any) -> None:
    start_operator()
    jobs.apply(tiny_job("no-such-priority", resources={"priorityClassName": "does-not-exist"}))
    status = failed(jobs, "no-such-priority", timeout=30)
    assert status["reason"] == "ValidationFailed"
    assert "spec.resources.priorityClassName" in status["message"]
