"""The bridge pod network, and a run that fails after creating everything.

bridge routes pod CIDRs between nodes without encapsulation: the security
groups must let pod addresses through (and nothing for Calico), and the
source/destination check must be off. The first run keeps the SSH wait on
(moto has no sshd), so it fails after every resource exists: each of them
must carry the cluster tag, so that teardown finds them all. The tests run
in file order and share the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.aws.conftest import (
    ADMIN_CIDR,
    Moto,
    PlaybookRun,
    ingress_rules,
    live_instances,
    provision,
    provision_vars,
    run_playbook,
    snapshot,
    tag_filter,
    tagged,
    teardown,
)

pytestmark = pytest.mark.aws

CLUSTER = "bridged"
POD_CIDR = "10.244.0.0/16"
OVERRIDES = {"cluster_pod_network": "bridge", "cluster_pod_cidr": POD_CIDR}


@dataclass
class Failed:
    before: dict[str, set[str]]
    run: PlaybookRun


@pytest.fixture(scope="module")
def failed(moto: Moto, public_key: Path) -> Failed:
    moto.reset()
    before = snapshot(moto.ec2())
    extra = provision_vars(CLUSTER, public_key, **OVERRIDES, ec2_wait_for_ssh=True, ec2_ssh_wait_timeout=1)
    return Failed(before, run_playbook(moto, "playbooks/provision.yml", CLUSTER, extra))


def test_a_run_that_fails_late_leaves_only_tagged_resources(moto: Moto, failed: Failed):
    assert not failed.run.ok
    assert "TASK [ec2 : Wait until SSH answers on every node]" in failed.run.output
    ec2 = moto.ec2()
    created = {kind: ids - failed.before[kind] for kind, ids in snapshot(ec2).items()}
    # AWS makes a VPC's default group and main route table with it, and deletes them with it
    vpcs = [{"Name": "vpc-id", "Values": sorted(created["vpcs"])}]
    created["security_groups"] -= {
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=vpcs)["SecurityGroups"]
        if g["GroupName"] == "default"
    }
    created["route_tables"] -= {
        t["RouteTableId"]
        for t in ec2.describe_route_tables(Filters=vpcs)["RouteTables"]
        if any(a.get("Main") for a in t["Associations"])
    }
    assert {kind: ids for kind, ids in created.items() if ids} == {
        kind: set(ids) for kind, ids in tagged(ec2, CLUSTER).items()
    }
    assert set(created) >= {"vpcs", "subnets", "internet_gateways", "route_tables", "security_groups", "instances"}


def test_bridge_lets_pod_addresses_through_and_nothing_for_calico(moto: Moto, public_key: Path, failed: Failed):
    run = provision(moto, CLUSTER, public_key, **OVERRIDES)
    assert run.ok, run.output
    assert run.changed == 0, run.output  # the failed run had created everything

    ec2 = moto.ec2()
    nodes, master, workers = "bridged-nodes", "bridged-master", "bridged-workers"
    assert ingress_rules(ec2, [nodes, master, workers]) == {
        (nodes, "tcp", 22, 22, ADMIN_CIDR),
        (master, "tcp", 6443, 6443, ADMIN_CIDR),
        (master, "tcp", 6443, 6443, nodes),
        (master, "tcp", 2379, 2380, master),
        (master, "tcp", 10250, 10250, master),
        # pods reach the API server and CoreDNS (which may run on the master) with their own addresses
        (master, "tcp", 6443, 6443, POD_CIDR),
        (master, "udp", 53, 53, POD_CIDR),
        (master, "tcp", 53, 53, POD_CIDR),
        (workers, "tcp", 10250, 10250, master),
        (workers, "tcp", 30000, 32767, ADMIN_CIDR),
        # the app's NLB (defaults: the app role's NodePort, clients from ec2_nodeport_cidr)
        (workers, "tcp", 30080, 30080, ADMIN_CIDR),
        (workers, "tcp", 30080, 30080, "10.0.1.0/24"),
        # pods from other nodes, and nodes (NodePort forwarding, the API server) to the workers' pods
        (workers, "-1", None, None, POD_CIDR),
        (workers, "-1", None, None, nodes),
    }
    assert [n["SourceDestCheck"] for n in live_instances(ec2, tag_filter(CLUSTER))] == [False, False]


def test_teardown_after_the_failed_run_restores_the_region(moto: Moto, failed: Failed):
    run = teardown(moto, CLUSTER)
    assert run.ok, run.output
    assert snapshot(moto.ec2()) == failed.before
