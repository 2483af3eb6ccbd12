"""`videogen-runner`: one VideoGenJob, start to finish, in one process.

Order matters for cost: everything that can fail cheaply (spec, output store
reachable, input image, model present) fails before the weights are loaded,
and nothing touches the GPU before the spec is known to be valid.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from videogen_api import v1alpha1 as api

from . import coldstart
from .errors import TerminatedError, failure_for
from .progress import ProgressReporter, make_sink
from .render import StageClock
from .result import emit, record_on_status
from .spec_input import RunInput, load_run_input

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


def run(args: argparse.Namespace, env: Mapping[str, str]) -> api.RunnerResult:
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
    run_input: RunInput,
    reporter: ProgressReporter,
    clock: StageClock,
) -> api.RunnerResult:
    from .render import render_video
    from .s3 import RetryPolicy, make_client
    from .upload import CONTENT_TYPES, check_reachable, presign, upload_file

    spec = run_input.spec
    stage_delay = float(env.get(ENV_TEST_STAGE_DELAY, "0") or 0)

    def enter(stage: api.Stage, step: int | None = None, total: int | None = None) -> None:
        reporter.stage(stage, step, total)
        if stage_delay > 0:
            time.sleep(stage_delay)

    policy = RetryPolicy.from_env(env)
    s3 = make_client(env)
    # torch, diffusers and CUDA load in the background while the store is probed and inputs fetched
    # (started after this thread's own heavy imports, kubernetes and boto3, so the two never interleave).
    coldstart.start_imports()
    # Before any GPU work: a store that cannot be reached would waste the whole run.
    check_reachable(s3, run_input.output.bucket, run_input.output.key, policy)

    work_parent = args.work_dir or env.get(ENV_WORK_DIR) or None
    with tempfile.TemporaryDirectory(prefix="videogen-", dir=work_parent) as work:
        video_path = Path(work) / f"video.{spec.output.format.value}"
        rendered = render_video(
            spec, env, video_path=video_path, s3=s3, policy=policy, on_stage=enter, on_step=reporter.step, clock=clock
        )
        encoded = rendered.encoded

        started = time.monotonic()
        enter(api.Stage.UPLOADING)
        metadata = {api.S3_METADATA_SPEC_HASH: run_input.spec_hash}
        if run_input.identity.uid:
            # Under a grant the operator signs this in; with workload identity the runner sets it.
            metadata[api.S3_METADATA_JOB_UID] = run_input.identity.uid
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
        seed=rendered.params.seed,
        timings=clock.timings(),
        memory_mode=rendered.plan.describe(),
        adjustments=rendered.adjustments,
        acceleration=rendered.acceleration,
        spec_hash=run_input.spec_hash,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    setup_logging(args.log_level or env.get(ENV_LOG_LEVEL) or "INFO")
    from . import parallel

    if parallel.is_secondary_rank(env):
        return parallel.run_secondary(args.spec_file, env)
    if not parallel.is_rank(env) and (gpus := parallel.requested_gpus(args.spec_file, env)) > 1:
        return parallel.launch(list(sys.argv[1:] if argv is None else argv), env, gpus, _termination_log(args, env))
    code = _main(args, env)
    parallel.record_exit_code(env, code)
    return code


def _termination_log(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    return Path(args.termination_log or env.get(api.ENV_TERMINATION_LOG) or api.DEFAULT_TERMINATION_LOG)


def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    termination_log = _termination_log(args, env)
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
    record_on_status(result, env)
    emit(result, termination_log)
    return 0
