"""Failure classes of the runner and the one place exceptions become exit codes.

The operator turns exit codes into retry decisions (see
``api.NON_RETRYABLE_EXIT_CODES``), so every exception must land in exactly one
class; anything unrecognised is an internal (retryable) error.
"""

from __future__ import annotations

import re
from typing import Final

from videogen_api import v1alpha1 as api

# Long tracebacks or multi-line library messages would blow the 4 KiB
# termination message and are unreadable in `kubectl get`; one line is enough.
MAX_MESSAGE_CHARS: Final = 1000


class RunnerError(Exception):
    """An expected failure with a known class and a readable one-line message."""

    exit_code: api.ExitCode = api.ExitCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(RunnerError):
    exit_code = api.ExitCode.INVALID_INPUT


class ModelNotFoundError(RunnerError):
    exit_code = api.ExitCode.MODEL_NOT_FOUND


class ModelLoadError(RunnerError):
    exit_code = api.ExitCode.MODEL_LOAD_ERROR


class CudaOutOfMemoryError(RunnerError):
    exit_code = api.ExitCode.CUDA_OUT_OF_MEMORY


class InputImageError(RunnerError):
    exit_code = api.ExitCode.INPUT_IMAGE_ERROR


class UploadError(RunnerError):
    exit_code = api.ExitCode.UPLOAD_ERROR


class InternalError(RunnerError):
    exit_code = api.ExitCode.INTERNAL_ERROR


class TerminatedError(BaseException):
    """SIGTERM (pod deletion, suspend, deadline): retryable by nature.

    A BaseException, like KeyboardInterrupt: the signal handler raises it wherever
    the main thread happens to be, and the broad `except Exception` around
    best-effort work (progress writes, transfer retries) must not swallow it."""

    exit_code = api.ExitCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def is_cuda_oom(exc: BaseException) -> bool:
    # Matched by name so classifying never imports torch (it may not be loaded yet).
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "OutOfMemoryError" in names:
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def classify(exc: BaseException) -> tuple[api.ExitCode, str]:
    """Map any exception to (exit code, one-line message)."""
    if isinstance(exc, (RunnerError, TerminatedError)):
        return exc.exit_code, one_line(exc.message)
    if is_cuda_oom(exc):
        return api.ExitCode.CUDA_OUT_OF_MEMORY, one_line(
            f"CUDA out of memory: {exc} (try a smaller width/height/numFrames or spec.memory: sequential-offload)"
        )
    if isinstance(exc, KeyboardInterrupt):
        return api.ExitCode.INTERNAL_ERROR, "interrupted"
    detail = str(exc) or repr(exc)
    return api.ExitCode.INTERNAL_ERROR, one_line(f"{type(exc).__name__}: {detail}")


def failure_for(exc: BaseException) -> api.RunnerFailure:
    code, message = classify(exc)
    return api.RunnerFailure(reason=api.EXIT_CODE_REASONS[code], message=message, exit_code=int(code))
