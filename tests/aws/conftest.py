"""A real moto_server process standing in for AWS, and the real playbooks run against it.

AWS cannot be reached from CI. Only the endpoint differs from a real account:
amazon.aws, boto3 and the aws_ec2 inventory plugin run unmodified, pointed at
moto through AWS_ENDPOINT_URL, with dummy credentials.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from lab.paths import REPO
from lab.playbook import play_recap
from tests.conftest import VENV_BIN, free_port, run_tool

REGION = "us-east-1"
# Canonical-looking AMIs moto serves (MOTO_AMIS_PATH): one right answer and decoys.
AMIS_FILE = Path(__file__).with_name("amis.json")
NEWEST_JAMMY_AMD64 = "ami-0b22222222222222b"
# sitecustomize for the moto_server process: works around one moto bug (see the file).
MOTO_SHIM = Path(__file__).with_name("moto_shim")
CANONICAL = "099720109477"
ADMIN_CIDR = "203.0.113.7/32"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# API actions that only read; anything else changes the account.
READ_ONLY_PREFIXES = ("Describe", "Get", "List")


@dataclass
class Moto:
    endpoint: str
    # A copy of inventory/aws_ec2.yml outside the repository: the playbooks run
    # with it so that a developer's inventory/group_vars cannot change the results.
    inventory: Path
    # moto_server's request log: one line per API call.
    log: Path
    # moto's request recording (MOTO_ENABLE_RECORDING): every request with its body, so its API action.
    recording: Path

    def env(self, cluster_name: str) -> dict[str, str]:
        """What a user exports for a real account, with moto's endpoint and dummy keys."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # no profile or credentials of the person running the tests may leak in
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "CLUSTER_NAME": cluster_name,
            "ANSIBLE_NOCOLOR": "1",
        }

    def ec2(self) -> Any:
        return self.client("ec2")

    def elbv2(self) -> Any:
        return self.client("elbv2")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def api_calls(self) -> int:
        """API requests moto has answered so far (read until the log stops growing)."""
        count = -1
        while True:
            lines = self.log.read_text().splitlines()
            now = sum(1 for line in lines if '] "' in line and "/moto-api/" not in line)
            if now == count:
                return count
            count = now
            time.sleep(0.2)

    def actions(self) -> list[str]:
        """The API action of every request moto has answered so far, in order (moto records before answering)."""
        names = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            url = urllib.parse.urlsplit(entry["url"])
            if url.path.startswith("/moto-api/"):
                continue
            action = urllib.parse.parse_qs(body).get("Action") or urllib.parse.parse_qs(url.query).get("Action")
            names.append(action[0] if action else f"{entry['method']} {url.path}")
        return names

    def changes_since(self, mark: int) -> list[str]:
        """The actions after the first `mark` ones (len(actions()) taken earlier) that are not read-only."""
        return [a for a in self.actions()[mark:] if not a.startswith(READ_ONLY_PREFIXES)]

    def reset(self) -> None:
        """Forget every resource (AMIs are seeded again from MOTO_AMIS_PATH)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    recording = log.with_name("recording.jsonl")
    recording.touch()
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={
                "PATH": str(VENV_BIN),
                "MOTO_AMIS_PATH": str(AMIS_FILE),
                "PYTHONPATH": str(MOTO_SHIM),
                "MOTO_ENABLE_RECORDING": "true",
                "MOTO_RECORDER_FILEPATH": str(recording),
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"moto_server did not start on {endpoint}:\n{log.read_text()}")
                    time.sleep(0.2)
            inventory_copy = tmp_path_factory.mktemp("inventory") / "aws_ec2.yml"
            inventory_copy.write_text((REPO / "inventory" / "aws_ec2.yml").read_text())
            yield Moto(endpoint, inventory_copy, log, recording)
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="session")
def public_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aws-tests", "-f", key])
    return key.with_suffix(".pub")


@dataclass
class PlaybookRun:
    result: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0

    @property
    def changed(self) -> int:
        """changed= of the PLAY RECAP."""
        recap = play_recap(self.result.stdout)
        assert "localhost" in recap, f"no PLAY RECAP in:\n{self.output}"
        return recap["localhost"]["changed"]


def run_playbook(
    moto: Moto,
    playbook: str,
    cluster_name: str,
    extra_vars: dict[str, Any],
    *,
    check: bool = False,
    inventory: str | Path | None = None,
) -> PlaybookRun:
    """ansible-playbook as a user runs it, with the aws_ec2 inventory unless another is given."""
    argv = [VENV_BIN / "ansible-playbook", "-i", inventory or moto.inventory, playbook, *(["--check"] if check else [])]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return PlaybookRun(run_tool(argv, check=False, **moto.env(cluster_name)))


def provision_vars(cluster_name: str, public_key: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "cluster_name": cluster_name,
        "ec2_region": REGION,
        "ec2_admin_cidr": ADMIN_CIDR,
        "ec2_ssh_public_key_path": str(public_key),
        # moto's instances have no sshd behind their addresses
        "ec2_wait_for_ssh": False,
        **overrides,
    }


def provision(
    moto: Moto,
    cluster_name: str,
    public_key: Path,
    *,
    check: bool = False,
    inventory: str | None = None,
    **overrides: Any,
) -> PlaybookRun:
    extra_vars = provision_vars(cluster_name, public_key, **overrides)
    return run_playbook(moto, "playbooks/provision.yml", cluster_name, extra_vars, check=check, inventory=inventory)


def teardown(moto: Moto, cluster_name: str | None) -> PlaybookRun:
    extra = {"cluster_name": cluster_name, "ec2_region": REGION} if cluster_name else {}
    return run_playbook(moto, "playbooks/teardown.yml", cluster_name or "", extra)


def tag_filter(cluster_name: str) -> list[dict[str, Any]]:
    return [{"Name": "tag:Cluster", "Values": [cluster_name]}]


def live_instances(ec2: Any, filters: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    filters = [*(filters or []), {"Name": "instance-state-name", "Values": LIVE_STATES}]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def snapshot(ec2: Any) -> dict[str, set[str]]:
    """The id of every resource in the region, by kind: what a run may have created or deleted."""
    elbv2 = _elbv2_beside(ec2)
    return {
        "load_balancers": {lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]},
        "target_groups": {g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]},
        "vpcs": {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]},
        "subnets": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "internet_gateways": {g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]},
        "route_tables": {t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]},
        "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "key_pairs": {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]},
        "instances": {i["InstanceId"] for i in live_instances(ec2)},
        "volumes": {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]},
    }


def described(ec2: Any) -> dict[str, list[dict[str, Any]]]:
    """Every resource `snapshot` counts, as AWS describes it (tags, rules, attributes): "exactly as it was"."""
    elbv2 = _elbv2_beside(ec2)
    found = {
        "load_balancers": [
            {**lb, "Tags": elb_tags(elbv2, lb["LoadBalancerArn"]), "Listeners": listeners(elbv2, lb)}
            for lb in elbv2.describe_load_balancers()["LoadBalancers"]
        ],
        "target_groups": [
            {**g, "Tags": elb_tags(elbv2, g["TargetGroupArn"]), "Targets": targets(elbv2, g["TargetGroupArn"])}
            for g in elbv2.describe_target_groups()["TargetGroups"]
        ],
        "vpcs": ec2.describe_vpcs()["Vpcs"],
        "subnets": ec2.describe_subnets()["Subnets"],
        "internet_gateways": ec2.describe_internet_gateways()["InternetGateways"],
        "route_tables": ec2.describe_route_tables()["RouteTables"],
        "security_groups": ec2.describe_security_groups()["SecurityGroups"],
        "key_pairs": ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"],
        "instances": live_instances(ec2),
        "volumes": ec2.describe_volumes()["Volumes"],
    }
    return {
        kind: sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))
        for kind, items in found.items()
    }


def tagged(ec2: Any, cluster_name: str) -> dict[str, list[str]]:
    """Every resource still carrying Cluster=<cluster_name>, by kind (terminated instances excluded)."""
    f = tag_filter(cluster_name)
    elbv2 = _elbv2_beside(ec2)
    found = {
        "load_balancers": [
            lb["LoadBalancerArn"]
            for lb in elbv2.describe_load_balancers()["LoadBalancers"]
            if tags({"Tags": elb_tags(elbv2, lb["LoadBalancerArn"])}).get("Cluster") == cluster_name
        ],
        "target_groups": [
            g["TargetGroupArn"]
            for g in elbv2.describe_target_groups()["TargetGroups"]
            if tags({"Tags": elb_tags(elbv2, g["TargetGroupArn"])}).get("Cluster") == cluster_name
        ],
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=f)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=f)["Subnets"]],
        "internet_gateways": [
            g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]
        ],
        "route_tables": [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=f)["RouteTables"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]],
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=f)["KeyPairs"]],
        "instances": [i["InstanceId"] for i in live_instances(ec2, f)],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=f)["Volumes"]],
    }
    return {kind: ids for kind, ids in found.items() if ids}


def _elbv2_beside(ec2: Any) -> Any:
    """An elbv2 client for the endpoint and region of an ec2 client."""
    return boto3.client(
        "elbv2",
        endpoint_url=ec2.meta.endpoint_url,
        region_name=ec2.meta.region_name,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def elb_tags(elbv2: Any, arn: str) -> list[dict[str, str]]:
    """A load balancer's or target group's tags, as EC2 lists them (Key, Value), sorted."""
    return sorted(elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"], key=lambda t: t["Key"])


def listeners(elbv2: Any, load_balancer: dict[str, Any]) -> list[dict[str, Any]]:
    return elbv2.describe_listeners(LoadBalancerArn=load_balancer["LoadBalancerArn"])["Listeners"]


def targets(elbv2: Any, target_group_arn: str) -> list[tuple[str, int]]:
    """(instance id, port) of every target registered in the group, sorted."""
    health = elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    return sorted((t["Target"]["Id"], t["Target"]["Port"]) for t in health)


def inventory(moto: Moto, cluster_name: str) -> dict[str, Any]:
    """`ansible-inventory -i inventory/aws_ec2.yml --list` against moto, parsed."""
    result = run_tool(
        [VENV_BIN / "ansible-inventory", "-i", "inventory/aws_ec2.yml", "--list"], **moto.env(cluster_name)
    )
    return _plain(json.loads(result.stdout))


def _plain(value: Any) -> Any:
    """Drop ansible-core 2.19's {"__ansible_unsafe": ...} wrappers from --list output."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ingress_rules(ec2: Any, group_names: list[str]) -> set[tuple[str, str, int | None, int | None, str]]:
    """(group, protocol, from port, to port, source) for every ingress rule; sources by CIDR or group name."""
    everything = ec2.describe_security_groups()["SecurityGroups"]
    names = {g["GroupId"]: g["GroupName"] for g in everything}
    rules = set()
    for group in (g for g in everything if g["GroupName"] in group_names):
        for permission in group["IpPermissions"]:
            sources = (
                [r["CidrIp"] for r in permission["IpRanges"]]
                + [r["CidrIpv6"] for r in permission["Ipv6Ranges"]]
                + [names[p["GroupId"]] for p in permission["UserIdGroupPairs"]]
                + [p["PrefixListId"] for p in permission["PrefixListIds"]]
            )
            for source in sources:
                rules.add(
                    (
                        group["GroupName"],
                        permission["IpProtocol"],
                        permission.get("FromPort"),
                        permission.get("ToPort"),
                        source,
                    )
                )
    return rules
