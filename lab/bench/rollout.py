"""One rolling update measured under load: the prober on a NodePort, the pods
watched, and the per-phase times of the rollout."""

from __future__ import annotations

import math
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.bench.endpoints import KubeProxyWatcher, wall_clock_offset
from lab.bench.prober import Prober, Sample, mark_stale, summarize
from lab.bench.watchers import POLL, PodState, PodWatcher
from lab.cluster import CONTROL, INVENTORY, Target
from lab.mirror.tools import tool_env
from lab.nodes.nspawn import is_running
from lab.nodes.topology import Lab
from lab.paths import REPO
from lab.run import StepFailed, run

SEED_CHART = Path(__file__).resolve().parent / "seed_chart"
ROLLOUT_TIMEOUT = 600.0


@dataclass
class Rollout:
    """What one variant measured; times are seconds relative to the upgrade start."""

    variant: str
    target: Target
    mode: str
    old_message: str
    new_message: str
    expect_success: bool
    samples: list[Sample] = field(default_factory=list)
    upgrade_start: float = 0.0
    trigger_seconds: float = 0.0
    trigger_rc: int = 0
    old_gone_at: float | None = None
    old_hashes: list[str] = field(default_factory=list)
    new_hashes: list[str] = field(default_factory=list)
    trigger_output: str = ""
    # per pod: when the watcher first saw it exist, run, be ready, terminate, and last saw it
    pods: dict[str, PodTimes] = field(default_factory=dict)
    # per old pod IP: seconds from its deletion until no node's kube-proxy routes to it
    propagation: dict[str, float | None] = field(default_factory=dict)

    def phases(self) -> dict[str, object]:
        """Where the time of the rollout went, and its floor (seconds; see `floor`)."""
        new = [t for t in self.pods.values() if t.template_hash in self.new_hashes]
        old = [t for t in self.pods.values() if t.template_hash in self.old_hashes]
        changed_at = min((t.seen for t in new), default=None)
        if changed_at is None or self.old_gone_at is None:
            return {}

        def longest(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return round(max(known), 2) if known else None

        def since(at: float | None) -> float | None:
            return round(at - self.upgrade_start, 2) if at is not None else None

        start_to_ready = longest([t.ready - t.seen if t.ready else None for t in new])
        propagation = longest(list(self.propagation.values()))
        window = [s for s in self.samples if changed_at <= s.sent <= self.old_gone_at and s.ok]
        drain = round(max((s.latency for s in window), default=0.0), 3)
        floor = round(start_to_ready + propagation + drain, 2) if start_to_ready and propagation is not None else None
        rollout = round(self.old_gone_at - changed_at, 2)
        return {
            "deployment_changed_at": since(changed_at),
            "new_pod_created_to_running": longest([t.running - t.seen if t.running else None for t in new]),
            "new_pod_running_to_ready": longest([t.ready - t.running if t.ready and t.running else None for t in new]),
            "last_new_pod_ready_at": since(max((t.ready for t in new if t.ready), default=None)),
            "first_old_pod_terminating_at": since(min((t.terminating for t in old if t.terminating), default=None)),
            "old_pod_terminating_to_gone": longest(
                [t.last_seen - t.terminating + POLL if t.terminating else None for t in old]
            ),
            # preStop sleep, gunicorn's drain and exit, the sandbox stopped: the
            # kubelet reports the container's exit after it stopped the sandbox
            "old_pod_terminating_to_exited": longest(
                [t.exited - t.terminating if t.terminating and t.exited else None for t in old]
            ),
            # the rest of the kubelet's teardown: volumes, the pod's deletion
            "old_pod_exited_to_gone": longest([t.last_seen - t.exited + POLL if t.exited else None for t in old]),
            "old_pods_gone_at": since(self.old_gone_at),
            "command_returned_at": round(self.trigger_seconds, 2),
            "endpoint_propagation": propagation,
            "endpoint_propagation_per_pod": {
                ip: None if seconds is None else round(seconds, 2) for ip, seconds in self.propagation.items()
            },
            "longest_request": drain,
            # the least a rollout can take: a new pod from creation to ready, the old
            # ones' endpoints gone from every node, the last request drained
            "floor": floor,
            "rollout_from_deployment_change": rollout,
            "rollout_vs_floor": round(rollout / floor, 2) if floor else None,
        }

    def report(self) -> dict[str, object]:
        ok_times = {
            message: [s.sent - self.upgrade_start for s in self.samples if s.message == message and s.kind != "body"]
            for message in (self.old_message, self.new_message)
        }
        first_new = min(ok_times[self.new_message], default=None)
        last_old = max(ok_times[self.old_message], default=None)
        mixed = max(0.0, last_old - first_new) if first_new is not None and last_old is not None else 0.0
        summary = summarize(self.samples)
        return {
            "variant": self.variant,
            "target": self.target.name,
            "release": f"{self.target.namespace}/{self.target.release}",
            "mode": self.mode,
            "old_message": self.old_message,
            "new_message": self.new_message,
            **summary,
            "rollout_seconds": round(self.old_gone_at - self.upgrade_start, 2) if self.old_gone_at else None,
            "mixed_message_seconds": round(mixed, 2),
            "first_new_message_at": round(first_new, 3) if first_new is not None else None,
            "last_old_message_at": round(last_old, 3) if last_old is not None else None,
            "trigger_seconds": round(self.trigger_seconds, 2),
            "trigger_exit_code": self.trigger_rc,
            "expected_trigger_to_succeed": self.expect_success,
            "window_seconds": round(self.samples[-1].sent - self.samples[0].sent, 2) if self.samples else 0,
            "replicasets": {"old_pod_template_hashes": self.old_hashes, "new_pod_template_hashes": self.new_hashes},
            "phases": self.phases(),
            "per_second": per_second(self.samples, self.upgrade_start, self.old_message, self.new_message),
        }


@dataclass
class PodTimes:
    """time.monotonic of what the pod watcher saw of one pod (POLL resolution)."""

    template_hash: str
    seen: float
    last_seen: float
    ip: str = ""
    running: float | None = None
    ready: float | None = None
    terminating: float | None = None
    exited: float | None = None


def pod_times(snapshots: list[tuple[float, list[PodState]]]) -> dict[str, PodTimes]:
    times: dict[str, PodTimes] = {}
    for at, pods in snapshots:
        for pod in pods:
            t = times.setdefault(pod.name, PodTimes(pod.template_hash, at, at))
            t.last_seen = at
            t.ip = t.ip or pod.ip
            if pod.running and t.running is None:
                t.running = at
            if pod.ready and not pod.terminating and t.ready is None:
                t.ready = at
            if pod.terminating and t.terminating is None:
                t.terminating = at
            if pod.exited and t.exited is None:
                t.exited = at
    return times


def per_second(samples: list[Sample], origin: float, old: str, new: str) -> list[dict[str, object]]:
    """Requests per second (by send time, relative to origin) by message, and errors."""
    buckets: dict[int, dict[str, int]] = {}
    for s in samples:
        second = math.floor(s.sent - origin)
        bucket = buckets.setdefault(second, {"old": 0, "new": 0, "errors": 0})
        if not s.ok:
            bucket["errors"] += 1
        elif s.message == old:
            bucket["old"] += 1
        elif s.message == new:
            bucket["new"] += 1
    return [{"second": second, **counts} for second, counts in sorted(buckets.items())]


def measure(
    rollout: Rollout,
    trigger: Callable[[], subprocess.Popen[str]],
    *,
    host: str,
    port: int | None = None,  # default: the target's NodePort
    kubeconfig: Path,
    rate: float,
    before: float,
    after: float,
) -> Rollout:
    """Probe `before` s, start the trigger, wait for the old pods to go (or the trigger to fail), probe `after` s."""
    watcher = PodWatcher(kubeconfig, rollout.target).start()
    kube_proxy = KubeProxyWatcher([n for n in Lab.from_env().existing_nodes() if is_running(n)])
    clock = wall_clock_offset()
    _, pods = watcher.latest
    rollout.old_hashes = sorted({p.template_hash for p in pods})
    prober = Prober(
        host,
        port or rollout.target.node_port,
        rate=rate,
        mode=rollout.mode,
        expected={rollout.old_message, rollout.new_message},
    )
    prober.start()
    process: subprocess.Popen[str] | None = None
    try:
        time.sleep(before)
        rollout.upgrade_start = time.monotonic()
        process = trigger()
        output_chunks: list[str] = []
        reader = threading.Thread(target=lambda: output_chunks.append(process.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        deadline = rollout.upgrade_start + ROLLOUT_TIMEOUT
        while True:
            if time.monotonic() > deadline:
                raise StepFailed(f"{rollout.variant}: no end of the rollout within {ROLLOUT_TIMEOUT:.0f}s")
            finished = process.poll() is not None
            if finished and not rollout.trigger_seconds:
                rollout.trigger_seconds = time.monotonic() - rollout.upgrade_start
                rollout.trigger_rc = process.returncode
            if rollout.old_gone_at is None and rollout.expect_success:
                at, pods = watcher.latest
                if pods and not any(p.template_hash in rollout.old_hashes for p in pods) and all(p.ready for p in pods):
                    rollout.old_gone_at = at
            # A rollout ends when the command returned and the old pods are gone; a
            # failing command (expected for the bad release) ends it too.
            if finished and (not rollout.expect_success or rollout.trigger_rc != 0 or rollout.old_gone_at is not None):
                break
            time.sleep(POLL)
        reader.join(timeout=10)
        rollout.trigger_output = "".join(output_chunks)
        time.sleep(after)
    finally:
        samples = prober.stop()
        watcher.stop()
        kube_proxy.stop()
        if process is not None and process.poll() is None:
            process.kill()
    rollout.pods = pod_times(watcher.snapshots)
    rollout.propagation = {
        t.ip: kube_proxy.propagation(t.ip, t.terminating + clock)
        for t in rollout.pods.values()
        if t.template_hash in rollout.old_hashes and t.terminating is not None and t.ip
    }
    rollout.new_hashes = sorted(
        {p.template_hash for _, pods in watcher.snapshots for p in pods} - set(rollout.old_hashes)
    )
    if rollout.old_gone_at is not None:
        samples = mark_stale(samples, rollout.old_message, rollout.old_gone_at)
    rollout.samples = samples
    return rollout


# ------------------------------------------------------------------ triggers


MESSAGES = Path(tempfile.gettempdir()) / "kubeadm-helm-rollout-messages"


def deploy_argv(message: str, *extra: str, tree: Path = REPO) -> list[str]:
    """ansible-playbook deploy.yml of tree (a checkout of this project) on the lab inventory,
    the message read from a file byte for byte."""
    MESSAGES.mkdir(exist_ok=True)
    path = MESSAGES / f"{abs(hash(message))}.txt"
    path.write_text(message, encoding="utf-8")
    playbook = str(tree / "deploy.yml")
    return ["ansible-playbook", "-i", str(INVENTORY), playbook, "-e", f"app_message_file={path}", *extra]


def deploy_env(tree: Path = REPO) -> dict[str, str]:
    """The tools, and the roles of tree (ansible.cfg's roles_path names this checkout's)."""
    return tool_env(ANSIBLE_ROLES_PATH=str(tree / "roles"))


def run_deploy(message: str, *extra: str, tree: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    """deploy.yml of tree run to its end, its output kept; with check, a failure raises with the play's last lines."""
    result = run(deploy_argv(message, *extra, tree=tree), env=deploy_env(tree), cwd=tree, capture=True, check=False)
    if check and result.returncode != 0:
        raise StepFailed(f"deploy.yml failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return result


def deploy_playbook(message: str, *extra: str, tree: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        deploy_argv(message, *extra, tree=tree),
        cwd=tree,
        env=deploy_env(tree),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def helm_control_argv(kubeconfig: Path, message: str, image: str, *, install: bool) -> list[str]:
    argv = [
        "helm",
        "upgrade",
        CONTROL.release,
        str(SEED_CHART),
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        CONTROL.namespace,
        "--set-string",
        f"message={message},image={image}",
        "--set",
        f"nodePort={CONTROL.node_port}",
        "--wait",
        "--timeout",
        "5m",
    ]
    if install:
        argv[2:2] = ["--install", "--create-namespace"]
    return argv
