"""What the model loader checks before a model may be Ready: every check names the file it failed on.

- Which files are fetched at all: weights as safetensors, configs, tokenizer data (catalog.FETCHED_SUFFIXES);
  pickles, code, hidden files and anything else are skipped and listed.
- model_index.json: a diffusers pipeline of a class in diffusers, components only from diffusers (or
  one of its pipeline packages, as LTX-2's `ltx2`) or transformers (nothing a model ships is ever imported), and every component it names present with
  safetensors weights when it has weights at all (a component with only pickle weights fails).
- Every .safetensors file's header: the 8-byte length, a JSON header, and tensor data that exactly fills
  the rest of the file (a truncated or padded file fails).
- The files the VideoGenModel pins (spec.files): present, with their SHA-256.
- The profile hints: a valid profile entry for the runner.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

from videogen_api import catalog
from videogen_api.catalog import ModelReason

from .loader_errors import LoaderError, verification_failed
from .models import is_trusted_library
from .profiles import InvalidProfileError, validate_profile_entry

MODEL_INDEX: Final = "model_index.json"
# No diffusers checkpoint has a header this large; a bigger length means a corrupt file, not a model.
MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024
# Bits per element of safetensors dtypes (sub-byte types only have their spans checked).
_DTYPE_BITS: Final = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}
_CHUNK: Final = 4 * 1024 * 1024


def is_fetched(rel: str) -> bool:
    """Whether the loader fetches this file of a source: configs, tokenizer data and safetensors only."""
    parts = PurePosixPath(rel).parts
    if any(part.startswith(".") for part in parts):
        # .gitattributes, .cache/huggingface/..., a synced cache's manifest: never part of a model.
        return False
    return rel.lower().endswith(catalog.FETCHED_SUFFIXES)


def is_pickle(rel: str) -> bool:
    return rel.lower().endswith(catalog.PICKLE_SUFFIXES)


def safe_relative(rel: str, source: str) -> str:
    """The relative path of a source's file, refusing names that would land outside the model directory."""
    path = PurePosixPath(rel)
    if path.is_absolute() or not path.parts or any(part in ("..", ".") for part in path.parts):
        raise verification_failed(rel, f"{source}: refusing file name {rel!r} (it would land outside the model)")
    return path.as_posix()


# --------------------------------------------------------------------------- model_index.json


def read_model_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise verification_failed(MODEL_INDEX, f"{MODEL_INDEX}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise verification_failed(MODEL_INDEX, f"{MODEL_INDEX}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise verification_failed(MODEL_INDEX, f"{MODEL_INDEX}: not a JSON object")
    return data


def pipeline_components(index: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """{component: (library, class)} of the components from_pretrained loads from subfolders."""
    class_name = index.get("_class_name")
    if not isinstance(class_name, str):
        raise verification_failed(
            MODEL_INDEX, f"{MODEL_INDEX}: _class_name {class_name!r} is a custom pipeline; model code is never run"
        )
    components: dict[str, tuple[str, str]] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        library, cls = value
        if not isinstance(library, str) or not is_trusted_library(library):
            raise verification_failed(
                MODEL_INDEX,
                f"{MODEL_INDEX}: component {name} comes from {library!r}; only diffusers (and its pipeline "
                "packages) and transformers classes are loaded (model code is never run)",
            )
        components[name] = (str(library), str(cls))
    return components


def check_components(index: Mapping[str, Any], source_files: Iterable[str]) -> None:
    """Every component model_index.json names is in the source, and its weights (if any) are safetensors."""
    by_component: dict[str, list[str]] = {}
    for rel in source_files:
        parts = PurePosixPath(rel).parts
        if len(parts) > 1:
            by_component.setdefault(parts[0], []).append(rel)
    for name in sorted(pipeline_components(index)):
        files = sorted(by_component.get(name, []))
        if not files:
            raise verification_failed(
                f"{name}/", f"{MODEL_INDEX} names component {name}, but the source has no {name}/ directory"
            )
        pickles = [f for f in files if is_pickle(f)]
        if pickles and not any(f.lower().endswith(".safetensors") for f in files):
            raise verification_failed(
                pickles[0],
                f"{pickles[0]}: component {name} has only pickle weights; the catalog loads safetensors only "
                "(convert it, e.g. save_pretrained(..., safe_serialization=True))",
            )


# --------------------------------------------------------------------------- files


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def check_safetensors(path: Path, rel: str) -> None:
    """The header parses and the tensors' data exactly fills the file (catches truncated downloads)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise verification_failed(rel, f"{rel}: {size} bytes, too short for a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_SAFETENSORS_HEADER, size - 8):
                raise verification_failed(
                    rel, f"{rel}: safetensors header length {length} does not fit the file ({size} bytes)"
                )
            raw = fh.read(length)
    except OSError as exc:
        raise verification_failed(rel, f"{rel}: cannot read it ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise verification_failed(rel, f"{rel}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise verification_failed(rel, f"{rel}: safetensors header is not a JSON object")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        spans.append((*_tensor_span(rel, name, info), name))
    data_size = size - 8 - length
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise verification_failed(rel, f"{rel}: tensor {name} starts at byte {begin}, expected {position}")
        position = end
    if position != data_size:
        raise verification_failed(
            rel,
            f"{rel}: the header's tensors need {position} bytes of data but the file holds {data_size} "
            f"({'truncated' if data_size < position else 'trailing bytes'})",
        )


def _tensor_span(rel: str, name: str, info: object) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise verification_failed(rel, f"{rel}: tensor {name} has no dtype/shape/data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    valid = (
        isinstance(dtype, str)
        and isinstance(shape, list)
        and all(isinstance(d, int) and d >= 0 for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
    )
    if not valid:
        raise verification_failed(rel, f"{rel}: tensor {name} has a malformed header entry")
    assert isinstance(offsets, list) and isinstance(shape, list)
    begin, end = int(offsets[0]), int(offsets[1])
    if not 0 <= begin <= end:
        raise verification_failed(rel, f"{rel}: tensor {name} has data offsets {offsets}")
    bits = _DTYPE_BITS.get(str(dtype))
    if bits is not None and (end - begin) * 8 != math.prod(shape) * bits:
        raise verification_failed(
            rel,
            f"{rel}: tensor {name} ({dtype}, shape {shape}) needs {math.prod(shape) * bits // 8} bytes, "
            f"its offsets give {end - begin}",
        )
    return begin, end


def check_expected_present(expected: Iterable[catalog.ExpectedFile], fetched: Iterable[str], source: str) -> None:
    """Before anything is downloaded: every pinned file is among the files the loader fetches."""
    have = set(fetched)
    for item in expected:
        if item.path not in have:
            why = (
                "it is not fetched (only safetensors, configs and tokenizer data are)"
                if not is_fetched(item.path)
                else "the source has no such file"
            )
            raise verification_failed(item.path, f"spec.files: {item.path}: {why} ({source})")


def check_expected_digests(expected: Iterable[catalog.ExpectedFile], sha256: Mapping[str, str]) -> None:
    for item in expected:
        got = sha256.get(item.path)
        if got is None:
            raise verification_failed(item.path, f"spec.files: {item.path}: missing from the model")
        if got != item.sha256:
            raise verification_failed(
                item.path, f"spec.files: {item.path}: sha256 is {got}, expected {item.sha256} (corrupt or changed)"
            )


def check_profile(entry: object, where: str) -> None:
    """The profile hints are a valid profile entry (InvalidProfile names the key)."""
    try:
        validate_profile_entry(entry)
    except InvalidProfileError as exc:
        raise LoaderError(ModelReason.INVALID_PROFILE, f"{where}: {exc}", file=catalog.PROFILE_FILE_NAME) from exc


def read_profile_file(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LoaderError(
            ModelReason.INVALID_PROFILE,
            f"{catalog.PROFILE_FILE_NAME}: not valid JSON ({exc})",
            file=catalog.PROFILE_FILE_NAME,
        ) from exc
