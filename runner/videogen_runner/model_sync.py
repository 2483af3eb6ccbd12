"""Syncing an s3:// model into the node's model cache.

Several runners on one node share the cache volume, so the sync is guarded by
an exclusive file lock (runners that load the model hold it shared), every file
is downloaded to a temporary name and renamed into place, and a manifest of
(size, ETag, sha256) per file lets the next sync fetch only what changed.

`python -m videogen_runner.model_sync s3://bucket/prefix` pre-warms the cache
(e.g. from an init container) and prints what it did as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import InternalError, ModelNotFoundError, one_line
from .s3 import RetryPolicy, error_code, is_transient, make_client, split_s3_uri, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MANIFEST_NAME = ".videogen-manifest.json"
# Test-only: hold the exclusive lock this long after listing, so a test can
# prove that a second runner waits instead of downloading alongside.
ENV_TEST_SYNC_DELAY = "VIDEOGEN_TEST_SYNC_DELAY_SECONDS"
_CHUNK = 1024 * 1024


@dataclass
class SyncResult:
    path: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    lock_wait_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


@dataclass(frozen=True)
class RemoteFile:
    key: str
    size: int
    etag: str


@contextlib.contextmanager
def file_lock(path: Path, *, exclusive: bool) -> Iterator[float]:
    """flock on `path`; yields the seconds spent waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    start = time.monotonic()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield time.monotonic() - start
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def cache_dir_for(cache_root: Path, bucket: str, prefix: str) -> Path:
    parts = [p for p in PurePosixPath(prefix).parts if p not in ("", "/", ".", "..")]
    return cache_root.joinpath("s3", bucket, *parts) if parts else cache_root / "s3" / bucket / "_root"


def lock_path_for(dest: Path) -> Path:
    # Beside the directory, not in it: the directory may not exist yet or be replaced.
    return dest.parent / f".{dest.name}.lock"


def _safe_relative(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ModelNotFoundError(f"refusing object name {rel!r}: it would land outside the model directory")
    return path


def list_remote(client: S3Client, bucket: str, prefix: str) -> dict[str, RemoteFile]:
    """{relative path: RemoteFile} of every object under the prefix (directory markers skipped)."""
    base = prefix.strip("/")
    base = f"{base}/" if base else ""
    files: dict[str, RemoteFile] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = key[len(base) :]
            if not rel or rel.endswith("/"):
                continue
            files[rel] = RemoteFile(key=key, size=int(obj["Size"]), etag=str(obj.get("ETag", "")).strip('"'))
    return files


def read_manifest(dest: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((dest / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(dest: Path, manifest: Mapping[str, Mapping[str, Any]]) -> None:
    _atomic_write_bytes(dest / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode())


def _atomic_write_bytes(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def download_object(
    client: S3Client,
    bucket: str,
    remote: RemoteFile,
    target: Path,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """Download to a temporary file beside `target`, check it, rename it into place; return sha256.
    `on_bytes` hears of every chunk written (download progress)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        digest = hashlib.sha256()
        response = client.get_object(Bucket=bucket, Key=remote.key)
        body = response["Body"]
        size = 0
        with os.fdopen(fd, "wb") as fh:
            for chunk in body.iter_chunks(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
                size += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if size != remote.size:
            raise ConnectionError(f"s3://{bucket}/{remote.key}: got {size} bytes, expected {remote.size}")
        expected = response.get("Metadata", {}).get("sha256")
        if expected and expected != digest.hexdigest():
            raise ConnectionError(f"s3://{bucket}/{remote.key}: sha256 mismatch (corrupted in transit)")
        os.replace(tmp, target)
        return digest.hexdigest()
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_leftovers(dest: Path) -> None:
    """Temporary files of a sync that was killed; safe to delete under the exclusive lock."""
    if dest.is_dir():
        for part in dest.rglob(".part-*"):
            with contextlib.suppress(OSError):
                part.unlink()


def _is_current(entry: Mapping[str, Any] | None, remote: RemoteFile, target: Path) -> bool:
    if not entry or entry.get("size") != remote.size or entry.get("etag") != remote.etag:
        return False
    try:
        return target.stat().st_size == remote.size
    except OSError:
        return False


def sync_prefix(
    client: S3Client,
    uri: str,
    cache_root: Path,
    policy: RetryPolicy,
    env: Mapping[str, str] | None = None,
) -> SyncResult:
    """Bring the local copy of s3://bucket/prefix up to date; return where it is and what changed."""
    env = os.environ if env is None else env
    bucket, prefix = split_s3_uri(uri)
    dest = cache_dir_for(cache_root, bucket, prefix)
    with file_lock(lock_path_for(dest), exclusive=True) as waited:
        result = SyncResult(path=dest, lock_wait_seconds=round(waited, 3))
        if waited > 0.5:
            log.info("waited %.1fs for another runner syncing %s", waited, uri)
        try:
            remote = with_retries(f"listing {uri}", lambda: list_remote(client, bucket, prefix), policy)
        except Exception as exc:
            raise _sync_error(uri, exc) from exc
        if not remote:
            raise ModelNotFoundError(f"model {uri}: no objects under that prefix")
        delay = float(env.get(ENV_TEST_SYNC_DELAY, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        manifest = read_manifest(dest)
        _remove_leftovers(dest)
        for rel, obj in sorted(remote.items()):
            target = dest.joinpath(*_safe_relative(rel).parts)
            if _is_current(manifest.get(rel), obj, target):
                result.unchanged += 1
                continue

            def fetch(o: RemoteFile = obj, t: Path = target) -> str:
                return download_object(client, bucket, o, t)

            try:
                digest = with_retries(f"download of s3://{bucket}/{obj.key}", fetch, policy)
            except Exception as exc:
                raise _sync_error(uri, exc) from exc
            manifest[rel] = {"size": obj.size, "etag": obj.etag, "sha256": digest}
            # Written per file, so an interrupted sync resumes instead of starting over.
            write_manifest(dest, manifest)
            result.downloaded.append(rel)
        for rel in sorted(set(manifest) - set(remote)):
            # Stale shards of an older version would confuse the loader.
            with contextlib.suppress(FileNotFoundError):
                dest.joinpath(*_safe_relative(rel).parts).unlink()
            del manifest[rel]
            result.removed.append(rel)
        write_manifest(dest, manifest)
    log.info(
        "model %s synced to %s: %d downloaded, %d unchanged, %d removed",
        uri,
        dest,
        len(result.downloaded),
        result.unchanged,
        len(result.removed),
    )
    return result


def _sync_error(uri: str, exc: BaseException) -> Exception:
    code = error_code(exc)
    if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return ModelNotFoundError(f"model {uri}: {code} ({one_line(str(exc), 300)})")
    what = "unreachable after retries" if is_transient(exc) else "failed"
    return InternalError(f"model sync from {uri} {what}: {one_line(f'{type(exc).__name__}: {exc}', 300)}")


def main(argv: list[str] | None = None) -> int:
    from .cache import model_sync_root

    parser = argparse.ArgumentParser(prog="python -m videogen_runner.model_sync", description=__doc__)
    parser.add_argument("uri", help="s3://bucket/prefix of a save_pretrained pipeline")
    parser.add_argument(
        "--cache", type=Path, help="cache root (default: VIDEOGEN_MODEL_SYNC_DIR, VIDEOGEN_MODEL_CACHE, HF_HOME)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = args.cache or model_sync_root(os.environ)
    result = sync_prefix(make_client(), args.uri, root, RetryPolicy.from_env(os.environ))
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
