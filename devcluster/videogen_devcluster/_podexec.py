"""Runs one container's process: private mount namespace, bind mounts, then exec.

Started by the local GPU node agent as ``python -I _podexec.py SPEC.json`` (by file path, so the package
and its heavy imports are not loaded), or ``--probe`` to learn whether mount namespaces work here. Only
the standard library may be imported. The spec file is deleted once read: it holds the pod's environment,
which may include secrets.

Exit status 128 (what container runtimes report for a failed start) means the container could not be
started; the reason is written to the spec's ``start_error_file``.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
START_ERROR_STATUS = 128

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else b"none",
            target.encode(),
            None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {source} on {target}",
    )


def enter_private_mount_namespace() -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Without this our bind mounts would propagate back to the host's shared mounts.
    _mount(None, "/", MS_REC | MS_PRIVATE)


def _ensure_mount_point(source: str, target: str) -> None:
    # Mount points are created on the host filesystem (a mount namespace does not isolate files), as
    # container runtimes do inside the image; they are left empty once the pod's namespace is gone.
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        with open(target, "a"):
            pass


def bind(source: str, target: str, read_only: bool) -> None:
    _ensure_mount_point(source, target)
    _mount(source, target, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)


def run(spec: dict[str, Any]) -> None:
    error_file = spec.get("start_error_file")
    if error_file:
        # Pinned like the volume sources: the pod's mounts may hide the agent's state directory.
        spec["_error_dir_fd"] = os.open(os.path.dirname(error_file) or ".", os.O_PATH | os.O_DIRECTORY)
    cwd = spec.get("cwd")
    # Without a workingDir the process starts in a per-pod host directory, pinned now because the
    # pod's own mounts (a volume at /tmp, say) may hide its path.
    default_cwd = spec.get("default_cwd")
    if default_cwd:
        os.makedirs(default_cwd, exist_ok=True)
        default_fd = os.open(default_cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if spec.get("private_mounts", True):
        enter_private_mount_namespace()
        mounts = spec.get("mounts", [])
        # Sources are pinned before anything is mounted: a volume mounted at /tmp must not hide the
        # source of another volume that lives under the host's /tmp.
        pinned = [os.open(m["source"], os.O_PATH | os.O_CLOEXEC) for m in mounts]
        # The "image" is the host's project environment (repository, virtualenv, Python): a volume
        # mounted over one of its parents (an emptyDir at /tmp, with the checkout under /tmp) must
        # not hide it, so those paths are pinned too and bound back where they were.
        targets = [m["target"].rstrip("/") or "/" for m in mounts]
        keep = [
            (path, os.open(path, os.O_PATH | os.O_CLOEXEC))
            for path in spec.get("keep_visible", [])
            if os.path.exists(path) and any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)
        ]
        # Parents first, so a nested mountPath lands inside its parent volume, not under it.
        order = sorted(range(len(mounts)), key=lambda i: mounts[i]["target"].rstrip("/").count("/"))
        for i in order:
            bind(f"/proc/self/fd/{pinned[i]}", mounts[i]["target"], bool(mounts[i].get("read_only")))
        for path, fd in keep:
            bind(f"/proc/self/fd/{fd}", path, read_only=False)
        for fd in pinned + [fd for _, fd in keep]:
            os.close(fd)
        if spec.get("read_only_root"):
            if cwd:
                os.makedirs(cwd, exist_ok=True)
            # readOnlyRootFilesystem: only this namespace's view of / turns read-only; volumes and
            # the separate /dev, /dev/shm and /proc mounts stay writable, as in a container.
            _mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
    if cwd:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
    elif default_cwd:
        os.fchdir(default_fd)
    argv: list[str] = spec["argv"]
    env: dict[str, str] = spec["env"]
    os.execvpe(argv[0], argv, env)


def probe() -> int:
    try:
        enter_private_mount_namespace()
    except OSError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    if sys.argv[1:] == ["--probe"]:
        return probe()
    spec_path = sys.argv[1]
    with open(spec_path) as f:
        spec = json.load(f)
    os.unlink(spec_path)
    try:
        run(spec)
    except Exception as e:
        message = f"failed to start container process {spec.get('argv')}: {e}"
        print(message, file=sys.stderr, flush=True)
        error_file = spec.get("start_error_file")
        if error_file:
            dir_fd = spec.get("_error_dir_fd")
            fd = os.open(
                os.path.basename(error_file) if dir_fd is not None else error_file,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                0o600,
                dir_fd=dir_fd,
            )
            with os.fdopen(fd, "w") as f:
                f.write(message)
        return START_ERROR_STATUS
    return START_ERROR_STATUS  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
