"""Shared test plumbing: where the repository and the pinned tools are."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.paths import BIN, REPO
from lab.tools import HELM_PLUGINS

VENV_BIN = REPO / ".venv" / "bin"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment `make` gives commands: pinned tools and the venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), str(VENV_BIN), env.get("PATH", "")])
    env["HELM_PLUGINS"] = str(HELM_PLUGINS)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.update(extra)
    return env


def run_tool(
    argv: list[str | Path], *, check: bool = True, cwd: Path = REPO, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=tool_env(**extra), text=True, capture_output=True, check=check
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
