"""provision.yml, the aws_ec2 inventory, deploy's look-up of the app's NLB and teardown.yml against moto.

The module provisions one cluster next to resources that belong to someone
else, inspects it, re-runs, scales it out and in, and tears it down, in the
order a user runs them; the tests run in file order and share that cluster.
moto runs no health checks: the NLB tests prove configuration, registration,
idempotence and teardown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws.conftest import (
    ADMIN_CIDR,
    CANONICAL,
    NEWEST_JAMMY_AMD64,
    Moto,
    PlaybookRun,
    elb_tags,
    ingress_rules,
    inventory,
    listeners,
    live_instances,
    provision,
    run_playbook,
    snapshot,
    tag_filter,
    tagged,
    tags,
    targets,
    teardown,
)

pytestmark = pytest.mark.aws

CLUSTER = "demo"
NODEPORT_CIDR = "198.51.100.0/24"
APP_CIDR = "192.0.2.0/24"
# The app's NodePort: the app role's variable, which the target group follows.
NODE_PORT = 31080
# Non-default choices, so the test sees them reach AWS.
OVERRIDES: dict[str, Any] = {
    "ec2_nodeport_cidr": NODEPORT_CIDR,
    "ec2_worker_instance_type": "t3.small",
    "ec2_extra_tags": {"Owner": "aws-tests"},
    "app_node_port": NODE_PORT,
    "ec2_app_lb_port": 8080,
    "ec2_app_lb_cidr": APP_CIDR,
    "ec2_app_lb_health_check_interval": 10,
    "ec2_app_lb_health_check_timeout": 6,
    "ec2_app_lb_healthy_threshold": 3,
    "ec2_app_lb_unhealthy_threshold": 4,
}


@pytest.fixture(scope="module")
def bystanders(moto: Moto, public_key: Path) -> dict[str, str]:
    """Resources teardown must not touch: another cluster's VPC, group, key, instance and NLB, an untagged group."""
    moto.reset()
    ec2 = moto.ec2()
    other = [{"Key": "Cluster", "Value": "other"}]
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": other}])["Vpc"][
        "VpcId"
    ]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="other-nodes",
        Description="another cluster",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": other}],
    )["GroupId"]
    untagged_group = ec2.create_security_group(GroupName="untagged", Description="nobody's")["GroupId"]
    ec2.import_key_pair(
        KeyName="other",
        PublicKeyMaterial=public_key.read_bytes(),
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": other}],
    )
    instance = ec2.run_instances(
        ImageId=NEWEST_JAMMY_AMD64,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [*other, {"Key": "Role", "Value": "master"}, {"Key": "Name", "Value": "other-master"}],
            }
        ],
    )["Instances"][0]["InstanceId"]
    elbv2 = moto.elbv2()
    elbv2.create_load_balancer(Name="other-app", Type="network", Subnets=[subnet], Tags=other)
    elbv2.create_target_group(Name="other-app", Protocol="TCP", Port=30080, VpcId=vpc, Tags=other)
    return {"vpc": vpc, "group": group, "untagged_group": untagged_group, "instance": instance}


@pytest.fixture(scope="module")
def before(moto: Moto, bystanders: dict[str, str]) -> dict[str, set[str]]:
    """The region before provisioning: what teardown must bring back."""
    return snapshot(moto.ec2())


@pytest.fixture(scope="module")
def first_run(moto: Moto, public_key: Path, before: dict[str, set[str]]) -> PlaybookRun:
    run = provision(moto, CLUSTER, public_key, **OVERRIDES)
    assert run.ok, run.output
    return run


@pytest.fixture(scope="module")
def vpc(moto: Moto, first_run: PlaybookRun) -> dict[str, Any]:
    vpcs = moto.ec2().describe_vpcs(Filters=tag_filter(CLUSTER))["Vpcs"]
    assert len(vpcs) == 1, vpcs
    return vpcs[0]


def test_network_is_a_vpc_with_one_public_subnet(moto: Moto, first_run: PlaybookRun, vpc: dict[str, Any]):
    ec2 = moto.ec2()
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert tags(vpc) == {"Cluster": CLUSTER, "Name": CLUSTER, "Owner": "aws-tests"}

    subnets = ec2.describe_subnets(Filters=tag_filter(CLUSTER))["Subnets"]
    assert [(s["VpcId"], s["CidrBlock"], s["MapPublicIpOnLaunch"]) for s in subnets] == [
        (vpc["VpcId"], "10.0.1.0/24", True)
    ]

    gateways = ec2.describe_internet_gateways(Filters=tag_filter(CLUSTER))["InternetGateways"]
    assert [[a["VpcId"] for a in g["Attachments"]] for g in gateways] == [[vpc["VpcId"]]]

    tables = ec2.describe_route_tables(Filters=tag_filter(CLUSTER))["RouteTables"]
    assert len(tables) == 1
    assert [a["SubnetId"] for a in tables[0]["Associations"]] == [subnets[0]["SubnetId"]]
    default_routes = [r.get("GatewayId") for r in tables[0]["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert default_routes == [gateways[0]["InternetGatewayId"]]


def test_security_groups_allow_exactly_the_cluster_ports(moto: Moto, first_run: PlaybookRun, vpc: dict[str, Any]):
    ec2 = moto.ec2()
    groups = ec2.describe_security_groups(Filters=tag_filter(CLUSTER))["SecurityGroups"]
    assert sorted(g["GroupName"] for g in groups) == ["demo-master", "demo-nodes", "demo-workers"]
    assert {g["VpcId"] for g in groups} == {vpc["VpcId"]}

    # Calico VXLAN (the default): pod traffic is UDP 4789 between nodes; no BGP,
    # etcd only among control-plane nodes, kubelets only from the API server.
    nodes, master, workers = "demo-nodes", "demo-master", "demo-workers"
    assert ingress_rules(ec2, [nodes, master, workers]) == {
        (nodes, "tcp", 22, 22, ADMIN_CIDR),
        (nodes, "udp", 4789, 4789, nodes),
        (master, "tcp", 6443, 6443, ADMIN_CIDR),
        (master, "tcp", 6443, 6443, nodes),
        (master, "tcp", 2379, 2380, master),
        (master, "tcp", 10250, 10250, master),
        (workers, "tcp", 10250, 10250, master),
        (workers, "tcp", 30000, 32767, NODEPORT_CIDR),
        # the app's NLB has no security group: its clients arrive with their own
        # addresses, its health checks from its addresses in the subnet
        (workers, "tcp", NODE_PORT, NODE_PORT, APP_CIDR),
        (workers, "tcp", NODE_PORT, NODE_PORT, "10.0.1.0/24"),
    }


def running_workers(moto: Moto) -> list[tuple[str, int]]:
    """(instance id, NodePort) of the cluster's running workers: what the app's target group must hold."""
    filters = [*tag_filter(CLUSTER), {"Name": "tag:Role", "Values": ["worker"]}]
    return sorted(
        (i["InstanceId"], NODE_PORT) for i in live_instances(moto.ec2(), filters) if i["State"]["Name"] == "running"
    )


def app_target_group(moto: Moto) -> dict[str, Any]:
    groups = moto.elbv2().describe_target_groups(Names=["demo-app"])["TargetGroups"]
    assert len(groups) == 1, groups
    return groups[0]


def test_app_load_balancer_forwards_to_the_workers_nodeport(moto: Moto, first_run: PlaybookRun, vpc: dict[str, Any]):
    elbv2 = moto.elbv2()
    balancers = [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["VpcId"] == vpc["VpcId"]]
    assert [(lb["LoadBalancerName"], lb["Type"], lb["Scheme"]) for lb in balancers] == [
        ("demo-app", "network", "internet-facing")
    ]
    balancer = balancers[0]
    subnets = moto.ec2().describe_subnets(Filters=tag_filter(CLUSTER))["Subnets"]
    assert [z["SubnetId"] for z in balancer["AvailabilityZones"]] == [s["SubnetId"] for s in subnets]
    assert not balancer.get("SecurityGroups")  # so the workers see the clients' addresses
    expected_tags = {"Cluster": CLUSTER, "Name": "demo-app", "Owner": "aws-tests"}
    assert tags({"Tags": elb_tags(elbv2, balancer["LoadBalancerArn"])}) == expected_tags

    group = app_target_group(moto)
    assert [
        (a["Type"], a["TargetGroupArn"], listener["Protocol"], listener["Port"])
        for listener in listeners(elbv2, balancer)
        for a in listener["DefaultActions"]
    ] == [("forward", group["TargetGroupArn"], "TCP", 8080)]
    assert {key: group.get(key) for key in HEALTH_CHECK} == {
        "Protocol": "TCP",
        "Port": NODE_PORT,
        "TargetType": "instance",
        "VpcId": vpc["VpcId"],
        # GET /health (the pods' readiness) through each worker's NodePort
        "HealthCheckProtocol": "HTTP",
        "HealthCheckPort": "traffic-port",
        "HealthCheckPath": "/health",
        "Matcher": {"HttpCode": "200"},
        "HealthCheckIntervalSeconds": 10,
        "HealthCheckTimeoutSeconds": 6,
        "HealthyThresholdCount": 3,
        "UnhealthyThresholdCount": 4,
    }
    assert tags({"Tags": elb_tags(elbv2, group["TargetGroupArn"])}) == expected_tags
    assert targets(elbv2, group["TargetGroupArn"]) == running_workers(moto)
    assert len(running_workers(moto)) == 1
    # the run ends by telling where the app will answer (moto's DNS name)
    assert "load balancer: http://demo-app-1.us-east-1.elb.amazonaws.com:8080/" in first_run.output


HEALTH_CHECK = [
    "Protocol",
    "Port",
    "TargetType",
    "VpcId",
    "HealthCheckProtocol",
    "HealthCheckPort",
    "HealthCheckPath",
    "Matcher",
    "HealthCheckIntervalSeconds",
    "HealthCheckTimeoutSeconds",
    "HealthyThresholdCount",
    "UnhealthyThresholdCount",
]


def test_no_ingress_is_open_to_the_internet(moto: Moto, first_run: PlaybookRun):
    rules = ingress_rules(moto.ec2(), ["demo-nodes", "demo-master", "demo-workers"])
    assert rules
    assert not [rule for rule in rules if rule[4] in {"0.0.0.0/0", "::/0"}]


def test_nodes_are_hardened_tagged_and_on_the_newest_ubuntu_jammy(
    moto: Moto, first_run: PlaybookRun, vpc: dict[str, Any]
):
    ec2 = moto.ec2()
    nodes = {tags(i)["Name"]: i for i in live_instances(ec2, tag_filter(CLUSTER))}
    assert sorted(nodes) == ["demo-master", "demo-worker-1"]

    group_names = {name: sorted(g["GroupName"] for g in i["SecurityGroups"]) for name, i in nodes.items()}
    assert group_names == {
        "demo-master": ["demo-master", "demo-nodes"],
        "demo-worker-1": ["demo-nodes", "demo-workers"],
    }
    assert {name: tags(i) for name, i in nodes.items()} == {
        "demo-master": {"Cluster": CLUSTER, "Role": "master", "Name": "demo-master", "Owner": "aws-tests"},
        "demo-worker-1": {"Cluster": CLUSTER, "Role": "worker", "Name": "demo-worker-1", "Owner": "aws-tests"},
    }
    assert nodes["demo-master"]["InstanceType"] == "t3.medium"
    assert nodes["demo-worker-1"]["InstanceType"] == "t3.small"

    image = ec2.describe_images(ImageIds=[NEWEST_JAMMY_AMD64])["Images"][0]
    assert image["OwnerId"] == CANONICAL  # the seed is right; newer arm64, noble and non-Canonical decoys exist
    for instance in nodes.values():
        assert instance["ImageId"] == NEWEST_JAMMY_AMD64
        assert instance["KeyName"] == CLUSTER
        assert instance["VpcId"] == vpc["VpcId"]
        assert instance.get("PublicIpAddress")
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
        # VXLAN (the default encapsulation) keeps the source/destination check on
        assert instance["SourceDestCheck"] is True
        volume_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
        volumes = ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]
        assert [(v["VolumeType"], v["Encrypted"], v["Size"]) for v in volumes] == [("gp3", True, 30)]


def test_key_pair_is_the_users_public_key(moto: Moto, public_key: Path, first_run: PlaybookRun):
    keys = moto.ec2().describe_key_pairs(Filters=tag_filter(CLUSTER), IncludePublicKey=True)["KeyPairs"]
    assert [(k["KeyName"], k["KeyType"]) for k in keys] == [(CLUSTER, "ed25519")]
    if "PublicKey" in keys[0]:
        assert keys[0]["PublicKey"].split()[1] == public_key.read_text().split()[1]


def test_second_run_changes_nothing(moto: Moto, public_key: Path, first_run: PlaybookRun):
    assert first_run.changed > 0
    state = snapshot(moto.ec2())
    run = provision(moto, CLUSTER, public_key, **OVERRIDES)
    assert run.ok, run.output
    assert run.changed == 0, run.output
    assert snapshot(moto.ec2()) == state


def test_check_mode_changes_nothing_and_previews_a_new_worker(moto: Moto, public_key: Path, first_run: PlaybookRun):
    state = snapshot(moto.ec2())
    run = provision(moto, CLUSTER, public_key, **OVERRIDES, ec2_worker_count=2, check=True)
    assert run.ok, run.output
    assert run.changed == 1, run.output  # the launch of demo-worker-2, previewed
    assert "changed: [localhost] => (item=demo-worker-2)" in run.output
    assert snapshot(moto.ec2()) == state


def test_inventory_groups_this_clusters_nodes(moto: Moto, first_run: PlaybookRun):
    listed = inventory(moto, CLUSTER)
    assert listed["master"]["hosts"] == ["demo-master"]
    assert listed["workers"]["hosts"] == ["demo-worker-1"]
    # the other cluster's master (tagged Role=master too) stays out
    assert "other-master" not in listed["_meta"]["hostvars"]

    addresses = {tags(i)["Name"]: i["PublicIpAddress"] for i in live_instances(moto.ec2(), tag_filter(CLUSTER))}
    hostvars = listed["_meta"]["hostvars"]
    assert {host: (v["ansible_host"], v["ansible_user"]) for host, v in hostvars.items()} == {
        name: (address, "ubuntu") for name, address in addresses.items()
    }


def test_more_workers_adds_one_and_leaves_the_others(moto: Moto, public_key: Path, first_run: PlaybookRun):
    ec2 = moto.ec2()
    existing = {i["InstanceId"]: i for i in live_instances(ec2, tag_filter(CLUSTER))}

    run = provision(moto, CLUSTER, public_key, **OVERRIDES, ec2_worker_count=2)
    assert run.ok, run.output
    assert run.changed == 2, run.output  # the launch task and the target group, nothing else

    now = {i["InstanceId"]: i for i in live_instances(ec2, tag_filter(CLUSTER))}
    added = set(now) - set(existing)
    assert set(existing) <= set(now)
    assert len(added) == 1
    assert tags(now[added.pop()])["Name"] == "demo-worker-2"
    for instance_id, instance in existing.items():
        assert now[instance_id]["State"]["Name"] == "running"
        assert now[instance_id]["LaunchTime"] == instance["LaunchTime"]

    assert sorted(inventory(moto, CLUSTER)["workers"]["hosts"]) == ["demo-worker-1", "demo-worker-2"]
    # the new worker serves the app through the load balancer too
    registered = targets(moto.elbv2(), app_target_group(moto)["TargetGroupArn"])
    assert registered == running_workers(moto)
    assert len(registered) == 2


def test_a_worker_that_no_longer_runs_leaves_the_load_balancer(moto: Moto, public_key: Path, first_run: PlaybookRun):
    # Scaling in: the worker is stopped (AWS itself deregisters a terminated
    # one) and ec2_worker_count lowered; the re-run deregisters it.
    ec2 = moto.ec2()
    worker_2 = live_instances(ec2, [*tag_filter(CLUSTER), {"Name": "tag:Name", "Values": ["demo-worker-2"]}])
    ec2.stop_instances(InstanceIds=[worker_2[0]["InstanceId"]])

    run = provision(moto, CLUSTER, public_key, **OVERRIDES, ec2_worker_count=1)
    assert run.ok, run.output
    assert run.changed == 1, run.output  # the target group, nothing else
    registered = targets(moto.elbv2(), app_target_group(moto)["TargetGroupArn"])
    assert registered == running_workers(moto)
    assert worker_2[0]["InstanceId"] not in dict(registered)
    assert len(registered) == 1


def test_deploy_finds_the_load_balancer_and_checks_the_app_through_it(moto: Moto, first_run: PlaybookRun):
    # deploy.yml in a run of its own, told nothing of the NLB (not even its
    # port): it finds it by name and tag. With no cluster behind moto the app
    # role stops at its kubeconfig check, after the address is set.
    extra = {"cluster_name": CLUSTER, "ec2_region": "us-east-1", "cluster_kubeconfig_local_path": "/nonexistent"}
    run = run_playbook(moto, "deploy.yml", CLUSTER, extra)
    address = "demo-app-1.us-east-1.elb.amazonaws.com:8080"  # moto's DNS name, the listener's port
    assert f"The app is checked through its load balancer: http://{address}/" in run.output
    handed_to_the_app_role = run.output.split("TASK [Check the app through its load balancer]")[1].split("TASK [")[0]
    assert "ok: [localhost]" in handed_to_the_app_role, run.output
    assert not run.ok
    assert "No kubeconfig at cluster_kubeconfig_local_path" in run.output


def test_teardown_refuses_without_a_cluster_name(moto: Moto, first_run: PlaybookRun):
    state = snapshot(moto.ec2())
    run = teardown(moto, None)
    assert not run.ok
    assert "Set cluster_name" in run.output
    assert snapshot(moto.ec2()) == state


def test_teardown_removes_exactly_the_cluster(
    moto: Moto, first_run: PlaybookRun, before: dict[str, set[str]], bystanders: dict[str, str]
):
    ec2 = moto.ec2()
    run = teardown(moto, CLUSTER)
    assert run.ok, run.output
    assert tagged(ec2, CLUSTER) == {}
    # the region is as it was before provisioning: the bystanders all survive
    assert snapshot(ec2) == before
    assert [i["InstanceId"] for i in live_instances(ec2, tag_filter("other"))] == [bystanders["instance"]]
    assert inventory(moto, CLUSTER)["_meta"]["hostvars"] == {}

    again = teardown(moto, CLUSTER)
    assert again.ok, again.output
    assert again.changed == 0, again.output
    assert snapshot(ec2) == before
