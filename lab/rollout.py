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

from lab.cluster import CONTROL, INVENTORY, POLL, PodWatcher, Target
from lab.paths import REPO
from lab.prober import Prober, Sample, mark_stale, summarize
from lab.run import StepFailed
from lab.tools import tool_env

SEED_CHART = REPO / "lab" / "seed_chart"
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
            "per_second": per_second(self.samples, self.upgrade_start, self.old_message, self.new_message),
        }


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
    kubeconfig: Path,
    rate: float,
    before: float,
    after: float,
) -> Rollout:
    """Probe `before` s, start the trigger, wait for the old pods to go (or the trigger to fail), probe `after` s."""
    watcher = PodWatcher(kubeconfig, rollout.target).start()
    _, pods = watcher.latest
    rollout.old_hashes = sorted({p.template_hash for p in pods})
    prober = Prober(
        host,
        rollout.target.node_port,
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
        if process is not None and process.poll() is None:
            process.kill()
    rollout.new_hashes = sorted(
        {p.template_hash for _, pods in watcher.snapshots for p in pods} - set(rollout.old_hashes)
    )
    if rollout.old_gone_at is not None:
        samples = mark_stale(samples, rollout.old_message, rollout.old_gone_at)
    rollout.samples = samples
    return rollout


# ------------------------------------------------------------------ triggers


MESSAGES = Path(tempfile.gettempdir()) / "kubeadm-helm-rollout-messages"


def deploy_argv(message: str, *extra: str) -> list[str]:
    """ansible-playbook deploy.yml on the lab inventory, the message read from a file byte for byte."""
    MESSAGES.mkdir(exist_ok=True)
    path = MESSAGES / f"{abs(hash(message))}.txt"
    path.write_text(message, encoding="utf-8")
    return ["ansible-playbook", "-i", str(INVENTORY), "deploy.yml", "-e", f"app_message_file={path}", *extra]


def deploy_playbook(message: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        deploy_argv(message, *extra),
        cwd=REPO,
        env=tool_env(),
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
