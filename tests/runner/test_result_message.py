"""The result JSON: what it holds, that it fits the kubelet's 4096 bytes, and where it goes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from videogen_api import v1alpha1 as api
from videogen_runner.result import emit, fit_failure, fit_result


def result(url: str | None, adjustments: int = 1) -> api.RunnerResult:
    return api.RunnerResult(
        output=api.OutputStatus(
            uri="s3://videos/a.mp4",
            url=url,
            url_expires_at=datetime(2026, 1, 1, tzinfo=UTC) if url else None,
            sha256="0" * 64,
            size_bytes=1000,
        ),
        seed=1,
        timings=api.Timings(total=1.0),
        memory_mode="none (cpu)",
        adjustments=[f"numFrames {i} -> {i + 1} (Wan needs 4k+1 frames)" for i in range(adjustments)],
        spec_hash="abc",
    )


def size(model: api.RunnerResult | api.RunnerFailure) -> int:
    return len(json.dumps(model.to_wire(), separators=(",", ":")).encode())


class TestFitting:
    def test_a_short_presigned_url_stays(self) -> None:
        fitted = fit_result(result("https://s3.example/a.mp4?sig=1"))
        assert fitted.output.url == "https://s3.example/a.mp4?sig=1"

    def test_a_url_that_would_not_fit_is_left_out(self) -> None:
        fitted = fit_result(result("https://s3.example/a.mp4?sig=" + "x" * 5000))
        assert fitted.output.url is None and fitted.output.url_expires_at is None
        assert fitted.output.sha256 == "0" * 64, "the rest stays"
        assert size(fitted) <= api.TERMINATION_MESSAGE_LIMIT

    def test_endless_adjustments_are_cut_short(self) -> None:
        fitted = fit_result(result(None, adjustments=200))
        assert size(fitted) <= api.TERMINATION_MESSAGE_LIMIT
        assert fitted.adjustments[-1] == "(more adjustments in the logs)"

    def test_a_long_failure_message_is_shortened(self) -> None:
        failure = api.RunnerFailure(reason=api.Reason.INTERNAL_ERROR, message="y" * 10000, exit_code=20)
        assert size(fit_failure(failure)) <= api.TERMINATION_MESSAGE_LIMIT


class TestWhereItGoes:
    def test_termination_log_and_the_last_line_of_stdout(self, tmp_path: Path) -> None:
        out = io.StringIO()
        text = emit(result(None), tmp_path / "termination-log", out)

        assert (tmp_path / "termination-log").read_text() == text
        assert out.getvalue().splitlines()[-1] == text
        assert api.RunnerResult.model_validate_json(text).output.uri == "s3://videos/a.mp4"

    def test_an_unwritable_termination_path_does_not_crash(self, tmp_path: Path) -> None:
        out = io.StringIO()
        emit(result(None), tmp_path / "no" / "such" / "dir" / "termination-log", out)
        assert json.loads(out.getvalue())["specHash"] == "abc"
