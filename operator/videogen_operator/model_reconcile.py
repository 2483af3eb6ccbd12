"""Level-triggered reconciliation of one VideoGenModel: fetch, verify, serve, reclaim.

Per model, from its spec and the loader Job the operator made for it:

- No loader for the current revision request (source, revision, files, profile): create it in the
  operator's namespace (`catalog.build_loader_job`); the model shows Downloading (progress comes
  from the loader itself). Edits of other fields (namespaces, prewarm) fetch nothing.
- The loader finished: its termination message is the result (revision, manifest digest, size,
  files, directory); the model is Ready. It failed: Failed with the loader's reason and message,
  which names the file for a verification failure.
- Ready with `prewarm`: a DaemonSet reads the files on every GPU node.
- Deleted: the finalizer holds it while non-terminal VideoGenJobs name it (reason InUse, an Event);
  then a remover Job deletes its files from the cache, and the finalizer goes.

Runs only in the active replica (the sweep and the event dispatch both check kopf's peering).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator.catalog import (
    build_loader_job,
    build_prewarm_daemonset,
    build_remover_job,
    catalog_unavailable,
    loader_job_name,
    prewarm_name,
    refetch_of,
)
from videogen_operator.kube import ConflictError, Kube, describe_error
from videogen_operator.phases import iso, now_utc, set_condition
from videogen_operator.settings import OperatorSettings
from videogen_operator.views import Views

log = logging.getLogger(__name__)
Phase = cat.ModelPhase
Reason = cat.ModelReason
# At most this many users are named in a blocked deletion's message.
NAMED_USERS = 5
# What in a prewarm pod's container says which files it reads (the model's directory is in env).
_PREWARM_FIELDS = ("image", "command", "env")


def _condition(obj: dict[str, Any], ctype: str) -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def _termination_message(pods: list[dict[str, Any]], *, succeeded: bool) -> str | None:
    """The loader container's termination message of the newest pod that ended as asked."""
    wanted = "Succeeded" if succeeded else "Failed"
    ended = [p for p in pods if (p.get("status") or {}).get("phase") == wanted]
    ended.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    for pod in reversed(ended):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                return str(terminated["message"])
    return None


def _finished(job: dict[str, Any]) -> bool:
    return _condition(job, "Complete") or _condition(job, "Failed")


def _waiting_reason(pods: list[dict[str, Any]]) -> str | None:
    """Why the loader pod is not running yet (image pull, scheduling, an unbound claim)."""
    for pod in pods:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                return f"{waiting['reason']}: {waiting.get('message') or ''}".strip(": ")
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"{cond.get('reason')}: {cond.get('message') or ''}".strip(": ")
    return None


class ModelReconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, views: Views) -> None:
        self.kube = kube
        self.settings = settings
        self.views = views

    # ------------------------------------------------------------------ entry

    def reconcile(self, name: str) -> None:
        model = self.kube.get_model(name)  # models are few: read fresh, never act on a stale copy
        if model is None:
            return
        if (model.get("metadata") or {}).get("deletionTimestamp"):
            self._delete(model)
            return
        if cat.MODEL_FINALIZER not in (model["metadata"].get("finalizers") or []):
            model = self._set_finalizers(model, [*(model["metadata"].get("finalizers") or []), cat.MODEL_FINALIZER])
            if model is None:
                return
        self._serve(model)

    def needs_work(self, model: dict[str, Any]) -> bool:
        """Whether the sweep should look at this model (downloading, out of date, or being deleted)."""
        meta = model.get("metadata") or {}
        status = model.get("status") or {}
        if meta.get("deletionTimestamp"):
            return cat.MODEL_FINALIZER in (meta.get("finalizers") or [])
        if status.get("observedGeneration") != meta.get("generation"):
            return True
        return status.get("phase") not in (Phase.READY, Phase.FAILED)

    # ------------------------------------------------------------------ fetching

    def _serve(self, model: dict[str, Any]) -> None:
        meta = model["metadata"]
        generation = int(meta.get("generation") or 1)
        status = dict(model.get("status") or {})
        broken = catalog_unavailable(self.settings)
        if broken is not None:
            self._write(model, Phase.FAILED, Reason.CACHE_UNAVAILABLE, f"the operator's {broken}", generation)
            return
        try:
            spec = cat.VideoGenModelSpec.model_validate(model.get("spec") or {})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            self._write(model, Phase.FAILED, Reason.LOADER_FAILED, f"spec.{where}: {first['msg']}", generation)
            return
        job_name = loader_job_name(meta["name"], spec, refetch_of(model))
        settled = status.get("phase") in (Phase.READY, Phase.FAILED) and status.get("loaderJob") == job_name
        if settled:
            # This revision request was answered already; other edits (namespaces, prewarm) fetch nothing.
            if status.get("observedGeneration") != generation:
                self._write(
                    model, Phase(status["phase"]), str(status.get("reason")), str(status.get("message")), generation
                )
            self._prewarm(model, spec, ready=status.get("phase") == Phase.READY)
            return
        job = self.kube.get_job(self.settings.operator_namespace, job_name)
        if job is None:
            created = self.kube.create(build_loader_job(model, self.settings))
            if created is not None:
                self.kube.post_model_event(
                    model, "Normal", Reason.DOWNLOADING, f"fetching {spec.source} (Job {job_name})"
                )
            extra = {"loaderJob": job_name}
            self._write(
                model, Phase.DOWNLOADING, Reason.DOWNLOADING, f"loader Job {job_name} created", generation, extra
            )
            return
        pods = self.kube.list_pods(self.settings.operator_namespace, f"job-name={job_name}")
        if _condition(job, "Complete"):
            self._loaded(model, job_name, pods, generation)
        elif _condition(job, "Failed"):
            self._load_failed(model, job_name, pods, generation)
        else:
            waiting = _waiting_reason(pods)
            message = f"loader Job {job_name}: " + (waiting or "fetching and verifying")
            self._write(model, Phase.DOWNLOADING, Reason.DOWNLOADING, message, generation, {"loaderJob": job_name})

    def _loaded(self, model: dict[str, Any], job_name: str, pods: list[dict[str, Any]], generation: int) -> None:
        raw = _termination_message(pods, succeeded=True)
        try:
            result = cat.LoaderResult.model_validate(json.loads(raw or ""))
        except (ValueError, ValidationError) as err:
            message = f"loader Job {job_name} succeeded but left no readable result ({str(err)[:200]})"
            self._write(model, Phase.FAILED, Reason.LOADER_FAILED, message, generation, {"loaderJob": job_name})
            return
        expected = cat.model_dir(model["metadata"]["name"], result.digest)
        if result.path != expected and not (model.get("spec") or {}).get("source", "").startswith("/"):
            message = f"loader Job {job_name} reported directory {result.path}, expected {expected}"
            self._write(model, Phase.FAILED, Reason.LOADER_FAILED, message, generation, {"loaderJob": job_name})
            return
        size = cat.human_size(result.size_bytes)
        fields = {
            "loaderJob": job_name,
            "revision": result.revision,
            "digest": result.digest,
            "sizeBytes": result.size_bytes,
            "size": size,
            "fileCount": result.file_count,
            "path": result.path,
            "skippedFiles": result.skipped_files[:50] or None,
            # Replaced, never merged (nulls remove what this loader could not tell): a new revision must
            # not keep facts of the last one.
            "architecture": (
                result.architecture.model_dump(by_alias=True, mode="json") if result.architecture is not None else None
            ),
            "lastError": None,
            "progress": {
                "filesDone": result.file_count,
                "filesTotal": result.file_count,
                "bytesDone": result.size_bytes,
                "bytesTotal": result.size_bytes,
                "percent": 100,
                "summary": f"{result.file_count} files, {size}",
                "updatedAt": iso(now_utc()),
            },
        }
        fetched = (
            f"fetched {result.downloaded} of {result.file_count} files" if result.downloaded else "reused the cache"
        )
        message = f"verified {result.file_count} files ({size}), revision {result.revision[:40]}; {fetched}"
        written = self._write(model, Phase.READY, Reason.VERIFIED, message, generation, fields)
        if written is not None:
            self.kube.post_model_event(model, "Normal", Reason.VERIFIED, message)

    def _load_failed(self, model: dict[str, Any], job_name: str, pods: list[dict[str, Any]], generation: int) -> None:
        raw = _termination_message(pods, succeeded=False)
        reason: str = Reason.LOADER_FAILED
        try:
            failure = cat.LoaderFailure.model_validate(json.loads(raw or ""))
            reason, message = failure.reason, failure.message
        except (ValueError, ValidationError):
            message = (raw or f"loader Job {job_name} failed without a message").strip()[:1000]
        fields = {"loaderJob": job_name, "lastError": message}
        written = self._write(model, Phase.FAILED, reason, message, generation, fields)
        if written is not None:
            self.kube.post_model_event(model, "Warning", reason, message)

    def _prewarm(self, model: dict[str, Any], spec: cat.VideoGenModelSpec, *, ready: bool) -> None:
        """The model's prewarm DaemonSet: there while the model is Ready with prewarm on, reading the
        revision the model serves; gone otherwise (a Failed model has nothing to serve)."""
        ns = self.settings.operator_namespace
        name = prewarm_name(model["metadata"]["name"])
        existing = self.kube.get_daemonset(ns, name)
        if not (spec.prewarm and ready):
            if existing is not None:
                self.kube.delete_daemonset(ns, name)
            return
        wanted = build_prewarm_daemonset(model, self.settings)
        if existing is None:
            self.kube.create(wanted)
            return
        have = existing["spec"]["template"]["spec"]["containers"][0]
        want = wanted["spec"]["template"]["spec"]["containers"][0]
        if any(have.get(k) != want.get(k) for k in _PREWARM_FIELDS):
            # Another revision (or image): patched in place, the DaemonSet's rolling update reads the
            # new files on every node. Deleting and re-creating it would wait for a pass that no
            # event brings (a Ready model is not swept), so the model would stay unwarmed.
            self.kube.patch_daemonset(ns, name, {"spec": {"template": wanted["spec"]["template"]}})

    # ------------------------------------------------------------------ deletion

    def _users(self, name: str) -> list[str]:
        terminal = {p.value for p in api.TERMINAL_PHASES}
        users = []
        for vgj in self.views.unfinished_vgjs():
            meta = vgj.get("metadata") or {}
            if (vgj.get("spec") or {}).get("model") != name or meta.get("deletionTimestamp"):
                continue
            if (vgj.get("status") or {}).get("phase") in terminal:
                continue
            users.append(f"{meta.get('namespace')}/{meta.get('name')}")
        return sorted(users)

    def _delete(self, model: dict[str, Any]) -> None:
        meta = model["metadata"]
        if cat.MODEL_FINALIZER not in (meta.get("finalizers") or []):
            return
        generation = int(meta.get("generation") or 1)
        current = Phase((model.get("status") or {}).get("phase") or Phase.PENDING)
        users = self._users(meta["name"])
        if users:
            named = ", ".join(users[:NAMED_USERS]) + (
                f" and {len(users) - NAMED_USERS} more" if len(users) > NAMED_USERS else ""
            )
            message = f"deletion waits for {len(users)} job(s) that use this model: {named}"
            if (model.get("status") or {}).get("message") != message:
                self.kube.post_model_event(model, "Warning", Reason.IN_USE, message)
            self._write(model, current, Reason.IN_USE, message, generation)
            return
        ns = self.settings.operator_namespace
        # Nothing reads the files any more: its prewarm pods go before the files do.
        self.kube.delete_daemonset(ns, prewarm_name(meta["name"]))
        if catalog_unavailable(self.settings) is None:
            # No loader may write while the files are removed.
            selector = (
                f"{cat.LABEL_MODEL_NAME}={api.label_safe(meta['name'])},{api.LABEL_COMPONENT}={cat.COMPONENT_LOADER}"
            )
            busy = [j for j in self.kube.list_jobs(ns, selector) if not _finished(j)]
            for job in busy:
                self.kube.delete_job(ns, job["metadata"]["name"])
            alive = [
                p
                for p in self.kube.list_pods(ns, selector)
                if (p.get("status") or {}).get("phase") in ("Pending", "Running")
            ]
            if busy or alive:
                self._write(
                    model, current, Reason.RECLAIMING, "stopping the loader before removing the files", generation
                )
                return
            remover = build_remover_job(model, self.settings)
            found = self.kube.get_job(ns, remover["metadata"]["name"])
            if found is None:
                self.kube.create(remover)
                self._write(
                    model,
                    current,
                    Reason.RECLAIMING,
                    f"removing the model's files (Job {remover['metadata']['name']})",
                    generation,
                )
                return
            if _condition(found, "Failed"):
                message = f"could not remove the model's files (Job {remover['metadata']['name']} failed); retrying"
                self.kube.post_model_event(model, "Warning", Reason.RECLAIMING, message)
                self.kube.delete_job(ns, remover["metadata"]["name"])
                self._write(model, current, Reason.RECLAIMING, message, generation)
                return
            if not _condition(found, "Complete"):
                return
            self.kube.delete_job(ns, remover["metadata"]["name"])
        finalizers = [f for f in meta.get("finalizers") or [] if f != cat.MODEL_FINALIZER]
        self._set_finalizers(model, finalizers)
        log.info("VideoGenModel %s: files removed, finalizer released", meta["name"])

    def record_error(self, name: str, error: BaseException) -> None:
        """A reconcile of this model that keeps failing: on its status (lastError) and as an Event."""
        model = self.views.model(name)
        if model is None:
            return
        text = f"the operator could not reconcile this model and retries: {describe_error(error)[:500]}"
        if (model.get("status") or {}).get("lastError") == text:
            return
        self.kube.patch_model_status(name, {"lastError": text})
        self.kube.post_model_event(model, "Warning", "ReconcileError", text)

    # ------------------------------------------------------------------ writes

    def _set_finalizers(self, model: dict[str, Any], finalizers: list[str]) -> dict[str, Any] | None:
        try:
            return self.kube.set_model_finalizers(
                model["metadata"]["name"], finalizers, str(model["metadata"].get("resourceVersion") or "")
            )
        except ConflictError:
            return None  # changed meanwhile: the event of that change brings us back

    def _write(
        self,
        model: dict[str, Any],
        phase: cat.ModelPhase,
        reason: str,
        message: str,
        generation: int,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Write (phase, reason, message) and `extra` if anything changed; the model as written."""
        status = model.get("status") or {}
        wanted: dict[str, Any] = {
            "phase": phase.value,
            "reason": str(reason),
            "message": message[:2000],
            "observedGeneration": generation,
        }
        wanted.update(extra or {})
        if all(status.get(k) == v for k, v in wanted.items()):
            return None
        now: datetime = now_utc()
        ready = phase is Phase.READY
        conditions = set_condition(
            list(status.get("conditions") or []), "Ready", ready, str(reason), message[:2000], now, generation
        )
        wanted["conditions"] = conditions
        try:
            return self.kube.patch_model_status(
                model["metadata"]["name"], wanted, str(model["metadata"].get("resourceVersion") or "")
            )
        except ConflictError:
            return None  # someone (the loader's progress) wrote meanwhile: the next pass recomputes
