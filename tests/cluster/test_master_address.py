"""A master's public address changes, as after an EC2 stop/start without an Elastic IP (issue 23, item 1).

On the shared lab cluster: the host's 1:1 NAT moves the master to another public
address (the old one stops answering, like EC2's), the inventory says so, and a
cluster.yml re-run alone makes the cluster reachable there again: the API server
certificate issued again with the new address, the old one kept aside, the
controller's kubeconfig pointed at it, the API server never restarted. A second
run changes nothing (a setting only `kubeadm init` applies is reported, not
written); moving back is the same path again and leaves the lab as it was.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
import yaml
from cryptography import x509
from kubernetes import client, config

from lab.nodes import commands as lab_commands
from lab.nodes import network
from lab.nodes.topology import MAX_NODES, Lab
from tests.cluster.test_cluster import changes_by_node
from tests.cluster.test_rejoin import playbook
from tests.node.lab_inventory import Inventory

pytestmark = pytest.mark.cluster

ASIDE = re.compile(r"^apiserver\.(crt|key)\.\d{8}T\d{6}Z\.bak$")
REISSUE_TASKS = {
    "master : Keep the old API server certificate and key aside",
    "master : Issue the API server certificate",
}


def api_answers(kubeconfig: Path) -> bool:
    """The API answers through this kubeconfig with the certificate verified (False on a TLS failure)."""
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    try:
        api.list_node(_request_timeout=10)
    except urllib3.exceptions.MaxRetryError as error:
        if isinstance(error.reason, urllib3.exceptions.SSLError | ssl.SSLError):
            return False
        raise
    return True


def server_of(kubeconfig: Path) -> str:
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def kubeconfig_at(kubeconfig: Path, address: str, directory: Path) -> Path:
    """A copy of the kubeconfig that reaches the API at another address."""
    data = yaml.safe_load(kubeconfig.read_text())
    port = server_of(kubeconfig).rsplit(":", 1)[1]
    data["clusters"][0]["cluster"]["server"] = f"https://{address}:{port}"
    copy = directory / f"at-{address}.conf"
    copy.write_text(yaml.safe_dump(data))
    copy.chmod(0o600)
    return copy


def apiserver_started(kubeconfig: Path, master: str) -> tuple[int, object]:
    """(restarts, start time) of the master's API server container, as its kubelet reports them."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    status = core.read_namespaced_pod(f"kube-apiserver-{master}", "kube-system").status.container_statuses[0]
    return status.restart_count, status.state.running.started_at


@dataclass(frozen=True)
class MasterFiles:
    """The master's /etc/kubernetes/pki, read from its root on the host (SSH follows the address)."""

    pki: Path

    def certificate_addresses(self) -> list[str]:
        certificate = x509.load_pem_x509_certificate((self.pki / "apiserver.crt").read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(address) for address in names.get_values_for_type(x509.IPAddress)]

    def kubeadm_config(self) -> bytes:
        return (self.pki.parent / "kubeadm-config.yaml").read_bytes()

    def aside(self) -> list[str]:
        return sorted(path.name for path in self.pki.iterdir() if ASIDE.match(path.name))


@pytest.fixture(scope="module")
def master_files(inventory: Inventory) -> MasterFiles:
    node = {node.name: node for node in Lab.from_env().nodes(MAX_NODES)}[inventory.master]
    return MasterFiles(node.root / "etc/kubernetes/pki")


@contextmanager
def master_moved(inventory: Inventory, directory: Path) -> Iterator[tuple[Path, str]]:
    """The host's NAT moves the master to another public address (the old one stops answering).

    Yields an inventory to add after the lab's, naming the new address, and the address.
    """
    lab = Lab.from_env()
    nodes = lab.nodes(MAX_NODES)
    master = next(node for node in nodes if node.name == inventory.master)
    new = lab.public_network[200]  # no node's slot
    assert new not in {node.public_address for node in nodes}
    translations = {node.public_address: node.address for node in nodes if node is not master}
    translations[new] = master.address

    known_hosts = directory / "known_hosts"  # the same host keys, at the new address too
    known_hosts.write_text(
        lab.known_hosts.read_text().replace(f",{master.public_address} ", f",{master.public_address},{new} ")
    )
    override = directory / "moved.yml"
    host_vars = {
        "ansible_host": str(new),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
    }
    override.write_text(yaml.safe_dump({"all": {"children": {"master": {"hosts": {master.name: host_vars}}}}}))
    network.publish(lab.name, lab.bridge, lab.host_address, lab.public_network, translations)
    try:
        yield override, str(new)
    finally:
        lab_commands.publish(lab)  # every node at its own public address again


def test_a_new_public_address_of_the_master_is_served_after_one_run(inventory, kubeconfig, master_files, tmp_path):
    old_address = str(inventory.var(inventory.master, "ansible_host"))
    before = apiserver_started(kubeconfig, inventory.master)
    aside_before = master_files.aside()
    with master_moved(inventory, tmp_path) as (override, new_address):
        assert not api_answers(kubeconfig_at(kubeconfig, new_address, tmp_path)), "the certificate names it already"

        seconds, output, recap, code = playbook(inventory, "cluster.yml", "-i", str(override))
        print(f"\ncluster.yml with the master moved to {new_address}: {seconds:.0f}s")
        assert code == 0, output[-6000:]
        assert changes_by_node(output)[inventory.master] >= REISSUE_TASKS, output[-6000:]
        assert server_of(kubeconfig) == f"https://{new_address}:6443"
        assert api_answers(kubeconfig)
        assert new_address in master_files.certificate_addresses()
        assert len(master_files.aside()) == len(aside_before) + 2, master_files.aside()
        assert apiserver_started(kubeconfig, inventory.master) == before, "the API server was restarted"

        # again, with a setting only `kubeadm init` applies changed: nothing changes, and the run says so
        config_before = master_files.kubeadm_config()
        seconds, output, recap, code = playbook(
            inventory, "cluster.yml", "-i", str(override), "-e", "master_kube_proxy_conntrack_max_per_core=1"
        )
        print(f"again: {seconds:.0f}s")
        assert code == 0 and all(counts["changed"] == 0 for counts in recap.values()), (recap, output[-4000:])
        said = " ".join(output.split())
        assert re.search(r"would render now in [\w, ]*KubeProxyConfiguration[\w, ]*: kubeadm applies those only", said)
        assert master_files.kubeadm_config() == config_before

    # moved back: the same path again, and the lab is as it was
    _, output, recap, code = playbook(inventory, "cluster.yml")
    assert code == 0, output[-6000:]
    assert changes_by_node(output)[inventory.master] >= REISSUE_TASKS, output[-6000:]
    assert server_of(kubeconfig) == f"https://{old_address}:6443"
    assert api_answers(kubeconfig)
    assert old_address in master_files.certificate_addresses()
    assert len(master_files.aside()) == len(aside_before) + 4
