"""`videogen-runner`: one VideoGenJob, start to finish, in one process.

Order matters for cost: everything that can fail cheaply (spec, output store
reachable, input image, model present) fails before the weights are loaded,
and nothing touches the GPU before the spec is known to be valid.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from videogen_api import v1alpha1 as api

from .errors import TerminatedError, failure_for
from .result import emit

log = logging.getLogger("videogen_runner")

ENV_LOG_LEVEL = "VIDEOGEN_LOG_LEVEL"
ENV_WORK_DIR = "VIDEOGEN_WORK_DIR"
# Test-only: pause this long after each stage change so a watcher can see every stage.
ENV_TEST_STAGE_DELAY = "VIDEOGEN_TEST_STAGE_DELAY_SECONDS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videogen-runner",
        description=(
            "Generate one video from a VideoGenJob spec, upload it to S3 and report the result. "
            f"The spec comes from --spec-file, ${api.ENV_SPEC_FILE} or ${api.ENV_SPEC} (JSON or YAML; "
            "a whole VideoGenJob manifest or just its spec)."
        ),
    )
    parser.add_argument("--spec-file", help=f"VideoGenJob manifest or spec (overrides ${api.ENV_SPEC_FILE})")
    parser.add_argument(
        "--termination-log",
        help=f"where the result JSON goes (default ${api.ENV_TERMINATION_LOG} or {api.DEFAULT_TERMINATION_LOG})",
    )
    parser.add_argument(
        "--work-dir", help=f"scratch directory for the encoded video (default ${ENV_WORK_DIR} or TMPDIR)"
    )
    parser.add_argument("--log-level", help=f"DEBUG, INFO, WARNING (default ${ENV_LOG_LEVEL} or INFO)")
    return parser


def setup_logging(level: str) -> None:
    # stdout carries only the result JSON; everything human goes to stderr. A host that
    # already configured logging (a test harness, an embedding program) keeps its handlers.
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Our logger has its own level; libraries stay at the root's WARNING.
    logging.getLogger("videogen_runner").setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kubernetes", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise TerminatedError(
        f"terminated by signal {signal.Signals(signum).name} (pod deleted, suspended or past its deadline)"
    )


@dataclass
class StageClock:
    """Seconds per stage, for RunnerResult.timings."""

    started: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timings(self) -> api.Timings:
        def get(name: str) -> float | None:
            return round(self.seconds[name], 3) if name in self.seconds else None

        return api.Timings(
            loading=get("loading"),
            generating=get("generating"),
            encoding=get("encoding"),
            uploading=get("uploading"),
            total=round(time.monotonic() - self.started, 3),
        )


class _TimedIterator:
    """Counts the time spent producing frames, so a streamed decode is billed to generating, not encoding."""

    def __init__(self, inner: Iterator[Any]) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __iter__(self) -> _TimedIterator:
        return self

    def __next__(self) -> Any:
        start = time.monotonic()
        try:
            return next(self.inner)
        finally:
            self.seconds += time.monotonic() - start


def run(args: argparse.Namespace, env: Mapping[str, str]) -> api.RunnerResult:
    from .spec_input import load_run_input

    clock = StageClock()
    run_input = load_run_input(args.spec_file, env)
    spec = run_input.spec
    log.info(
        "job %s: %s with %s, prompt %r, output %s, spec hash %s",
        run_input.identity.describe(),
        spec.task.value,
        spec.model,
        api.prompt_preview(spec.prompt),
        run_input.output.uri,
        run_input.spec_hash,
    )

    from .progress import ProgressReporter, make_sink

    reporter = ProgressReporter(make_sink(run_input.identity, env))
    try:
        result = _generate_and_upload(args, env, run_input, reporter, clock)
    except BaseException:
        reporter.close(flush=False)
        raise
    reporter.stage(api.Stage.DONE)
    reporter.close(flush=True)
    return result.model_copy(update={"timings": clock.timings()})


def _generate_and_upload(
    args: argparse.Namespace,
    env: Mapping[str, str],
    run_input: Any,
    reporter: Any,
    clock: StageClock,
) -> api.RunnerResult:
    from .images import fetch_input_image, fit_to_frame
    from .memory import OutputSize, choose_memory_plan
    from .models import hf_offline_env, inspect_model, load_pipeline, open_model
    from .presets import resolve_params
    from .s3 import RetryPolicy, make_client
    from .upload import CONTENT_TYPES, check_reachable, presign, upload_file

    spec: api.VideoGenJobSpec = run_input.spec
    stage_delay = float(env.get(ENV_TEST_STAGE_DELAY, "0") or 0)

    def enter(stage: api.Stage, step: int | None = None, total: int | None = None) -> None:
        reporter.stage(stage, step, total)
        if stage_delay > 0:
            time.sleep(stage_delay)

    policy = RetryPolicy.from_env(env)
    s3 = make_client(env)
    check_reachable(s3, run_input.output.bucket, run_input.output.key, policy)

    started = time.monotonic()
    enter(api.Stage.LOADING)
    image = fetch_input_image(spec.image, s3, policy) if spec.image else None
    hf_offline_env()
    with open_model(spec.model, env=env, s3_client=s3, policy=policy) as model_dir:
        info = inspect_model(spec.model, model_dir, spec.task)
        resolved = resolve_params(
            spec,
            info.rules,
            seed_source=lambda: secrets.randbelow(api.MAX_SEED + 1),
            image_size=image.size if image else None,
        )
        for note in resolved.filled:
            log.info("filled %s", note)
        for note in resolved.adjustments:
            log.warning("adjusted %s", note)
        from .placement import apply_memory_plan, cuda_available, cuda_free_bytes

        cuda = cuda_available()
        loaded = load_pipeline(info, cuda=cuda)
    params = resolved.params
    plan = choose_memory_plan(
        spec.memory,
        cuda=cuda,
        free_bytes=cuda_free_bytes() if cuda else None,
        model_bytes=loaded.model_bytes,
        largest_component_bytes=loaded.largest_component_bytes,
        output=OutputSize(params.width, params.height, params.num_frames),
    )
    apply_memory_plan(loaded.pipe, plan)
    log.info("memory mode: %s", plan.describe())
    clock.add("loading", time.monotonic() - started)

    from .encode import encode_frames
    from .generate import GenerationRequest, generate

    started = time.monotonic()
    enter(api.Stage.GENERATING, 0, params.steps)
    request = GenerationRequest(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        params=params,
        image=fit_to_frame(image.image, params.width, params.height) if image else None,
    )
    frames = generate(loaded, request, plan, reporter.step, env)
    clock.add("generating", time.monotonic() - started)

    work_parent = args.work_dir or env.get(ENV_WORK_DIR) or None
    with tempfile.TemporaryDirectory(prefix="videogen-", dir=work_parent) as work:
        started = time.monotonic()
        enter(api.Stage.ENCODING)
        timed = _TimedIterator(frames.iterator)
        video_path = Path(work) / f"video.{spec.output.format.value}"
        encoded = encode_frames(timed, video_path, spec.output.format, params.fps, poster_index=frames.expected // 2)
        clock.add("generating", timed.seconds)
        clock.add("encoding", time.monotonic() - started - timed.seconds)
        if encoded.frames != params.num_frames:
            log.warning("the pipeline produced %d frames, %d were asked for", encoded.frames, params.num_frames)

        started = time.monotonic()
        enter(api.Stage.UPLOADING)
        metadata = {api.S3_METADATA_SPEC_HASH: run_input.spec_hash}
        out = run_input.output
        video = upload_file(
            s3,
            video_path,
            out.bucket,
            out.key,
            content_type=CONTENT_TYPES[spec.output.format],
            metadata=metadata,
            policy=policy,
        )
        poster_uri = None
        if encoded.poster_jpeg is not None:
            poster_path = Path(work) / "poster.jpg"
            poster_path.write_bytes(encoded.poster_jpeg)
            poster = upload_file(
                s3, poster_path, out.bucket, out.poster_key, content_type="image/jpeg", metadata=metadata, policy=policy
            )
            poster_uri = poster.uri
        url = expires = None
        if spec.output.presign_seconds:
            url, expires = presign(s3, out.bucket, out.key, spec.output.presign_seconds)
        clock.add("uploading", time.monotonic() - started)

    output = api.OutputStatus(
        uri=video.uri,
        url=url,
        url_expires_at=expires,
        poster_uri=poster_uri,
        size_bytes=video.size_bytes,
        sha256=video.sha256,
        format=spec.output.format,
        width=encoded.width,
        height=encoded.height,
        frames=encoded.frames,
        fps=encoded.fps,
        duration_seconds=encoded.duration_seconds,
    )
    return api.RunnerResult(
        output=output,
        seed=params.seed,
        timings=clock.timings(),
        memory_mode=plan.describe(),
        adjustments=resolved.adjustments,
        spec_hash=run_input.spec_hash,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    setup_logging(args.log_level or env.get(ENV_LOG_LEVEL) or "INFO")
    termination_log = Path(args.termination_log or env.get(api.ENV_TERMINATION_LOG) or api.DEFAULT_TERMINATION_LOG)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result = run(args, env)
    except BaseException as exc:
        failure = failure_for(exc)
        level = logging.ERROR
        if failure.exit_code == api.ExitCode.INTERNAL_ERROR and not isinstance(exc, TerminatedError):
            log.exception("run failed: %s", failure.message)
        else:
            log.log(level, "run failed (%s, exit %d): %s", failure.reason.value, failure.exit_code, failure.message)
        emit(failure, termination_log)
        return failure.exit_code
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info(
        "done: %s (%d bytes, sha256 %s) in %.1fs",
        result.output.uri,
        result.output.size_bytes or 0,
        (result.output.sha256 or "")[:12],
        result.timings.total or 0.0,
    )
    emit(result, termination_log)
    return 0
