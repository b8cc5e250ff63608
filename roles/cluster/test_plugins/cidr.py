"""Jinja tests for IPv4 CIDRs, shared by every role that depends on `cluster`
(standard library only: netaddr is not needed on the controller)."""

from __future__ import annotations

import ipaddress
from typing import Any


def _network(value: Any, strict: bool) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=strict)
    except ValueError:
        return None


def cluster_cidr_valid(value: Any) -> bool:
    """True for an IPv4 network in CIDR form without host bits: 10.0.0.0/16, not 10.0.0.1/16."""
    return "/" in str(value) and _network(value, strict=True) is not None


def cluster_cidrs_overlap(first: Any, second: Any) -> bool:
    """True when two IPv4 networks share an address (host bits ignored: 10.77.0.11/24 is 10.77.0.0/24)."""
    a, b = _network(first, strict=False), _network(second, strict=False)
    return a is not None and b is not None and a.overlaps(b)


def cluster_cidr_within(inner: Any, outer: Any) -> bool:
    """True when the first network lies inside the second."""
    a, b = _network(inner, strict=False), _network(outer, strict=False)
    return a is not None and b is not None and a.subnet_of(b)


class TestModule:
    def tests(self) -> dict[str, Any]:
        return {
            "cluster_cidr_valid": cluster_cidr_valid,
            "cluster_cidrs_overlap": cluster_cidrs_overlap,
            "cluster_cidr_within": cluster_cidr_within,
        }
