"""What the runner accepts as input, and how it says no: one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from videogen_api import v1alpha1 as api
from videogen_runner.errors import InvalidInputError
from videogen_runner.spec_input import load_run_input, read_spec_document

SPEC: dict[str, Any] = {
    "model": "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "task": "text-to-video",
    "prompt": "a cat",
    "output": {"bucket": "videos"},
}


def env_with(spec: dict[str, Any], **extra: str) -> dict[str, str]:
    return {api.ENV_SPEC: json.dumps(spec), **extra}


def rejection(spec: Any) -> str:
    env = {api.ENV_SPEC: spec if isinstance(spec, str) else json.dumps(spec)}
    with pytest.raises(InvalidInputError) as err:
        load_run_input(None, env)
    message = err.value.message
    assert "\n" not in message
    return message


class TestWhereTheSpecComesFrom:
    def test_json_in_the_environment(self) -> None:
        run = load_run_input(None, env_with(SPEC))
        assert run.spec.prompt == "a cat"

    def test_a_whole_manifest_in_a_yaml_file(self, tmp_path: Path) -> None:
        manifest = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "cat"}, "spec": SPEC}
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(manifest))

        run = load_run_input(None, {api.ENV_SPEC_FILE: str(path)})

        assert run.spec.model == SPEC["model"]
        assert run.output.key.startswith("videogen/default/cat-"), "the manifest's name names the default key"

    def test_the_command_line_file_wins_over_the_environment(self, tmp_path: Path) -> None:
        path = tmp_path / "spec.json"
        path.write_text(json.dumps({**SPEC, "prompt": "from the file"}))

        run = load_run_input(str(path), env_with(SPEC))

        assert run.spec.prompt == "from the file"

    def test_no_spec_at_all_says_how_to_give_one(self) -> None:
        with pytest.raises(InvalidInputError, match=api.ENV_SPEC):
            read_spec_document(None, {})

    def test_unreadable_file(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match="cannot read"):
            load_run_input(str(tmp_path / "missing.yaml"), {})


class TestInvalidSpecsNameTheField:
    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({"width": 65}, "spec.width: must be a multiple of 8"),
            ({"width": 32}, "spec.width: Input should be greater than or equal to 64"),
            ({"numFrames": 1000}, "spec.numFrames: Input should be less than or equal to 257"),
            ({"model": "ftp://x/y"}, "spec.model: String should match pattern"),
            ({"task": "image-to-video"}, "spec.image: required when task is image-to-video"),
            ({"image": "s3://videos/a.png"}, "spec.image: must not be set when task is text-to-video"),
            ({"colour": "red"}, "spec.colour: Extra inputs are not permitted"),
            ({"output": {"bucket": "Not_A_Bucket"}}, "spec.output.bucket: String should match pattern"),
        ],
    )
    def test_rejections(self, change: dict[str, Any], expected: str) -> None:
        assert rejection({**SPEC, **change}).startswith(expected)

    def test_a_missing_required_field(self) -> None:
        spec = {k: v for k, v in SPEC.items() if k != "prompt"}
        assert rejection(spec) == "spec.prompt: Field required"

    def test_not_json_nor_yaml(self) -> None:
        assert "neither valid JSON nor YAML" in rejection("{not json")

    def test_not_a_mapping(self) -> None:
        assert "must hold a mapping" in rejection("[1, 2]")

    def test_a_manifest_of_another_kind(self) -> None:
        assert rejection({"kind": "Pod", "spec": SPEC}) == "kind: expected VideoGenJob, got 'Pod'"


class TestOutputLocation:
    def test_the_operators_resolved_location_wins(self) -> None:
        env = env_with(SPEC, **{api.ENV_OUTPUT_BUCKET: "resolved", api.ENV_OUTPUT_KEY: "a/b.mp4"})
        run = load_run_input(None, env)
        assert (run.output.bucket, run.output.key) == ("resolved", "a/b.mp4")
        assert run.output.poster_key == "a/b.mp4.poster.jpg"

    def test_then_the_spec(self) -> None:
        run = load_run_input(None, env_with({**SPEC, "output": {"bucket": "videos", "key": "mine.mp4"}}))
        assert run.output.uri == "s3://videos/mine.mp4"

    def test_then_the_contracts_default_key_for_the_job(self) -> None:
        env = env_with(SPEC, **{api.ENV_JOB_NAMESPACE: "team-a", api.ENV_JOB_NAME: "cat"})
        run = load_run_input(None, env)
        digest = api.spec_hash(run.spec)
        assert run.output.key == api.default_output_key("team-a", "cat", digest, api.OutputFormat.MP4)
        assert run.spec_hash == digest
        assert run.identity.in_cluster

    def test_no_bucket_anywhere(self) -> None:
        spec = {k: v for k, v in SPEC.items() if k != "output"}
        assert rejection(spec).startswith("spec.output.bucket: not set")
