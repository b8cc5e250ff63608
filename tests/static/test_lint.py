"""Static checks: the same linters a reviewer runs, with the project's configs."""

from __future__ import annotations

import pytest

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
