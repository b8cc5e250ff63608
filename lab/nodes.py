"""The lab nodes: Debian bookworm machines booted with systemd-nspawn on this host.

Each node is a plain directory copied from a cached, prepared debootstrap root,
booted by `systemd-nspawn --boot` in its own network namespace (a veth on the lab
bridge) and its own cgroup roots, and reached over SSH as `admin` with the lab
key, the way Ansible reaches an EC2 node as `ubuntu`.

A node runs under a small supervisor shell in its own session, so it outlives
the command that started it; when systemd in the node reboots, nspawn exits
with 133 and the supervisor boots the same root again (state kept).

Several labs can coexist (tests use their own): LAB_NAME (default "lab") names
the nodes, the cgroups, the firewall chain and the state directory
CACHE/<LAB_NAME>; LAB_BRIDGE and LAB_SUBNET pick the network; LAB_INVENTORY the
inventory written (default inventory/lab/hosts.yml for the default lab only).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab import labnet
from lab.paths import CACHE, REPO
from lab.rootfs import ROOTFS_CACHE, debootstrap
from lab.run import StepFailed, exclusive, log, run, step

NODE_PACKAGES = [
    "dbus",
    "gpg",
    "iproute2",
    "iputils-ping",
    "kmod",
    "openssh-server",
    "procps",
    "python3",
    "sudo",
    "systemd",
    "systemd-sysv",
]
SSH_DIR = CACHE / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"
ADMIN_USER = "admin"
NODE_INTERFACE = "eth0"
FIRST_HOST_NUMBER = 11
MAX_NODES = 20
DEFAULT_LAB = "lab"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# LAB_BOOT_TIMEOUT: seconds to wait for SSH after booting (slow disks need more).
BOOT_TIMEOUT = float(os.environ.get("LAB_BOOT_TIMEOUT", "120"))
STOP_TIMEOUT = 30.0
# Bumped whenever prepare_base() changes what it writes, so the cached base is rebuilt.
BASE_VERSION = "3"

# Like Debian's and Ubuntu's minimal cloud images: no docs, manuals or
# translations, now or from later installs. A quarter less to copy per node.
DPKG_EXCLUDES = """# lab: no documentation, manuals or translations (minimal image)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

# nspawn exits 133 when systemd in the node reboots (`reboot`, Ansible's reboot
# module): boot the same root again. Every boot makes a new veth, so the
# supervisor puts it on the bridge ($LAB_VETH, $LAB_BRIDGE) each time.
SUPERVISOR = """
while :; do
    "$@" &
    child=$!
    tries=0
    while [ ! -e "/sys/class/net/$LAB_VETH" ] && [ $tries -lt 300 ] && kill -0 $child 2>/dev/null; do
        sleep 0.1
        tries=$((tries + 1))
    done
    ip link set "$LAB_VETH" master "$LAB_BRIDGE" up || echo "[lab] could not attach $LAB_VETH to $LAB_BRIDGE"
    wait $child
    rc=$?
    [ "$rc" -eq 133 ] || exit "$rc"
    echo "[lab] node rebooting"
done
"""

# The node's cgroup controllers are mounted read-only by nspawn; runc must create
# cgroups, so they are mounted again, read-write, before any container runtime.
CGROUP_RW_SCRIPT = """#!/bin/sh
# lab: make the cgroup v1 controllers writable (nspawn mounts them read-only).
set -e
for dir in /sys/fs/cgroup/*; do
    name=${dir##*/}
    case $name in unified|systemd) continue ;; esac
    [ -L "$dir" ] && continue
    grep -q " $dir cgroup ro," /proc/self/mounts || continue
    umount -l "$dir"
    mount -t cgroup -o "$name" cgroup "$dir"
done
"""
# This machine withholds CAP_SYS_RESOURCE even from root (the bounding set of
# every process lacks it: CapBnd 000001fffeffffff), so runc fails on
# - a negative oom_score_adj, which the kubelet (-997: Guaranteed and
#   node-critical pods) and CRI-O (-998: infra containers) ask for, and
# - a privileged container, to which CRI-O gives every capability the kernel
#   knows ("unable to apply caps: operation not permitted"; containerd only
#   gives those its own process holds).
# CRI-O 1.29 has no setting for either (containerd has restrict_oom_score_adj),
# so the lab's CRI-O runs runc through this wrapper (common_crio_runtime_path in
# inventory/lab): in the bundle's config.json or an exec's process.json,
# negative oomScoreAdj becomes 0 and CAP_SYS_RESOURCE is dropped, then the real
# runc runs. EC2 nodes need none of this.
RUNC_WRAPPER_PATH = "/usr/local/sbin/lab-runc"
RUNC_WRAPPER = """#!/bin/sh
# lab: runc without what this machine withholds from root (CAP_SYS_RESOURCE):
# no negative OOM score adjustment, no CAP_SYS_RESOURCE capability.
adapt() {
    [ -f "$1" ] || return 0
    sed -i -E \\
        -e 's/"oomScoreAdj":[[:space:]]*-[0-9]+/"oomScoreAdj":0/g' \\
        -e 's/"CAP_SYS_RESOURCE"[[:space:]]*,[[:space:]]*//g' \\
        -e 's/,[[:space:]]*"CAP_SYS_RESOURCE"//g' \\
        -e 's/\\[[[:space:]]*"CAP_SYS_RESOURCE"[[:space:]]*\\]/[]/g' \\
        "$1"
}
previous=
for arg in "$@"; do
    case $previous in
        --bundle | -b) adapt "$arg/config.json" ;;
        --process | -p) adapt "$arg" ;;
    esac
    case $arg in
        --bundle=*) adapt "${arg#--bundle=}/config.json" ;;
        --process=*) adapt "${arg#--process=}" ;;
    esac
    previous=$arg
done
exec /usr/sbin/runc "$@"
"""
# A host's systemd mounts the BPF filesystem at /sys/fs/bpf; in a container it
# does not, and nspawn's /sys has no /sys/fs/bpf at all. Calico mounts its
# hostPath (type Directory) into calico-node, so the node gets it as on a host.
BPFFS_SCRIPT = """#!/bin/sh
# lab: the BPF filesystem at /sys/fs/bpf, as systemd mounts it on a host
set -e
mkdir -p /sys/fs/bpf
mountpoint -q /sys/fs/bpf || mount -t bpf -o mode=700 bpffs /sys/fs/bpf
"""
BPFFS_UNIT = """[Unit]
Description=lab: BPF filesystem at /sys/fs/bpf
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target crio.service containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-bpffs

[Install]
WantedBy=sysinit.target
"""
# systemd-networkd waits forever for udev to initialise links when /sys is
# writable (it is: the kubelet needs that), and there is no udev in a node, so a
# oneshot unit sets the static address and the route, like cloud-init would.
NETWORK_SCRIPT = """#!/bin/sh
# lab: static address and default route of this node (values in /etc/lab/network)
set -e
. /etc/lab/network
ip link set lo up
ip link set "$INTERFACE" up
ip addr replace "$ADDRESS" dev "$INTERFACE"
ip route replace default via "$GATEWAY" dev "$INTERFACE"
"""
NETWORK_UNIT = """[Unit]
Description=lab: static network of the node
DefaultDependencies=no
After=local-fs.target network-pre.target
Before=network.target network-online.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-network

[Install]
WantedBy=multi-user.target network-online.target
"""
CGROUP_RW_UNIT = """[Unit]
Description=lab: writable cgroup controllers for the container runtime
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target containerd.service crio.service kubelet.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-cgroup-rw

[Install]
WantedBy=sysinit.target
"""

# Modules the cluster asks for that this kernel has built in. There is no
# /lib/modules on the host, so without this list modprobe and
# systemd-modules-load would fail for them; with it they report the truth.
BUILTIN_MODULES = {
    "CONFIG_OVERLAY_FS": "kernel/fs/overlayfs/overlay.ko",
    "CONFIG_BRIDGE": "kernel/net/bridge/bridge.ko",
    "CONFIG_BRIDGE_NETFILTER": "kernel/net/bridge/br_netfilter.ko",
    "CONFIG_VXLAN": "kernel/drivers/net/vxlan/vxlan.ko",
    "CONFIG_VETH": "kernel/drivers/net/veth.ko",
    "CONFIG_NF_CONNTRACK": "kernel/net/netfilter/nf_conntrack.ko",
    "CONFIG_NF_NAT": "kernel/net/netfilter/nf_nat.ko",
    "CONFIG_IP_NF_IPTABLES": "kernel/net/ipv4/netfilter/ip_tables.ko",
    "CONFIG_IP_NF_FILTER": "kernel/net/ipv4/netfilter/iptable_filter.ko",
    "CONFIG_IP_NF_NAT": "kernel/net/ipv4/netfilter/iptable_nat.ko",
    "CONFIG_IP_NF_MANGLE": "kernel/net/ipv4/netfilter/iptable_mangle.ko",
    "CONFIG_IP_NF_TARGET_MASQUERADE": "kernel/net/ipv4/netfilter/ipt_MASQUERADE.ko",
    "CONFIG_NETFILTER_XT_MATCH_COMMENT": "kernel/net/netfilter/xt_comment.ko",
    "CONFIG_NETFILTER_XT_MATCH_CONNTRACK": "kernel/net/netfilter/xt_conntrack.ko",
    "CONFIG_NETFILTER_XT_MATCH_MULTIPORT": "kernel/net/netfilter/xt_multiport.ko",
    "CONFIG_NETFILTER_XT_MATCH_STATISTIC": "kernel/net/netfilter/xt_statistic.ko",
    "CONFIG_NETFILTER_XT_MATCH_MARK": "kernel/net/netfilter/xt_mark.ko",
    "CONFIG_NETFILTER_XT_MATCH_ADDRTYPE": "kernel/net/netfilter/xt_addrtype.ko",
    "CONFIG_NETFILTER_XT_TARGET_MASQUERADE": "kernel/net/netfilter/xt_MASQUERADE.ko",
    "CONFIG_NF_TABLES": "kernel/net/netfilter/nf_tables.ko",
    "CONFIG_IP_SET": "kernel/net/netfilter/ipset/ip_set.ko",
}


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Node:
    name: str
    number: int  # last octet of the addresses
    address: ipaddress.IPv4Address  # private: what the nodes and kubeadm use
    role: str  # "master" or "workers": the inventory group
    lab: Lab

    @property
    def public_address(self) -> ipaddress.IPv4Address:
        """What the host (the controller) reaches the node at, like an EC2 public IP."""
        return self.lab.public_network[self.number]

    @property
    def root(self) -> Path:
        return self.lab.state_dir / "nodes" / self.name

    @property
    def pidfile(self) -> Path:
        return self.lab.state_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.lab.state_dir / f"{self.name}.log"

    @property
    def cgroupfile(self) -> Path:
        return self.lab.state_dir / f"{self.name}.cgroups"

    @property
    def host_veth(self) -> str:
        return f"ve-{self.lab.name}-{self.number}"


@dataclass(frozen=True)
class Lab:
    name: str
    bridge: str
    network: ipaddress.IPv4Network  # private, the nodes' own
    public_network: ipaddress.IPv4Network  # translated to the private one by the host
    state_dir: Path
    inventory: Path

    @classmethod
    def from_env(cls) -> Lab:
        name = os.environ.get("LAB_NAME", DEFAULT_LAB)
        # the name goes into interface names (15 characters at most)
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", name):
            raise StepFailed(f"LAB_NAME {name!r}: use 1-8 lowercase letters or digits, starting with a letter")
        bridge = os.environ.get("LAB_BRIDGE", f"{name}br0")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,15}", bridge):
            raise StepFailed(f"LAB_BRIDGE {bridge!r} is not a valid interface name")
        try:
            network = ipaddress.IPv4Network(os.environ.get("LAB_SUBNET", "10.77.0.0/24"))
        except ValueError as error:
            raise StepFailed(f"LAB_SUBNET: {error}") from error
        if network.prefixlen > 26 or not network.is_private:
            raise StepFailed(f"LAB_SUBNET {network}: use a private /26 or larger")
        # default: the private subnet with 100 as its first octet (10.77.0.0/24 -> 100.77.0.0/24)
        default_public = ipaddress.IPv4Network((100 << 24 | int(network.network_address) & 0xFFFFFF, network.prefixlen))
        try:
            public = ipaddress.IPv4Network(os.environ.get("LAB_PUBLIC_SUBNET", str(default_public)))
        except ValueError as error:
            raise StepFailed(f"LAB_PUBLIC_SUBNET: {error}") from error
        if public.prefixlen != network.prefixlen or public.overlaps(network):
            raise StepFailed(f"LAB_PUBLIC_SUBNET {public}: use a /{network.prefixlen} apart from LAB_SUBNET {network}")
        state_dir = CACHE / name
        default_inventory = REPO / "inventory/lab/hosts.yml" if name == DEFAULT_LAB else state_dir / "hosts.yml"
        inventory = Path(os.environ.get("LAB_INVENTORY", default_inventory))
        return cls(name, bridge, network, public, state_dir, inventory)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_LAB

    @property
    def host_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.network[1]}/{self.network.prefixlen}")

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def nodes(self, count: int) -> list[Node]:
        if not 1 <= count <= MAX_NODES:
            raise StepFailed(f"--nodes {count}: use 1 to {MAX_NODES}")
        result = [Node(f"{self.name}-master", FIRST_HOST_NUMBER, self.network[FIRST_HOST_NUMBER], "master", self)]
        for i in range(1, count):
            number = FIRST_HOST_NUMBER + i
            result.append(Node(f"{self.name}-worker-{i}", number, self.network[number], "workers", self))
        return result

    def recorded_count(self) -> int:
        """How many nodes the last `up` made (0 if none)."""
        if not self.state_file.is_file():
            return 0
        return int(json.loads(self.state_file.read_text()).get("nodes", 0))

    def existing_nodes(self) -> list[Node]:
        """Nodes that have a root, a pid or cgroups left, whatever the recorded count."""
        count = self.recorded_count()
        nodes_dir = self.state_dir / "nodes"
        if nodes_dir.is_dir():
            count = max(count, len([p for p in nodes_dir.iterdir() if p.is_dir()]))
        for leftover in self.state_dir.glob("*.cgroups") if self.state_dir.is_dir() else []:
            match = re.search(r"-worker-(\d+)$", leftover.stem)
            count = max(count, int(match.group(1)) + 1 if match else 1)
        return self.nodes(count) if count else []

    def node(self, name: str) -> Node:
        for node in self.existing_nodes():
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.existing_nodes()) or "none; run `make lab-up`"
        raise StepFailed(f"no lab node {name!r} (nodes: {known})")


# ---------------------------------------------------------------- ssh


def ensure_ssh_key() -> Path:
    """The lab key, generated once into CACHE/ssh (outside the repository)."""
    if not SSH_KEY.is_file():
        with step("generate the lab SSH key"):
            SSH_DIR.mkdir(parents=True, exist_ok=True)
            SSH_DIR.chmod(0o700)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeadm-lab", "-f", SSH_KEY])
    return SSH_KEY


def ssh_options(lab: Lab) -> list[str]:
    return [
        "-i",
        str(SSH_KEY),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "LogLevel=ERROR",
    ]


def ssh_argv(node: Node, *command: str) -> list[str]:
    return ["ssh", *ssh_options(node.lab), f"{ADMIN_USER}@{node.public_address}", *command]


def ssh_answers(node: Node) -> bool:
    result = subprocess.run(
        ssh_argv(node, "true"), stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=15
    )
    return result.returncode == 0


def write_known_hosts(lab: Lab, nodes: list[Node]) -> None:
    lines = []
    for node in nodes:
        for pub in sorted((node.root / "etc/ssh").glob("ssh_host_*_key.pub")):
            keytype, key = pub.read_text().split()[:2]
            lines.append(f"{node.name},{node.address},{node.public_address} {keytype} {key}\n")
    lab.known_hosts.write_text("".join(lines))


# ---------------------------------------------------------------- root filesystems


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _builtin_modules_list() -> str:
    """modules.builtin lines for the modules the cluster uses that are compiled in."""
    try:
        config = subprocess.run(["zcat", "/proc/config.gz"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    built_in = {line.split("=")[0] for line in config.splitlines() if line.endswith("=y")}
    return "".join(f"{path}\n" for symbol, path in BUILTIN_MODULES.items() if symbol in built_in)


def prepare_base() -> Path:
    """The debootstrap root plus everything every node shares; cached."""
    bootstrap = debootstrap("lab-node", NODE_PACKAGES)
    builtin = _builtin_modules_list()
    kernel = os.uname().release
    inputs = [bootstrap.name, BASE_VERSION, CGROUP_RW_SCRIPT, CGROUP_RW_UNIT, NETWORK_SCRIPT, NETWORK_UNIT]
    inputs += [DPKG_EXCLUDES, RUNC_WRAPPER, BPFFS_SCRIPT, BPFFS_UNIT]
    key = hashlib.sha256("\0".join([*inputs, builtin, kernel]).encode()).hexdigest()[:12]
    base = ROOTFS_CACHE / f"lab-node-base-{key}"
    if (base / ".complete").is_file():
        return base
    with step("prepare the node base root (admin user, sshd, network and cgroup units)"):
        partial = base.with_name(base.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        run(["cp", "-a", "--reflink=auto", bootstrap, partial])
        (partial / ".complete").unlink(missing_ok=True)

        def chroot(*argv: str) -> None:
            run(["chroot", partial, *argv], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})

        chroot("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", ADMIN_USER)
        chroot("usermod", "--password", "*", ADMIN_USER)  # no password, key only, not locked
        _write(partial / "etc/sudoers.d/admin", f"{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
        _write(partial / "etc/ssh/sshd_config.d/lab.conf", "PasswordAuthentication no\nUseDNS no\n")
        for host_key in (partial / "etc/ssh").glob("ssh_host_*"):
            host_key.unlink()  # every node gets its own
        _write(partial / "usr/local/sbin/lab-cgroup-rw", CGROUP_RW_SCRIPT, 0o755)
        _write(partial / "etc/systemd/system/lab-cgroup-rw.service", CGROUP_RW_UNIT)
        _write(partial / "usr/local/sbin/lab-network", NETWORK_SCRIPT, 0o755)
        _write(partial / "etc/systemd/system/lab-network.service", NETWORK_UNIT)
        _write(partial / RUNC_WRAPPER_PATH.lstrip("/"), RUNC_WRAPPER, 0o755)
        _write(partial / "usr/local/sbin/lab-bpffs", BPFFS_SCRIPT, 0o755)
        _write(partial / "etc/systemd/system/lab-bpffs.service", BPFFS_UNIT)
        chroot("systemctl", "enable", "lab-network.service", "lab-cgroup-rw.service", "lab-bpffs.service")
        # nspawn has no real consoles; the getty on them only restarts and logs.
        chroot("systemctl", "mask", "console-getty.service", "getty@tty1.service")
        _write(partial / "etc/dpkg/dpkg.cfg.d/lab-minimal", DPKG_EXCLUDES)
        for pattern in ("usr/share/doc/*/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):
            for path in partial.glob(pattern):
                if path.name not in ("copyright", "locale.alias"):
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        _write(partial / "etc/fstab", "# lab node: no swap, the root is a plain directory\n")
        _write(partial / "etc/machine-id", "")
        if builtin:
            modules = partial / "lib/modules" / kernel
            _write(modules / "modules.builtin", builtin)
            _write(modules / "modules.order", "")
            chroot("depmod", kernel)
        for lists in (partial / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()  # they describe deb.debian.org, which nodes cannot reach
        (partial / ".complete").write_text(key + "\n")
        partial.rename(base)
        for stale in ROOTFS_CACHE.glob("lab-node-base-*"):
            if stale != base:  # made by an older version of this function
                shutil.rmtree(stale)
    return base


def _mirror_public_key() -> Path | None:
    from lab import mirror

    getter: Callable[[], Path] | None = getattr(mirror, "public_key_path", None)
    if getter is None:
        return None
    path = Path(getter())
    return path if path.is_file() else None


SOURCES_MARKER = "# the lab mirror (lab/mirror.py); nodes reach nothing else\n"


def configure_node(node: Node, nodes: list[Node], new: bool) -> None:
    """Per-node files. A new node gets all of them; on an existing node `up` only
    adds missing names to /etc/hosts and refreshes the lab's apt source and key,
    so what roles changed in a running node stays as they left it."""
    lab, root = node.lab, node.root
    if new:
        _write(root / "etc/hostname", f"{node.name}\n")
        _write(
            root / "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {node.name}\n{lab.host_address.ip} {lab.name}-host\n"
        )
        # Nothing answers DNS on the lab network; a nameserver line keeps resolvers
        # (CoreDNS among them) from failing on an empty resolv.conf.
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        _write(resolv, f"nameserver {lab.host_address.ip}\n")
        network = f"INTERFACE={NODE_INTERFACE}\nADDRESS={node.address}/{lab.network.prefixlen}\n"
        _write(root / "etc/lab/network", network + f"GATEWAY={lab.host_address.ip}\n")
        uid_gid = (root / "etc/passwd").read_text().split(f"\n{ADMIN_USER}:x:")[1].split(":")[:2]
        ssh_dir = root / "home" / ADMIN_USER / ".ssh"
        _write(ssh_dir / "authorized_keys", SSH_KEY.with_suffix(".pub").read_text(), 0o600)
        ssh_dir.chmod(0o700)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, int(uid_gid[0]), int(uid_gid[1]))
    hosts = root / "etc/hosts"
    named = hosts.read_text()
    missing = [o for o in nodes if not re.search(rf"\s{re.escape(o.name)}(\s|$)", named, re.MULTILINE)]
    if missing:
        with hosts.open("a") as file:
            file.writelines(f"{o.address} {o.name}\n" for o in missing)
    # apt: the mirror's Debian subset on the bridge, signed with the lab key.
    key = _mirror_public_key()
    signed_by = ""
    if key:
        keyring = root / "etc/apt/keyrings" / f"lab-mirror{key.suffix}"
        keyring.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(key, keyring)
        keyring.chmod(0o644)
        signed_by = f"[signed-by=/{keyring.relative_to(root)}] "
    sources = root / "etc/apt/sources.list"
    if new or sources.read_text().startswith(SOURCES_MARKER):
        _write(sources, f"{SOURCES_MARKER}deb {signed_by}http://{lab.host_address.ip}:8080/debian bookworm main\n")


def create_root(node: Node, base: Path) -> None:
    partial = node.root.with_name(node.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", base, partial])
    (partial / ".complete").unlink(missing_ok=True)
    machine_id = uuid.uuid4().hex
    _write(partial / "etc/machine-id", f"{machine_id}\n", 0o444)
    run(["ssh-keygen", "-q", "-A", "-f", partial])
    partial.rename(node.root)


# ---------------------------------------------------------------- cgroups


def _own_cgroups() -> dict[str, str]:
    """Hierarchy directory under /sys/fs/cgroup -> this process's path in it."""
    result = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        directory = controllers.removeprefix("name=") if controllers else "unified"
        if (CGROUP_ROOT / directory / "cgroup.procs").is_file():
            result[directory] = path
    return result


def create_cgroups(node: Node) -> list[Path]:
    """A cgroup root for the node in every hierarchy, under the caller's own cgroup."""
    paths = []
    for directory, own in _own_cgroups().items():
        parent = CGROUP_ROOT / directory / own.lstrip("/")
        for path in (parent / node.lab.name, parent / node.lab.name / node.name):
            path.mkdir(exist_ok=True)
            if directory == "cpuset":  # a cpuset without cpus and mems takes no processes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / knob).read_text().strip():
                        (path / knob).write_text((path.parent / knob).read_text())
        paths.append(parent / node.lab.name / node.name)
    node.cgroupfile.write_text("".join(f"{p}\n" for p in paths))
    return paths


def recorded_cgroups(node: Node) -> list[Path]:
    if not node.cgroupfile.is_file():
        return []
    return [Path(line) for line in node.cgroupfile.read_text().split()]


def _cgroup_pids(paths: list[Path]) -> set[int]:
    pids: set[int] = set()
    for path in paths:
        for procs in path.rglob("cgroup.procs") if path.is_dir() else []:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_cgroups(node: Node) -> None:
    """Depth first: container runtimes leave child cgroups that block a plain rmdir."""
    for path in recorded_cgroups(node):
        if path.is_dir():
            for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                child.rmdir()
            path.rmdir()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the lab's directory, once its last node is gone
    node.cgroupfile.unlink(missing_ok=True)


# ---------------------------------------------------------------- processes


def _read_pid(node: Node) -> int | None:
    try:
        pid = int(node.pidfile.read_text())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _nspawn_pid(supervisor: int) -> int | None:
    """The systemd-nspawn process the supervisor is running now."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if ppid == supervisor and comm == "systemd-nspawn":
                return int(stat.parent.name)
    return None


def is_running(node: Node) -> bool:
    return _read_pid(node) is not None


def nspawn_argv(node: Node) -> list[str]:
    return [
        "systemd-nspawn",
        f"--directory={node.root}",
        "--boot",
        f"--machine={node.name}",
        f"--uuid={(node.root / 'etc/machine-id').read_text().strip()}",
        "--register=no",  # no systemd/dbus on the host
        "--keep-unit",
        f"--network-veth-extra={node.host_veth}:{NODE_INTERFACE}",  # implies a private network
        "--capability=all",
        "--bind=/dev/kmsg",  # the kubelet reads it
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]


def start_node(node: Node) -> None:
    cgroups = create_cgroups(node)

    def enter_cgroups() -> None:  # runs in the child before exec
        for path in cgroups:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    env = dict(os.environ, SYSTEMD_SECCOMP="0", SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
    env.update(LAB_VETH=node.host_veth, LAB_BRIDGE=node.lab.bridge)
    with node.logfile.open("ab") as log_file:
        process = subprocess.Popen(
            ["/bin/sh", "-c", SUPERVISOR, node.name, *nspawn_argv(node)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives `make lab-up`
            preexec_fn=enter_cgroups,  # noqa: PLW1509 - nothing else runs threads here
        )
    node.pidfile.write_text(f"{process.pid}\n")


def wait_for_ssh(nodes: list[Node], timeout: float | None = None) -> None:
    timeout = BOOT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    waiting = list(nodes)
    while waiting:
        if time.monotonic() >= deadline:
            logs = ", ".join(str(n.logfile) for n in waiting)
            raise ValueError(f"no SSH answer within {timeout:.0f}s from {', '.join(n.name for n in waiting)} ({logs})")
        for node in list(waiting):
            if not is_running(node):
                tail = node.logfile.read_text(errors="replace").splitlines()[-15:] if node.logfile.exists() else []
                raise ValueError(f"{node.name} stopped while booting; {node.logfile}:\n  " + "\n  ".join(tail))
            if ssh_answers(node):
                waiting.remove(node)
        if waiting:
            time.sleep(0.5)


def _wait_gone(pids: Callable[[], set[int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def request_poweroff(node: Node) -> None:
    """SIGTERM to nspawn, which turns it into a clean poweroff of the node."""
    supervisor = _read_pid(node)
    if supervisor is not None:
        nspawn = _nspawn_pid(supervisor)
        with contextlib.suppress(ProcessLookupError):
            os.kill(nspawn if nspawn is not None else supervisor, signal.SIGTERM)


def stop_node(node: Node, timeout: float = STOP_TIMEOUT) -> None:
    """Power the node off, then kill whatever is left in its cgroups and remove them."""
    cgroups = recorded_cgroups(node)
    supervisor = _read_pid(node)
    if supervisor is not None:
        request_poweroff(node)
        if not _wait_gone(lambda: {supervisor} if Path(f"/proc/{supervisor}").exists() else set(), timeout):
            log(f"{node.name}: no clean poweroff within {timeout:.0f}s, killing it")
    for _ in range(3):
        pids = _cgroup_pids(cgroups)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if _wait_gone(lambda: _cgroup_pids(cgroups), 10):
            break
    else:
        raise ValueError(f"{node.name}: processes left in its cgroups: {sorted(_cgroup_pids(cgroups))}")
    node.pidfile.unlink(missing_ok=True)
    labnet.delete_link(node.host_veth)
    remove_cgroups(node)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if (mount_point + "/").startswith(prefix):
            result.append(mount_point)
    return result


def remove_root(node: Node) -> None:
    for mount_point in sorted(mounts_under(node.root), key=len, reverse=True):
        run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(node.root, ignore_errors=False) if node.root.exists() else None
    shutil.rmtree(node.root.with_name(node.name + ".partial"), ignore_errors=True)


# ---------------------------------------------------------------- inventory


def write_inventory(lab: Lab, nodes: list[Node]) -> None:
    groups: dict[str, dict[str, dict[str, str]]] = {"master": {}, "workers": {}}
    for node in nodes:
        # like the aws_ec2 inventory: reached at the public address
        groups[node.role][node.name] = {"ansible_host": str(node.public_address)}
    inventory = {
        "all": {
            "vars": {
                "ansible_user": ADMIN_USER,
                "ansible_ssh_private_key_file": str(SSH_KEY),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {group: {"hosts": hosts} for group, hosts in groups.items()},
        }
    }
    header = f"---\n# Generated by `python -m lab up` for the lab {lab.name!r}; do not edit.\n"
    lab.inventory.parent.mkdir(parents=True, exist_ok=True)
    lab.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False))


# ---------------------------------------------------------------- commands


@dataclass
class _Created:
    bridge: bool = False
    nodes: list[Node] | None = None


@contextlib.contextmanager
def _undo_on_failure(lab: Lab, created: _Created) -> Iterator[None]:
    try:
        yield
    except BaseException:
        log("lab up failed; removing what this run created")
        for node in created.nodes or []:
            with contextlib.suppress(Exception):
                stop_node(node, timeout=5)  # a node still booting may not power off cleanly
                remove_root(node)
        if created.bridge:
            with contextlib.suppress(Exception):
                _remove_network(lab)
                lab.known_hosts.unlink(missing_ok=True)
                (lab.state_dir / "nodes").rmdir()
        raise


def publish(lab: Lab) -> None:
    """Every node slot's public address (a node added later is reachable at once)."""
    slots = {node.public_address: node.address for node in lab.nodes(MAX_NODES)}
    labnet.publish(lab.name, lab.bridge, lab.host_address, lab.public_network, slots)


def _remove_network(lab: Lab) -> None:
    labnet.unpublish(lab.name, lab.bridge, lab.host_address, lab.public_network)
    labnet.remove_isolation(lab.name, lab.bridge)
    labnet.delete_link(lab.bridge)


def up(count: int) -> Lab:
    lab = Lab.from_env()
    nodes = lab.nodes(count)
    started = time.monotonic()
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise StepFailed("the lab needs root (systemd-nspawn, bridges, cgroups)")
    created = _Created(nodes=[])
    with _undo_on_failure(lab, created):
        with step("lab SSH key"):
            ensure_ssh_key()
        with step("node root filesystem (cached)"):
            base = prepare_base()
        with step(f"bridge {lab.bridge} {lab.host_address}, public addresses {lab.public_network}, firewall"):
            created.bridge = labnet.create_bridge(lab.bridge, lab.host_address)
            labnet.isolate(lab.name, lab.bridge, lab.host_address)
            publish(lab)
        to_start = [n for n in nodes if not is_running(n)]
        with step(f"copy root filesystems ({sum(not n.root.exists() for n in nodes)} new)"):
            new_nodes = [n for n in nodes if not n.root.exists()]
            created.nodes.extend(new_nodes)  # type: ignore[union-attr]
            with concurrent.futures.ThreadPoolExecutor() as pool:
                list(pool.map(lambda node: create_root(node, base), new_nodes))
        with step("configure nodes (hostname, network, apt, SSH)"):
            for node in nodes:
                configure_node(node, nodes, new=node in new_nodes)
            write_known_hosts(lab, nodes)
        if lab.is_default:
            from lab import mirror

            if mirror.is_built():
                with step("start the mirror services"):
                    mirror.start_services()
        with step(f"boot {len(to_start)} node(s)"):
            for node in to_start:
                if node not in created.nodes:  # type: ignore[operator]
                    created.nodes.append(node)  # type: ignore[union-attr]
                stop_node(node)  # leftovers of a node that died: cgroups, veth
                start_node(node)
            for node in to_start:
                labnet.attach(node.host_veth, lab.bridge)
            for node in nodes:  # a veth left off the bridge by a supervisor of an older version
                if labnet.link_exists(node.host_veth) and not labnet.is_attached(node.host_veth, lab.bridge):
                    labnet.attach(node.host_veth, lab.bridge)
        with step("wait for SSH on every node"):
            wait_for_ssh(nodes)
        with step(f"write {lab.inventory}"):
            write_inventory(lab, nodes)
            lab.state_file.write_text(json.dumps({"nodes": count, "bridge": lab.bridge}) + "\n")
    extra = [n for n in lab.nodes(max(lab.recorded_count(), count)) if n not in nodes and n.root.exists()]
    if extra:
        log(f"note: nodes beyond --nodes {count} still exist: {', '.join(n.name for n in extra)} (make lab-down)")
    log(f"lab {lab.name!r} up: {len(nodes)} node(s) in {time.monotonic() - started:.1f}s; inventory {lab.inventory}")
    return lab


def down() -> Lab:
    lab = Lab.from_env()
    nodes = lab.existing_nodes()
    for node in nodes:
        request_poweroff(node)  # all at once; each is then waited for below
    for node in reversed(nodes):
        with step(f"stop and remove {node.name}"):
            stop_node(node)
            remove_root(node)
            node.logfile.unlink(missing_ok=True)
    if lab.is_default:
        from lab import mirror

        with step("stop the mirror services"):
            mirror.stop_services()
    with step(f"remove bridge {lab.bridge} and firewall"):
        _remove_network(lab)
    lab.state_file.unlink(missing_ok=True)
    lab.known_hosts.unlink(missing_ok=True)
    lab.inventory.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (lab.state_dir / "nodes").rmdir()
    log(f"lab {lab.name!r} is down")
    return lab


def reboot(name: str, timeout: float | None = None) -> None:
    timeout = BOOT_TIMEOUT if timeout is None else timeout
    lab = Lab.from_env()
    node = lab.node(name)
    supervisor = _read_pid(node)
    if supervisor is None:
        raise StepFailed(f"{name} is not running (make lab-up)")
    before = _nspawn_pid(supervisor)
    with step(f"reboot {name}"):
        subprocess.run(ssh_argv(node, "sudo", "systemctl", "reboot"), capture_output=True, check=False, timeout=30)
        deadline = time.monotonic() + timeout
        while _nspawn_pid(supervisor) in (before, None):
            if not is_running(node):
                raise ValueError(f"{name} did not come back from the reboot; see {node.logfile}")
            if time.monotonic() > deadline:
                raise ValueError(f"{name} did not restart within {timeout:.0f}s")
            time.sleep(0.2)
        labnet.attach(node.host_veth, lab.bridge)
        wait_for_ssh([node], timeout)


def status() -> list[dict[str, str]]:
    lab = Lab.from_env()
    rows = []
    for node in lab.existing_nodes():
        running = is_running(node)
        rows.append(
            {
                "node": node.name,
                "address": str(node.address),
                "public": str(node.public_address),
                "group": node.role,
                "state": "running" if running else "stopped",
                "ssh": "yes" if running and ssh_answers(node) else "no",
            }
        )
    return rows


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One up/down/reboot of a lab at a time (two `make lab-up` would race)."""
    lab = Lab.from_env()
    with exclusive(lab.state_dir / ".lock", f"lab command on {lab.name!r}"):
        yield


def up_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab up")
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes: one master, the rest workers")
    with _exclusive():
        up(parser.parse_args(args).nodes)
    return 0


def down_command(args: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m lab down").parse_args(args)
    with _exclusive():
        down()
    return 0


def status_command(args: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m lab status").parse_args(args)
    lab = Lab.from_env()
    rows = status()
    if not rows:
        print(f"lab {lab.name!r}: no nodes")
        return 0
    print(f"lab {lab.name!r}: bridge {lab.bridge} {lab.host_address}, inventory {lab.inventory}")
    for row in rows:
        print(
            f"{row['node']:<16} {row['address']:<14} public {row['public']:<14} {row['group']:<8} {row['state']:<8}"
            f" ssh={row['ssh']}"
        )
    return 0 if all(r["ssh"] == "yes" for r in rows) else 1


def ssh_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab ssh")
    parser.add_argument("node", nargs="?", help="node name (default: the master)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    lab = Lab.from_env()
    node = lab.node(options.node or f"{lab.name}-master")
    argv = ssh_argv(node, *options.command)
    os.execvp(argv[0], argv)


def reboot_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab reboot")
    parser.add_argument("node")
    with _exclusive():
        reboot(parser.parse_args(args).node)
    return 0


def clean_command(args: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m lab clean").parse_args(args)
    with _exclusive():
        down()
    with step(f"remove the caches in {CACHE}"):
        for path in mounts_under(CACHE):
            raise StepFailed(f"refusing to remove {CACHE}: {path} is mounted")
        shutil.rmtree(CACHE, ignore_errors=False) if CACHE.exists() else None
    return 0
