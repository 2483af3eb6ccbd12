"""The S3 client every part of the runner shares, and the retry policy around it.

In a cluster the runner holds no keys: the operator grants it presigned URLs for
exactly its own objects (`VIDEOGEN_GRANT`, see grant.py) and `make_client`
returns a client that answers from them. Without a grant (a platform that opted
into workload identity, or a run by hand) credentials come only from boto3's own
chain (web identity, instance profile, env vars): the spec has no place for them
by design, so a user who can create a VideoGenJob cannot point the runner at
someone else's keys.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

ENV_ENDPOINT = "AWS_ENDPOINT_URL"
ENV_ENDPOINT_S3 = "AWS_ENDPOINT_URL_S3"
ENV_REGION = "AWS_REGION"
# Attempts botocore makes per request (its own backoff, "standard" mode).
ENV_MAX_ATTEMPTS = "VIDEOGEN_S3_MAX_ATTEMPTS"
# Rounds of our own retry around a whole transfer, and the first pause between them.
ENV_TRANSFER_ATTEMPTS = "VIDEOGEN_S3_TRANSFER_ATTEMPTS"
ENV_BACKOFF_SECONDS = "VIDEOGEN_S3_BACKOFF_SECONDS"
ENV_CONNECT_TIMEOUT = "VIDEOGEN_S3_CONNECT_TIMEOUT_SECONDS"
# path (default: self-hosted servers rarely have wildcard DNS for bucket host names), virtual or auto.
ENV_ADDRESSING_STYLE = "VIDEOGEN_S3_ADDRESSING_STYLE"
ENV_GRANT = "VIDEOGEN_GRANT"  # = videogen_api.v1alpha1.ENV_GRANT

T = TypeVar("T")

# HTTP statuses worth another try; 4xx other than these mean the request itself is wrong.
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_CODES = {
    "RequestTimeout",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ConditionalRequestConflict",
}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        return cls(
            attempts=max(1, int(env.get(ENV_TRANSFER_ATTEMPTS, "4"))),
            backoff_seconds=max(0.0, float(env.get(ENV_BACKOFF_SECONDS, "1.0"))),
        )

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before attempt number `attempt + 1`."""
        cap = min(self.max_backoff_seconds, self.backoff_seconds * (2 ** (attempt - 1)))
        return random.uniform(cap / 2, cap)


def make_client(env: Mapping[str, str] | None = None) -> S3Client:
    """The job's grant when it has one (presigned URLs, no keys); else a boto3 client for any
    S3-compatible endpoint: path-style, bounded retries and timeouts."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    if env.get(ENV_GRANT):
        from .grant import PresignedClient

        # Duck-typed: it answers the few S3 calls the runner makes, from the grant's URLs.
        return cast("S3Client", PresignedClient.from_json(env[ENV_GRANT]))
    endpoint = env.get(ENV_ENDPOINT_S3) or env.get(ENV_ENDPOINT) or None
    config = Config(
        region_name=env.get(ENV_REGION) or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        s3=cast(Any, {"addressing_style": env.get(ENV_ADDRESSING_STYLE) or "path"}),
        # SigV4 everywhere: presigned URLs of up to 7 days, and what S3-compatible servers check.
        signature_version="s3v4",
        retries={"max_attempts": max(1, int(env.get(ENV_MAX_ATTEMPTS, "5"))), "mode": "standard"},
        connect_timeout=float(env.get(ENV_CONNECT_TIMEOUT, "10")),
        read_timeout=60,
        # Checksums on every request break some S3-compatible servers; sha256 is
        # checked end to end through object metadata instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # Keys from the given environment (a Secret's env vars); without them boto3's own chain
    # (web identity, instance profile) applies. Never from the spec.
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
    )
    return session.client("s3", endpoint_url=endpoint, config=config)


def is_transient(exc: BaseException) -> bool:
    """Network trouble and server-side hiccups are worth retrying; refusals are not."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
    from botocore.exceptions import (
        ConnectTimeoutError as BotoConnectTimeout,
    )
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | BotoConnectTimeout):
        return True
    if isinstance(exc, Urllib3Error):
        return True  # a presigned transfer's connection trouble
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "")
        return status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
    if isinstance(exc, S3UploadFailedError):
        # boto3 wraps the real error in text only; refusals name themselves.
        text = str(exc)
        return not any(word in text for word in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "Forbidden"))
    return isinstance(exc, ConnectionError | TimeoutError)


def error_code(exc: BaseException) -> str | None:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def with_retries(
    what: str,
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation`, retrying transient failures with backoff; re-raise the last error."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except Exception as exc:
            if attempt >= policy.attempts or not is_transient(exc):
                raise
            pause = policy.delay(attempt)
            log.warning("%s failed (attempt %d/%d: %s); retrying in %.1fs", what, attempt, policy.attempts, exc, pause)
            sleep(pause)
    raise AssertionError("unreachable")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/or/prefix") of s3://bucket/key/or/prefix."""
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    return bucket, key
