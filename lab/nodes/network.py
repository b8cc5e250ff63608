"""The lab network: one host bridge, the nodes' veths on it, and a firewall that
keeps the nodes inside it, addressed the way EC2 addresses instances.

Nodes get a private address and a default route via the bridge address
(kubeadm and the kubelet pick their address from the default route, as on an
EC2 private subnet), and the host drops whatever they send beyond it: packets
from the bridge may go to the other nodes (bridged) or to the bridge address
itself (the mirror), nothing else.

The host plays the controller on the internet: it reaches a node only at the
node's public address, which it translates to the private one (DNAT, like the
internet gateway's 1:1 NAT of an EC2 public IP; the node itself never holds
the public address). A connection the host opens to a private address is
refused, as the internet has no route into a VPC. Replies to what the nodes
open (the mirror) pass.

The rules live in chains named after the lab (filter LAB-<NAME> from INPUT and
FORWARD, LAB-<NAME>-OUT from OUTPUT, nat LAB-<NAME>-PUB from OUTPUT), so
removing the lab removes exactly its rules.
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


def _out_chain(lab_name: str) -> str:
    return f"LAB-{lab_name.upper()}-OUT"


def _nat_chain(lab_name: str) -> str:
    return f"LAB-{lab_name.upper()}-PUB"


def _jumps(lab_name: str, bridge: str) -> list[list[str]]:
    chain = _chain(lab_name)
    return [["INPUT", "-i", bridge, "-j", chain], ["FORWARD", "-i", bridge, "-j", chain]]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["iptables", "-w", *args], check=False, capture=True)


def isolate(lab_name: str, bridge: str, host_address: ipaddress.IPv4Interface, mirror: tuple[str, list[int]]) -> None:
    """Allow node<->node, node->bridge address and node->mirror; reject everything else (idempotent).

    The mirror serves on the default lab's bridge address only; a second lab's
    nodes reach it there (the host delivers it locally), so labs share one mirror.
    """
    mirror_address, mirror_ports = mirror
    to_mirror = ["-d", mirror_address, "-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, mirror_ports))]
    chain = _chain(lab_name)
    if _iptables("-n", "-L", chain).returncode != 0:
        run(["iptables", "-w", "-N", chain])
    run(["iptables", "-w", "-F", chain])
    rules = [
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],  # bridged node to node
        ["-i", bridge, "-d", str(host_address.ip), "-j", "ACCEPT"],  # the host (the mirror, for the default lab)
        ["-i", bridge, *to_mirror, "-j", "ACCEPT"],
        ["-j", "REJECT", "--reject-with", "icmp-net-prohibited"],
    ]
    for rule in rules:
        run(["iptables", "-w", "-A", chain, *rule])
    for jump in _jumps(lab_name, bridge):
        if _iptables("-C", *jump).returncode != 0:
            run(["iptables", "-w", "-I", *jump[:1], "1", *jump[1:]])


def _ensure_chain(table: str, chain: str, rules: list[list[str]], jump: list[str]) -> None:
    """Chain with exactly these rules, jumped to first from jump[0] (idempotent)."""
    if _iptables("-t", table, "-n", "-L", chain).returncode != 0:
        run(["iptables", "-w", "-t", table, "-N", chain])
    run(["iptables", "-w", "-t", table, "-F", chain])
    for rule in rules:
        run(["iptables", "-w", "-t", table, "-A", chain, *rule])
    if _iptables("-t", table, "-C", *jump, "-j", chain).returncode != 0:
        run(["iptables", "-w", "-t", table, "-I", jump[0], "1", *jump[1:], "-j", chain])


def _remove_chain(table: str, chain: str, jump: list[str]) -> None:
    while _iptables("-t", table, "-C", *jump, "-j", chain).returncode == 0:
        _iptables("-t", table, "-D", *jump, "-j", chain)
    if _iptables("-t", table, "-n", "-L", chain).returncode == 0:
        _iptables("-t", table, "-F", chain)
        _iptables("-t", table, "-X", chain)


def publish(
    lab_name: str,
    bridge: str,
    host_address: ipaddress.IPv4Interface,
    public_network: ipaddress.IPv4Network,
    public_to_private: dict[ipaddress.IPv4Address, ipaddress.IPv4Address],
) -> None:
    """The host reaches node i at its public address only (idempotent)."""
    private_network = host_address.network
    # the public addresses are reached over the bridge, from the bridge address
    run(["ip", "route", "replace", str(public_network), "dev", bridge, "src", str(host_address.ip)])
    translations = [
        ["-d", str(public), "-j", "DNAT", "--to-destination", str(private)]
        for public, private in sorted(public_to_private.items())
    ]
    _ensure_chain("nat", _nat_chain(lab_name), translations, ["OUTPUT", "-d", str(public_network)])
    outbound = [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],  # replies to the nodes
        ["-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],  # sent to a public address
        ["-j", "REJECT", "--reject-with", "icmp-net-unreachable"],  # a private address, directly
    ]
    _ensure_chain("filter", _out_chain(lab_name), outbound, ["OUTPUT", "-o", bridge, "-d", str(private_network)])


def unpublish(
    lab_name: str, bridge: str, host_address: ipaddress.IPv4Interface, public_network: ipaddress.IPv4Network
) -> None:
    _remove_chain("nat", _nat_chain(lab_name), ["OUTPUT", "-d", str(public_network)])
    _remove_chain("filter", _out_chain(lab_name), ["OUTPUT", "-o", bridge, "-d", str(host_address.network)])
    run(["ip", "route", "del", str(public_network), "dev", bridge], check=False, capture=True)


def remove_isolation(lab_name: str, bridge: str) -> None:
    chain = _chain(lab_name)
    for jump in _jumps(lab_name, bridge):
        while _iptables("-C", *jump).returncode == 0:
            _iptables("-D", *jump)
    if _iptables("-n", "-L", chain).returncode == 0:
        _iptables("-F", chain)
        _iptables("-X", chain)


def chain_exists(lab_name: str) -> bool:
    """Whether any of the lab's chains is left."""
    return any(
        _iptables("-t", table, "-n", "-L", chain).returncode == 0
        for table, chain in (
            ("filter", _chain(lab_name)),
            ("filter", _out_chain(lab_name)),
            ("nat", _nat_chain(lab_name)),
        )
    )
