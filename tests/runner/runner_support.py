"""Helpers shared by the runner's tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen_api import catalog

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parents[2]
TINY_WAN_REPO = "tiny-random/wan-t2v"
PROMPT = "a red fox runs on the beach at sunset"

# Small enough for 2 CPU cores, large enough for the contract's 64-pixel minimum.
TINY_SPEC: dict[str, Any] = {
    "task": "text-to-video",
    "prompt": PROMPT,
    "width": 64,
    "height": 64,
    "numFrames": 9,
    "fps": 8,
    "steps": 2,
    "seed": 7,
}


@dataclass(frozen=True)
class TinyModels:
    wan_t2v: Path
    wan_i2v: Path
    hf_home: Path

    @property
    def hf_uri(self) -> str:
        return f"hf://{TINY_WAN_REPO}"


def tiny_spec(model: str, **overrides: Any) -> dict[str, Any]:
    return {"model": model, **TINY_SPEC, **overrides}


@dataclass
class RunOutcome:
    returncode: int
    stdout: str
    stderr: str
    termination_message: str | None

    @property
    def last_line(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no stdout; stderr:\n{self.stderr[-4000:]}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed

    @property
    def termination(self) -> dict[str, Any]:
        assert self.termination_message is not None, "no termination message written"
        parsed: dict[str, Any] = json.loads(self.termination_message)
        return parsed


@dataclass(frozen=True)
class HttpsServer:
    root: Path
    url: str
    ca_cert: Path


RunCli = Callable[..., RunOutcome]
RunInProcess = Callable[[Mapping[str, Any], Mapping[str, str]], tuple[int, dict[str, Any]]]


LOADER_UID = "5f0c2a1e-7d3b-4c55-9a41-3c1f0e2d9b77"


def loader_spec(name: str, source: str, cache_root: Path, generation: int = 1, **fields: Any) -> catalog.LoaderSpec:
    """What the operator gives the model loader for one VideoGenModel generation."""
    return catalog.LoaderSpec.model_validate(
        {
            "name": name,
            "uid": LOADER_UID,
            "generation": generation,
            "source": source,
            "cacheRoot": str(cache_root),
            **fields,
        }
    )


def publish_model(client: S3Client, model: Path, uri: str, extra: Mapping[str, bytes] | None = None) -> None:
    """A save_pretrained directory under an s3:// prefix (plus `extra` files, by relative path)."""
    from videogen_runner.tiny_models import upload_to_s3

    upload_to_s3(model, uri, client)
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    for rel, data in (extra or {}).items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """(mode, inode, mtime) of everything under root: unchanged means nothing was written there."""
    return {
        p.relative_to(root).as_posix(): (p.lstat().st_mode, p.lstat().st_ino, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def download(client: S3Client, bucket: str, key: str, dest: Path) -> tuple[Path, dict[str, str]]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key, str(dest))
    head = client.head_object(Bucket=bucket, Key=key)
    return dest, dict(head.get("Metadata", {}))


def run_loader(
    *args: str, env: Mapping[str, str], timeout: float = 300
) -> tuple[int, dict[str, Any], dict[str, Any], str]:
    """The console script as the loader Job runs it: (exit code, termination message, stdout's last line, logs)."""
    termination = Path(env["VIDEOGEN_TERMINATION_LOG"])
    termination.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("videogen-model-loader")
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, proc.stderr
    return proc.returncode, json.loads(termination.read_text()), json.loads(lines[-1]), proc.stderr
