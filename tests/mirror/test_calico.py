"""Calico in the offline mirror: binaries, images and manifests as the master role uses them.

The session fixture builds only Calico's parts of the mirror (seconds when
warm): the binaries from the release tarball, the three images pushed into
the registry storage, the manifests in the served tree. No lab node runs here:
each image is run with podman to check that what the manifest runs is there
and works.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

from lab.mirror import builds, calico, commands, images
from lab.mirror.distfiles import CALICO_SOURCE, unpacked
from lab.mirror.gobuild import build
from lab.paths import REPO
from lab.run import exclusive
from tests.conftest import http_on_loopback

pytestmark = pytest.mark.mirror

VERSION = builds.CALICO_VERSION
UPSTREAM_MANIFEST_URL = f"https://raw.githubusercontent.com/projectcalico/calico/{VERSION}/manifests/calico-vxlan.yaml"
PODMAN_RUN = ["podman", "run", "--rm", "--tls-verify=false", *images.PODMAN_RUN_FLAGS]


def run(argv: list[str | Path], check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def calico_mirror() -> None:
    """Calico's part of `make mirror`, under the same lock (the cache is shared with other checkouts)."""
    with exclusive(commands.MIRROR_DIR / ".lock", "mirror build"):
        calico.serve_manifests()
        images.push_images(calico.image_specs())


@pytest.fixture(scope="session")
def calico_registry(calico_mirror: None) -> Iterator[str]:
    """The registry storage served on loopback; the images pulled from it are removed at the end."""
    with images.push_registry() as address:
        yield address
        for name in calico.IMAGE_NAMES:
            # the port changes every session: do not pile up tags in podman's store
            run(["podman", "image", "rm", f"{address}/calico/{name}:{VERSION}"], check=False)


def image(registry: str, name: str) -> str:
    return f"{registry}/{calico.image_reference(name)}"


def upstream_manifest(name: str = "calico-vxlan.yaml") -> list[dict]:
    return [doc for doc in yaml.safe_load_all(calico.manifest_path(name).read_text()) if doc]


def manifest_containers() -> list[dict]:
    containers = []
    for doc in upstream_manifest():
        if doc["kind"] in {"DaemonSet", "Deployment"}:
            spec = doc["spec"]["template"]["spec"]
            containers += spec.get("initContainers", []) + spec["containers"]
    return containers


# --- binaries -----------------------------------------------------------------------------------------


def test_calico_binaries_report_the_pinned_version(calico_mirror: None) -> None:
    binaries = build(builds.CALICO)
    assert run([binaries / "calico-node", "-v"]).stdout.strip() == VERSION
    assert run([binaries / "kube-controllers", "-version"]).stdout.strip() == VERSION
    assert run([binaries / "check-status", "-v"]).stdout.strip() == VERSION
    assert run([binaries / "calico", "-v"]).stdout.strip() == VERSION
    # one binary, two plugins: calico-ipam is picked by the file name
    ipam = Path(run(["mktemp", "-d"]).stdout.strip()) / "calico-ipam"
    try:
        shutil.copy2(binaries / "calico", ipam)
        assert run([ipam, "-v"]).stdout.strip() == VERSION
    finally:
        shutil.rmtree(ipam.parent)


# --- the images under the names the master role's kustomization sets ---------------------------------


def test_the_manifest_names_exactly_the_calico_images_the_mirror_builds(calico_mirror: None) -> None:
    names = {container["image"] for container in manifest_containers()}
    assert names == {f"docker.io/{reference}" for reference in calico.expected_images()}


def test_the_kustomization_points_every_calico_image_at_the_registry(calico_mirror: None) -> None:
    """The master role's template, rendered as Ansible renders it, applied to the manifest's image names."""
    registry = "10.77.0.1:5000"
    template = (REPO / "roles/master/templates/calico-kustomization.yaml.j2").read_text()
    rendered = (
        jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
        .from_string(template)
        .render(
            cluster_image_registry=registry,
            cluster_pod_cidr="10.244.0.0/16",
            cluster_calico_encapsulation="vxlan",
            master_calico_version=VERSION,
        )
    )
    renames = {entry["name"]: entry["newName"] for entry in yaml.safe_load(rendered)["images"]}
    pulled = set()
    for container in manifest_containers():
        name, tag = container["image"].rsplit(":", 1)
        pulled.add(f"{renames[name]}:{tag}")
    assert pulled == {f"{registry}/{reference}" for reference in calico.expected_images()}


@pytest.mark.parametrize("name", calico.IMAGE_NAMES)
def test_calico_image_is_fetched_from_the_registry(calico_registry: str, name: str, tmp_path: Path) -> None:
    assert images.is_in_registry(f"calico/{name}", VERSION)
    source = f"docker://{image(calico_registry, name)}"
    inspect = json.loads(run(["skopeo", "inspect", "--tls-verify=false", source]).stdout)
    assert inspect["Architecture"] == "amd64"
    assert inspect["Labels"]["version"] == VERSION
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", source, f"oci:{tmp_path}/copy"])


# --- calico/node -----------------------------------------------------------------------------------------


def in_node(registry: str, *argv: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return run([*PODMAN_RUN, *extra, "--entrypoint", argv[0], image(registry, "node"), *argv[1:]], check=False)


def test_node_image_runs_calico_node_where_the_probes_call_it(calico_registry: str) -> None:
    probes = next(c for c in manifest_containers() if c["name"] == "calico-node")
    assert probes["livenessProbe"]["exec"]["command"][0] == "/bin/calico-node"
    version = in_node(calico_registry, "/bin/calico-node", "-v")
    assert version.stdout.strip() == VERSION, version.stdout + version.stderr
    # the init container calls it by name (mount-bpffs), and calico-node -init calls mountns by name
    found = in_node(calico_registry, "sh", "-c", "for c in calico-node mountns; do command -v $c; done")
    assert found.stdout.split() == ["/usr/bin/calico-node", "/usr/bin/mountns"]
    # mountns is the one cgo binary: the image's glibc must satisfy it
    libraries = in_node(calico_registry, "ldd", "/usr/bin/mountns")
    assert libraries.returncode == 0 and "libc.so.6" in libraries.stdout, libraries.stdout + libraries.stderr
    assert "not found" not in libraries.stdout


def test_node_image_felix_reports_the_build_info(calico_registry: str) -> None:
    """Felix logs upstream's buildinfo (version, build date, commit) first thing when it starts."""
    # Felix's early logging is quieter than info unless told; no datastore: it stops there
    info = ("--env", "FELIX_LOGSEVERITYSCREEN=info")
    felix = in_node(calico_registry, "timeout", "5", "calico-node", "-felix", extra=info)
    log = felix.stdout + felix.stderr
    assert "Felix starting up" in log, log
    assert f"version={VERSION}" in log or f'version="{VERSION}"' in log, log
    assert CALICO_SOURCE.commit in log, log
    assert builds.CALICO_BUILD_DATE in log, log


def test_node_image_starts_its_services_with_runit_as_upstream(calico_registry: str) -> None:
    result = in_node(
        calico_registry,
        "sh",
        "-c",
        "command -v start_runit runsvdir sv svlogd && test -x /etc/rc.local"
        " && ls /etc/service/available && echo SVDIR=$SVDIR",
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "/usr/sbin/start_runit" in out
    assert {"felix", "monitor-addresses", "allocate-tunnel-addrs", "node-status-reporter", "cni"} <= set(out.split())
    assert "SVDIR=/etc/service/enabled" in out
    config = json.loads(run(["podman", "image", "inspect", image(calico_registry, "node")]).stdout)[0]["Config"]
    assert config["Cmd"] == ["start_runit"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # Felix detects the node's backend and runs these by name
        ("iptables-legacy-save --version", "(legacy)"),
        ("iptables-nft-save --version", "(nf_tables)"),
        ("iptables-legacy-restore --version", "(legacy)"),
        ("iptables-nft-restore --version", "(nf_tables)"),
        ("ip6tables-legacy-save --version", "(legacy)"),
        ("ip6tables-nft-save --version", "(nf_tables)"),
        # upstream's alternatives point the plain names at legacy
        ("iptables --version", "(legacy)"),
        ("ip6tables --version", "(legacy)"),
        ("ipset --version", "ipset v7"),
        ("ip -V", "iproute2"),
        ("conntrack --version", "conntrack v1"),
        ("modprobe --version", "kmod version"),
        ("ps --version", "procps-ng"),
    ],
)
def test_node_image_has_the_dataplane_tools(calico_registry: str, command: str, expected: str) -> None:
    result = in_node(calico_registry, *command.split())
    assert expected in result.stdout + result.stderr, result.stdout + result.stderr


def test_node_image_reads_a_containers_iptables_with_either_backend(calico_registry: str) -> None:
    """What Felix's backend detection runs, for real, in a network namespace of its own."""
    for save in ("iptables-nft-save", "iptables-legacy-save"):
        result = in_node(calico_registry, save, "-t", "mangle", extra=("--cap-add", "NET_ADMIN,NET_RAW"))
        assert result.returncode == 0, f"{save}: {result.stderr}"
        assert "*mangle" in result.stdout, f"{save}: {result.stdout}"


# --- calico/cni ---------------------------------------------------------------------------------------------


def cni_network_config() -> str:
    config_map = next(doc for doc in upstream_manifest() if doc["kind"] == "ConfigMap")
    return config_map["data"]["cni_network_config"]


@pytest.mark.parametrize("plugin", ["calico", "calico-ipam"])
def test_cni_image_calico_plugins_report_the_pinned_version(calico_registry: str, plugin: str) -> None:
    argv = [*PODMAN_RUN, "--entrypoint", f"/opt/cni/bin/{plugin}", image(calico_registry, "cni"), "-v"]
    assert run(argv).stdout.strip() == VERSION


@pytest.mark.parametrize("plugin", calico.CNI_STANDARD_PLUGINS)
def test_cni_image_standard_plugins_are_the_pinned_build(calico_registry: str, plugin: str) -> None:
    argv = [*PODMAN_RUN, "--env", "CNI_COMMAND=VERSION", "--entrypoint", f"/opt/cni/bin/{plugin}"]
    result = run([*argv, image(calico_registry, "cni")], check=False)
    assert "1.0.0" in json.loads(result.stdout)["supportedVersions"], result.stdout + result.stderr
    version = run([*PODMAN_RUN, "--entrypoint", f"/opt/cni/bin/{plugin}", image(calico_registry, "cni"), "--version"])
    assert f"plugin {builds.CNI_PLUGINS_VERSION}" in version.stdout + version.stderr


def test_cni_image_install_entrypoint_installs_the_plugins_and_the_config(calico_registry: str, tmp_path: Path) -> None:
    """The install-cni init container as the manifest runs it, against a node's /opt/cni/bin and /etc/cni/net.d."""
    install = next(c for c in manifest_containers() if c["name"] == "install-cni")
    host_bin, host_net = tmp_path / "bin", tmp_path / "net.d"
    host_bin.mkdir()
    host_net.mkdir()
    env = {
        "CNI_CONF_NAME": "10-calico.conflist",
        "CNI_NETWORK_CONFIG": cni_network_config(),
        "KUBERNETES_NODE_NAME": "lab-worker-1",
        "CNI_MTU": "1450",
        "SLEEP": "false",
    }
    assert {e["name"] for e in install["env"]} == set(env)
    argv = [*PODMAN_RUN, "-v", f"{host_bin}:/host/opt/cni/bin", "-v", f"{host_net}:/host/etc/cni/net.d"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    # no command: the image's own entrypoint must be what the manifest's command names
    result = run([*argv, image(calico_registry, "cni")], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert install["command"] == ["/opt/cni/bin/install"]
    installed = {p.name for p in host_bin.iterdir()}
    assert {"calico", "calico-ipam", *calico.CNI_STANDARD_PLUGINS} == installed
    conflist = json.loads((host_net / "10-calico.conflist").read_text())
    plugin = conflist["plugins"][0]
    assert (plugin["type"], plugin["nodename"], plugin["mtu"]) == ("calico", "lab-worker-1", 1450)
    # every plugin the config names is on the node now
    needed = {each["type"] for each in conflist["plugins"]} | {plugin["ipam"]["type"]}
    assert needed <= installed
    assert run([host_bin / "calico", "-v"]).stdout.strip() == VERSION


# --- calico/kube-controllers -----------------------------------------------------------------------------------


def exported_files(reference: str) -> dict[str, tarfile.TarInfo]:
    container = run(["podman", "create", reference]).stdout.strip()
    try:
        export = subprocess.run(["podman", "export", container], capture_output=True, check=True)
    finally:
        run(["podman", "rm", container], check=False)
    with tarfile.open(fileobj=io.BytesIO(export.stdout)) as archive:
        return {member.name.strip("/").removeprefix("./"): member for member in archive.getmembers()}


def test_kube_controllers_image_runs_as_999_which_owns_status_and_profiles(calico_registry: str) -> None:
    reference = image(calico_registry, "kube-controllers")
    run(["podman", "pull", "--quiet", "--tls-verify=false", reference])
    config = json.loads(run(["podman", "image", "inspect", reference]).stdout)[0]["Config"]
    assert config["User"] == str(calico.KUBE_CONTROLLERS_UID)
    assert config["Entrypoint"] == ["/usr/bin/kube-controllers"]
    files = exported_files(reference)
    for path in ("status", "status/status.json", "profiles", "profiles/mem.pprof", "profiles/cpu.pprof"):
        assert files[path].uid == calico.KUBE_CONTROLLERS_UID, path
        assert files[path].mode & 0o200, path  # the owner may write
    assert files["usr/bin/check-status"].mode & 0o111


def test_kube_controllers_writes_status_that_check_status_reads(calico_registry: str, tmp_path: Path) -> None:
    """As the manifest's probes run it: the controllers, as uid 999, write /status; check-status reads it."""
    probes = next(c for c in manifest_containers() if c["name"] == "calico-kube-controllers")
    assert probes["readinessProbe"]["exec"]["command"] == ["/usr/bin/check-status", "-r"]
    assert probes["livenessProbe"]["exec"]["command"] == ["/usr/bin/check-status", "-l"]
    # an API server that never answers: the controllers start and report themselves not ready
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    kubeconfig.chmod(0o644)
    name = f"calico-kube-controllers-test-{os.getpid()}"
    argv = ["podman", "run", "-d", "--name", name, "--tls-verify=false", *images.PODMAN_RUN_FLAGS]
    argv += ["-v", f"{kubeconfig}:/kubeconfig:ro", "--env", "KUBECONFIG=/kubeconfig"]
    argv += ["--env", "DATASTORE_TYPE=kubernetes", "--env", "ENABLED_CONTROLLERS=node"]
    run([*argv, image(calico_registry, "kube-controllers")])
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = run(["podman", "exec", name, "/usr/bin/check-status", "-r"], check=False)
            if "Failed to read status file" not in ready.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        logs = run(["podman", "logs", name], check=False)
        assert ready.returncode == 1, ready.stdout + logs.stdout + logs.stderr
        # the condition the controllers wrote while failing to reach the datastore
        assert "Error initializing datastore" in ready.stdout, ready.stdout + logs.stdout + logs.stderr
        live = run(["podman", "exec", name, "/usr/bin/check-status", "-l"], check=False)
        assert live.returncode == 1 and "Error initializing datastore" in live.stdout, live.stdout
        assert run(["podman", "exec", name, "/usr/bin/check-status", "-v"]).stdout.strip() == VERSION
    finally:
        run(["podman", "rm", "-f", name], check=False)


# --- the manifests where upstream serves them ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(calico.MANIFEST_SHA256))
def test_served_manifest_is_upstreams_byte_for_byte(calico_mirror: None, name: str) -> None:
    with http_on_loopback(calico.APT_ROOT) as url:
        path = UPSTREAM_MANIFEST_URL.removeprefix("https://raw.githubusercontent.com/").replace(
            "calico-vxlan.yaml", name
        )
        with urllib.request.urlopen(f"{url}/{path}") as response:
            served = response.read()
    assert hashlib.sha256(served).hexdigest() == calico.MANIFEST_SHA256[name]
    assert served == (unpacked(CALICO_SOURCE) / "manifests" / name).read_bytes()


def test_the_vxlan_manifest_runs_vxlan_without_bird(calico_mirror: None) -> None:
    """What the lab's kernel allows (VXLAN built in, no IPIP): backend vxlan, IPIP off, no BIRD probes."""
    config_map = next(doc for doc in upstream_manifest() if doc["kind"] == "ConfigMap")
    assert config_map["data"]["calico_backend"] == "vxlan"
    node = next(c for c in manifest_containers() if c["name"] == "calico-node")
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["CALICO_IPV4POOL_IPIP"] == "Never"
    assert env["CALICO_IPV4POOL_VXLAN"] == "CrossSubnet"
    probes = json.dumps([node["livenessProbe"], node["readinessProbe"]])
    assert "bird" not in probes
