"""Runner fixtures: tiny models on every loading path, a bucket, and ways to run the runner.

The session's S3 server and cluster come from tests/conftest.py (videogen_devcluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import TINY_WAN_REPO, HttpsServer, RunCli, RunInProcess, RunOutcome, TinyModels

from videogen_devcluster.testing import unique_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import S3Server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny Wan text- and image-to-video pipelines as save_pretrained directories, and the
    text-to-video one again in a Hugging Face cache (HF_HOME layout)."""
    from videogen_runner import tiny_models

    root = tmp_path_factory.mktemp("tiny-models")
    t2v = tiny_models.save_tiny_pipeline("wan-t2v", root / "wan-t2v")
    i2v = tiny_models.save_tiny_pipeline("wan-i2v", root / "wan-i2v")
    hf_home = root / "hf-home"
    tiny_models.install_in_hf_cache(t2v, hf_home, TINY_WAN_REPO)
    return TinyModels(wan_t2v=t2v, wan_i2v=i2v, hf_home=hf_home)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.create_bucket(unique_name("videos"))


@pytest.fixture
def s3_client(s3: S3Server) -> S3Client:
    return s3.client()


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a runner run by hand: no job identity, scratch model cache and termination log."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIDEOGEN_", "AWS_", "KUBECONFIG")) and k not in ("HF_HOME", "HF_HUB_CACHE")
    }
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "VIDEOGEN_MODEL_CACHE": str(tmp_path / "model-cache"),
            "VIDEOGEN_TERMINATION_LOG": str(tmp_path / "termination-log"),
            "VIDEOGEN_S3_MAX_ATTEMPTS": "2",
            "VIDEOGEN_S3_TRANSFER_ATTEMPTS": "2",
            "VIDEOGEN_S3_BACKOFF_SECONDS": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def s3_env(s3: S3Server, runner_env: dict[str, str]) -> dict[str, str]:
    return {**runner_env, **s3.env()}


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run the real console script as a subprocess, as the pod does."""

    def run(spec: Mapping[str, Any] | None, env: Mapping[str, str], *args: str, timeout: float = 300) -> RunOutcome:
        full_env = dict(env)
        if spec is not None:
            full_env["VIDEOGEN_SPEC"] = json.dumps(spec)
        termination = Path(full_env.get("VIDEOGEN_TERMINATION_LOG", str(tmp_path / "termination-log")))
        termination.unlink(missing_ok=True)
        exe = Path(sys.executable).with_name("videogen-runner")
        proc = subprocess.run(
            [str(exe), *args], env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        return RunOutcome(
            returncode=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            termination_message=termination.read_text() if termination.exists() else None,
        )

    return run


@pytest.fixture
def run_inprocess(tmp_path: Path) -> RunInProcess:
    """Run the runner's main() in this process (sharing the already imported torch): for the
    tests that care about what is generated and loaded rather than about the process boundary."""
    from videogen_runner import cli

    def run(spec: Mapping[str, Any], env: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        termination = tmp_path / "termination-inprocess"
        termination.unlink(missing_ok=True)
        full_env = {**env, "VIDEOGEN_SPEC": json.dumps(spec)}
        code = cli.main(["--termination-log", str(termination)], env=full_env)
        return code, json.loads(termination.read_text())

    return run


@pytest.fixture
def png_bytes() -> Callable[[int, int], bytes]:
    import io

    from PIL import Image

    def make(width: int = 96, height: int = 64) -> bytes:
        img = Image.new("RGB", (width, height), (200, 40, 40))
        for x in range(width // 2):
            img.putpixel((x, height // 2), (20, 200, 20))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    return make


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: an unreachable S3 endpoint."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


@pytest.fixture
def https_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsServer]:
    """A loopback HTTPS file server with its own CA, trusted through SSL_CERT_FILE."""
    import functools
    import http.server
    import ssl
    import threading

    from videogen_devcluster.pki import generate_pki

    pki = generate_pki(tmp_path / "pki")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.serving_cert, pki.serving_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    try:
        yield HttpsServer(root=root, url=f"https://127.0.0.1:{server.server_address[1]}", ca_cert=pki.ca_cert)
    finally:
        server.shutdown()
        server.server_close()
