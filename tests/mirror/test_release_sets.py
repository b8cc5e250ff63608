"""The mirror's release sets as data (lab.mirror.builds.ReleaseSet): 1.29's is the
default and keyed exactly as before, so a warm cache rebuilds nothing; 1.30's
holds what kubeadm 1.30.14 pulls and installs, at pkgs.k8s.io's paths, and
`make mirror` never builds it. No lab, no build."""

from __future__ import annotations

import hashlib
import tarfile

import pytest

from lab.mirror import apt, builds, calico, distfiles, images

pytestmark = pytest.mark.mirror

DEFAULT = builds.DEFAULT
R130 = builds.RELEASE_1_30

# sha256 of the default set's Go build stamps, joined by newlines: the keys of
# the Go builds in every warm cache. A change here rebuilds Kubernetes, CRI-O
# and Calico for everyone.
DEFAULT_GO_STAMPS_SHA256 = "a97edf2b9106a717e247e8c6ac36fbb827ab1d572a983507166267de1ab9bfeb"

# `kubeadm config images list --kubernetes-version v1.30.14` (its constants:
# etcd 3.5.15-0, CoreDNS v1.11.3, pause 3.9), without the registry
KUBEADM_1_30_14_IMAGES = [
    "kube-apiserver:v1.30.14",
    "kube-controller-manager:v1.30.14",
    "kube-scheduler:v1.30.14",
    "kube-proxy:v1.30.14",
    "coredns:v1.11.3",
    "pause:3.9",
    "etcd:3.5.15-0",
]


def test_the_default_set_is_what_make_mirror_builds():
    assert builds.RELEASES["1.29"] is DEFAULT
    assert DEFAULT.go_builds == builds.MIRROR_BUILDS
    assert DEFAULT.kubernetes is builds.KUBERNETES
    assert DEFAULT.kubernetes_version == builds.KUBERNETES_VERSION == "v1.29.15"
    assert DEFAULT.crio_version == builds.CRIO_VERSION
    assert DEFAULT.calico_version == builds.CALICO_VERSION == calico.VERSION
    assert DEFAULT.etcd_image_tag == builds.ETCD_IMAGE_TAG
    assert DEFAULT.pause_version == images.PAUSE_VERSION


def test_the_default_go_build_keys_are_unchanged():
    stamps = "\n".join(spec.stamp() for spec in builds.MIRROR_BUILDS)
    assert hashlib.sha256(stamps.encode()).hexdigest() == DEFAULT_GO_STAMPS_SHA256


def test_the_default_paths_and_images_are_unchanged():
    assert apt.CORE_REPO_PATH == DEFAULT.core_repo_path == "core:/stable:/v1.29/deb"
    assert apt.CRIO_REPO_PATH == DEFAULT.crio_repo_path == "repositories/isv:/cri-o:/stable:/v1.29/deb"
    assert calico.MANIFESTS_PATH == "projectcalico/calico/v3.26.5/manifests"
    assert DEFAULT.calico_manifest_sha256 == calico.MANIFEST_SHA256
    assert images.expected_images()[:7] == [
        "kube-apiserver:v1.29.15",
        "kube-controller-manager:v1.29.15",
        "kube-scheduler:v1.29.15",
        "kube-proxy:v1.29.15",
        "coredns:v1.11.1",
        "pause:3.9",
        "etcd:3.5.16-0",
    ]


def test_make_mirror_builds_nothing_of_1_30():
    default_outdirs = {spec.outdir for spec in builds.MIRROR_BUILDS}
    only_1_30 = [spec for spec in R130.go_builds if spec not in builds.MIRROR_BUILDS]
    assert {spec.name for spec in only_1_30} == {
        "kubernetes",
        "etcd",
        "coredns",
        "cri-o",
        "calico",
        "calico-mountns",
    }
    assert not default_outdirs & {spec.outdir for spec in only_1_30}
    assert not set(images.expected_images()) & (set(images.release_images(R130)) - {"pause:3.9"})


def test_1_30_holds_what_kubeadm_1_30_14_pulls():
    assert R130.kubeadm_images() == KUBEADM_1_30_14_IMAGES
    assert R130.calico_images() == [
        "calico/node:v3.28.5",
        "calico/cni:v3.28.5",
        "calico/kube-controllers:v3.28.5",
    ]
    assert R130.etcd.version == "v3.5.15"
    assert R130.coredns.version == "v1.11.3"


def test_1_30_is_served_at_upstreams_paths():
    assert R130.core_repo_path == "core:/stable:/v1.30/deb"
    assert R130.crio_repo_path == "repositories/isv:/cri-o:/stable:/v1.30/deb"
    assert R130.calico_manifests_path == "projectcalico/calico/v3.28.5/manifests"


@pytest.mark.parametrize("release", builds.RELEASES.values(), ids=lambda release: release.name)
def test_each_set_is_one_minor(release):
    assert release.kubernetes_minor == f"v{release.name}"
    assert release.crio_minor == release.kubernetes_minor
    assert all(spec.version.startswith("v") for spec in release.go_builds)


def test_1_30_kubernetes_is_built_like_1_29():
    spec = R130.kubernetes
    assert spec.version == "v1.30.14"
    assert spec.binaries == builds.KUBERNETES.binaries
    assert spec.tags == builds.KUBERNETES.tags
    for value in ("gitVersion=v1.30.14", "gitMinor=30", f"gitCommit={R130.kubernetes_commit}", "gitTreeState=clean"):
        assert f"k8s.io/component-base/version.{value}" in spec.ldflags
        assert f"k8s.io/client-go/pkg/version.{value}" in spec.ldflags
    assert len(R130.kubernetes_commit) == 40
    # every staging module at the tag, but sample-apiserver: the proxy refuses v0.30.9 and later
    assert set(spec.replace) == {f"k8s.io/{name}" for name in builds.KUBERNETES_STAGING}
    others = {module: version for module, version in spec.replace.items() if module != "k8s.io/sample-apiserver"}
    assert set(others.values()) == {"v0.30.14"}
    assert spec.replace["k8s.io/sample-apiserver"] == "v0.30.8"


def test_1_30_runtime_and_network_come_from_their_pinned_tarballs():
    assert R130.crio.source == distfiles.CRIO_1_30_SOURCE
    assert R130.crio.version == "v1.30.14"
    assert (R130.crio.tags, R130.crio.mod, R130.crio.cgo) == (builds.CRIO.tags, "vendor", True)
    assert R130.calico.source == R130.calico_mountns.source == distfiles.CALICO_3_28_SOURCE
    assert R130.calico.version == "v3.28.5"
    assert distfiles.CALICO_3_28_SOURCE.commit in R130.calico.ldflags
    for source in (distfiles.CRIO_1_30_SOURCE, distfiles.CALICO_3_28_SOURCE):
        assert distfiles.verified(source) == source.path


def test_the_1_30_manifest_pins_are_the_tarballs_files():
    source = distfiles.CALICO_3_28_SOURCE
    with tarfile.open(distfiles.verified(source)) as archive:
        for name, sha256 in R130.calico_manifest_sha256.items():
            member = archive.extractfile(f"{source.top}/manifests/{name}")
            assert member is not None
            assert hashlib.sha256(member.read()).hexdigest() == sha256


def test_1_30_packages_depend_as_upstreams_1_30_packages():
    assert R130.kubernetes_cni_dep == "kubernetes-cni (>= 1.4.0)"
    assert R130.cri_tools_dep == "cri-tools (>= 1.30.0)"
    # the shared packaging tools satisfy them
    assert R130.cni_plugins.version == "v1.4.0"
    assert R130.crictl.version >= "v1.30.0"


@pytest.mark.parametrize("name", ["1.30", "v1.30", "1.30.14", "v1.30.14"])
def test_a_set_is_found_by_minor_or_version(name):
    assert builds.release(name) is R130


def test_an_unknown_set_is_refused_by_name():
    with pytest.raises(ValueError, match=r"1\.31"):
        builds.release("1.31")
