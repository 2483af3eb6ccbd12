"""Operator policy a namespace's spec must satisfy beyond the schema: which
PriorityClasses it may name. A refusal ends the job Failed/ValidationFailed with
the field named (never silently ignored: a job would otherwise run at a priority
nobody granted)."""

from __future__ import annotations

from videogen_api import v1alpha1 as api
from videogen_operator.settings import OperatorSettings
from videogen_operator.validation import SpecError

SYSTEM_PREFIX = "system-"


def allowed_priority_classes(namespace: str, settings: OperatorSettings) -> list[str] | None:
    """The classes this namespace may use, or None for "any class except the system-* ones"."""
    policy = settings.allowed_priority_classes
    if not policy:
        return None
    return list(policy.get(namespace, policy.get("*", [])))


def check_priority_class(namespace: str, spec: api.VideoGenJobSpec, settings: OperatorSettings) -> None:
    name = spec.resources.priority_class_name
    if not name:
        return
    allowed = allowed_priority_classes(namespace, settings)
    if allowed is None:
        if name.startswith(SYSTEM_PREFIX):
            raise SpecError(
                f"spec.resources.priorityClassName: {name!r} is reserved for the cluster's own components; "
                "ask the platform team to allow a class for this namespace (allowedPriorityClasses)"
            )
        return
    if name not in allowed:
        shown = ", ".join(repr(c) for c in allowed) or "none"
        raise SpecError(
            f"spec.resources.priorityClassName: {name!r} is not allowed in namespace {namespace!r} (allowed: {shown})"
        )
