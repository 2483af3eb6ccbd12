"""Operator at scale: a burst of jobs on top of many resident ones, counted at the API server.

Real kube-apiserver, etcd, controller-manager and scheduler (the dev cluster's), a real S3
server, and the real operator process, cluster-wide. No GPU: runner pods land on a
"fast" GPU node (devcluster/videogen_devcluster/fastnode.py) that reports each pod
Running and then Succeeded with a runner result, as the runner would.

1. RESIDENT finished VideoGenJobs are created first (their status set to Succeeded), then
   the operator starts: its RSS with them in its views is recorded once it is idle.
2. BURST new VideoGenJobs are created at once (spread over a few namespaces; by default no
   cap, so every job is "under the cap"): create→Job latency, time until every one is Succeeded,
   and every request the operator made in between, all read from the API server's audit
   log (the operator and the submitter have audited users of their own). The latency runs
   from the API server's answer to the VideoGenJob's create to its answer to the operator's
   create of the Job, both on the API server's clock: a busy benchmark process (it also
   plays the GPU node) cannot skew it. The breakdown splits it: the API server's own watch
   delivery (a plain watcher in a process of its own, videogen_devcluster/watchtimer.py), the
   way to the operator's first request for the job, and the start's requests.

With VIDEOGEN_BENCH_CAP=N the operator holds at most N GPUs (maxRunning; one per job): the
latency is then that of the jobs under the cap (created while fewer than N jobs created before
them were unfinished: a GPU was free and none waited), the rest are reported apart, with how fast a freed GPU goes to the
next waiting job and how busy the cap's GPUs stayed while jobs waited.

Sizes: VIDEOGEN_BENCH_RESIDENT (default 5000) and VIDEOGEN_BENCH_BURST (default 1000);
VIDEOGEN_BENCH_RATE paces the submissions (jobs per second; default 0, all at once).
Results: bench/results/operator-scale.json, or VIDEOGEN_BENCH_RESULT (the sizes actually run are
recorded with them).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from videogen_api import v1alpha1 as api
from videogen_devcluster.audit import AUDITED_USER, SUBMITTER_USER, AuditedControlPlane
from videogen_devcluster.binaries import REPO_ROOT
from videogen_devcluster.fastnode import FAST_NODE_LABEL, FastGpuNode
from videogen_devcluster.kubeapi import new_client
from videogen_devcluster.operator_process import OperatorProcess, free_port
from videogen_devcluster.s3 import S3Server
from videogen_devcluster.watchtimer import read as read_watch_times

RESULTS = Path(__file__).parent / "results"
RESIDENT = int(os.environ.get("VIDEOGEN_BENCH_RESIDENT", "5000"))
BURST = int(os.environ.get("VIDEOGEN_BENCH_BURST", "1000"))
# 0: the burst is submitted as fast as 8 client threads can; N: paced at N jobs per second (the
# latency the operator adds when it is not behind, as opposed to the queue a burst builds up).
RATE = float(os.environ.get("VIDEOGEN_BENCH_RATE", "0"))
# The operator's cap on GPUs held at once (maxRunning; every bench job holds one); 0: no cap.
CAP = int(os.environ.get("VIDEOGEN_BENCH_CAP", "0"))
RESULT_FILE = os.environ.get("VIDEOGEN_BENCH_RESULT", "operator-scale.json")
NAMESPACES = 4
BUCKET = "videos"
DRAIN_TIMEOUT = float(os.environ.get("VIDEOGEN_BENCH_DRAIN_TIMEOUT", "1800"))
GOALS = {"p99_create_to_job_s": 1.0, "api_requests_per_job": 15, "status_writes_per_job": 8, "rss_mib_resident": 250}

# Creating the resident jobs and kopf's first listing of them take minutes at full size: past the suite's 900 s.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(int(DRAIN_TIMEOUT) + 3600)]


def manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": "hf://videogen-demo/tiny-wan-t2v",
            "task": "text-to-video",
            "prompt": f"bench job {name}",
            "preset": "fast",
            "cache": False,
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def test_operator_scale(tmp_path: Path) -> None:
    cp = AuditedControlPlane(tmp_path / "cp")
    cp.start()
    s3 = S3Server(tmp_path / "s3", binaries=cp.binaries)
    s3.start()
    node: FastGpuNode | None = None
    op: OperatorProcess | None = None
    watcher: subprocess.Popen[bytes] | None = None
    watch_times = tmp_path / "watch-times.txt"
    admin = new_client(cp.kubeconfig_path)
    submitter = new_client(cp.submitter_kubeconfig_path)
    try:
        s3c = s3.client()
        s3c.create_bucket(Bucket=BUCKET)
        for args in (
            ["apply", "--server-side", "-f", str(REPO_ROOT / "crds")],
            ["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
            ["create", "namespace", "videogen-system"],
        ):
            assert cp.kubectl(*args).returncode == 0
        peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "videogen-operator"}}
        assert cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering)).returncode == 0
        s3env = s3.env()
        assert (
            cp.kubectl(
                "create",
                "secret",
                "generic",
                "videogen-s3",
                "-n",
                "videogen-system",
                f"--from-literal=AWS_ACCESS_KEY_ID={s3env['AWS_ACCESS_KEY_ID']}",
                f"--from-literal=AWS_SECRET_ACCESS_KEY={s3env['AWS_SECRET_ACCESS_KEY']}",
            ).returncode
            == 0
        )
        namespaces = [f"bench-{i}" for i in range(NAMESPACES)]
        for ns in [*namespaces, "resident"]:
            assert cp.kubectl("create", "namespace", ns).returncode == 0
        node = FastGpuNode(cp.kubeconfig_path, state_dir=tmp_path / "node", s3_client=s3c)
        node.start()

        from kubernetes import client

        custom = client.CustomObjectsApi(admin)

        # ---- 1. resident, finished jobs
        started = time.monotonic()

        def resident(i: int) -> None:
            name = f"done-{i:05d}"
            custom.create_namespaced_custom_object(
                api.GROUP, api.VERSION, "resident", api.PLURAL, manifest(name, "resident")
            )
            custom.patch_namespaced_custom_object_status(
                api.GROUP,
                api.VERSION,
                "resident",
                api.PLURAL,
                name,
                {
                    "status": {
                        "phase": "Succeeded",
                        "reason": "Succeeded",
                        "message": "finished before the benchmark",
                        "output": {"uri": f"s3://{BUCKET}/videogen/resident/{name}.mp4", "sizeBytes": 1},
                    }
                },
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(resident, range(RESIDENT)))
        resident_seconds = time.monotonic() - started

        env = {
            **os.environ,
            "KUBECONFIG": str(cp.audited_kubeconfig_path),
            "PATH": cp.binaries.path_env(),
            "VIDEOGEN_NAMESPACES": "",
            "VIDEOGEN_OPERATOR_NAMESPACE": "videogen-system",
            "VIDEOGEN_S3_ENDPOINT": s3.endpoint_url,
            "VIDEOGEN_S3_BUCKET": BUCKET,
            "VIDEOGEN_MAX_RUNNING": str(CAP),
            # The jobs name their model by URI (no catalog: the fast node runs no loader).
            "VIDEOGEN_ALLOW_UNLISTED_MODELS": "true",
            "VIDEOGEN_DEFAULT_NODE_SELECTOR": json.dumps({FAST_NODE_LABEL: "true"}),
            "VIDEOGEN_RUNNER_CPU_REQUEST": "10m",
            "VIDEOGEN_RUNNER_MEMORY_REQUEST": "16Mi",
            "VIDEOGEN_LIVENESS_PORT": str(free_port()),
            "VIDEOGEN_PEERING_LIFETIME_SECONDS": "10",
            "VIDEOGEN_LOG_LEVEL": os.environ.get("VIDEOGEN_BENCH_OPERATOR_LOG_LEVEL", "WARNING"),
            **{k: v for k, v in s3env.items() if k.startswith("AWS_")},
        }
        op = OperatorProcess(env, tmp_path / "operator.log")
        op_started = time.monotonic()
        op.start(timeout=300)
        assert op.proc is not None
        proc = psutil.Process(op.proc.pid)
        time.sleep(15)  # initial lists done, first sweeps over: idle with everything in view
        rss_resident = proc.memory_info().rss
        startup_requests = cp.count_requests()
        cpu_before = sum(proc.cpu_times()[:2])

        # A plain watcher in a process of its own: when the API server delivers each new job's
        # event, apart from what the operator does with it (watchtimer.py).
        watcher = subprocess.Popen(
            [sys.executable, "-m", "videogen_devcluster.watchtimer", str(cp.kubeconfig_path), str(watch_times)]
        )
        listed = time.monotonic() + 120
        while (not watch_times.exists() or len(watch_times.read_text().splitlines()) < RESIDENT) and (
            time.monotonic() < listed
        ):
            time.sleep(0.5)

        # ---- 2. the burst
        offset = cp.audit_offset()
        submit_api = client.CustomObjectsApi(submitter)
        peak_rss = [proc.memory_info().rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak_rss.append(proc.memory_info().rss)
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        burst_start = time.monotonic()

        def submit(i: int) -> None:
            if RATE > 0:  # paced: job i is due i/RATE seconds after the start
                time.sleep(max(0.0, burst_start + i / RATE - time.monotonic()))
            ns = namespaces[i % NAMESPACES]
            name = f"burst-{i:05d}"
            submit_api.create_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL, manifest(name, ns))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, range(BURST)))
        submitted = time.monotonic() - burst_start

        def phases() -> Counter[str]:
            out: Counter[str] = Counter()
            for ns in namespaces:
                listed = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL)
                items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
                out.update((i.get("status") or {}).get("phase") or "None" for i in items)
            return out

        deadline = burst_start + DRAIN_TIMEOUT
        counts = phases()
        while counts["Succeeded"] + counts["Failed"] < BURST and time.monotonic() < deadline:
            time.sleep(2)
            counts = phases()
        drain_seconds = time.monotonic() - burst_start
        time.sleep(3)  # the last writes and events land in the audit log
        sampling.set()
        sampler.join()
        cpu_burst = sum(proc.cpu_times()[:2]) - cpu_before
        requests = cp.count_requests(since=offset)
        vgjs_created = cp.completed_at(SUBMITTER_USER, "create", api.PLURAL, since=offset)
        jobs_created = cp.completed_at(AUDITED_USER, "create", "jobs", since=offset)
        grants_asked = cp.completed_at(AUDITED_USER, "create", "secrets", since=offset, received=True)
        grants_made = cp.completed_at(AUDITED_USER, "create", "secrets", since=offset)
        jobs_asked = cp.completed_at(AUDITED_USER, "create", "jobs", since=offset, received=True)
        grants_dropped = cp.completed_at(AUDITED_USER, "delete", "secrets", since=offset)
        rss_after = proc.memory_info().rss
        logs_tail = op.logs()[-3000:]
    finally:
        if watcher is not None:
            watcher.terminate()
            watcher.wait(timeout=30)
        if op is not None:
            op.stop()
        if node is not None:
            node.stop()
        s3.stop()
        admin.close()  # type: ignore[no-untyped-call]
        submitter.close()  # type: ignore[no-untyped-call]
        cp.stop()

    assert len(vgjs_created) == BURST, f"the audit log names {len(vgjs_created)} of {BURST} creates"
    # A runner Job is named <VideoGenJob name>-<first 8 hex digits of its uid> (manifests.child_name).
    job_at = {(ns, job.rpartition("-")[0]): t for (ns, job), t in jobs_created.items()}
    # Under the cap: when it was created, fewer than CAP jobs created before it were unfinished, so
    # a GPU was free and no job waited (every bench job holds one GPU). Arrival order, not queue
    # order: creationTimestamp has whole seconds, and within one the queue's tiebreak (namespace,
    # name) may put a job ahead of others that arrived earlier and already hold every GPU; that job
    # waits for one to free, like any job over the cap (the operator preempts nothing). A job is
    # finished for this once the operator has dropped its grant Secret (on seeing it end: later than
    # the runner pod's success, which already frees its GPU for admission).
    dropped_at = {(ns, secret.rsplit("-", 2)[0]): t for (ns, secret), t in grants_dropped.items()}
    in_arrival_order = sorted(vgjs_created, key=lambda k: vgjs_created[k])
    under_cap = {
        k
        for i, k in enumerate(in_arrival_order)
        if CAP == 0 or sum(1 for j in in_arrival_order[:i] if dropped_at.get(j, float("inf")) > vgjs_created[k]) < CAP
    }
    latencies = [job_at[k] - t for k, t in vgjs_created.items() if k in job_at and k in under_cap]
    # Under a cap, how fast a freed GPU goes to the next waiting job: the i-th grant the operator
    # dropped (a job ended) against the i-th Job made for a job that had waited; and how busy the
    # cap's GPUs were (Jobs made minus jobs ended, a time-weighted mean) from the first job that had
    # to wait until the last one got its Job.
    waited_jobs = sorted(t for k, t in job_at.items() if k in vgjs_created and k not in under_cap)
    refills = [j - r for j, r in zip(waited_jobs, sorted(dropped_at.values()), strict=False)]
    slots_busy: float | None = None
    if CAP and waited_jobs:
        steps = sorted([(t, 1) for t in job_at.values()] + [(t, -1) for t in dropped_at.values()])
        first_wait = min(vgjs_created[k] for k in vgjs_created if k not in under_cap)
        busy = area = 0.0
        held, last = 0, steps[0][0]
        for t, change in steps:
            if t > first_wait and last < waited_jobs[-1]:
                span = min(t, waited_jobs[-1]) - max(last, first_wait)
                if span > 0:
                    busy += min(held, CAP) * span
                    area += CAP * span
            held, last = held + change, t
        slots_busy = round(busy / area, 3) if area else None
    queued_latencies = [job_at[k] - t for k, t in vgjs_created.items() if k in job_at and k not in under_cap]
    # Where create -> Job goes: the API server's watch delivery (a watcher of our own), the rest of
    # the way to the operator's first request for the job (its grant Secret, `<job>-<uid8>-grant`),
    # and that start's requests up to the Job.
    seen = read_watch_times(watch_times)
    grant_at = {(ns, secret.rsplit("-", 2)[0]): t for (ns, secret), t in grants_asked.items()}
    delivery = [seen[k] - t for k, t in vgjs_created.items() if k in seen and k in under_cap]
    to_request = [grant_at[k] - t for k, t in vgjs_created.items() if k in grant_at and k in under_cap]
    start_requests = [job_at[k] - grant_at[k] for k in under_cap if k in grant_at and k in job_at]
    # Of those, the API server's own time: each of the two creates from its receipt to its answer.
    made_at = {(ns, secret.rsplit("-", 2)[0]): t for (ns, secret), t in grants_made.items()}
    job_asked_at = {(ns, job.rpartition("-")[0]): t for (ns, job), t in jobs_asked.items()}
    in_api_server = [
        (made_at[k] - grant_at[k]) + (job_at[k] - job_asked_at[k])
        for k in under_cap
        if k in grant_at and k in made_at and k in job_at and k in job_asked_at
    ]

    def spread(values: list[float]) -> dict[str, float | int | None]:
        if not values:
            return {"p50": None, "p99": None, "jobs_measured": 0}
        return {
            "p50": round(statistics.median(values), 3),
            "p99": round(percentile(values, 99), 3),
            "jobs_measured": len(values),
        }

    by_verb: Counter[str] = Counter()
    for (verb, _resource), n in requests.items():
        by_verb[verb] += n
    total_requests = sum(requests.values())
    status_writes = requests.get(("patch", "videogenjobs/status"), 0)
    succeeded = counts["Succeeded"]
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "note": "shared with other processes during the run; API server, etcd, controllers and operator on one host",
        },
        "sizes": {
            "resident_jobs": RESIDENT,
            "burst_jobs": BURST,
            "namespaces": NAMESPACES,
            "cap": CAP or "none",
            "submitted_per_second": RATE or "as fast as 8 client threads can",
        },
        "create_to_job_seconds": {
            "p50": round(statistics.median(latencies), 3) if latencies else None,
            "p99": round(percentile(latencies, 99), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
            "jobs_measured": len(latencies),
            "measured": "API server audit log: its answer to each VideoGenJob's create → its answer to the Job's create",
            "which_jobs": "every job"
            if CAP == 0
            else f"jobs created while fewer than {CAP} jobs created before them were unfinished",
            "breakdown": {
                "watch_delivery": {
                    **spread(delivery),
                    "measured": "its answer to the create → a plain watcher process reads the ADDED event",
                },
                "to_the_operators_first_request": {
                    **spread(to_request),
                    "measured": "its answer to the create → it receives the operator's create of the grant Secret",
                },
                "grant_secret_and_job_requests": {
                    **spread(start_requests),
                    "measured": "it receives the grant Secret's create → its answer to the Job's create",
                },
                "of_which_in_the_api_server": {
                    **spread(in_api_server),
                    "measured": "the grant Secret's and the Job's creates, each from its receipt to its answer, summed",
                },
            },
        },
        "queued_create_to_job_seconds": {
            **spread(queued_latencies),
            "measured": "the same, for the jobs that had to wait for a GPU under the cap",
        },
        "freed_gpu_to_next_job_seconds": {
            **spread(refills),
            "measured": "the i-th grant dropped (a job ended) → the i-th Job made for a job that had waited",
        },
        "cap_gpus_busy_while_jobs_waited": slots_busy,
        "api_requests_per_job": round(total_requests / BURST, 2),
        "api_requests_per_job_by_verb": {v: round(n / BURST, 2) for v, n in sorted(by_verb.items())},
        "api_requests_by_verb_and_resource": {f"{v} {r}": n for (v, r), n in sorted(requests.items())},
        "status_writes_per_job": round(status_writes / BURST, 2),
        "startup_requests": {f"{v} {r}": n for (v, r), n in sorted(startup_requests.items())},
        "operator_rss_mib": {
            "idle_with_resident_jobs": round(rss_resident / 2**20, 1),
            "peak_during_burst": round(max(peak_rss) / 2**20, 1),
            "after_burst": round(rss_after / 2**20, 1),
        },
        "operator_cpu_seconds_burst": round(cpu_burst, 1),
        "jobs_lost": BURST - succeeded,
        "phases_at_end": dict(counts),
        "seconds": {
            "create_resident": round(resident_seconds, 1),
            "operator_start": round(op_started and (burst_start - op_started), 1),
            "submit_burst": round(submitted, 1),
            "drain": round(drain_seconds, 1),
        },
        "goals": GOALS,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    assert result["jobs_lost"] == 0, f"{counts}\n{logs_tail}"
