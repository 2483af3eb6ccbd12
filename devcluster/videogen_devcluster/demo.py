"""`make demo`: a real VideoGenJob, end to end, on this machine.

Brings up the local control plane, S3 and the local GPU node, builds a tiny
Wan pipeline and puts it in the bucket as a platform team's model store would,
starts the operator with the chart's catalog defaults (a model-cache claim,
catalog models only), registers the pipeline as the VideoGenModel
`tiny-wan-t2v` and waits for the operator to fetch it, applies
examples/text-to-video.yaml (which names that model), shows its progress the
way `kubectl get vgj -w` would, and copies the video and its poster to ./out/.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from .binaries import REPO_ROOT
from .devcluster import DevCluster
from .operator_process import (
    BUCKET,
    CATALOG_SETTINGS,
    OperatorProcess,
    build_tiny_models,
    create_cache_claim,
    create_peering,
    operator_env,
    prepare_cluster,
    upload_model_dir,
)
from .procs import pid_alive

EXAMPLE = REPO_ROOT / "examples" / "text-to-video.yaml"
OUT_DIR = REPO_ROOT / "out"
NAMESPACE = "default"
DEMO_MODEL = "tiny-wan-t2v"
DEMO_MODEL_FILE = REPO_ROOT / "examples" / "models" / "demo" / f"{DEMO_MODEL}.yaml"
# Where examples/models/demo/tiny-wan-t2v.yaml says the model is (the bucket is the operator's).
DEMO_MODEL_PREFIX = "model-store/tiny-wan-t2v"


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _status(dc: DevCluster, name: str) -> dict[str, Any]:
    out = dc.kubectl("get", "vgj", name, "-n", NAMESPACE, "-o", "json")
    return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def _watch(dc: DevCluster, name: str, timeout: float) -> dict[str, Any]:
    """Print a row whenever `kubectl get vgj` would show something new."""
    header = dc.kubectl("get", "vgj", name, "-n", NAMESPACE).stdout.splitlines()[:1]
    print("\n".join(header), flush=True)
    last = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = dc.kubectl("get", "vgj", name, "-n", NAMESPACE, "--no-headers").stdout.strip()
        # AGE changes every second; compare without it.
        key = " ".join(rows.split()[:-1])
        if rows and key != last:
            print(rows, flush=True)
            last = key
        status = _status(dc, name)
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not finish within {timeout:.0f}s")


def _explain_failure(dc: DevCluster, name: str, status: dict[str, Any]) -> None:
    print(f"\nThe job ended {status.get('phase')}: {status.get('reason')}: {status.get('message')}", file=sys.stderr)
    print(dc.kubectl("describe", "vgj", name, "-n", NAMESPACE).stdout, file=sys.stderr)
    if dc.gpu_node is not None:
        for log in sorted((dc.gpu_node.logs_dir / NAMESPACE).glob("*/*.log")):
            print(f"--- {log}\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)


def run_demo(state_dir: Path, gpus: int = 1, timeout: float = 600) -> int:
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    _say("bringing up the local control plane, S3 and GPU node (binaries built from Go modules)")
    with DevCluster(state_dir / "cluster", gpus=gpus, keep_state=True) as dc:
        print(dc.describe(), flush=True)
        model_cache = state_dir / "models"
        _say("building a tiny random-weight Wan text-to-video pipeline (the model a platform team would publish)")
        build_tiny_models(model_cache, ("wan-t2v",))
        _say("installing the CRDs, the operator's namespace, its S3 Secret and the bucket")
        prepare_cluster(dc)
        create_peering(dc, None)
        _say("starting the operator (python -m videogen_operator, kopf peering on)")
        create_cache_claim(dc)
        files = upload_model_dir(dc, model_cache / "build" / "wan-t2v", DEMO_MODEL_PREFIX)
        _say(f"uploaded the pipeline ({files} files) to s3://{BUCKET}/{DEMO_MODEL_PREFIX}/")
        env = operator_env(dc, model_cache, [], **CATALOG_SETTINGS)
        operator = OperatorProcess(env, state_dir / "operator.log")
        operator.start()
        metrics_url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
        _say(f"operator metrics (Prometheus): {metrics_url}   e.g. curl -s {metrics_url} | grep ^videogen_")
        try:
            _register_model(dc, timeout)
            name = _apply_example(dc)
            _say(f"watching vgj/{name} (kubectl get vgj -w)")
            status = _watch(dc, name, timeout)
            if status.get("phase") != "Succeeded":
                _explain_failure(dc, name, status)
                return 1
            _report(dc, status)
            _show_metrics(metrics_url)
        finally:
            operator.stop()
        pids = dc.pids()
    left = {n: p for n, p in pids.items() if pid_alive(p)}
    if left:
        print(f"==> stopped, but these are still running: {left}", file=sys.stderr)
        return 1
    _say(f"stopped the cluster; logs are in {state_dir}")
    return 0


def _show_metrics(url: str) -> None:
    """The operator's own account of the run, as Prometheus would scrape it."""
    try:
        with urllib.request.urlopen(url, timeout=5) as rsp:
            text = rsp.read().decode()
    except OSError as err:
        print(f"  metrics      {url} unreachable: {err}")
        return
    print(f"  metrics      {url}")
    for line in text.splitlines():
        if line.startswith(("videogen_jobs{", "videogen_jobs_finished_total", "videogen_gpu_seconds_total")):
            print(f"               {line}")


def _register_model(dc: DevCluster, timeout: float) -> None:
    """The platform team's part: declare the model once; the operator fetches and verifies it."""
    _say(f"kubectl apply -f {DEMO_MODEL_FILE.relative_to(REPO_ROOT)}")
    applied = dc.kubectl("apply", "-f", str(DEMO_MODEL_FILE))
    if applied.returncode != 0:
        raise RuntimeError(applied.stderr)
    print(applied.stdout.strip(), flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = dc.kubectl("get", "videogenmodel", DEMO_MODEL, "-o", "json")
        status = json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}
        if status.get("phase") in ("Ready", "Failed"):
            print(dc.kubectl("get", "videogenmodels", DEMO_MODEL).stdout.rstrip(), flush=True)
            if status["phase"] == "Failed":
                raise RuntimeError(f"VideoGenModel {DEMO_MODEL} failed: {status.get('message')}")
            return
        time.sleep(0.5)
    raise TimeoutError(f"VideoGenModel {DEMO_MODEL} was not Ready within {timeout:.0f}s")


def _apply_example(dc: DevCluster) -> str:
    _say(f"kubectl apply -f {EXAMPLE.relative_to(REPO_ROOT)}")
    applied = dc.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
    if applied.returncode != 0:
        raise RuntimeError(applied.stderr)
    print(applied.stdout.strip(), flush=True)
    return applied.stdout.split()[0].split("/")[-1]


def _report(dc: DevCluster, status: dict[str, Any]) -> None:
    output = status["output"]
    OUT_DIR.mkdir(exist_ok=True)
    s3 = dc.s3_client()
    copied = []
    for uri in (output["uri"], output.get("posterUri")):
        if not uri:
            continue
        bucket, _, key = str(uri).removeprefix("s3://").partition("/")
        target = OUT_DIR / Path(key).name
        s3.download_file(bucket, key, str(target))
        copied.append(target)
    print(flush=True)
    _say("Succeeded")
    print(f"  video        {output['uri']}")
    print(f"  size         {output.get('sizeBytes')} bytes, sha256 {output.get('sha256')}")
    print(
        f"  format       {output.get('width')}x{output.get('height')}, {output.get('frames')} frames at "
        f"{output.get('fps')} fps ({output.get('durationSeconds')} s)"
    )
    print(f"  presigned    {output.get('url')}")
    print(f"  seed         {status.get('seed')}; timings {json.dumps(status.get('timings'))}")
    print(f"  GPU time     {status.get('gpuSeconds')} GPU-seconds (status.gpuSeconds)")
    for path in copied:
        print(f"  copied to    {path}")
