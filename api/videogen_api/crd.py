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


def build_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(api.VideoGenJobSpec)
    status_schema = openapi_schema(api.VideoGenJobStatus)
    _fill_nested_defaults(spec_schema)
    spec_schema["description"] = (api.VideoGenJobSpec.__doc__ or "").strip().replace("\n    ", " ").replace("\n", " ")
    status_schema["description"] = (api.VideoGenJobStatus.__doc__ or "").strip()
    root = {
        "type": "object",
        "description": (api.VideoGenJob.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object: videogen.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": "Kind of this object: VideoGenJob."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": api.CRD_NAME,
            "labels": {api.LABEL_PART_OF: api.MANAGED_BY},
        },
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": api.LIST_KIND,
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from api/videogen_api/v1alpha1.py. Do not edit by hand.\n"


def render_crd() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = render_crd()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
