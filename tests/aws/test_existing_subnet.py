"""A user's existing subnet, Calico IP-in-IP, an explicitly world-open admin CIDR, and the SSH wait.

The role must build into the given subnet without creating network resources,
open IP protocol 4 between nodes and turn the source/destination check off,
wait for SSH unless told not to, and teardown must leave the user's VPC and
subnet alone. The tests run in file order and share the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import (
    Moto,
    PlaybookRun,
    ingress_rules,
    live_instances,
    provision,
    provision_vars,
    run_playbook,
    snapshot,
    tag_filter,
    teardown,
)

pytestmark = pytest.mark.aws

CLUSTER = "byo"


@dataclass
class Existing:
    vpc: str
    subnet: str
    before: dict[str, set[str]]
    overrides: dict[str, Any]
    first_run: PlaybookRun


@pytest.fixture(scope="module")
def existing(moto: Moto, public_key: Path) -> Existing:
    moto.reset()
    ec2 = moto.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    before = snapshot(ec2)
    overrides = {
        "ec2_subnet_id": subnet,
        "ec2_worker_count": 0,
        "cluster_calico_encapsulation": "ipip",
        "ec2_admin_cidr": "0.0.0.0/0",
        "ec2_allow_any_source": True,
    }
    # The first run keeps the default SSH wait (short): moto's address has no sshd.
    extra = provision_vars(CLUSTER, public_key, **overrides, ec2_ssh_wait_timeout=1)
    del extra["ec2_wait_for_ssh"]
    first_run = run_playbook(moto, "playbooks/provision.yml", CLUSTER, extra)
    return Existing(vpc, subnet, before, overrides, first_run)


def test_ssh_wait_is_on_by_default(existing: Existing):
    output = existing.first_run.output
    assert not existing.first_run.ok
    assert "changed: [localhost] => (item=byo-master)" in output  # launched ...
    assert "TASK [ec2 : Wait until SSH answers on every node]" in output  # ... then waited, and timed out
    assert "failed: [localhost] (item=byo-master" in output


def test_nothing_networked_is_created_in_an_existing_subnet(moto: Moto, existing: Existing):
    ec2 = moto.ec2()
    after = snapshot(ec2)
    for kind in ("vpcs", "subnets", "internet_gateways", "route_tables"):
        assert after[kind] == existing.before[kind], kind
    groups = ec2.describe_security_groups(Filters=tag_filter(CLUSTER))["SecurityGroups"]
    assert {g["VpcId"] for g in groups} == {existing.vpc}
    assert [n["SubnetId"] for n in live_instances(ec2, tag_filter(CLUSTER))] == [existing.subnet]


def test_ipip_opens_protocol_4_and_bgp_and_turns_the_source_destination_check_off(moto: Moto, existing: Existing):
    ec2 = moto.ec2()
    nodes, master, workers = "byo-nodes", "byo-master", "byo-workers"
    assert ingress_rules(ec2, [nodes, master, workers]) == {
        (nodes, "tcp", 22, 22, "0.0.0.0/0"),  # asked for explicitly
        (nodes, "4", None, None, nodes),  # IP-in-IP, no ports (as AWS shows it)
        (nodes, "tcp", 179, 179, nodes),  # BGP: Calico's IP-in-IP manifest runs BIRD
        (master, "tcp", 6443, 6443, "0.0.0.0/0"),
        (master, "tcp", 6443, 6443, nodes),
        (master, "tcp", 2379, 2380, master),
        (master, "tcp", 10250, 10250, master),
        (workers, "tcp", 10250, 10250, master),
        (workers, "tcp", 30000, 32767, "0.0.0.0/0"),  # ec2_nodeport_cidr follows ec2_admin_cidr
        # the app's NLB: its clients (ec2_app_lb_cidr follows ec2_nodeport_cidr), its health checks from this subnet
        (workers, "tcp", 30080, 30080, "0.0.0.0/0"),
        (workers, "tcp", 30080, 30080, "10.20.1.0/24"),
    }
    assert [n["SourceDestCheck"] for n in live_instances(ec2, tag_filter(CLUSTER))] == [False]


def test_rerun_without_the_ssh_wait_changes_nothing(moto: Moto, public_key: Path, existing: Existing):
    state = snapshot(moto.ec2())
    run = provision(moto, CLUSTER, public_key, **existing.overrides)
    assert run.ok, run.output
    assert run.changed == 0, run.output
    assert snapshot(moto.ec2()) == state


def test_teardown_leaves_the_users_network(moto: Moto, existing: Existing):
    run = teardown(moto, CLUSTER)
    assert run.ok, run.output
    assert snapshot(moto.ec2()) == existing.before
