"""The mirror's apt repositories, signed with one lab key made once in the cache.

- core:/stable:/v1.29/deb/: a flat repository like pkgs.k8s.io's (Packages,
  Release, InRelease, Release.gpg and the armored Release.key in the same
  directory, the .debs under amd64/), sources line
  `deb [signed-by=KEYRING] http://10.77.0.1:8080/core:/stable:/v1.29/deb/ /`;
  one per release set (lab.mirror.builds.ReleaseSet), beside each other, as
  pkgs.k8s.io has one per minor, and CRI-O's likewise. Each has its own stamp:
  adding a set's repositories leaves the others' files untouched.
- debian/: a Debian bookworm subset (dists/bookworm/main/binary-amd64, pool/)
  with what nodes install from the OS archive (DEBIAN_SUBSET_PACKAGES) and
  every dependency a minimal bookworm system lacks. Dependencies are resolved by
  `apt-get install --download-only` against the dpkg status of a debootstrap
  minbase root: nodes are minbase plus more, so whatever they already have is
  covered, and the packages are the exact bookworm versions they expect.
  They come from the Debian mirror the host uses (lab.nodes.rootfs.debian_mirror).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

from lab.mirror.builds import DEFAULT, ReleaseSet
from lab.nodes.rootfs import debian_mirror, debootstrap
from lab.paths import CACHE
from lab.run import log, run, step

MIRROR_DIR = CACHE / "mirror"
APT_ROOT = MIRROR_DIR / "apt"
GNUPG_HOME = MIRROR_DIR / "gnupg"
KEYS_DIR = MIRROR_DIR / "keys"
# Binary keyring for `signed-by=` and gpgv; Release.key is the armored copy.
KEYRING = KEYS_DIR / "kubeadm-lab-archive-keyring.gpg"
ARMORED_KEY = KEYS_DIR / "Release.key"
KEY_UID = "kubeadm-helm-rollout lab mirror <mirror@kubeadm-lab.invalid>"

KUBERNETES_MINOR = DEFAULT.kubernetes_minor
CORE_REPO_PATH = DEFAULT.core_repo_path
CORE_REPO = APT_ROOT / CORE_REPO_PATH
# CRI-O's packages moved from pkgs.k8s.io's addons to openSUSE's build service:
# https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.29/deb/
CRIO_MINOR = DEFAULT.crio_minor
CRIO_REPO_PATH = DEFAULT.crio_repo_path
DEBIAN_REPO = APT_ROOT / "debian"
DEBIAN_SUITE = "bookworm"
# verifies the Debian mirror's Release while the subset is downloaded
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# What nodes install from the Debian archive (the roles' package lists), and
# why. Dependencies come along; a role that installs anything else from the OS
# archive needs it added here.
DEBIAN_SUBSET_PACKAGES = [
    "containerd",  # the other supported runtime (cluster_container_runtime: containerd)
    "runc",  # both runtimes' OCI runtime; the cri-o package depends on it
    "conmon",  # CRI-O's container monitor; the cri-o package depends on it
    # kubelet's package dependencies and kubeadm's preflight tools
    "conntrack",
    "ebtables",
    "ethtool",
    "iproute2",
    "iptables",
    "kmod",
    "mount",
    "socat",
    "util-linux",
    "procps",  # sysctl(8), used by ansible.posix.sysctl
    # upstream's steps for adding the pkgs.k8s.io repository
    "apt-transport-https",
    "ca-certificates",
    "curl",
    "gnupg",
    "python3-apt",  # Ansible's apt module
    "acl",  # Ansible's become to an unprivileged user
]
# The dpkg status the subset is resolved against: a bare minbase system.
# (`apt` is in minbase already; debootstrap needs a non-empty --include.)
RESOLVER_ROOT_PACKAGES = ["apt"]


def _gpg(*args: str | Path, capture: bool = False) -> str:
    env = dict(os.environ, GNUPGHOME=str(GNUPG_HOME))
    result = run(["gpg", "--batch", "--quiet", "--no-tty", *args], env=env, capture=capture)
    return result.stdout if capture else ""


def stop_gpg_agent() -> None:
    """gpg leaves an agent running for the key's home; nothing needs it between builds."""
    if GNUPG_HOME.is_dir():
        run(["gpgconf", "--kill", "gpg-agent"], env=dict(os.environ, GNUPGHOME=str(GNUPG_HOME)), check=False)


def key_fingerprint() -> str | None:
    if not GNUPG_HOME.is_dir():
        return None
    env = dict(os.environ, GNUPGHOME=str(GNUPG_HOME))
    listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, capture=True, check=False)
    for line in listing.stdout.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    return None


def ensure_signing_key() -> str:
    """The lab archive key (made once); its public parts are exported to KEYS_DIR."""
    fingerprint = key_fingerprint()
    if fingerprint is None:
        with step("gpg: generate the lab archive signing key"):
            shutil.rmtree(GNUPG_HOME, ignore_errors=True)
            GNUPG_HOME.mkdir(parents=True, mode=0o700)
            _gpg(
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-gen-key",
                KEY_UID,
                "rsa3072",
                "sign",
                "never",
            )
            fingerprint = key_fingerprint()
            if fingerprint is None:
                raise ValueError("gpg did not create a key")
    if not KEYRING.is_file() or not ARMORED_KEY.is_file():
        KEYS_DIR.mkdir(parents=True, exist_ok=True)
        _gpg("--yes", "--output", KEYRING, "--export", fingerprint)
        _gpg("--yes", "--armor", "--output", ARMORED_KEY, "--export", fingerprint)
    return fingerprint


def _sign_release(directory: Path, fingerprint: str) -> None:
    release = directory / "Release"
    common = ["--yes", "--local-user", fingerprint, "--digest-algo", "SHA256"]
    _gpg(*common, "--clearsign", "--output", directory / "InRelease", release)
    _gpg(*common, "--armor", "--detach-sign", "--output", directory / "Release.gpg", release)


def _write_packages(directory: Path, scan: str, packages_dir: Path) -> None:
    """apt-ftparchive packages SCAN (relative to directory) -> Packages and Packages.gz."""
    packages_dir.mkdir(parents=True, exist_ok=True)
    text = run(["apt-ftparchive", "packages", scan], cwd=directory, capture=True).stdout
    (packages_dir / "Packages").write_text(text)
    with gzip.GzipFile(packages_dir / "Packages.gz", "wb", mtime=0) as compressed:
        compressed.write(text.encode())


def _write_release(directory: Path, fields: dict[str, str]) -> None:
    for name in ("Release", "InRelease", "Release.gpg"):
        (directory / name).unlink(missing_ok=True)
    options = [f"-oAPT::FTPArchive::Release::{key}={value}" for key, value in fields.items()]
    text = run(["apt-ftparchive", *options, "release", "."], cwd=directory, capture=True).stdout
    (directory / "Release").write_text(text)


def _stamp_matches(stamp: Path, wanted: str) -> bool:
    return stamp.is_file() and stamp.read_text() == wanted


def build_flat_repo(path: str, debs: list[Path], fingerprint: str, label: str, description: str) -> bool:
    """A flat repository like pkgs.k8s.io's and openSUSE's build service's
    (Packages, Release, InRelease, Release.gpg and Release.key in APT_ROOT/path,
    the .debs under amd64/). True if it was (re)written."""
    repo = APT_ROOT / path
    digest = hashlib.sha256(f"{fingerprint} {label} {description}".encode())
    for deb in sorted(debs):
        digest.update(f"{deb.name} {deb.stat().st_size} {deb.stat().st_mtime_ns}\n".encode())
    stamp = MIRROR_DIR / "stamps" / ("repo-" + path.replace("/", "_").replace(":", ""))
    if _stamp_matches(stamp, digest.hexdigest()) and (repo / "InRelease").is_file():
        return False
    with step(f"apt repository {path} ({len(debs)} packages)"):
        pool = repo / "amd64"
        shutil.rmtree(pool, ignore_errors=True)
        pool.mkdir(parents=True)
        for deb in debs:
            os.link(deb, pool / deb.name)
        _write_packages(repo, "amd64", repo)
        _write_release(
            repo, {"Origin": "kubeadm-lab", "Label": label, "Architectures": "amd64", "Description": description}
        )
        _sign_release(repo, fingerprint)
        shutil.copyfile(ARMORED_KEY, repo / "Release.key")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest.hexdigest())
    return True


def build_core_repo(debs: list[Path], fingerprint: str, release: ReleaseSet = DEFAULT) -> bool:
    """pkgs.k8s.io's core:/stable:/<minor>/deb/ with the release set's Kubernetes packages."""
    minor = release.kubernetes_minor
    return build_flat_repo(
        release.core_repo_path,
        debs,
        fingerprint,
        f"kubeadm-lab core:stable:{minor}",
        f"Kubernetes {minor} packages rebuilt from pinned sources",
    )


def build_crio_repo(debs: list[Path], fingerprint: str, release: ReleaseSet = DEFAULT) -> bool:
    """openSUSE's isv:/cri-o:/stable:/<minor>/deb/ with the release set's cri-o package."""
    minor = release.crio_minor
    return build_flat_repo(
        release.crio_repo_path,
        debs,
        fingerprint,
        f"kubeadm-lab isv:cri-o:stable:{minor}",
        f"CRI-O {minor} package rebuilt from its pinned release tag",
    )


def _apt_options(work: Path) -> list[str]:
    """apt-get configured to resolve against work/status and download into work/."""
    return [
        f"-oDir::Etc::SourceList={work / 'sources.list'}",
        f"-oDir::Etc::SourceParts={work / 'sources.list.d'}",
        f"-oDir::Etc::Preferences={work / 'preferences'}",
        f"-oDir::Etc::PreferencesParts={work / 'preferences.d'}",
        f"-oDir::State={work / 'state'}",
        f"-oDir::State::status={work / 'status'}",
        f"-oDir::Cache={work / 'cache'}",
        "-oAPT::Architecture=amd64",
        "-oAPT::Architectures::=amd64",
        # as nodes do by default, so their installs find every recommended package
        "-oAPT::Install-Recommends=true",
        "-oDebug::NoLocking=true",
        "-oAPT::Sandbox::User=root",  # the work directory is root's
    ]


def _pool_path(deb: Path) -> str:
    name = deb.name.split("_", 1)[0]
    prefix = name[:4] if name.startswith("lib") else name[0]
    return f"pool/main/{prefix}/{name}/{deb.name}"


def build_debian_subset(fingerprint: str) -> bool:
    """The bookworm subset. True if it was (re)written."""
    resolver = debootstrap("apt-resolver", RESOLVER_ROOT_PACKAGES)
    mirror = debian_mirror(DEBIAN_SUITE)
    inputs = [fingerprint, resolver.name, mirror, DEBIAN_SUITE, *sorted(DEBIAN_SUBSET_PACKAGES)]
    wanted = hashlib.sha256(" ".join(inputs).encode()).hexdigest()
    stamp = MIRROR_DIR / "stamps" / "debian-subset"
    if _stamp_matches(stamp, wanted) and (DEBIAN_REPO / "dists" / DEBIAN_SUITE / "InRelease").is_file():
        return False
    with step(f"apt repository debian {DEBIAN_SUITE} subset ({len(DEBIAN_SUBSET_PACKAGES)} packages + dependencies)"):
        work = MIRROR_DIR / "work" / "debian-subset"
        shutil.rmtree(work, ignore_errors=True)
        for directory in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
            (work / directory).mkdir(parents=True)
        (work / "sources.list").write_text(f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {DEBIAN_SUITE} main\n")
        shutil.copyfile(resolver / "var/lib/dpkg/status", work / "status")
        options = _apt_options(work)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", *options, "-q", "update"], env=env)
        run(
            ["apt-get", *options, "-q", "-y", "install", "--download-only", *DEBIAN_SUBSET_PACKAGES],
            env=env,
        )
        downloaded = sorted((work / "cache" / "archives").glob("*.deb"))
        if not downloaded:
            raise ValueError("apt-get downloaded no packages")
        shutil.rmtree(DEBIAN_REPO, ignore_errors=True)
        for deb in downloaded:
            target = DEBIAN_REPO / _pool_path(deb)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(deb, target)
        suite = DEBIAN_REPO / "dists" / DEBIAN_SUITE
        _write_packages(DEBIAN_REPO, "pool/main", suite / "main" / "binary-amd64")
        _write_release(
            suite,
            {
                "Origin": "kubeadm-lab",
                "Label": f"Debian {DEBIAN_SUITE} subset",
                "Suite": DEBIAN_SUITE,
                "Codename": DEBIAN_SUITE,
                "Components": "main",
                "Architectures": "amd64",
                "Description": f"What the lab nodes install from Debian {DEBIAN_SUITE}, re-signed with the lab key",
            },
        )
        _sign_release(suite, fingerprint)
        shutil.copyfile(ARMORED_KEY, DEBIAN_REPO / "Release.key")
        shutil.rmtree(work, ignore_errors=True)
        log(f"  {len(downloaded)} packages from {mirror} {DEBIAN_SUITE}")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted)
    return True
