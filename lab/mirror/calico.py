"""Calico for the mirror: its three images and its manifests, where upstream serves them.

The binaries come from the release tag's tarball (a release set's calico build,
lab.mirror.builds; every function takes the set, 1.29's by default). The
images carry the manifest's names and tag, calico/<name>:v3.26.5, which the
master role's kustomization points at <cluster_image_registry>/calico/<name>:
- calico/node: upstream builds it on UBI with iptables (legacy and nft),
  ipset, conntrack, iproute, kmod, procps and runit; here the same tools come
  from a Debian minbase root. node/filesystem of the tree puts the runit
  services and the start scripts where upstream's Dockerfile puts them, and
  `iptables` is set to the legacy backend as upstream's alternatives do (Felix
  detects the backend the node uses and calls iptables-nft-* or -legacy-*).
- calico/cni: scratch with calico, calico-ipam (a copy: the binary picks its
  role from its name) and install, plus the standard plugins upstream copies
  from its containernetworking-plugins fork v1.1.1-calico (loopback,
  host-local, portmap, tuning, bandwidth), taken from the lab's pinned CNI
  plugins v1.4.0; flannel, which only canal uses, is left out.
- calico/kube-controllers: scratch with kube-controllers and its probe
  check-status, running as uid 999, which owns /status and /profiles.

The manifests are copied byte for byte from the tarball into the apt root
at projectcalico/calico/<version>/manifests/: the lab's URL differs from
raw.githubusercontent.com's only in scheme and host. Their sha256 is pinned in
the release set (builds.ReleaseSet.calico_manifest_sha256).

Later trees lack a few license directories 3.26.5 has (node/filesystem/licenses,
cni-plugin/licenses in 3.28.5): the images copy the ones the tree has.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lab.mirror import builds
from lab.mirror.app_image import import_rootfs_image
from lab.mirror.apt import APT_ROOT
from lab.mirror.builds import ReleaseSet
from lab.mirror.distfiles import Distfile, sha256_of, unpacked
from lab.mirror.gobuild import build
from lab.mirror.imagespec import LOCAL_PREFIX, ImageSpec
from lab.nodes.rootfs import debootstrap
from lab.run import step

DEFAULT = builds.DEFAULT
VERSION = DEFAULT.calico_version
# sha256 of upstream's manifests at the tag (the files in the tarball, byte for byte)
MANIFEST_SHA256 = DEFAULT.calico_manifest_sha256
# relative to the mirror's HTTP root, as under https://raw.githubusercontent.com/
MANIFESTS_PATH = DEFAULT.calico_manifests_path
MANIFESTS_DIR = APT_ROOT / MANIFESTS_PATH

# what the node image runs besides calico-node: Felix's iptables-{legacy,nft}-
# {save,restore} and ipset, conntrack, ip, modprobe; runit runs the services
NODE_BASE_PACKAGES = ["conntrack", "iproute2", "ipset", "iptables", "kmod", "procps", "runit"]
# what cni-plugin/Makefile's fetch-cni-bins copies (flannel aside)
CNI_STANDARD_PLUGINS = ("bandwidth", "host-local", "loopback", "portmap", "tuning")
KUBE_CONTROLLERS_UID = 999
IMAGE_NAMES = ("node", "cni", "kube-controllers")
# glibc's view of name lookups in the scratch images, as upstream copies it from UBI
SCRATCH_NSSWITCH = "hosts: files dns\n"


def image_reference(name: str, release: ReleaseSet = DEFAULT) -> str:
    return f"calico/{name}:{release.calico_version}"


def expected_images(release: ReleaseSet = DEFAULT) -> list[str]:
    """name:tag of the Calico images the registry must hold (what the manifest names, without docker.io/)."""
    return [image_reference(name, release) for name in IMAGE_NAMES]


def node_base_image() -> str:
    """localhost/kubeadm-lab/calico-node-base:<rootfs key>, imported from a cached debootstrap tree."""
    root = debootstrap("calico-node-base", NODE_BASE_PACKAGES)
    return import_rootfs_image(root, f"{LOCAL_PREFIX}/calico-node-base:{root.name.rsplit('-', 1)[-1]}")


def _lines(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def _source(release: ReleaseSet) -> Distfile:
    if release.calico.source is None:
        raise ValueError(f"Calico {release.calico_version} has no source tarball")
    return release.calico.source


def _optional_dir(name: str, directory: Path) -> dict[str, Path]:
    return {name: directory} if directory.is_dir() else {}


def image_specs(release: ReleaseSet = DEFAULT) -> list[ImageSpec]:
    source = _source(release)
    version = release.calico_version
    calico = build(release.calico)
    mountns = build(release.calico_mountns)
    cni_plugins = build(release.cni_plugins)
    tree = unpacked(source)
    node_files = tree / "node" / "filesystem"
    label = f'LABEL version="{version}" source="{source.upstream}@{source.commit}"'
    node_licenses = _optional_dir("licenses", node_files / "licenses")
    node = ImageSpec(
        name="calico/node",
        tag=version,
        files={
            "etc": node_files / "etc",
            **node_licenses,
            "sbin": node_files / "sbin",
            "LICENSE": tree / "node" / "LICENSE",
            "calico-node": calico / "calico-node",
            "mountns": mountns / "mountns",
        },
        containerfile=_lines(
            f"FROM {node_base_image()}",
            "COPY etc/ /etc/",
            *(["COPY licenses/ /licenses/"] if node_licenses else []),
            "COPY LICENSE /licenses/",
            "COPY sbin/ /usr/sbin/",
            # /bin is /usr/bin in bookworm: the probes' /bin/calico-node
            "COPY calico-node mountns /usr/bin/",
            "RUN update-alternatives --set iptables /usr/sbin/iptables-legacy"
            " && update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy",
            label,
            "ENV SVDIR=/etc/service/enabled",
            'CMD ["start_runit"]',
        ),
    )
    cni_binaries = {
        "calico": calico / "calico",
        "calico-ipam": calico / "calico",
        "install": calico / "install",
    } | {plugin: cni_plugins / plugin for plugin in CNI_STANDARD_PLUGINS}
    cni_licenses = _optional_dir("licenses", tree / "cni-plugin" / "licenses")
    cni = ImageSpec(
        name="calico/cni",
        tag=version,
        files={f"bin/{name}": binary for name, binary in cni_binaries.items()}
        | cni_licenses
        | {"LICENSE": tree / "cni-plugin" / "LICENSE"},
        texts={"nsswitch.conf": SCRATCH_NSSWITCH},
        containerfile=_lines(
            "FROM scratch",
            *(["COPY licenses/ /licenses/"] if cni_licenses else []),
            "COPY LICENSE /licenses/",
            "COPY nsswitch.conf /etc/nsswitch.conf",
            "COPY bin/ /opt/cni/bin/",
            label,
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/cni/bin",
            "WORKDIR /opt/cni/bin",
            'CMD ["/opt/cni/bin/install"]',
        ),
    )
    uid = KUBE_CONTROLLERS_UID
    kube_controllers = ImageSpec(
        name="calico/kube-controllers",
        tag=version,
        files={
            "kube-controllers": calico / "kube-controllers",
            "check-status": calico / "check-status",
            "LICENSE": tree / "kube-controllers" / "LICENSE",
        },
        # the files upstream creates for its user: the status the probes read, the profiles
        texts={"status/status.json": "", "profiles/mem.pprof": "", "profiles/cpu.pprof": ""},
        containerfile=_lines(
            "FROM scratch",
            "COPY LICENSE /licenses/",
            f"COPY --chown={uid}:{uid} status/ /status/",
            f"COPY --chown={uid}:{uid} profiles/ /profiles/",
            "COPY kube-controllers check-status /usr/bin/",
            label,
            f"USER {uid}",
            'ENTRYPOINT ["/usr/bin/kube-controllers"]',
        ),
    )
    return [node, cni, kube_controllers]


def serve_manifests(release: ReleaseSet = DEFAULT) -> list[str]:
    """Copy upstream's manifests into the served tree when missing or different; return the ones copied."""
    tree = unpacked(_source(release))
    copied = []
    for name, sha256 in release.calico_manifest_sha256.items():
        source = tree / "manifests" / name
        actual = sha256_of(source)
        if actual != sha256:
            raise ValueError(f"{source} has sha256 {actual}, pinned {sha256}")
        target = manifest_path(name, release)
        if target.is_file() and sha256_of(target) == sha256:
            continue
        with step(f"serve Calico manifest {release.calico_manifests_path}/{name}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(name + ".partial")
            shutil.copyfile(source, partial)
            partial.rename(target)
        copied.append(f"{release.calico_manifests_path}/{name}")
    return copied


def manifest_path(name: str, release: ReleaseSet = DEFAULT) -> Path:
    return APT_ROOT / release.calico_manifests_path / name
