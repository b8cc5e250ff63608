"""Scale-out on the lab: one more worker in the inventory, the cluster playbook
again, and the new node joins while the others only learn its pod route (the
bridge network) or nothing at all (Calico: the new node's calico-node sets up
its VXLAN tunnel and routes), and its pods reach the others' at once.

It grows the lab by a node for good (there is no scale-in playbook): it runs on
the fresh lab of a test session, and on a reused one (LAB_REUSE=1) only when
asked with CLUSTER_SCALE_OUT_NODES=N (the node count to grow to).
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
import testinfra
from kubernetes import client

from lab.paths import REPO
from tests.cluster.test_cluster import (
    assert_pods_reach_each_other,
    changes_by_node,
    ready_status,
    start_app_pod,
    wait_ready,
)
from tests.conftest import LAB_NODES, VENV_BIN, LabCluster, run_tool
from tests.node.lab_inventory import lab_inventory, reload_lab_inventory, setting, ssh_host_url

pytestmark = pytest.mark.cluster

TARGET = int(os.environ.get("CLUSTER_SCALE_OUT_NODES", "0")) or LAB_NODES + 1
# With the bridge pod network every node must route to the new node's pods;
# those two tasks are the only changes the existing nodes may see.
ROUTE_TASKS = {"common : Write the pod CIDR routes on every node", "common : Apply the changed routes"}
TIMING = re.compile(r"^(worker : Run kubeadm join.*?) -+ (\d+\.\d+)s", re.MULTILINE)


def test_new_worker_joins_and_the_others_only_learn_its_route(
    core: client.CoreV1Api, lab_cluster: LabCluster, app_image: str
):
    if not lab_cluster.fresh and TARGET == 0:
        pytest.skip("grows your running lab for good: set CLUSTER_SCALE_OUT_NODES=4 to run it with LAB_REUSE=1")
    before = lab_inventory()
    assert len(before.nodes) < TARGET, f"the lab has {len(before.nodes)} nodes already"
    grown = run_tool([VENV_BIN / "python", "-m", "lab", "up", "--nodes", str(TARGET)], check=False)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    after = reload_lab_inventory()
    new_nodes = sorted(set(after.nodes) - set(before.nodes))
    assert new_nodes, "lab up added no node"
    assert not {n.metadata.name for n in core.list_node().items} & set(new_nodes)

    playbook = [VENV_BIN / "ansible-playbook", "-i", after.path, REPO / "playbooks" / "cluster.yml"]
    result = run_tool(playbook, check=False, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
    assert result.returncode == 0, result.stdout[-6000:]
    print("\n" + "\n".join(f"{task}: {seconds}s" for task, seconds in TIMING.findall(result.stdout)))

    existing = {node: tasks for node, tasks in changes_by_node(result.stdout).items() if node not in new_nodes}
    assert all(tasks <= ROUTE_TASKS for tasks in existing.values()), existing
    nodes = {node.metadata.name: ready_status(node) for node in core.list_node().items}
    assert {name: nodes.get(name) for name in after.nodes} == dict.fromkeys(after.nodes, "True")

    again = run_tool(playbook, check=False)
    assert again.returncode == 0
    assert changes_by_node(again.stdout) == {}, "the run after the scale-out changed something"

    # the pod network reaches the new node with no manual step
    if setting(after, after.master, "cluster_pod_network") == "calico":
        new_host = testinfra.get_host(ssh_host_url(new_nodes[0]))
        assert "vxlan id 4096" in new_host.check_output("ip -d link show vxlan.calico")
    namespace = f"scale-out-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        names = [start_app_pod(core, namespace, node, app_image) for node in (new_nodes[0], before.workers[0])]
        assert_pods_reach_each_other(core, namespace, [wait_ready(core, namespace, name) for name in names])
    finally:
        core.delete_namespace(namespace)
