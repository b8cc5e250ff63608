"""The offline mirror: pinned versions, packages like pkgs.k8s.io's, signed
repositories that apt accepts, and every kubeadm image in the registry.

The session fixture runs `make mirror`'s build (seconds when warm). Tests that
need the running lab (a node's apt, the services on the bridge) use the
session's lab (lab_cluster in tests/conftest.py).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.mirror import apt, builds, commands, images
from lab.mirror.gobuild import GO_CACHE
from lab.nodes.rootfs import debootstrap
from lab.nodes.ssh import ssh_argv
from lab.nodes.topology import Lab
from tests.conftest import LabCluster, free_port, http_on_loopback

pytestmark = pytest.mark.mirror

K8S = builds.KUBERNETES_VERSION
DEB_VERSION = K8S.lstrip("v") + "-1.1"


def run(argv: list[str | Path], check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def built_mirror() -> None:
    commands.build_mirror()
    assert commands.is_built()


def binary(spec: builds.GoBuild, name: str) -> Path:
    return GO_CACHE / f"{spec.name}-{spec.version}" / name


# --- the pinned builds report their versions -----------------------------------


def test_kubernetes_binaries_report_the_pinned_version(built_mirror: None) -> None:
    assert run([binary(builds.KUBERNETES, "kubeadm"), "version", "-o", "short"]).stdout.strip() == K8S
    assert run([binary(builds.KUBERNETES, "kubelet"), "--version"]).stdout.strip() == f"Kubernetes {K8S}"
    client = json.loads(run([binary(builds.KUBERNETES, "kubectl"), "version", "--client", "-o", "json"]).stdout)
    assert client["clientVersion"]["gitVersion"] == K8S
    assert client["clientVersion"]["gitTreeState"] == "clean"
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert run([binary(builds.KUBERNETES, component), "--version"]).stdout.strip() == f"Kubernetes {K8S}"


def test_runtime_tools_report_their_pinned_versions(built_mirror: None) -> None:
    crictl = run([binary(builds.CRICTL, "crictl"), "--version"]).stdout
    assert crictl.strip() == f"crictl version {builds.CRICTL_VERSION}"
    etcd = run([binary(builds.ETCD, "etcd"), "--version"]).stdout
    assert f"etcd Version: {builds.ETCD_VERSION.lstrip('v')}" in etcd
    coredns = run([binary(builds.COREDNS, "coredns"), "-version"]).stdout
    assert coredns.startswith(f"CoreDNS-{builds.COREDNS_VERSION.lstrip('v')}")
    for plugin in ("bridge", "host-local", "loopback", "portmap", "bandwidth", "firewall", "tuning"):
        out = run([binary(builds.CNI_PLUGINS, plugin)], check=False, env={"CNI_COMMAND": "VERSION"}).stdout
        assert json.loads(out)["cniVersion"] == "1.0.0", plugin
        version = run([binary(builds.CNI_PLUGINS, plugin), "--version"], check=False)
        assert f"plugin {builds.CNI_PLUGINS_VERSION}" in version.stdout + version.stderr, plugin


def test_crio_reports_the_pinned_version_and_build(built_mirror: None) -> None:
    version = run([binary(builds.CRIO, "crio"), "--version"]).stdout
    assert f"Version:        {builds.CRIO_VERSION.lstrip('v')}" in version
    assert f"BuildDate:      {builds.CRIO_BUILD_DATE}" in version
    assert "SeccompEnabled:   true" in version
    assert "gpgme" not in version  # the tags were given, not detected
    # pinns: static, as its Makefile builds it
    assert "statically linked" in run(["file", binary(builds.CRIO, "pinns")]).stdout


def test_kubeadm_pulls_exactly_the_images_the_registry_holds(built_mirror: None) -> None:
    listed = run(
        [
            binary(builds.KUBERNETES, "kubeadm"),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            K8S,
            "--image-repository",
            commands.REGISTRY,
        ]
    ).stdout.split()
    expected = [f"{commands.REGISTRY}/{image}" for image in images.expected_images()]
    not_kubeadms = (f"{commands.REGISTRY}/tiny-http-app:", f"{commands.REGISTRY}/calico/")
    assert sorted(listed) == sorted(image for image in expected if not image.startswith(not_kubeadms))


# --- packages like pkgs.k8s.io's ------------------------------------------------------


def deb(name: str) -> Path:
    """The package in the repository that serves it: pkgs.k8s.io's layout, or CRI-O's."""
    repositories = (apt.CORE_REPO, apt.APT_ROOT / apt.CRIO_REPO_PATH)
    matches = sorted(match for repo in repositories for match in (repo / "amd64").glob(f"{name}_*_amd64.deb"))
    assert len(matches) == 1, matches
    return matches[0]


def deb_field(name: str, field: str) -> str:
    return run(["dpkg-deb", "--field", deb(name), field]).stdout.strip()


def deb_files(name: str) -> set[str]:
    listing = run(["dpkg-deb", "--contents", deb(name)]).stdout.splitlines()
    return {line.split()[-1].removeprefix(".") for line in listing}


def test_packages_carry_upstream_names_versions_and_dependencies(built_mirror: None) -> None:
    for name in ("kubeadm", "kubelet", "kubectl"):
        assert deb_field(name, "Version") == DEB_VERSION
    assert deb_field("cri-tools", "Version") == builds.CRICTL_VERSION.lstrip("v") + "-1.1"
    assert deb_field("kubernetes-cni", "Version") == builds.CNI_PLUGINS_VERSION.lstrip("v") + "-1.1"
    kubelet_depends = {d.split()[0] for d in deb_field("kubelet", "Depends").split(", ")}
    assert kubelet_depends == {
        "iptables",
        "mount",
        "util-linux",
        "ethtool",
        "ebtables",
        "socat",
        "conntrack",
        "iproute2",
        "kubernetes-cni",
    }
    assert "cri-tools (>= 1.28.0)" in deb_field("kubeadm", "Depends")
    # CRI-O from its own repository, with Debian's conmon and runc
    assert deb_field("cri-o", "Version") == builds.CRIO_VERSION.lstrip("v") + "-1.1"
    assert deb_field("cri-o", "Depends").split(", ") == [
        "libc6 (>= 2.34)",
        "libseccomp2 (>= 2.5.0)",
        "conmon (>= 2.1.6)",
        "runc (>= 1.1.5)",
        "iptables",
        "kubernetes-cni | containernetworking-plugins",
    ]


def test_packages_install_the_units_and_binaries_where_upstream_does(built_mirror: None) -> None:
    assert {"/usr/bin/kubelet", "/usr/lib/systemd/system/kubelet.service", "/etc/default/kubelet"} <= deb_files(
        "kubelet"
    )
    assert {"/usr/bin/kubeadm", "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"} <= deb_files("kubeadm")
    assert "/usr/bin/crictl" in deb_files("cri-tools")
    assert {f"/opt/cni/bin/{p}" for p in ("bridge", "host-local", "loopback", "portmap")} <= deb_files("kubernetes-cni")
    assert {
        "/usr/bin/crio",
        "/usr/bin/pinns",
        "/usr/lib/systemd/system/crio.service",
        "/etc/crio/crio.conf",
        "/etc/crio/crio.conf.d/10-crio.conf",
        "/etc/containers/policy.json",
        "/etc/containers/registries.conf",
        "/etc/crictl.yaml",
        "/etc/cni/net.d/11-crio-ipv4-bridge.conflist",
    } <= deb_files("cri-o")
    with_scripts = Path(run(["mktemp", "-d"]).stdout.strip())
    try:
        run(["dpkg-deb", "--control", deb("kubelet"), with_scripts])
        assert (with_scripts / "conffiles").read_text().split() == ["/etc/default/kubelet"]
        assert "deb-systemd-helper enable kubelet.service" in (with_scripts / "postinst").read_text()
        run(["sh", "-n", with_scripts / "postinst"])
    finally:
        shutil.rmtree(with_scripts)


# --- signed repositories ------------------------------------------------------------------


@pytest.mark.parametrize(
    "release_dir",
    [
        apt.CORE_REPO,
        apt.APT_ROOT / apt.CRIO_REPO_PATH,
        apt.DEBIAN_REPO / "dists" / apt.DEBIAN_SUITE,
    ],
    ids=["core", "cri-o", "debian"],
)
def test_release_files_verify_against_the_published_key(built_mirror: None, release_dir: Path, tmp_path: Path) -> None:
    # The keyring is made from the Release.key published next to the core repo, as a user would.
    keyring = tmp_path / "key.gpg"
    run(["gpg", "--batch", "--yes", "--dearmor", "--output", keyring, apt.CORE_REPO / "Release.key"])
    run(["gpgv", "--keyring", keyring, release_dir / "InRelease"])
    run(["gpgv", "--keyring", keyring, release_dir / "Release.gpg", release_dir / "Release"])
    tampered = tmp_path / "InRelease"
    signed = (release_dir / "InRelease").read_text()
    tampered.write_text(signed.replace("Origin: kubeadm-lab", "Origin: kubeadm-lax", 1))
    assert run(["gpgv", "--keyring", keyring, tampered], check=False).returncode != 0


@pytest.fixture(scope="session")
def apt_on_loopback(built_mirror: None) -> Iterator[str]:
    """The apt tree served over HTTP on loopback, as the bridge service serves it."""
    with http_on_loopback(apt.APT_ROOT) as url:
        yield url


def test_apt_installs_kubeadm_and_containerd_from_the_mirror_alone(apt_on_loopback: str, tmp_path: Path) -> None:
    """apt, signature checking on, resolves everything against a bare minbase system."""
    root = debootstrap("apt-resolver", apt.RESOLVER_ROOT_PACKAGES)
    for directory in ("parts", "prefs", "lists/partial", "archives/partial"):
        (tmp_path / directory).mkdir(parents=True)
    keyring = commands.public_key_path()
    (tmp_path / "sources.list").write_text(
        f"deb [signed-by={keyring}] {apt_on_loopback}/debian bookworm main\n"
        f"deb [signed-by={keyring}] {apt_on_loopback}/{apt.CORE_REPO_PATH}/ /\n"
    )
    shutil.copyfile(root / "var/lib/dpkg/status", tmp_path / "status")
    options = [
        f"-oDir::Etc::SourceList={tmp_path / 'sources.list'}",
        f"-oDir::Etc::SourceParts={tmp_path / 'parts'}",
        f"-oDir::Etc::PreferencesParts={tmp_path / 'prefs'}",
        f"-oDir::State::Lists={tmp_path / 'lists'}",
        f"-oDir::State::status={tmp_path / 'status'}",
        f"-oDir::Cache::Archives={tmp_path / 'archives'}",
        f"-oDir::Cache={tmp_path}",
        "-oDebug::NoLocking=true",
        "-oAPT::Sandbox::User=root",
    ]
    update = run(["apt-get", *options, "update"], check=False)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "W:" not in update.stderr, update.stderr
    wanted = [f"kubeadm={DEB_VERSION}", f"kubelet={DEB_VERSION}", f"kubectl={DEB_VERSION}", "containerd"]
    install = run(["apt-get", *options, "-y", "install", "--download-only", *wanted], check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    fetched = {p.name.split("_")[0] for p in (tmp_path / "archives").glob("*.deb")}
    needed = {"kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni", "containerd", "runc", "conntrack"}
    assert needed <= fetched


def test_the_packages_install_and_enable_the_kubelet_and_crio_in_a_bookworm_root(
    apt_on_loopback: str, tmp_path: Path
) -> None:
    """A real install (dpkg runs the maintainer scripts) into a copy of a minbase root."""
    root = tmp_path / "root"
    run(["cp", "-a", "--reflink=auto", debootstrap("apt-resolver", apt.RESOLVER_ROOT_PACKAGES), root])
    try:
        (root / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(commands.public_key_path(), root / "etc/apt/keyrings/lab-mirror.gpg")
        signed_by = "[signed-by=/etc/apt/keyrings/lab-mirror.gpg]"
        (root / "etc/apt/sources.list").write_text(
            f"deb {signed_by} {apt_on_loopback}/debian bookworm main\n"
            f"deb {signed_by} {apt_on_loopback}/{apt.CORE_REPO_PATH}/ /\n"
            f"deb {signed_by} {apt_on_loopback}/{apt.CRIO_REPO_PATH}/ /\n"
        )
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
        update = run(["chroot", root, "apt-get", "-q", "update"], check=False, env=env)
        assert update.returncode == 0 and "W:" not in update.stderr, update.stdout + update.stderr
        packages = [f"kubeadm={DEB_VERSION}", f"kubelet={DEB_VERSION}", f"kubectl={DEB_VERSION}", "containerd", "cri-o"]
        install = run(["chroot", root, "apt-get", "-q", "-y", "install", *packages], check=False, env=env)
        assert install.returncode == 0, install.stdout + install.stderr
        assert run(["chroot", root, "kubeadm", "version", "-o", "short"], env=env).stdout.strip() == K8S
        assert run(["chroot", root, "crictl", "--version"], env=env).stdout.strip().endswith(builds.CRICTL_VERSION)
        assert (root / "opt/cni/bin/bridge").is_file()
        assert (root / "etc/systemd/system/multi-user.target.wants/kubelet.service").is_symlink()
        dropin = (root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
        assert "EnvironmentFile=-/etc/default/kubelet" in dropin
        assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin
        # run as installed (crio reads /proc/self/cmdline, which a bare chroot lacks)
        crio = run([root / "usr/bin/crio", "--version"], env=env).stdout
        assert f"Version:        {builds.CRIO_VERSION.lstrip('v')}" in crio
        assert (root / "etc/systemd/system/multi-user.target.wants/crio.service").is_symlink()
        assert "ExecStart=/usr/bin/crio" in (root / "usr/lib/systemd/system/crio.service").read_text()
        # the package's runtime drop-in names Debian's runc and conmon, which apt installed
        assert (root / "usr/sbin/runc").is_file() and (root / "usr/bin/conmon").is_file()
        assert 'runtime_path = "/usr/sbin/runc"' in (root / "etc/crio/crio.conf.d/10-crio.conf").read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- images in the registry -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def loopback_registry(built_mirror: None) -> Iterator[str]:
    with images.push_registry() as address:
        yield address


@pytest.mark.parametrize("image", images.expected_images())
def test_registry_serves_every_image(loopback_registry: str, image: str, tmp_path: Path) -> None:
    inspect = run(["skopeo", "inspect", "--tls-verify=false", f"docker://{loopback_registry}/{image}"])
    assert json.loads(inspect.stdout)["Architecture"] == "amd64"
    source = f"docker://{loopback_registry}/{image}"
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", source, f"oci:{tmp_path}/copy"])


PODMAN_RUN = ["podman", "run", "--rm", "--tls-verify=false", *images.PODMAN_RUN_FLAGS]


@pytest.mark.parametrize(
    ("image", "command", "expected"),
    [
        (f"kube-proxy:{K8S}", ["/usr/local/bin/kube-proxy", "--version"], f"Kubernetes {K8S}"),
        (f"kube-proxy:{K8S}", ["iptables-save", "--version"], "iptables-save v1.8"),
        (f"kube-proxy:{K8S}", ["iptables-restore", "--version"], "iptables-restore v1.8"),
        (f"kube-proxy:{K8S}", ["conntrack", "--version"], "conntrack v1."),
        (f"kube-apiserver:{K8S}", ["kube-apiserver", "--version"], f"Kubernetes {K8S}"),
        (f"etcd:{builds.ETCD_IMAGE_TAG}", ["etcd", "--version"], f"etcd Version: {builds.ETCD_VERSION.lstrip('v')}"),
        (f"coredns:{builds.COREDNS_VERSION}", ["-version"], f"CoreDNS-{builds.COREDNS_VERSION.lstrip('v')}"),
        (f"pause:{images.PAUSE_VERSION}", ["-v"], f"pause.c v{images.PAUSE_VERSION}"),
    ],
)
def test_images_run_what_kubeadm_runs(loopback_registry: str, image: str, command: list[str], expected: str) -> None:
    # coredns and pause run their entrypoint (/coredns, /pause) with these arguments
    entrypoint_only = image.startswith(("coredns:", "pause:"))
    argv = [*PODMAN_RUN, f"{loopback_registry}/{image}", *command]
    if not entrypoint_only:
        argv = [*PODMAN_RUN, "--entrypoint", command[0], f"{loopback_registry}/{image}", *command[1:]]
    result = run(argv, check=False)
    # the loopback port changes every session: do not pile up tags in podman's store
    run(["podman", "image", "rm", f"{loopback_registry}/{image}"], check=False)
    assert expected in result.stdout + result.stderr, result.stdout + result.stderr


def test_services_start_once_serve_and_stop(
    built_mirror: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """start_services/stop_services as lab.nodes.commands calls them, on loopback ports and a scratch run dir."""
    apt_port, registry = free_port(), f"127.0.0.1:{free_port()}"
    monkeypatch.setattr(commands, "BRIDGE_ADDRESS", "127.0.0.1")
    monkeypatch.setattr(commands, "APT_PORT", apt_port)
    monkeypatch.setattr(commands, "APT_URL", f"http://127.0.0.1:{apt_port}")
    monkeypatch.setattr(commands, "REGISTRY", registry)
    monkeypatch.setattr(commands, "RUN_DIR", tmp_path)
    try:
        commands.start_services()
        pids = {name: (tmp_path / f"{name}.pid").read_text() for name in ("apt", "registry")}
        commands.start_services()  # idempotent: the same daemons keep running
        assert {name: (tmp_path / f"{name}.pid").read_text() for name in pids} == pids
        assert commands.services_running()
        release = urllib.request.urlopen(f"http://127.0.0.1:{apt_port}/{apt.CORE_REPO_PATH}/Release.key")
        assert release.read() == apt.ARMORED_KEY.read_bytes()
        run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/pause:{images.PAUSE_VERSION}"])
    finally:
        commands.stop_services()
    assert not commands.services_running()
    for url in (f"http://127.0.0.1:{apt_port}/", f"http://{registry}/v2/"):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
    commands.stop_services()  # idempotent


# --- on the running lab -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def running_lab(built_mirror: None, lab_cluster: LabCluster) -> None:
    if not commands.services_running():
        commands.start_services()


def on_master(script: str) -> subprocess.CompletedProcess[str]:
    master = Lab.from_env().nodes(1)[0]  # the lab's SSH user, key and known hosts
    return run(ssh_argv(master, f"sh -c {shlex.quote(script)}"), check=False, timeout=600)


def test_a_lab_node_installs_kubeadm_from_the_signed_mirror(running_lab: None) -> None:
    """apt on a node, signature checking on, against both repositories on the bridge.

    apt works in a scratch directory: the node's own package state is left alone.
    """
    scratch = "/tmp/mirror-test"
    sources = (
        f"deb [signed-by=/etc/apt/keyrings/lab-mirror.gpg] {commands.APT_URL}/debian bookworm main\n"
        f"deb [signed-by=/etc/apt/keyrings/lab-mirror.gpg] {commands.APT_URL}/{apt.CORE_REPO_PATH}/ /\n"
    )
    options = (
        f"-oDir::Etc::SourceList={scratch}/sources.list -oDir::Etc::SourceParts={scratch}/parts"
        f" -oDir::State::Lists={scratch}/lists -oDir::Cache::Archives={scratch}/archives"
    )
    script = (
        f"set -e; sudo rm -rf {scratch}; mkdir -p {scratch}/parts {scratch}/lists/partial {scratch}/archives/partial;"
        f" printf '%s' '{sources}' > {scratch}/sources.list;"
        f" sudo apt-get {options} update;"
        f" sudo apt-get {options} -y install --download-only --reinstall kubeadm={DEB_VERSION} kubelet={DEB_VERSION}"
        f" kubectl={DEB_VERSION} containerd;"
        f" ls {scratch}/archives; sudo rm -rf {scratch}"
    )
    result = on_master(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "W:" not in result.stderr, result.stderr
    assert f"kubeadm_{DEB_VERSION}_amd64.deb" in result.stdout
    assert "containerd_" in result.stdout


def test_the_bridge_registry_serves_every_kubeadm_image(running_lab: None) -> None:
    for image in images.expected_images():
        run(["skopeo", "inspect", "--tls-verify=false", f"docker://{commands.REGISTRY}/{image}"])
