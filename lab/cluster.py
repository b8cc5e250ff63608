"""The lab cluster as the demo and the benchmarks see it from the controller: the
inventory, the admin kubeconfig, the app's releases and a poller of their pods."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.paths import REPO
from lab.run import StepFailed

INVENTORY = REPO / "inventory" / "lab" / "hosts.yml"
# cluster_kubeconfig_local_path of the lab (cluster_name kubeadm-demo)
KUBECONFIG = Path.home() / ".kube" / "kubeadm-demo.conf"
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


def workers(inventory: Path = INVENTORY) -> dict[str, str]:
    """Worker name -> ansible_host, in inventory order."""
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["workers"]["hosts"]
    return {name: str((values or {}).get("ansible_host", name)) for name, values in hosts.items()}


def node_ready(api: object, name: str) -> str:
    """The node's Ready condition: True, False or Unknown (the node controller's verdict)."""
    conditions = api.read_node(name).status.conditions or []  # type: ignore[attr-defined]
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")
