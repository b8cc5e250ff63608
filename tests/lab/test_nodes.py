"""The lab nodes for real: boot, Ansible over SSH, reboot, nested containers, down.

Runs on its own lab (LAB_NAME=labtest, 10.78.0.0/24, bridge labtestbr0), so the
default lab that other work uses is never touched. The tests run in file order:
up -> ping -> reboot -> ping -> nested container -> down -> nothing left.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.mirror.app_image import PODMAN_RUN_FLAGS
from lab.mirror.commands import APT_URL
from lab.paths import CACHE
from tests.conftest import run_tool

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-nspawn"), reason="needs root and nspawn"),
]

TEST_LAB = {"LAB_NAME": "labtest", "LAB_SUBNET": "10.78.0.0/24"}
STATE = CACHE / "labtest"
INVENTORY = STATE / "hosts.yml"
NODES = ["labtest-master", "labtest-worker-1", "labtest-worker-2"]
HOST_ADDRESS = "10.78.0.1"
SOURCES = "/etc/apt/sources.list"
PROOF_MESSAGE = "hello from an image built on the host"


def lab(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    result = run_tool(["python", "-m", "lab", *args], check=False, **{**TEST_LAB, **env})
    if check and result.returncode != 0:
        pytest.fail(f"python -m lab {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def on_node(node: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lab("ssh", node, command, check=check)


def ansible_ping() -> dict[str, bool]:
    result = run_tool(["ansible", "all", "-i", INVENTORY, "-m", "ansible.builtin.ping", "-o"], check=False)
    answers = {}
    for line in result.stdout.splitlines():
        host, _, rest = line.partition(" | ")
        answers[host] = rest.startswith("SUCCESS") and '"ping": "pong"' in rest
    return answers


@pytest.fixture(scope="module")
def test_lab() -> Iterator[None]:
    lab("down")  # leftovers of an interrupted run
    lab("up", "--nodes", "3")
    yield
    lab("down", check=False)


def test_up_writes_an_inventory_with_the_aws_group_names(test_lab):
    text = INVENTORY.read_text()
    for group in ("master:", "workers:", "ansible_user: admin"):
        assert group in text
    status = lab("status")
    assert status.stdout.count("running  ssh=yes") == 3, status.stdout


def test_ansible_reaches_every_node(test_lab):
    assert ansible_ping() == dict.fromkeys(NODES, True)


def test_up_again_is_quick_and_changes_nothing(test_lab):
    before = (STATE / "labtest-master.pid").read_text()
    result = lab("up", "--nodes", "3")
    assert "copy root filesystems (0 new)" in result.stderr
    assert "boot 0 node(s)" in result.stderr
    assert (STATE / "labtest-master.pid").read_text() == before


def test_node_has_what_a_kubelet_needs(test_lab):
    node = NODES[1]
    checks = {
        "sudo without password": "sudo -n true",
        "python3": "python3 -c 'import sys; assert sys.version_info >= (3, 11)'",
        "/dev/kmsg": "test -c /dev/kmsg",
        "writable /proc/sys": "sudo test -w /proc/sys/vm/overcommit_memory",
        "no swap": "test $(wc -l < /proc/swaps) -eq 1",
        "built-in modules load": "sudo modprobe br_netfilter && sudo modprobe overlay",
        "writable cgroups": "sudo mkdir /sys/fs/cgroup/pids/probe && sudo rmdir /sys/fs/cgroup/pids/probe",
        "default route via the bridge": f"ip route show default | grep -q 'via {HOST_ADDRESS}'",
        "names of the other nodes": f"getent hosts {NODES[0]} | grep -q 10.78.0.11",
        # every lab's nodes use the one mirror, served on the default lab's bridge address
        "apt points at the mirror": f"grep -q '^deb .*{APT_URL}/debian bookworm main$' {SOURCES}",
    }
    failed = [name for name, command in checks.items() if on_node(node, command, check=False).returncode != 0]
    assert failed == []


def test_nodes_have_separate_cgroups_on_the_host(test_lab):
    for node in NODES:
        paths = (STATE / f"{node}.cgroups").read_text().split()
        assert any(p.endswith(f"/pids/labtest/{node}") for p in paths)
        pids_dir = Path(next(p for p in paths if "/pids/" in p))
        pids = {int(p) for f in pids_dir.rglob("cgroup.procs") for p in f.read_text().split()}
        assert pids, f"{node}: no process in its own pids cgroup"


@pytest.fixture
def http_on_bridge() -> Iterator[int]:
    server = http.server.HTTPServer((HOST_ADDRESS, 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _connect(node: str, host: str, port: int) -> bool:
    probe = f"python3 -c 'import socket; socket.create_connection((\"{host}\", {port}), timeout=3)'"
    return on_node(node, probe, check=False).returncode == 0


def test_nodes_reach_the_bridge_and_each_other_but_nothing_else(test_lab, http_on_bridge):
    host_addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    outside = next(a for a in host_addresses if ":" not in a and not a.startswith("10.7"))
    assert _connect(NODES[1], HOST_ADDRESS, http_on_bridge)
    assert _connect(NODES[1], "10.78.0.11", 22)
    assert not _connect(NODES[1], outside, http_on_bridge), "a node reached the host beyond the bridge"
    assert not _connect(NODES[1], "1.1.1.1", 80), "a node reached the outside"


def _host_connects(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


def test_the_host_reaches_nodes_at_public_addresses_only(test_lab):
    """Like the internet and an EC2 VPC: the public address is translated to the node's
    private one; the private address itself cannot be reached from the host."""
    inventory = INVENTORY.read_text()
    assert "ansible_host: 100.78.0.12" in inventory
    # deploy.yml checks the app through the lab's load balancer
    assert f"app_load_balancer_address: {BALANCER}:80" in inventory
    assert _host_connects("100.78.0.12", 22)
    assert not _host_connects("10.78.0.12", 22), "the host reached a private address"
    # the node only knows its private address
    addresses = on_node(NODES[1], "ip -4 -o addr show scope global").stdout
    assert "10.78.0.12/" in addresses and "100.78." not in addresses


BALANCER = "100.78.0.10"


def _serve_on_node_port(node: str, answer: str) -> None:
    """A plain HTTP server on the app's NodePort (no cluster in this lab): /health and /version answer."""
    on_node(
        node,
        f"mkdir -p /tmp/www && echo {answer} > /tmp/www/version && echo ok > /tmp/www/health"
        " && sudo systemd-run --unit=nodeport-stand-in python3 -m http.server 30080 --directory /tmp/www",
    )


def _through_balancer(count: int) -> list[str]:
    answers = []
    for _ in range(count):
        try:
            with urllib.request.urlopen(f"http://{BALANCER}/version", timeout=3) as response:
                answers.append(response.read().decode().strip())
        except OSError as error:
            answers.append(f"error: {error}")
    return answers


def _balancer_states() -> dict[str, str]:
    from lab.nodes import balancer
    from lab.nodes.topology import Lab

    with pytest.MonkeyPatch.context() as patch:
        for key, value in TEST_LAB.items():
            patch.setenv(key, value)
        return balancer.server_states(Lab.from_env())


def _wait_for_states(wanted: dict[str, str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (states := _balancer_states()) != wanted:
        assert time.monotonic() < deadline, f"balancer servers {states}, not {wanted}"
        time.sleep(0.5)


def test_the_balancer_forwards_to_the_workers_that_pass_its_checks(test_lab):
    """haproxy from `lab up` at the lab's balancer address over both workers' NodePort:
    a worker whose NodePort stops answering leaves within its checks, and with
    retries on another worker not one request fails meanwhile."""
    _serve_on_node_port(NODES[1], "one")
    _serve_on_node_port(NODES[2], "two")
    _wait_for_states({NODES[1]: "UP", NODES[2]: "UP"})
    assert set(_through_balancer(10)) == {"one", "two"}
    on_node(NODES[2], "sudo systemctl stop nodeport-stand-in")
    # at once, before the checks noticed: a refused connect is tried again on the other worker
    assert _through_balancer(10) == ["one"] * 10
    _wait_for_states({NODES[1]: "UP", NODES[2]: "DOWN"})
    on_node(NODES[1], "sudo systemctl stop nodeport-stand-in")
    _wait_for_states({NODES[1]: "DOWN", NODES[2]: "DOWN"})
    assert all(a.startswith("error") for a in _through_balancer(2))


def test_reboot_restarts_systemd_and_keeps_state(test_lab):
    node = NODES[2]
    on_node(
        node,
        "sudo touch /run/before-reboot && touch ~/kept"
        " && echo net.ipv4.ip_forward=1 | sudo tee /etc/sysctl.d/90-labtest.conf"
        " && echo br_netfilter | sudo tee /etc/modules-load.d/labtest.conf"
        " && sudo sysctl -qw net.ipv4.ip_forward=0",
    )
    lab("reboot", node)
    after = on_node(
        node,
        "test ! -e /run/before-reboot && test -e ~/kept && cat /proc/sys/net/ipv4/ip_forward"
        " && systemctl is-active systemd-modules-load.service && systemctl is-system-running --wait",
    ).stdout.split()
    assert after == ["1", "active", "running"]  # sysctl.d and modules-load.d applied at boot
    assert ansible_ping() == dict.fromkeys(NODES, True)


def test_ansible_reboot_module_sees_the_node_come_back(test_lab):
    node = NODES[1]
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    before = on_node(node, boot_id).stdout
    reboot = ["-b", "-m", "ansible.builtin.reboot", "-a", "reboot_timeout=120", "-o"]
    result = run_tool(["ansible", node, "-i", INVENTORY, *reboot], check=False)
    assert "rebooted" in result.stdout and result.returncode == 0, result.stdout + result.stderr
    assert on_node(node, boot_id).stdout != before


# ---------------------------------------------------------------- nested containers


def _download_debs(directory: Path, *packages: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *packages], cwd=directory, check=True, capture_output=True)
    return [next(directory.glob(f"{package}_*.deb")) for package in packages]


@pytest.fixture(scope="module")
def proof_image(tmp_path_factory) -> Path:
    """A tiny image built here with podman: a busybox root plus a file and a command."""
    work = tmp_path_factory.mktemp("proof-image")
    (busybox_deb,) = _download_debs(CACHE / "lab-proof", "busybox-static")
    root = work / "root"
    subprocess.run(["dpkg-deb", "-x", busybox_deb, root], check=True)
    for applet in ("sh", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    base = "localhost/lab-proof-base:1"
    tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "-", base], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    (work / "message").write_text(PROOF_MESSAGE + "\n")
    (work / "Containerfile").write_text(f'FROM {base}\nCOPY message /message\nCMD ["/bin/cat", "/message"]\n')
    image = "localhost/lab-proof:1"
    subprocess.run(["podman", "build", *PODMAN_RUN_FLAGS, "-q", "-t", image, work], check=True, capture_output=True)
    archive = work / "lab-proof.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", archive, image], check=True)
    return archive


def test_containerd_in_a_node_runs_an_image_built_on_the_host(test_lab, proof_image):
    node, address = NODES[1], "100.78.0.12"  # the public address, as the host reaches it
    debs = _download_debs(CACHE / "lab-proof", "containerd", "runc")
    ssh_options = ["-i", str(CACHE / "ssh/id_ed25519"), "-o", f"UserKnownHostsFile={STATE / 'known_hosts'}"]
    subprocess.run(
        ["scp", "-q", *ssh_options, *debs, proof_image, f"admin@{address}:/tmp/"], check=True, capture_output=True
    )
    on_node(node, "sudo dpkg -i /tmp/containerd_*.deb /tmp/runc_*.deb >/dev/null && systemctl is-active containerd")
    on_node(node, "sudo ctr -n k8s.io images import /tmp/lab-proof.tar")
    result = on_node(node, "sudo ctr -n k8s.io run --rm localhost/lab-proof:1 proof")
    assert result.stdout.strip() == PROOF_MESSAGE
    # runc made the container's cgroups inside the node's own cgroup root on the host
    node_pids = Path(next(p for p in (STATE / f"{node}.cgroups").read_text().split() if "/pids/" in p))
    assert (node_pids / "k8s.io").is_dir()


# ---------------------------------------------------------------- down


def _leftovers() -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = proc.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"systemd-nspawn") and any(b"labtest-" in a for a in argv):
            found.append(f"process {proc.parent.name}")
        if argv[0].endswith(b"haproxy") and any(str(STATE).encode() in a for a in argv):
            found.append(f"balancer process {proc.parent.name}")
    found += [f"link {link.name}" for link in Path("/sys/class/net").iterdir() if "labtest" in link.name]
    found += [f"balancer file {p.name}" for p in STATE.glob("balancer.*") if p.suffix != ".log"]
    found += [
        f"mount {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(STATE) in line
    ]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/**/labtest") if p.is_dir()]
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True)
        found += [f"iptables {table} {line}" for line in rules.stdout.splitlines() if "LAB-LABTEST" in line]
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "100.78.0.0/24" in line]
    found += [f"node root {p}" for p in (STATE / "nodes").glob("*")] if (STATE / "nodes").exists() else []
    return found


def test_down_leaves_nothing_behind(test_lab):
    assert _leftovers() != []  # the probe sees a running lab
    lab("down")
    assert _leftovers() == []
    assert not INVENTORY.exists()
    lab("down")  # idempotent


def test_failed_up_names_the_step_and_cleans_up():
    env = {"LAB_NAME": "labtest", "LAB_SUBNET": "10.78.0.0/24", "LAB_BOOT_TIMEOUT": "0"}
    result = lab("up", "--nodes", "1", check=False, **env)
    assert result.returncode == 1
    assert "FAILED: step 'wait for SSH on every node' failed" in result.stderr
    assert _leftovers() == []
