"""A lab described, not booted: for tests of what lab/ writes from a Lab."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from lab.nodes.topology import Lab


def a_lab(tmp_path: Path) -> Lab:
    return Lab(
        "labunit",
        "labunitbr0",
        ipaddress.IPv4Network("10.79.0.0/24"),
        ipaddress.IPv4Network("100.79.0.0/24"),
        tmp_path / "state",
        tmp_path / "hosts.yml",
    )
