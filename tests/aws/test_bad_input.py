"""Bad input stops provision.yml before any change, naming the variable, and creates nothing.

Malformed input stops before the first AWS call. Input that is well formed
but wrong for the account (a zone, AMI, subnet or instance type the region
does not have, a root volume smaller than the image, a master below kubeadm's
minimum) is found with read-only Describe calls, before anything is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import Moto, provision, snapshot

pytestmark = pytest.mark.aws

CLUSTER = "bad"
# The first task that talks to AWS; a validation failure must come before it.
FIRST_AWS_TASK = "Create the VPC"

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("key file missing", {"ec2_ssh_public_key_path": "/nonexistent/id_ed25519.pub"}, ["ec2_ssh_public_key_path"]),
    ("worker count negative", {"ec2_worker_count": -1}, ["ec2_worker_count"]),
    ("worker count a word", {"ec2_worker_count": "two"}, ["ec2_worker_count"]),
    ("worker count a fraction", {"ec2_worker_count": 1.5}, ["ec2_worker_count"]),
    ("prefix too long", {"ec2_vpc_cidr": "10.0.0.0/33"}, ["ec2_vpc_cidr"]),
    ("address out of range", {"ec2_admin_cidr": "300.1.2.3/32"}, ["ec2_admin_cidr"]),
    ("no prefix", {"ec2_nodeport_cidr": "198.51.100.7"}, ["ec2_nodeport_cidr"]),
    ("host bits set", {"ec2_subnet_cidr": "10.0.1.7/24"}, ["ec2_subnet_cidr"]),
    ("subnet outside the VPC", {"ec2_subnet_cidr": "10.1.0.0/24"}, ["ec2_subnet_cidr", "ec2_vpc_cidr"]),
    (
        "VPC overlaps Calico's default pod CIDR",
        {"ec2_vpc_cidr": "192.168.0.0/16", "ec2_subnet_cidr": "192.168.1.0/24"},
        ["ec2_vpc_cidr", "cluster_pod_cidr"],
    ),
    ("unknown region", {"ec2_region": "moon-central-1"}, ["ec2_region", "moon-central-1"]),
    ("region with a typo", {"ec2_region": "us-east-9"}, ["ec2_region"]),
    ("no admin CIDR", {"ec2_admin_cidr": ""}, ["ec2_admin_cidr is required"]),
    ("SSH open to the internet unasked", {"ec2_admin_cidr": "0.0.0.0/0"}, ["ec2_admin_cidr", "ec2_allow_any_source"]),
    ("NodePorts open to the internet unasked", {"ec2_nodeport_cidr": "0.0.0.0/0"}, ["ec2_nodeport_cidr"]),
    # cluster_name is kubeadm's clusterName, the Cluster tag and the teardown filter
    ("cluster name empty", {"cluster_name": ""}, ["cluster_name must be a DNS label"]),
    ("cluster name with capitals", {"cluster_name": "Demo"}, ["cluster_name must be a DNS label", "'Demo'"]),
    ("cluster name a wildcard", {"cluster_name": "demo-*"}, ["cluster_name must be a DNS label"]),
    ("cluster name too long", {"cluster_name": "a" * 64}, ["cluster_name must be a DNS label"]),
    # the tags the inventory, teardown and the role itself find resources by
    ("extra tag Cluster", {"ec2_extra_tags": {"Cluster": "other"}}, ["ec2_extra_tags may not set Cluster"]),
    ("extra tag Role", {"ec2_extra_tags": {"Owner": "me", "Role": "worker"}}, ["ec2_extra_tags may not set Role"]),
    ("extra tag Name", {"ec2_extra_tags": {"Name": "mine"}}, ["ec2_extra_tags may not set Name"]),
    ("extra tag in AWS's namespace", {"ec2_extra_tags": {"aws:owner": "me"}}, ["ec2_extra_tags", "aws:"]),
    ("extra tag value too long", {"ec2_extra_tags": {"Owner": "x" * 257}}, ["ec2_extra_tags", "256"]),
    ("root volume of 0 GiB", {"ec2_root_volume_size": 0}, ["ec2_root_volume_size"]),
    ("zone of another region", {"ec2_availability_zone": "eu-west-1a"}, ["ec2_availability_zone", "ec2_region"]),
    ("instance type without a size", {"ec2_master_instance_type": "t3"}, ["ec2_master_instance_type"]),
    # the app's load balancer: AWS's ranges for a listener and a health check
    ("listener port 0", {"ec2_app_lb_port": 0}, ["ec2_app_lb_port must be a whole number from 1 to 65535"]),
    (
        "health check every 4 s",
        {"ec2_app_lb_health_check_interval": 4},
        ["ec2_app_lb_health_check_interval", "5 to 300"],
    ),
    (
        "health check timeout not below the interval",
        {"ec2_app_lb_health_check_timeout": 5},
        ["ec2_app_lb_health_check_timeout (5) must be less than ec2_app_lb_health_check_interval (5)"],
    ),
    ("unhealthy threshold 11", {"ec2_app_lb_unhealthy_threshold": 11}, ["ec2_app_lb_unhealthy_threshold", "2 to 10"]),
    # <cluster_name>-app: AWS's 32 characters
    ("load balancer name too long", {"cluster_name": "a" * 29}, ["ec2_app_lb_name must be 1 to 32"]),
    ("app open to the internet unasked", {"ec2_app_lb_cidr": "0.0.0.0/0"}, ["ec2_app_lb_cidr", "ec2_allow_any_source"]),
    ("NodePort outside Kubernetes' range", {"app_node_port": 8080}, ["app_node_port must be a NodePort", "8080"]),
]

# Well formed, but not what the region holds: found with read-only calls.
REGION_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("zone the region lacks", {"ec2_availability_zone": "us-east-1z"}, ["ec2_availability_zone", "us-east-1z"]),
    # moto's images have a 15 GiB root snapshot (Canonical's have 8)
    ("root volume smaller than the image", {"ec2_root_volume_size": 10}, ["ec2_root_volume_size", "15 GiB"]),
    ("AMI that does not exist", {"ec2_ami_id": "ami-0123456789abcdef0"}, ["ec2_ami_id", "does not exist"]),
    ("arm64 AMI on x86 instance types", {"ec2_ami_id": "ami-0c33333333333333c"}, ["ec2_master_instance_type", "arm64"]),
    ("subnet that does not exist", {"ec2_subnet_id": "subnet-0123456789abcdef0"}, ["ec2_subnet_id", "does not exist"]),
    (
        "instance type the region lacks",
        {"ec2_worker_instance_type": "t3.huge"},
        ["ec2_worker_instance_type", "t3.huge"],
    ),
    ("t3.micro master: 1024 MiB", {"ec2_master_instance_type": "t3.micro"}, ["ec2_master_instance_type", "1024 MiB"]),
    ("t2.small master: 1 vCPU", {"ec2_master_instance_type": "t2.small"}, ["ec2_master_instance_type", "1 vCPU"]),
]


@pytest.fixture(scope="module")
def empty_region(moto: Moto) -> dict[str, set[str]]:
    moto.reset()
    return snapshot(moto.ec2())


def assert_refused(
    moto: Moto, before: dict[str, set[str]], public_key: Path, overrides: dict[str, Any], words: list[str]
):
    overrides = dict(overrides)
    cluster_name = overrides.pop("cluster_name", CLUSTER)
    calls = moto.api_calls()
    # A static inventory: the aws_ec2 one would call the API while it loads.
    run = provision(moto, cluster_name, public_key, inventory="localhost,", **overrides)
    assert not run.ok, run.output
    for word in words:
        assert word in run.output, run.output
    assert FIRST_AWS_TASK not in run.output
    assert moto.api_calls() == calls  # not a single request reached the API
    assert snapshot(moto.ec2()) == before


def assert_refused_after_reading(
    moto: Moto, before: dict[str, set[str]], public_key: Path, overrides: dict[str, Any], words: list[str]
):
    mark = len(moto.actions())
    run = provision(moto, CLUSTER, public_key, **overrides)
    assert not run.ok, run.output
    for word in words:
        assert word in run.output, run.output
    assert FIRST_AWS_TASK not in run.output
    assert [a for a in moto.actions()[mark:] if a.startswith("Describe")]  # it did ask the region ...
    assert moto.changes_since(mark) == []  # ... and changed nothing
    assert snapshot(moto.ec2()) == before


@pytest.mark.parametrize(("overrides", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_any_aws_call(
    moto: Moto, empty_region: dict[str, set[str]], public_key: Path, overrides: dict[str, Any], words: list[str]
):
    assert_refused(moto, empty_region, public_key, overrides, words)


@pytest.mark.parametrize(
    ("overrides", "words"), [case[1:] for case in REGION_CASES], ids=[case[0] for case in REGION_CASES]
)
def test_input_the_region_cannot_serve_is_refused_before_any_change(
    moto: Moto, empty_region: dict[str, set[str]], public_key: Path, overrides: dict[str, Any], words: list[str]
):
    assert_refused_after_reading(moto, empty_region, public_key, overrides, words)


def test_zone_other_than_the_existing_subnets(moto: Moto, empty_region: dict[str, set[str]], public_key: Path):
    # moto's default VPC has a default subnet in every zone
    filters = [{"Name": "availability-zone", "Values": ["us-east-1a"]}, {"Name": "default-for-az", "Values": ["true"]}]
    subnet = moto.ec2().describe_subnets(Filters=filters)["Subnets"][0]["SubnetId"]
    overrides = {"ec2_subnet_id": subnet, "ec2_availability_zone": "us-east-1b"}
    assert_refused_after_reading(
        moto, empty_region, public_key, overrides, ["ec2_availability_zone", "lies in us-east-1a"]
    )


def test_key_path_that_is_a_directory(moto: Moto, empty_region: dict[str, set[str]], public_key: Path):
    overrides = {"ec2_ssh_public_key_path": str(public_key.parent)}
    assert_refused(moto, empty_region, public_key, overrides, ["ec2_ssh_public_key_path", "missing or unreadable"])


def test_private_key_is_never_uploaded(moto: Moto, empty_region: dict[str, set[str]], public_key: Path):
    overrides = {"ec2_ssh_public_key_path": str(public_key.with_suffix(""))}
    assert_refused(moto, empty_region, public_key, overrides, ["ec2_ssh_public_key_path", "public key"])


def test_check_mode_in_an_empty_region_creates_nothing(moto: Moto, empty_region: dict[str, set[str]], public_key: Path):
    run = provision(moto, CLUSTER, public_key, check=True)
    assert run.ok, run.output
    assert run.changed == 1, run.output  # the VPC it would create; the rest needs its id
    assert "Check mode stops here" in run.output
    assert snapshot(moto.ec2()) == empty_region
