"""The lab inventory as Ansible sees it (hosts.yml plus group_vars), for node and cluster tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from lab.nodes.topology import Lab
from lab.paths import REPO
from tests.conftest import VENV_BIN, run_tool, tool_env

# the lab LAB_NAME names (inventory/lab/hosts.yml for the default one), as lab_cluster brings it up
LAB_INVENTORY = Lab.from_env().inventory


@dataclass(frozen=True)
class Inventory:
    path: Path
    groups: dict[str, list[str]]
    hostvars: dict[str, dict] = field(repr=False)

    @property
    def master(self) -> str:
        return self.groups["master"][0]

    @property
    def workers(self) -> list[str]:
        return self.groups.get("workers", [])

    @property
    def nodes(self) -> list[str]:
        return [*self.groups["master"], *self.workers]

    def var(self, host: str, name: str, default: object = None) -> object:
        return self.hostvars.get(host, {}).get(name, default)


@cache
def lab_inventory() -> Inventory:
    """Parsed with ansible-inventory, so group_vars/all.yml counts exactly as in a play."""
    if not LAB_INVENTORY.is_file():
        pytest.skip(f"{LAB_INVENTORY} is missing: bring the lab up first (make lab-up)")
    result = run_tool([VENV_BIN / "ansible-inventory", "-i", LAB_INVENTORY, "--list"])
    data = json.loads(result.stdout)
    groups = {name: data[name].get("hosts", []) for name in ("master", "workers") if name in data}
    assert groups.get("master"), f"{LAB_INVENTORY} has no master group"
    return Inventory(LAB_INVENTORY, groups, data["_meta"]["hostvars"])


def forget_lab_inventory() -> None:
    """After `lab up` or `lab down` changed the nodes: forget this module's and testinfra's parsed inventory."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    lab_inventory.cache_clear()
    # testinfra keeps one parsed inventory per path for the whole session; a node added
    # since then would be reached by its bare name, which nothing resolves
    AnsibleRunner._runners.clear()


def reload_lab_inventory() -> Inventory:
    forget_lab_inventory()
    return lab_inventory()


@pytest.fixture(scope="session", autouse=True)
def _ansible_tools_on_path() -> Iterator[None]:
    """testinfra's ansible backend runs ansible-inventory from PATH: the pinned one, as make gives it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", tool_env()["PATH"])
        patch.setenv("ANSIBLE_CONFIG", tool_env()["ANSIBLE_CONFIG"])
        yield


def ssh_host_url(host: str) -> str:
    # the ansible backend reuses the inventory's SSH user, key and known_hosts; sudo like become
    return f"ansible://{host}?ansible_inventory={LAB_INVENTORY}&sudo=true"


@cache
def _cluster_defaults() -> dict:
    import yaml

    return yaml.safe_load((REPO / "roles" / "cluster" / "defaults" / "main.yml").read_text())


def setting(inventory: Inventory, host: str, name: str) -> object:
    """A cluster_* setting as a play sees it: the inventory's value, else the cluster role's default."""
    value = inventory.var(host, name)
    return _cluster_defaults()[name] if value is None else value
