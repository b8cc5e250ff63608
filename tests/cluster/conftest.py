"""End-to-end checks of the lab cluster built by playbooks/cluster.yml, through its real API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.node.lab_inventory import Inventory, _ansible_tools_on_path, lab_inventory, setting  # noqa: F401


@pytest.fixture(scope="session")
def inventory() -> Inventory:
    return lab_inventory()


@pytest.fixture(scope="session")
def kubeconfig(inventory: Inventory) -> Path:
    # the master role fetches the admin kubeconfig here (cluster_kubeconfig_local_path)
    name = str(setting(inventory, inventory.master, "cluster_name"))
    path = Path(os.environ.get("CLUSTER_KUBECONFIG", Path.home() / ".kube" / f"{name}.conf"))
    if not path.is_file():
        pytest.skip(f"{path} is missing: run playbooks/cluster.yml against the lab first")
    return path


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)
