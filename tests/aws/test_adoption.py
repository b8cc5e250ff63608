"""Nothing the project did not create is taken over, changed or deleted.

A key pair, VPC, subnet, security group, load balancer or target group that
already exists under the name the role would use, without this cluster's
tag, stops the run before any
change, with a message naming it and the way out; teardown afterwards leaves
it exactly as it was (tags, rules and all). Before this check, a same-named
key pair was re-tagged Cluster=<name> and teardown then deleted it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import Moto, described, provision, teardown

pytestmark = pytest.mark.aws

# The first task that changes anything; a refusal must come before it.
FIRST_AWS_TASK = "Create the VPC"


@pytest.fixture(scope="module")
def users(moto: Moto, public_key: Path) -> dict[str, Any]:
    """Someone else's resources, each under a name one of the clusters below would use."""
    moto.reset()
    ec2 = moto.ec2()

    def spec(kind: str, **tags: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]

    # cluster "keyclash": a key pair of that name, the user's own
    ec2.import_key_pair(
        KeyName="keyclash", PublicKeyMaterial=public_key.read_bytes(), TagSpecifications=spec("key-pair", Owner="ops")
    )
    # cluster "vpcclash": a VPC with that Name and the default CIDR, without the Cluster tag
    ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", Name="vpcclash", Team="network"))
    # cluster "subclash": its own VPC (from an earlier run), into which the user put a subnet of the default CIDR
    own_vpc = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", Name="subclash", Cluster="subclash")
    )
    subnet = ec2.create_subnet(
        VpcId=own_vpc["Vpc"]["VpcId"], CidrBlock="10.0.1.0/24", TagSpecifications=spec("subnet", Name="users-db")
    )["Subnet"]["SubnetId"]
    # cluster "grpclash" in the user's subnet: a group named like the cluster's, another cluster's tag, a rule
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    users_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="grpclash-nodes",
        Description="the database's",
        VpcId=vpc,
        TagSpecifications=spec("security-group", Cluster="legacy"),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.30.0.0/16"}]}
        ],
    )
    # clusters "lbclash" and "tgclash": the user's NLB and target group named like their app's (<cluster>-app)
    elbv2 = moto.elbv2()
    elbv2.create_load_balancer(
        Name="lbclash-app", Type="network", Subnets=[users_subnet], Tags=[{"Key": "Owner", "Value": "web"}]
    )
    elbv2.create_target_group(
        Name="tgclash-app", Protocol="TCP", Port=8080, VpcId=vpc, Tags=[{"Key": "Team", "Value": "data"}]
    )
    return {"subnet": subnet, "users_subnet": users_subnet, "group": group, "before": described(ec2)}


CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("key pair", "keyclash", {}, ["The key pair 'keyclash'", "Cluster=keyclash", '"Owner": "ops"', "ec2_key_name"]),
    ("VPC", "vpcclash", {}, ["(Name=vpcclash, 10.0.0.0/16)", "Cluster=vpcclash", '"Team": "network"', "cluster_name"]),
    ("subnet", "subclash", {}, ["{subnet} (10.0.1.0/24)", "Cluster=subclash", '"Name": "users-db"', "ec2_subnet_cidr"]),
    (
        "security group",
        "grpclash",
        {"ec2_subnet_id": "{users_subnet}", "ec2_worker_count": 0},
        ["grpclash-nodes ({group})", "Cluster=grpclash", '"Cluster": "legacy"', "cluster_name"],
    ),
    ("load balancer", "lbclash", {}, ["network load balancer(s) lbclash-app", '"Owner": "web"', "ec2_app_lb_name"]),
    ("target group", "tgclash", {}, ["target group(s) tgclash-app", '"Team": "data"', "ec2_app_lb_name"]),
]


@pytest.mark.parametrize("case", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_someone_elses_resource_is_refused_and_left_alone(
    moto: Moto, public_key: Path, users: dict[str, Any], case: tuple[str, dict[str, Any], list[str]]
):
    cluster, overrides, words = case
    ec2 = moto.ec2()
    overrides = {key: str(value).format(**users) for key, value in overrides.items()}
    mark = len(moto.actions())

    run = provision(moto, cluster, public_key, **overrides)
    assert not run.ok, run.output
    for word in words:
        assert word.format(**users) in run.output, run.output
    assert "Nothing was changed" in run.output
    assert FIRST_AWS_TASK not in run.output
    assert moto.changes_since(mark) == []
    assert described(ec2) == users["before"]

    run = teardown(moto, cluster)
    assert described(ec2) == users["before"]  # the user's resource exactly as it was, tags and rules included
    if cluster == "subclash":
        # the cluster's own VPC cannot go while the user's subnet is in it: said so, and the subnet left alone
        assert not run.ok
        assert f"they still hold the subnet(s) {users['subnet']}" in run.output, run.output
    else:
        assert run.ok, run.output
