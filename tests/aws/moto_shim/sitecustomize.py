"""Loaded by the moto_server process the tests start (PYTHONPATH): one fix for a moto 5.2.5 bug.

AWS accepts a security group rule for a numbered protocol such as 4 (IP-in-IP)
without ports (they do not apply), and amazon.aws sends exactly that. moto
crashes on it with int(None). Give such rules the "all ports" value -1, which
amazon.aws compares as equal to no ports, so re-runs stay idempotent.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models import security_groups

_PORTS_APPLY = {"tcp", "udp", "icmp", "icmpv6", "6", "17", "1", "58", "-1", "all"}
_original_init = security_groups.SecurityGroupRule.__init__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    # moto passes (ec2_backend, ip_protocol, group_id, from_port, to_port, ...) positionally
    values = list(args)
    portless = len(values) >= 5 and values[1] and str(values[1]).lower() not in _PORTS_APPLY
    if portless:
        values[3] = values[4] = -1
    _original_init(self, *values, **kwargs)
    if portless:
        self.from_port = self.to_port = None


security_groups.SecurityGroupRule.__init__ = _init  # type: ignore[method-assign]
