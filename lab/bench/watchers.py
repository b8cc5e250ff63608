"""Watching the cluster while a benchmark runs: a poller of a release's pods.

(kube-proxy's rules on every node are watched by lab.bench.endpoints.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.cluster import Target

POLL = 0.25


@dataclass(frozen=True)
class PodState:
    name: str
    template_hash: str
    ready: bool
    terminating: bool
    node: str = ""
    ip: str = ""
    # every container of the pod runs (its process started)
    running: bool = False
    # every container of the pod has exited, as the kubelet reports it (after the sandbox stopped)
    exited: bool = False


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
                    pod.status.pod_ip or "",
                    bool(pod.status.container_statuses)
                    and all(c.state.running is not None for c in pod.status.container_statuses),
                    bool(pod.status.container_statuses)
                    and all(c.state.terminated is not None for c in pod.status.container_statuses),
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
