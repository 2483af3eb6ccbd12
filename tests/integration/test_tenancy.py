"""Tenancy, tried as tenants would: users bound to the built-in `edit` role in their own
namespace (impersonated with `kubectl --as`), the real operator, real runner pods and real S3.

A namespace that may create VideoGenJobs gets its own videos and nothing else: no platform
credentials, no writes or reads outside its prefix, no other namespace's cached results, and a
forged status deletes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import BUCKET, TINY_I2V, tiny_job

from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.operator_process import OperatorProcess, create_peering, operator_env
from videogen_devcluster.testing import ConnectionRecorder, unique_name
from videogen_operator.manifests import RUNNER_RBAC_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"
OPERATOR_SA = "system:serviceaccount:videogen-system:videogen-operator"


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Tenant:
    """One team: a namespace and a user bound to `edit` there, acting through `kubectl --as`."""

    def __init__(self, dc: DevCluster, namespace: str, user: str) -> None:
        self.dc = dc
        self.namespace = namespace
        self.user = user

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.dc.kubectl("--as", self.user, "-n", self.namespace, *args, input=input)

    def apply(self, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def run(self, manifest: dict[str, Any]) -> None:
        result = self.apply(manifest)
        assert result.returncode == 0, result.stderr

    def get(self, name: str) -> dict[str, Any]:
        result = self.kubectl("get", "vgj", name, "-o", "json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def wait(self, name: str, *phases: str, timeout: float = 240) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = dict(self.get(name).get("status") or {})
            return status if status.get("phase") in phases else None

        try:
            result: dict[str, Any] = wait_until(done, timeout, f"{self.namespace}/{name} to reach {phases}")
        except AssertionError:
            raise AssertionError(json.dumps(self.get(name).get("status"), indent=1)) from None
        return result


def can_i(dc: DevCluster, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i`; `resource` may be `plural.group:subresource`."""
    resource, _, subresource = resource.partition(":")
    args = ["auth", "can-i", verb, resource, "--as", who]
    args += ["-n", namespace] if namespace else []
    args += ["--subresource", subresource] if subresource else []
    result = dc.kubectl(*args)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def can_i_on(dc: DevCluster, who: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    """A SubjectAccessReview for a resource the API server may not serve (Kueue's, where Kueue is not
    installed): `kubectl auth can-i` needs discovery to resolve the group, RBAC does not."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": who,
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace},
        },
    }
    result = dc.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
    assert result.returncode == 0, result.stderr
    return bool(json.loads(result.stdout)["status"].get("allowed"))


def apply_chart_rbac(dc: DevCluster, *sets: str) -> None:
    args = ["template", "videogen", str(CHART), "-n", "videogen-system", "--kube-version", "1.35.4"]
    args += ["-s", "templates/rbac.yaml"]
    for s in sets:
        args += ["--set", s]
    rendered = subprocess.run([str(dc.binaries.helm), *args], capture_output=True, text=True, env=dc.env(), check=False)
    assert rendered.returncode == 0, rendered.stderr
    applied = dc.kubectl("apply", "-f", "-", input=rendered.stdout)
    assert applied.returncode == 0, applied.stderr


@pytest.fixture
def tenants(operator_base: DevCluster, namespace: str) -> Iterator[tuple[Tenant, Tenant]]:
    dc = operator_base
    other = unique_name("team-b")
    assert dc.kubectl("create", "namespace", other).returncode == 0
    apply_chart_rbac(dc)
    a, b = Tenant(dc, namespace, unique_name("alice")), Tenant(dc, other, unique_name("bob"))
    for t in (a, b):
        bound = dc.kubectl("create", "rolebinding", "edit", "--clusterrole=edit", f"--user={t.user}", "-n", t.namespace)
        assert bound.returncode == 0, bound.stderr
        wait_until(
            lambda t=t: can_i(dc, t.user, "create", "videogenjobs.videogen.dev", t.namespace),
            what="the edit role to aggregate VideoGenJobs",
        )
        create_peering(dc, t.namespace)
    yield a, b
    dc.kubectl("delete", "namespace", other, "--wait=false")


@pytest.fixture
def operator(
    operator_base: DevCluster, model_cache: Path, tenants: tuple[Tenant, Tenant], tmp_path: Path
) -> Iterator[OperatorProcess]:
    env = operator_env(operator_base, model_cache, [t.namespace for t in tenants])
    op = OperatorProcess(env, tmp_path / "operator-tenancy.log").start()
    yield op
    op.stop()


def platform_keys(dc: DevCluster) -> tuple[str, str]:
    assert dc.s3 is not None
    env = dc.s3.env()
    return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]


def head(dc: DevCluster, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return dict(dc.s3_client().head_object(Bucket=bucket, Key=key))


def runner_sa(vgj: dict[str, Any]) -> str:
    # The operator makes one runner ServiceAccount per namespace.
    return f"system:serviceaccount:{vgj['metadata']['namespace']}:{RUNNER_RBAC_NAME}"


# --------------------------------------------------------------------------- apply-time checks


def test_confinement_rules_are_enforced_at_apply(tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = tenants
    refused = {
        "dotdot": ({"output": {"key": f"../{bob.namespace}/x.mp4"}}, "no empty, '.' or '..' segments"),
        "inner-dotdot": ({"output": {"key": "a/../../x.mp4"}}, "no empty, '.' or '..' segments"),
        "empty-segment": ({"output": {"key": "a//x.mp4"}}, "no empty, '.' or '..' segments"),
        "control": ({"output": {"key": "a\u0007.mp4"}}, "spec.output.key"),
        "blank-prompt": ({"prompt": " \t "}, "prompt must not be blank"),
        "image-dotdot": (
            {"model": TINY_I2V, "task": "image-to-video", "image": f"s3://{BUCKET}/videogen/x/../y.png"},
            "s3:// image key must not have empty",
        ),
    }
    for name, (spec, message) in refused.items():
        result = alice.apply(tiny_job(name, **spec))
        assert result.returncode != 0, name
        assert message in result.stderr, (name, result.stderr)


# --------------------------------------------------------------------------- one tenant end to end


def test_a_tenant_runs_a_job_and_holds_no_platform_credentials(
    operator_base: DevCluster, tenants: tuple[Tenant, Tenant], operator: OperatorProcess
) -> None:
    dc = operator_base
    alice, _ = tenants
    access_key, secret_key = platform_keys(dc)

    alice.run(tiny_job("mine", seed=21))
    status = alice.wait("mine", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    uri = status["output"]["uri"]
    assert uri.startswith(f"s3://{BUCKET}/videogen/{alice.namespace}/mine-")
    vgj = alice.get("mine")
    assert head(dc, uri)["Metadata"][api.S3_METADATA_JOB_UID] == vgj["metadata"]["uid"]

    # The grant went away with the job; nothing left holds a platform key.
    wait_until(
        lambda: (
            not [
                s
                for s in json.loads(dc.kubectl("get", "secrets", "-n", alice.namespace, "-o", "json").stdout)["items"]
                if s["metadata"].get("ownerReferences")
            ]
        ),
        what="the job's grant Secret to be deleted",
    )
    secrets = json.loads(dc.kubectl("get", "secrets", "-n", alice.namespace, "-o", "json").stdout)["items"]
    assert "videogen-s3" not in [s["metadata"]["name"] for s in secrets]
    for secret in secrets:
        for value in (secret.get("data") or {}).values():
            decoded = base64.b64decode(value).decode(errors="replace")
            # The key id may be a plain word (the dev store's is); the secret key is never a substring.
            assert secret_key not in decoded and decoded != access_key, secret["metadata"]["name"]

    pods = json.loads(
        dc.kubectl(
            "get", "pods", "-n", alice.namespace, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}", "-o", "json"
        ).stdout
    )["items"]
    assert pods, "the runner pod is kept with its Job"
    for pod in pods:
        for container in pod["spec"]["containers"]:
            env = container.get("env") or []
            names = {e["name"] for e in env}
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & names
            for e in env:
                assert secret_key not in str(e.get("value", "")) and e.get("value") != access_key
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"].endswith("-grant") and ref["key"] == api.GRANT_SECRET_KEY

    # The documented matrix (README, "Multi-tenant clusters").
    runner = runner_sa(vgj)
    ns = alice.namespace
    runner_matrix = {
        ("get", "videogenjobs.videogen.dev/mine", "status"): True,
        ("patch", "videogenjobs.videogen.dev/mine", "status"): True,
        ("patch", "videogenjobs.videogen.dev/mine", ""): False,
        ("get", "secrets", ""): False,
        ("list", "secrets", ""): False,
        ("create", "pods", ""): False,
        ("list", "pods", ""): False,
        ("get", "configmaps", ""): False,
    }
    for (verb, resource, sub), expected in runner_matrix.items():
        args = ["auth", "can-i", verb, resource, "--as", runner, "-n", ns]
        args += ["--subresource", sub] if sub else []
        answer = dc.kubectl(*args).stdout.strip() == "yes"
        assert answer is expected, (verb, resource, sub, answer)
    # One runner ServiceAccount per namespace: nothing of another namespace's jobs.
    for verb in ("get", "patch"):
        args = ["auth", "can-i", verb, "videogenjobs.videogen.dev", "--subresource", "status", "--as", runner]
        assert dc.kubectl(*args, "-n", "default").stdout.strip() == "no", verb

    operator_matrix = {
        ("create", "secrets", ns): True,
        ("delete", "secrets", ns): True,
        ("get", "secrets", ns): False,
        ("list", "secrets", ns): False,
        ("get", "secrets", "videogen-system"): False,
        ("update", "videogenjobs.videogen.dev:finalizers", ns): True,
        ("patch", "videogenjobs.videogen.dev:status", ns): True,
        ("create", "jobs.batch", ns): True,
        ("create", "roles.rbac.authorization.k8s.io", ns): True,
        ("bind", "clusterroles.rbac.authorization.k8s.io", None): False,
        ("delete", "pods", ns): False,
        ("create", "clusterroles.rbac.authorization.k8s.io", None): False,
    }
    for (verb, resource, where), expected in operator_matrix.items():
        assert can_i(dc, OPERATOR_SA, verb, resource, where) is expected, (verb, resource, where)
    # Kueue's Workloads: watched (their conditions reach the job's status), never written.
    for verb, expected in [("list", True), ("watch", True), ("patch", False), ("delete", False)]:
        assert can_i_on(dc, OPERATOR_SA, verb, "kueue.x-k8s.io", "workloads", ns) is expected, verb

    # Namespaced mode: Roles only in the watched namespaces.
    apply_chart_rbac(dc, f"watchNamespaces={{{ns}}}")
    try:
        wait_until(lambda: not can_i(dc, OPERATOR_SA, "create", "secrets", "default"), what="the ClusterRole to shrink")
        assert can_i(dc, OPERATOR_SA, "create", "secrets", ns)
        assert can_i(dc, OPERATOR_SA, "create", "jobs.batch", ns)
        assert can_i_on(dc, OPERATOR_SA, "watch", "kueue.x-k8s.io", "workloads", ns)
        assert not can_i_on(dc, OPERATOR_SA, "watch", "kueue.x-k8s.io", "workloads", "default")
        for verb, resource in [
            ("create", "secrets"),
            ("create", "jobs.batch"),
            ("create", "roles.rbac.authorization.k8s.io"),
        ]:
            assert not can_i(dc, OPERATOR_SA, verb, resource, "default"), (verb, resource)
    finally:
        apply_chart_rbac(dc)


# --------------------------------------------------------------------------- two tenants


def test_tenants_cannot_reach_each_others_objects(
    operator_base: DevCluster, tenants: tuple[Tenant, Tenant], operator: OperatorProcess
) -> None:
    dc = operator_base
    alice, bob = tenants
    s3 = dc.s3_client()

    bob.run(tiny_job("b-video", seed=7))
    theirs = bob.wait("b-video", "Succeeded", "Failed")
    assert theirs["phase"] == "Succeeded", theirs
    b_uri = theirs["output"]["uri"]
    b_bucket, _, b_key = b_uri.removeprefix("s3://").partition("/")
    b_before = head(dc, b_uri)
    assert b_key.startswith(f"videogen/{bob.namespace}/")

    # By bucket, image and model: refused by policy, naming the field, without a pod.
    probes = {
        "by-bucket": ({"output": {"bucket": "someone-elses"}}, "spec.output.bucket"),
        "by-image": ({"model": TINY_I2V, "task": "image-to-video", "image": f"{b_uri}.poster.jpg"}, "spec.image"),
        "by-model": ({"model": f"s3://{BUCKET}/videogen/{bob.namespace}"}, "spec.model"),
    }
    for name, (spec, _) in probes.items():
        alice.run(tiny_job(name, **spec))
    for name, (_, field) in probes.items():
        status = alice.wait(name, "Failed", "Succeeded", timeout=60)
        assert (status["phase"], status["reason"]) == ("Failed", "PolicyViolation"), (name, status)
        assert status["message"].startswith(field), (name, status["message"])

    # By key: B's full key is relative to A's prefix. The same spec as B's (seed included) is no
    # cache hit across namespaces. Delete policy with a forged status must not touch B's object.
    copy = tiny_job("copy", seed=7, output={"key": b_key, "deletePolicy": "Delete"})
    alice.run(copy)
    mine = alice.wait("copy", "Succeeded", "Failed")
    assert (mine["phase"], mine["reason"]) == ("Succeeded", "Succeeded"), mine
    assert mine["output"]["uri"] == f"s3://{BUCKET}/videogen/{alice.namespace}/{b_key}"
    after = head(dc, b_uri)
    assert (after["ETag"], after["Metadata"]) == (b_before["ETag"], b_before["Metadata"]), "B's video was not touched"

    # The tenant controls its runner's ServiceAccount, so it can write status: forge it.
    vgj = alice.get("copy")
    forged = {"status": {"output": {"uri": b_uri, "posterUri": f"{b_uri}.poster.jpg"}}}
    patched = dc.kubectl(
        "patch", "vgj", "copy", "-n", alice.namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(forged), "--as", runner_sa(vgj),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    assert alice.kubectl("delete", "vgj", "copy", "--timeout=60s").returncode == 0
    a_key = mine["output"]["uri"].removeprefix(f"s3://{BUCKET}/")
    wait_until(
        lambda: not s3.list_objects_v2(Bucket=BUCKET, Prefix=a_key).get("Contents"),
        what="A's own video to be deleted",
    )
    kept = head(dc, b_uri)
    assert kept["ETag"] == b_before["ETag"], "the forged status deleted nothing of B's"
    head(dc, f"{b_uri}.poster.jpg")
    body = s3.get_object(Bucket=b_bucket, Key=b_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == theirs["output"]["sha256"]


# --------------------------------------------------------------------------- safe fetching


def test_an_https_image_on_loopback_is_refused_without_a_request(
    tenants: tuple[Tenant, Tenant], operator: OperatorProcess
) -> None:
    alice, _ = tenants
    recorder = ConnectionRecorder()
    try:
        for name, host in [("loopback-ip", "127.0.0.1"), ("loopback-name", "localhost")]:
            alice.run(
                tiny_job(name, model=TINY_I2V, task="image-to-video", image=f"https://{host}:{recorder.port}/cat.png")
            )
        for name in ("loopback-ip", "loopback-name"):
            status = alice.wait(name, "Failed", "Succeeded")
            assert (status["phase"], status["reason"]) == ("Failed", "InputImageError"), status
            assert "loopback" in status["message"] and status["lastFailure"]["exitCode"] == 14
        assert recorder.connections == [], "the refused address saw a request"
    finally:
        recorder.close()


# --------------------------------------------------------------------------- the chart's NetworkPolicy


def test_runner_network_policy_renders_and_is_accepted(cluster: DevCluster, namespace: str) -> None:
    sets = [
        f"watchNamespaces={{{namespace}}}",
        "networkPolicy.enabled=true",
        "networkPolicy.s3.cidrs={10.20.0.15/32}",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "tenancy.blockedCidrs={10.96.0.0/12}",
    ]
    args = ["template", "videogen", str(CHART), "-n", "videogen-system", "--kube-version", "1.35.4"]
    for s in sets:
        args += ["--set", s]
    rendered = subprocess.run(
        [str(cluster.binaries.helm), *args], capture_output=True, text=True, env=cluster.env(), check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    # The runners' policy in each watched namespace, and the model loaders' in the operator's namespace.
    assert set(policies) == {"videogen-operator-runner", "videogen-operator-model-loader"}, sorted(policies)
    assert policies["videogen-operator-model-loader"]["metadata"]["namespace"] == "videogen-system"
    policy = policies["videogen-operator-runner"]
    assert policy["metadata"]["namespace"] == namespace
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_COMPONENT: "runner",
    }
    assert policy["spec"]["ingress"] == []
    blocks = [t["ipBlock"] for rule in policy["spec"]["egress"] for t in rule["to"] if "ipBlock" in t]
    public = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"169.254.0.0/16", "10.96.0.0/12"} <= set(public["except"])
    assert {"10.20.0.15/32", "10.0.0.1/32"} <= {b["cidr"] for b in blocks}
    accepted = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(policy))
    assert accepted.returncode == 0, accepted.stderr

    off = subprocess.run(
        [str(cluster.binaries.helm), "template", "videogen", str(CHART), "--kube-version", "1.35.4"],
        capture_output=True, text=True, env=cluster.env(), check=False,
    )  # fmt: skip
    assert "kind: NetworkPolicy" not in off.stdout, "off by default"
