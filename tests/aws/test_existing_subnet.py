"""A user's existing subnet, Calico IP-in-IP and an explicitly world-open admin CIDR.

The role must build into the given subnet without creating network resources,
open IP protocol 4 between nodes and turn the source/destination check off,
and teardown must leave the user's VPC and subnet alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.aws.conftest import Moto, ingress_rules, live_instances, provision, snapshot, tag_filter, teardown

pytestmark = pytest.mark.aws

CLUSTER = "byo"


def test_existing_subnet_with_ipip(moto: Moto, public_key: Path):
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
    run = provision(moto, CLUSTER, public_key, **overrides)
    assert run.ok, run.output

    after = snapshot(ec2)
    for kind in ("vpcs", "subnets", "internet_gateways", "route_tables"):
        assert after[kind] == before[kind], kind
    groups = ec2.describe_security_groups(Filters=tag_filter(CLUSTER))["SecurityGroups"]
    assert {g["VpcId"] for g in groups} == {vpc}

    rules = ingress_rules(ec2, ["byo-nodes"])
    assert ("byo-nodes", "4", None, None, "byo-nodes") in rules  # IP-in-IP, no ports (as AWS shows it)
    assert ("byo-nodes", "tcp", 22, 22, "0.0.0.0/0") in rules  # asked for explicitly

    again = provision(moto, CLUSTER, public_key, **overrides)
    assert again.ok, again.output
    assert again.changed == 0, again.output

    nodes = live_instances(ec2, tag_filter(CLUSTER))
    assert [(n["SubnetId"], n["SourceDestCheck"]) for n in nodes] == [(subnet, False)]

    removed = teardown(moto, CLUSTER)
    assert removed.ok, removed.output
    assert snapshot(ec2) == before
