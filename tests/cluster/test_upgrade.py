"""upgrade.yml for real (issue 20): a 1.29.15 cluster with the app, moved to 1.30.14 under 100 requests/s.

Runs on its own lab (LAB_NAME=labupgr, 10.83.0.0/24), from fresh nodes, so the default lab the other tests
share is never upgraded; the mirror (served on the default lab's bridge) must serve the 1.30 release set, which
the fixture builds when it is missing. Asserted: no request failed through the lab's load balancer, every node's
kubelet and CRI-O and every kube-apiserver at the target, no node left cordoned or marked, and a second run of
upgrade.yml and site.yml with the new version change nothing (the etcd backup aside, which writes a snapshot on
every run).

Slow (a cluster built, then upgraded node by node) and it builds the 1.30 release set on a cold cache: not in the
default selection. Run it with LAB_UPGRADE_TEST=1 or `-m upgrade`:
    LAB_UPGRADE_TEST=1 .venv/bin/python -m pytest tests/cluster/test_upgrade.py
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from lab.bench.prober import Prober, summarize
from lab.paths import REPO
from lab.playbook import play_recap
from tests.cluster.test_upgrade_guard import changed_outside
from tests.conftest import VENV_BIN, run_tool

pytestmark = [
    pytest.mark.upgrade,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-nspawn"), reason="needs root and nspawn"),
]

UPGRADE_LAB = {"LAB_NAME": "labupgr", "LAB_SUBNET": "10.83.0.0/24"}
NODES = 3
FROM_VERSION = "1.29.15"
TARGET_VERSION = "1.30.14"
TARGET_RELEASE_SET = "1.30"
# CRI-O of the 1.30 release set (lab/mirror/builds.py RELEASE_1_30)
TARGET_CRIO = "1.30.14"
# one word: -e key=value splits at spaces
MESSAGE = "served-through-the-upgrade"
RATE = 100.0
CORDON_ANNOTATION = "upgrade.kubeadm-helm-rollout/cordoned-for"


@dataclass(frozen=True)
class UpgradeLab:
    inventory: Path
    kubeconfig: Path
    # host:port of the lab's load balancer in front of the workers' NodePort
    app: str


@dataclass(frozen=True)
class Upgraded:
    lab: UpgradeLab
    first_run: str
    summary: dict[str, object]
    core: client.CoreV1Api


def lab(*args: str) -> None:
    result = run_tool([VENV_BIN / "python", "-m", "lab", *args], check=False)
    if result.returncode != 0:
        pytest.fail(f"python -m lab {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def playbook(inventory: Path, name: str, *extra: str):
    return run_tool([VENV_BIN / "ansible-playbook", "-i", inventory, name, *extra], check=False)


def succeeded(result, what: str) -> str:
    if result.returncode != 0:
        pytest.fail(f"{what} failed:\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def ensure_target_release_in_mirror() -> None:
    """The 1.30 packages, images and Calico manifests beside 1.29's, served on the default lab's bridge."""
    from lab.mirror import commands as mirror

    if not mirror.is_release_built(TARGET_RELEASE_SET):
        mirror.build_release(TARGET_RELEASE_SET)
    assert mirror.is_release_built(TARGET_RELEASE_SET)
    if not mirror.services_running():
        try:
            mirror.start_services()
        except Exception as error:  # the bridge address it serves on belongs to the default lab
            pytest.fail(f"the mirror's services did not start ({error}): bring the default lab up (make lab-up)")


@pytest.fixture(scope="module")
def upgrade_lab() -> Iterator[UpgradeLab]:
    """Fresh nodes of the upgrade's own lab with playbooks/cluster.yml converged at 1.29.15 and the app deployed."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in UPGRADE_LAB.items():
            patch.setenv(name, value)  # every `python -m lab` and Lab.from_env() below: this lab
        from lab.nodes.topology import Lab

        topology = Lab.from_env()
        ensure_target_release_in_mirror()
        lab("down")  # leftovers of an interrupted run
        lab("up", "--nodes", str(NODES))
        try:
            # the lab's settings (mirror, registry, node quirks), beside the inventory `lab up` wrote
            group_vars = topology.inventory.parent / "group_vars"
            if not group_vars.is_symlink():
                group_vars.symlink_to(REPO / "inventory" / "lab" / "group_vars", target_is_directory=True)
            inventory = topology.inventory
            settings = yaml.safe_load(inventory.read_text())["all"]["vars"]
            succeeded(playbook(inventory, "playbooks/cluster.yml"), f"playbooks/cluster.yml at {FROM_VERSION}")
            succeeded(playbook(inventory, "deploy.yml", "-e", f"app_message={MESSAGE}"), "deploy.yml")
            yield UpgradeLab(inventory, topology.kubeconfig, str(settings["app_load_balancer_address"]))
        finally:
            lab("down")
            (topology.inventory.parent / "group_vars").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def upgraded(upgrade_lab: UpgradeLab, tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(upgrade_lab.kubeconfig)))
    versions = {node.metadata.name: node.status.node_info.kubelet_version for node in core.list_node().items}
    assert len(versions) == NODES and set(versions.values()) == {f"v{FROM_VERSION}"}, versions
    host, port = upgrade_lab.app.rsplit(":", 1)
    prober = Prober(host, int(port), rate=RATE, expected={MESSAGE}).start()
    wall_minus_monotonic = time.time() - time.monotonic()
    try:
        time.sleep(5)  # a baseline before the first change
        backups = tmp_path_factory.mktemp("backups")
        result = run_tool(
            [
                *(VENV_BIN / "ansible-playbook", "-i", upgrade_lab.inventory, "upgrade.yml"),
                *("-e", f"cluster_kubernetes_version={TARGET_VERSION}", "-e", f"etcd_backup_dir={backups}"),
            ],
            check=False,
            # each task's start time in the output, to place a failed request
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        )
        time.sleep(5)  # and after the last uncordon
    finally:
        samples = prober.stop()
    log = tmp_path_factory.mktemp("upgrade") / "upgrade.log"
    log.write_text(result.stdout)
    failed = [
        f"{time.strftime('%H:%M:%S', time.gmtime(s.sent + wall_minus_monotonic))} {s.kind} {s.detail}"
        for s in samples
        if not s.ok
    ]
    print(f"\nupgrade.yml output (task start times): {log}; failed requests (UTC): {failed}")
    output = succeeded(result, f"upgrade.yml to {TARGET_VERSION}")
    return Upgraded(upgrade_lab, output, summarize(samples), core)


def test_the_app_served_every_request_during_the_upgrade(upgraded: Upgraded):
    summary = upgraded.summary
    print(f"\nupgrade under load: {summary['errors']} errors / {summary['requests']} requests")
    assert int(summary["requests"]) > RATE * 60, summary  # it ran through the upgrade, minutes long
    assert summary["errors"] == 0, summary


def test_every_node_runs_the_target_kubelet_and_crio(upgraded: Upgraded):
    nodes = upgraded.core.list_node().items
    assert {node.metadata.name: node.status.node_info.kubelet_version for node in nodes} == {
        node.metadata.name: f"v{TARGET_VERSION}" for node in nodes
    }
    assert {node.metadata.name: node.status.node_info.container_runtime_version for node in nodes} == {
        node.metadata.name: f"cri-o://{TARGET_CRIO}" for node in nodes
    }


def test_every_kube_apiserver_runs_the_target(upgraded: Upgraded):
    pods = upgraded.core.list_namespaced_pod("kube-system", label_selector="component=kube-apiserver").items
    assert pods
    assert {pod.metadata.name: pod.spec.containers[0].image.rpartition(":")[2] for pod in pods} == {
        pod.metadata.name: f"v{TARGET_VERSION}" for pod in pods
    }


def test_no_node_is_left_cordoned_or_marked(upgraded: Upgraded):
    for node in upgraded.core.list_node().items:
        assert not node.spec.unschedulable, node.metadata.name
        assert CORDON_ANNOTATION not in (node.metadata.annotations or {}), node.metadata.name


def test_a_second_upgrade_run_changes_nothing_but_the_backup(upgraded: Upgraded, tmp_path: Path):
    result = playbook(
        upgraded.lab.inventory,
        "upgrade.yml",
        "-e",
        f"cluster_kubernetes_version={TARGET_VERSION}",
        "-e",
        f"etcd_backup_dir={tmp_path}",
    )
    output = succeeded(result, "upgrade.yml run again")
    # every run takes a snapshot; nothing else changes
    assert changed_outside(output, {"Back etcd up"}) == [], output[-6000:]


def test_site_yml_with_the_new_version_changes_nothing(upgraded: Upgraded):
    # the app's play too: with the message it serves (site.yml's default would deploy another)
    result = playbook(
        upgraded.lab.inventory,
        "site.yml",
        "-e",
        f"cluster_kubernetes_version={TARGET_VERSION}",
        "-e",
        f"app_message={MESSAGE}",
    )
    output = succeeded(result, f"site.yml with {TARGET_VERSION}")
    recap = play_recap(output)
    assert recap and all(counts["changed"] == 0 for counts in recap.values()), changed_outside(output, set())
