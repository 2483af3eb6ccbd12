"""Reading and validating the runner's input: the spec, the job's identity and
where the video goes.

Everything here runs before torch is imported, so a bad spec fails in well
under a second and never holds a GPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from videogen_api import v1alpha1 as api

from .catalog_model import CatalogModel, catalog_model
from .errors import InvalidInputError, one_line

# A spec is a few KiB; anything much larger is a mistake (or an attack on the
# YAML parser), not a spec.
MAX_SPEC_BYTES = 1 << 20


@dataclass(frozen=True)
class JobIdentity:
    """Which VideoGenJob this run belongs to; empty when run by hand."""

    namespace: str | None = None
    name: str | None = None
    uid: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobIdentity:
        return cls(
            namespace=env.get(api.ENV_JOB_NAMESPACE) or None,
            name=env.get(api.ENV_JOB_NAME) or None,
            uid=env.get(api.ENV_JOB_UID) or None,
        )

    @property
    def in_cluster(self) -> bool:
        """Whether progress can be written to a VideoGenJob's status."""
        return bool(self.namespace and self.name)

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}" if self.in_cluster else "(no job identity: run by hand)"


# Where the video goes (the contract's type, shared with the operator).
OutputLocation = api.ObjectLocation


@dataclass(frozen=True)
class RunInput:
    spec: api.VideoGenJobSpec
    identity: JobIdentity
    output: OutputLocation
    spec_hash: str
    # Set when spec.model is a catalog name: its directory and the identity the spec hash covers.
    catalog: CatalogModel | None = None


def read_spec_document(spec_file: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """The raw spec (or whole manifest) from --spec-file, VIDEOGEN_SPEC_FILE or VIDEOGEN_SPEC, in that order."""
    path = spec_file or env.get(api.ENV_SPEC_FILE)
    if path:
        try:
            with Path(path).open("rb") as fh:
                raw = fh.read(MAX_SPEC_BYTES + 1)
        except OSError as exc:
            raise InvalidInputError(f"spec file {path}: cannot read it ({exc.strerror or exc})") from exc
        source = f"spec file {path}"
    elif env.get(api.ENV_SPEC):
        raw = env[api.ENV_SPEC].encode()
        source = api.ENV_SPEC
    else:
        raise InvalidInputError(f"spec: none given; set {api.ENV_SPEC} (JSON), {api.ENV_SPEC_FILE} or --spec-file")
    if len(raw) > MAX_SPEC_BYTES:
        raise InvalidInputError(f"spec: {source} is larger than {MAX_SPEC_BYTES} bytes")
    return parse_document(raw.decode("utf-8", errors="replace"), source)


def parse_document(text: str, source: str) -> dict[str, Any]:
    try:
        # JSON is a subset of YAML 1.2, but strict JSON gives better error positions.
        doc = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"spec: {source} is neither valid JSON nor YAML: {one_line(str(exc), 200)}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError(
            f"spec: {source} must hold a mapping (a VideoGenJob or its spec), not {type(doc).__name__}"
        )
    return doc


def split_manifest(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, metadata) from either a whole VideoGenJob manifest or a bare spec."""
    if "spec" in doc or doc.get("kind") == api.KIND:
        kind = doc.get("kind")
        if kind is not None and kind != api.KIND:
            raise InvalidInputError(f"kind: expected {api.KIND}, got {kind!r}")
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            raise InvalidInputError("spec: the manifest has no spec mapping")
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        return spec, metadata or {}
    return doc, {}


def validation_message(exc: ValidationError) -> str:
    """The first problem, as `spec.<field>: <what is wrong>`, one line."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    # Model-level validators already name the field in their message.
    if not loc:
        return one_line(msg if msg.startswith("spec.") else f"spec: {msg}")
    extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return one_line(f"spec.{loc}: {msg}{extra}")


def validate_spec(raw: dict[str, Any]) -> api.VideoGenJobSpec:
    try:
        return api.VideoGenJobSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInputError(validation_message(exc)) from exc


def resolve_output(
    spec: api.VideoGenJobSpec, identity: JobIdentity, metadata: Mapping[str, Any], digest: str, env: Mapping[str, str]
) -> OutputLocation:
    """The operator's resolved location wins; then the spec; then the contract's default key."""
    bucket = env.get(api.ENV_OUTPUT_BUCKET) or spec.output.bucket
    if not bucket:
        raise InvalidInputError(f"spec.output.bucket: not set and the operator passed no {api.ENV_OUTPUT_BUCKET}")
    key = env.get(api.ENV_OUTPUT_KEY) or spec.output.key
    if not key:
        namespace = identity.namespace or str(metadata.get("namespace") or "default")
        name = identity.name or str(metadata.get("name") or "videogen")
        key = api.default_output_key(namespace, name, digest, spec.output.format)
    return OutputLocation(bucket=bucket, key=key)


def load_run_input(spec_file: str | None, env: Mapping[str, str] | None = None) -> RunInput:
    env = os.environ if env is None else env
    doc = read_spec_document(spec_file, env)
    raw_spec, metadata = split_manifest(doc)
    spec = validate_spec(raw_spec)
    identity = JobIdentity.from_env(env)
    # A catalog name says nothing about its files: the hash covers the revision the operator resolved
    # (it signs the same hash into the presigned PUT, so both must agree).
    named = catalog_model(spec.model, env)
    digest = api.spec_hash(spec, named.identity if named else None)
    return RunInput(
        spec=spec,
        identity=identity,
        output=resolve_output(spec, identity, metadata, digest, env),
        spec_hash=digest,
        catalog=named,
    )
