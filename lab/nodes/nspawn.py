"""One lab node as a machine: booted by systemd-nspawn under a supervisor, in
cgroup roots of its own, powered off, killed, removed.

Each node is a plain directory (lab.nodes.image) booted by `systemd-nspawn
--boot` in its own network namespace (a veth on the lab bridge). It runs under
a small supervisor shell in its own session, so it outlives the command that
started it; when systemd in the node reboots, nspawn exits with 133 and the
supervisor boots the same root again (state kept).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lab.nodes import network
from lab.nodes.ssh import ssh_answers, ssh_argv
from lab.nodes.topology import NODE_INTERFACE, Node
from lab.run import StepFailed, log, run

CGROUP_ROOT = Path("/sys/fs/cgroup")
# LAB_BOOT_TIMEOUT: seconds to wait for SSH after booting (slow disks need more).
BOOT_TIMEOUT = float(os.environ.get("LAB_BOOT_TIMEOUT", "120"))
STOP_TIMEOUT = 30.0
# Every node's systemd, kubelet and runtime take inotify instances from the
# host's one per-user pool (all nodes run as root): Debian's 128 runs out at
# about six nodes ("Failed to allocate manager object: Too many open files").
# kind documents the same limits for the same reason.
INOTIFY_MINIMUMS = {"max_user_instances": 8192, "max_user_watches": 524288}
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")

# nspawn exits 133 when systemd in the node reboots (`reboot`, Ansible's reboot
# module): boot the same root again. Every boot makes a new veth, so the
# supervisor puts it on the bridge ($LAB_VETH, $LAB_BRIDGE) each time.
SUPERVISOR = (Path(__file__).resolve().parent / "files" / "lab-supervisor").read_text(encoding="utf-8")


def _own_cgroups() -> dict[str, str]:
    """Hierarchy directory under /sys/fs/cgroup -> this process's path in it."""
    result = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        directory = controllers.removeprefix("name=") if controllers else "unified"
        if (CGROUP_ROOT / directory / "cgroup.procs").is_file():
            result[directory] = path
    return result


def raise_inotify_limits(sysctl: Path = INOTIFY_SYSCTL) -> list[str]:
    """Raise the host's inotify limits to what many nodes need (never lowers one); what was raised."""
    raised = []
    for name, minimum in INOTIFY_MINIMUMS.items():
        current = int((sysctl / name).read_text())
        if current < minimum:
            (sysctl / name).write_text(f"{minimum}\n")
            raised.append(f"fs.inotify.{name} {current} -> {minimum}")
    return raised


def create_cgroups(node: Node) -> list[Path]:
    """A cgroup root for the node in every hierarchy, under the caller's own cgroup."""
    paths = []
    for directory, own in _own_cgroups().items():
        parent = CGROUP_ROOT / directory / own.lstrip("/")
        for path in (parent / node.lab.name, parent / node.lab.name / node.name):
            path.mkdir(exist_ok=True)
            if directory == "cpuset":  # a cpuset without cpus and mems takes no processes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / knob).read_text().strip():
                        (path / knob).write_text((path.parent / knob).read_text())
        paths.append(parent / node.lab.name / node.name)
    node.cgroupfile.write_text("".join(f"{p}\n" for p in paths))
    return paths


def recorded_cgroups(node: Node) -> list[Path]:
    if not node.cgroupfile.is_file():
        return []
    return [Path(line) for line in node.cgroupfile.read_text().split()]


def _cgroup_pids(paths: list[Path]) -> set[int]:
    pids: set[int] = set()
    for path in paths:
        for procs in path.rglob("cgroup.procs") if path.is_dir() else []:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_cgroups(node: Node) -> None:
    """Depth first: container runtimes leave child cgroups that block a plain rmdir."""
    for path in recorded_cgroups(node):
        if path.is_dir():
            for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                child.rmdir()
            path.rmdir()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the lab's directory, once its last node is gone
    node.cgroupfile.unlink(missing_ok=True)


def _read_pid(node: Node) -> int | None:
    try:
        pid = int(node.pidfile.read_text())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _nspawn_pid(supervisor: int) -> int | None:
    """The systemd-nspawn process the supervisor is running now."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if ppid == supervisor and comm == "systemd-nspawn":
                return int(stat.parent.name)
    return None


def is_running(node: Node) -> bool:
    return _read_pid(node) is not None


def nspawn_argv(node: Node) -> list[str]:
    return [
        "systemd-nspawn",
        f"--directory={node.root}",
        "--boot",
        f"--machine={node.name}",
        f"--uuid={(node.root / 'etc/machine-id').read_text().strip()}",
        "--register=no",  # no systemd/dbus on the host
        "--keep-unit",
        f"--network-veth-extra={node.host_veth}:{NODE_INTERFACE}",  # implies a private network
        "--capability=all",
        "--bind=/dev/kmsg",  # the kubelet reads it
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]


def start_node(node: Node) -> None:
    cgroups = create_cgroups(node)

    def enter_cgroups() -> None:  # runs in the child before exec
        for path in cgroups:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    env = dict(os.environ, SYSTEMD_SECCOMP="0", SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
    env.update(LAB_VETH=node.host_veth, LAB_BRIDGE=node.lab.bridge)
    with node.logfile.open("ab") as log_file:
        process = subprocess.Popen(
            ["/bin/sh", "-c", SUPERVISOR, node.name, *nspawn_argv(node)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives `make lab-up`
            preexec_fn=enter_cgroups,  # noqa: PLW1509 - nothing else runs threads here
        )
    node.pidfile.write_text(f"{process.pid}\n")


def wait_for_ssh(nodes: list[Node], timeout: float | None = None) -> None:
    timeout = BOOT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    waiting = list(nodes)
    while waiting:
        if time.monotonic() >= deadline:
            logs = ", ".join(str(n.logfile) for n in waiting)
            raise ValueError(f"no SSH answer within {timeout:.0f}s from {', '.join(n.name for n in waiting)} ({logs})")
        for node in list(waiting):
            if not is_running(node):
                tail = node.logfile.read_text(errors="replace").splitlines()[-15:] if node.logfile.exists() else []
                raise ValueError(f"{node.name} stopped while booting; {node.logfile}:\n  " + "\n  ".join(tail))
            if ssh_answers(node):
                waiting.remove(node)
        if waiting:
            time.sleep(0.5)


def _wait_gone(pids: Callable[[], set[int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def request_poweroff(node: Node) -> None:
    """SIGTERM to nspawn, which turns it into a clean poweroff of the node."""
    supervisor = _read_pid(node)
    if supervisor is not None:
        nspawn = _nspawn_pid(supervisor)
        with contextlib.suppress(ProcessLookupError):
            os.kill(nspawn if nspawn is not None else supervisor, signal.SIGTERM)


def stop_node(node: Node, timeout: float = STOP_TIMEOUT) -> None:
    """Power the node off, then kill whatever is left in its cgroups and remove them."""
    cgroups = recorded_cgroups(node)
    supervisor = _read_pid(node)
    if supervisor is not None:
        request_poweroff(node)
        if not _wait_gone(lambda: {supervisor} if Path(f"/proc/{supervisor}").exists() else set(), timeout):
            log(f"{node.name}: no clean poweroff within {timeout:.0f}s, killing it")
    for _ in range(3):
        pids = _cgroup_pids(cgroups)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if _wait_gone(lambda: _cgroup_pids(cgroups), 10):
            break
    else:
        raise ValueError(f"{node.name}: processes left in its cgroups: {sorted(_cgroup_pids(cgroups))}")
    node.pidfile.unlink(missing_ok=True)
    network.delete_link(node.host_veth)
    remove_cgroups(node)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if (mount_point + "/").startswith(prefix):
            result.append(mount_point)
    return result


def remove_root(node: Node) -> None:
    for mount_point in sorted(mounts_under(node.root), key=len, reverse=True):
        run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(node.root, ignore_errors=False) if node.root.exists() else None
    shutil.rmtree(node.root.with_name(node.name + ".partial"), ignore_errors=True)


def reboot_node(node: Node, timeout: float = BOOT_TIMEOUT) -> None:
    """`systemctl reboot` in the node, then wait until the supervisor booted it again and SSH answers."""
    supervisor = _read_pid(node)
    if supervisor is None:
        raise StepFailed(f"{node.name} is not running (make lab-up)")
    before = _nspawn_pid(supervisor)
    subprocess.run(ssh_argv(node, "sudo", "systemctl", "reboot"), capture_output=True, check=False, timeout=30)
    deadline = time.monotonic() + timeout
    while _nspawn_pid(supervisor) in (before, None):
        if not is_running(node):
            raise ValueError(f"{node.name} did not come back from the reboot; see {node.logfile}")
        if time.monotonic() > deadline:
            raise ValueError(f"{node.name} did not restart within {timeout:.0f}s")
        time.sleep(0.2)
    network.attach(node.host_veth, node.lab.bridge)
    wait_for_ssh([node], timeout)
