"""`videogen-model-loader`: fetch one VideoGenModel into the model cache, verified and read-only, or
remove a model's files. The operator runs it as a Job in its own namespace, with its own storage
credentials and the model-cache volume mounted read-write.

    videogen-model-loader fetch     # input: $VIDEOGEN_LOADER_SPEC (catalog.LoaderSpec JSON)
    videogen-model-loader remove --name NAME [--cache-root DIR]   # or the name and root from the spec

fetch, for s3:// and hf:// sources:
  1. lists the source (nothing downloaded yet) and refuses what cannot become a model: no
     model_index.json, a pinned file (spec.files) the source lacks, an invalid spec.profile;
  2. reuses a revision already in the cache whose manifest records the same listing (path, size,
     ETag / blob id), the same source and profile: no object is read ("fetched once per cache");
  3. otherwise downloads the fetched files (safetensors, configs, tokenizer data; never pickles or code)
     into `catalog/<name>/.staging-<uid8>-<generation>/`, model_index.json first so a component with
     only pickle weights fails before the weights move; an interrupted fetch resumes there;
  4. verifies every safetensors header, the pinned SHA-256s and the profile, writes spec.profile as
     videogen-profile.json and the manifest `.videogen-model.json` (digest = catalog.manifest_digest),
     makes everything read-only and renames the directory to `catalog/<name>/<digest16>`;
  5. describes the model (model_architecture.py): pipeline and transformer classes, whether diffusers
     can split the transformer across GPUs, its attention heads (the operator refuses
     spec.resources.gpus > 1 for a model that cannot be split, before any pod).
An absolute path on the cache volume is verified in place (hashed, headers checked), not copied.

Result: catalog.LoaderResult JSON (or catalog.LoaderFailure) in the termination message
($VIDEOGEN_TERMINATION_LOG, or /dev/termination-log when the kubelet provides it) and on stdout.
Exit codes: 0 done, 11 source not found, 12 verification failed / invalid profile, 20 transient (the
Job retries), 2 unusable loader input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from videogen_api import catalog
from videogen_api import v1alpha1 as api

from .catalog_model import read_manifest
from .errors import one_line
from .loader_errors import LoaderError, LoaderExit, UsageError, source_not_found, transient, verification_failed
from .loader_progress import DownloadProgress, make_model_sink
from .loader_sources import HfSource, Listing, S3Source, Source, SourceFile, split_listing
from .model_architecture import describe
from .model_sync import file_lock
from .model_verify import (
    MODEL_INDEX,
    check_components,
    check_expected_digests,
    check_expected_present,
    check_profile,
    check_safetensors,
    hash_file,
    read_model_index,
    read_profile_file,
    safe_relative,
)
from .s3 import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("videogen_runner.model_loader")

MANIFEST_VERSION: Final = 1
# Per-file record of a staging directory (size, ETag, sha256), so the next pod resumes the fetch.
STAGING_STATE: Final = ".videogen-staging.json"
LOCK_NAME: Final = ".loader.lock"
HF_DOWNLOAD_DIR: Final = ".hf-download"
MAX_SKIPPED: Final = 50
_FILE_MODE: Final = 0o444
_DIR_MODE: Final = 0o555


# --------------------------------------------------------------------------- input


def load_spec(env: Mapping[str, str]) -> catalog.LoaderSpec:
    raw = env.get(catalog.ENV_LOADER_SPEC)
    if not raw:
        raise UsageError(f"{catalog.ENV_LOADER_SPEC} is not set (the operator passes the LoaderSpec JSON there)")
    try:
        spec = catalog.LoaderSpec.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"{catalog.ENV_LOADER_SPEC}: {where}: {err['msg']}") from exc
    _check_name(spec.name)
    if not Path(spec.cache_root).is_absolute():
        raise UsageError(f"{catalog.ENV_LOADER_SPEC}: cacheRoot {spec.cache_root!r} is not an absolute path")
    return spec


def _check_name(name: str) -> None:
    # The name becomes a directory: a catalog name (DNS-1123) can never climb out of catalog/.
    if not catalog.is_catalog_name(name):
        raise UsageError(f"model name {name!r} is not a VideoGenModel name")


# --------------------------------------------------------------------------- file system


def make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), _FILE_MODE, follow_symlinks=False)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), _DIR_MODE)
    os.chmod(root, _DIR_MODE)


def make_writable(root: Path) -> None:
    """Directories writable again (files need not be: they are replaced, never written in place)."""
    if not root.is_dir():
        return
    os.chmod(root, 0o755)
    for dirpath, dirnames, _files in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)


def remove_tree(root: Path) -> None:
    if root.is_symlink() or root.is_file():
        root.unlink()
        return
    make_writable(root)
    shutil.rmtree(root)


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".part-{path.name}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class StagingState:
    """Which files of a staging directory are complete, so an interrupted fetch resumes."""

    def __init__(self, staging: Path) -> None:
        self.path = staging / STAGING_STATE
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self.entries: dict[str, dict[str, Any]] = data if isinstance(data, dict) else {}

    def complete(self, files: Mapping[str, SourceFile], staging: Path) -> dict[str, str]:
        """{rel: sha256} of the files already in staging as the source lists them now."""
        done: dict[str, str] = {}
        for rel, item in files.items():
            entry = self.entries.get(rel) or {}
            target = staging.joinpath(*rel.split("/"))
            same = entry.get("size") == item.size and entry.get("etag") == item.etag and entry.get("sha256")
            if same and target.is_file() and target.stat().st_size == item.size:
                done[rel] = str(entry["sha256"])
        return done

    def record(self, item: SourceFile, sha256: str) -> None:
        self.entries[item.rel] = {"size": item.size, "etag": item.etag, "sha256": sha256}
        _write_json(self.path, self.entries)


def _prepare_staging(staging: Path) -> None:
    if staging.exists():
        make_writable(staging)
        for part in staging.rglob(".part-*"):
            with contextlib.suppress(OSError):
                part.unlink()
    staging.mkdir(parents=True, exist_ok=True)


def _remove_strays(staging: Path, keep: set[str]) -> None:
    """Files of an earlier attempt that the source no longer lists must not end up in the model."""
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel not in keep and rel != STAGING_STATE:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# --------------------------------------------------------------------------- fetch


def make_source(
    spec: catalog.LoaderSpec, env: Mapping[str, str], model_root: Path, s3_client: S3Client | None
) -> Source:
    if spec.source.startswith("s3://"):
        return S3Source(spec.source, env, RetryPolicy.from_env(env), client=s3_client)
    if spec.source.startswith("hf://"):
        return HfSource(spec.source, spec.revision, env, model_root / HF_DOWNLOAD_DIR)
    raise source_not_found(f"source {spec.source!r} is not hf://, s3:// or an absolute path")


def fetch(
    spec: catalog.LoaderSpec, env: Mapping[str, str] | None = None, *, s3_client: S3Client | None = None
) -> catalog.LoaderResult:
    """Fetch, verify and publish one model revision (see the module's docstring), and describe it
    (pipeline, transformer, whether it splits across GPUs) for the operator's admission."""
    result = _fetch_verified(spec, os.environ if env is None else env, s3_client)
    # Described on every run, reuse included: the facts depend on this image's diffusers too.
    architecture = describe(Path(spec.cache_root) / result.path)
    if architecture is not None:
        log.info(
            "%s: %s with %s; context parallel: %s",
            spec.name,
            architecture.pipeline,
            architecture.transformer or "no transformer",
            "unknown" if architecture.context_parallel is None else architecture.context_parallel,
        )
    return result.model_copy(update={"architecture": architecture})


def _fetch_verified(
    spec: catalog.LoaderSpec, env: Mapping[str, str], s3_client: S3Client | None
) -> catalog.LoaderResult:
    _check_name(spec.name)
    if spec.profile is not None:
        check_profile(spec.profile, "spec.profile")
    cache_root = Path(spec.cache_root)
    if spec.source.startswith("/"):
        return verify_in_place(spec, env)
    model_root = cache_root / catalog.CATALOG_DIR / spec.name
    model_root.mkdir(parents=True, exist_ok=True)
    # One loader per model at a time; the lock lives beside the revisions, never inside one.
    with file_lock(model_root / LOCK_NAME, exclusive=True):
        source = make_source(spec, env, model_root, s3_client)
        listing = source.listing()
        log.info(
            "%s: %d files to fetch, %d skipped%s",
            source.description,
            len(listing.files),
            len(listing.skipped),
            f" (commit {listing.revision})" if listing.revision else "",
        )
        _precheck(spec, listing, source.description)
        reused = find_reusable(spec, source.origin, listing, cache_root)
        if reused is not None:
            log.info("%s: the cache already holds these files as %s; nothing downloaded", spec.name, reused.path)
            _remove_leftovers(model_root, keep=None)
            return reused
        progress = DownloadProgress(make_model_sink(spec.name, spec.uid, env))
        try:
            result = _download_and_publish(spec, source, listing, cache_root, progress)
        except LoaderError as exc:
            if exc.exit_code != LoaderExit.TRANSIENT:
                # No pod will retry this generation: its partial download only takes space.
                _remove_leftovers(model_root, keep=None)
            raise
        finally:
            progress.close()
        _remove_leftovers(model_root, keep=None)
        if isinstance(source, HfSource):
            source.cleanup()
        return result


def _precheck(spec: catalog.LoaderSpec, listing: Listing, where: str) -> None:
    """What can be refused from the listing alone, before a byte is downloaded."""
    if MODEL_INDEX not in listing.files:
        raise verification_failed(MODEL_INDEX, f"{where}: no {MODEL_INDEX} (not a diffusers pipeline)")
    check_expected_present(spec.files or [], listing.files, where)


def find_reusable(
    spec: catalog.LoaderSpec, origin: str, listing: Listing, cache_root: Path
) -> catalog.LoaderResult | None:
    """A revision of this model already in the cache with exactly these source files and profile."""
    model_root = cache_root / catalog.CATALOG_DIR / spec.name
    identity = listing.identity()
    for candidate in sorted(model_root.iterdir()):
        if candidate.name.startswith(".") or not candidate.is_dir():
            continue
        manifest = read_manifest(candidate)
        if manifest is None or manifest.get("version") != MANIFEST_VERSION or not manifest.get("digest"):
            continue
        same = (
            manifest.get("origin") == origin
            and manifest.get("remote") == identity
            and manifest.get("profile") == spec.profile
            and (listing.revision is None or manifest.get("revision") == listing.revision)
            and candidate.relative_to(cache_root).as_posix() == catalog.model_dir(spec.name, str(manifest["digest"]))
        )
        if not same:
            continue
        files = {str(e["path"]): e for e in manifest.get("files", [])}
        if any(files.get(e.path, {}).get("sha256") != e.sha256 for e in spec.files or []):
            continue  # fetched again, the pinned digests then fail naming the file
        if not all(_has_size(candidate / rel, int(e["size"])) for rel, e in files.items()):
            log.warning("%s: files are missing or changed; fetching again", candidate)
            continue
        return _result(spec.name, manifest, downloaded=0)
    return None


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _result(name: str, manifest: Mapping[str, Any], *, downloaded: int) -> catalog.LoaderResult:
    files = manifest["files"]
    return catalog.LoaderResult(
        revision=manifest["revision"],
        digest=manifest["digest"],
        size_bytes=sum(int(e["size"]) for e in files),
        file_count=len(files),
        path=catalog.model_dir(name, manifest["digest"]),
        downloaded=downloaded,
        skipped_files=list(manifest.get("skippedFiles", []))[:MAX_SKIPPED],
    )


def _download_and_publish(
    spec: catalog.LoaderSpec, source: Source, listing: Listing, cache_root: Path, progress: DownloadProgress
) -> catalog.LoaderResult:
    staging = cache_root / catalog.staging_dir(spec.name, spec.uid, spec.generation)
    _prepare_staging(staging)
    state = StagingState(staging)
    sha256 = state.complete(listing.files, staging)
    if sha256:
        log.info("resuming: %d files already in %s", len(sha256), staging)
    linked = _link_unchanged(spec, source.origin, listing, cache_root, staging, sha256, state)
    if linked:
        log.info("%d unchanged files taken from earlier revisions of %s", linked, spec.name)
    todo = [item for rel, item in sorted(listing.files.items()) if rel not in sha256]
    progress.start(
        len(listing.files),
        sum(f.size for f in listing.files.values()),
        files_done=len(sha256),
        bytes_done=sum(listing.files[rel].size for rel in sha256),
    )

    def on_file(item: SourceFile, digest: str) -> None:
        sha256[item.rel] = digest
        state.record(item, digest)

    # model_index.json first: a pipeline that cannot become a model fails before its weights move.
    source.fetch([f for f in todo if f.rel == MODEL_INDEX], staging, progress, on_file)
    check_components(read_model_index(staging / MODEL_INDEX), listing.all_files)
    source.fetch([f for f in todo if f.rel != MODEL_INDEX], staging, progress, on_file)
    _remove_strays(staging, set(listing.files))
    files = _verify(spec, staging, sha256)
    digest = catalog.manifest_digest(files)
    manifest = {
        "version": MANIFEST_VERSION,
        "name": spec.name,
        "source": spec.source,
        "origin": source.origin,
        "revision": listing.revision or digest,
        "digest": digest,
        "files": files,
        "remote": listing.identity(),
        "profile": spec.profile,
        "skippedFiles": listing.skipped,
    }
    _write_json(staging / catalog.MODEL_MANIFEST_NAME, manifest)
    (staging / STAGING_STATE).unlink(missing_ok=True)
    final = cache_root / catalog.model_dir(spec.name, digest)
    _publish(staging, final, digest)
    log.info("%s: %d files, %s verified as %s", spec.name, len(files), _size(files), final)
    return _result(spec.name, manifest, downloaded=len(todo))


def _link_unchanged(
    spec: catalog.LoaderSpec,
    origin: str,
    listing: Listing,
    cache_root: Path,
    staging: Path,
    sha256: dict[str, str],
    state: StagingState,
) -> int:
    """Hard-link files the source still lists as they were (same path, size and ETag / blob id) from
    earlier revisions of this model, so an upgrade moves only what changed. Revisions are read-only,
    so sharing an inode between them is safe."""
    model_root = cache_root / catalog.CATALOG_DIR / spec.name
    known: dict[tuple[str, int, str], tuple[Path, str]] = {}
    for candidate in sorted(model_root.iterdir()):
        manifest = read_manifest(candidate) if not candidate.name.startswith(".") else None
        if manifest is None or manifest.get("origin") != origin or not isinstance(manifest.get("remote"), dict):
            continue
        digests = {str(e["path"]): str(e["sha256"]) for e in manifest.get("files", [])}
        # A profile file written from spec.profile is not the source's file of that name.
        own_profile = manifest.get("profile") is None
        for rel, remote in manifest["remote"].items():
            if rel in digests and (own_profile or rel != catalog.PROFILE_FILE_NAME):
                known[(rel, int(remote["size"]), str(remote["etag"]))] = (candidate / rel, digests[rel])
    linked = 0
    for rel, item in sorted(listing.files.items()):
        found = known.get((rel, item.size, item.etag)) if item.etag and rel not in sha256 else None
        if found is None or not _has_size(found[0], item.size):
            continue
        target = staging.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(found[0], target)
        except OSError:
            shutil.copyfile(found[0], target)
        sha256[rel] = found[1]
        state.record(item, found[1])
        linked += 1
    return linked


def _verify(spec: catalog.LoaderSpec, model: Path, sha256: dict[str, str]) -> list[dict[str, Any]]:
    """Headers, pinned digests and the profile of the files in `model`; their manifest entries."""
    for rel in sorted(sha256):
        if rel.endswith(".safetensors"):
            check_safetensors(model.joinpath(*rel.split("/")), rel)
    check_expected_digests(spec.files or [], sha256)
    profile_path = model / catalog.PROFILE_FILE_NAME
    if spec.profile is not None:
        # The admin's hints replace any profile the source shipped.
        profile_path.unlink(missing_ok=True)
        profile_path.write_text(json.dumps(spec.profile, indent=2, sort_keys=True) + "\n")
        sha256[catalog.PROFILE_FILE_NAME] = hash_file(profile_path)
    elif catalog.PROFILE_FILE_NAME in sha256:
        check_profile(read_profile_file(profile_path), catalog.PROFILE_FILE_NAME)
    return [
        {"path": rel, "size": model.joinpath(*rel.split("/")).stat().st_size, "sha256": digest}
        for rel, digest in sorted(sha256.items())
    ]


def _publish(staging: Path, final: Path, digest: str) -> None:
    """Read-only, then renamed into its content-addressed place (running jobs keep reading the old one)."""
    make_read_only(staging)
    if final.exists():
        existing = read_manifest(final)
        if existing is not None and existing.get("digest") == digest:
            log.info("%s already holds these exact files; dropping the new copy", final)
            remove_tree(staging)
            return
        log.warning("%s holds other or incomplete files; replacing it", final)
        remove_tree(final)
    os.rename(staging, final)


def _remove_leftovers(model_root: Path, keep: Path | None) -> None:
    """Staging directories of interrupted loaders (under our lock nobody else is writing one)."""
    for path in model_root.glob(".staging-*"):
        if path != keep:
            log.info("removing leftover %s", path)
            remove_tree(path)


def _size(files: Sequence[Mapping[str, Any]]) -> str:
    return catalog.human_size(sum(int(e["size"]) for e in files))


# --------------------------------------------------------------------------- path sources


def verify_in_place(spec: catalog.LoaderSpec, env: Mapping[str, str]) -> catalog.LoaderResult:
    """A directory already on the cache volume: verified where it is, never copied or made read-only
    (it is the admin's); spec.profile is written into it as videogen-profile.json."""
    root = Path(spec.cache_root).resolve()
    path = Path(spec.source).resolve()
    if not path.is_relative_to(root):
        raise source_not_found(f"{spec.source} is not on the model-cache volume ({spec.cache_root})")
    if path.is_relative_to(root / catalog.CATALOG_DIR):
        raise source_not_found(f"{spec.source} is inside {catalog.CATALOG_DIR}/, which belongs to the loader")
    if not path.is_dir():
        raise source_not_found(f"{spec.source}: no such directory")
    listing = _list_directory(path, root)
    _precheck(spec, listing, spec.source)
    check_components(read_model_index(path / MODEL_INDEX), listing.all_files)
    progress = DownloadProgress(make_model_sink(spec.name, spec.uid, env), verb="verifying")
    try:
        progress.start(len(listing.files), sum(f.size for f in listing.files.values()))
        sha256: dict[str, str] = {}
        for rel in sorted(listing.files):
            sha256[rel] = hash_file(path.joinpath(*rel.split("/")), progress.add_bytes)
            progress.file_done()
    finally:
        progress.close()
    try:
        files = _verify(spec, path, sha256)
    except OSError as exc:
        raise transient(f"{spec.source}: cannot write {catalog.PROFILE_FILE_NAME} ({exc.strerror or exc})") from exc
    digest = catalog.manifest_digest(files)
    manifest = {
        "version": MANIFEST_VERSION,
        "name": spec.name,
        "source": spec.source,
        "revision": digest,
        "digest": digest,
        "files": files,
        "profile": spec.profile,
        "skippedFiles": listing.skipped,
    }
    try:
        # A record beside the files (the runner checks the digest it was given against it).
        _write_json(path / catalog.MODEL_MANIFEST_NAME, manifest)
    except OSError as exc:
        log.warning("cannot write %s into %s (%s)", catalog.MODEL_MANIFEST_NAME, path, exc.strerror or exc)
    result = _result(spec.name, manifest, downloaded=0)
    return result.model_copy(update={"path": path.relative_to(root).as_posix()})


def _list_directory(path: Path, root: Path) -> Listing:
    entries: dict[str, SourceFile] = {}
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path).as_posix()
        if file.is_symlink() and not file.resolve().is_relative_to(root):
            # Runners see only the volume: a link out of it would not resolve there.
            raise verification_failed(rel, f"{rel}: a symbolic link out of the model-cache volume")
        if not file.is_file() or rel in (catalog.MODEL_MANIFEST_NAME, STAGING_STATE):
            continue
        rel = safe_relative(rel, str(path))
        entries[rel] = SourceFile(rel, file.stat().st_size, "")
    return split_listing(entries)


# --------------------------------------------------------------------------- remove


def remove(name: str, cache_root: Path) -> dict[str, Any]:
    """Delete `<cache_root>/catalog/<name>` (every revision, leftovers included)."""
    _check_name(name)
    root = cache_root / catalog.CATALOG_DIR / name
    if not root.exists():
        log.info("%s does not exist; nothing to remove", root)
        return {"removed": f"{catalog.CATALOG_DIR}/{name}", "sizeBytes": 0}
    # Waits for a loader still writing this model, then deletes under its lock.
    with file_lock(root / LOCK_NAME, exclusive=True):
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        remove_tree(root)
    log.info("removed %s (%s)", root, catalog.human_size(size))
    return {"removed": f"{catalog.CATALOG_DIR}/{name}", "sizeBytes": size}


# --------------------------------------------------------------------------- output and CLI


PREWARM_CHUNK = 8 * 1024 * 1024


def prewarm(model_dir: Path) -> dict[str, Any]:
    """Read every file of a model once, so the node's page cache holds it before the first job
    (a DaemonSet runs this per GPU node). Reads only; the mount is read-only anyway."""
    if not model_dir.is_dir():
        raise UsageError(f"prewarm: ${catalog.ENV_MODEL_DIR} ({model_dir}) is not a directory")
    started = time.monotonic()
    total = files = 0
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        with path.open("rb", buffering=0) as handle:
            while chunk := handle.read(PREWARM_CHUNK):
                total += len(chunk)
        files += 1
    seconds = round(time.monotonic() - started, 3)
    log.info("prewarmed %s: %d files, %s in %.1fs", model_dir, files, catalog.human_size(total), seconds)
    return {"path": str(model_dir), "files": files, "bytes": total, "seconds": seconds}


def wait_for_termination() -> None:
    """A DaemonSet's pod must keep running (or it is restarted and reads everything again)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


def _termination_log(env: Mapping[str, str]) -> Path | None:
    if env.get(api.ENV_TERMINATION_LOG):
        return Path(env[api.ENV_TERMINATION_LOG])
    default = Path(api.DEFAULT_TERMINATION_LOG)
    # Only where the kubelet made one: run by hand, nothing is written under /dev.
    return default if default.is_file() and os.access(default, os.W_OK) else None


def fit(message: dict[str, Any], limit: int = api.TERMINATION_MESSAGE_LIMIT) -> str:
    """JSON within the kubelet's limit: a long skipped list or message is cut short."""
    data = dict(message)
    while True:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) <= limit:
            return text
        skipped = data.get("skippedFiles")
        if isinstance(skipped, list) and len(skipped) > 1:
            data["skippedFiles"] = skipped[: len(skipped) // 2]
        elif isinstance(data.get("message"), str) and len(data["message"]) > 16:
            data["message"] = data["message"][: len(data["message"]) // 2] + "…"
        else:
            return text


def emit(message: dict[str, Any], env: Mapping[str, str]) -> None:
    text = fit(message)
    path = _termination_log(env)
    if path is not None:
        try:
            path.write_text(text)
        except OSError as exc:
            log.warning("cannot write the termination message to %s: %s", path, exc.strerror or exc)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videogen-model-loader", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help=f"fetch and verify the model ${catalog.ENV_LOADER_SPEC} describes")
    sub.add_parser(
        "prewarm",
        help=f"read every file under ${catalog.ENV_MODEL_DIR} into this node's page cache, then wait for SIGTERM",
    )
    remove_cmd = sub.add_parser("remove", help="delete a model's files from the cache")
    remove_cmd.add_argument("--name", help=f"the VideoGenModel's name (default: from ${catalog.ENV_LOADER_SPEC})")
    remove_cmd.add_argument(
        "--cache-root", type=Path, help=f"model-cache root (default: from the spec, or ${api.ENV_MODEL_CACHE})"
    )
    return parser


def _remove_args(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, Path]:
    spec = load_spec(env) if env.get(catalog.ENV_LOADER_SPEC) else None
    name = args.name or (spec.name if spec else None)
    cache_root = (
        args.cache_root
        or (Path(spec.cache_root) if spec else None)
        or (Path(env[api.ENV_MODEL_CACHE]) if env.get(api.ENV_MODEL_CACHE) else None)
    )
    if not name or cache_root is None:
        raise UsageError(f"remove needs --name and --cache-root (or ${catalog.ENV_LOADER_SPEC})")
    return name, cache_root


def run(argv: Sequence[str] | None, env: Mapping[str, str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fetch":
            result = fetch(load_spec(env), env)
            emit(result.to_wire(), env)
        elif args.command == "prewarm":
            summary = prewarm(Path(env.get(catalog.ENV_MODEL_DIR) or ""))
            sys.stdout.write(json.dumps(summary) + "\n")
            sys.stdout.flush()
            wait_for_termination()
        else:
            emit(remove(*_remove_args(args, env)), env)
        return LoaderExit.OK
    except LoaderError as exc:
        log.error("%s failed (%s, exit %d): %s", args.command, exc.reason.value, exc.exit_code, exc.message)
        failure = catalog.LoaderFailure(reason=exc.reason, message=one_line(exc.message), file=exc.file)
        emit(failure.to_wire(), env)
        return exc.exit_code
    except UsageError as exc:
        log.error("%s", exc)
        failure = catalog.LoaderFailure(reason=catalog.ModelReason.LOADER_FAILED, message=one_line(str(exc)))
        emit(failure.to_wire(), env)
        return LoaderExit.USAGE
    except Exception as exc:
        # Unexpected (a full disk, a bug): another pod may fare better; the Job's retries are bounded.
        log.exception("%s failed", args.command)
        message = one_line(f"{type(exc).__name__}: {exc}")
        emit(catalog.LoaderFailure(reason=catalog.ModelReason.LOADER_FAILED, message=message).to_wire(), env)
        return LoaderExit.TRANSIENT


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("videogen_runner").setLevel(os.environ.get("VIDEOGEN_LOG_LEVEL", "INFO").upper())
    return run(argv, os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
