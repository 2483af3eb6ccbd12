"""A local S3 endpoint: versitygw's posix backend on loopback, with real SigV4 checks."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .binaries import Binaries, find_binaries
from .kubeconfig import http_get
from .procs import ManagedProcess, Service, StartupError, free_port, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

REGION = "us-east-1"


class S3Server(Service):
    """versitygw serving ``<state_dir>/data`` (one sub directory per bucket) at ``endpoint_url``.

    Buckets are plain directories and objects plain files, which makes test failures easy to inspect.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        access_key: str = "videogen",
        secret_key: str | None = None,
        keep_state: bool | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="videogen-s3-")) if state_dir is None else state_dir
        self.keep_state = (not self._owns_state_dir) if keep_state is None else keep_state
        self.binaries = binaries or find_binaries()
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(20)
        self.region = REGION
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "versitygw.log"

    @property
    def access_log_path(self) -> Path:
        """The server's S3 access log (one line per request), for tests that count reads."""
        return self.state_dir / "logs" / "access.log"

    def object_reads(self, bucket: str, key_prefix: str = "") -> dict[str, int]:
        """GetObject requests per key below `key_prefix` in `bucket`, from the access log."""
        counts: dict[str, int] = {}
        if not self.access_log_path.exists():
            return counts
        for line in self.access_log_path.read_text(errors="replace").splitlines():
            # "<owner> <bucket> [<time with a space>] <ip> <requester> <id> <operation> <key> ..."
            head, _, rest = line.partition("] ")
            fields = rest.split(" ")
            if len(fields) < 5 or head.split(" ")[1:2] != [bucket] or fields[3] != "s3_GetObject":
                continue
            key = fields[4]
            if key.startswith(key_prefix):
                counts[key] = counts.get(key, 0) + 1
        return counts

    def env(self) -> dict[str, str]:
        """The standard AWS variables, so boto3 and the AWS CLI find this endpoint without code changes."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> S3Client:
        """A boto3 S3 client with path-style addressing (bucket names never become host names)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> str:
        """Creates ``name`` unless it exists already; returns the name."""
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return name

    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Self:
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # Credentials through the environment, not argv, so they do not show up in `ps`.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "ROOT_ACCESS_KEY_ID": self.access_key,
            "ROOT_SECRET_ACCESS_KEY": self.secret_key,
        }
        self.process = ManagedProcess(
            "versitygw",
            [
                str(self.binaries.versitygw),
                f"--port=127.0.0.1:{self.port}",
                f"--region={self.region}",
                f"--access-log={self.access_log_path}",
                "--quiet",
                # versitygw answers every request with `Connection: close` unless told
                # otherwise; real S3 endpoints keep connections alive, and without this
                # the benchmarks measure a TCP connect per S3 call the operator would not pay.
                "--keep-alive",
                "posix",
                str(self.data_dir),
            ],
            self.log_path,
            env=env,
            cwd=self.state_dir,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("S3 (versitygw) ready at %s in %.1fs", self.endpoint_url, self.startup_seconds)
        return self

    def _wait_ready(self) -> None:
        proc = self.process
        assert proc is not None

        def failed() -> str | None:
            rc = proc.poll()
            if rc is None:
                return None
            return f"versitygw exited with status {rc}; last lines of {proc.log_path}:\n{proc.tail()}"

        # Any HTTP answer (an anonymous request gets 403) means it listens; then prove the credentials.
        try:
            wait_until(
                lambda: http_get(self.endpoint_url + "/")[0] != 0,
                timeout=self.startup_timeout,
                what=f"versitygw at {self.endpoint_url}",
                failed=failed,
            )
        except TimeoutError as e:
            raise StartupError(f"{e}; last lines of {proc.log_path}:\n{proc.tail()}") from None
        self.client().list_buckets()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5.0)
        if self._owns_state_dir and not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
