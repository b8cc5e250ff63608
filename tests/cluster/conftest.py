"""End-to-end checks of the lab cluster built by playbooks/cluster.yml, through its real API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from lab.cluster import KUBECONFIG
from tests.conftest import LabCluster
from tests.node.lab_inventory import Inventory, _ansible_tools_on_path, lab_inventory, setting  # noqa: F401

APP_IMAGE_NAME = "tiny-http-app:1.0.0"


@pytest.fixture(scope="session")
def inventory(lab_cluster: LabCluster) -> Inventory:
    return lab_inventory()


@pytest.fixture(scope="session")
def kubeconfig(inventory: Inventory) -> Path:
    # the master role fetches the admin kubeconfig here: the lab's inventory names
    # the lab's own path, never ~/.kube/<cluster_name>.conf of an AWS cluster
    path = Path(str(setting(inventory, inventory.master, "cluster_kubeconfig_local_path")))
    assert path == KUBECONFIG, f"the lab inventory's cluster_kubeconfig_local_path is {path}, not {KUBECONFIG}"
    assert path.is_file(), f"{path} is missing: the master role fetches it (cluster_kubeconfig_local_path)"
    return path


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def app_image(inventory: Inventory) -> str:
    """The app image in the cluster's registry (python and gunicorn inside: a handy test pod)."""
    registry = setting(inventory, inventory.master, "cluster_image_registry")
    return f"{registry}/{APP_IMAGE_NAME}" if registry else APP_IMAGE_NAME


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test module's own, removed with everything in it afterwards."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    name = f"{module}-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
