"""When does a terminating pod stop receiving traffic? kube-proxy's rules, watched on every node.

A pod that is being deleted keeps serving during its preStop sleep; that sleep
only has to outlast the time until no node's kube-proxy sends it new
connections any more. This reads `iptables-save -t nat` on every node about
five times a second (one SSH session per node) and records, per node, when a
pod IP stops being the destination of a KUBE-SEP chain that a service chain
(KUBE-SVC-*) jumps to. Nodes share the host's kernel clock, so their times
compare with the host's time.time().
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field

from lab.nodes.ssh import ssh_argv
from lab.nodes.topology import Node

SNAPSHOT_MARK = "@@lab-snapshot"
# print the time, then the NAT table, about five times a second (each costs ~15 ms of CPU)
WATCH_SCRIPT = f'while :; do echo "{SNAPSHOT_MARK} $(date +%s.%N)"; iptables-save -t nat; sleep 0.2; done'
SEP_TARGET = re.compile(r"^-A (KUBE-SEP-\S+) .*-j DNAT --to-destination ([0-9.]+):\d+")
SVC_JUMP = re.compile(r"^-A KUBE-SVC-\S+ .*-j (KUBE-SEP-\S+)")


def routed_pod_ips(rules: list[str]) -> frozenset[str]:
    """Pod IPs that some service chain sends connections to, in one iptables-save of the NAT table."""
    targets: dict[str, str] = {}
    jumped: set[str] = set()
    for line in rules:
        if match := SEP_TARGET.match(line):
            targets[match.group(1)] = match.group(2)
        elif match := SVC_JUMP.match(line):
            jumped.add(match.group(1))
    return frozenset(targets[chain] for chain in jumped if chain in targets)


@dataclass
class NodeRules:
    """(time.time(), routed pod IPs) per snapshot of one node."""

    node: str
    snapshots: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    def unrouted_at(self, ip: str, since: float) -> float | None:
        """The first snapshot at or after `since` in which ip is not routed any more."""
        return next((at for at, ips in self.snapshots if at >= since and ip not in ips), None)


class KubeProxyWatcher:
    """Streams every node's NAT table while a rollout runs."""

    def __init__(self, lab_nodes: list[Node]) -> None:
        self.rules = {node.name: NodeRules(node.name) for node in lab_nodes}
        self._processes = {
            node.name: subprocess.Popen(
                ssh_argv(node, "sudo", "sh", "-c", f"'{WATCH_SCRIPT}'"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for node in lab_nodes
        }
        self._threads = [
            threading.Thread(target=self._read, args=(name, process), daemon=True)
            for name, process in self._processes.items()
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, process: subprocess.Popen[str]) -> None:
        at, lines = None, []
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith(SNAPSHOT_MARK):
                if at is not None:
                    self.rules[name].snapshots.append((at, routed_pod_ips(lines)))
                at, lines = float(line.split()[1]), []
            else:
                lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        for process in self._processes.values():
            process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for thread in self._threads:
            thread.join(timeout=10)

    def propagation(self, ip: str, deleted_at: float) -> float | None:
        """Seconds from deleted_at (time.time()) until no node routes to ip; None if some node still did
        at its last snapshot (or was never seen)."""
        times = [rules.unrouted_at(ip, deleted_at) for rules in self.rules.values()]
        if not times or any(t is None for t in times):
            return None
        return max(times) - deleted_at  # type: ignore[type-var,operator]


def wall_clock_offset() -> float:
    """time.time() - time.monotonic(), to put monotonic events on the nodes' clock."""
    return time.time() - time.monotonic()
