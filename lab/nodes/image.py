"""What a lab node's root filesystem holds: a cached base every node shares
(debootstrap, the admin user, sshd, the lab's units), then each node's own files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from lab.mirror.commands import APT_URL
from lab.nodes.rootfs import ROOTFS_CACHE, debootstrap
from lab.nodes.ssh import SSH_KEY
from lab.nodes.topology import ADMIN_USER, NODE_INTERFACE, Node
from lab.run import run, step

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
# Bumped whenever prepare_base() changes what it writes, so the cached base is rebuilt.
BASE_VERSION = "3"

# The files the base root gets from lab/nodes/files/, read as text. Their bytes
# are hashed into the cached base's name (prepare_base): a changed file, even a
# comment, rebuilds the base of every node.
FILES = Path(__file__).resolve().parent / "files"


def _file(name: str) -> str:
    return (FILES / name).read_text(encoding="utf-8")


# Like Debian's and Ubuntu's minimal cloud images: no docs, manuals or
# translations, now or from later installs. A quarter less to copy per node.
DPKG_EXCLUDES = _file("lab-minimal")

# The node's cgroup controllers are mounted read-only by nspawn; runc must create
# cgroups, so they are mounted again, read-write, before any container runtime.
CGROUP_RW_SCRIPT = _file("lab-cgroup-rw")
CGROUP_RW_UNIT = _file("lab-cgroup-rw.service")
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
RUNC_WRAPPER = _file("lab-runc")
# A host's systemd mounts the BPF filesystem at /sys/fs/bpf; in a container it
# does not, and nspawn's /sys has no /sys/fs/bpf at all. Calico mounts its
# hostPath (type Directory) into calico-node, so the node gets it as on a host.
BPFFS_SCRIPT = _file("lab-bpffs")
BPFFS_UNIT = _file("lab-bpffs.service")
# systemd-networkd waits forever for udev to initialise links when /sys is
# writable (it is: the kubelet needs that), and there is no udev in a node, so a
# oneshot unit sets the static address and the route, like cloud-init would.
NETWORK_SCRIPT = _file("lab-network")
NETWORK_UNIT = _file("lab-network.service")

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
            lists.unlink()  # they describe the Debian mirror, which nodes cannot reach
        (partial / ".complete").write_text(key + "\n")
        partial.rename(base)
        for stale in ROOTFS_CACHE.glob("lab-node-base-*"):
            if stale != base:  # made by an older version of this function
                shutil.rmtree(stale)
    return base


def _mirror_public_key() -> Path | None:
    from lab.mirror import commands as mirror

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
    # apt: the mirror's Debian subset, signed with the lab key. It serves on the
    # default lab's bridge address only, which every lab's nodes reach.
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
        _write(sources, f"{SOURCES_MARKER}deb {signed_by}{APT_URL}/debian bookworm main\n")


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
