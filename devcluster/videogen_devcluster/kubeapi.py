"""Thin typed helpers over the ``kubernetes`` client for code that works with plain JSON objects.

The node agent reads and writes objects as JSON dicts (``_preload_content=False``): that keeps every field
the server sent, including ones newer than the client's models, and avoids model round trips.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

JSON = dict[str, Any]


def new_client(kubeconfig: Path) -> ApiClient:
    """A client for ``kubeconfig`` that leaves the library's global default configuration alone."""
    from kubernetes import config

    api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), persist_config=False
    )
    return api


def raw(call: Callable[..., object], *args: Any, **kwargs: Any) -> JSON:
    """Calls a generated API method and returns the response body as JSON."""
    response = call(*args, _preload_content=False, **kwargs)
    result: JSON = json.loads(cast(Any, response).data)
    return result


def body(obj: JSON) -> Any:
    """A JSON dict where the generated signatures expect a model (the client serialises both alike)."""
    return obj


def close(api: ApiClient) -> None:
    api.close()  # type: ignore[no-untyped-call]
