"""Static checks: the same linters a reviewer runs, with the project's configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab.paths import REPO
from tests.conftest import VENV_BIN, run_tool

pytestmark = pytest.mark.static

PLAYBOOKS = sorted(
    str(p.relative_to(REPO)) for p in [*REPO.glob("*.yml"), *(REPO / "playbooks").glob("*.yml")] if p.is_file()
)


def assert_clean(result) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def test_ruff_check():
    assert_clean(run_tool([VENV_BIN / "ruff", "check", "."], check=False))


def test_ruff_format():
    assert_clean(run_tool([VENV_BIN / "ruff", "format", "--check", "."], check=False))


def test_yamllint():
    assert_clean(run_tool([VENV_BIN / "yamllint", "--strict", "."], check=False))


def test_ansible_lint_production_profile():
    assert_clean(run_tool([VENV_BIN / "ansible-lint", "--profile", "production"], check=False))


def test_root_entry_points_exist():
    assert {"site.yml", "deploy.yml"} <= set(PLAYBOOKS)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook):
    # A syntax check needs no hosts; a static inventory keeps it off the AWS API.
    result = run_tool([VENV_BIN / "ansible-playbook", "-i", "localhost,", "--syntax-check", playbook], check=False)
    assert_clean(result)


# Task features newer than ansible-core 2.17, and the version that brought them.
NEWER_FEATURES = {"meta: end_role": (re.compile(r"ansible\.builtin\.meta:\s*end_role"), (2, 18))}
ROLES = sorted(p.parent.parent for p in (REPO / "roles").glob("*/meta/main.yml"))
# README: "The controller needs ansible-core 2.18 to 2.19"
SUPPORTED = re.compile(r"ansible-core (\d+)\.(\d+) to (\d+)\.(\d+)")


def min_ansible_version(role: Path) -> tuple[int, ...]:
    meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
    return tuple(int(part) for part in str(meta["galaxy_info"]["min_ansible_version"]).split("."))


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_min_ansible_version_covers_the_features_the_role_uses(role: Path):
    tasks = "\n".join(p.read_text() for p in sorted(role.rglob("*.yml")))
    needed = {name: version for name, (pattern, version) in NEWER_FEATURES.items() if pattern.search(tasks)}
    for name, version in needed.items():
        assert min_ansible_version(role) >= version, f"{role.name} uses {name}, which needs ansible-core {version}"


def test_readme_states_the_supported_ansible_core_range():
    found = SUPPORTED.search((REPO / "README.md").read_text())
    assert found, "README.md must state 'ansible-core X.Y to X.Y'"
    low, high = tuple(map(int, found.groups()[:2])), tuple(map(int, found.groups()[2:]))
    # the floor is what the playbooks that use every role need
    assert low == max(min_ansible_version(role)[:2] for role in ROLES)
    # and the ansible-core the project pins (and tests with) lies inside the range
    installed = run_tool([VENV_BIN / "python", "-c", "import ansible.release; print(ansible.release.__version__)"])
    assert low <= tuple(map(int, installed.stdout.split(".")[:2])) <= high
