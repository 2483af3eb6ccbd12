"""A user's VideoGenJob from `kubectl apply` to a video in S3, through the real
operator, the real Job controller and scheduler, and the real runner."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import threading
import time
from typing import Any

import pytest
import yaml
from media_checks import check_output
from operator_support import BUCKET, TINY_I2V, Jobs, tiny_job
from PIL import Image

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


class Watcher(threading.Thread):
    """`kubectl get vgj -w`, as a user would run it: every update the API server sends is a row,
    so even a phase that lasts a few milliseconds is seen."""

    def __init__(self, devcluster: Any, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.rows: list[list[str]] = []
        self.proc = subprocess.Popen(
            [
                str(devcluster.binaries.kubectl),
                "get",
                "vgj",
                "-n",
                namespace,
                "--field-selector",
                f"metadata.name={name}",
                "--watch",
                "--no-headers",
                "-o",
                "custom-columns=PHASE:.status.phase,PROGRESS:.status.progress.summary",
            ],
            env={**os.environ, **devcluster.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            phase, _, progress = line.strip().partition(" ")
            row = [phase, progress.strip()]
            if row[0] and (not self.rows or self.rows[-1] != row):
                self.rows.append(row)

    def stop(self) -> None:
        time.sleep(1)  # let the last update arrive
        self.proc.terminate()
        self.proc.wait(10)
        self.join(10)

    def phases(self) -> list[str]:
        seen: list[str] = []
        for phase, _ in self.rows:
            if phase != "<none>" and (not seen or seen[-1] != phase):
                seen.append(phase)
        return seen


def s3_object(devcluster: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(devcluster.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())


def test_text_to_video_end_to_end(devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any) -> None:
    start_operator()
    watcher = Watcher(devcluster, namespace, "t2v")
    watcher.start()
    time.sleep(1.5)  # the watch is established before the job exists
    # Enough steps that generating is visible between the runner's 2-second progress writes.
    jobs.apply(tiny_job("t2v", steps=40, numFrames=17, seed=11))
    waited = devcluster.kubectl("wait", "--for=condition=Complete", "vgj/t2v", "-n", namespace, "--timeout=240s")
    watcher.stop()
    assert waited.returncode == 0, waited.stderr + yaml.safe_dump(jobs.status("t2v"))

    status = jobs.status("t2v")
    assert status["phase"] == "Succeeded" and status["reason"] == "Succeeded"
    phases = watcher.phases()
    assert phases[-1] == "Succeeded"
    assert "Running" in phases and phases.index("Running") > 0, phases
    stages = {progress.split()[0] for _, progress in watcher.rows if progress and progress != "<none>"}
    assert {"generating"} <= stages, watcher.rows

    output = status["output"]
    video = s3_object(devcluster, output["uri"])
    assert output["sizeBytes"] == len(video)
    assert output["sha256"] == hashlib.sha256(video).hexdigest()
    assert (output["width"], output["height"], output["frames"], output["fps"]) == (64, 64, 17, 8)
    assert output["url"].startswith("http")
    # Decoded, not only hashed: 17 H.264 yuv420p frames, moov before mdat, a whole poster, and the
    # presigned URL serving these very bytes.
    check_output(devcluster.s3_client(), status, frames=17)
    assert status["gpuSeconds"] > 0
    assert status["seed"] == 11 and status["timings"]["total"] > 0
    assert status["attempts"] == 1 and status["observedGeneration"] == 1
    assert status["startTime"] <= status["completionTime"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Complete"] == "True" and conditions["Running"] == "False"

    reasons = [e["reason"] for e in jobs.events("t2v")]
    assert {"Created", "Running", "Succeeded"} <= set(reasons), reasons
    describe = devcluster.kubectl("describe", "vgj", "t2v", "-n", namespace).stdout
    assert "Events:" in describe and "Succeeded" in describe and "the video is ready" in describe

    runner_jobs = jobs.runner_jobs()
    assert len(runner_jobs) == 1
    assert runner_jobs[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_image_to_video_end_to_end(devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any) -> None:
    image = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 120, 40)).save(image, format="PNG")
    devcluster.s3_client().put_object(Bucket=BUCKET, Key=f"videogen/{namespace}/inputs/in.png", Body=image.getvalue())
    start_operator()
    jobs.apply(
        tiny_job(
            "i2v",
            model=TINY_I2V,
            task="image-to-video",
            image=f"s3://{BUCKET}/videogen/{namespace}/inputs/in.png",
            seed=3,
        )
    )
    status = jobs.wait_phase("i2v", "Succeeded", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status
    video = s3_object(devcluster, status["output"]["uri"])
    assert status["output"]["sha256"] == hashlib.sha256(video).hexdigest()
    assert status["output"]["frames"] == 9
    check_output(devcluster.s3_client(), status, frames=9)


def test_identical_job_with_a_seed_is_a_cache_hit(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    start_operator()
    jobs.apply(tiny_job("first", seed=99))
    first = jobs.wait_phase("first", "Succeeded", "Failed", timeout=240)
    assert first["phase"] == "Succeeded", first

    jobs.apply(tiny_job("second", seed=99))
    second = jobs.wait_phase("second", "Succeeded", "Failed", timeout=30)
    assert second["reason"] == "CacheHit"
    assert second["output"]["uri"] == first["output"]["uri"]
    assert second["output"]["sha256"] == first["output"]["sha256"]
    assert [j["metadata"]["annotations"]["videogen.dev/owner"] for j in jobs.runner_jobs()] == ["first"], (
        "a cache hit must not create a runner Job"
    )

    # The bucket remembers too: with both jobs gone, a new identical job still hits.
    for name in ("first", "second"):
        assert devcluster.kubectl("delete", "vgj", name, "-n", namespace).returncode == 0
    jobs.apply(tiny_job("after-cleanup", seed=99))
    later = jobs.wait_phase("after-cleanup", "Succeeded", "Failed", timeout=30)
    assert later["reason"] == "CacheHit"
    assert later["output"]["uri"] == first["output"]["uri"]

    jobs.apply(tiny_job("opted-out", seed=99, cache=False))
    third = jobs.wait_phase("opted-out", "Succeeded", "Failed", timeout=240)
    assert third["reason"] == "Succeeded"


def test_kubectl_wait_returns_for_a_finished_job_under_gitops_reapply(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    """Re-applying the same manifest (what Argo CD does on every sync) never runs it again."""
    start_operator()
    manifest = tiny_job("gitops", seed=5, cache=False)
    jobs.apply(manifest)
    done = jobs.wait_phase("gitops", "Succeeded", "Failed", timeout=240)
    assert done["phase"] == "Succeeded"
    jobs.apply(manifest)
    time.sleep(3)
    assert jobs.status("gitops")["completionTime"] == done["completionTime"]
    assert len(jobs.runner_jobs()) == 1
