"""In-memory views of VideoGenJobs, runner Jobs and runner Pods (and Kueue's Workloads of those
Jobs), kept by kopf's watches.

VideoGenJobs are kept here, from kopf's events plus one paginated listing at start-up, not in a
kopf index: while its indices fill, kopf makes a readiness toggle per listed object and wakes every
waiting object's worker on each (quadratic in the objects listed). With 5,000 finished jobs in the
cluster that held every handler for minutes after each start; Jobs, Pods and Events of runners are
few, so their indices stay kopf's.

kopf indices are the informer: each watch does one paginated LIST at start-up
(`settings.watching.chunk_size`), then streams changes, and kopf does not run any
handler before every index is filled; the periodic sweep (started before kopf's
watches) waits for the first handler call (handlers.Runtime.indexed), so the first
admission pass already sees every running Job. Jobs and Pods are filtered by label on the server
(`settings.watching.label_selectors`), so the operator never streams the
cluster's other Pods and Jobs.

What the indices hold is slimmed (no managedFields, no pod spec: a runner pod's
env carries the whole spec) to keep 5,000 resident jobs small.

Two overlays cover the moment between our own write and its watch event: the
status we just wrote and the Job we just created. Whichever copy has the newer
resourceVersion wins, so a reconcile right after a write never acts on what it
has already replaced (and never mistakes a just-created Job for a lost one).

Two bookkeeping sets, fed by the VideoGenJob event handler, keep the hot paths away from
the thousands of finished jobs a cluster keeps: the keys of unfinished jobs (admission, the
sweep and model events look only at those) and uid → key (a runner Job finds its owner). And
the resourceVersion of each status write of ours: its watch event brings nothing the writing
reconcile did not already act on, so it starts no reconcile.

Reads happen on worker threads while kopf updates the indices on the event loop:
lookups are single dict operations and iteration copies under the GIL first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from videogen_api import v1alpha1 as api
from videogen_operator.catalog import job_model_from_body

VgjKey = tuple[str, str]
_TERMINAL = frozenset(p.value for p in api.TERMINAL_PHASES)

_META_KEYS = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "ownerReferences",
)


def _slim_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in _META_KEYS if meta.get(k) is not None}


def slim_vgj(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _slim_meta(body.get("metadata") or {}) | _finalizers(body),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def slim_model(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _slim_meta(body.get("metadata") or {}) | _finalizers(body),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def _finalizers(body: Mapping[str, Any]) -> dict[str, Any]:
    found = (body.get("metadata") or {}).get("finalizers")
    return {"finalizers": list(found)} if found else {}


def job_gpus(job: Mapping[str, Any]) -> int:
    """GPUs the Job's pod holds, from the Job itself (not from the VideoGenJob's editable spec)."""
    pod_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    total = 0
    for container in pod_spec.get("containers") or []:
        for resource, value in ((container.get("resources") or {}).get("limits") or {}).items():
            if resource.endswith("/gpu") or resource.endswith(".com/gpu"):
                try:
                    total += int(str(value))
                except ValueError:
                    total += 1
    return total


def slim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    spec = body.get("spec") or {}
    slim = {
        "metadata": _slim_meta(body.get("metadata") or {}),
        "spec": {"suspend": bool(spec.get("suspend"))},
        "status": dict(body.get("status") or {}),
        "gpus": job_gpus(body),
    }
    # The catalog model revision the Job runs (its pod template is immutable): the job's spec hash.
    model = job_model_from_body(dict(body))
    if model is not None:
        slim["model"] = model
    return slim


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": _slim_meta(body.get("metadata") or {}), "status": dict(body.get("status") or {})}


def controller_uid(meta: Mapping[str, Any], kind: str, api_version: str | None = None) -> str | None:
    """The uid of the object's controller owner when it is of `kind` (and `api_version`)."""
    for ref in meta.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == kind
            and (api_version is None or ref.get("apiVersion") == api_version)
        ):
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


def vgj_owner_uid(job: Mapping[str, Any]) -> str | None:
    return controller_uid(job.get("metadata") or {}, api.KIND, api.API_VERSION)


def _key(body: Mapping[str, Any]) -> VgjKey:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _rv(obj: Mapping[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _newer(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a if b is None else b
    return a if _rv(a) >= _rv(b) else b


def _in_namespace(objs: Iterable[dict[str, Any]] | None, namespace: str | None) -> list[dict[str, Any]]:
    """The objects of an index entry that live in `namespace`. The Job, Pod and Workload indices are
    keyed by the uid an owner reference names, which is only the dependent's claim: one in another
    tenant's namespace naming the same uid is not this job's."""
    return [o for o in list(objs or []) if o["metadata"].get("namespace") == namespace]


def _first(values: Iterable[dict[str, Any]] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    for value in list(values):
        return value
    return None


class Views:
    """Read-only access to the indices, plus our own just-written objects."""

    def __init__(
        self,
        vgjs: Mapping[Any, Iterable[dict[str, Any]]] | None,
        jobs: Mapping[Any, Iterable[dict[str, Any]]],
        pods: Mapping[Any, Iterable[dict[str, Any]]],
        failed_creates: Mapping[Any, Iterable[dict[str, Any]]] | None = None,
        models: Mapping[Any, Iterable[dict[str, Any]]] | None = None,
        workloads: Mapping[Any, Iterable[dict[str, Any]]] | None = None,
    ) -> None:
        self._models = models if models is not None else {}
        # Kueue's Workloads of our runner Jobs, by Job uid (empty where Kueue is not installed).
        self._workloads = workloads if workloads is not None else {}
        # None: the views keep VideoGenJobs themselves (apply_vgj_event, load_vgjs), see vgj_store().
        self._owns_vgjs = vgjs is None
        self._vgjs: Mapping[Any, Iterable[dict[str, Any]]] = {} if vgjs is None else vgjs
        # Deletions seen before the start-up listing was loaded (its copies of them are stale).
        self._tombstones: dict[VgjKey, int] | None = {}
        self._jobs = jobs
        self._pods = pods
        # `is not None`, never `or`: kopf's index is empty (falsy) at start-up and fills later; `or {}`
        # swapped it for a dict that never saw a FailedCreate, so PodCreateFailed never showed.
        self._failed_creates = failed_creates if failed_creates is not None else {}
        self._guard = threading.Lock()
        self._written: dict[VgjKey, dict[str, Any]] = {}
        self._created: dict[str, dict[str, Any]] = {}
        # Fed by observe_vgj (the event handler), see the module's docstring.
        self._unfinished: set[VgjKey] = set()
        self._uid_keys: dict[str, VgjKey] = {}
        self._own_writes: dict[VgjKey, int] = {}

    # ------------------------------------------------------------------ VideoGenModels

    def model(self, name: str) -> dict[str, Any] | None:
        """The catalog's VideoGenModel of this name (cluster-scoped: only admins and the operator write it)."""
        return _first(self._models.get(name))

    def models(self) -> list[dict[str, Any]]:
        found = [_first(v) for v in list(self._models.values())]
        return [m for m in found if m is not None]

    # ------------------------------------------------------------------ VideoGenJobs

    def vgj(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            return self._vgj((namespace, name))

    def _vgj(self, key: VgjKey) -> dict[str, Any] | None:  # under self._guard
        indexed = _first(self._vgjs.get(key))
        written = self._written.get(key)
        if written is None:
            return indexed
        if indexed is None:
            return None  # deleted since we wrote it
        same_object = written["metadata"].get("uid") == indexed["metadata"].get("uid")
        if not same_object or _rv(indexed) >= _rv(written):
            # The watch has caught up (or the name now belongs to a new object).
            self._written.pop(key, None)
            return indexed
        return _newer(indexed, written)

    def vgjs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in list(self._vgjs):
            body = self.vgj(*key)
            if body is not None:
                out.append(body)
        return out

    def remember_vgj(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta["namespace"], meta["name"])
        with self._guard:
            self._written[key] = slim_vgj(body)
            self._own_writes[key] = _rv(body)
            self._observe(body, deleted=False)

    def load_vgjs(self, pages: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        """The start-up listing of every VideoGenJob, page by page (before any handler acts): with it
        the first admission pass sees every job that holds a GPU. Events already applied win over
        it (newer resourceVersion, or a deletion the listing predates)."""
        for page in pages:
            with self._guard:
                for body in page:
                    self._store(body)
        with self._guard:
            self._tombstones = None

    def apply_vgj_event(self, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        """A watch event of a VideoGenJob: keep the store (when the views own it) and the bookkeeping."""
        with self._guard:
            if not self._owns_vgjs:
                self._observe(body, deleted=deleted)
            elif not deleted:
                self._store(body)  # observes what it stores
            elif self._drop(body):
                self._observe(body, deleted=True)

    def _store(self, body: Mapping[str, Any]) -> None:  # under self._guard
        meta = body.get("metadata") or {}
        key = _key(body)
        store: Any = self._vgjs
        held = _first(store.get(key))
        gone = (self._tombstones or {}).get(key)
        if gone is not None and _rv(body) <= gone:
            return  # deleted after this copy was listed
        same = held is not None and held["metadata"].get("uid") == meta.get("uid")
        if same and _rv(held) >= _rv(body):
            return  # the same or an older copy (kopf's own listing, or ours after a newer event)
        store[key] = [slim_vgj(body)]
        self._observe(body, deleted=False)

    def _drop(self, body: Mapping[str, Any]) -> bool:  # under self._guard
        """Forget a deleted job; False when the name already belongs to a newer object."""
        meta = body.get("metadata") or {}
        key = _key(body)
        store: Any = self._vgjs
        held = _first(store.get(key))
        if self._tombstones is not None:
            self._tombstones[key] = _rv(body)
        if held is not None and held["metadata"].get("uid") != meta.get("uid"):
            return False
        store.pop(key, None)
        return True

    def observe_vgj(self, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Every watch event of a VideoGenJob (and each of our writes): keep the unfinished keys
        and the uid → key map.

        What counts as finished is what the object says (status is the tenant's to write, so a
        job may come back from a forged terminal phase: it is then unfinished again)."""
        with self._guard:
            self._observe(body, deleted=deleted)

    def _observe(self, body: Mapping[str, Any], *, deleted: bool) -> None:  # under self._guard
        meta = body.get("metadata") or {}
        key = _key(body)
        uid = meta.get("uid")
        phase = (body.get("status") or {}).get("phase")
        if deleted:
            self._unfinished.discard(key)
            self._own_writes.pop(key, None)
            if uid and self._uid_keys.get(uid) == key:
                del self._uid_keys[uid]
            return
        if uid:
            self._uid_keys[str(uid)] = key
        if phase in _TERMINAL:
            self._unfinished.discard(key)
        else:
            self._unfinished.add(key)

    def is_own_write(self, body: Mapping[str, Any]) -> bool:
        """Whether this watch event shows exactly what one of our status writes left (same resourceVersion)."""
        key = _key(body)
        seen = _rv(body)
        with self._guard:
            mine = self._own_writes.get(key)
            if mine is None or seen < mine:
                return False  # not ours, or an older event still on its way
            del self._own_writes[key]
            return seen == mine

    def unfinished_vgjs(self) -> list[dict[str, Any]]:
        """The VideoGenJobs whose last event showed no terminal phase (the ones admission and the sweep need)."""
        out: list[dict[str, Any]] = []
        with self._guard:  # once for them all: the admission pass reads every one, often
            for key in self._unfinished:
                body = self._vgj(key)
                if body is not None:
                    out.append(body)
        return out

    def vgj_by_uid(self, uid: str) -> dict[str, Any] | None:
        """The live VideoGenJob with this uid (a runner Job's owner), or None."""
        with self._guard:
            key = self._uid_keys.get(uid)
        body = self.vgj(*key) if key is not None else None
        return body if body is not None and body["metadata"].get("uid") == uid else None

    def forget_vgj(self, namespace: str, name: str) -> None:
        with self._guard:
            self._written.pop((namespace, name), None)

    # ------------------------------------------------------------------ Jobs and pods

    def job_of(self, namespace: str, owner_uid: str, name: str) -> dict[str, Any] | None:
        """The runner Job a VideoGenJob controls: in its namespace, by the name the operator derives;
        nothing else counts. The index is keyed by the owner's uid alone, and an owner reference is
        only the dependent's claim: a Job in another tenant's namespace naming this job's uid as its
        controller (the garbage collector removes it, but not at once) must not stand in for it."""
        indexed = next(
            (j for j in _in_namespace(self._jobs.get(owner_uid), namespace) if j["metadata"].get("name") == name), None
        )
        with self._guard:
            created = self._created.get(owner_uid)
            if created is not None and (
                indexed is not None
                or created["metadata"].get("name") != name
                or created["metadata"].get("namespace") != namespace
            ):
                if indexed is not None:
                    self._created.pop(owner_uid, None)
                created = None
        return indexed or created

    def jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """(owner uid, Job) for every runner Job a VideoGenJob controls, and the ones just created."""
        out: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for uid in list(self._jobs):
            for job in list(self._jobs.get(uid) or []):
                out.append((str(uid), job))
                seen.add(str(uid))
        with self._guard:
            out.extend((uid, job) for uid, job in self._created.items() if uid not in seen)
        return out

    def remember_job(self, owner_uid: str, job: dict[str, Any]) -> None:
        with self._guard:
            self._created[owner_uid] = slim_job(job)

    def forget_job(self, owner_uid: str) -> None:
        with self._guard:
            self._created.pop(owner_uid, None)

    def pods_of(self, job: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The Job's pods: the ones whose controller is the Job's uid, in the Job's namespace. A pod
        elsewhere claiming that controller is another tenant's forgery (a Succeeded one would free
        this job's GPU slot early, a failed one would end the job): it is ignored."""
        if job is None:
            return []
        meta = job.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return []
        return _in_namespace(self._pods.get(uid), meta.get("namespace"))

    def workload_of(self, job: dict[str, Any] | None) -> dict[str, Any] | None:
        """Kueue's Workload for this runner Job (slimmed, see kueue.py): the one whose controller is the
        Job's uid, in the Job's namespace; the newest when Kueue briefly has two."""
        meta = (job or {}).get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return None
        found = _in_namespace(self._workloads.get(uid), meta.get("namespace"))
        return max(found, key=lambda w: (str(w["metadata"].get("creationTimestamp") or ""), _rv(w)), default=None)

    def failed_creates(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """FailedCreate Events the Job controller posted on this Job (e.g. a quota or webhook refusal)."""
        return list(self._failed_creates.get((namespace, job_name)) or [])
