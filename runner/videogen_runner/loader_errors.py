"""Failure classes of the model loader and the exit codes the operator acts on.

The loader Job's pod failure policy turns exit codes into decisions: a source that is not there
(11) or a model that fails verification (12) ends the model `Failed` at once, since fetching again
would fail the same way; anything else (20) is worth another pod. The termination message
(catalog.LoaderFailure) says which file and why.
"""

from __future__ import annotations

from enum import IntEnum

from videogen_api.catalog import ModelReason


class LoaderExit(IntEnum):
    OK = 0
    # The loader's own input (VIDEOGEN_LOADER_SPEC, arguments) is unusable: an operator bug, not the model's.
    USAGE = 2
    SOURCE_NOT_FOUND = 11
    INVALID_MODEL = 12
    TRANSIENT = 20


_EXIT_FOR_REASON = {
    ModelReason.SOURCE_NOT_FOUND: LoaderExit.SOURCE_NOT_FOUND,
    ModelReason.VERIFICATION_FAILED: LoaderExit.INVALID_MODEL,
    ModelReason.INVALID_PROFILE: LoaderExit.INVALID_MODEL,
}


class LoaderError(Exception):
    """An expected failure: its reason, a one-line message and, when there is one, the file concerned."""

    def __init__(self, reason: ModelReason, message: str, *, file: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.file = file

    @property
    def exit_code(self) -> LoaderExit:
        return _EXIT_FOR_REASON.get(self.reason, LoaderExit.TRANSIENT)


def source_not_found(message: str) -> LoaderError:
    return LoaderError(ModelReason.SOURCE_NOT_FOUND, message)


def verification_failed(file: str, message: str) -> LoaderError:
    return LoaderError(ModelReason.VERIFICATION_FAILED, message, file=file)


def transient(message: str) -> LoaderError:
    """Worth another attempt (the Job retries the pod): network trouble, a server hiccup, a full disk."""
    return LoaderError(ModelReason.LOADER_FAILED, message)


class UsageError(Exception):
    """The loader's own input is unusable (exit 2)."""
