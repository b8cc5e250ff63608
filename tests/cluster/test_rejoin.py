"""A worker's kubelet credentials, not the API, decide whether it joins (issue 23, items 3, 4, 9).

On the shared lab cluster, one worker at a time, each test leaving it Ready:
- its Node deleted through the API: cluster.yml neither stops its kubelet nor
  joins it again, and says what to do (kubelet 1.29 registers a Node only at start);
- playbooks/reset.yml leaves no Calico or bridge-network state on it, and one
  cluster.yml run joins it again (its stale Node deleted first);
- half-joined (a kubelet.conf of another cluster's CA): repaired, its files kept
  aside with a timestamp;
- powered off: cluster.yml converges the others and names it, then it comes back.
"""

from __future__ import annotations

import base64
import datetime
import re
import time

import pytest
import testinfra
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException

from lab.paths import REPO
from lab.playbook import play_recap
from tests.cluster.test_cluster import changes_by_node, ready_status
from tests.conftest import VENV_BIN, run_tool
from tests.node.lab_inventory import Inventory, setting, ssh_host_url

pytestmark = pytest.mark.cluster

CALICO_FILES = [
    "/etc/cni/net.d/10-calico.conflist",
    "/etc/cni/net.d/calico-kubeconfig",
    "/var/lib/calico",
    "/var/run/calico",
    "/var/log/calico",
    "/opt/cni/bin/calico",
    "/opt/cni/bin/calico-ipam",
]
BRIDGE_FILES = [
    "/etc/cni/net.d/10-kube-bridge.conflist",
    "/var/lib/cni/networks/kube-bridge",
    "/etc/kube-pod-routes.conf",
    "/etc/systemd/system/kube-pod-routes.service",
]
# kubernetes-cni's plugins: a package owns them, reset keeps them
PACKAGE_PLUGINS = ["/opt/cni/bin/loopback", "/opt/cni/bin/host-local", "/opt/cni/bin/portmap"]
ASIDE = re.compile(r"^kubelet\.conf\.\d{8}T\d{6}Z\.bak$")


@pytest.fixture(scope="module")
def worker(inventory: Inventory) -> str:
    return inventory.workers[-1]


@pytest.fixture(scope="module")
def node(worker: str):
    return testinfra.get_host(ssh_host_url(worker))


def playbook(inventory: Inventory, name: str, *args: str) -> tuple[float, str, dict[str, dict[str, int]], int]:
    started = time.monotonic()
    result = run_tool(
        [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / name, *args], check=False
    )
    return time.monotonic() - started, result.stdout + result.stderr, play_recap(result.stdout), result.returncode


def kubelet_process(node) -> str:
    return node.check_output("systemctl show kubelet --property=MainPID --property=ActiveEnterTimestamp")


def calico_node_ready(core: client.CoreV1Api, name: str) -> bool:
    pods = core.list_namespaced_pod(
        "kube-system", label_selector="k8s-app=calico-node", field_selector=f"spec.nodeName={name}"
    ).items
    return any(c.type == "Ready" and c.status == "True" for pod in pods for c in pod.status.conditions or [])


def node_status(core: client.CoreV1Api, name: str) -> str | None:
    try:
        return ready_status(core.read_node(name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def wait_for(condition, what: str, timeout: float = 300) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f}s"
        time.sleep(2)
    return time.monotonic() - started


def delete_node(core: client.CoreV1Api, name: str) -> None:
    core.delete_node(name)
    wait_for(lambda: node_status(core, name) is None, f"Node {name} deleted", 60)


def others_converged(recap: dict[str, dict[str, int]], inventory: Inventory, worker: str) -> None:
    others = {h: (c["failed"], c["unreachable"]) for h, c in recap.items() if h in inventory.nodes and h != worker}
    assert set(others) == set(inventory.nodes) - {worker}
    assert all(counts == (0, 0) for counts in others.values()), others


def test_a_worker_whose_node_was_deleted_is_neither_stopped_nor_joined_again(core, inventory, worker, node):
    kubelet_before = kubelet_process(node)
    credentials_before = node.file("/etc/kubernetes/kubelet.conf").sha256sum
    delete_node(core, worker)

    seconds, output, recap, _ = playbook(inventory, "cluster.yml")
    print(f"\ncluster.yml with {worker}'s Node deleted: {seconds:.0f}s")
    assert kubelet_process(node) == kubelet_before, "the run stopped or restarted the kubelet"
    assert node.file("/etc/kubernetes/kubelet.conf").sha256sum == credentials_before
    assert not any(task.startswith("worker : ") for task in changes_by_node(output).get(worker, set()))
    # the run fails for that node only, and says why and what to do
    assert recap[worker]["failed"] == 1, output[-4000:]
    others_converged(recap, inventory, worker)
    said = " ".join(output.split())
    assert f"the API has no Node named {worker}. Its Node object was deleted" in said, output[-4000:]
    assert "systemctl restart kubelet" in said

    # what the message says brings it back: same credentials, no join
    node.check_output("systemctl restart kubelet")
    back = wait_for(lambda: node_status(core, worker) == "True" and calico_node_ready(core, worker), "Node back")
    print(f"{worker}: Node registered again and Ready {back:.0f}s after the kubelet restart")
    assert node.file("/etc/kubernetes/kubelet.conf").sha256sum == credentials_before


def pod_network_state(node) -> dict[str, object]:
    iptables = "".join(
        node.run(f"{tool}-save 2>/dev/null").stdout
        for tool in ("iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft")
    )
    return {
        "files": [path for path in CALICO_FILES + BRIDGE_FILES if node.file(path).exists],
        "links": sorted(
            name
            for name in node.check_output("ls /sys/class/net").split()
            if name in ("cni0", "vxlan.calico") or name.startswith("cali")
        ),
        "calico routes": node.check_output("ip -4 route show proto 80"),
        "calico iptables rules": [line for line in iptables.splitlines() if "cali" in line][:5],
    }


def test_reset_leaves_no_pod_network_state_and_one_run_joins_the_node_again(core, inventory, worker, node):
    if setting(inventory, worker, "cluster_pod_network") == "calico":
        assert node.file("/etc/cni/net.d/10-calico.conflist").exists and node.file("/opt/cni/bin/calico").exists
    seconds, output, recap, code = playbook(inventory, "reset.yml", "-e", "reset_confirm=yes", "--limit", worker)
    assert code == 0, output[-4000:]
    print(f"\nreset.yml on {worker}: {seconds:.0f}s, changed={recap[worker]['changed']}")
    left = pod_network_state(node)
    assert left == {"files": [], "links": [], "calico routes": "", "calico iptables rules": []}, left
    assert all(node.file(path).exists for path in PACKAGE_PLUGINS), "reset removed a package's CNI plugin"
    _, output, recap, code = playbook(inventory, "reset.yml", "-e", "reset_confirm=yes", "--limit", worker)
    assert code == 0 and recap[worker]["changed"] == 0, output[-3000:]

    # its Node is still in the API (NotReady soon); one run joins the node again
    assert node_status(core, worker) is not None
    seconds, output, recap, code = playbook(inventory, "cluster.yml")
    print(f"cluster.yml joined {worker} again in {seconds:.0f}s")
    assert code == 0, output[-6000:]
    assert "worker : Run kubeadm join (CA certificate hash verified)" in changes_by_node(output)[worker]
    assert node_status(core, worker) == "True"
    if setting(inventory, worker, "cluster_pod_network") == "calico":
        assert calico_node_ready(core, worker)


def foreign_kubelet_conf(worker: str, server: str) -> str:
    """A kubelet.conf with a client certificate of another cluster's CA (a node joined elsewhere)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])  # as kubeadm names every CA
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{worker}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    user = f"system:node:{worker}"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "other",
                    "cluster": {"server": server, "certificate-authority-data": b64(ca.public_bytes(pem))},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(cert.public_bytes(pem)), "client-key-data": b64(key_pem)},
                }
            ],
            "contexts": [{"name": "default", "context": {"cluster": "other", "user": user}}],
            "current-context": "default",
        }
    )


def test_a_half_joined_worker_is_repaired_with_its_old_files_kept_aside(core, inventory, worker, node):
    # a join that broke half-way, as the old role defined it: kubelet.conf and no Node;
    # its credentials are another CA's, so they cannot work in this cluster
    server = yaml.safe_load(node.check_output("cat /etc/kubernetes/kubelet.conf"))["clusters"][0]["cluster"]["server"]
    node.check_output("systemctl stop kubelet")
    conf = foreign_kubelet_conf(worker, server)
    encoded = base64.b64encode(conf.encode()).decode()
    node.check_output(
        f"echo {encoded} | base64 -d > /etc/kubernetes/kubelet.conf && chmod 600 /etc/kubernetes/kubelet.conf"
    )
    foreign_sha = node.file("/etc/kubernetes/kubelet.conf").sha256sum
    delete_node(core, worker)

    seconds, output, _, code = playbook(inventory, "cluster.yml")
    print(f"\ncluster.yml repaired half-joined {worker} in {seconds:.0f}s")
    assert code == 0, output[-6000:]
    assert node_status(core, worker) == "True"
    kept = [name for name in node.check_output("ls /etc/kubernetes").split() if ASIDE.match(name)]
    assert kept, node.check_output("ls -l /etc/kubernetes")
    assert foreign_sha in [node.file(f"/etc/kubernetes/{name}").sha256sum for name in kept]
    assert node.file("/etc/kubernetes/kubelet.conf").sha256sum != foreign_sha
    assert {
        "worker : Move the earlier join's files aside (kept with a timestamp)",
        "worker : Run kubeadm join (CA certificate hash verified)",
    } <= changes_by_node(output)[worker]
    if setting(inventory, worker, "cluster_pod_network") == "calico":
        assert calico_node_ready(core, worker)


def test_a_powered_off_worker_does_not_stop_the_others(core, inventory, worker):
    from lab.nodes import commands as lab_nodes
    from lab.nodes.nspawn import stop_node
    from lab.nodes.topology import Lab

    lab = Lab.from_env()
    stop_node(lab.node(worker), timeout=0)
    try:
        # NotReady: the old role's rollout waits then held every re-run for 300 s
        wait_for(lambda: node_status(core, worker) != "True", f"{worker} NotReady", 120)
        seconds, output, recap, code = playbook(inventory, "cluster.yml")
        print(f"\ncluster.yml with {worker} powered off: {seconds:.0f}s, rc {code}")
        assert code == 4, output[-6000:]  # ansible-playbook: some host unreachable
        assert recap[worker]["unreachable"] == 1, recap
        others_converged(recap, inventory, worker)
        assert all(recap[h]["changed"] == 0 for h in inventory.nodes if h != worker), recap
        assert seconds < 240, "a wait held the run"
    finally:
        lab_nodes.up(lab.recorded_count())
    back = wait_for(
        lambda: node_status(core, worker) == "True" and calico_node_ready(core, worker), f"{worker} Ready again"
    )
    print(f"{worker}: started again, Ready {back:.0f}s later")
