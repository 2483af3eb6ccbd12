"""kopf's watch streams decoded with orjson: the same values as the standard library, installed where
kopf decodes them, and nothing orjson refuses ever stops a watch."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kopf._cogs.clients import api as kopf_api

from videogen_operator import watch_json

# A watch event as the API server sends it: nesting, unicode, floats, large and negative integers,
# empty containers, null, escapes.
EVENT = {
    "type": "MODIFIED",
    "object": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "vid-1a2b3c4d-xk2p9",
            "labels": {"app.kubernetes.io/managed-by": "videogen-operator"},
            "annotations": {"note": 'caf\u00e9 \u2014 \U0001f3ac "quoted" \\ back\\slash\n'},
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:metadata": {}}}],
            "generation": 9007199254740993,
        },
        "spec": {"containers": [{"env": [{"name": "A", "value": "1"}], "args": []}], "priority": -2147483648},
        "status": {"phase": "Running", "progress": 0.125, "ratio": 1e-7, "ready": True, "message": None},
    },
}


@pytest.fixture
def installed() -> Iterator[None]:
    before = kopf_api.json
    assert watch_json.install() is True, "kopf's API client decodes through the json module name"
    yield
    kopf_api.json = before  # type: ignore[attr-defined]


def test_kopf_decodes_watch_lines_with_it_and_gets_the_same_values(installed: None) -> None:
    line = json.dumps(EVENT)
    assert kopf_api.json.loads is watch_json.loads
    assert kopf_api.json.loads(line) == json.loads(line) == EVENT
    # The rest of the json module is untouched for whatever else kopf's client uses it for.
    assert kopf_api.json.dumps is json.dumps and kopf_api.json.JSONDecodeError is json.JSONDecodeError


def test_installing_twice_keeps_one_decoder(installed: None) -> None:
    first = kopf_api.json
    assert watch_json.install() is True
    assert kopf_api.json is first


def test_every_number_the_api_server_can_send_is_exact() -> None:
    # The API server sends int64 and float64 values only (Go decodes every object so).
    for number in ("9223372036854775807", "-9223372036854775808", "0.1", "1.7976931348623157e308", "5e-324"):
        line = f'{{"spec": {{"n": {number}}}}}'
        decoded = watch_json.loads(line)["spec"]["n"]
        assert decoded == json.loads(line)["spec"]["n"] and type(decoded) is type(json.loads(line)["spec"]["n"])


def test_what_orjson_refuses_is_decoded_by_the_standard_library() -> None:
    # A number past a double's range: orjson refuses it, the standard library reads infinity.
    assert watch_json.loads('{"spec": {"n": 1e400}}') == {"spec": {"n": float("inf")}}
    # Not JSON at all: the same error as before (kopf's stream handling is unchanged).
    with pytest.raises(json.JSONDecodeError):
        watch_json.loads('{"type": "ADDED", "object": ')


def test_a_kopf_that_decodes_otherwise_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = object()
    monkeypatch.setattr(kopf_api, "json", sentinel)
    assert watch_json.install() is False
    assert kopf_api.json is sentinel
