"""Debian packages of the pinned builds, laid out like pkgs.k8s.io's.

kubeadm, kubelet, kubectl, cri-tools and kubernetes-cni with upstream's names,
versions (`1.29.15-1.1`), dependencies, files (kubelet.service, the kubeadm
drop-in, /etc/default/kubelet) and maintainer scripts, so the same apt tasks
install them from pkgs.k8s.io or from the lab mirror. Packaging follows
kubernetes/release (cmd/krel/templates/latest): the unit and the drop-in live
in /usr/lib/systemd/system, /etc/default/kubelet is a conffile.

Each .deb is made with `dpkg-deb --root-owner-group` and cached under
CACHE/mirror/debs/ with a digest of its inputs: unchanged inputs, no rebuild.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lab.mirror.builds import DEFAULT, ReleaseSet
from lab.mirror.distfiles import unpacked
from lab.mirror.gobuild import build
from lab.paths import CACHE
from lab.run import run, step

DEBS_DIR = CACHE / "mirror" / "debs"
# pkgs.k8s.io's Debian revision of every package it builds
REVISION = "1.1"
MAINTAINER = "Kubernetes Authors <dev@kubernetes.io>"
HOMEPAGE = "https://kubernetes.io"
ORIGIN_NOTE = "Rebuilt by the kubeadm-helm-rollout lab mirror from pinned upstream sources."

UNIT_DIR = "usr/lib/systemd/system"

KUBELET_SERVICE = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

KUBEADM_DROPIN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the \
KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the \
user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS \
should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

KUBELET_DEFAULTS = "KUBELET_EXTRA_ARGS=\n"


# What the debbuild systemd macros do: enable the unit on install, stop it on
# removal, forget it on purge, try-restart it on upgrade. No start on a fresh
# install: the kubelet only crash-loops without kubeadm's config, and CRI-O is
# configured first (upstream's instructions start it after install).
def systemd_postinst(unit: str) -> str:
    return f"""\
#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    deb-systemd-helper unmask {unit} >/dev/null || true
    if deb-systemd-helper --quiet was-enabled {unit}; then
        deb-systemd-helper enable {unit} >/dev/null || true
    else
        deb-systemd-helper update-state {unit} >/dev/null || true
        deb-systemd-helper enable {unit} >/dev/null || true
    fi
    if [ -n "$2" ] && [ -d /run/systemd/system ]; then
        # an upgrade: a running service picks up the new binary
        deb-systemd-invoke try-restart {unit} >/dev/null || true
    fi
fi
"""


def systemd_prerm(unit: str) -> str:
    return f"""\
#!/bin/sh
set -e
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop {unit} >/dev/null || true
fi
"""


def systemd_postrm(unit: str) -> str:
    return f"""\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ] && [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper mask {unit} >/dev/null || true
fi
if [ "$1" = "purge" ] && [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper purge {unit} >/dev/null || true
    deb-systemd-helper unmask {unit} >/dev/null || true
fi
"""


def systemd_scripts(unit: str) -> dict[str, str]:
    return {"postinst": systemd_postinst(unit), "prerm": systemd_prerm(unit), "postrm": systemd_postrm(unit)}


# kubeadm ships the kubelet drop-in: systemd must re-read units.
DAEMON_RELOAD = """\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
"""


@dataclass(frozen=True)
class DebPackage:
    name: str
    upstream_version: str
    description: str
    section: str
    # path in the package -> (file in a build directory or None, mode, text if generated)
    files: dict[str, tuple[Path | None, int, str | None]]
    depends: tuple[str, ...] = ()
    recommends: tuple[str, ...] = ()
    conffiles: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.upstream_version}-{REVISION}"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_amd64.deb"

    def control(self, installed_size_kib: int) -> str:
        summary, _, long = self.description.partition("\n")
        fields = {
            "Package": self.name,
            "Version": self.version,
            "Architecture": "amd64",
            "Maintainer": MAINTAINER,
            "Installed-Size": str(installed_size_kib),
            "Depends": ", ".join(self.depends),
            "Recommends": ", ".join(self.recommends),
            "Section": self.section,
            "Priority": "optional",
            "Homepage": HOMEPAGE,
        }
        lines = [f"{key}: {value}" for key, value in fields.items() if value]
        body = [f" {line}" if line else " ." for line in (long.strip() + "\n" + ORIGIN_NOTE).strip().splitlines()]
        return "\n".join([*lines, f"Description: {summary}", *body]) + "\n"

    def inputs_digest(self) -> str:
        digest = hashlib.sha256(
            json.dumps(
                [
                    *(self.name, self.version, self.description, self.depends, self.recommends, self.conffiles),
                    *(self.scripts, MAINTAINER, HOMEPAGE, ORIGIN_NOTE),
                ]
            ).encode()
        )
        for target, (source, mode, text) in sorted(self.files.items()):
            digest.update(f"{target} {mode:o}\0".encode())
            if source is not None:
                stat = source.stat()
                digest.update(f"{source} {stat.st_size} {stat.st_mtime_ns}\0".encode())
            else:
                digest.update((text or "").encode() + b"\0")
        return digest.hexdigest()


# CRI-O as its upstream 1.29 package lays it out (cri-o/packaging's spec:
# binaries in /usr/bin, crio.service with /usr/bin paths, crio.conf from
# `crio config`, policy.json, registries.conf, crictl.yaml, the example bridge
# network), except that conmon and runc are Debian's packages instead of
# bundled copies: the drop-in below points the runc handler at them.
CRIO_RUNTIME_DROPIN = """\
# The runc and conmon of the OS archive (Debian's packages this one depends on).
[crio.runtime]
default_runtime = "runc"

[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"
"""
# containers/image's defaults: accept any image, as upstream's package ships.
CONTAINERS_POLICY = """\
{
    "default": [{"type": "insecureAcceptAnything"}],
    "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}
}
"""
CONTAINERS_REGISTRIES = """\
# Registries for unqualified image names (Kubernetes names images fully; this
# keeps a bare "busybox" meaning what it means to Docker). Add registries in
# registries.conf.d/.
unqualified-search-registries = ["docker.io"]
"""
CRICTL_CONFIG = "runtime-endpoint: unix:///var/run/crio/crio.sock\n"


def crio_default_config(crio_build: Path) -> Path:
    """/etc/crio/crio.conf as upstream makes it (`crio -d "" --config="" config`), once per build."""
    output = crio_build / "crio.conf"
    if not output.is_file():
        text = run([crio_build / "crio", "-d", "", "--config=", "config"], capture=True).stdout
        if "[crio.runtime]" not in text:
            raise ValueError("crio config printed no configuration")
        partial = output.with_name("crio.conf.partial")
        partial.write_text(text)
        partial.rename(output)
    return output


def _binary(directory: Path, name: str, target: str) -> dict[str, tuple[Path | None, int, str | None]]:
    return {target: (directory / name, 0o755, None)}


def crio_package(release: ReleaseSet = DEFAULT) -> DebPackage:
    """The cri-o package of a release set (1.29's by default)."""
    crio = build(release.crio)
    tree = unpacked(release.crio.source)  # type: ignore[arg-type]
    service = (tree / "contrib/systemd/crio.service").read_text().replace("/usr/local/bin", "/usr/bin")
    return DebPackage(
        name="cri-o",
        upstream_version=release.crio_version.lstrip("v"),
        section="admin",
        description="Open Container Initiative-based implementation of Kubernetes Container Runtime Interface\n"
        "CRI-O runs the containers of Kubernetes pods with an OCI runtime (runc) and conmon.",
        files={
            **_binary(crio, "crio", "usr/bin/crio"),
            **_binary(crio, "pinns", "usr/bin/pinns"),
            f"{UNIT_DIR}/crio.service": (None, 0o644, service),
            "etc/crio/crio.conf": (crio_default_config(crio), 0o644, None),
            "etc/crio/crio.conf.d/10-crio.conf": (None, 0o644, CRIO_RUNTIME_DROPIN),
            "etc/containers/policy.json": (None, 0o644, CONTAINERS_POLICY),
            "etc/containers/registries.conf": (None, 0o644, CONTAINERS_REGISTRIES),
            "etc/crictl.yaml": (None, 0o644, CRICTL_CONFIG),
            "etc/cni/net.d/11-crio-ipv4-bridge.conflist": (
                tree / "contrib/cni/11-crio-ipv4-bridge.conflist",
                0o644,
                None,
            ),
            "var/lib/crio/.crio-keep": (None, 0o644, ""),
        },
        # crio links libseccomp dynamically (cgo); upstream's bundle is static
        depends=(
            "libc6 (>= 2.34)",
            "libseccomp2 (>= 2.5.0)",
            "conmon (>= 2.1.6)",
            "runc (>= 1.1.5)",
            "iptables",
            "kubernetes-cni | containernetworking-plugins",
        ),
        conffiles=(
            "/etc/crio/crio.conf",
            "/etc/crio/crio.conf.d/10-crio.conf",
            "/etc/containers/policy.json",
            "/etc/containers/registries.conf",
            "/etc/crictl.yaml",
            "/etc/cni/net.d/11-crio-ipv4-bridge.conflist",
        ),
        scripts=systemd_scripts("crio.service"),
    )


def packages(release: ReleaseSet = DEFAULT) -> list[DebPackage]:
    """A release set's Kubernetes packages (1.29's by default), built from the Go
    builds (which are made first if missing)."""
    kubernetes = build(release.kubernetes)
    crictl = build(release.crictl)
    cni = build(release.cni_plugins)
    k8s_version = release.kubernetes_version.lstrip("v")
    # kubernetes/release metadata.yaml for the minor (1.28-1.29: kubernetes-cni >= 1.2.0)
    kubernetes_cni_dep = release.kubernetes_cni_dep
    return [
        DebPackage(
            name="kubeadm",
            upstream_version=k8s_version,
            section="admin",
            description="Command-line utility for administering a Kubernetes cluster\n"
            "kubeadm bootstraps a Kubernetes control plane and joins nodes to it.",
            files={
                **_binary(kubernetes, "kubeadm", "usr/bin/kubeadm"),
                f"{UNIT_DIR}/kubelet.service.d/10-kubeadm.conf": (None, 0o644, KUBEADM_DROPIN),
            },
            depends=("kubelet (>= 1.19.0)", "kubectl (>= 1.19.0)", kubernetes_cni_dep, release.cri_tools_dep),
            scripts={"postinst": DAEMON_RELOAD, "postrm": DAEMON_RELOAD},
        ),
        DebPackage(
            name="kubelet",
            upstream_version=k8s_version,
            section="net",
            description="Node agent for Kubernetes clusters\n"
            "The kubelet runs the pods a Kubernetes control plane assigns to its node.",
            files={
                **_binary(kubernetes, "kubelet", "usr/bin/kubelet"),
                f"{UNIT_DIR}/kubelet.service": (None, 0o644, KUBELET_SERVICE),
                "etc/default/kubelet": (None, 0o644, KUBELET_DEFAULTS),
                # dpkg-deb keeps no empty directories; upstream ships these markers too
                "var/lib/kubelet/.kubelet-keep": (None, 0o644, ""),
                "etc/kubernetes/manifests/.kubelet-keep": (None, 0o644, ""),
            },
            # kubeadm's preflight wants every one of these tools on a node
            depends=(
                "iptables (>= 1.4.21)",
                kubernetes_cni_dep,
                "iproute2",
                "socat",
                "util-linux",
                "mount",
                "ebtables",
                "ethtool",
                "conntrack",
            ),
            conffiles=("/etc/default/kubelet",),
            scripts=systemd_scripts("kubelet.service"),
        ),
        DebPackage(
            name="kubectl",
            upstream_version=k8s_version,
            section="admin",
            description="Command-line utility for interacting with a Kubernetes cluster\n"
            "kubectl runs commands against Kubernetes clusters.",
            files=_binary(kubernetes, "kubectl", "usr/bin/kubectl"),
        ),
        DebPackage(
            name="cri-tools",
            upstream_version=release.crictl.version.lstrip("v"),
            section="admin",
            description="Command-line utility for interacting with a container runtime\n"
            "crictl talks to any CRI-compatible container runtime.",
            files=_binary(crictl, "crictl", "usr/bin/crictl"),
        ),
        DebPackage(
            name="kubernetes-cni",
            upstream_version=release.cni_plugins.version.lstrip("v"),
            section="net",
            description="Binaries required to provision kubernetes container networking\n"
            "The reference CNI plugins (bridge, host-local, loopback, portmap, ...) in /opt/cni/bin.",
            files={f"opt/cni/bin/{name}": (cni / name, 0o755, None) for name in sorted(release.cni_plugins.binaries)},
        ),
    ]


def _make_deb(package: DebPackage, output: Path) -> None:
    staging = output.with_name(output.name + ".root")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        size = 0
        for target, (source, mode, text) in package.files.items():
            path = staging / target
            path.parent.mkdir(parents=True, exist_ok=True)
            if source is not None:
                shutil.copyfile(source, path)
            else:
                path.write_text(text or "")
            path.chmod(mode)
            size += path.stat().st_size
        debian = staging / "DEBIAN"
        debian.mkdir()
        (debian / "control").write_text(package.control((size + 1023) // 1024))
        if package.conffiles:
            (debian / "conffiles").write_text("\n".join(package.conffiles) + "\n")
        for script, text in package.scripts.items():
            (debian / script).write_text(text)
            (debian / script).chmod(0o755)
        for directory in [staging, *staging.rglob("*")]:
            if directory.is_dir():
                directory.chmod(0o755)
        partial = output.with_name(output.name + ".partial")
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", staging, partial], capture=True)
        partial.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        output.with_name(output.name + ".partial").unlink(missing_ok=True)


def build_debs(wanted: list[DebPackage]) -> list[Path]:
    """Build every package whose inputs changed; return all their .deb files."""
    DEBS_DIR.mkdir(parents=True, exist_ok=True)
    result = []
    for package in wanted:
        output = DEBS_DIR / package.filename
        stamp = output.with_name(output.name + ".inputs")
        digest = package.inputs_digest()
        if not (output.is_file() and stamp.is_file() and stamp.read_text() == digest):
            with step(f"dpkg-deb {package.filename}"):
                output.unlink(missing_ok=True)
                _make_deb(package, output)
                stamp.write_text(digest)
        result.append(output)
    return result
