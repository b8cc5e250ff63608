"""CIDR checks for the master role (standard library only: no netaddr needed)."""

from __future__ import annotations

import ipaddress


def cidrs_overlap(first: str, second: str) -> bool:
    """True when two networks share an address."""
    return ipaddress.ip_network(first, strict=False).overlaps(ipaddress.ip_network(second, strict=False))


class FilterModule:
    def filters(self) -> dict:
        return {"cidrs_overlap": cidrs_overlap}
