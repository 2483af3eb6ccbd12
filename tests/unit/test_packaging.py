"""The two halves stay apart: the operator never needs torch, the runner never
needs kopf, and nothing shadows the standard library's `operator`."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_operator_does_not_import_torch_or_diffusers() -> None:
    loaded = imported_after("import videogen_operator.__main__")
    assert "kopf" in loaded
    assert not {"torch", "diffusers", "transformers"} & loaded


def test_contract_imports_neither_kopf_nor_torch() -> None:
    assert not {"kopf", "torch", "kubernetes"} & imported_after("import videogen_api.v1alpha1, videogen_api.crd")


def test_runner_entry_point_does_not_import_kopf() -> None:
    assert "kopf" not in imported_after("import videogen_runner.cli")


def test_standard_library_operator_is_not_shadowed() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"], capture_output=True, text=True, check=True
    )
    path = Path(out.stdout.strip())
    assert path.name == "operator.py" and REPO not in path.parents and "site-packages" not in path.parts


# --------------------------------------------------------------------------- images

CHART = REPO / "charts" / "videogen-operator"


def dockerfile(kind: str) -> tuple[str, str]:
    """(build stage, final stage) of Dockerfile.<kind>, comments dropped, continuations joined."""
    lines = [ln for ln in (REPO / f"Dockerfile.{kind}").read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, f"Dockerfile.{kind}: expected a build stage and a final stage"
    return stages[0], stages[1]


def instructions(stage: str, name: str) -> list[str]:
    return [ln.split(None, 1)[1] for ln in stage.splitlines() if ln.startswith(f"{name} ")]


@pytest.mark.parametrize(("kind", "extra"), [("operator", "operator"), ("runner", "runner")])
def test_image_installs_exactly_the_lock(kind: str, extra: str) -> None:
    build, _ = dockerfile(kind)
    runs = " && ".join(instructions(build, "RUN"))
    # The lock's pins with hashes, without the dev group: pip refuses anything else and resolves nothing.
    assert f"uv export --frozen --no-dev --extra {extra} --no-emit-project" in runs
    assert re.search(r"/opt/venv/bin/pip install [^&]*--no-deps [^&]*--require-hashes -r /requirements.txt", runs)
    # Nothing else reaches the image's environment through a resolver.
    for cmd in re.split(r"&&|;", runs):
        if "/opt/venv/bin/pip install" in cmd:
            assert "--no-deps" in cmd, cmd
        assert "uv pip install" not in cmd and "uv sync" not in cmd.replace("--frozen", ""), cmd
    # The uv that exports is pinned, and bytecode is compiled at build time.
    assert re.search(r"uv==\d+\.\d+\.\d+", runs)
    assert "compileall" in runs
    # The wheel's source roots are all copied before the project is built.
    copied = " ".join(instructions(build, "COPY"))
    for root in ("api", "operator", "runner", "devcluster", "pyproject.toml", "uv.lock"):
        assert root in copied, root


def _lock_has_extra(extra: str) -> set[str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == "videogen-operator")
    return {d["name"] for d in project["optional-dependencies"][extra]}


@pytest.mark.parametrize(("kind", "script"), [("operator", "videogen-operator"), ("runner", "videogen-runner")])
def test_image_runs_as_the_non_root_user_the_pods_name_with_the_right_entry_point(kind: str, script: str) -> None:
    build, final = dockerfile(kind)
    assert build.split()[0] == final.split()[0], "the venv's interpreter comes from the same base image"
    assert instructions(final, "USER") == ["65532:65532"]
    assert instructions(final, "ENTRYPOINT") == [json.dumps([script])]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts
    module, _, func = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    env = " ".join(instructions(final, "ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_operator_image_matches_the_charts_deployment() -> None:
    _, final = dockerfile("operator")
    text = (CHART / "templates" / "deployment.yaml").read_text()
    assert "runAsUser: 65532" in text and "runAsNonRoot: true" in text
    assert "command: [videogen-operator]" in text
    assert "value: /etc/videogen/config.yaml" in text and "VIDEOGEN_CONFIG_FILE=/etc/videogen/config.yaml" in final
    # readOnlyRootFilesystem: the only writable place is the /tmp emptyDir, which is HOME.
    assert "readOnlyRootFilesystem: true" in text and "mountPath: /tmp" in text and "HOME=/tmp" in final
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    exposed = " ".join(instructions(final, "EXPOSE")).split()
    assert [str(values["operator"]["livenessPort"]), str(values["operator"]["metricsPort"])] == exposed
    assert values["operator"]["image"]["repository"].rsplit("/", 1)[-1] == "videogen-operator"
    assert "prometheus-client" in _lock_has_extra("operator")


def test_runner_image_matches_the_pods_the_operator_builds() -> None:
    from videogen_operator.manifests import RUNNER_CONTAINER
    from videogen_operator.settings import OperatorSettings

    _, final = dockerfile("runner")
    env = " ".join(instructions(final, "ENV"))
    settings = OperatorSettings()
    assert settings.runner_command == ["videogen-runner"]
    assert f"HF_HOME={settings.model_cache.mount_path}/hf" in env and "HF_HUB_OFFLINE=1" in env
    # The pod's root filesystem is read-only; caches go to its /tmp emptyDir.
    for var in ("HOME=/tmp", "XDG_CACHE_HOME=/tmp/"):
        assert var in env
    assert RUNNER_CONTAINER == "runner"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["runner"]["image"]["repository"].rsplit("/", 1)[-1] == "videogen-runner"
    assert {"torch", "diffusers", "imageio-ffmpeg"} <= _lock_has_extra("runner")


def test_test_modules_have_unique_basenames() -> None:
    # tests/ has no __init__.py files, so pytest imports each test file by its basename: two files with one name
    # stop the whole collection ("import file mismatch") before a single test runs.
    seen: dict[str, Path] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path.relative_to(REPO)} and {seen[path.name].relative_to(REPO)} share a name"
        seen[path.name] = path
