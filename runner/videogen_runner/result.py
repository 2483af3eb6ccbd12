"""The runner's last words: a RunnerResult or RunnerFailure as JSON, to the termination
message file (what the operator reads from the pod status) and to stdout's last line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from videogen_api import v1alpha1 as api

log = logging.getLogger(__name__)


def _encoded(model: api.RunnerResult | api.RunnerFailure) -> str:
    return json.dumps(model.to_wire(), separators=(",", ":"), ensure_ascii=False)


def fit_result(result: api.RunnerResult, limit: int = api.TERMINATION_MESSAGE_LIMIT) -> api.RunnerResult:
    """The result, shrunk to fit the kubelet's limit: the presigned URL goes first
    (the operator can presign on its own), then adjustments are cut short."""
    if len(_encoded(result).encode()) <= limit:
        return result
    output = result.output.model_copy(update={"url": None, "url_expires_at": None})
    slim = result.model_copy(update={"output": output})
    adjustments = list(slim.adjustments)
    while len(_encoded(slim).encode()) > limit and adjustments:
        adjustments.pop()
        slim = slim.model_copy(update={"adjustments": [*adjustments, "(more adjustments in the logs)"]})
    return slim


def fit_failure(failure: api.RunnerFailure, limit: int = api.TERMINATION_MESSAGE_LIMIT) -> api.RunnerFailure:
    while len(_encoded(failure).encode()) > limit and len(failure.message) > 16:
        failure = failure.model_copy(update={"message": failure.message[: len(failure.message) // 2] + "…"})
    return failure


def write_termination_message(path: Path, text: str) -> bool:
    """Best effort: a missing or read-only path (run by hand) must not fail the run."""
    try:
        with path.open("w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        log.warning("cannot write termination message to %s: %s", path, exc.strerror or exc)
        return False
    return True


def emit(model: api.RunnerResult | api.RunnerFailure, termination_log: Path, stdout: TextIO | None = None) -> str:
    fitted = fit_result(model) if isinstance(model, api.RunnerResult) else fit_failure(model)
    text = _encoded(fitted)
    write_termination_message(termination_log, text)
    out = stdout or sys.stdout
    out.write(text + "\n")
    out.flush()
    return text


def record_on_status(result: api.RunnerResult, env: Mapping[str, str]) -> bool:
    """Also record the result on the VideoGenJob (`status.runnerResult`), before the pod exits.

    The termination message dies with the pod, and the pod with its Job's TTL: an operator
    that was down or busy then would otherwise find an uploaded video and no result. The
    operator treats this copy as untrusted and verifies the object before accepting it.
    Best effort: a failure here is logged; the termination message still carries the result."""
    from .progress import KubeStatusSink, make_sink
    from .spec_input import JobIdentity

    sink = make_sink(JobIdentity.from_env(env), env)
    if not isinstance(sink, KubeStatusSink):
        return False
    try:
        sink.write_status({"runnerResult": fit_result(result).to_wire()})
    except Exception as exc:  # the result is also in the termination message
        log.warning("could not record the result on %s/%s: %s", sink.namespace, sink.name, exc)
        return False
    return True
