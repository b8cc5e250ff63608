"""`make setup`: everything the tests and the lab need, installed idempotently.

- Debian packages, only the missing ones (one `apt-get update` when needed);
- the project's virtualenv (.venv), reinstalled only when a requirements file changed;
- the pinned Go tools (helm, helm-diff) in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from lab.paths import REPO, VENV
from lab.run import log, run, step

# What the lab and the tests use from Debian, and why:
APT_PACKAGES = [
    "debootstrap",  # node root filesystems and the local Python base image
    "systemd-container",  # systemd-nspawn: the lab nodes
    "iproute2",  # the lab bridge and veths
    "iptables",  # NAT-free isolation rules for the lab bridge
    "openssh-client",  # Ansible reaches the nodes over SSH
    "podman",  # builds the app image (no Docker engine here)
    "buildah",
    "skopeo",  # copies images into the lab registry
    "runc",  # crun refuses this host's hybrid cgroups
    "docker-registry",  # the lab's OCI registry
    "gnupg",  # signs the lab apt repository
    "apt-utils",  # apt-ftparchive builds the repository indexes
    "dpkg-dev",
    "gcc",  # the mirror's pause binary (Kubernetes' pause.c, static)
    "libc6-dev",
    "libseccomp-dev",  # seccomp support in cgo builds
    "rsync",
    "curl",
    "shellcheck",  # `make lint` checks the lab's shell scripts (the node image's among them)
    "haproxy",  # the lab's load balancer over the workers' NodePort (lab/nodes/balancer.py)
]


def missing_apt_packages() -> list[str]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *APT_PACKAGES],
        text=True,
        capture_output=True,
        check=False,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in APT_PACKAGES if p not in installed]


def ensure_apt() -> None:
    missing = missing_apt_packages()
    if not missing:
        return
    with step(f"apt-get install {' '.join(missing)}"):
        if os.geteuid() != 0:
            raise ValueError("installing Debian packages needs root; run as root or install: " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def _requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in ("requirements/dev.txt", "app/requirements.txt"):
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    stamp = VENV / ".requirements.sha256"
    wanted = _requirements_digest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    with step("virtualenv .venv"):
        if not (VENV / "bin" / "python").exists():
            shutil.rmtree(VENV, ignore_errors=True)
            run(["python3", "-m", "venv", VENV])
        pip = [VENV / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
        run([*pip, "install", "-r", REPO / "requirements" / "dev.txt"])
        stamp.write_text(wanted)


def setup_command(args: list[str]) -> int:
    ensure_apt()
    ensure_venv()
    from lab.mirror.tools import ensure_tools

    ensure_tools()
    log("setup complete")
    return 0
