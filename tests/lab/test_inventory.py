"""The inventory `lab up` writes: the lab's cluster never takes an AWS cluster's place on the controller."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.nodes.commands import write_inventory
from tests.lab.unit_lab import a_lab


def test_the_lab_kubeconfig_is_the_labs_own_not_the_aws_default(tmp_path: Path) -> None:
    # roles/cluster's default is ~/.kube/<cluster_name>.conf: the lab's cluster_name
    # is the AWS default too, so a lab that kept it overwrote a real cluster's kubeconfig
    lab = a_lab(tmp_path)
    write_inventory(lab, lab.nodes(2))
    variables = yaml.safe_load(lab.inventory.read_text())["all"]["vars"]
    path = Path(variables["cluster_kubeconfig_local_path"])
    assert path == lab.state_dir / "admin.conf"
    assert ".kube" not in path.parts
