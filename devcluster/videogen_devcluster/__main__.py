"""``python -m videogen_devcluster up|down|env|status|demo``: the dev cluster from a shell.

``up`` starts a background process that owns every component (so one ``down`` stops them all) and
returns once the cluster is usable; ``up --foreground`` runs it in the terminal until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .binaries import REPO_ROOT, find_binaries
from .devcluster import DevCluster
from .kubeconfig import http_get
from .procs import pid_alive, tail_file

log = logging.getLogger("videogen_devcluster")

DEFAULT_STATE_DIR = REPO_ROOT / ".devcluster"


@dataclass(frozen=True)
class StateFiles:
    root: Path

    @property
    def ready(self) -> Path:
        """Written by the owning process once everything is up: its pid, endpoints, component pids."""
        return self.root / "ready.json"

    @property
    def log(self) -> Path:
        return self.root / "devcluster.log"

    @property
    def env(self) -> Path:
        return self.root / "env"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def read_ready(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.ready.read_text())
        except (OSError, ValueError):
            return None
        return data if pid_alive(int(data.get("pid", 0))) else None


def _usage(files: StateFiles, summary: str) -> str:
    rel = os.path.relpath(files.root)
    return (
        f"devcluster is up (state in {rel}/, log {os.path.relpath(files.log)})\n{summary}\n\n"
        "Use it from a shell:\n"
        '  eval "$(python -m videogen_devcluster env)"     # or: source ' + f"{rel}/env\n"
        "  kubectl get nodes                               # the project's kubectl comes first on PATH\n"
        "Stop it with:\n"
        "  python -m videogen_devcluster down"
    )


def _start_cluster(files: StateFiles, args: argparse.Namespace) -> DevCluster:
    dc = DevCluster(files.root, with_s3=not args.no_s3, gpus=args.gpus, keep_state=True)
    dc.start()
    # Stable paths for users and scripts, whatever the component layout inside the state dir.
    files.kubeconfig.write_bytes(dc.kubeconfig_path.read_bytes())
    files.kubeconfig.chmod(0o600)
    env = dc.env()
    env["KUBECONFIG"] = str(files.kubeconfig)
    files.env.write_text("".join(f"export {k}={_quote(v)}\n" for k, v in sorted(env.items())))
    return dc


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def cmd_up_foreground(files: StateFiles, args: argparse.Namespace) -> int:
    files.root.mkdir(parents=True, exist_ok=True)
    if files.read_ready() is not None:
        print(f"devcluster already running from {files.root}; `down` first", file=sys.stderr)
        return 1
    files.ready.unlink(missing_ok=True)
    dc = _start_cluster(files, args)
    try:
        ready = {
            "pid": os.getpid(),
            "api_url": dc.control_plane.api_url,
            "ca_cert": str(dc.control_plane.ca_cert_path),
            "bin_dir": str(dc.binaries.bin_dir),
            "s3_endpoint": dc.s3.endpoint_url if dc.s3 else None,
            "node": dc.gpu_node.name if dc.gpu_node else None,
            "component_pids": dc.pids(),
            "summary": dc.describe(),
            "timings": dc.timings,
        }
        files.ready.write_text(json.dumps(ready, indent=2))
        print(_usage(files, dc.describe()), flush=True)
        log.info("up in %.1fs: %s", sum(dc.timings.values()), dc.timings)
        while True:
            time.sleep(2)
            dead = [name for name, proc in dc.control_plane.processes.items() if not proc.running()]
            if dc.s3 is not None and dc.s3.process is not None and not dc.s3.process.running():
                dead.append("versitygw")
            if dead:
                log.error("components exited: %s; stopping everything", ", ".join(dead))
                return 1
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    finally:
        files.ready.unlink(missing_ok=True)
        dc.stop()
        log.info("stopped")


def cmd_up(files: StateFiles, args: argparse.Namespace) -> int:
    if args.foreground:
        return cmd_up_foreground(files, args)
    running = files.read_ready()
    if running is not None:
        print(_usage(files, running["summary"]))
        return 0
    # Built (or found) here, so a first build's progress shows in this terminal, not in a log file.
    binaries = find_binaries()
    print(f"binaries: {binaries.bin_dir} (kubectl {binaries.kubectl})", flush=True)
    files.root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "videogen_devcluster", "--state-dir", str(files.root), "up", "--foreground"]
    argv += ["--gpus", str(args.gpus)] + (["--no-s3"] if args.no_s3 else [])
    with open(files.log, "wb") as log_file:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command and the terminal
            env={**os.environ, "VIDEOGEN_BIN_DIR": str(binaries.bin_dir)},
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        ready = files.read_ready()
        if ready is not None and ready["pid"] == daemon.pid:
            print(_usage(files, ready["summary"]))
            return 0
        if daemon.poll() is not None:
            print(
                f"devcluster failed to start; last lines of {files.log}:\n{tail_file(files.log, 6000)}", file=sys.stderr
            )
            return 1
        time.sleep(0.2)
    os.killpg(daemon.pid, signal.SIGTERM)
    print(f"devcluster did not come up within {args.timeout}s; see {files.log}", file=sys.stderr)
    return 1


def cmd_down(files: StateFiles, args: argparse.Namespace) -> int:
    ready = files.read_ready()
    if ready is None:
        print("devcluster is not running")
        return 0
    pid = int(ready["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        print(f"owner process {pid} did not stop in {args.timeout}s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # Components die with their owner (parent-death signal); make sure, by the pids it recorded.
    bin_dir = str(ready.get("bin_dir", ""))
    leftovers = [int(p) for p in ready.get("component_pids", {}).values() if _runs_from(int(p), bin_dir)]
    for p in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p, signal.SIGKILL)
    files.ready.unlink(missing_ok=True)
    print("devcluster stopped" + (f" (killed leftovers {leftovers})" if leftovers else ""))
    return 0


def _runs_from(pid: int, bin_dir: str) -> bool:
    """Alive and running one of our binaries (not a recycled pid that now belongs to someone else)."""
    try:
        return bool(bin_dir) and pid_alive(pid) and os.readlink(f"/proc/{pid}/exe").startswith(bin_dir)
    except OSError:
        return False


def cmd_env(files: StateFiles, args: argparse.Namespace) -> int:
    if files.read_ready() is None or not files.env.exists():
        print("devcluster is not running; start it with `python -m videogen_devcluster up`", file=sys.stderr)
        return 1
    sys.stdout.write(files.env.read_text())
    return 0


def cmd_status(files: StateFiles, args: argparse.Namespace) -> int:
    ready = files.read_ready()
    if ready is None:
        print("devcluster: down")
        return 3
    token = ""
    import yaml

    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        token = yaml.safe_load(files.kubeconfig.read_text())["users"][0]["user"]["token"]
    api, _ = http_get(f"{ready['api_url']}/readyz", ca_cert=Path(ready["ca_cert"]), token=token)
    s3 = http_get(ready["s3_endpoint"] + "/")[0] if ready.get("s3_endpoint") else None
    print(f"devcluster: up (owner pid {ready['pid']})")
    print(ready["summary"])
    print(f"  API /readyz  {'ok' if api == 200 else f'FAILING ({api})'}")
    if s3 is not None:
        print(f"  S3           {'answering' if s3 else 'NOT answering'}")
    alive = {name: pid_alive(int(pid)) for name, pid in ready.get("component_pids", {}).items()}
    print("  processes    " + ", ".join(f"{n}={'up' if a else 'DOWN'}" for n, a in alive.items()))
    return 0 if api == 200 and all(alive.values()) else 1


def cmd_demo(files: StateFiles, args: argparse.Namespace) -> int:
    from .demo import run_demo

    binaries = find_binaries()
    print(f"==> kubectl: {binaries.kubectl}")
    return run_demo(files.root / "demo", gpus=args.gpus, timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videogen_devcluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: %(default)s")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything in the background (or --foreground)")
    up.add_argument("--foreground", action="store_true", help="run in this terminal until Ctrl-C")
    up.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu capacity of the local node")
    up.add_argument("--no-s3", action="store_true", help="skip the S3 server")
    up.add_argument("--timeout", type=float, default=180.0)
    down = sub.add_parser("down", help="stop everything started by `up`")
    down.add_argument("--timeout", type=float, default=60.0)
    sub.add_parser("env", help='print export lines: eval "$(python -m videogen_devcluster env)"')
    sub.add_parser("status", help="is it up, and healthy?")
    demo = sub.add_parser("demo", help="run examples/text-to-video.yaml end to end on a fresh local cluster")
    demo.add_argument("--gpus", type=int, default=1)
    demo.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the job")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    files = StateFiles(args.state_dir.resolve())
    commands = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status, "demo": cmd_demo}
    return commands[args.command](files, args)


if __name__ == "__main__":
    sys.exit(main())
