"""One version, one value: what the lab builds and mirrors is what the roles install.

The lab pins its builds in Python (lab/mirror) because `make setup` runs before
the virtualenv exists and cannot read YAML; the roles pin theirs in defaults.
Nothing else compares them, so a bump on one side only would build one version
and install another (or find nothing in the mirror). These tests are that check.
"""

from __future__ import annotations

import re

import pytest
import yaml

from lab.mirror import apt, builds, images, tools
from lab.paths import REPO

pytestmark = pytest.mark.static


def defaults(path: str) -> dict[str, object]:
    return yaml.safe_load((REPO / path).read_text())


CLUSTER = defaults("roles/cluster/defaults/main.yml")
LAB_VARS = defaults("inventory/lab/group_vars/all.yml")


def minor(version: str) -> str:
    """v1.29.15 / 1.29.15 -> v1.29"""
    major, minor_number = version.lstrip("v").split(".")[:2]
    return f"v{major}.{minor_number}"


def crio_repo_minor(url: object) -> str:
    match = re.search(r"/stable:/(v\d+\.\d+)/deb", str(url))
    assert match, f"no isv:/cri-o:/stable:/vX.Y/deb path in {url}"
    return match.group(1)


def test_kubernetes_the_lab_builds_is_what_the_roles_install():
    assert "v" + str(CLUSTER["cluster_kubernetes_version"]) == builds.KUBERNETES_VERSION
    assert f"core:/stable:/{minor(builds.KUBERNETES_VERSION)}/deb" == apt.CORE_REPO_PATH


def test_crio_matches_the_kubernetes_minor_on_both_sides():
    # CRI-O follows Kubernetes' minor; the repository path names it
    assert minor(builds.CRIO_VERSION) == minor(builds.KUBERNETES_VERSION)
    assert crio_repo_minor(CLUSTER["cluster_crio_apt_base_url"]) == minor(builds.CRIO_VERSION)
    assert crio_repo_minor(LAB_VARS["cluster_crio_apt_base_url"]) == minor(builds.CRIO_VERSION)
    assert f"/stable:/{minor(builds.CRIO_VERSION)}/deb" in apt.CRIO_REPO_PATH


def test_calico_the_lab_builds_is_what_the_master_role_applies():
    assert defaults("roles/master/defaults/main.yml")["master_calico_version"] == builds.CALICO_VERSION


def test_helm_and_helm_diff_the_lab_builds_are_what_the_app_role_pins():
    app = defaults("roles/app/defaults/main.yml")
    assert app["app_helm_version"] == tools.HELM_VERSION
    assert app["app_helm_diff_version"] == tools.HELM_DIFF_VERSION


def test_pause_the_mirror_serves_is_what_the_runtime_asks_for():
    pause = str(defaults("roles/common/defaults/main.yml")["common_pause_image"])
    assert pause.endswith(f"/pause:{images.PAUSE_VERSION}"), pause
