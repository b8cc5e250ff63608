"""What a lab is: its name, its networks, its nodes and where their state lives.

Several labs can coexist (tests use their own): LAB_NAME (default "lab") names
the nodes, the cgroups, the firewall chain and the state directory
CACHE/<LAB_NAME>; LAB_BRIDGE and LAB_SUBNET pick the network, LAB_PUBLIC_SUBNET
the addresses the host reaches the nodes at; LAB_INVENTORY the inventory
written (default inventory/lab/hosts.yml for the default lab only).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lab.paths import CACHE, REPO
from lab.run import StepFailed

# Ansible logs in as this user with the lab key, as it does as `ubuntu` on EC2.
ADMIN_USER = "admin"
NODE_INTERFACE = "eth0"
FIRST_HOST_NUMBER = 11
MAX_NODES = 20
DEFAULT_LAB = "lab"


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
    def kubeconfig(self) -> Path:
        """Where the master role puts this lab's admin kubeconfig (cluster_kubeconfig_local_path)."""
        return self.state_dir / "admin.conf"

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
