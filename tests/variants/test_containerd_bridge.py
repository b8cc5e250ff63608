"""The other supported stack: containerd and the bridge pod network, on the reset nodes of the first.

The lab's default is CRI-O and Calico (what the rest of the suite proves); both
alternatives stay supported choices (cluster_container_runtime: containerd,
cluster_pod_network: bridge), so this converges a cluster with them and checks
what a user relies on: Ready nodes on containerd, pods on two workers that reach
each other, cluster DNS, and a second run that changes nothing. It runs last
(tests/variants sorts after the other areas): it resets the shared lab's CRI-O +
Calico cluster with playbooks/reset.yml and builds this one on the same nodes,
which proves reset leaves nothing of the other network or runtime in the way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from lab.cluster import KUBECONFIG
from lab.nodes.topology import MAX_NODES, Lab
from lab.paths import REPO
from lab.playbook import play_recap
from tests.cluster.test_cluster import assert_pods_reach_each_other, exec_python, start_app_pod, wait_ready
from tests.conftest import VENV_BIN, LabCluster, run_tool
from tests.node.lab_inventory import Inventory, forget_lab_inventory, reload_lab_inventory, setting

pytestmark = pytest.mark.cluster

VARIANT = ("-e", "cluster_container_runtime=containerd", "-e", "cluster_pod_network=bridge")


def lab(*args: str) -> None:
    result = run_tool([VENV_BIN / "python", "-m", "lab", *args], check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def converge(inventory: Path) -> tuple[float, dict[str, dict[str, int]], str]:
    started = time.monotonic()
    playbook = [VENV_BIN / "ansible-playbook", "-i", inventory, REPO / "playbooks" / "cluster.yml", *VARIANT]
    result = run_tool(playbook, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return time.monotonic() - started, play_recap(result.stdout), result.stdout


@pytest.fixture(scope="module")
def variant_cluster(lab_cluster: LabCluster) -> Iterator[tuple[Inventory, client.CoreV1Api]]:
    if not lab_cluster.fresh:
        pytest.skip("LAB_REUSE=1 keeps your lab as it is; this variant resets its nodes")
    # the CRI-O + Calico cluster's own nodes, reset: rebuilding them on the other
    # pod network and runtime is what proves reset leaves no pod-network state
    inventory = reload_lab_inventory()
    started = time.monotonic()
    reset = [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "reset.yml"]
    # a dry run first: it must pass and leave every node joined
    result = run_tool([*reset, "-e", "reset_confirm=yes", "--check"], check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    nodes = {node.name: node for node in Lab.from_env().nodes(MAX_NODES)}
    assert all((nodes[name].root / "etc/kubernetes/kubelet.conf").is_file() for name in inventory.nodes)
    result = run_tool([*reset, "-e", "reset_confirm=yes"], check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert not any((nodes[name].root / "etc/kubernetes/kubelet.conf").exists() for name in inventory.nodes)
    print(f"\nreset.yml on every node: {time.monotonic() - started:.0f}s")
    seconds, _, _ = converge(inventory.path)
    print(f"containerd + bridge: cluster.yml on the reset CRI-O + Calico nodes in {seconds:.0f}s")
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))
    yield inventory, core
    lab("down")
    forget_lab_inventory()


def test_nodes_are_ready_on_containerd(variant_cluster):
    inventory, core = variant_cluster
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == set(inventory.nodes)
    for name, node in nodes.items():
        ready = next(c.status for c in node.status.conditions if c.type == "Ready")
        assert ready == "True", name
        assert node.status.node_info.container_runtime_version.startswith("containerd://"), name
    assert setting(inventory, inventory.master, "cluster_container_runtime") == "crio"  # only this test overrides


def test_pods_on_two_workers_reach_each_other_and_resolve_names(variant_cluster):
    inventory, core = variant_cluster
    namespace = f"variant-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        image = f"{setting(inventory, inventory.master, 'cluster_image_registry')}/tiny-http-app:1.0.0"
        names = [start_app_pod(core, namespace, worker, image) for worker in inventory.workers[:2]]
        pods = [wait_ready(core, namespace, name) for name in names]
        assert_pods_reach_each_other(core, namespace, pods)
        service_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
        code = "import socket; print(socket.gethostbyname('kubernetes.default'))"
        assert exec_python(core, namespace, names[0], code).strip() == service_ip
    finally:
        core.delete_namespace(namespace)


def test_a_second_run_changes_nothing(variant_cluster):
    inventory, _ = variant_cluster
    seconds, recap, output = converge(inventory.path)
    print(f"\ncontainerd + bridge: second run {seconds:.0f}s")
    assert set(inventory.nodes) <= set(recap)
    assert {host: counts["changed"] for host, counts in recap.items() if counts["changed"]} == {}, output[-3000:]
