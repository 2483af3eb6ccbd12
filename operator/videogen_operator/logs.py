"""JSON logs, one object per line, safe for log pipelines.

Prompts never appear at INFO: only `prompt_preview` (40 chars) is ever logged,
and only at DEBUG.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# kopf attaches its whole OperatorSettings and bookkeeping flags to every record.
_KOPF_NOISE = {"settings", "k8s_skip"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _KOPF_NOISE:
                continue
            if key == "k8s_ref" and isinstance(value, dict):
                out["object"] = f"{value.get('kind')} {value.get('namespace', '')}/{value.get('name')}"
            elif key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Kubernetes client logs request bodies (prompts included) at DEBUG.
    logging.getLogger("kubernetes").setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # kopf says "Handler ... succeeded" for every watch event; our reconciler logs the transitions.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("botocore").setLevel(logging.WARNING)
