"""Shared test plumbing: where the repository and the pinned tools are, a fresh HOME."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.mirror.tools import tool_env
from lab.paths import CACHE, REPO

VENV_BIN = REPO / ".venv" / "bin"

# The suite runs as a new user on a new machine would: HOME is an empty
# directory (no ~/.kube, ~/.ssh, ~/.ansible, ~/.cache, ~/.config), so whatever
# leans on the developer's own home fails here. Only the build cache is kept,
# named explicitly. Set before any test module reads HOME.
os.environ["LAB_CACHE"] = str(CACHE)
FRESH_HOME = Path(tempfile.mkdtemp(prefix="kubeadm-lab-home-"))
os.environ["HOME"] = str(FRESH_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(FRESH_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The upgrade test (a lab of its own built and upgraded, the 1.30 release set built on a cold cache) runs only
    when asked for: LAB_UPGRADE_TEST=1, or a -m expression that names it."""
    if os.environ.get("LAB_UPGRADE_TEST") == "1" or "upgrade" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="upgrade test: set LAB_UPGRADE_TEST=1 or select it with -m upgrade")
    for item in items:
        if item.get_closest_marker("upgrade"):
            item.add_marker(skip)


def run_tool(
    argv: list[str | Path], *, check: bool = True, cwd: Path = REPO, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=tool_env(**extra), text=True, capture_output=True, check=check
    )


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def http_on_loopback(directory: Path) -> Iterator[str]:
    """directory served over HTTP on a free loopback port, as the mirror's apt service serves its root."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


# --------------------------------------------------------------------------- the lab cluster

# Nodes of the lab the mirror, node, cluster and deploy tests run on.
LAB_NODES = 3


@dataclass(frozen=True)
class LabCluster:
    inventory: Path
    # made by this test session from fresh nodes (False with LAB_REUSE=1)
    fresh: bool


def _lab(*args: str) -> None:
    result = run_tool([VENV_BIN / "python", "-m", "lab", *args], check=False)
    if result.returncode != 0:
        pytest.fail(f"python -m lab {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def lab_cluster() -> Iterator[LabCluster]:
    """The default lab with the mirror served and playbooks/cluster.yml converged.

    Every run starts from fresh nodes, so the cold path (packages, kubeadm init,
    join, pod network) is what is proven, and removes them at the end.
    LAB_REUSE=1 tests the lab that is running instead and leaves it running.
    """
    from lab.nodes.topology import Lab

    reuse = os.environ.get("LAB_REUSE") == "1"
    inventory = Lab.from_env().inventory
    if not reuse:
        _lab("down")
    _lab("mirror")  # nothing to do when cached
    _lab("up", "--nodes", str(LAB_NODES))
    started = time.monotonic()
    result = run_tool([VENV_BIN / "ansible-playbook", "-i", inventory, "playbooks/cluster.yml"], check=False)
    if result.returncode != 0:
        pytest.fail(f"playbooks/cluster.yml on the lab failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    print(f"\nlab cluster: cluster.yml converged in {time.monotonic() - started:.0f}s (fresh nodes: {not reuse})")
    yield LabCluster(inventory, fresh=not reuse)
    if not reuse:
        _lab("down")
