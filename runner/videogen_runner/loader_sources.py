"""Where the model loader fetches from: an s3:// prefix (the operator's own storage credentials) or a
Hugging Face repository (hf://org/name[@revision]).

A source lists its files first (nothing downloaded yet), so the loader can refuse a model, or find the
same files already in the cache, before a single byte moves; then it fetches the files it is given
into the staging directory and returns their SHA-256.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .loader_errors import LoaderError, source_not_found, transient
from .loader_progress import DownloadProgress
from .model_sync import RemoteFile, download_object, list_remote
from .model_verify import hash_file, is_fetched, safe_relative
from .s3 import ENV_GRANT, RetryPolicy, error_code, is_transient, make_client, split_s3_uri, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_HF_SOURCE = re.compile(r"^hf://(?P<repo>[^@]+?)(?:@(?P<rev>.+))?$")
_S3_REFUSALS = ("NoSuchBucket", "NoSuchKey", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    rel: str
    size: int
    # What names the content at the source: the S3 ETag, the Hub's blob id (LFS sha256 for weights).
    etag: str


@dataclass
class Listing:
    files: dict[str, SourceFile]  # the files the loader fetches, by relative path
    skipped: list[str]  # the source's other files (pickles, code, hidden files, other formats)
    revision: str | None = None  # the Hub commit; None where the manifest digest is the revision

    @property
    def all_files(self) -> list[str]:
        return sorted([*self.files, *self.skipped])

    def identity(self) -> dict[str, dict[str, Any]]:
        """What the manifest records of the source, to recognise the same files next time without GETs."""
        return {rel: {"size": f.size, "etag": f.etag} for rel, f in sorted(self.files.items())}


def split_listing(entries: Mapping[str, SourceFile]) -> Listing:
    files = {rel: f for rel, f in entries.items() if is_fetched(rel)}
    skipped = sorted(rel for rel in entries if rel not in files)
    return Listing(files=files, skipped=skipped)


OnFile = Callable[[SourceFile, str], None]


class Source(Protocol):
    description: str
    # The source without its revision, normalised: what "the same source" means for reuse.
    origin: str

    def listing(self) -> Listing: ...

    def fetch(self, files: list[SourceFile], staging: Path, progress: DownloadProgress, on_file: OnFile) -> None:
        """Fetch `files` into `staging` (same relative paths); `on_file(file, sha256)` after each one."""
        ...


# --------------------------------------------------------------------------- s3://


class S3Source:
    """An s3:// prefix, read with the loader's own credentials (env / boto3's chain), never a grant."""

    def __init__(self, uri: str, env: Mapping[str, str], policy: RetryPolicy, client: S3Client | None = None) -> None:
        self.description = uri
        self.uri = uri
        self.bucket, self.prefix = split_s3_uri(uri)
        self.origin = f"s3://{self.bucket}/{self.prefix.strip('/')}"
        self.policy = policy
        # A grant answers for one job's objects only; the loader works with the platform's credentials.
        self.client = client or make_client({k: v for k, v in env.items() if k != ENV_GRANT})

    def listing(self) -> Listing:
        try:
            remote = with_retries(
                f"listing {self.uri}", lambda: list_remote(self.client, self.bucket, self.prefix), self.policy
            )
        except Exception as exc:
            raise self._error(f"listing {self.uri}", exc) from exc
        if not remote:
            raise source_not_found(f"{self.uri}: no objects under that prefix")
        entries = {
            safe_relative(rel, self.uri): SourceFile(safe_relative(rel, self.uri), obj.size, obj.etag)
            for rel, obj in remote.items()
        }
        return split_listing(entries)

    def fetch(self, files: list[SourceFile], staging: Path, progress: DownloadProgress, on_file: OnFile) -> None:
        base = self.prefix.strip("/")
        for item in files:
            remote = RemoteFile(key=f"{base}/{item.rel}" if base else item.rel, size=item.size, etag=item.etag)
            target = staging.joinpath(*item.rel.split("/"))
            counted = [0]

            def count(n: int, counted: list[int] = counted) -> None:
                counted[0] += n
                progress.add_bytes(n)

            def attempt(remote: RemoteFile = remote, target: Path = target, counted: list[int] = counted) -> str:
                # A retried transfer starts over: its bytes must not count twice.
                progress.add_bytes(-counted[0])
                counted[0] = 0
                return download_object(self.client, self.bucket, remote, target, on_bytes=count)

            try:
                sha256 = with_retries(f"download of s3://{self.bucket}/{remote.key}", attempt, self.policy)
            except Exception as exc:
                raise self._error(f"download of s3://{self.bucket}/{remote.key}", exc) from exc
            on_file(item, sha256)
            progress.file_done()

    def _error(self, what: str, exc: BaseException) -> LoaderError:
        code = error_code(exc)
        if code in _S3_REFUSALS:
            return source_not_found(f"{what}: {code} ({_one_line(exc)})")
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return transient(f"{what}: the model cache is full ({exc.strerror})")
        more = "unreachable after retries" if is_transient(exc) else "failed"
        return transient(f"{what} {more}: {type(exc).__name__}: {_one_line(exc)}")


# --------------------------------------------------------------------------- hf://


def parse_hf_source(source: str, revision: str | None) -> tuple[str, str]:
    """("org/name", revision): the revision from the source (@rev), else spec.revision, else main."""
    match = _HF_SOURCE.match(source)
    if not match:
        raise source_not_found(f"{source} is not hf://org/name[@revision]")
    return match["repo"], match["rev"] or revision or "main"


def hub_offline(env: Mapping[str, str]) -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    return env.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


class HfSource:
    """A Hub repository, pinned to one commit once listed.

    Online, files download into a private HF cache on the model-cache volume (`download_cache`, so an
    interrupted fetch resumes in the next pod) and are hard-linked into staging. With HF_HUB_OFFLINE
    set, they come from the HF cache of the environment (HF_HOME), which is copied, never changed."""

    def __init__(self, source: str, revision: str | None, env: Mapping[str, str], download_cache: Path) -> None:
        self.repo_id, self.requested = parse_hf_source(source, revision)
        self.description = f"hf://{self.repo_id}@{self.requested}"
        self.origin = f"hf://{self.repo_id}"
        self.env = env
        self.download_cache = download_cache
        self.offline = hub_offline(env)
        self.token = env.get("HF_TOKEN") or None
        self.commit: str | None = None
        self._snapshot: Path | None = None

    def listing(self) -> Listing:
        try:
            entries = self._list_offline() if self.offline else self._list_online()
        except LoaderError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        listing = split_listing(entries)
        listing.revision = self.commit
        return listing

    def _list_offline(self) -> dict[str, SourceFile]:
        from huggingface_hub import snapshot_download

        from .cache import hub_cache_dir

        cache = hub_cache_dir(self.env)
        snapshot = Path(
            snapshot_download(self.repo_id, revision=self.requested, cache_dir=cache, local_files_only=True)
        )
        self._snapshot = snapshot
        self.commit = snapshot.name
        entries: dict[str, SourceFile] = {}
        for path in sorted(snapshot.rglob("*")):
            if not path.is_file():
                continue
            rel = safe_relative(path.relative_to(snapshot).as_posix(), self.description)
            # The cache's blob name is the Hub's blob id (sha256 for LFS files), as online.
            etag = Path(os.readlink(path)).name if path.is_symlink() else ""
            entries[rel] = SourceFile(rel, path.stat().st_size, etag)
        return entries

    def _list_online(self) -> dict[str, SourceFile]:
        from huggingface_hub import HfApi

        info = HfApi(token=self.token).model_info(self.repo_id, revision=self.requested, files_metadata=True)
        if not info.sha:
            raise transient(f"{self.description}: the Hub returned no commit")
        self.commit = info.sha
        entries: dict[str, SourceFile] = {}
        for sibling in info.siblings or []:
            rel = safe_relative(sibling.rfilename, self.description)
            lfs: Any = sibling.lfs
            lfs_sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
            entries[rel] = SourceFile(rel, int(sibling.size or 0), str(lfs_sha or sibling.blob_id or ""))
        return entries

    def fetch(self, files: list[SourceFile], staging: Path, progress: DownloadProgress, on_file: OnFile) -> None:
        if not files:
            return
        try:
            snapshot = self._snapshot if self.offline else self._download(files, progress)
        except LoaderError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        assert snapshot is not None
        for item in files:
            source = snapshot.joinpath(*item.rel.split("/"))
            target = staging.joinpath(*item.rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.offline:
                # Someone else's cache: copy (hashing as we go), never link or chmod its blobs.
                sha256 = _copy_hashing(source, target, progress.add_bytes)
            else:
                _link_or_copy(source, target)
                sha256 = hash_file(target)
            on_file(item, sha256)
            progress.file_done()

    def _download(self, files: list[SourceFile], progress: DownloadProgress) -> Path:
        from huggingface_hub import snapshot_download

        assert self.commit is not None
        self.download_cache.mkdir(parents=True, exist_ok=True)
        base = progress.bytes_done
        start = _bytes_under(self.download_cache)
        stop = threading.Event()

        def watch() -> None:
            # snapshot_download reports no bytes to us; its cache growing on disk is the progress.
            while not stop.wait(1.0):
                progress.set_bytes(base + _bytes_under(self.download_cache) - start)

        watcher = threading.Thread(target=watch, name="hub-download-progress", daemon=True)
        watcher.start()
        try:
            path = snapshot_download(
                self.repo_id,
                revision=self.commit,
                cache_dir=self.download_cache,
                allow_patterns=[glob.escape(f.rel) for f in files],
                token=self.token,
            )
        finally:
            stop.set()
            watcher.join()
        progress.set_bytes(base + sum(f.size for f in files))
        return Path(path)

    def _error(self, exc: BaseException) -> LoaderError:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        what = self.description
        if isinstance(exc, GatedRepoError):
            return source_not_found(f"{what}: gated repository; the loader's HF_TOKEN has no access")
        if isinstance(exc, RepositoryNotFoundError):
            return source_not_found(f"{what}: no such repository (or no access with the loader's HF_TOKEN)")
        if isinstance(exc, RevisionNotFoundError):
            return source_not_found(f"{what}: no such revision")
        if isinstance(exc, LocalEntryNotFoundError):
            if self.offline:
                return source_not_found(f"{what}: not in the HF cache and HF_HUB_OFFLINE is set")
            return transient(f"{what}: the Hub is unreachable ({_one_line(exc)})")
        if isinstance(exc, EntryNotFoundError):
            return source_not_found(f"{what}: {_one_line(exc)}")
        if isinstance(exc, HfHubHTTPError):
            status = getattr(exc.response, "status_code", None)
            if status in (401, 403, 404):
                return source_not_found(f"{what}: HTTP {status} ({_one_line(exc)})")
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return transient(f"{what}: the model cache is full ({exc.strerror})")
        return transient(f"{what}: {type(exc).__name__}: {_one_line(exc)}")

    def cleanup(self) -> None:
        """The private download cache, once its files are linked into the model (they stay there)."""
        if self.download_cache.exists():
            shutil.rmtree(self.download_cache, ignore_errors=True)


def _copy_hashing(source: Path, target: Path, on_bytes: Callable[[int], None]) -> str:
    import hashlib

    digest = hashlib.sha256()
    tmp = target.with_name(f".part-{target.name}")
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                on_bytes(len(chunk))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link the cache's blob into the model (no second copy on the volume); copy across filesystems."""
    blob = source.resolve()
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(blob, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(blob, target)


def _bytes_under(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _one_line(exc: BaseException) -> str:
    from .errors import one_line

    return one_line(str(exc) or repr(exc), 300)
