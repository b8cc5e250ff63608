"""What the cluster roles promise on every node, checked on the lab nodes over SSH (testinfra).

Run after playbooks/cluster.yml: `.venv/bin/python -m pytest -m node tests/node`.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.node.lab_inventory import Inventory, setting

pytestmark = pytest.mark.node

KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward")
PACKAGES = ("kubelet", "kubeadm", "kubectl")


def test_swap_is_off(host):
    active = host.file("/proc/swaps").content_string.splitlines()[1:]
    assert active == [], f"swap is on: {active}"


def test_swap_stays_off_after_reboot(host):
    fstab = host.file("/etc/fstab")
    if not fstab.exists:
        return
    lines = [line.split() for line in fstab.content_string.splitlines()]
    active_swap = [f for f in lines if len(f) > 2 and not f[0].startswith("#") and f[2] == "swap"]
    assert active_swap == []


def test_overlay_and_bridge_netfilter_present(host):
    assert "overlay" in host.file("/proc/filesystems").content_string.split()
    assert host.file("/proc/sys/net/bridge").is_directory
    persisted = host.file("/etc/modules-load.d/kubernetes.conf").content_string.split()
    assert {"overlay", "br_netfilter"} <= set(persisted)


@pytest.mark.parametrize("name", SYSCTLS)
def test_sysctl_applied_and_persisted(host, name):
    assert host.sysctl(name) == 1
    persisted = host.file("/etc/sysctl.d/99-kubernetes.conf").content_string.splitlines()
    assert f"{name}=1" in [line.replace(" ", "") for line in persisted]


def test_container_runtime_active_and_enabled(host, inventory: Inventory, node):
    runtime = setting(inventory, node, "cluster_container_runtime")
    service = host.service({"containerd": "containerd", "crio": "crio"}[runtime])
    assert service.is_running
    assert service.is_enabled
    # the CRI answers on the socket kubelet uses
    assert host.run("crictl info").rc == 0


def test_runtime_uses_systemd_cgroups_and_plain_http_registries(host, inventory: Inventory, node):
    runtime = setting(inventory, node, "cluster_container_runtime")
    registries = inventory.var(node, "common_plain_http_registries", [])
    if runtime == "containerd":
        config = host.file("/etc/containerd/config.toml").content_string
        assert "SystemdCgroup = true" in config
        assert 'config_path = "/etc/containerd/certs.d"' in config
        for registry in registries:
            hosts_toml = host.file(f"/etc/containerd/certs.d/{registry}/hosts.toml").content_string
            assert f'server = "http://{registry}"' in hosts_toml
    else:
        assert 'cgroup_manager = "systemd"' in host.file("/etc/crio/crio.conf.d/20-kubeadm.conf").content_string
        for registry in registries:
            plain_http = host.file("/etc/containers/registries.conf.d/50-plain-http.conf").content_string
            assert f'location = "{registry}"' in plain_http


def crio_setting(host, name: str) -> str:
    """A value of CRI-O's effective configuration (crio.conf and every drop-in merged).
    `crio config` prints a value equal to the default commented out: "# name = value"."""
    match = re.search(rf'(?m)^(?:# )?{name} = "?([^"\n]*)"?$', host.check_output("crio config 2>/dev/null"))
    assert match, f"crio config has no {name}"
    return match.group(1)


def crio_runtime_handler(host, handler: str) -> dict[str, str]:
    """The settings of one of CRI-O's runtime handlers, as CRI-O merged them."""
    text = host.check_output("crio config 2>/dev/null")
    assert f"[crio.runtime.runtimes.{handler}]" in text, f"CRI-O has no runtime handler {handler}"
    section = text.split(f"[crio.runtime.runtimes.{handler}]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'(?m)^(\w+) = "?([^"\n]*)"?$', section))


def crio_node(host, inventory: Inventory, node: str) -> None:
    if setting(inventory, node, "cluster_container_runtime") != "crio":
        pytest.skip("the node runs containerd (cluster_container_runtime)")


def test_crio_cgroup_manager_matches_the_kubelets(host, inventory: Inventory, node):
    crio_node(host, inventory, node)
    kubelet = host.file("/var/lib/kubelet/config.yaml").content_string
    driver = re.search(r"(?m)^cgroupDriver: (\S+)$", kubelet)
    assert driver and driver.group(1) == "systemd", kubelet
    assert crio_setting(host, "cgroup_manager") == "systemd"
    assert crio_setting(host, "conmon_cgroup") == "pod"


def test_crio_reports_runtime_and_network_ready(host, inventory: Inventory, node):
    crio_node(host, inventory, node)
    info = json.loads(host.check_output("crictl info -o json"))
    conditions = {c["type"]: c["status"] for c in info["status"]["conditions"]}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}, info["status"]


def test_crio_runs_the_pinned_pause_image_conmon_and_runc(host, inventory: Inventory, node):
    crio_node(host, inventory, node)
    registry = setting(inventory, node, "cluster_image_registry") or "registry.k8s.io"
    assert crio_setting(host, "pause_image") == f"{registry}/pause:3.9"
    assert f"{registry}/pause" in host.check_output("crictl images -o json")
    # the cri-o package's dependencies: Debian's conmon and runc at least at the measured versions
    for package, minimum in (("conmon", "2.1.6"), ("runc", "1.1.5")):
        installed = host.package(package).version
        assert host.run(f"dpkg --compare-versions {installed} ge {minimum}").rc == 0, (package, installed)
    assert host.check_output("conmon --version").startswith("conmon version 2.1.")
    runtime_path = inventory.var(node, "common_crio_runtime_path") or "/usr/sbin/runc"
    assert crio_setting(host, "default_runtime") == "runc"
    assert crio_runtime_handler(host, "runc")["runtime_path"] == runtime_path
    assert "runc version 1.1." in host.check_output(f"{runtime_path} --version")


def test_kubelet_talks_to_crio(host, inventory: Inventory, node):
    crio_node(host, inventory, node)
    flags = host.file("/var/lib/kubelet/kubeadm-flags.env").content_string
    config = host.file("/var/lib/kubelet/config.yaml").content_string
    endpoint = "unix:///var/run/crio/crio.sock"
    assert f"--container-runtime-endpoint={endpoint}" in flags or f"containerRuntimeEndpoint: {endpoint}" in config


def test_kubernetes_repository_signed_by_its_key(host):
    sources = host.file("/etc/apt/sources.list.d/kubernetes.sources").content_string
    assert "/core:/stable:/v1.29/deb/" in sources
    assert "Signed-By: /etc/apt/keyrings/kubernetes.asc" in sources
    key = host.file("/etc/apt/keyrings/kubernetes.asc").content_string
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


@pytest.mark.parametrize("package", PACKAGES)
def test_kubernetes_package_pinned_and_held(host, inventory: Inventory, node, package):
    version = setting(inventory, node, "cluster_kubernetes_version")
    installed = host.package(package)
    assert installed.is_installed
    assert installed.version.startswith(f"{version}-"), installed.version
    selection = host.check_output(f"dpkg --get-selections {package}").split()
    assert selection == [package, "hold"]


def test_kubelet_running_and_enabled(host):
    kubelet = host.service("kubelet")
    assert kubelet.is_running
    assert kubelet.is_enabled


def test_node_is_ready(host, master_host):
    name = host.check_output("hostname").strip().lower()
    ready = master_host.check_output(
        f"{KUBECTL} get node {name} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"
    )
    assert ready == "True"


def test_api_server_healthy_and_every_inventory_node_ready(master_host, inventory: Inventory):
    assert master_host.check_output(f"{KUBECTL} get --raw /readyz") == "ok"
    lines = master_host.check_output(
        f"{KUBECTL} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}} "
        f'{{.status.conditions[?(@.type=="Ready")].status}}{{"\\n"}}{{end}}\''
    ).splitlines()
    ready = dict(line.split() for line in lines)
    assert {name: ready.get(name) for name in inventory.nodes} == dict.fromkeys(inventory.nodes, "True")


def test_remote_user_kubeconfig_private(master_host, inventory: Inventory):
    user = inventory.var(inventory.master, "ansible_user")
    home = master_host.user(user).home
    kubeconfig = master_host.file(f"{home}/.kube/config")
    assert kubeconfig.user == user
    assert kubeconfig.mode == 0o600


def test_worker_joined_with_kubelet_credentials(worker_host):
    assert worker_host.file("/etc/kubernetes/kubelet.conf").exists
    # the join configuration held a token: it must not be left behind
    assert not worker_host.file("/etc/kubernetes/kubeadm-join.yaml").exists


def test_every_bootstrap_token_expires(master_host):
    # a token without expiry would let anyone who saw it join forever
    expiries = master_host.check_output("kubeadm token list -o jsonpath='{.expires}{\"\\n\"}'").splitlines()
    # (expired tokens are deleted by the token cleaner, so the list may be empty)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expiry) for expiry in expiries), expiries
