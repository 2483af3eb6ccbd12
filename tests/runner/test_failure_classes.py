"""Each failure class, triggered for real through the CLI, gives its own exit code and a readable
one-line message, in the termination log and on stdout."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from runner_support import RunCli, RunOutcome, TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner.errors import (
    CudaOutOfMemoryError,
    InputImageError,
    ModelLoadError,
    UploadError,
    classify,
    failure_for,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def failed(outcome: RunOutcome, code: api.ExitCode) -> str:
    """Check the failure's shape; return its message."""
    assert outcome.returncode == code, (outcome.returncode, outcome.stderr[-3000:])
    failure = api.RunnerFailure.model_validate(outcome.termination)
    assert outcome.last_line == outcome.termination
    assert (failure.exit_code, failure.reason) == (code, api.EXIT_CODE_REASONS[code])
    assert "\n" not in failure.message and len(failure.message) < 1000
    assert "Traceback" not in outcome.stderr, "expected failures are explained, not dumped"
    return failure.message


class TestInvalidInput:
    def test_an_invalid_spec_fails_before_any_model_is_touched(
        self, run_cli: RunCli, runner_env: dict[str, str]
    ) -> None:
        spec = tiny_spec("/models/none", width=100)
        message = failed(run_cli(spec, runner_env), api.ExitCode.INVALID_INPUT)
        assert message == "spec.width: must be a multiple of 8"

    def test_no_spec(self, run_cli: RunCli, runner_env: dict[str, str]) -> None:
        message = failed(run_cli(None, runner_env), api.ExitCode.INVALID_INPUT)
        assert message.startswith("spec: none given")

    def test_an_unwritable_termination_log_still_reports_on_stdout(
        self, run_cli: RunCli, runner_env: dict[str, str]
    ) -> None:
        env = {**runner_env, api.ENV_TERMINATION_LOG: "/proc/no/such/termination-log"}
        outcome = run_cli(tiny_spec("/m", width=100), env)
        assert outcome.returncode == api.ExitCode.INVALID_INPUT
        assert outcome.last_line["reason"] == "InvalidInput"
        assert "cannot write termination message" in outcome.stderr


@pytest.mark.s3
class TestModelFailures:
    def test_a_missing_model_directory(self, run_cli: RunCli, s3_env: dict[str, str], bucket: str) -> None:
        spec = tiny_spec("/models/does-not-exist", output={"bucket": bucket})
        message = failed(run_cli(spec, s3_env), api.ExitCode.MODEL_NOT_FOUND)
        assert message == "model /models/does-not-exist: no such directory"

    def test_a_model_missing_from_the_hf_cache(
        self, run_cli: RunCli, s3_env: dict[str, str], bucket: str, tmp_path: Path
    ) -> None:
        env = {**s3_env, "HF_HOME": str(tmp_path / "empty-hf")}
        message = failed(
            run_cli(tiny_spec("hf://org/absent", output={"bucket": bucket}), env), api.ExitCode.MODEL_NOT_FOUND
        )
        assert message.startswith("model hf://org/absent is not in the model cache")

    def test_corrupt_weights(
        self, run_cli: RunCli, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str, tmp_path: Path
    ) -> None:
        model = tmp_path / "corrupt"
        shutil.copytree(tiny_models.wan_t2v, model)
        weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])

        message = failed(
            run_cli(tiny_spec(str(model), output={"bucket": bucket}), s3_env), api.ExitCode.MODEL_LOAD_ERROR
        )

        assert message.startswith(f"model {model}: loading failed:")


@pytest.mark.s3
class TestInputImageFailures:
    def test_a_text_file_as_the_input_image(
        self, run_cli: RunCli, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str, s3_client: S3Client
    ) -> None:
        s3_client.put_object(Bucket=bucket, Key="in/not-an-image.png", Body=b"this is not a picture")
        spec = tiny_spec(
            str(tiny_models.wan_i2v),
            task="image-to-video",
            image=f"s3://{bucket}/in/not-an-image.png",
            output={"bucket": bucket},
        )
        message = failed(run_cli(spec, s3_env), api.ExitCode.INPUT_IMAGE_ERROR)
        assert message.startswith(f"spec.image: s3://{bucket}/in/not-an-image.png is not a PNG, JPEG or WebP image")

    def test_a_tiny_input_image(
        self,
        run_cli: RunCli,
        s3_env: dict[str, str],
        tiny_models: TinyModels,
        bucket: str,
        s3_client: S3Client,
        png_bytes: Callable[..., bytes],
    ) -> None:
        s3_client.put_object(Bucket=bucket, Key="in/icon.png", Body=png_bytes(16, 16))
        spec = tiny_spec(
            str(tiny_models.wan_i2v),
            task="image-to-video",
            image=f"s3://{bucket}/in/icon.png",
            output={"bucket": bucket},
        )
        message = failed(run_cli(spec, s3_env), api.ExitCode.INPUT_IMAGE_ERROR)
        assert "is 16x16; each side must be at least 32px" in message


class TestUploadFailures:
    def test_s3_unreachable_after_the_retry_budget(
        self, run_cli: RunCli, runner_env: dict[str, str], tiny_models: TinyModels, closed_port: int
    ) -> None:
        env = {
            **runner_env,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}",
            "AWS_ACCESS_KEY_ID": "runner",
            "AWS_SECRET_ACCESS_KEY": "secret",
        }
        outcome = run_cli(tiny_spec(str(tiny_models.wan_t2v), output={"bucket": "videos"}), env)

        message = failed(outcome, api.ExitCode.UPLOAD_ERROR)
        assert message.startswith("S3 endpoint for s3://videos unreachable after retries")
        assert outcome.stderr.count("retrying in") == 1, "the test's budget: 2 rounds of 2 attempts"
        assert "loading" not in outcome.stderr, "found out before loading the model"


class TestClassification:
    """The one place exceptions become exit codes (errors.classify)."""

    @pytest.mark.parametrize(
        ("exc", "code"),
        [
            (ModelLoadError("m"), api.ExitCode.MODEL_LOAD_ERROR),
            (InputImageError("i"), api.ExitCode.INPUT_IMAGE_ERROR),
            (UploadError("u"), api.ExitCode.UPLOAD_ERROR),
            (CudaOutOfMemoryError("c"), api.ExitCode.CUDA_OUT_OF_MEMORY),
            (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), api.ExitCode.CUDA_OUT_OF_MEMORY),
            (ValueError("something else"), api.ExitCode.INTERNAL_ERROR),
            (KeyboardInterrupt(), api.ExitCode.INTERNAL_ERROR),
        ],
    )
    def test_exceptions_map_to_exit_codes(self, exc: BaseException, code: api.ExitCode) -> None:
        assert classify(exc)[0] is code

    def test_torch_oom_is_recognised_without_importing_torch(self) -> None:
        class OutOfMemoryError(RuntimeError):  # what torch.cuda.OutOfMemoryError is called
            pass

        code, message = classify(OutOfMemoryError("tried to allocate 20 GiB"))
        assert code is api.ExitCode.CUDA_OUT_OF_MEMORY
        assert "sequential-offload" in message, "the message says what to try"

    def test_messages_are_one_line(self) -> None:
        failure = failure_for(ValueError("first line\n  second line\n" + "x" * 5000))
        assert failure.message.startswith("ValueError: first line second line")
        assert len(failure.message) <= 1000
        assert failure.reason is api.Reason.INTERNAL_ERROR


@pytest.mark.s3
class TestTermination:
    def test_sigterm_mid_run_reports_a_retryable_failure(
        self, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str, tmp_path: Path
    ) -> None:
        spec = tiny_spec(str(tiny_models.wan_t2v), steps=4, output={"bucket": bucket})
        termination = tmp_path / "termination-log"
        env = {
            **s3_env,
            api.ENV_SPEC: json.dumps(spec),
            api.ENV_TERMINATION_LOG: str(termination),
            "VIDEOGEN_TEST_STEP_DELAY_SECONDS": "5",
        }
        exe = Path(sys.executable).with_name("videogen-runner")
        proc = subprocess.Popen([str(exe)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if "generating 1/4" in line:
                break
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)

        assert proc.returncode == api.ExitCode.INTERNAL_ERROR
        failure = api.RunnerFailure.model_validate_json(termination.read_text())
        assert failure.message.startswith("terminated by signal SIGTERM")
        assert json.loads(stdout.strip().splitlines()[-1]) == failure.to_wire()
        assert api.ExitCode.INTERNAL_ERROR not in api.NON_RETRYABLE_EXIT_CODES, "the operator may retry it"
