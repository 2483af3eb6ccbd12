"""A pod's volumes materialised as host directories, and its containers' bind mounts.

Contents are written once, before the first container starts: later changes to Secrets, ConfigMaps or
tokens are not propagated into running pods (the kubelet would refresh them).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .kubeapi import JSON
from .podenv import ContainerConfigError, ObjectReader, field_value, resource_value

DEFAULT_TERMINATION_PATH = "/dev/termination-log"

# (namespace, serviceAccountName, TokenRequest body) -> token
TokenRequester = Callable[[str, str, JSON], str]


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


@dataclass
class VolumeContext:
    pod: JSON
    pod_dir: Path
    claims_dir: Path
    read: ObjectReader
    request_token: TokenRequester
    allocatable: Mapping[str, str]

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])


def _write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    for rel, (content, mode) in files.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ContainerConfigError(f"invalid volume item path {rel!r}")
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _keyed_files(source: JSON, data: Mapping[str, bytes], default_mode: int, what: str) -> dict[str, tuple[bytes, int]]:
    items = source.get("items")
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise ContainerConfigError(f"configmap/secret key {item['key']!r} not found in {what}")
        files[item["path"]] = (data[item["key"]], int(item.get("mode", default_mode)))
    return files


def _object_data(ctx: VolumeContext, kind: str, source: JSON) -> dict[str, bytes] | None:
    name = source.get("secretName") if kind == "Secret" else source.get("name")
    obj = ctx.read(kind, ctx.namespace, str(name))
    if obj is None:
        if source.get("optional"):
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found', reason="ContainerCreating")
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _downward_files(ctx: VolumeContext, items: list[JSON], default_mode: int) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(ctx.pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            containers = {c["name"]: c for c in ctx.pod["spec"]["containers"]}
            value = resource_value(containers[ref["containerName"]], ref, ctx.allocatable)
        files[item["path"]] = (value.encode(), int(item.get("mode", default_mode)))
    return files


def _token(ctx: VolumeContext, source: JSON) -> bytes:
    meta = ctx.pod["metadata"]
    spec: JSON = {
        "expirationSeconds": int(source.get("expirationSeconds", 3600)),
        # Bound to the pod: the token dies with it, and the API server records which pod used it.
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
    }
    if source.get("audience"):
        spec["audiences"] = [source["audience"]]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    sa = ctx.pod["spec"].get("serviceAccountName") or "default"
    return ctx.request_token(ctx.namespace, sa, body).encode()


def _projected_files(ctx: VolumeContext, projected: JSON) -> dict[str, tuple[bytes, int]]:
    default_mode = int(projected.get("defaultMode", 0o644))
    files: dict[str, tuple[bytes, int]] = {}
    for source in projected.get("sources", []):
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            # Tokens are credentials: never world-readable, as the kubelet does for projected tokens.
            files[sat["path"]] = (_token(ctx, sat), 0o600)
        elif "secret" in source or "configMap" in source:
            kind, ref = ("Secret", source["secret"]) if "secret" in source else ("ConfigMap", source["configMap"])
            # Projected secrets name the object with "name", plain secret volumes with "secretName".
            normalised = {**ref, "secretName": ref.get("name")} if kind == "Secret" else ref
            data = _object_data(ctx, kind, normalised)
            if data is not None:
                files.update(_keyed_files(ref, data, default_mode, f"{kind} {ref.get('name')}"))
        elif "downwardAPI" in source:
            files.update(_downward_files(ctx, source["downwardAPI"].get("items", []), default_mode))
        else:
            raise ContainerConfigError(f"unsupported projected volume source {sorted(source)}")
    return files


def _claim_dir(ctx: VolumeContext, claim_name: str) -> Path:
    claim = ctx.read("PersistentVolumeClaim", ctx.namespace, claim_name)
    if claim is None:
        raise ContainerConfigError(f'persistentvolumeclaim "{claim_name}" not found', reason="ContainerCreating")
    volume_name = claim.get("spec", {}).get("volumeName")
    if volume_name:
        pv = ctx.read("PersistentVolume", "", volume_name)
        pv_spec = (pv or {}).get("spec", {})
        for kind in ("hostPath", "local"):
            if kind in pv_spec:
                path = Path(pv_spec[kind]["path"])
                path.mkdir(parents=True, exist_ok=True)
                return path
    # Any other claim gets a directory of its own that outlives pods, like a real volume would.
    path = ctx.claims_dir / ctx.namespace / claim_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _host_path(source: JSON) -> Path:
    path = Path(source["path"])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise ContainerConfigError(f"hostPath type check failed: {path} is not a directory", "ContainerCreating")
    elif kind == "File" and not path.is_file():
        raise ContainerConfigError(f"hostPath type check failed: {path} is not a file", "ContainerCreating")
    return path


def prepare_volumes(ctx: VolumeContext) -> dict[str, Path]:
    """Host path of each of the pod's volumes, creating and filling them; raises ContainerConfigError."""
    paths: dict[str, Path] = {}
    for volume in ctx.pod["spec"].get("volumes", []):
        name = volume["name"]
        own_dir = ctx.pod_dir / "volumes" / name
        if "emptyDir" in volume:
            own_dir.mkdir(parents=True, exist_ok=True)
            paths[name] = own_dir
        elif "hostPath" in volume:
            paths[name] = _host_path(volume["hostPath"])
        elif "secret" in volume or "configMap" in volume:
            kind, source = ("Secret", volume["secret"]) if "secret" in volume else ("ConfigMap", volume["configMap"])
            own_dir.mkdir(parents=True, exist_ok=True)
            data = _object_data(ctx, kind, source)
            if data is not None:
                mode = int(source.get("defaultMode", 0o644))
                _write_files(own_dir, _keyed_files(source, data, mode, f"{kind} volume {name}"))
            paths[name] = own_dir
        elif "projected" in volume:
            own_dir.mkdir(parents=True, exist_ok=True)
            _write_files(own_dir, _projected_files(ctx, volume["projected"]))
            paths[name] = own_dir
        elif "downwardAPI" in volume:
            own_dir.mkdir(parents=True, exist_ok=True)
            source = volume["downwardAPI"]
            mode = int(source.get("defaultMode", 0o644))
            _write_files(own_dir, _downward_files(ctx, source.get("items", []), mode))
            paths[name] = own_dir
        elif "persistentVolumeClaim" in volume:
            paths[name] = _claim_dir(ctx, volume["persistentVolumeClaim"]["claimName"])
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ContainerConfigError(f"volume {name}: type {kinds} is not supported by the local node")
    return paths


def container_mounts(container: JSON, volumes: Mapping[str, Path], termination_file: Path) -> list[Mount]:
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts", []):
        source = volumes.get(vm["name"])
        if source is None:
            raise ContainerConfigError(f"volumeMount {vm['name']!r} names no volume of the pod")
        sub_path = vm.get("subPath")
        if sub_path:
            if os.path.isabs(sub_path) or ".." in Path(sub_path).parts:
                raise ContainerConfigError(f"invalid subPath {sub_path!r}")
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True)  # as the kubelet does for a missing subPath
        mounts.append(Mount(source=source, target=vm["mountPath"], read_only=bool(vm.get("readOnly"))))
    target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    mounts.append(Mount(source=termination_file, target=target, read_only=False))
    return mounts
