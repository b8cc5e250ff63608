"""testinfra node checks over SSH against the lab inventory (run after playbooks/cluster.yml)."""

from __future__ import annotations

import pytest
import testinfra

from lab.nodes.topology import Lab
from tests.conftest import LAB_NODES, LabCluster
from tests.node.lab_inventory import Inventory, _ansible_tools_on_path, lab_inventory, ssh_host_url  # noqa: F401


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One test per node of the lab the session brings up (lab_cluster), known before it exists.
    planned = Lab.from_env().nodes(LAB_NODES)
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", [n.name for n in planned], scope="module")
    if "worker" in metafunc.fixturenames:
        metafunc.parametrize("worker", [n.name for n in planned if n.role == "workers"], scope="module")


@pytest.fixture(scope="session")
def inventory(lab_cluster: LabCluster) -> Inventory:
    return lab_inventory()


@pytest.fixture(scope="module")
def host(node: str, inventory: Inventory):
    return testinfra.get_host(ssh_host_url(node))


@pytest.fixture(scope="module")
def worker_host(worker: str, inventory: Inventory):
    return testinfra.get_host(ssh_host_url(worker))


@pytest.fixture(scope="session")
def master_host(inventory: Inventory):
    return testinfra.get_host(ssh_host_url(inventory.master))
