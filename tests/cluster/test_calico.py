"""Calico is real when its features work: its pods ready everywhere, the pool the cluster
asked for with VXLAN always on, pod traffic between nodes through vxlan.calico, and a
NetworkPolicy that is enforced (the bridge network would fail that last one)."""

from __future__ import annotations

import json
import time

import pytest
import testinfra
from kubernetes import client

from tests.cluster.test_cluster import fetch_from, start_app_pod, wait_ready
from tests.node.lab_inventory import Inventory, setting, ssh_host_url

pytestmark = pytest.mark.cluster

KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"


@pytest.fixture(scope="module", autouse=True)
def calico(inventory: Inventory) -> None:
    if setting(inventory, inventory.master, "cluster_pod_network") != "calico":
        pytest.skip("the cluster runs the bridge pod network (cluster_pod_network)")


@pytest.fixture(scope="module")
def master(inventory: Inventory):
    return testinfra.get_host(ssh_host_url(inventory.master))


@pytest.fixture(scope="module")
def client_and_server(core, namespace, inventory: Inventory, app_image) -> tuple[str, client.V1Pod]:
    """The app on the first two workers: a client pod and a server pod on another node."""
    client_name = start_app_pod(core, namespace, inventory.workers[0], app_image)
    server_name = start_app_pod(core, namespace, inventory.workers[1], app_image)
    wait_ready(core, namespace, client_name)
    return client_name, wait_ready(core, namespace, server_name)


def test_calico_runs_on_every_node(api_client: client.ApiClient, inventory: Inventory):
    apps = client.AppsV1Api(api_client)
    daemonset = apps.read_namespaced_daemon_set("calico-node", "kube-system").status
    assert daemonset.desired_number_scheduled == len(inventory.nodes)
    assert daemonset.number_ready == daemonset.updated_number_scheduled == len(inventory.nodes)
    controllers = apps.read_namespaced_deployment("calico-kube-controllers", "kube-system").status
    assert controllers.ready_replicas == 1


def test_the_pool_is_the_pod_cidr_with_vxlan_always(master, inventory: Inventory):
    pools = json.loads(master.check_output(f"{KUBECTL} get ippools.crd.projectcalico.org -o json"))["items"]
    assert [(p["spec"]["cidr"], p["spec"].get("vxlanMode"), p["spec"].get("ipipMode")) for p in pools] == [
        (setting(inventory, inventory.master, "cluster_pod_cidr"), "Always", "Never")
    ]


def vxlan_tx_packets(host) -> int:
    return int(host.file("/sys/class/net/vxlan.calico/statistics/tx_packets").content_string)


def test_pods_on_two_nodes_talk_through_the_vxlan_tunnel(core, namespace, client_and_server, inventory: Inventory):
    client_pod, server = client_and_server
    worker = testinfra.get_host(ssh_host_url(inventory.workers[0]))
    assert "vxlan id 4096" in worker.check_output("ip -d link show vxlan.calico")
    # the route to the server's pod goes through the tunnel
    assert "dev vxlan.calico" in worker.check_output(f"ip route get {server.status.pod_ip}")
    before = vxlan_tx_packets(worker)
    for _ in range(3):
        answer = fetch_from(core, namespace, client_pod, server.status.pod_ip)
        assert answer.startswith("body=") and '"healthy"' in answer, answer
    assert vxlan_tx_packets(worker) - before >= 3 * 3  # a handshake, a request and the ack, at least


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def reaches(core, namespace: str, client_pod: str, address: str) -> bool:
    return fetch_from(core, namespace, client_pod, address).startswith("body=")


def wait_until(condition, timeout: float = 30) -> float:
    """Seconds until condition() held; fails after timeout."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout:.0f}s"
        time.sleep(1)
    return time.monotonic() - started


def test_a_network_policy_is_enforced(api_client, core, namespace, client_and_server):
    client_pod, server = client_and_server
    networking = client.NetworkingV1Api(api_client)
    assert reaches(core, namespace, client_pod, server.status.pod_ip)

    deny = policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    networking.create_namespaced_network_policy(namespace, deny)
    denied_after = wait_until(lambda: not reaches(core, namespace, client_pod, server.status.pod_ip))

    app_pods = {"matchLabels": {"test": "cluster-e2e"}}
    allow = policy(
        "allow-from-the-client",
        {"podSelector": app_pods, "ingress": [{"from": [{"podSelector": app_pods}], "ports": [{"port": 8080}]}]},
    )
    networking.create_namespaced_network_policy(namespace, allow)
    allowed_after = wait_until(lambda: reaches(core, namespace, client_pod, server.status.pod_ip))
    print(f"\nNetworkPolicy: default deny held after {denied_after:.1f}s, the allow rule after {allowed_after:.1f}s")

    networking.delete_namespaced_network_policy("allow-from-the-client", namespace)
    networking.delete_namespaced_network_policy("default-deny-ingress", namespace)
