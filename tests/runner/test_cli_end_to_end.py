"""The runner as the pod runs it: a spec in, a playable video and its poster in S3, a result out."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from runner_support import RunCli, RunInProcess, TinyModels, download, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner.probe import probe

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.s3


def assert_video_in_s3(
    client: S3Client,
    bucket: str,
    key: str,
    result: dict[str, object],
    tmp_path: Path,
    *,
    frames: int,
    fps: int,
    size: int,
) -> None:
    path, metadata = download(client, bucket, key, tmp_path / "downloaded.mp4")
    info = probe(path)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height) == (size, size)
    assert info.frames == frames
    assert info.fps == fps
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: the index comes before the media data"

    digest = hashlib.sha256(data).hexdigest()
    output = result["output"]
    assert isinstance(output, dict)
    assert output["sha256"] == digest == metadata[api.S3_METADATA_SHA256]
    assert metadata[api.S3_METADATA_SPEC_HASH] == result["specHash"]
    assert output["sizeBytes"] == len(data)
    assert (output["frames"], output["fps"], output["width"], output["height"]) == (frames, fps, size, size)

    poster = client.get_object(Bucket=bucket, Key=api.poster_key(key))
    assert poster["ContentType"] == "image/jpeg"
    with Image.open(io.BytesIO(poster["Body"].read())) as img:
        assert (img.format, img.size) == ("JPEG", (size, size))
    assert output["posterUri"] == f"s3://{bucket}/{api.poster_key(key)}"


class TestTextToVideo:
    def test_spec_and_tiny_wan_model_give_an_mp4_in_s3(
        self,
        run_cli: RunCli,
        s3_env: dict[str, str],
        tiny_models: TinyModels,
        bucket: str,
        s3_client: S3Client,
        tmp_path: Path,
    ) -> None:
        spec = tiny_spec(str(tiny_models.wan_t2v), numFrames=12, output={"bucket": bucket})
        env = {**s3_env, api.ENV_OUTPUT_KEY: "clips/fox.mp4"}

        outcome = run_cli(spec, env)

        assert outcome.returncode == 0, outcome.stderr[-4000:]
        result = api.RunnerResult.model_validate(outcome.last_line)
        assert outcome.termination == outcome.last_line, "the same JSON goes to the termination log and stdout"
        assert result.adjustments == ["numFrames 12 -> 13 (Wan needs 4k+1 frames)"]
        assert result.memory_mode == "none (cpu)"
        assert result.seed == 7
        assert result.spec_hash == api.spec_hash(api.VideoGenJobSpec.model_validate(spec))
        assert result.output.uri == f"s3://{bucket}/clips/fox.mp4"
        assert result.output.url and result.output.url.startswith(s3_env["AWS_ENDPOINT_URL"])
        assert result.timings.total and result.timings.generating and result.timings.uploading is not None
        assert_video_in_s3(s3_client, bucket, "clips/fox.mp4", outcome.last_line, tmp_path, frames=13, fps=8, size=64)
        assert "adjusted numFrames 12 -> 13" in outcome.stderr, "adjustments are logged, not only returned"
        assert "generating 2/2" in outcome.stderr, "the logs show a progress bar per step"


class TestImageToVideo:
    def test_input_image_from_s3_starts_the_video(
        self,
        run_cli: RunCli,
        s3_env: dict[str, str],
        tiny_models: TinyModels,
        bucket: str,
        s3_client: S3Client,
        png_bytes: Callable[..., bytes],
        tmp_path: Path,
    ) -> None:
        s3_client.put_object(Bucket=bucket, Key="inputs/first.png", Body=png_bytes(96, 64))
        spec = tiny_spec(
            str(tiny_models.wan_i2v),
            task="image-to-video",
            image=f"s3://{bucket}/inputs/first.png",
            output={"bucket": bucket, "key": "clips/i2v.mp4"},
        )

        outcome = run_cli(spec, s3_env)

        assert outcome.returncode == 0, outcome.stderr[-4000:]
        assert_video_in_s3(s3_client, bucket, "clips/i2v.mp4", outcome.last_line, tmp_path, frames=9, fps=8, size=64)
        assert "input image s3://" in outcome.stderr and "PNG 96x64" in outcome.stderr


class TestOtherFormats:
    @pytest.mark.parametrize(
        ("fmt", "codec", "content_type"), [("webm", "vp9", "video/webm"), ("gif", "gif", "image/gif")]
    )
    def test_webm_and_gif(
        self,
        run_inprocess: RunInProcess,
        s3_env: dict[str, str],
        tiny_models: TinyModels,
        bucket: str,
        s3_client: S3Client,
        tmp_path: Path,
        fmt: str,
        codec: str,
        content_type: str,
    ) -> None:
        spec = tiny_spec(str(tiny_models.wan_t2v), output={"bucket": bucket, "format": fmt, "presignSeconds": 0})

        code, message = run_inprocess(spec, s3_env)

        assert code == 0, message
        result = api.RunnerResult.model_validate(message)
        assert result.output.url is None, "presignSeconds: 0 disables the URL"
        assert result.output.uri and result.output.uri.endswith(f".{fmt}")
        key = result.output.uri.removeprefix(f"s3://{bucket}/")
        path, _ = download(s3_client, bucket, key, tmp_path / f"v.{fmt}")
        info = probe(path)
        assert (info.codec, info.frames) == (codec, 9)
        assert s3_client.head_object(Bucket=bucket, Key=key)["ContentType"] == content_type
