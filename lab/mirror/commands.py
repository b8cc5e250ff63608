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

Interface used by lab.nodes.commands and lab.nodes.image:
- is_built() -> bool: everything `make mirror` makes is in the cache;
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
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lab.mirror import builds
from lab.mirror.gobuild import build, is_current
from lab.paths import CACHE
from lab.run import exclusive, log, step

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


def public_key_path() -> Path:
    """The lab archive key as a binary keyring, for `deb [signed-by=...]` on nodes."""
    from lab.mirror.apt import KEYRING

    return KEYRING


# --- services ---------------------------------------------------------------


def _service_argv(name: str) -> list[str]:
    from lab.mirror.apt import APT_ROOT

    if name == "apt":
        return [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            BRIDGE_ADDRESS,
            "--directory",
            str(APT_ROOT),
            str(APT_PORT),
        ]
    return ["docker-registry", "serve", str(RUN_DIR / "registry.yml")]


def _pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def _running_pid(name: str) -> int | None:
    """The pid of the service if its pid file names a live process running it."""
    pid_file = _pid_file(name)
    if not pid_file.is_file():
        return None
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (ValueError, OSError):
        return None
    argv = [part.decode() for part in cmdline if part]
    # the interpreter may differ (system python3 or the venv's): compare the rest
    return pid if argv[1:] == _service_argv(name)[1:] else None


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _start(name: str, check_url: str) -> None:
    if _running_pid(name) is not None:
        return
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError), urllib.request.urlopen(check_url, timeout=2):
        raise ValueError(f"something else already answers {check_url}; stop it or free the port")
    with step(f"serve {name} at {check_url}"):
        with open(RUN_DIR / f"{name}.log", "ab") as log_file:
            process = subprocess.Popen(
                _service_argv(name),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make lab-up`
                cwd=RUN_DIR,
            )
        _pid_file(name).write_text(f"{process.pid}\n")
        try:
            _wait_http(check_url)
        except OSError as error:
            tail = (RUN_DIR / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise ValueError(f"{name} did not answer {check_url}: {error}; log: {' / '.join(tail)}") from error


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


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_services() -> None:
    """Stop the mirror's services (idempotent)."""
    for name in ("apt", "registry"):
        pid = _running_pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log(f"stopped mirror {name} (pid {pid})")
        _pid_file(name).unlink(missing_ok=True)


def services_running() -> bool:
    return _running_pid("apt") is not None and _running_pid("registry") is not None


# --- make mirror --------------------------------------------------------------


def build_mirror(with_app: bool = True) -> list[str]:
    """Build whatever is missing; return what was done (empty when warm).

    One build per cache at a time: two would write the same files."""
    with exclusive(MIRROR_DIR / ".lock", "mirror build"):
        return _build_mirror(with_app)


def _build_mirror(with_app: bool) -> list[str]:
    from lab.mirror import apt, calico, debs, images

    done: list[str] = []
    for spec in builds.MIRROR_BUILDS:
        if not is_current(spec):
            build(spec)
            done.append(f"go build {spec.name} {spec.version}")
    before = {deb: deb.stat().st_mtime_ns for deb in debs.DEBS_DIR.glob("*.deb")}
    kubernetes_debs = debs.build_debs(debs.packages())
    crio_debs = debs.build_debs([debs.crio_package()])
    done += [f"package {deb.name}" for deb in kubernetes_debs + crio_debs if before.get(deb) != deb.stat().st_mtime_ns]
    try:
        fingerprint = apt.ensure_signing_key()
        if apt.build_core_repo(kubernetes_debs, fingerprint):
            done.append(f"apt repository {apt.CORE_REPO_PATH}")
        if apt.build_crio_repo(crio_debs, fingerprint):
            done.append(f"apt repository {apt.CRIO_REPO_PATH}")
        if apt.build_debian_subset(fingerprint):
            done.append(f"apt repository debian {apt.DEBIAN_SUITE} subset")
    finally:
        apt.stop_gpg_agent()
    done += [f"manifest {path}" for path in calico.serve_manifests()]
    done += [f"image {reference}" for reference in images.build_images(with_app=with_app)]
    if with_app:
        COMPLETE.write_text(_mirror_key() + "\n")
    return done


def mirror_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make mirror", description="build the offline package and image mirror")
    parser.add_argument("--no-app", action="store_true", help="skip the app image (the mirror stays incomplete)")
    options = parser.parse_args(args)
    started = time.monotonic()
    done = build_mirror(with_app=not options.no_app)
    elapsed = time.monotonic() - started
    if done:
        log(f"mirror: built {len(done)} parts in {elapsed:.1f}s: {', '.join(done)}")
    else:
        log(f"mirror: nothing to do, everything is cached in {MIRROR_DIR} ({elapsed:.1f}s)")
    if is_built():
        log(f"mirror: apt {APT_URL}/ (core:/stable:/..., debian), registry {REGISTRY}; `make lab-up` serves them")
    return 0
