"""Jinja tests for IPv4 CIDRs, used by the ec2 role's input validation (standard library only)."""

from __future__ import annotations

import ipaddress
from typing import Any


def _network(value: Any) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        return None


def ec2_cidr_valid(value: Any) -> bool:
    """True for an IPv4 network in CIDR form without host bits: 10.0.0.0/16, not 10.0.0.1/16."""
    return "/" in str(value) and _network(value) is not None


def ec2_cidrs_overlap(first: Any, second: Any) -> bool:
    """True when two valid IPv4 CIDRs share an address."""
    a, b = _network(first), _network(second)
    return a is not None and b is not None and a.overlaps(b)


def ec2_cidr_within(inner: Any, outer: Any) -> bool:
    """True when the first CIDR lies inside the second."""
    a, b = _network(inner), _network(outer)
    return a is not None and b is not None and a.subnet_of(b)


class TestModule:
    def tests(self) -> dict[str, Any]:
        return {
            "ec2_cidr_valid": ec2_cidr_valid,
            "ec2_cidrs_overlap": ec2_cidrs_overlap,
            "ec2_cidr_within": ec2_cidr_within,
        }
