"""The mirror's images: every image kubeadm pulls, Calico's and the app, in a local registry.

No registry is reachable here, so the images are built with podman from the
pinned binaries on a base imported from a debootstrap tree (minbase plus
iptables, conntrack and kmod, which kube-proxy needs), and pause from
Kubernetes' own pause.c of the pinned tag, statically linked, on scratch, as
upstream does. They are pushed with skopeo into the storage of Debian's
docker-registry (CACHE/mirror/registry) through a temporary registry on
loopback; lab.mirror.commands serves that storage on the bridge. Names are what
`kubeadm config images list --image-repository 10.77.0.1:5000` prints; the
Calico images (lab.mirror.calico) are calico/<name> as in its manifest.
Each function takes a release set (lab.mirror.builds.ReleaseSet), 1.29's by
default; sets share the images whose tag is the same (pause 3.9).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lab.mirror import calico
from lab.mirror.app_image import PODMAN_RUN_FLAGS, build_app_image, chart_app_version, import_rootfs_image
from lab.mirror.builds import DEFAULT, ReleaseSet
from lab.mirror.gobuild import build, go_env
from lab.mirror.imagespec import LOCAL_PREFIX, ImageSpec
from lab.nodes.rootfs import debootstrap
from lab.paths import CACHE
from lab.run import log, run, step

MIRROR_DIR = CACHE / "mirror"
REGISTRY_STORAGE = MIRROR_DIR / "registry"
IMAGES_DIR = MIRROR_DIR / "images"
BASE_PACKAGES = ["ca-certificates", "conntrack", "iptables", "kmod"]
APP_IMAGE = "tiny-http-app"
PAUSE_VERSION = DEFAULT.pause_version


def registry_config(address: str) -> str:
    """A docker-registry config serving the mirror's storage on address (host:port)."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {REGISTRY_STORAGE}\n"
        "  delete:\n    enabled: false\n"
        f"http:\n  addr: {address}\n"
    )


def wait_for_registry(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def push_registry() -> Iterator[str]:
    """A registry on loopback over the mirror's storage, for the time of the pushes."""
    REGISTRY_STORAGE.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_loopback_port()}"
    config = MIRROR_DIR / "run" / "registry-push.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(registry_config(address))
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        try:
            wait_for_registry(address)
        except OSError as error:
            process.kill()
            raise ValueError(f"docker-registry did not start: {process.communicate()[1].strip()}") from error
        yield address
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


def is_in_registry(name: str, tag: str) -> bool:
    """Whether the registry storage holds name:tag (read from the storage layout)."""
    link = REGISTRY_STORAGE / "docker/registry/v2/repositories" / name / "_manifests/tags" / tag / "current/link"
    return link.is_file()


def base_image() -> str:
    """localhost/kubeadm-lab/base:<rootfs key>, imported from a cached debootstrap tree."""
    root = debootstrap("k8s-image-base", BASE_PACKAGES)
    return import_rootfs_image(root, f"{LOCAL_PREFIX}/base:{root.name.rsplit('-', 1)[-1]}")


def kubernetes_source(release: ReleaseSet = DEFAULT) -> Path:
    """The pinned Kubernetes tag's source tree, from Go's module cache."""
    download = run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{release.kubernetes_version}"],
        capture=True,
        env=go_env(),
    )
    return Path(json.loads(download.stdout)["Dir"])


def _pause_release(release: ReleaseSet) -> ReleaseSet:
    """The set whose Kubernetes tag builds release's pause: the default set's when
    the tag is the same (one image per tag in the registry)."""
    return DEFAULT if release.pause_version == DEFAULT.pause_version else release


def build_pause(release: ReleaseSet = DEFAULT) -> Path:
    """Kubernetes' pause.c of the pinned tag, static, like build/pause/Makefile."""
    release = _pause_release(release)
    source = kubernetes_source(release) / "build" / "pause" / "linux" / "pause.c"
    output = IMAGES_DIR / f"pause-{release.pause_version}" / "pause"
    stamp = output.with_name("pause.source")
    if output.is_file() and stamp.is_file() and stamp.read_text() == str(source):
        return output
    with step(f"gcc -static pause {release.pause_version}"):
        output.parent.mkdir(parents=True, exist_ok=True)
        version = f"v{release.pause_version}-{release.kubernetes_commit[:7]}"
        run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION={version}", "-o", output, source])
        run(["strip", output])
        stamp.write_text(str(source))
    return output


def image_specs(base: str, release: ReleaseSet = DEFAULT) -> list[ImageSpec]:
    kubernetes = build(release.kubernetes)
    etcd = build(release.etcd)
    coredns = build(release.coredns)
    tag = release.kubernetes_version
    specs = []
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        # kubeadm's manifests call the binary by name (control plane) or by
        # /usr/local/bin path (kube-proxy): both work from /usr/local/bin.
        specs.append(
            ImageSpec(
                name=component,
                tag=tag,
                files={component: kubernetes / component},
                containerfile=f"FROM {base}\nCOPY {component} /usr/local/bin/{component}\n"
                f'ENTRYPOINT ["/usr/local/bin/{component}"]\n',
            )
        )
    specs.append(
        ImageSpec(
            name="etcd",
            tag=release.etcd_image_tag,
            files={"etcd": etcd / "etcd", "etcdctl": etcd / "etcdctl"},
            containerfile=f"FROM {base}\nCOPY etcd etcdctl /usr/local/bin/\n"
            'ENTRYPOINT ["/usr/local/bin/etcd"]\nEXPOSE 2379 2380\n',
        )
    )
    specs.append(
        ImageSpec(
            name="coredns",
            tag=release.coredns.version,
            files={"coredns": coredns / "coredns"},
            containerfile=f'FROM {base}\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n',
        )
    )
    specs.append(
        ImageSpec(
            name="pause",
            tag=release.pause_version,
            files={"pause": build_pause(release)},
            containerfile='FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n',
        )
    )
    return specs


def _build_and_push(spec: ImageSpec, registry: str) -> None:
    context = IMAGES_DIR / "context" / spec.name
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for target, source in spec.files.items():
        if source.is_dir():
            shutil.copytree(source, context / target, symlinks=True)
        else:
            (context / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / target)
    for target, text in spec.texts.items():
        (context / target).parent.mkdir(parents=True, exist_ok=True)
        (context / target).write_text(text)
    (context / "Containerfile").write_text(spec.containerfile)
    local = f"{LOCAL_PREFIX}/{spec.reference}"
    run(["podman", "build", *PODMAN_RUN_FLAGS, "--quiet", "--format", "docker", "-t", local, context], capture=True)
    _push(local, spec.reference, registry)
    shutil.rmtree(context, ignore_errors=True)


def _push(local: str, remote: str, registry: str) -> None:
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"containers-storage:{local}",
            f"docker://{registry}/{remote}",
        ],
        capture=True,
    )


def _stamp(name: str) -> Path:
    return IMAGES_DIR / "stamps" / name


def is_pushed(spec: ImageSpec) -> bool:
    """Whether the registry holds spec's image, built from these very inputs."""
    stamp = _stamp(f"{spec.name}-{spec.tag}")
    return is_in_registry(spec.name, spec.tag) and stamp.is_file() and stamp.read_text() == spec.digest()


def _push_specs(specs: list[ImageSpec], registry: str) -> list[str]:
    pushed = []
    for spec in specs:
        with step(f"image {spec.reference}: podman build, skopeo copy"):
            _build_and_push(spec, registry)
            _stamp(f"{spec.name}-{spec.tag}").parent.mkdir(parents=True, exist_ok=True)
            _stamp(f"{spec.name}-{spec.tag}").write_text(spec.digest())
        pushed.append(spec.reference)
    return pushed


def build_images(with_app: bool = True, release: ReleaseSet = DEFAULT) -> list[str]:
    """Build and push every image of release that is missing or stale; return the ones pushed."""
    specs = [*image_specs(base_image(), release), *calico.image_specs(release)]
    return push_images(specs, app_local=build_app_image() if with_app else None)


def push_images(specs: list[ImageSpec], app_local: str | None = None) -> list[str]:
    """Build and push the specs (in order), and the local app image, that are missing or
    stale; return the ones pushed."""
    pending = [spec for spec in specs if not is_pushed(spec)]
    app_tag = chart_app_version()
    app_id = ""
    if app_local:
        app_id = run(["podman", "image", "inspect", "--format", "{{.Id}}", app_local], capture=True).stdout.strip()
    app_stamp = _stamp(f"{APP_IMAGE}-{app_tag}")
    app_pending = bool(app_local) and not (
        is_in_registry(APP_IMAGE, app_tag) and app_stamp.is_file() and app_stamp.read_text() == app_id
    )
    if not pending and not app_pending:
        return []
    with push_registry() as registry:
        pushed = _push_specs(pending, registry)
        if app_local and app_pending:
            with step(f"image {APP_IMAGE}:{app_tag}: skopeo copy"):
                _push(app_local, f"{APP_IMAGE}:{app_tag}", registry)
                app_stamp.parent.mkdir(parents=True, exist_ok=True)
                app_stamp.write_text(app_id)
            pushed.append(f"{APP_IMAGE}:{app_tag}")
    log(f"  pushed {', '.join(pushed)}")
    return pushed


def release_images(release: ReleaseSet = DEFAULT) -> list[str]:
    """name:tag of the images a release set puts in the registry (kubeadm's set and Calico's)."""
    return [*release.kubeadm_images(), *calico.expected_images(release)]


def expected_images() -> list[str]:
    """name:tag of every image the registry must hold for `make mirror` (the default set's and the app)."""
    return [*release_images(DEFAULT), f"{APP_IMAGE}:{chart_app_version()}"]
