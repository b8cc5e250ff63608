"""The lab's load balancer: haproxy (Debian's) on the host, in TCP mode, at the
lab's "public" balancer address, over every worker's NodePort, like the NLB
roles/ec2 puts in front of the workers on AWS.

It is the lab's own process (config, pid file and log in the lab's state
directory, started by `lab up`, stopped by `lab down`); a system haproxy
service, if any, is never touched. The address is the public network's host
number 10 (below the nodes'), held by the lab bridge, so it goes with the lab.
haproxy reaches the workers at their public addresses, as the host does.

Settings (the Settings fields; why: docs/lab.md#the-load-balancer): GET
/health every second (the pods' readiness path, as the NLB checks); a worker
leaves after 2 failed checks and comes back after 2 good ones; a connect that
fails or gets no answer within 500 ms is tried again on another worker
(retries with `option redispatch 1`), so a client need not see the detection
window. Behind `Cluster` NodePorts its checks are only as good as the path
behind them: the chart's service.externalTrafficPolicy says why Local.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from lab.nodes.topology import Lab, Node
from lab.run import run
from lab.service import Service

HAPROXY = "/usr/sbin/haproxy"
LISTEN_PORT = 80  # as the NLB's listener (ec2_app_lb_port)
NODE_PORT = 30080  # the app's (app_node_port, the chart's service.nodePort)
BALANCER_HOST_NUMBER = 10


@dataclass(frozen=True)
class Settings:
    # 1 s: the NLB's fastest is 5 s; on the lab host a check costs nothing.
    check_interval_ms: int = 1000
    # A check that gets no answer within 1 s failed (an answer takes milliseconds).
    check_timeout_ms: int = 1000
    # 2 failures: out within ~3 s; one lost check on a loaded 2-core host never flaps it.
    fall: int = 2
    # 2 successes: a rebooting worker comes back once its NodePort answers twice.
    rise: int = 2
    # A connect to a live worker takes milliseconds; to a dead one it never ends.
    # 500 ms leaves room for three attempts inside a client's 2 s timeout.
    connect_timeout_ms: int = 500
    # Attempts after the first; with redispatch each goes to another server.
    retries: int = 2
    redispatch: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        """LAB_BALANCER_<FIELD> overrides a field (LAB_BALANCER_REDISPATCH=0 turns retries elsewhere off)."""
        values: dict[str, object] = {}
        for name, default in cls().__dict__.items():
            raw = os.environ.get(f"LAB_BALANCER_{name.upper()}")
            if raw is not None:
                values[name] = raw not in ("0", "false", "no") if isinstance(default, bool) else int(raw)
        return cls(**values)  # type: ignore[arg-type]


def address(lab: Lab) -> ipaddress.IPv4Address:
    return lab.public_network[BALANCER_HOST_NUMBER]


def config(lab: Lab, workers: list[Node], settings: Settings) -> str:
    s = settings
    # redispatch 1: every retry goes to another server (haproxy's default, -1, moves only the last one)
    redispatch = "option redispatch 1" if s.redispatch else "no option redispatch"
    lines = [
        f"# Written by `python -m lab up` for the lab {lab.name!r} (lab/nodes/balancer.py); do not edit.",
        "global",
        "    maxconn 4096",
        f"    stats socket {lab.state_dir / 'balancer.sock'} mode 600 level admin",
        "defaults",
        "    mode tcp",
        "    log stdout format short local0 notice",
        f"    timeout connect {s.connect_timeout_ms}ms",
        "    timeout client 30s",
        "    timeout server 30s",
        f"    timeout check {s.check_timeout_ms}ms",
        f"    retries {s.retries}",
        f"    {redispatch}",
        "frontend app",
        f"    bind {address(lab)}:{LISTEN_PORT}",
        "    default_backend workers",
        "backend workers",
        "    balance roundrobin",
        "    option httpchk GET /health",
        "    http-check expect status 200",
        f"    default-server check inter {s.check_interval_ms}ms fall {s.fall} rise {s.rise}",
        *(f"    server {n.name} {n.public_address}:{NODE_PORT}" for n in workers),
    ]
    return "\n".join(lines) + "\n"


def _service(lab: Lab) -> Service:
    return Service("balancer", [HAPROXY, "-db", "-f", str(lab.state_dir / "balancer.cfg")], lab.state_dir)


def _listening(lab: Lab) -> None:
    with socket.create_connection((str(address(lab)), LISTEN_PORT), timeout=1):
        pass


def start(lab: Lab, nodes: list[Node], settings: Settings | None = None) -> str:
    """Serve on the balancer address over the workers (idempotent; restarted when its config changed)."""
    workers = [n for n in nodes if n.role == "workers"]
    wanted = config(lab, workers, settings or Settings.from_env())
    path = lab.state_dir / "balancer.cfg"
    service = _service(lab)
    if not path.is_file() or path.read_text() != wanted:
        service.stop("balancer (its configuration changed)")
        path.write_text(wanted)
        run([HAPROXY, "-c", "-q", "-f", str(path)], capture=True)
    here = f"{address(lab)}/32"
    if here not in run(["ip", "-4", "-o", "addr", "show", "dev", lab.bridge], capture=True).stdout:
        run(["ip", "addr", "add", here, "dev", lab.bridge])
    url = f"{address(lab)}:{LISTEN_PORT}"
    service.start(lambda: _listening(lab), f"{url} over {len(workers)} worker(s) on NodePort {NODE_PORT}")
    return url


def stop(lab: Lab) -> None:
    _service(lab).stop("the load balancer")
    for leftover in ("balancer.cfg", "balancer.sock"):
        (lab.state_dir / leftover).unlink(missing_ok=True)


def server_states(lab: Lab) -> dict[str, str]:
    """Server name -> UP / DOWN (haproxy's runtime view), from its stats socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(lab.state_dir / "balancer.sock"))
        sock.sendall(b"show servers state workers\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    states = {}
    for line in data.decode().splitlines():
        fields = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state ... (2 = running)
        if len(fields) > 5 and fields[0].isdigit():
            states[fields[3]] = "UP" if fields[5] == "2" else "DOWN"
    return states


def endpoint(lab: Lab) -> tuple[str, int] | None:
    """(address, port) of the lab's load balancer, or None when it does not run."""
    return (str(address(lab)), LISTEN_PORT) if _service(lab).running_pid() is not None else None
