"""The app image, built with podman from the project's Dockerfile, offline.

No registry is reachable here, so the Python base is made locally from a
debootstrap tree (Debian's python3 3.11) and the wheels are downloaded on the
host and installed in the build with --no-index: the same steps an air-gapped
user takes. The build is skipped when an image built from the same inputs exists.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from lab.nodes.rootfs import debootstrap
from lab.paths import REPO
from lab.run import log, run, step

APP_IMAGE_NAME = "localhost/tiny-http-app"
BASE_IMAGE_NAME = "localhost/python-base"
BASE_PACKAGES = ["python3", "python3-venv", "ca-certificates"]
# runc: crun refuses this host's hybrid cgroups; the default ulimits exceed the hard limit.
PODMAN_RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BUILD_INPUTS = ["Dockerfile", ".dockerignore", "app/requirements.txt", "app/gunicorn.conf.py", "app/tiny_http_app"]
DIGEST_LABEL = "io.github.kubeadm-helm-rollout.inputs"


def chart_app_version() -> str:
    text = (REPO / "chart" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', text, re.MULTILINE)
    if not match:
        raise ValueError("chart/Chart.yaml has no appVersion")
    return match.group(1)


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in BUILD_INPUTS:
        path = REPO / name
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _image_label(reference: str, label: str) -> str | None:
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', reference],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def import_rootfs_image(root: Path, reference: str) -> str:
    """podman import of a cached debootstrap tree as `reference` (once: the tag carries the root's key)."""
    if subprocess.run(["podman", "image", "exists", reference], check=False).returncode != 0:
        with step(f"import base image {reference}"):
            tar = subprocess.Popen(["tar", "-C", str(root), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE)
            result = subprocess.run(
                ["podman", "import", "-", reference], stdin=tar.stdout, capture_output=True, text=True, check=False
            )
            tar.wait()
            if result.returncode != 0 or tar.returncode != 0:
                raise ValueError(f"podman import failed: {result.stderr.strip()}")
    return reference


def build_base_image() -> str:
    """localhost/python-base:<rootfs key>, imported from a cached debootstrap tree."""
    root = debootstrap("python-base", BASE_PACKAGES)
    return import_rootfs_image(root, f"{BASE_IMAGE_NAME}:{root.name.rsplit('-', 1)[-1]}")


def download_wheels() -> None:
    with step("pip download wheels"):
        run(
            [
                REPO / ".venv" / "bin" / "python",
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                REPO / "wheels",
                "-r",
                REPO / "app" / "requirements.txt",
            ]
        )


def build_app_image() -> str:
    """Build (or reuse) the app image; return its local reference."""
    reference = f"{APP_IMAGE_NAME}:{chart_app_version()}"
    digest = _inputs_digest()
    if _image_label(reference, DIGEST_LABEL) == digest:
        return reference
    base = build_base_image()
    download_wheels()
    with step(f"podman build {reference}"):
        run(
            [
                "podman",
                "build",
                *PODMAN_RUN_FLAGS,
                "--format",
                "docker",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                "PIP_INSTALL_OPTS=--no-index",
                "--label",
                f"{DIGEST_LABEL}={digest}",
                "-t",
                reference,
                REPO,
            ]
        )
    log(f"built {reference}")
    return reference


def image_command(args: list[str]) -> int:
    print(build_app_image())
    return 0
