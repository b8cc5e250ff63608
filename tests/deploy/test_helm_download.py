"""The app role's download of helm and helm-diff: nothing is fetched without a checksum, nothing unverified is used.

deploy.yml runs on the controller alone (no cluster: the kubeconfig is a placeholder),
with app_helm_install and an empty install directory, so the role would download. The
pinned URLs are pointed at archives served on loopback, so a download that should not
happen would succeed here, and the tests see it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, http_on_loopback, run_tool

HELM_VERSION = "v3.14.4"
HELM_DIFF_VERSION = "v3.9.5"
HELM_ARCHIVE = f"helm-{HELM_VERSION}-linux-amd64.tar.gz"
HELM_DIFF_ARCHIVE = "helm-diff-linux-amd64.tgz"


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass(frozen=True)
class Releases:
    helm_url: str
    helm_diff_url: str
    helm_diff_sha256: str


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    """Archives laid out as get.helm.sh and helm-diff's releases ship them, with Helm's .sha256sum file."""
    root = tmp_path_factory.mktemp("releases")
    helm = tar_gz({"linux-amd64/helm": b"#!/bin/sh\nexit 1\n"})
    (root / HELM_ARCHIVE).write_bytes(helm)
    (root / f"{HELM_ARCHIVE}.sha256sum").write_text(f"{hashlib.sha256(helm).hexdigest()}  {HELM_ARCHIVE}\n")
    plugin = f'name: "diff"\nversion: "{HELM_DIFF_VERSION.lstrip("v")}"\ncommand: "$HELM_PLUGIN_DIR/bin/diff"\n'
    helm_diff = tar_gz({"diff/plugin.yaml": plugin.encode(), "diff/bin/diff": b"#!/bin/sh\nexit 1\n"})
    (root / HELM_DIFF_ARCHIVE).write_bytes(helm_diff)
    with http_on_loopback(root) as url:
        yield Releases(f"{url}/{HELM_ARCHIVE}", f"{url}/{HELM_DIFF_ARCHIVE}", hashlib.sha256(helm_diff).hexdigest())


def deploy(tmp_path: Path, releases: Releases, **extra_vars: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("placeholder: no cluster is reached\n")
    install_dir = tmp_path / "helm"
    variables = {
        # no EC2 here (as in the lab): playbooks/app.yml looks for no load balancer
        "ec2_provision": False,
        "cluster_kubeconfig_local_path": str(kubeconfig),
        "app_helm_install": True,
        "app_helm_install_dir": str(install_dir),
        "app_helm_url": releases.helm_url,
        "app_helm_diff_url": releases.helm_diff_url,
        **extra_vars,
    }
    argv = [VENV_BIN / "ansible-playbook", "-i", "localhost,", "deploy.yml", "-e", json.dumps(variables)]
    return run_tool(argv, check=False, ANSIBLE_NOCOLOR="1"), install_dir


@pytest.mark.parametrize(
    ("extra_vars", "named"),
    [
        ({}, "app_helm_diff_checksum is empty"),
        ({"app_helm_diff_checksum": "md5:0123456789abcdef0123456789abcdef"}, "app_helm_diff_checksum is 'md5:"),
        ({"app_helm_diff_checksum": "sha256:" + "0" * 64, "app_helm_checksum": ""}, "app_helm_checksum is empty"),
    ],
    ids=["helm-diff default (empty)", "helm-diff md5", "helm empty"],
)
def test_no_checksum_no_download(tmp_path, releases, extra_vars, named):
    result, install_dir = deploy(tmp_path, releases, **extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert named in output, output[-4000:]
    # and the way out is in the message
    assert "sha256:" in output and "app_helm_install=false" in output
    # stopped before the first download, and before making anything
    assert "TASK [app : Download helm" not in output
    assert not install_dir.exists(), sorted(install_dir.rglob("*"))


def test_pinned_checksums_download_and_unpack(tmp_path, releases):
    result, install_dir = deploy(tmp_path, releases, app_helm_diff_checksum=f"sha256:{releases.helm_diff_sha256}")
    output = result.stdout + result.stderr
    assert "TASK [app : Unpack helm-diff as a plugin]" in output, output[-4000:]
    assert (install_dir / "helm").is_file()
    assert (install_dir / "plugins" / "diff" / "plugin.yaml").is_file()
    # the role went on to the release, which the placeholder kubeconfig cannot reach
    assert "TASK [app : Check helm and helm-diff]" in output


def test_a_mismatching_archive_is_not_used(tmp_path, releases):
    result, install_dir = deploy(tmp_path, releases, app_helm_diff_checksum="sha256:" + "0" * 64)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "TASK [app : Download helm-diff" in output
    assert "checksum" in output.lower(), output[-4000:]
    assert not (install_dir / "plugins" / "diff").exists()
