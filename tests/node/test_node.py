"""What the cluster roles promise on every node, checked on the lab nodes over SSH (testinfra).

Run after playbooks/cluster.yml: `.venv/bin/python -m pytest -m node tests/node`.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import testinfra
import yaml

from lab.paths import REPO
from tests.conftest import VENV_BIN, run_tool
from tests.node.lab_inventory import Inventory, setting, ssh_host_url

pytestmark = pytest.mark.node

KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "net.ipv4.ip_forward": 1,
    # a connection to a dead node's pod is forgotten in 5 s, not 120 (issue 22)
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": 5,
}
PACKAGES = ("kubelet", "kubeadm", "kubectl")


def test_swap_is_off(host):
    active = host.file("/proc/swaps").content_string.splitlines()[1:]
    assert active == [], f"swap is on: {active}"


# A swap file in /etc/fstab, as an EC2 image may bring one. The lab's node image
# has no swap line at all, so the fixture adds one for the role to turn off.
# Swap is global to the kernel the lab nodes share: the file is made a swap
# area (mkswap) but never switched on, and the cleanup switches it off should
# anything have. systemd ignores fstab swap entries inside a container, so on
# the lab a reboot could not switch it on either; what the role must do, and
# what boot reads on EC2, is the fstab entry commented out.
SWAP_FILE = "/var/lib/kubeadm-node-test.swap"
SWAP_ENTRY = f"{SWAP_FILE} none swap sw 0 0"


def fstab_swap_sources(host) -> list[str]:
    """The swap areas /etc/fstab would switch on at boot (comments ignored, as boot ignores them)."""
    result = host.run("findmnt --fstab --types swap --noheadings --output SOURCE")
    return result.stdout.split()


def active_swap(host) -> list[str]:
    return host.file("/proc/swaps").content_string.splitlines()[1:]


@dataclass(frozen=True)
class SwapNode:
    name: str
    host: Any
    playbook: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def swap_node(inventory: Inventory) -> Iterator[SwapNode]:
    """A worker given a swap entry in /etc/fstab, then playbooks/cluster.yml run on it (--limit); restored after."""
    name = (inventory.workers or [inventory.master])[0]
    host = testinfra.get_host(ssh_host_url(name))
    fstab = host.file("/etc/fstab")
    original = fstab.content_string if fstab.exists else None
    assert active_swap(host) == [], "swap is on already: this test will not add more"
    host.run_expect([0], f"rm -f {SWAP_FILE} && dd if=/dev/zero of={SWAP_FILE} bs=1M count=16 status=none")
    host.run_expect([0], f"chmod 600 {SWAP_FILE} && mkswap {SWAP_FILE}")
    # on a line of its own even if the file lacks a final newline
    host.run_expect([0], f"printf '\\n%s\\n' '{SWAP_ENTRY}' >> /etc/fstab")
    try:
        # the test sees the thing it checks: boot would switch this file on
        assert SWAP_FILE in fstab_swap_sources(host), host.file("/etc/fstab").content_string
        assert not any(SWAP_FILE in line for line in active_swap(host))
        playbook = run_tool(
            [VENV_BIN / "ansible-playbook", "-i", inventory.path, REPO / "playbooks" / "cluster.yml", "--limit", name],
            check=False,
        )
        yield SwapNode(name, host, playbook)
    finally:
        if any(SWAP_FILE in line for line in active_swap(host)):
            host.run(f"swapoff {SWAP_FILE}")
        if original is None:
            host.run("rm -f /etc/fstab")
        else:
            encoded = base64.b64encode(original.encode()).decode()
            host.run_expect([0], f"echo {encoded} | base64 -d > /etc/fstab")
        host.run(f"rm -f {SWAP_FILE}")


def test_swap_entry_commented_out_not_deleted(swap_node: SwapNode):
    result = swap_node.playbook
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = swap_node.host.file("/etc/fstab").content_string.splitlines()
    assert SWAP_FILE not in fstab_swap_sources(swap_node.host), lines
    # kept, as a comment, for whoever wants it back
    assert f"# {SWAP_ENTRY}" in lines, lines
    assert active_swap(swap_node.host) == []


def test_swap_stays_off_after_reboot(swap_node: SwapNode, master_host):
    assert swap_node.playbook.returncode == 0, swap_node.playbook.stdout[-4000:]
    boot_id = f"{KUBECTL} get node {swap_node.name} -o jsonpath='{{.status.nodeInfo.bootID}}'"
    ready = f"{KUBECTL} get node {swap_node.name} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"
    before = master_host.check_output(boot_id)
    rebooted = run_tool([VENV_BIN / "python", "-m", "lab", "reboot", swap_node.name], check=False)
    assert rebooted.returncode == 0, rebooted.stdout + rebooted.stderr
    # back for the tests after this one: Ready as reported by the kubelet of the new boot
    deadline = time.monotonic() + 300
    while master_host.check_output(boot_id) == before or master_host.check_output(ready) != "True":
        assert time.monotonic() < deadline, f"{swap_node.name} not Ready within 300 s of its reboot"
        time.sleep(2)
    assert active_swap(swap_node.host) == []
    assert SWAP_FILE not in fstab_swap_sources(swap_node.host)
    assert f"# {SWAP_ENTRY}" in swap_node.host.file("/etc/fstab").content_string.splitlines()


def test_overlay_and_bridge_netfilter_present(host):
    assert "overlay" in host.file("/proc/filesystems").content_string.split()
    assert host.file("/proc/sys/net/bridge").is_directory
    persisted = host.file("/etc/modules-load.d/kubernetes.conf").content_string.split()
    assert {"overlay", "br_netfilter"} <= set(persisted)


@pytest.mark.parametrize(("name", "value"), SYSCTLS.items())
def test_sysctl_applied_and_persisted(host, name, value):
    assert host.sysctl(name) == value
    persisted = host.file("/etc/sysctl.d/99-kubernetes.conf").content_string.splitlines()
    assert f"{name}={value}" in [line.replace(" ", "") for line in persisted]


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


def go_duration_seconds(duration: str) -> int:
    """A Go duration as kubeadm's ttl takes it, such as 1h0m0s or 30m."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def role_setting(inventory: Inventory, host: str, role: str, name: str) -> object:
    """A role variable as a play sees it: the inventory's value, else the role's default."""
    value = inventory.var(host, name)
    if value is None:
        value = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[name]
    return value


def bootstrap_tokens(master_host) -> dict[str, tuple[str, str]]:
    """token id -> (expires, description) of every bootstrap token (the secret half is dropped)."""
    template = '{.token}{" "}{.expires}{" "}{.description}{"\\n"}'
    out = master_host.check_output(f"kubeadm token list -o jsonpath='{template}'")
    tokens = {}
    for line in out.splitlines():
        token, _, rest = line.partition(" ")
        expires, _, description = rest.partition(" ")
        tokens[token.split(".")[0]] = (expires, description)
    return tokens


@pytest.fixture
def init_token(master_host, inventory: Inventory) -> Iterator[str]:
    """A bootstrap token made as `kubeadm init` made the first one: the init phase, from the configuration the
    master role wrote. kubeadm init's own token lives master_init_token_ttl (1 h) and joins reuse it, so after
    that no token need exist; this one is deleted afterwards."""
    config = role_setting(inventory, inventory.master, "master", "master_kubeadm_config_path")
    before = set(bootstrap_tokens(master_host))
    master_host.check_output(f"kubeadm init phase bootstrap-token --config {config} --skip-token-print")
    made = set(bootstrap_tokens(master_host)) - before
    assert len(made) == 1, f"kubeadm init phase bootstrap-token made {len(made)} tokens"
    token_id = made.pop()
    yield token_id
    master_host.run(f"kubeadm token delete {token_id}")


def test_every_bootstrap_token_expires(master_host, inventory: Inventory, init_token: str):
    # a token without expiry would let anyone who saw it join forever
    tokens = bootstrap_tokens(master_host)
    assert init_token in tokens
    now = datetime.now(UTC)
    init_ttl = go_duration_seconds(str(role_setting(inventory, inventory.master, "master", "master_init_token_ttl")))
    join_ttl = go_duration_seconds(str(role_setting(inventory, inventory.master, "worker", "worker_join_token_ttl")))
    for token_id, (expires, description) in tokens.items():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires), (token_id, expires, description)
        left = (datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - now).total_seconds()
        # no token outlives the longest TTL the roles give one (kubeadm's default would be 24 h)
        assert left <= max(init_ttl, join_ttl) + 60, (token_id, expires, description)
    # the init token's TTL is the master role's, not kubeadm's default
    expires, description = tokens[init_token]
    left = (datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - now).total_seconds()
    assert init_ttl - 120 <= left <= init_ttl + 60, (expires, description)
    config = role_setting(inventory, inventory.master, "master", "master_kubeadm_config_path")
    init_configuration = next(
        doc
        for doc in yaml.safe_load_all(master_host.file(str(config)).content_string)
        if doc and doc.get("kind") == "InitConfiguration"
    )
    assert description == init_configuration["bootstrapTokens"][0].get("description", ""), description
