"""testinfra node checks over SSH against the lab inventory (run after playbooks/cluster.yml)."""

from __future__ import annotations

import pytest
import testinfra

from tests.node.lab_inventory import Inventory, _ansible_tools_on_path, lab_inventory, ssh_host_url  # noqa: F401


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One test per inventory node; the node list is read only when a test asks for it.
    if "node" in metafunc.fixturenames:
        names = lab_inventory().nodes if _inventory_present() else ["no-lab"]
        metafunc.parametrize("node", names, scope="module")
    if "worker" in metafunc.fixturenames:
        names = lab_inventory().workers if _inventory_present() else ["no-lab"]
        metafunc.parametrize("worker", names, scope="module")


def _inventory_present() -> bool:
    from tests.node.lab_inventory import LAB_INVENTORY

    return LAB_INVENTORY.is_file()


@pytest.fixture(scope="session")
def inventory() -> Inventory:
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
