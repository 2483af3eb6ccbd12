"""Semantic validation beyond what the CRD's schema and CEL rules can say.

These depend on the operator's settings or on other objects, so the API server
cannot check them. A failure here ends the job as Failed/ValidationFailed with
a message that names the field; it never crash-loops the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from videogen_api import v1alpha1 as api
from videogen_operator import policy
from videogen_operator.manifests import JobRef
from videogen_operator.settings import OperatorSettings


class SpecError(ValueError):
    """A spec the operator will not run; str() is the user-facing message, `reason` the status reason."""

    def __init__(self, message: str, reason: str = api.Reason.VALIDATION_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


def parse_spec(raw: dict[str, Any] | None) -> api.VideoGenJobSpec:
    try:
        return api.VideoGenJobSpec.model_validate(raw or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise SpecError(f"spec.{where}: {first['msg']}") from err


def validate_spec(
    ref: JobRef,
    spec: api.VideoGenJobSpec,
    settings: OperatorSettings,
    digest: str,
    priority_class_exists: Callable[[str], bool],
) -> None:
    if spec.resources.gpus > settings.max_gpus_per_job:
        raise SpecError(
            f"spec.resources.gpus: {spec.resources.gpus} is more than this cluster allows per job "
            f"({settings.max_gpus_per_job})"
        )
    if spec.model.startswith("/"):
        root = settings.model_cache.mount_path.rstrip("/") + "/"
        if not spec.model.startswith(root) or "/../" in spec.model:
            raise SpecError(f"spec.model: a local path must be inside the model-cache volume ({root})")
    try:
        policy.check_spec(ref.namespace, ref.name, spec, settings, digest)
    except policy.PolicyViolationError as err:
        raise SpecError(str(err), api.Reason.POLICY_VIOLATION) from err
    except ValueError as err:
        raise SpecError(str(err)) from err
    if spec.resources.priority_class_name and not priority_class_exists(spec.resources.priority_class_name):
        raise SpecError(
            f"spec.resources.priorityClassName: PriorityClass {spec.resources.priority_class_name!r} does not exist"
        )
