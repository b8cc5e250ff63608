"""The offline mirror: pinned builds served like pkgs.k8s.io and a registry.

`make mirror` builds, each part only when missing or stale (all under
CACHE/mirror/, keyed by version):
1. the Go builds (lab.mirror.builds): Kubernetes, crictl, etcd, CoreDNS, CNI plugins,
   CRI-O and Calico from their release tarballs (lab.mirror.distfiles);
2. .deb packages of them like pkgs.k8s.io's and CRI-O's upstream (lab.mirror.debs);
3. the apt repositories, signed with the lab key (lab.mirror.apt): the flat
   core:/stable:/v1.29/deb/, CRI-O's repositories/isv:/cri-o:/stable:/v1.29/deb/
   and a Debian bookworm subset at debian/;
4. Calico's manifests at upstream's path, projectcalico/calico/<version>/
   manifests/, in the same HTTP root (lab.mirror.calico);
5. the images kubeadm pulls, Calico's and the app image, pushed into a
   docker-registry storage (lab.mirror.images).
That is the default release set (lab.mirror.builds.DEFAULT, Kubernetes 1.29).
Other sets (1.30, the upgrade's target) are built only when asked, beside it,
into the same trees the services serve: `python -m lab mirror --release 1.30`
or build_release("1.30"); a newcomer's `make mirror` never builds or waits for
them.

Interface used by lab.nodes.commands and lab.nodes.image:
- is_built() -> bool: everything `make mirror` makes is in the cache;
- build_release(name) -> list[str]: the default mirror, then the release set
  name ("1.30"), each part only when missing (what the upgrade test and
  benchmark call); is_release_built(name) -> bool;
- start_services(): serve the apt repository (APT_PORT, a static HTTP server)
  and the registry (REGISTRY_PORT, Debian's docker-registry) on the lab bridge
  address, daemonized with pid files in CACHE/mirror/run/, idempotently;
- stop_services(): stop both, idempotently;
- public_key_path(): the lab archive key (binary keyring) nodes trust for both
  repositories (`signed-by=`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
import urllib.request
from pathlib import Path

from lab.mirror import builds
from lab.mirror.gobuild import build, is_current
from lab.paths import CACHE
from lab.run import exclusive, log
from lab.service import Service

MIRROR_DIR = CACHE / "mirror"
RUN_DIR = MIRROR_DIR / "run"
COMPLETE = MIRROR_DIR / ".complete"
BRIDGE_ADDRESS = "10.77.0.1"
APT_PORT = 8080
REGISTRY_PORT = 5000
APT_URL = f"http://{BRIDGE_ADDRESS}:{APT_PORT}"
REGISTRY = f"{BRIDGE_ADDRESS}:{REGISTRY_PORT}"


def _mirror_key() -> str:
    """What a complete mirror was built from: pinned versions and packaging."""
    from lab.mirror import apt, calico, debs, images

    parts = [spec.stamp() for spec in builds.MIRROR_BUILDS]
    parts += [apt.CRIO_REPO_PATH]
    parts += [
        debs.REVISION,
        " ".join(apt.DEBIAN_SUBSET_PACKAGES),
        " ".join(images.expected_images()),
        " ".join(f"{path} {sha256}" for path, sha256 in sorted(calico.MANIFEST_SHA256.items())),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def is_built() -> bool:
    return COMPLETE.is_file() and COMPLETE.read_text().strip() == _mirror_key()


def _release_key(release: builds.ReleaseSet) -> str:
    """What a complete non-default release set was built from."""
    from lab.mirror import debs, images

    parts = [spec.stamp() for spec in release.go_builds]
    parts += [release.core_repo_path, release.crio_repo_path, debs.REVISION]
    parts += [" ".join(images.release_images(release))]
    parts += [" ".join(f"{path} {sha256}" for path, sha256 in sorted(release.calico_manifest_sha256.items()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _release_complete(release: builds.ReleaseSet) -> Path:
    return MIRROR_DIR / f".complete-{release.name}"


def is_release_built(name: str) -> bool:
    """Whether the default mirror and the release set name ("1.30") are in the cache."""
    release = builds.release(name)
    if release is builds.DEFAULT:
        return is_built()
    marker = _release_complete(release)
    return is_built() and marker.is_file() and marker.read_text().strip() == _release_key(release)


def public_key_path() -> Path:
    """The lab archive key as a binary keyring, for `deb [signed-by=...]` on nodes."""
    from lab.mirror.apt import KEYRING

    return KEYRING


# --- services ---------------------------------------------------------------


def _service(name: str) -> Service:
    from lab.mirror.apt import APT_ROOT

    if name == "apt":
        argv = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            BRIDGE_ADDRESS,
            "--directory",
            str(APT_ROOT),
            str(APT_PORT),
        ]
    else:
        argv = ["docker-registry", "serve", str(RUN_DIR / "registry.yml")]
    return Service(name, argv, RUN_DIR)


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2):
        pass


def _start(name: str, check_url: str) -> None:
    service = _service(name)
    if service.running_pid() is not None:
        return
    with contextlib.suppress(OSError):
        _get(check_url)
        raise ValueError(f"something else already answers {check_url}; stop it or free the port")
    service.start(lambda: _get(check_url), check_url)


def start_services() -> None:
    """Serve the apt repositories and the registry on the lab bridge (idempotent)."""
    from lab.mirror.apt import CORE_REPO_PATH
    from lab.mirror.images import registry_config

    if not is_built():
        raise ValueError("the mirror is not built: run `make mirror` first")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    config = RUN_DIR / "registry.yml"
    wanted = registry_config(REGISTRY)
    if not config.is_file() or config.read_text() != wanted:
        config.write_text(wanted)
    _start("registry", f"http://{REGISTRY}/v2/")
    _start("apt", f"{APT_URL}/{CORE_REPO_PATH}/Release")


def stop_services() -> None:
    """Stop the mirror's services (idempotent)."""
    for name in ("apt", "registry"):
        _service(name).stop(f"mirror {name}")


def services_running() -> bool:
    return _service("apt").running_pid() is not None and _service("registry").running_pid() is not None


# --- make mirror --------------------------------------------------------------


def build_mirror(with_app: bool = True) -> list[str]:
    """Build whatever is missing; return what was done (empty when warm).

    One build per cache at a time: two would write the same files."""
    with exclusive(MIRROR_DIR / ".lock", "mirror build"):
        return _build_mirror(with_app)


def _build_mirror(with_app: bool) -> list[str]:
    done = _build_set(builds.DEFAULT, with_app=with_app, debian_subset=True)
    if with_app:
        COMPLETE.write_text(_mirror_key() + "\n")
    return done


def build_release(name: str) -> list[str]:
    """The default mirror, then the release set name ("1.30": the upgrade's target)
    beside it; return what was done (empty when warm)."""
    release = builds.release(name)
    done = build_mirror()
    if release is builds.DEFAULT:
        return done
    with exclusive(MIRROR_DIR / ".lock", f"mirror build of release {release.name}"):
        done += _build_set(release, with_app=False, debian_subset=False)
        _release_complete(release).write_text(_release_key(release) + "\n")
    return done


def _build_set(release: builds.ReleaseSet, with_app: bool, debian_subset: bool) -> list[str]:
    """A release set's Go builds, packages, repositories, manifests and images, each
    only when missing or stale (the Debian subset and the app image are shared:
    `make mirror` makes them); return what was done."""
    from lab.mirror import apt, calico, debs, images

    done: list[str] = []
    for spec in release.go_builds:
        if not is_current(spec):
            build(spec)
            done.append(f"go build {spec.name} {spec.version}")
    before = {deb: deb.stat().st_mtime_ns for deb in debs.DEBS_DIR.glob("*.deb")}
    kubernetes_debs = debs.build_debs(debs.packages(release))
    crio_debs = debs.build_debs([debs.crio_package(release)])
    done += [f"package {deb.name}" for deb in kubernetes_debs + crio_debs if before.get(deb) != deb.stat().st_mtime_ns]
    try:
        fingerprint = apt.ensure_signing_key()
        if apt.build_core_repo(kubernetes_debs, fingerprint, release):
            done.append(f"apt repository {release.core_repo_path}")
        if apt.build_crio_repo(crio_debs, fingerprint, release):
            done.append(f"apt repository {release.crio_repo_path}")
        if debian_subset and apt.build_debian_subset(fingerprint):
            done.append(f"apt repository debian {apt.DEBIAN_SUITE} subset")
    finally:
        apt.stop_gpg_agent()
    done += [f"manifest {path}" for path in calico.serve_manifests(release)]
    done += [f"image {reference}" for reference in images.build_images(with_app=with_app, release=release)]
    return done


def mirror_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make mirror", description="build the offline package and image mirror")
    parser.add_argument("--no-app", action="store_true", help="skip the app image (the mirror stays incomplete)")
    parser.add_argument(
        "--release",
        choices=sorted(builds.RELEASES),
        help=f"also build this release set beside the default {builds.DEFAULT.name} (e.g. 1.30, the upgrade's target)",
    )
    options = parser.parse_args(args)
    if options.release and options.no_app:
        parser.error("--release builds the complete default mirror first: drop --no-app")
    started = time.monotonic()
    done = build_release(options.release) if options.release else build_mirror(with_app=not options.no_app)
    elapsed = time.monotonic() - started
    if done:
        log(f"mirror: built {len(done)} parts in {elapsed:.1f}s: {', '.join(done)}")
    else:
        log(f"mirror: nothing to do, everything is cached in {MIRROR_DIR} ({elapsed:.1f}s)")
    if is_built():
        log(f"mirror: apt {APT_URL}/ (core:/stable:/..., debian), registry {REGISTRY}; `make lab-up` serves them")
    if options.release and is_release_built(options.release):
        release = builds.release(options.release)
        log(
            f"mirror: release {release.name}: {APT_URL}/{release.core_repo_path}/, "
            f"{APT_URL}/{release.crio_repo_path}/, {APT_URL}/{release.calico_manifests_path}/, "
            f"images {', '.join(_release_images(release))}"
        )
    return 0


def _release_images(release: builds.ReleaseSet) -> list[str]:
    from lab.mirror import images

    return images.release_images(release)
