"""The lab cluster as the demo and the benchmarks see it from the controller: the
inventory, the admin kubeconfig, the app's releases, the workers and their readiness.
(The pods' poller is lab.bench.watchers.)"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.nodes.topology import Lab
from lab.run import StepFailed

# the inventory `lab up` writes (inventory/lab/hosts.yml for the default lab)
INVENTORY = Lab.from_env().inventory
# cluster_kubeconfig_local_path of the default lab, set in the inventory `lab up`
# writes: the lab's own state directory, never ~/.kube/<cluster_name>.conf, where
# an AWS cluster of the same (default) name keeps its kubeconfig.
KUBECONFIG = Lab.from_env().kubeconfig


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


def workers(inventory: Path = INVENTORY) -> dict[str, str]:
    """Worker name -> ansible_host, in inventory order."""
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["workers"]["hosts"]
    return {name: str((values or {}).get("ansible_host", name)) for name, values in hosts.items()}


def node_ready(api: object, name: str) -> str:
    """The node's Ready condition: True, False or Unknown (the node controller's verdict)."""
    conditions = api.read_node(name).status.conditions or []  # type: ignore[attr-defined]
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")
