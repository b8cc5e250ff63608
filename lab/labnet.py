"""The lab network: one host bridge, the nodes' veths on it, and a firewall that
keeps the nodes inside it.

Nodes get a default route via the bridge address (kubeadm and the kubelet pick
their address from the default route, as on an EC2 private subnet), and the host
drops whatever they send beyond it: packets from the bridge may go to the other
nodes (bridged) or to the bridge address itself (the mirror), nothing else. The
rules live in one chain per lab, jumped to from INPUT and FORWARD, so removing
the lab removes exactly its rules.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

from lab.run import run

SYSFS_NET = Path("/sys/class/net")


def link_exists(name: str) -> bool:
    return (SYSFS_NET / name).exists()


def create_bridge(bridge: str, address: ipaddress.IPv4Interface) -> bool:
    """Create the bridge with its address (idempotent). True if it was created now."""
    created = False
    if link_exists(bridge) and not (SYSFS_NET / bridge / "bridge").is_dir():
        raise ValueError(f"{bridge} exists and is not a bridge; pick another LAB_BRIDGE")
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
        created = True
    # IPv6 would give the nodes a second, unfiltered way out through the host.
    (Path("/proc/sys/net/ipv6/conf") / bridge / "disable_ipv6").write_text("1\n")
    current = run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture=True).stdout
    if f" {address.with_prefixlen} " not in current:
        run(["ip", "addr", "add", address.with_prefixlen, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    return created


def delete_link(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)


def attach(veth: str, bridge: str, timeout: float = 30.0) -> None:
    """Wait for a node's host-side veth to appear, then put it on the bridge."""
    deadline = time.monotonic() + timeout
    while not link_exists(veth):
        if time.monotonic() > deadline:
            raise ValueError(f"veth {veth} did not appear within {timeout:.0f}s (see the node log)")
        time.sleep(0.1)
    run(["ip", "link", "set", veth, "master", bridge, "up"])


def is_attached(veth: str, bridge: str) -> bool:
    master = SYSFS_NET / veth / "master"
    return master.exists() and master.resolve().name == bridge


def _chain(lab_name: str) -> str:
    return f"LAB-{lab_name.upper()}"


def _jumps(lab_name: str, bridge: str) -> list[list[str]]:
    chain = _chain(lab_name)
    return [["INPUT", "-i", bridge, "-j", chain], ["FORWARD", "-i", bridge, "-j", chain]]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["iptables", "-w", *args], check=False, capture=True)


def isolate(lab_name: str, bridge: str, host_address: ipaddress.IPv4Interface) -> None:
    """Allow node<->node and node->bridge address; reject everything else (idempotent)."""
    chain = _chain(lab_name)
    if _iptables("-n", "-L", chain).returncode != 0:
        run(["iptables", "-w", "-N", chain])
    run(["iptables", "-w", "-F", chain])
    rules = [
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],  # bridged node to node
        ["-i", bridge, "-d", str(host_address.ip), "-j", "ACCEPT"],  # the mirror on the host
        ["-j", "REJECT", "--reject-with", "icmp-net-prohibited"],
    ]
    for rule in rules:
        run(["iptables", "-w", "-A", chain, *rule])
    for jump in _jumps(lab_name, bridge):
        if _iptables("-C", *jump).returncode != 0:
            run(["iptables", "-w", "-I", *jump[:1], "1", *jump[1:]])


def remove_isolation(lab_name: str, bridge: str) -> None:
    chain = _chain(lab_name)
    for jump in _jumps(lab_name, bridge):
        while _iptables("-C", *jump).returncode == 0:
            _iptables("-D", *jump)
    if _iptables("-n", "-L", chain).returncode == 0:
        _iptables("-F", chain)
        _iptables("-X", chain)


def chain_exists(lab_name: str) -> bool:
    return _iptables("-n", "-L", _chain(lab_name)).returncode == 0
