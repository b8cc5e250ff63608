"""Jinja test for the cluster roles' network check (standard library only: no netaddr on the controller)."""

from __future__ import annotations

import ipaddress
from typing import Any


def common_cidrs_overlap(first: Any, second: Any) -> bool:
    """True when two IPv4 networks share an address (host bits are ignored: 10.77.0.11/24 is 10.77.0.0/24)."""
    return ipaddress.ip_network(str(first), strict=False).overlaps(ipaddress.ip_network(str(second), strict=False))


class TestModule:
    def tests(self) -> dict[str, Any]:
        return {"common_cidrs_overlap": common_cidrs_overlap}
