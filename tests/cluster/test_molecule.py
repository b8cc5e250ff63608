"""`molecule test` as the design card names it: the delegated scenario on the lab
(converge = playbooks/cluster.yml, molecule's idempotence check, testinfra verify)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import VENV_BIN, LabCluster, run_tool

pytestmark = pytest.mark.cluster


def test_molecule_test_passes_on_the_lab(lab_cluster: LabCluster) -> None:
    result = run_tool([VENV_BIN / "molecule", "test"], check=False, LAB_REUSE="1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # molecule fails on a changed task in its idempotence step; verify is testinfra's pytest run
    assert re.search(r"\d+ passed", output), output[-3000:]
