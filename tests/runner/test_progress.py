"""Progress reporting: what is written, how often, and that failures to write never hurt the run."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from videogen_api import v1alpha1 as api
from videogen_runner.progress import (
    Coalescer,
    KubeStatusSink,
    ProgressReporter,
    StaleJobError,
    make_progress,
    make_sink,
    overall_percent,
    progress_bar,
)
from videogen_runner.spec_input import JobIdentity

Stage = api.Stage
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.writes: list[tuple[float, api.Progress]] = []
        self.lock = threading.Lock()

    def write(self, progress: api.Progress) -> None:
        if self.fail:
            raise ConnectionError("api server unreachable")
        with self.lock:
            self.writes.append((time.monotonic(), progress))


class TestWhatIsReported:
    def test_a_generating_step_reads_like_a_progress_line(self) -> None:
        progress = make_progress(Stage.GENERATING, 12, 30, NOW)
        assert progress.summary == "generating 12/30 (40%)"
        assert (progress.step, progress.total_steps, progress.percent) == (12, 30, 40)
        assert progress.to_wire()["updatedAt"] == "2026-01-01T00:00:00Z"

    def test_other_stages_show_their_share_of_the_run(self) -> None:
        assert make_progress(Stage.LOADING, None, None, NOW).summary == "loading (0%)"
        assert make_progress(Stage.ENCODING, None, None, NOW).summary == "encoding (85%)"
        assert make_progress(Stage.DONE, None, None, NOW).summary == "done (100%)"

    def test_percent_only_moves_forward_through_the_run(self) -> None:
        sequence = [
            overall_percent(Stage.LOADING),
            *(overall_percent(Stage.GENERATING, step, 30) for step in range(31)),
            overall_percent(Stage.ENCODING),
            overall_percent(Stage.UPLOADING),
            overall_percent(Stage.DONE),
        ]
        assert sequence == sorted(sequence)
        assert (sequence[0], sequence[-1]) == (0, 100)

    def test_the_log_bar(self) -> None:
        assert progress_bar(0) == "[" + "." * 20 + "]"
        assert progress_bar(50) == "[" + "#" * 10 + "." * 10 + "]"
        assert progress_bar(100) == "[" + "#" * 20 + "]"


class TestCoalescing:
    def test_the_first_update_is_written_at_once(self) -> None:
        c = Coalescer(2.0)
        c.offer(make_progress(Stage.LOADING, None, None, NOW))
        assert c.take_due(100.0) is not None

    def test_updates_within_the_interval_wait_and_the_newest_wins(self) -> None:
        c = Coalescer(2.0)
        c.offer(make_progress(Stage.LOADING, None, None, NOW))
        c.take_due(100.0)
        c.offer(make_progress(Stage.GENERATING, 1, 4, NOW))
        c.offer(make_progress(Stage.GENERATING, 2, 4, NOW))

        assert c.take_due(101.0) is None, "rate limit: nothing before 2 seconds"
        assert c.next_due() == 102.0
        written = c.take_due(102.0)
        assert written is not None and written.step == 2
        assert c.take_due(110.0) is None, "nothing pending once written"

    def test_a_stage_change_is_not_lost_but_may_be_superseded(self) -> None:
        c = Coalescer(2.0)
        c.offer(make_progress(Stage.GENERATING, 4, 4, NOW))
        c.take_due(0.0)
        c.offer(make_progress(Stage.ENCODING, None, None, NOW))
        assert c.pending is not None and c.pending.stage is Stage.ENCODING
        c.offer(make_progress(Stage.UPLOADING, None, None, NOW))
        written = c.take_due(2.0)
        assert written is not None and written.stage is Stage.UPLOADING


class TestReporter:
    def test_writes_are_rate_limited_and_the_final_state_is_flushed(self) -> None:
        sink = RecordingSink()
        reporter = ProgressReporter(sink, interval=0.3)

        started = time.monotonic()
        reporter.stage(Stage.LOADING)
        time.sleep(0.05)
        reporter.stage(Stage.GENERATING, 0, 20)
        for step in range(1, 21):
            reporter.step(step, 20)
            time.sleep(0.03)
        reporter.stage(Stage.ENCODING)
        reporter.stage(Stage.DONE)
        reporter.close()

        times = [t for t, _ in sink.writes]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.29 for gap in gaps), gaps
        assert 2 <= len(sink.writes) < 8, "20 steps in 0.6s coalesce into a few writes"
        assert sink.writes[0][1].stage is Stage.LOADING
        assert sink.writes[0][0] - started < 0.05, "the first update is written at once"
        assert sink.writes[-1][1].stage is Stage.DONE, "the last state always lands"
        steps = [p.step for _, p in sink.writes if p.stage is Stage.GENERATING]
        assert steps == sorted(steps)

    def test_a_failing_api_server_never_fails_the_run(self, caplog: pytest.LogCaptureFixture) -> None:
        reporter = ProgressReporter(RecordingSink(fail=True), interval=0.05)
        with caplog.at_level(logging.WARNING):
            reporter.stage(Stage.LOADING)
            time.sleep(0.1)
            reporter.stage(Stage.DONE)
            reporter.close()
        assert "progress write failed" in caplog.text
        assert reporter.writes == []

    def test_without_a_sink_progress_goes_to_the_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        reporter = ProgressReporter(None)
        with caplog.at_level(logging.INFO, logger="videogen_runner.progress"):
            reporter.stage(Stage.GENERATING, 0, 4)
            reporter.step(1, 4)
        reporter.close()
        assert "generating 1/4 (28%)" in caplog.text
        assert "[#####" in caplog.text


class TestWhereProgressGoes:
    def test_run_by_hand_there_is_no_sink(self) -> None:
        assert make_sink(JobIdentity(), {}) is None

    def test_unusable_credentials_fall_back_to_logs(self, tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
        identity = JobIdentity(namespace="ns", name="job")
        with caplog.at_level(logging.WARNING):
            sink = make_sink(identity, {"KUBECONFIG": "/nonexistent/kubeconfig"})
        assert sink is None
        assert "cannot write progress to ns/job" in caplog.text


class FakeCustomObjects:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.patches: list[dict[str, object]] = []
        self.gets = 0

    def get_namespaced_custom_object_status(self, *_args: object, **_kwargs: object) -> dict[str, object]:
        self.gets += 1
        return {"metadata": {"uid": self.uid}}

    def patch_namespaced_custom_object_status(self, *args: object, **kwargs: object) -> None:
        assert kwargs["_content_type"] == "application/merge-patch+json"
        body = args[5]
        assert isinstance(body, dict)
        self.patches.append(body)


class TestStatusSink:
    def sink(self, job_uid: str, server_uid: str) -> tuple[KubeStatusSink, FakeCustomObjects]:
        from kubernetes import client

        sink = KubeStatusSink(JobIdentity("ns", "fox", job_uid), client.ApiClient())
        fake = FakeCustomObjects(server_uid)
        sink._api = fake
        return sink, fake

    def test_writes_every_field_so_no_stale_value_survives_a_merge(self) -> None:
        sink, fake = self.sink("uid-1", "uid-1")
        sink.write(make_progress(Stage.LOADING, None, None, NOW))
        sink.write(make_progress(Stage.ENCODING, None, None, NOW))

        progress = fake.patches[-1]["status"]
        assert isinstance(progress, dict)
        assert progress["progress"]["step"] is None, "null deletes the step a merge patch would keep"
        assert progress["progress"]["stage"] == "encoding"
        assert fake.gets == 1, "the job's identity is checked once"

    def test_a_recreated_job_of_the_same_name_is_left_alone(self) -> None:
        sink, fake = self.sink("uid-old", "uid-new")
        for _ in range(2):
            with pytest.raises(StaleJobError):
                sink.write(make_progress(Stage.LOADING, None, None, NOW))
        assert fake.patches == []
        assert fake.gets == 1
