"""playbooks/etcd-backup.yml on the lab cluster (roles/etcd, backup): a verified, private snapshot on the controller.

The snapshot is taken by etcdctl inside the cluster's own etcd container, checked with `snapshot status`,
fetched and checked by sha256, kept 0600 in a 0700 directory, named <cluster>-<version>-<UTC time>.db, and
removed from the master; a bad etcd_backup_dir is refused before anything changes, and check mode writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import testinfra
import yaml

from lab.paths import REPO
from lab.playbook import play_recap
from tests.conftest import VENV_BIN, run_tool
from tests.node.lab_inventory import Inventory, setting, ssh_host_url

pytestmark = pytest.mark.cluster

T = TypeVar("T")

PLAYBOOK = REPO / "playbooks" / "etcd-backup.yml"
NODE_DIR = yaml.safe_load((REPO / "roles" / "etcd" / "defaults" / "main.yml").read_text())["etcd_node_snapshot_dir"]
SUMMARY = re.compile(r"etcd snapshot (\S+): (\d+) bytes, revision (\d+), (\d+) keys, hash (\d+), sha256 ([0-9a-f]{64})")


def retried(read: Callable[[], T], timeout: float = 240) -> T:
    """read(), again every 5 s while it fails: the shared lab's master and API server restart now and then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def flat(output: str) -> str:
    """The output with every run of whitespace one space: the callback wraps long messages."""
    return " ".join(output.split())


def running_version(inventory: Inventory) -> str:
    """The API server's version (e.g. v1.29.15), asked on the master with its admin kubeconfig."""
    master = testinfra.get_host(ssh_host_url(inventory.master))
    answer = retried(
        lambda: master.check_output("kubectl --kubeconfig=/etc/kubernetes/admin.conf version --output=json")
    )
    return json.loads(answer)["serverVersion"]["gitVersion"]


def test_a_backup_is_a_verified_private_snapshot_on_the_controller(inventory: Inventory, tmp_path: Path):
    backups = tmp_path / "backups"
    before = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    result = run_tool(
        [VENV_BIN / "ansible-playbook", "-i", inventory.path, PLAYBOOK, "-e", f"etcd_backup_dir={backups}"], check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]

    # one file, under its final name only: no partial copy left beside it
    files = sorted(path.name for path in backups.iterdir())
    cluster = setting(inventory, inventory.master, "cluster_name")
    version = running_version(inventory)
    assert len(files) == 1, files
    match = re.fullmatch(rf"{re.escape(cluster)}-{re.escape(version)}-(\d{{8}}T\d{{6}}Z)\.db", files[0])
    assert match, f"{files[0]} is not {cluster}-{version}-<UTC time>.db"
    written = datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= written <= datetime.now(UTC), (before, written)

    snapshot = backups / files[0]
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600

    # etcd appends the sha256 of the database to a snapshot (what `snapshot restore` checks)
    data = snapshot.read_bytes()
    assert hashlib.sha256(data[:-32]).digest() == data[-32:], "the snapshot's own sha256 does not match"

    # what `snapshot status` said, and the sha256 compared on both sides
    summary = SUMMARY.search(" ".join(result.stdout.split()))  # the callback wraps long lines
    assert summary, result.stdout[-3000:]
    path, size, revision, keys, etcd_hash, sha256 = summary.groups()
    assert Path(path) == snapshot
    assert int(size) == len(data)
    assert hashlib.sha256(data).hexdigest() == sha256
    assert int(revision) > 0 and int(keys) > 0 and int(etcd_hash) != 0
    print(f"\netcd backup: {snapshot.name}, {len(data)} bytes, revision {revision}, {keys} keys, {elapsed:.1f} s")

    # nothing left on the master
    master = testinfra.get_host(ssh_host_url(inventory.master))
    for name in (snapshot.name, snapshot.name + ".part"):
        assert not retried(lambda name=name: master.file(f"{NODE_DIR}/{name}").exists), (
            f"{NODE_DIR}/{name} left on {inventory.master}"
        )


def test_a_backup_dir_that_is_a_file_is_refused_before_any_change(inventory: Inventory, tmp_path: Path):
    not_a_dir = tmp_path / "backups"
    not_a_dir.write_text("keep me\n")
    result = run_tool(
        [VENV_BIN / "ansible-playbook", "-i", inventory.path, PLAYBOOK, "-e", f"etcd_backup_dir={not_a_dir}"],
        check=False,
    )
    assert result.returncode != 0
    assert f"etcd_backup_dir={not_a_dir} exists on the controller but is not a directory" in flat(result.stdout), (
        result.stdout[-3000:]
    )
    assert "Take the snapshot" not in result.stdout
    recap = play_recap(result.stdout)
    assert recap and all(counts["changed"] == 0 for counts in recap.values()), recap
    assert not_a_dir.read_text() == "keep me\n"


def test_check_mode_writes_nothing(inventory: Inventory, tmp_path: Path):
    backups = tmp_path / "backups"
    result = run_tool(
        [VENV_BIN / "ansible-playbook", "-i", inventory.path, PLAYBOOK, "--check", "-e", f"etcd_backup_dir={backups}"],
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert f"check mode: would write {backups}/" in result.stdout
    recap = play_recap(result.stdout)
    assert recap and all(counts["changed"] == 0 for counts in recap.values()), recap
    assert not backups.exists()
