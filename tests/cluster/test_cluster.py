"""The lab cluster end to end: idempotent converge, Ready nodes, a pod network
that spans nodes, cluster DNS, and a worker that survives a reboot.

Needs the lab (make lab-up), the mirror and a first run of playbooks/cluster.yml:
`.venv/bin/python -m pytest -m cluster tests/cluster -x -q -s`
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
import uuid

import pytest
import testinfra
import yaml
from cryptography import x509
from kubernetes import client
from kubernetes.stream import stream

from lab.paths import REPO
from lab.playbook import play_recap
from tests.conftest import VENV_BIN, run_tool
from tests.node.lab_inventory import Inventory, setting, ssh_host_url

pytestmark = pytest.mark.cluster

APP_PORT = 8080


def run_cluster_playbook(inventory: Inventory) -> tuple[float, dict[str, tuple[int, int, int]], str]:
    started = time.monotonic()
    result = run_tool(
        [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "cluster.yml"], check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    recap = {
        host: (counts["changed"], counts["unreachable"], counts["failed"])
        for host, counts in play_recap(result.stdout).items()
    }
    return elapsed, recap, result.stdout


def test_cluster_playbook_second_run_changes_nothing(inventory: Inventory):
    first, _, _ = run_cluster_playbook(inventory)
    second, recap, output = run_cluster_playbook(inventory)
    print(f"\ncluster.yml: run before {first:.0f}s, second run {second:.0f}s, changed per host {recap}")
    assert set(inventory.nodes) <= set(recap), output[-3000:]
    changed = {host: counts[0] for host, counts in recap.items() if counts[0]}
    assert changed == {}, "second run changed something:\n" + "\n".join(
        line for line in output.splitlines() if line.startswith("changed:")
    )


def test_pod_cidr_overlapping_the_node_network_is_refused_before_any_change(inventory: Inventory):
    playbook = [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "cluster.yml"]
    # the lab's node network is 10.77.0.0/24
    result = run_tool([*playbook, "-e", "cluster_pod_cidr=10.77.0.0/16"], check=False)
    assert result.returncode != 0
    assert "must not overlap" in result.stdout
    recap = play_recap(result.stdout)
    assert recap and all(counts["changed"] == 0 for counts in recap.values()), recap


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("cluster_container_runtime", "docker"),
        ("cluster_pod_network", "flannel"),
        ("cluster_calico_encapsulation", "bgp"),
    ],
)
def test_an_unknown_runtime_or_network_is_refused_before_any_change(inventory: Inventory, variable, value):
    playbook = [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "cluster.yml"]
    result = run_tool([*playbook, "-e", f"{variable}={value}"], check=False)
    assert result.returncode != 0
    assert variable in result.stdout and value in result.stdout, result.stdout[-2000:]
    recap = play_recap(result.stdout)
    assert recap and all(counts["changed"] == 0 for counts in recap.values()), recap


TASK = re.compile(r"^TASK \[(.+?)\]")
CHANGED = re.compile(r"^changed: \[([^\]\s]+)(?: -> ([^\]\s(]+))?")


def changes_by_node(output: str) -> dict[str, set[str]]:
    """Node actually changed (the delegation target if any) -> names of the tasks that changed it."""
    changes: dict[str, set[str]] = {}
    task = ""
    for line in output.splitlines():
        if match := TASK.match(line):
            task = match.group(1)
        elif match := CHANGED.match(line):
            node = match.group(2) or match.group(1)
            changes.setdefault(node, set()).add(task)
    return changes


def test_a_joined_worker_under_another_name_is_left_alone_in_a_dry_run(inventory: Inventory):
    """A worker with valid kubelet credentials is never stopped or joined again, whatever the API says.

    worker_node_name=never-joined (a Node name the API does not know) made the old role
    stop the kubelet and move its credentials away; now the run refuses for that node and
    says it joined under its own name. Check mode, so the shared cluster is not touched.
    """
    worker = inventory.workers[-1]
    playbook = [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "cluster.yml", "--check"]
    result = run_tool([*playbook, "--limit", worker, "-e", "worker_node_name=never-joined"], check=False)
    assert result.returncode != 0, result.stdout[-4000:]
    assert f"It joined as {worker} and keeps that name" in " ".join(result.stdout.split()), result.stdout[-4000:]
    touched = {task for task in changes_by_node(result.stdout).get(worker, set()) if task.startswith("worker : ")}
    assert touched == set(), touched
    host = testinfra.get_host(ssh_host_url(worker))
    assert host.service("kubelet").is_running, "a dry run stopped kubelet"


def ready_status(node: client.V1Node) -> str | None:
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"), None)


def test_every_inventory_node_is_ready(core: client.CoreV1Api, inventory: Inventory):
    nodes = {node.metadata.name: ready_status(node) for node in core.list_node().items}
    assert {name: nodes.get(name) for name in inventory.nodes} == dict.fromkeys(inventory.nodes, "True")


# ---------------------------------------------------------------- pods on the workers


def start_app_pod(core: client.CoreV1Api, namespace: str, node: str, image: str) -> str:
    """The app (gunicorn, python inside) pinned to one node; returns the pod name."""
    name = f"app-{node}-{uuid.uuid4().hex[:5]}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": "cluster-e2e"}),
        spec=client.V1PodSpec(
            node_name=node,
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="app",
                    image=image,
                    ports=[client.V1ContainerPort(container_port=APP_PORT)],
                    readiness_probe=client.V1Probe(
                        http_get=client.V1HTTPGetAction(path="/health", port=APP_PORT), period_seconds=1
                    ),
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    return name


def wait_ready(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 180) -> client.V1Pod:
    deadline = time.monotonic() + timeout
    while True:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if conditions.get("Ready") == "True" and pod.status.pod_ip:
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {name} not Ready after {timeout:.0f}s: {pod.status}")
        time.sleep(1)


def exec_python(core: client.CoreV1Api, namespace: str, pod: str, code: str) -> str:
    return stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["python3", "-c", code],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
    )


def fetch_from(core: client.CoreV1Api, namespace: str, client_pod: str, address: str) -> str:
    code = (
        "import urllib.request; "
        # a prefix keeps the exec client from decoding the JSON body into a dict
        f"print('body=' + urllib.request.urlopen('http://{address}:{APP_PORT}/health', timeout=5).read().decode())"
    )
    return exec_python(core, namespace, client_pod, code)


def pods_on_each_worker(core: client.CoreV1Api, namespace: str, inventory: Inventory, image: str) -> list[client.V1Pod]:
    if len(inventory.workers) < 2:
        pytest.skip("needs two workers")
    names = [start_app_pod(core, namespace, worker, image) for worker in inventory.workers[:2]]
    return [wait_ready(core, namespace, name) for name in names]


def assert_pods_reach_each_other(core: client.CoreV1Api, namespace: str, pods: list[client.V1Pod]) -> None:
    first, second = pods
    assert first.spec.node_name != second.spec.node_name
    for source, target in ((first, second), (second, first)):
        answer = fetch_from(core, namespace, source.metadata.name, target.status.pod_ip)
        assert answer.startswith("body=") and '"healthy"' in answer, (
            f"{source.spec.node_name} -> {target.status.pod_ip}: {answer}"
        )


def test_pod_on_each_worker_reaches_the_other(core, namespace, inventory, app_image):
    pods = pods_on_each_worker(core, namespace, inventory, app_image)
    assert_pods_reach_each_other(core, namespace, pods)


def test_cluster_dns_resolves_kubernetes_default(core, namespace, inventory, app_image):
    name = start_app_pod(core, namespace, inventory.workers[0], app_image)
    wait_ready(core, namespace, name)
    service_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    answer = exec_python(core, namespace, name, "import socket; print(socket.gethostbyname('kubernetes.default'))")
    assert answer.strip() == service_ip


# ---------------------------------------------------------------- reboot


def boot_and_ready(core: client.CoreV1Api, name: str) -> tuple[str, str | None]:
    """The boot id the node's kubelet last reported, and its Ready status."""
    node = core.read_node(name)
    ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), None)
    return node.status.node_info.boot_id, ready


def test_worker_reboot_keeps_settings_and_node_returns_ready(core, namespace, inventory, app_image):
    worker = inventory.workers[-1]
    boot_before, _ = boot_and_ready(core, worker)
    started = time.monotonic()
    result = run_tool([VENV_BIN / "python", "-m", "lab", "reboot", worker], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # Ready again means Ready reported by the kubelet of the new boot (its boot id),
    # not the status the node had before the reboot.
    deadline = time.monotonic() + 300
    while True:
        boot, ready = boot_and_ready(core, worker)
        if boot != boot_before and ready == "True":
            break
        assert time.monotonic() < deadline, f"{worker} not Ready after the reboot: boot id {boot}, Ready={ready}"
        time.sleep(2)
    print(f"\n{worker}: rebooted and Ready again in {time.monotonic() - started:.0f}s")

    host = testinfra.get_host(ssh_host_url(worker))
    assert host.file("/proc/swaps").content_string.splitlines()[1:] == []
    for name in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward"):
        assert host.sysctl(name) == 1, name
    assert host.service("kubelet").is_running
    assert host.service(
        "containerd" if setting(inventory, worker, "cluster_container_runtime") == "containerd" else "crio"
    ).is_running
    if setting(inventory, worker, "cluster_pod_network") == "bridge":
        routes = host.check_output("ip -4 route show")
        others = [n for n in core.list_node().items if n.metadata.name != worker]
        for node in others:
            assert node.spec.pod_cidr in routes, f"no route to {node.metadata.name}'s pods after the reboot"
    # and the pod network still spans the nodes
    assert_pods_reach_each_other(core, namespace, pods_on_each_worker(core, namespace, inventory, app_image))


# ---------------------------------------------------------------- the controller outside the VPC


def test_the_controller_reaches_the_api_at_the_public_address_only(kubeconfig, core, inventory: Inventory):
    """Like a laptop and an EC2 cluster: the kubeconfig names the address the controller reaches the
    master at (ansible_host), the API certificate covers it, and the private address is refused."""
    public = inventory.var(inventory.master, "ansible_host")
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://{public}:6443"
    assert core.read_namespace("default").metadata.name == "default"  # TLS verified against the cluster CA
    node = core.read_node(inventory.master)
    private = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    assert private != public
    with pytest.raises(OSError):
        socket.create_connection((private, 6443), timeout=3).close()
    certificate = x509.load_pem_x509_certificate(ssl.get_server_certificate((public, 6443)).encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(public) in names.get_values_for_type(x509.IPAddress)
