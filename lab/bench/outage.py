"""A worker powered off under load: errors until the app is whole again.

Probed at once on every path a user could take (PATHS): through the lab's
load balancer (new connections and keep-alive), and as controls directly at a
surviving worker's NodePort and at the dead worker's."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.bench.prober import Prober, Sample, summarize
from lab.bench.rollout import per_second
from lab.bench.watchers import POLL, PodWatcher
from lab.cluster import PROJECT, node_ready, workers
from lab.run import StepFailed, log, step

OUTAGE_TIMEOUT = 420.0  # node-not-ready eviction is 300 s, then a new pod starts


@dataclass
class WorkerOutage:
    """One worker powered off under load; times are seconds relative to the poweroff."""

    stopped_node: str
    probed_node: str  # what was probed: a worker, or the load balancer's address
    replicas: int
    message: str
    path: str = "survivor/new"  # one of PATHS
    samples: list[Sample] = field(default_factory=list)
    poweroff_at: float = 0.0
    node_not_ready_at: float | None = None
    pod_unready_at: float | None = None
    whole_at: float | None = None
    restarted_ready_seconds: float | None = None
    measured_at: str = ""
    # node -> ready app pods on it at the poweroff (with one node holding every pod, its loss is total)
    pods_by_node: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        def since(at: float | None) -> float | None:
            return round(at - self.poweroff_at, 2) if at is not None else None

        errors = [s.sent - self.poweroff_at for s in self.samples if not s.ok]
        return {
            "measured_at": self.measured_at,
            "path": self.path,
            "stopped_node": self.stopped_node,
            "probed_node": self.probed_node,
            "replicas": self.replicas,
            "ready_pods_by_node": dict(self.pods_by_node),
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


# path -> (what is probed, connection mode); "balancer" only when the lab runs one
PATHS = {
    "balancer/new": ("balancer", "new"),
    "balancer/keepalive": ("balancer", "keepalive"),
    "survivor/new": ("survivor", "new"),
    "dead/new": ("dead", "new"),
}


def service_traffic_policy(api: object) -> str:
    """The app Service's externalTrafficPolicy (Cluster or Local)."""
    service = api.read_namespaced_service(PROJECT.release, PROJECT.namespace)  # type: ignore[attr-defined]
    return str(service.spec.external_traffic_policy)


def measure_worker_outage(
    *, kubeconfig: Path, message: str, rate: float, before: float, after: float, paths: list[str] | None = None
) -> list[WorkerOutage]:
    """Power off a worker running an app pod while probing every path; wait until the app is whole; restart it.

    One WorkerOutage per path probed, all with the same times."""
    from lab.nodes import balancer
    from lab.nodes import commands as nodes
    from lab.nodes.nspawn import stop_node
    from lab.nodes.topology import Lab

    lab = Lab.from_env()
    watcher = PodWatcher(kubeconfig, PROJECT).start()
    _, pods = watcher.latest
    ready = [p for p in pods if p.ready and not p.terminating]
    addresses = workers()
    stopped = next((p.node for p in ready if p.node in addresses), None)
    if stopped is None:
        watcher.stop()
        raise StepFailed(f"no ready app pod on a worker ({[(p.name, p.node) for p in pods]})")
    # Probe a worker that stays up. With the Service's externalTrafficPolicy Cluster, one without an app
    # pod if there is one, so every request crosses nodes; with Local its NodePort reaches only its own
    # pods, so one that has one (a pod-less worker drops every request, as designed).
    up_workers = [name for name in addresses if name != stopped]
    local = service_traffic_policy(watcher.api) == "Local"
    probed = min(up_workers, key=lambda name: any(p.node == name for p in ready) != local)
    endpoints = {
        "survivor": (probed, addresses[probed], PROJECT.node_port),
        "dead": (stopped, addresses[stopped], PROJECT.node_port),
    }
    balanced = balancer.endpoint(lab)
    if balanced is not None:
        endpoints["balancer"] = (f"load balancer {balanced[0]}:{balanced[1]}", *balanced)
    wanted = [p for p in (paths or list(PATHS)) if PATHS[p][0] in endpoints]
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pods_by_node = {node: sum(p.node == node for p in ready) for node in sorted({p.node for p in ready})}
    log(f"ready app pods by node at the poweroff: {pods_by_node}; powering off {stopped}, probing {probed}")
    outages: list[WorkerOutage] = []
    probers: list[Prober] = []
    for path in wanted:
        target, mode = PATHS[path]
        label, host, port = endpoints[target]
        outages.append(
            WorkerOutage(stopped, label, len(ready), message, path, measured_at=measured_at, pods_by_node=pods_by_node)
        )
        probers.append(Prober(host, port, rate=rate, mode=mode, expected={message}))
    timing = outages[0]
    for prober in probers:
        prober.start()
    try:
        time.sleep(before)
        timing.poweroff_at = time.monotonic()
        # No time for a clean poweroff: everything in the node's cgroups is killed, like a crashed instance.
        stop_node(lab.node(stopped), timeout=0)
        log(f"{stopped} powered off {time.monotonic() - timing.poweroff_at:.1f}s after the request")
        while time.monotonic() - timing.poweroff_at < OUTAGE_TIMEOUT:
            at, pods = watcher.latest
            if timing.pod_unready_at is None and not any(p.ready for p in pods if p.node == stopped):
                timing.pod_unready_at = at
            if timing.node_not_ready_at is None and node_ready(watcher.api, stopped) != "True":
                timing.node_not_ready_at = time.monotonic()
            up_and_ready = [p for p in pods if p.ready and not p.terminating and p.node != stopped]
            if len(up_and_ready) >= timing.replicas:
                timing.whole_at = at
                break
            time.sleep(POLL)
        time.sleep(after)
    finally:
        for outage, prober in zip(outages, probers, strict=True):
            outage.samples = prober.stop()
            for name in ("poweroff_at", "pod_unready_at", "node_not_ready_at", "whole_at"):
                setattr(outage, name, getattr(timing, name))
        watcher.stop()
        with step(f"start {stopped} again and wait until it is Ready"):
            started = time.monotonic()
            nodes.up(lab.recorded_count())
            while node_ready(watcher.api, stopped) != "True":
                if time.monotonic() - started > 300:
                    raise StepFailed(f"{stopped} not Ready 300 s after it was started again")
                time.sleep(1)
            for outage in outages:
                outage.restarted_ready_seconds = round(time.monotonic() - started, 1)
    return outages


def print_outage(report: dict[str, object]) -> None:
    kinds = ", ".join(f"{k}={v}" for k, v in report["error_kinds"].items()) or "-"  # type: ignore[union-attr]
    whole = report["seconds_until_whole"]
    print(
        f"worker outage, {report.get('path', 'survivor/new')} ({report['stopped_node']} off, "
        f"{report['probed_node']} probed): "
        f"{report['errors']} errors / {report['requests']} requests ({kinds}) in "
        f"{report['seconds_with_errors']} s between {report['first_error_at']} and {report['last_error_at']} s; "
        f"node NotReady at {report['node_not_ready_at']} s, its pod unready at "
        f"{report['pod_on_stopped_node_unready_at']} s, "
        + (f"whole again after {whole} s" if whole is not None else f"not whole within {report['timeout_s']:.0f} s")
        + f"; restarted node Ready after {report['restarted_node_ready_after_s']} s"
    )
