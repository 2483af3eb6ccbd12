"""Cold start: process start to the first denoising step.

`import torch` and `import diffusers` cost 10-13 s in a fresh pod (measured on an H100 node), CUDA
init a little more. The runner starts them on a background thread as soon as the spec is valid,
while the main thread probes the output store and fetches the input image, then waits for them
where the model is inspected; `timings.loadingImport` is only that wait. Weights go straight to
the GPU (`device_map`) when the memory plan, estimated from the checkpoint's headers before
reading it, keeps the whole model there.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Bytes per element of the safetensors dtypes a diffusers checkpoint holds.
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "U8": 1}
_MAX_HEADER = 100 * 1024 * 1024


class _Warmup:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.seconds = 0.0
        self.lock = threading.Lock()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            import diffusers  # noqa: F401
            import torch

            if torch.cuda.is_available():
                cuda_init: Any = torch.cuda.init  # untyped in torch's stubs
                cuda_init()
        except Exception as exc:  # the main thread's own import reports it properly
            log.debug("background import failed: %s", exc)
        self.seconds = time.monotonic() - started

    def start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="videogen-import", daemon=True)
                self.thread.start()

    def wait(self) -> float:
        """Seconds the caller waited for the imports (starting them first if nobody did)."""
        self.start()
        started = time.monotonic()
        assert self.thread is not None
        self.thread.join()
        return time.monotonic() - started


_WARMUP = _Warmup()


def start_imports() -> None:
    """Begin importing torch and diffusers (and initialising CUDA) in the background."""
    _WARMUP.start()


def wait_for_imports() -> float:
    return _WARMUP.wait()


def import_seconds() -> float:
    """How long the imports themselves took on their thread (for the logs)."""
    return _WARMUP.seconds


def safetensors_bytes(path: Path, dtype_bytes: int | None) -> int:
    """Bytes the tensors of one .safetensors file take at `dtype_bytes` per float element
    (None: as stored), read from its header only."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > _MAX_HEADER:
            raise ValueError(f"{path}: safetensors header of {size} bytes")
        header = json.loads(fh.read(size))
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, Mapping):
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        stored = _DTYPE_BYTES.get(str(info.get("dtype")), 4)
        floating = str(info.get("dtype", "")).startswith(("F", "BF"))
        total += count * (dtype_bytes if (dtype_bytes and floating) else stored)
    return total


def checkpoint_bytes(model_dir: Path, dtype_bytes: Mapping[str, int | None]) -> dict[str, int]:
    """Per component, the bytes its weights will take once loaded (dtype per component, 'default' for the rest)."""
    sizes: dict[str, int] = {}
    for path in sorted(model_dir.glob("*/*.safetensors")):
        component = path.parent.name
        per_element = dtype_bytes.get(component, dtype_bytes.get("default"))
        try:
            sizes[component] = sizes.get(component, 0) + safetensors_bytes(path, per_element)
        except (OSError, ValueError) as exc:
            log.debug("cannot read %s: %s", path, exc)
    return sizes


def device_map_for(
    model_dir: Path,
    dtypes: object,
    *,
    cuda: bool,
    parallel: bool,
    memory: object,
    output: object,
    free_bytes: int | None,
) -> str | None:
    """'cuda' when the weights can be read straight onto the GPU: the memory plan estimated from
    the checkpoint's headers keeps the whole model resident (mode none). None otherwise (offload
    modes place the weights themselves; under torchrun each rank places its own after loading)."""
    from videogen_api import v1alpha1 as api

    from .memory import OutputSize, choose_memory_plan

    if not cuda or parallel or not isinstance(memory, api.MemoryMode) or not isinstance(output, OutputSize):
        return None
    sizes = checkpoint_bytes(model_dir, _dtype_bytes(dtypes))
    if not sizes:
        return None
    plan = choose_memory_plan(
        memory,
        cuda=True,
        free_bytes=free_bytes,
        model_bytes=sum(sizes.values()),
        largest_component_bytes=max(sizes.values()),
        output=output,
    )
    return "cuda" if plan.mode is api.MemoryMode.NONE else None


def _dtype_bytes(dtypes: object) -> dict[str, int | None]:
    """models.component_dtypes (one torch dtype, or a dict with 'default') as bytes per element."""
    if isinstance(dtypes, Mapping):
        return {str(k): int(v.itemsize) for k, v in dtypes.items()}
    itemsize = getattr(dtypes, "itemsize", None)
    return {"default": int(itemsize) if itemsize else None}


def free_for_plan(free_bytes: int | None, loaded: Any, device_map: str | None) -> int | None:
    """Free GPU memory as the memory plan must see it: weights already read onto the GPU count as free,
    since the plan budgets them itself."""
    if free_bytes is None or not device_map:
        return free_bytes
    return free_bytes + int(loaded.model_bytes)
