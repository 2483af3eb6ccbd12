"""Generate the VideoGenJob CustomResourceDefinition from the pydantic contract.

`make crds` runs this module; a test fails when crds/ differs from its output.
The conversion turns pydantic's JSON Schema into a Kubernetes structural schema:
references inlined, Optional unwrapped, titles dropped, JSON-Schema-2020
exclusive bounds rewritten to OpenAPI v3 booleans, and nested objects that have
defaults of their own given `default: {}` so the API server fills them in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from videogen_api import catalog
from videogen_api import v1alpha1 as api

_DROP_KEYS = frozenset({"title", "$defs", "discriminator"})

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress.summary",
        "description": "Stage and denoising step of the running job.",
    },
    {"name": "Model", "type": "string", "jsonPath": ".spec.model", "description": "Pipeline being run."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".status.reason",
        "priority": 1,
        "description": "Why the job is in its phase.",
    },
    {
        "name": "Output",
        "type": "string",
        "jsonPath": ".status.output.uri",
        "priority": 1,
        "description": "Where the video is stored.",
    },
    {
        "name": "Pod",
        "type": "string",
        "jsonPath": ".status.podName",
        "priority": 1,
        "description": "Current or last runner pod.",
    },
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _unwrap_optional(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` arrives as anyOf [X, null]; Kubernetes expresses optional by omission."""
    any_of = schema.get("anyOf")
    if not any_of:
        return schema
    non_null = [s for s in any_of if s.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot express anyOf {any_of} in a structural schema")
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    inner = dict(non_null[0])
    # The field's own description and extensions win over the referenced type's.
    inner.update(outer)
    return inner


def _structural(schema: dict[str, Any]) -> dict[str, Any]:
    schema = _unwrap_optional(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out["properties"] = {name: _structural(prop) for name, prop in value.items()}
            continue
        if key == "items":
            out["items"] = _structural(value)
            continue
        if key == "additionalProperties":
            out[key] = _structural(value) if isinstance(value, dict) else value
            continue
        out[key] = value
    if out.get("type") == "object" and out.get("additionalProperties") is False:
        del out["additionalProperties"]
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if out.get("format") == "date-time":
        out["type"] = "string"
    if "maxLength" in out and out.get("type") == "object":
        # pydantic's max_length on a dict means "at most N keys"
        out["maxProperties"] = out.pop("maxLength")
    return out


def _fill_nested_defaults(schema: dict[str, Any]) -> None:
    """Give optional objects whose children have defaults `default: {}`, so the
    API server applies those children's defaults even when the user omits the object."""
    for prop in schema.get("properties", {}).values():
        _fill_nested_defaults(prop)
        if prop.get("type") == "object" and "default" not in prop:
            children = prop.get("properties", {})
            if any("default" in child for child in children.values()):
                prop["default"] = {}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _structural(_resolve(raw, defs))


MODEL_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Pending, Downloading, Ready or Failed.",
    },
    {"name": "Size", "type": "string", "jsonPath": ".status.size", "description": "Total size of the model's files."},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress.summary",
        "description": "Download progress.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Source",
        "type": "string",
        "jsonPath": ".spec.source",
        "priority": 1,
        "description": "Where it comes from.",
    },
    {
        "name": "Revision",
        "type": "string",
        "jsonPath": ".status.revision",
        "priority": 1,
        "description": "Revision fetched.",
    },
    {
        "name": "Files",
        "type": "integer",
        "jsonPath": ".status.fileCount",
        "priority": 1,
        "description": "Files fetched.",
    },
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1, "description": "Why this phase."},
    {
        "name": "Pipeline",
        "type": "string",
        "jsonPath": ".status.architecture.pipeline",
        "priority": 1,
        "description": "Pipeline class of model_index.json.",
    },
    {
        "name": "Multi-GPU",
        "type": "boolean",
        "jsonPath": ".status.architecture.contextParallel",
        "priority": 1,
        "description": "Whether jobs may ask for more than one GPU (diffusers can split its transformer).",
    },
]


def _doc(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().replace("\n    ", " ").replace("\n", " ")


def _build(
    *,
    kind: str,
    names: dict[str, Any],
    crd_name: str,
    scope: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    root_model: type[BaseModel],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    spec_schema = openapi_schema(spec_model)
    status_schema = openapi_schema(status_model)
    _fill_nested_defaults(spec_schema)
    spec_schema["description"] = _doc(spec_model)
    status_schema["description"] = (status_model.__doc__ or "").strip()
    root = {
        "type": "object",
        "description": _doc(root_model),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object: videogen.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": f"Kind of this object: {kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd_name,
            "labels": {api.LABEL_PART_OF: api.MANAGED_BY},
        },
        "spec": {
            "group": api.GROUP,
            "names": names,
            "scope": scope,
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def build_crd() -> dict[str, Any]:
    """The VideoGenJob CRD (namespaced)."""
    return _build(
        kind=api.KIND,
        names={
            "kind": api.KIND,
            "listKind": api.LIST_KIND,
            "plural": api.PLURAL,
            "singular": api.SINGULAR,
            "shortNames": list(api.SHORT_NAMES),
            "categories": list(api.CATEGORIES),
        },
        crd_name=api.CRD_NAME,
        scope="Namespaced",
        spec_model=api.VideoGenJobSpec,
        status_model=api.VideoGenJobStatus,
        root_model=api.VideoGenJob,
        columns=PRINTER_COLUMNS,
    )


def build_model_crd() -> dict[str, Any]:
    """The VideoGenModel CRD (cluster-scoped: the platform's catalog)."""
    return _build(
        kind=catalog.MODEL_KIND,
        names={
            "kind": catalog.MODEL_KIND,
            "listKind": catalog.MODEL_LIST_KIND,
            "plural": catalog.MODEL_PLURAL,
            "singular": catalog.MODEL_SINGULAR,
            "shortNames": list(catalog.MODEL_SHORT_NAMES),
            "categories": list(catalog.MODEL_CATEGORIES),
        },
        crd_name=catalog.MODEL_CRD_NAME,
        scope="Cluster",
        spec_model=catalog.VideoGenModelSpec,
        status_model=catalog.VideoGenModelStatus,
        root_model=catalog.VideoGenModel,
        columns=MODEL_PRINTER_COLUMNS,
    )


HEADER = "# Generated by `make crds` from api/videogen_api/v1alpha1.py. Do not edit by hand.\n"
MODEL_HEADER = "# Generated by `make crds` from api/videogen_api/catalog.py. Do not edit by hand.\n"


def render_crd() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


def render_model_crd() -> str:
    return MODEL_HEADER + yaml.safe_dump(build_model_crd(), sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="write the VideoGenJob CRD here instead of stdout")
    parser.add_argument("--models-out", type=Path, help="write the VideoGenModel CRD here")
    args = parser.parse_args(argv)
    outputs = [(args.out, render_crd())]
    if args.models_out:
        outputs.append((args.models_out, render_model_crd()))
    for path, text in outputs:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
