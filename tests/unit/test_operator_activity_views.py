"""Which replica acts (kopf's peering rule), the views' overlays, and per-key retry with backoff."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from videogen_operator import dispatch
from videogen_operator.activity import is_active, start_priority
from videogen_operator.dispatch import Coalescer
from videogen_operator.kube import ConflictError, describe_error, is_refusal, is_transient
from videogen_operator.views import Views, job_gpus

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def peer(priority: int, seconds_ago: int = 0, lifetime: int = 30) -> dict[str, Any]:
    seen = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority, "lastseen": seen, "lifetime": lifetime}


def test_the_oldest_live_replica_is_the_active_one() -> None:
    older, newer = start_priority(1000.0), start_priority(2000.0)
    assert older > newer
    body = {"status": {"a": peer(older), "b": peer(newer)}}
    assert is_active([body], "a", older, NOW)
    assert not is_active([body], "b", newer, NOW)


def test_a_dead_peer_does_not_hold_the_standby_back() -> None:
    body = {"status": {"a": peer(10, seconds_ago=60), "b": peer(5)}}
    assert is_active([body], "b", 5, NOW)


def test_same_priority_or_unlisted_or_missing_peering_means_not_active() -> None:
    assert not is_active([{"status": {"a": peer(5), "b": peer(5)}}], "a", 5, NOW), "kopf pauses both"
    assert not is_active([{"status": {"b": peer(5)}}], "a", 10, NOW), "kopf has not announced us yet"
    assert not is_active([None], "a", 10, NOW), "no peering object: kopf stays paused"
    assert not is_active([{"status": {"a": peer(10)}}, None], "a", 10, NOW), "every watched namespace counts"


def body(name: str, rv: str, uid: str = "u1", phase: str = "Queued") -> dict[str, Any]:
    meta = {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": rv}
    return {"metadata": meta, "spec": {}, "status": {"phase": phase}}


def test_our_own_write_wins_until_the_watch_catches_up() -> None:
    index: dict[Any, list[dict[str, Any]]] = {("ns", "a"): [body("a", "5")]}
    views = Views(index, {}, {})
    views.remember_vgj(body("a", "7", phase="Running"))
    assert views.vgj("ns", "a")["status"]["phase"] == "Running"  # type: ignore[index]
    index[("ns", "a")] = [body("a", "8", phase="Succeeded")]
    assert views.vgj("ns", "a")["status"]["phase"] == "Succeeded"  # type: ignore[index]
    index.pop(("ns", "a"))
    views.remember_vgj(body("a", "9"))
    assert views.vgj("ns", "a") is None, "deleted since: the write does not resurrect it"


def test_a_recreated_object_is_never_confused_with_our_write_to_its_predecessor() -> None:
    index: dict[Any, list[dict[str, Any]]] = {("ns", "a"): [body("a", "3", uid="new")]}
    views = Views(index, {}, {})
    views.remember_vgj(body("a", "9", uid="old", phase="Running"))
    assert views.vgj("ns", "a")["metadata"]["uid"] == "new"  # type: ignore[index]


def test_a_just_created_job_is_in_view_until_its_watch_event_arrives() -> None:
    jobs: dict[Any, list[dict[str, Any]]] = {}
    views = Views({}, jobs, {})
    job = {"metadata": {"name": "j", "namespace": "ns", "uid": "ju", "resourceVersion": "1"}, "spec": {}, "status": {}}
    views.remember_job("owner", job)
    assert views.job_of("ns", "owner", "j") is not None
    assert views.job_of("ns", "owner", "other-name") is None
    assert views.job_of("other-ns", "owner", "j") is None
    assert [uid for uid, _ in views.jobs()] == ["owner"]


def _runner_job(namespace: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"name": "vgj-a", "namespace": namespace, "uid": uid, "resourceVersion": "1"}, "spec": {}}


def _pod(namespace: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"name": f"p-{namespace}", "namespace": namespace}, "status": {"phase": phase}}


def test_a_job_or_pod_in_another_namespace_claiming_the_same_owner_is_never_taken_for_it() -> None:
    """Owner references are the dependent's claim: tenant B can create a Job or a pod in its own
    namespace naming tenant A's VideoGenJob (or A's runner Job) as controller. The indices are keyed
    by that uid, so the views check the namespace too."""
    real, forged = _runner_job("team-a", "job-a"), _runner_job("team-b", "forged")
    jobs: dict[Any, list[dict[str, Any]]] = {"vgj-uid-a": [forged, real]}
    pods: dict[Any, list[dict[str, Any]]] = {"job-a": [_pod("team-b", "Succeeded"), _pod("team-a", "Running")]}
    views = Views({}, jobs, pods)
    assert views.job_of("team-a", "vgj-uid-a", "vgj-a") is real
    assert [p["status"]["phase"] for p in views.pods_of(real)] == ["Running"]
    jobs["vgj-uid-a"] = [forged]
    assert views.job_of("team-a", "vgj-uid-a", "vgj-a") is None, "only the forgery: no Job"
    # The operator's own just-created Job counts only where it made it.
    jobs["vgj-uid-a"] = []
    views.remember_job("vgj-uid-a", real)
    assert views.job_of("team-a", "vgj-uid-a", "vgj-a") is not None
    assert views.job_of("team-b", "vgj-uid-a", "vgj-a") is None


def test_every_index_is_read_live_even_when_it_is_empty_at_start_up() -> None:
    """kopf hands over its indices empty at start-up and fills them later: the views keep reading
    the very mappings they were given (an empty one swapped for a private dict never sees an entry)."""
    failed: dict[Any, list[dict[str, Any]]] = {}
    models: dict[Any, list[dict[str, Any]]] = {}
    workloads: dict[Any, list[dict[str, Any]]] = {}
    views = Views({}, {}, {}, failed, models, workloads)
    failed[("ns", "j")] = [{"message": "exceeded quota: q"}]
    models["m"] = [{"metadata": {"name": "m"}}]
    workloads["ju"] = [{"metadata": {"name": "w", "namespace": "ns", "resourceVersion": "1"}}]
    assert views.failed_creates("ns", "j") == [{"message": "exceeded quota: q"}]
    assert views.model("m") == {"metadata": {"name": "m"}}
    assert views.workload_of({"metadata": {"uid": "ju", "namespace": "ns"}}) is not None


def test_gpus_are_read_from_the_job_itself() -> None:
    job = {
        "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}}]}}}
    }
    assert job_gpus(job) == 2


def test_error_classes() -> None:
    assert is_transient(ApiException(status=503)) and is_transient(ApiException(status=429))
    assert is_transient(TimeoutError())
    assert is_refusal(ApiException(status=422)) and is_refusal(ApiException(status=403))
    assert not is_refusal(ApiException(status=409)) and not is_refusal(ApiException(status=429))


def test_an_api_error_is_described_by_the_api_servers_words_not_the_http_headers() -> None:
    class Response:
        status, reason = 422, "Unprocessable Entity"
        data = json.dumps({"kind": "Status", "message": "denied request: jobs here may not start"}).encode()
        headers = {"Audit-Id": "x" * 36, "Content-Type": "application/json", "Date": "Tue, 01 Dec 2026 05:33:06 GMT"}

        def getheaders(self) -> dict[str, str]:
            return self.headers

    err = ApiException(http_resp=Response())
    assert describe_error(err) == "422 Unprocessable Entity: denied request: jobs here may not start"
    assert describe_error(ApiException(status=500, reason="Internal Server Error")) == "500 Internal Server Error"
    assert describe_error(ValueError("bad")) == "bad" and describe_error(TimeoutError()) == "TimeoutError"


def test_a_failing_key_is_retried_with_backoff_while_others_go_on() -> None:
    calls: list[Hashable] = []
    errors: list[Hashable] = []

    def work(key: Hashable) -> None:
        calls.append(key)
        if key == "bad" and calls.count("bad") < 3:
            raise ApiException(status=500)
        if key == "raced" and calls.count("raced") < 2:
            raise ConflictError("changed")

    async def scenario() -> None:
        c = Coalescer(work, lambda k, e: errors.append(k))
        import videogen_operator.dispatch as d

        d.BACKOFF_START = 0.05
        await asyncio.gather(c.kick("bad"), c.kick("good"), c.kick("raced"))
        await asyncio.sleep(1.0)

    asyncio.run(scenario())
    assert calls.count("good") == 1
    assert calls.count("bad") == 3, "retried until it succeeded"
    assert calls.count("raced") == 2, "a lost resourceVersion race is retried"
    assert errors == [], "transient errors reach the job's status only once they persist"


def test_routine_reconciles_wait_while_urgent_work_is_pending() -> None:
    """A new job's first reconcile and the admission pass go first: no routine reconcile starts while one
    is pending, and the routine work still runs (once) when it is done."""
    order: list[str] = []
    release = threading.Event()
    started = threading.Event()

    def work(key: Hashable) -> None:
        if key == "new-job":
            order.append("urgent started")
            started.set()
            assert release.wait(10)
            order.append("urgent done")
        else:
            order.append(str(key))

    async def scenario() -> None:
        c = Coalescer(work)
        urgent = asyncio.ensure_future(c.kick("new-job", urgent=True))
        assert await asyncio.to_thread(started.wait, 10)
        routine = asyncio.ensure_future(asyncio.gather(c.kick("running-job-a"), c.kick("running-job-b")))
        await asyncio.sleep(0.3)
        assert order == ["urgent started"], "routine work started while urgent work was pending"
        release.set()
        await asyncio.gather(urgent, routine)

    asyncio.run(scenario())
    assert order[:2] == ["urgent started", "urgent done"]
    assert sorted(order[2:]) == ["running-job-a", "running-job-b"]


def test_a_paced_key_rests_after_each_run_and_the_kicks_meanwhile_get_one_run() -> None:
    """The admission pass's pacing: after a run that took t, the next waits ratio * t (at most
    MAX_REST_SECONDS); every kick during the rest is served by that one next run; other keys never rest."""
    now = [0.0]
    runs: list[tuple[Hashable, float]] = []
    rests: list[float] = []
    resting = ["admission"]  # the key the test is resting
    took = {"admission": 0.1, "slow": 5.0, "job": 3.0}

    def work(key: Hashable) -> None:
        runs.append((key, now[0]))
        now[0] += took[str(key)]  # the run's duration, on the coalescer's clock

    async def scenario() -> None:
        c: Coalescer

        async def sleep(seconds: float) -> None:
            rests.append(round(seconds, 6))
            # Five more kicks arrive while it rests (the key is running: they only mark it dirty).
            await asyncio.gather(*(c.kick(resting[0], urgent=True) for _ in range(5)))
            now[0] += seconds

        c = Coalescer(work, paced={"admission": 2.0, "slow": 2.0}, clock=lambda: now[0], sleep=sleep)
        await c.kick("admission", urgent=True)  # the first run never waits
        await c.kick("admission", urgent=True)  # right after it: rests 2 * 0.1 first
        await c.kick("job")
        await c.kick("job")  # not paced: never rests
        now[0] += 10.0
        await c.kick("admission")  # its rest is long over
        resting[0] = "slow"
        await c.kick("slow")
        await c.kick("slow")  # 2 * 5 s, capped

    asyncio.run(scenario())
    assert [k for k, _ in runs] == ["admission", "admission", "job", "job", "admission", "slow", "slow"]
    assert rests == [0.2, dispatch.MAX_REST_SECONDS], "one rest per paced run that came too soon"
    assert round(runs[1][1], 6) == 0.3, (
        "the second pass started after its rest, and the five kicks in it cost no more runs"
    )


def test_only_unfinished_jobs_are_listed_for_admission_and_the_sweep() -> None:
    index: dict[Any, list[dict[str, Any]]] = {
        ("ns", "done"): [body("done", "2", uid="u-done", phase="Succeeded")],
        ("ns", "waiting"): [body("waiting", "3", uid="u-wait")],
    }
    views = Views(index, {}, {})
    for listed in index.values():
        views.observe_vgj(listed[0])
    assert [v["metadata"]["name"] for v in views.unfinished_vgjs()] == ["waiting"]
    # A tenant forges a terminal phase back to Queued: the job is unfinished again.
    index[("ns", "done")] = [body("done", "4", uid="u-done", phase="Queued")]
    views.observe_vgj(index[("ns", "done")][0])
    assert sorted(v["metadata"]["name"] for v in views.unfinished_vgjs()) == ["done", "waiting"]
    # Our own terminal write counts at once, before its watch event.
    views.remember_vgj(body("waiting", "5", uid="u-wait", phase="Failed"))
    assert [v["metadata"]["name"] for v in views.unfinished_vgjs()] == ["done"]
    views.observe_vgj(index.pop(("ns", "done"))[0], deleted=True)
    assert views.unfinished_vgjs() == []


def test_a_runner_jobs_owner_is_found_by_uid_and_only_while_that_object_lives() -> None:
    index: dict[Any, list[dict[str, Any]]] = {("ns", "a"): [body("a", "1", uid="old")]}
    views = Views(index, {}, {})
    views.observe_vgj(index[("ns", "a")][0])
    assert views.vgj_by_uid("old")["metadata"]["uid"] == "old"  # type: ignore[index]
    # Deleted and re-created under the same name: the old uid owns nothing any more.
    views.observe_vgj(index[("ns", "a")][0], deleted=True)
    index[("ns", "a")] = [body("a", "9", uid="new")]
    views.observe_vgj(index[("ns", "a")][0])
    assert views.vgj_by_uid("old") is None
    assert views.vgj_by_uid("new") is not None
    assert views.vgj_by_uid("never") is None


def test_the_watch_event_of_our_own_write_is_recognised_once_and_no_other() -> None:
    views = Views({("ns", "a"): [body("a", "5")]}, {}, {})
    views.remember_vgj(body("a", "7", phase="Running"))
    assert not views.is_own_write(body("a", "6")), "an older event still on its way is someone else's"
    assert views.is_own_write(body("a", "7", phase="Running"))
    assert not views.is_own_write(body("a", "7", phase="Running")), "recognised once"
    views.remember_vgj(body("a", "9", phase="Running"))
    assert not views.is_own_write(body("a", "10", phase="Queued")), "a newer write by someone else"
    assert not views.is_own_write(body("a", "9", phase="Running")), "passed: that event is not coming"


def test_the_views_keep_videogenjobs_from_the_listing_and_the_events() -> None:
    views = Views(None, {}, {})
    views.apply_vgj_event(body("early", "9", uid="u-early"))  # an event before the listing was loaded
    views.apply_vgj_event(body("gone", "8", uid="u-gone"), deleted=True)
    views.load_vgjs(
        [
            [
                body("early", "3", uid="u-early", phase="Queued"),  # older than the event: the event wins
                body("gone", "4", uid="u-gone"),  # deleted after it was listed: stays gone
            ],
            [body("done", "5", uid="u-done", phase="Succeeded"), body("waiting", "6", uid="u-wait")],
        ]
    )
    assert views.vgj("ns", "early")["metadata"]["resourceVersion"] == "9"  # type: ignore[index]
    assert views.vgj("ns", "gone") is None
    assert sorted(v["metadata"]["name"] for v in views.unfinished_vgjs()) == ["early", "waiting"]
    assert views.vgj_by_uid("u-done") is not None
    views.apply_vgj_event(body("waiting", "10", uid="u-wait", phase="Succeeded"))
    views.apply_vgj_event(body("waiting", "7", uid="u-wait"))  # a late, older copy changes nothing
    assert views.vgj("ns", "waiting")["status"]["phase"] == "Succeeded"  # type: ignore[index]
    assert [v["metadata"]["name"] for v in views.unfinished_vgjs()] == ["early"]


def test_a_deletion_of_an_old_incarnation_leaves_the_new_one() -> None:
    views = Views(None, {}, {})
    views.load_vgjs([])
    views.apply_vgj_event(body("a", "20", uid="new"))
    views.apply_vgj_event(body("a", "12", uid="old"), deleted=True)  # the old object's deletion, late
    assert views.vgj("ns", "a")["metadata"]["uid"] == "new"  # type: ignore[index]
    assert [v["metadata"]["uid"] for v in views.unfinished_vgjs()] == ["new"]
    views.apply_vgj_event(body("a", "21", uid="new"), deleted=True)
    assert views.vgj("ns", "a") is None and views.unfinished_vgjs() == []
