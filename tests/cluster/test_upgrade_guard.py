"""The version of a running cluster (roles/upgrade): site.yml and playbooks/cluster.yml refuse to change it, and
upgrade.yml's checks refuse a skipped minor, a downgrade and a release its repository lacks. Each refusal happens
before any change: changed=0 on every node and every node's kubelet, kubeadm and kubectl as they were. upgrade.yml to
the version that runs takes a backup and changes nothing else (the upgrade itself: tests/cluster/test_upgrade.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra

from lab.paths import REPO
from lab.playbook import play_recap
from tests.cluster.test_etcd_backup import flat, retried, running_version
from tests.conftest import VENV_BIN, run_tool
from tests.node.lab_inventory import Inventory, ssh_host_url

pytestmark = pytest.mark.cluster

PACKAGES = ("kubelet", "kubeadm", "kubectl")


@pytest.fixture(scope="module")
def running(inventory: Inventory) -> tuple[int, int, int]:
    """The cluster's version as numbers, e.g. (1, 29, 15)."""
    major, minor, patch = running_version(inventory).removeprefix("v").split(".")[:3]
    return int(major), int(minor), int(patch)


def installed(inventory: Inventory) -> dict[str, dict[str, str]]:
    return {
        node: {
            package: retried(
                lambda node=node, package=package: testinfra.get_host(ssh_host_url(node)).package(package).version
            )
            for package in PACKAGES
        }
        for node in inventory.nodes
    }


def run(inventory: Inventory, playbook: Path, *extra: str):
    return run_tool([VENV_BIN / "ansible-playbook", "-i", inventory.path, playbook, *extra], check=False)


def assert_nothing_changed(result, inventory: Inventory, before: dict[str, dict[str, str]]) -> None:
    recap = play_recap(result.stdout)
    assert set(inventory.nodes) <= set(recap), result.stdout[-3000:]
    assert all(counts["changed"] == 0 for counts in recap.values()), recap
    assert installed(inventory) == before


def version(numbers: tuple[int, int, int]) -> str:
    return ".".join(map(str, numbers))


@pytest.mark.parametrize(
    ("playbook", "change"),
    [("playbooks/cluster.yml", "next minor"), ("site.yml", "next patch")],
)
def test_a_version_change_through_site_or_cluster_yml_is_refused_before_any_change(
    inventory: Inventory, running, playbook, change
):
    major, minor, patch = running
    target = version((major, minor + 1, 14) if change == "next minor" else (major, minor, patch + 1))
    before = installed(inventory)
    assert all(
        versions[package].startswith(version(running) + "-") for versions in before.values() for package in PACKAGES
    )

    result = run(inventory, REPO / playbook, "-e", f"cluster_kubernetes_version={target}")
    assert result.returncode != 0
    assert f"cluster_kubernetes_version={target}, but the cluster runs Kubernetes {version(running)}" in flat(
        result.stdout
    ), result.stdout[-3000:]
    assert f"run upgrade.yml -e cluster_kubernetes_version={target}" in flat(result.stdout)
    # stopped in the guard's play: no node was prepared, no package touched
    assert "PLAY [Prepare every node" not in result.stdout
    assert_nothing_changed(result, inventory, before)


@pytest.mark.parametrize("case", ["skipped minor", "downgrade", "older minor", "release not in the repository"])
def test_upgrade_checks_refuse_before_any_change(inventory: Inventory, running, case):
    major, minor, patch = running
    target, reason = {
        "skipped minor": (version((major, minor + 2, 0)), f"that skips {major}.{minor + 1}"),
        "downgrade": (version((major, minor, patch - 1)), "that is a downgrade"),
        "older minor": (version((major, minor - 1, patch + 5)), "that is a downgrade"),
        "release not in the repository": (
            version((major, minor, 99)),
            f"cannot install cluster_kubernetes_version={major}.{minor}.99: its repository has no kubeadm, kubelet,"
            f" kubectl at {major}.{minor}.99",
        ),
    }[case]
    before = installed(inventory)
    result = run(inventory, REPO / "upgrade.yml", "-e", f"cluster_kubernetes_version={target}")
    assert result.returncode != 0
    assert reason in flat(result.stdout), result.stdout[-3000:]
    assert "PLAY [Back etcd up]" not in result.stdout
    assert_nothing_changed(result, inventory, before)


def test_upgrade_yml_to_the_running_version_backs_up_and_changes_no_node(inventory: Inventory, running, tmp_path):
    """The steps skip what already runs the target: only the backup writes (and removes) its snapshot."""
    backups = tmp_path / "backups"
    before = installed(inventory)
    result = run(
        inventory,
        REPO / "upgrade.yml",
        "-e",
        f"cluster_kubernetes_version={version(running)}",
        "-e",
        f"etcd_backup_dir={backups}",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "PLAY [Upgrade every node in turn, drained]" in result.stdout
    snapshots = sorted(backups.glob("*.db"))
    assert len(snapshots) == 1 and f"-v{version(running)}-" in snapshots[0].name, snapshots
    recap = play_recap(result.stdout)
    # the master wrote the snapshot (and removed it); the workers changed nothing
    assert all(recap[worker]["changed"] == 0 for worker in inventory.workers), recap
    assert changed_outside(result.stdout, {"Back etcd up"}) == [], result.stdout[-3000:]
    assert installed(inventory) == before


def changed_outside(output: str, plays: set[str]) -> list[str]:
    """Every change an ansible-playbook run reported outside the named plays, as 'PLAY / TASK: host'."""
    changes, play, task = [], "", ""
    for line in output.splitlines():
        if line.startswith("PLAY ["):
            play = line[len("PLAY [") :].partition("]")[0]
        elif line.startswith("TASK ["):
            task = line[len("TASK [") :].rpartition("]")[0]
        elif line.startswith("changed: [") and play not in plays:
            changes.append(f"{play} / {task}: {line[len('changed: [') :].partition(']')[0]}")
    return changes
