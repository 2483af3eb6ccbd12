"""Operator logs are JSON lines; prompts never reach INFO."""

from __future__ import annotations

import json
import logging

from videogen_api.v1alpha1 import prompt_preview
from videogen_operator.logs import JsonFormatter


def test_log_lines_are_json_with_extra_fields() -> None:
    record = logging.LogRecord("videogen", logging.INFO, __file__, 1, "%s -> %s", ("ns/job", "Running"), None)
    record.vgj = "ns/job"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "ns/job -> Running"
    assert line["vgj"] == "ns/job"
    assert line["level"] == "INFO"


def test_prompt_preview_never_carries_a_whole_long_prompt() -> None:
    secret = "a product launch video for the unannounced model X-9000 " * 5
    assert len(prompt_preview(secret)) <= 40


def test_kopf_bookkeeping_is_summarised_not_dumped() -> None:
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "slow", (), None)
    record.settings = object()
    record.k8s_skip = True
    record.k8s_ref = {"kind": "VideoGenJob", "namespace": "ns", "name": "job", "uid": "u"}
    line = json.loads(JsonFormatter().format(record))
    assert "settings" not in line and "k8s_skip" not in line
    assert line["object"] == "VideoGenJob ns/job"
