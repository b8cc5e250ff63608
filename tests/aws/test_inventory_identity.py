"""One cluster identity: the aws_ec2 inventory and the roles look for the same cluster, or the run stops.

inventory/aws_ec2.yml finds the nodes by the environment's CLUSTER_NAME and AWS_REGION
(an inventory is read before any play variable exists); the roles create and name the
cluster by cluster_name and ec2_region. When they differ, provision.yml and cluster.yml
stop before any change, naming both; cluster.yml also stops when the inventory found no
master, rather than printing "no hosts matched" for every play and succeeding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.paths import REPO
from tests.aws.conftest import REGION, Moto, PlaybookRun, provision, provision_vars, snapshot
from tests.conftest import VENV_BIN, run_tool

pytestmark = pytest.mark.aws

CLUSTER = "ident"
OTHER_REGION = "us-west-2"
# The first play of cluster.yml that would contact a node.
FIRST_NODE_PLAY = "PLAY [Check the control plane settings before any node changes]"


def run(moto: Moto, playbook: str | Path, env: dict[str, str], extra_vars: dict[str, Any]) -> PlaybookRun:
    """ansible-playbook with the aws_ec2 inventory, the environment given explicitly (CLUSTER_NAME, AWS_REGION)."""
    argv = [VENV_BIN / "ansible-playbook", "-i", moto.inventory, playbook, "-e", json.dumps(extra_vars)]
    return PlaybookRun(run_tool(argv, check=False, **{**moto.env(CLUSTER), **env}))


@pytest.fixture(scope="module")
def provisioned(moto: Moto, public_key: Path) -> dict[str, set[str]]:
    """CLUSTER provisioned in REGION with a matching environment (which passes the check)."""
    moto.reset()
    first = provision(moto, CLUSTER, public_key)
    assert first.ok, first.output
    assert "Check that the aws_ec2 inventory looks for this cluster" in first.output
    return snapshot(moto.ec2())


PROVISION_CASES: dict[str, tuple[dict[str, str], dict[str, Any], list[str]]] = {
    # (the environment the inventory reads, the variables the roles read, what the error must name)
    "cluster name": (
        {"CLUSTER_NAME": "ident-b"},
        {"cluster_name": "ident-a"},
        ["CLUSTER_NAME=ident-b", "cluster_name=ident-a", "Cluster=ident-b"],
    ),
    "region": (
        {"AWS_REGION": REGION},
        {"ec2_region": OTHER_REGION},
        [f"AWS_REGION={REGION}", f"ec2_region={OTHER_REGION}"],
    ),
}


@pytest.mark.parametrize("case", PROVISION_CASES.values(), ids=list(PROVISION_CASES))
def test_provision_stops_before_any_change_when_the_inventory_looks_elsewhere(
    moto: Moto, provisioned: dict[str, set[str]], public_key: Path, case
):
    env, overrides, words = case
    overrides = dict(overrides)
    extra_vars = provision_vars(overrides.pop("cluster_name", CLUSTER), public_key, **overrides)
    mark = len(moto.actions())
    result = run(moto, "playbooks/provision.yml", env, extra_vars)
    assert not result.ok, result.output
    for word in words:
        assert word in result.output, result.output[-4000:]
    assert "Create the VPC" not in result.output
    assert moto.changes_since(mark) == []
    assert snapshot(moto.ec2()) == provisioned


@pytest.mark.parametrize(
    ("env", "extra_vars", "words"),
    [
        # the inventory finds CLUSTER's nodes, the roles would call them "other"
        ({"CLUSTER_NAME": CLUSTER}, {"cluster_name": "other"}, ["CLUSTER_NAME=ident", "cluster_name=other"]),
        # the roles mean CLUSTER in REGION, the inventory looks in another region and finds nothing
        (
            {"AWS_REGION": OTHER_REGION},
            {"cluster_name": CLUSTER},
            [f"AWS_REGION={OTHER_REGION}", f"ec2_region={REGION}"],
        ),
        # both agree on a cluster that has no instance
        ({"CLUSTER_NAME": "absent"}, {"cluster_name": "absent"}, ["no running instance tagged Cluster=absent"]),
    ],
    ids=["cluster name", "region", "nothing found"],
)
def test_cluster_playbook_stops_before_any_node_when_the_inventory_is_not_this_clusters(
    moto: Moto, provisioned: dict[str, set[str]], env, extra_vars, words
):
    result = run(moto, "playbooks/cluster.yml", env, extra_vars)
    assert not result.ok, result.output
    for word in words:
        assert word in result.output, result.output[-4000:]
    # stopped in the first play: no node was contacted
    assert FIRST_NODE_PLAY not in result.output
    assert "UNREACHABLE" not in result.output


def test_inventory_check_passes_when_both_name_the_cluster(moto: Moto, provisioned: dict[str, set[str]], tmp_path):
    """cluster.yml's first play alone (the later ones would SSH to moto's made-up addresses)."""
    playbook = tmp_path / "check.yml"
    plays = yaml.safe_load((REPO / "playbooks" / "cluster.yml").read_text())
    assert plays[0]["name"] == "Check that the inventory is this cluster's"
    playbook.write_text(yaml.safe_dump([plays[0]]))
    result = run(moto, playbook, {}, {"cluster_name": CLUSTER, "ec2_region": REGION})
    assert result.ok, result.output
    assert "Check that every node in the inventory is this cluster's" in result.output
    assert "ok: [ident-master]" in result.output
