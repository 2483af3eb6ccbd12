"""A container's environment and command line, resolved the way the kubelet does it."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from .kubeapi import JSON

# Reads one object from the API (kind, namespace, name) -> raw JSON, or None when it does not exist.
ObjectReader = Callable[[str, str, str], JSON | None]


class ContainerConfigError(Exception):
    """The container cannot be created yet (a missing Secret key, an unsupported volume, ...).

    ``reason`` is what the kubelet would put in the container's waiting state.
    """

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def expand(text: str, lookup: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` escapes, unknown or unterminated references stay as is."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = text[cursor + 2 : close]
                    out.append(lookup.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.+)'\]$")


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


def field_value(pod: JSON, field_path: str) -> str:
    """Value of a downward API ``fieldRef`` (the paths the kubelet supports)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    subscript = _SUBSCRIPT.match(field_path)
    if subscript:
        which = subscript.group(1).split(".")[1]
        return str(meta.get(which, {}).get(subscript.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", ""),
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: _format_map(meta.get("labels", {})),
        "metadata.annotations": lambda: _format_map(meta.get("annotations", {})),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName", ""),
        "status.hostIP": lambda: status.get("hostIP", ""),
        "status.hostIPs": lambda: ",".join(i["ip"] for i in status.get("hostIPs", [])),
        "status.podIP": lambda: status.get("podIP", ""),
        "status.podIPs": lambda: ",".join(i["ip"] for i in status.get("podIPs", [])),
    }
    if field_path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {field_path!r}")
    return simple[field_path]()


_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")


def parse_quantity(quantity: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "2Gi", "1e3") as a number."""
    m = _QUANTITY.match(str(quantity).strip())
    if not m:
        raise ValueError(f"invalid quantity {quantity!r}")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    if suffix not in _SUFFIXES:
        raise ValueError(f"invalid quantity suffix in {quantity!r}")
    return number * _SUFFIXES[suffix]


def resource_value(container: JSON, ref: JSON, allocatable: Mapping[str, str]) -> str:
    """A ``resourceFieldRef``: the container's limit (the node's allocatable if unset) over the divisor."""
    which, _, name = ref["resource"].partition(".")
    value = container.get("resources", {}).get(which, {}).get(name)
    if value is None and which == "limits":
        value = allocatable.get(name)
    if value is None:
        value = "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


@dataclass
class EnvResolver:
    pod: JSON
    read: ObjectReader
    allocatable: Mapping[str, str]

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    def _key(self, kind: str, ref: JSON) -> str | None:
        obj = self.read(kind, self.namespace, ref["name"])
        optional = bool(ref.get("optional"))
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        data = obj.get("data") or {}
        key = ref["key"]
        if key in data:
            return base64.b64decode(data[key]).decode() if kind == "Secret" else str(data[key])
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {self.namespace}/{ref['name']}")

    def _from_source(self, source: JSON) -> dict[str, str]:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        obj = self.read(kind, self.namespace, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        prefix = source.get("prefix", "")
        data = obj.get("data") or {}
        if kind == "Secret":
            return {prefix + k: base64.b64decode(v).decode() for k, v in data.items()}
        return {prefix + k: str(v) for k, v in data.items()}

    def resolve(self, container: JSON, service_env: Mapping[str, str]) -> dict[str, str]:
        """The container's environment: service variables, then ``envFrom``, then ``env`` in order.

        ``value`` fields may reference earlier variables with ``$(NAME)``; ``valueFrom`` values are
        taken literally, as the kubelet does.
        """
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(self._from_source(source))
        for var in container.get("env", []):
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), {**service_env, **env})
                continue
            source = var["valueFrom"]
            resolved: str | None
            if "secretKeyRef" in source:
                resolved = self._key("Secret", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                resolved = self._key("ConfigMap", source["configMapKeyRef"])
            elif "fieldRef" in source:
                resolved = field_value(self.pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                resolved = resource_value(container, source["resourceFieldRef"], self.allocatable)
            else:
                raise ContainerConfigError(f"unsupported valueFrom for env {name}: {sorted(source)}")
            if resolved is not None:
                env[name] = resolved
        return {**service_env, **env}


def command_line(container: JSON, env: Mapping[str, str], entrypoints: Mapping[str, list[str]]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; the image's entrypoint comes from ``entrypoints``.

    Images are not pulled, so an image's own ENTRYPOINT is unknown unless ``entrypoints`` names it (keyed
    by the image's last path component without tag, e.g. ``videogen-runner``).
    """
    command = [expand(c, env) for c in container.get("command", [])]
    args = [expand(a, env) for a in container.get("args", [])]
    if not command:
        image = str(container.get("image", ""))
        repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        if repo not in entrypoints:
            raise ContainerConfigError(
                f"container {container['name']} has no command and the local node does not know the "
                f"entrypoint of image {image!r} (known: {sorted(entrypoints)})",
                reason="RunContainerError",
            )
        command = list(entrypoints[repo])
    return command + args
