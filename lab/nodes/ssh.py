"""Reaching a lab node: the lab's SSH key, its known hosts, ssh's arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.nodes.topology import ADMIN_USER, Lab, Node
from lab.paths import CACHE
from lab.run import run, step

SSH_DIR = CACHE / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"


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
