"""shellcheck on every shell script of the project: the lab's (the node image's
scripts in lab/nodes/files among them), the roles' files and CI's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.paths import REPO

pytestmark = pytest.mark.static

SHEBANG = re.compile(r"#!\s*(?:/usr/bin/env\s+)?(?:/usr)?(?:/bin/)?(?:sh|bash|dash)\b")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".ruff_cache", ".pytest_cache", ".molecule", "reports", "build"}
# Findings that cannot be fixed in the file itself, with why. The node image's
# files cannot even take a `# shellcheck disable=` line: their bytes are hashed
# into the cached base root's name (lab.nodes.image.prepare_base).
EXCLUDES = {
    # SC1091: it sources /etc/lab/network, which exists only on a node
    "lab/nodes/files/lab-network": ["SC1091"],
}
# What the search must find, so that a broken search cannot pass.
EXPECTED = {
    ".ci/run",
    "lab/nodes/files/lab-bpffs",
    "lab/nodes/files/lab-cgroup-rw",
    "lab/nodes/files/lab-network",
    "lab/nodes/files/lab-runc",
    "lab/nodes/files/lab-supervisor",
}


def shell_scripts() -> list[str]:
    """Paths (relative to the repository) of the files named *.sh or starting with a sh/bash shebang."""
    found = []
    for directory, subdirectories, files in os.walk(REPO):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRS)
        for name in files:
            path = Path(directory) / name
            if path.suffix == ".sh":
                found.append(path)
                continue
            with path.open("rb") as file:
                first = file.readline(200)
            if SHEBANG.match(first.decode("utf-8", errors="replace")):
                found.append(path)
    return sorted(str(p.relative_to(REPO)) for p in found)


SCRIPTS = shell_scripts()


def test_shellcheck_is_installed():
    assert shutil.which("shellcheck"), "shellcheck is missing: `make setup` installs it (Debian package shellcheck)"


def test_every_expected_script_is_checked():
    assert set(SCRIPTS) >= EXPECTED, f"not found: {sorted(EXPECTED - set(SCRIPTS))}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script: str):
    assert shutil.which("shellcheck"), "shellcheck is missing: `make setup` installs it (Debian package shellcheck)"
    excludes = [f"--exclude={','.join(EXCLUDES[script])}"] if script in EXCLUDES else []
    result = subprocess.run(["shellcheck", *excludes, script], cwd=REPO, text=True, capture_output=True, check=False)
    assert result.returncode == 0, f"shellcheck {script}:\n{result.stdout}{result.stderr}"
