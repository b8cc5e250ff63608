"""`make conformance` narrows the suite only with FOCUS/SKIP given to make on its
command line: a SKIP exported in the user's shell (pre-commit uses that name)
must not reach the run. `make -n` prints the commands and runs none of them."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from lab.paths import REPO

pytestmark = pytest.mark.static

# what would make a sub-make see the calling make's variables as its own command line
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "FOCUS", "SKIP", "ARGS")


def conformance_argv(*make_args: str, **environment: str) -> list[str]:
    """The arguments `make -n conformance` would give `python -m lab conformance`."""
    env = {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}
    env.update(environment)
    result = subprocess.run(
        ["make", "-n", "conformance", *make_args], cwd=REPO, env=env, text=True, capture_output=True, check=True
    )
    # -n only prints: nothing of `setup` ran (it would log "[lab] ...")
    assert "[lab]" not in result.stdout + result.stderr
    assert "python3 -m lab setup" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if " -m lab conformance" in line]
    return shlex.split(line.partition(" -m lab conformance")[2])


def test_exported_focus_and_skip_are_ignored():
    assert conformance_argv(SKIP="exported", FOCUS="exported") == []


def test_skip_and_focus_on_the_command_line_are_passed():
    assert conformance_argv("SKIP=x", "FOCUS=y") == ["--focus=y", "--skip=x"]


def test_a_command_line_skip_wins_over_an_exported_one():
    assert conformance_argv("SKIP=from-make", SKIP="exported") == ["--skip=from-make"]


def test_a_regex_reaches_the_command_as_one_word():
    regex = r"\[Serial\]|it's (slow)"
    assert conformance_argv(f"SKIP={regex}") == [f"--skip={regex}"]


def test_an_empty_skip_skips_nothing_and_an_empty_focus_keeps_the_default():
    assert conformance_argv("SKIP=", "FOCUS=") == ["--skip="]
