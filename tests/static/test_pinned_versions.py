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
from lab.mirror.commands import APT_URL
from lab.paths import REPO

pytestmark = pytest.mark.static


def defaults(path: str) -> dict[str, object]:
    return yaml.safe_load((REPO / path).read_text())


CLUSTER = defaults("roles/cluster/defaults/main.yml")
LAB_VARS = defaults("inventory/lab/group_vars/all.yml")
CLUSTER_VARS = defaults("roles/cluster/vars/main.yml")
MASTER_VARS = defaults("roles/master/vars/main.yml")


def minor(version: str) -> str:
    """v1.29.15 / 1.29.15 -> v1.29"""
    major, minor_number = version.lstrip("v").split(".")[:2]
    return f"v{major}.{minor_number}"


def test_kubernetes_the_lab_builds_is_what_the_roles_install():
    assert "v" + str(CLUSTER["cluster_kubernetes_version"]) == builds.KUBERNETES_VERSION
    assert f"core:/stable:/{minor(builds.KUBERNETES_VERSION)}/deb" == apt.CORE_REPO_PATH


def test_the_repositories_follow_the_minor_under_bases_laid_out_like_the_mirrors():
    # the settings are bases; the minor's path is derived in one place (roles/cluster/vars/main.yml)
    for url in (CLUSTER["cluster_kubernetes_apt_base_url"], CLUSTER["cluster_crio_apt_base_url"]):
        assert not re.search(r"v\d+\.\d+", str(url)), url
    kubernetes_url, crio_url = (CLUSTER_VARS[f"cluster_{name}_apt_repository_url"] for name in ("kubernetes", "crio"))
    assert "/core:/stable:/v{{ cluster_kubernetes_minor }}/deb/" in kubernetes_url
    assert "'/isv:/cri-o:/stable:/v' ~ cluster_kubernetes_minor ~ '/deb/'" in crio_url
    # the lab's bases, with the derived paths, are where the mirror serves every release set
    for release in builds.RELEASES.values():
        crio_path = f"isv:/cri-o:/stable:/{release.crio_minor}/deb"
        assert f"{LAB_VARS['cluster_crio_apt_base_url']}/{crio_path}" == f"{APT_URL}/{release.crio_repo_path}"
        core_path = f"core:/stable:/{release.kubernetes_minor}/deb"
        assert f"{LAB_VARS['cluster_kubernetes_apt_base_url']}/{core_path}" == f"{APT_URL}/{release.core_repo_path}"


def test_crio_matches_the_kubernetes_minor_in_every_release_set():
    # CRI-O follows Kubernetes' minor: the roles install cri-o=<minor>.* from <base>/isv:/cri-o:/stable:/v<minor>/deb/
    for release in builds.RELEASES.values():
        assert release.crio_minor == release.kubernetes_minor, release.name


def test_calico_the_lab_builds_is_what_the_master_role_applies_for_each_minor():
    versions = MASTER_VARS["_master_calico_versions"]
    assert set(versions) == set(builds.RELEASES)
    for name, release in builds.RELEASES.items():
        assert versions[name] == release.calico_version, name
        assert MASTER_VARS["_master_calico_manifest_sha256"][release.calico_version] == release.calico_manifest_sha256
    assert builds.DEFAULT.calico_version == builds.CALICO_VERSION


def test_helm_and_helm_diff_the_lab_builds_are_what_the_app_role_pins():
    app = defaults("roles/app/defaults/main.yml")
    assert app["app_helm_version"] == tools.HELM_VERSION
    assert app["app_helm_diff_version"] == tools.HELM_DIFF_VERSION


def test_pause_the_mirror_serves_is_what_the_runtime_asks_for():
    pause = str(defaults("roles/common/defaults/main.yml")["common_pause_image"])
    assert pause.endswith(f"/pause:{images.PAUSE_VERSION}"), pause
