"""`make bench-rollout`: rolling updates under load on the lab cluster, measured.

Each variant probes a NodePort on a worker at a constant rate (lab.prober) from
15 s before the upgrade starts until 15 s after the last old pod is gone, while
a Pod watcher records when the old pods go. Variants, all in one run:

- project/new, project/keepalive: `ansible-playbook deploy.yml` with a new
  message, probed with a new connection per request and with keep-alive;
- control/new: the seed's configuration (lab/seed_chart: Flask development
  server, probes on /version after 5 s, no preStop, default strategy) from the
  same image, rolled the same way with `helm upgrade --wait`, to show that the
  prober sees downtime when there is some;
- project/bad-release: deploy.yml with a release whose pods never become ready;
  it must fail, Helm must roll back, and only the old message may be served.

With --worker-outage (about 7 more minutes, so not by default), one more
measurement: a worker that runs one of the app's pods is powered off hard
while a worker that stays up is probed, until the app has its replicas ready
on the nodes that are up again; then the worker is started again.

Writes reports/rollout.json (per variant: requests, errors, error kinds,
rollout seconds, mixed-message seconds, ...), reports/rollout.png and one CSV
per variant with every request.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.paths import REPO, REPORTS
from lab.prober import Prober, Sample, as_rows, mark_stale, summarize
from lab.run import StepFailed, log, run, step
from lab.tools import tool_env

INVENTORY = REPO / "inventory" / "lab" / "hosts.yml"
KUBECONFIG = Path.home() / ".kube" / "kubeadm-demo.conf"
SEED_CHART = REPO / "lab" / "seed_chart"
ROLLOUT_TIMEOUT = 600.0
POLL = 0.25


@dataclass(frozen=True)
class Target:
    """A Helm release serving /version on a NodePort."""

    name: str
    release: str
    namespace: str
    node_port: int
    selector: str


PROJECT = Target(
    "project",
    "tiny-http-app",
    "tiny-http-app",
    30080,
    "app.kubernetes.io/instance=tiny-http-app,app.kubernetes.io/component=web",
)
CONTROL = Target("control", "bench-control", "bench-control", 30081, "app.kubernetes.io/instance=bench-control")


# ------------------------------------------------------------------ cluster access


def worker_address(inventory: Path = INVENTORY) -> str:
    """ansible_host of the first worker in the lab inventory."""
    if not inventory.is_file():
        raise StepFailed(f"no inventory at {inventory}: bring the lab up and build the cluster first (make demo)")
    data = yaml.safe_load(inventory.read_text())
    workers = data["all"]["children"]["workers"]["hosts"]
    name = next(iter(workers))
    return str((workers[name] or {}).get("ansible_host", name))


def get_message(host: str, port: int, timeout: float = 3.0) -> str | None:
    """The message /version answers now, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/version", timeout=timeout) as response:
            return json.loads(response.read())["message"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class PodState:
    name: str
    template_hash: str
    ready: bool
    terminating: bool
    node: str = ""


class PodWatcher:
    """Polls the target's pods every POLL seconds; keeps (time.monotonic, pods) snapshots."""

    def __init__(self, kubeconfig: Path, target: Target) -> None:
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self.target = target
        self.snapshots: list[tuple[float, list[PodState]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pod-watch", daemon=True)
        self.error: Exception | None = None

    def pods(self) -> list[PodState]:
        items = self.api.list_namespaced_pod(self.target.namespace, label_selector=self.target.selector).items
        states = []
        for pod in items:
            conditions = {c.type: c.status for c in (pod.status.conditions or [])}
            states.append(
                PodState(
                    pod.metadata.name,
                    (pod.metadata.labels or {}).get("pod-template-hash", ""),
                    conditions.get("Ready") == "True",
                    pod.metadata.deletion_timestamp is not None,
                    pod.spec.node_name or "",
                )
            )
        return states

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.snapshots.append((time.monotonic(), self.pods()))
            except Exception as error:  # the API server may hiccup: keep polling, report the last error
                self.error = error
            self._stop.wait(POLL)

    def start(self) -> PodWatcher:
        self.snapshots.append((time.monotonic(), self.pods()))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def latest(self) -> tuple[float, list[PodState]]:
        return self.snapshots[-1]


# ------------------------------------------------------------------ one measured rollout


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


# ------------------------------------------------------------------ a worker powered off


OUTAGE_TIMEOUT = 420.0  # node-not-ready eviction is 300 s, then a new pod starts


def workers(inventory: Path = INVENTORY) -> dict[str, str]:
    """Worker name -> ansible_host, in inventory order."""
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["workers"]["hosts"]
    return {name: str((values or {}).get("ansible_host", name)) for name, values in hosts.items()}


def node_ready(api: object, name: str) -> str:
    """The node's Ready condition: True, False or Unknown (the node controller's verdict)."""
    conditions = api.read_node(name).status.conditions or []  # type: ignore[attr-defined]
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")


@dataclass
class WorkerOutage:
    """One worker powered off under load; times are seconds relative to the poweroff."""

    stopped_node: str
    probed_node: str
    replicas: int
    message: str
    samples: list[Sample] = field(default_factory=list)
    poweroff_at: float = 0.0
    node_not_ready_at: float | None = None
    pod_unready_at: float | None = None
    whole_at: float | None = None
    restarted_ready_seconds: float | None = None
    measured_at: str = ""

    def report(self) -> dict[str, object]:
        def since(at: float | None) -> float | None:
            return round(at - self.poweroff_at, 2) if at is not None else None

        errors = [s.sent - self.poweroff_at for s in self.samples if not s.ok]
        return {
            "measured_at": self.measured_at,
            "stopped_node": self.stopped_node,
            "probed_node": self.probed_node,
            "replicas": self.replicas,
            **summarize(self.samples),
            "seconds_until_whole": since(self.whole_at),
            "whole_within_timeout": self.whole_at is not None,
            "timeout_s": OUTAGE_TIMEOUT,
            "seconds_with_errors": len({math.floor(t) for t in errors}),
            "first_error_at": round(min(errors), 2) if errors else None,
            "last_error_at": round(max(errors), 2) if errors else None,
            "node_not_ready_at": since(self.node_not_ready_at),
            "pod_on_stopped_node_unready_at": since(self.pod_unready_at),
            "restarted_node_ready_after_s": self.restarted_ready_seconds,
            "window_seconds": round(self.samples[-1].sent - self.samples[0].sent, 2) if self.samples else 0,
            "per_second": per_second(self.samples, self.poweroff_at, self.message, ""),
        }


def measure_worker_outage(*, kubeconfig: Path, message: str, rate: float, before: float, after: float) -> WorkerOutage:
    """Power off a worker running an app pod while probing another; wait until the app is whole; restart it."""
    from lab import nodes

    watcher = PodWatcher(kubeconfig, PROJECT).start()
    _, pods = watcher.latest
    ready = [p for p in pods if p.ready and not p.terminating]
    addresses = workers()
    stopped = next((p.node for p in ready if p.node in addresses), None)
    if stopped is None:
        watcher.stop()
        raise StepFailed(f"no ready app pod on a worker ({[(p.name, p.node) for p in pods]})")
    # Probe a worker that stays up; one without an app pod if there is one, so every request crosses nodes.
    up_workers = [name for name in addresses if name != stopped]
    probed = min(up_workers, key=lambda name: any(p.node == name for p in ready))
    outage = WorkerOutage(
        stopped, probed, len(ready), message, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    lab = nodes.Lab.from_env()
    prober = Prober(addresses[probed], PROJECT.node_port, rate=rate, expected={message}).start()
    try:
        time.sleep(before)
        outage.poweroff_at = time.monotonic()
        # No time for a clean poweroff: everything in the node's cgroups is killed, like a crashed instance.
        nodes.stop_node(lab.node(stopped), timeout=0)
        log(f"{stopped} powered off {time.monotonic() - outage.poweroff_at:.1f}s after the request")
        while time.monotonic() - outage.poweroff_at < OUTAGE_TIMEOUT:
            at, pods = watcher.latest
            if outage.pod_unready_at is None and not any(p.ready for p in pods if p.node == stopped):
                outage.pod_unready_at = at
            if outage.node_not_ready_at is None and node_ready(watcher.api, stopped) != "True":
                outage.node_not_ready_at = time.monotonic()
            up_and_ready = [p for p in pods if p.ready and not p.terminating and p.node != stopped]
            if len(up_and_ready) >= outage.replicas:
                outage.whole_at = at
                break
            time.sleep(POLL)
        time.sleep(after)
    finally:
        outage.samples = prober.stop()
        watcher.stop()
        with step(f"start {stopped} again and wait until it is Ready"):
            started = time.monotonic()
            nodes.up(lab.recorded_count())
            while node_ready(watcher.api, stopped) != "True":
                if time.monotonic() - started > 300:
                    raise StepFailed(f"{stopped} not Ready 300 s after it was started again")
                time.sleep(1)
            outage.restarted_ready_seconds = round(time.monotonic() - started, 1)
    return outage


def print_outage(report: dict[str, object]) -> None:
    kinds = ", ".join(f"{k}={v}" for k, v in report["error_kinds"].items()) or "-"  # type: ignore[union-attr]
    whole = report["seconds_until_whole"]
    print(
        f"worker outage ({report['stopped_node']} off, {report['probed_node']} probed): "
        f"{report['errors']} errors / {report['requests']} requests ({kinds}) in "
        f"{report['seconds_with_errors']} s between {report['first_error_at']} and {report['last_error_at']} s; "
        f"node NotReady at {report['node_not_ready_at']} s, its pod unready at "
        f"{report['pod_on_stopped_node_unready_at']} s, "
        + (f"whole again after {whole} s" if whole is not None else f"not whole within {report['timeout_s']:.0f} s")
        + f"; restarted node Ready after {report['restarted_node_ready_after_s']} s"
    )


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


# ------------------------------------------------------------------ report


def write_csv(path: Path, samples: list[Sample], origin: float) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["scheduled", "sent", "latency", "kind", "status", "message", "detail"]
        )
        writer.writeheader()
        writer.writerows(as_rows(samples, origin))


def plot(reports: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(reports), 1, figsize=(12, 2.8 * len(reports)), squeeze=False)
    for axis, report in zip(axes[:, 0], reports, strict=True):
        rows = report["per_second"]
        seconds = [r["second"] for r in rows]  # type: ignore[index]
        old = [r["old"] for r in rows]  # type: ignore[index]
        new = [r["new"] for r in rows]  # type: ignore[index]
        errors = [r["errors"] for r in rows]  # type: ignore[index]
        axis.bar(seconds, old, width=1.0, align="edge", color="#4c72b0", label="old message")
        axis.bar(seconds, new, width=1.0, align="edge", bottom=old, color="#dd8452", label="new message")
        bottoms = [o + n for o, n in zip(old, new, strict=True)]
        axis.bar(seconds, errors, width=1.0, align="edge", bottom=bottoms, color="#c44e52", label="errors")
        # Errors are few against 100 requests/s: mark each second that had any above the bars.
        top = max([o + n + e for o, n, e in zip(old, new, errors, strict=True)], default=100)
        for second, count in zip(seconds, errors, strict=True):
            if count:
                axis.plot(second + 0.5, top * 1.08, "v", color="#c44e52", markersize=8)
                axis.annotate(str(count), (second + 0.5, top * 1.13), ha="center", fontsize=7, color="#c44e52")
        axis.set_ylim(0, top * 1.22)
        axis.axvline(0, color="black", linestyle="--", linewidth=1, label="upgrade starts")
        if report["rollout_seconds"] is not None:
            axis.axvline(report["rollout_seconds"], color="green", linestyle="--", linewidth=1, label="old pods gone")
        axis.axvline(report["trigger_seconds"], color="grey", linestyle=":", linewidth=1, label="command returns")
        kinds = ", ".join(f"{k} {v}" for k, v in report["error_kinds"].items()) or "none"  # type: ignore[union-attr]
        if report["expected_trigger_to_succeed"]:
            outcome = (
                f"rollout {report['rollout_seconds']} s, both messages served for {report['mixed_message_seconds']} s"
            )
        else:
            outcome = f"the command failed after {report['trigger_seconds']} s and Helm rolled back"
        axis.set_title(
            f"{report['variant']}: {report['errors']} errors / {report['requests']} requests ({kinds}); {outcome}",
            fontsize=9,
        )
        axis.set_ylabel("requests/s")
        axis.legend(fontsize=7, loc="lower left", ncol=6)
    axes[-1, 0].set_xlabel("seconds since the upgrade started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_summary(reports: list[dict[str, object]]) -> None:
    print(f"{'variant':<22} {'requests':>8} {'errors':>6} {'ratio':>9}  {'rollout s':>9} {'mixed s':>7}  kinds")
    for r in reports:
        rollout = "-" if r["rollout_seconds"] is None else f"{r['rollout_seconds']:.1f}"
        kinds = ", ".join(f"{k}={v}" for k, v in r["error_kinds"].items()) or "-"  # type: ignore[union-attr]
        print(
            f"{r['variant']:<22} {r['requests']:>8} {r['errors']:>6} {r['error_ratio']:>9.5f}  "
            f"{rollout:>9} {r['mixed_message_seconds']:>7.1f}  {kinds}"
        )
    project = [r for r in reports if r["target"] == "project" and r["expected_trigger_to_succeed"]]
    control = [r for r in reports if r["target"] == "control"]
    if project and control:
        p_req, p_err = sum(r["requests"] for r in project), sum(r["errors"] for r in project)  # type: ignore[misc]
        c_req, c_err = sum(r["requests"] for r in control), sum(r["errors"] for r in control)  # type: ignore[misc]
        print(
            f"error ratio: project {p_err}/{p_req} = {p_err / p_req:.5f}, "
            f"control (seed configuration) {c_err}/{c_req} = {c_err / c_req:.5f}"
        )


# ------------------------------------------------------------------ the command


def bench_rollout(options: argparse.Namespace) -> list[dict[str, object]]:
    kubeconfig = Path(options.kubeconfig)
    if not kubeconfig.is_file():
        raise StepFailed(f"no kubeconfig at {kubeconfig}: build the lab cluster first (make demo)")
    host = options.host or worker_address()
    stamp = time.strftime("%H%M%S")
    measure_options = {
        "host": host,
        "kubeconfig": kubeconfig,
        "rate": options.rate,
        "before": options.before,
        "after": options.after,
    }
    results: list[Rollout] = []

    current = get_message(host, PROJECT.node_port)
    if current is None:
        with step("deploy the app first (nothing answers on the NodePort)"):
            run(deploy_argv("hello-world"), env=tool_env(), cwd=REPO)
        current = get_message(host, PROJECT.node_port)
        if current is None:
            raise StepFailed(f"http://{host}:{PROJECT.node_port}/version does not answer after deploy.yml")

    for mode in options.modes:
        new = f"hola {mode} {stamp}"
        with step(f"project/{mode}: deploy.yml rolls {current!r} -> {new!r} under {options.rate:.0f} req/s"):
            rollout = Rollout(f"project/{mode}", PROJECT, mode, current, new, expect_success=True)
            results.append(measure(rollout, lambda new=new: deploy_playbook(new), **measure_options))  # type: ignore[misc]
            if rollout.trigger_rc != 0:
                raise StepFailed(f"deploy.yml failed:\n{rollout.trigger_output[-3000:]}")
            current = new

    if options.control:
        old, new = f"seed before {stamp}", f"seed after {stamp}"
        with step(f"control: install the seed configuration with message {old!r}"):
            run(helm_control_argv(kubeconfig, old, options.image, install=True), env=tool_env(), capture=True)
        for mode in options.control_modes:
            with step(f"control/{mode}: helm upgrade rolls {old!r} -> {new!r} under {options.rate:.0f} req/s"):
                rollout = Rollout(f"control/{mode}", CONTROL, mode, old, new, expect_success=True)
                argv = helm_control_argv(kubeconfig, new, options.image, install=False)
                trigger = lambda argv=argv: subprocess.Popen(  # noqa: E731
                    argv, env=tool_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                results.append(measure(rollout, trigger, **measure_options))
                if rollout.trigger_rc != 0:
                    raise StepFailed(f"helm upgrade of the control failed:\n{rollout.trigger_output[-3000:]}")
                old, new = new, old
        if not options.keep_control:
            with step("remove the control release and its namespace"):
                run(["helm", "uninstall", CONTROL.release, "--kubeconfig", kubeconfig, "-n", CONTROL.namespace,
                     "--wait"], env=tool_env(), capture=True)  # fmt: skip
                PodWatcher(kubeconfig, CONTROL).api.delete_namespace(CONTROL.namespace)

    if options.bad_release:
        bad = f"never ready {stamp}"
        with step(f"project/bad-release: deploy.yml with pods that never become ready ({options.bad_timeout})"):
            rollout = Rollout("project/bad-release", PROJECT, "new", current, bad, expect_success=False)
            extra = ("-e", "app_fail_readiness=true", "-e", f"app_helm_timeout={options.bad_timeout}")
            results.append(measure(rollout, lambda: deploy_playbook(bad, *extra), **measure_options))  # type: ignore[arg-type]
            if rollout.trigger_rc == 0:
                raise StepFailed("deploy.yml succeeded with pods that never become ready")
            after = get_message(host, PROJECT.node_port)
            if after != current:
                raise StepFailed(f"after the rollback /version answers {after!r}, not {current!r}")

    outage = None
    if options.worker_outage:
        with step(f"worker outage: power off a worker with an app pod under {options.rate:.0f} req/s"):
            measured = measure_worker_outage(
                kubeconfig=kubeconfig, message=current, rate=options.rate, before=options.before, after=options.after
            )
            REPORTS.mkdir(exist_ok=True)
            write_csv(REPORTS / "rollout-worker-outage.csv", measured.samples, measured.poweroff_at)
            outage = measured.report()

    REPORTS.mkdir(exist_ok=True)
    reports = [r.report() for r in results]
    for rollout in results:
        write_csv(REPORTS / f"rollout-{rollout.variant.replace('/', '-')}.csv", rollout.samples, rollout.upgrade_start)
    path = REPORTS / "rollout.json"
    # A run of only the outage keeps the rollout variants of the last run (and the other way round).
    document = json.loads(path.read_text()) if path.is_file() and not (reports and outage) else {}
    if reports:
        document.update(
            {
                "rate_per_s": options.rate,
                "seconds_before_upgrade": options.before,
                "seconds_after_old_pods_gone": options.after,
                "timeout_s": 2.0,
                "host": f"{host} (NodePort on a worker)",
                "variants": {r["variant"]: r for r in reports},
            }
        )
        plot(reports, REPORTS / "rollout.png")
    if outage:
        document["worker_outage"] = outage
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if outage:
        print_outage(outage)
    return reports


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make bench-rollout", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    p.add_argument("--before", type=float, default=15.0, help="seconds probed before the upgrade starts")
    p.add_argument("--after", type=float, default=15.0, help="seconds probed after the old pods are gone")
    p.add_argument(
        "--modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=["new", "keepalive"],
        help="project variants (empty: none)",
    )
    p.add_argument("--control-modes", type=lambda s: s.split(","), default=["new"], help="control variants")
    p.add_argument("--no-control", dest="control", action="store_false", help="skip the negative control")
    p.add_argument("--keep-control", action="store_true", help="leave the control release installed")
    p.add_argument("--no-bad-release", dest="bad_release", action="store_false", help="skip the rollback variant")
    p.add_argument("--bad-timeout", default="60s", help="helm --timeout for the bad release (default 60s)")
    p.add_argument(
        "--worker-outage",
        action="store_true",
        help="also power off a worker running an app pod and measure until the app is whole (about 7 min)",
    )
    p.add_argument("--host", help="address whose NodePorts are probed (default: the first worker)")
    p.add_argument("--kubeconfig", default=str(KUBECONFIG))
    p.add_argument("--image", default="10.77.0.1:5000/tiny-http-app:1.0.0", help="image of the control")
    return p


def bench_rollout_command(args: list[str]) -> int:
    options = parser().parse_args(args)
    reports = bench_rollout(options)
    if reports:
        print_summary(reports)
    log(f"wrote {REPORTS / 'rollout.json'}, {REPORTS / 'rollout.png'} and one CSV per variant in {REPORTS}")
    return 0
