"""Pinned upstream builds for the offline mirror and the conformance suite
(see lab/mirror/gobuild.py for how).

A *release set* (ReleaseSet, at the end) is one Kubernetes minor's pieces as
data: Kubernetes, the CRI-O and Calico tested with it, and the etcd, CoreDNS
and pause images its kubeadm pulls. DEFAULT (1.29) is what `make mirror` builds
and what the module-level names below are; RELEASES adds the sets built only
when asked (`python -m lab mirror --release 1.30`, for the upgrade). The
default set's Go build specs are the ones the cache is keyed by: they must not
change, or every warm cache rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.mirror import distfiles
from lab.mirror.gobuild import GoBuild

KUBERNETES_VERSION = "v1.29.15"
# From the module proxy's origin record of the tag (go mod download -json).
KUBERNETES_COMMIT = "0d0f172cdf9fd42d6feee3467374b58d3e168df0"
KUBERNETES_BUILD_DATE = "2025-03-11T17:41:05Z"

# k8s.io/kubernetes replaces each staging module with ./staging/src/...; a
# dependency's replaces are ignored, so the wrapper pins the published copies.
KUBERNETES_STAGING = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "legacy-cloud-providers",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
]


def kubernetes_ldflags(version: str, commit: str, build_date: str) -> str:
    """What hack/lib/version.sh sets; kubeadm compares these versions."""
    major, minor, _ = version.lstrip("v").split(".")
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def _kubernetes_ldflags() -> str:
    return kubernetes_ldflags(KUBERNETES_VERSION, KUBERNETES_COMMIT, KUBERNETES_BUILD_DATE)


def kubernetes_replace(version: str, staging: list[str], **overrides: str) -> dict[str, str]:
    """The wrapper's replaces: each staging module at the tag's v0.x.y, unless overridden."""
    return {f"k8s.io/{name}": overrides.get(name, "v0" + version.removeprefix("v1")) for name in staging}


def kubernetes_build(version: str, ldflags: str, replace: dict[str, str]) -> GoBuild:
    """The Kubernetes binaries the packages and images hold, from the module proxy."""
    return GoBuild(
        name="kubernetes",
        version=version,
        module="k8s.io/kubernetes",
        binaries={
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kubeadm",
                "kubelet",
                "kubectl",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kube-proxy",
            )
        },
        tags=("providerless",),
        ldflags=ldflags,
        replace=replace,
    )


KUBERNETES = kubernetes_build(
    KUBERNETES_VERSION, _kubernetes_ldflags(), kubernetes_replace(KUBERNETES_VERSION, KUBERNETES_STAGING)
)

# The conformance suite of the same tag (lab.conformance.runner): e2e.test as
# upstream's `make WHAT=test/e2e/e2e.test` compiles it (`go test -c`, the same
# version ldflags; cloud providers linked in, as upstream: test/e2e imports
# them, so no providerless), and ginkgo from the same module graph, which makes
# it the version Kubernetes' go.mod requires, as `make WHAT=ginkgo` does.
GINKGO_VERSION = "v2.13.0"
KUBERNETES_E2E = GoBuild(
    name="kubernetes-e2e",
    version=KUBERNETES_VERSION,
    module="k8s.io/kubernetes",
    binaries={"ginkgo": "github.com/onsi/ginkgo/v2/ginkgo"},
    test_binaries={"e2e.test": "k8s.io/kubernetes/test/e2e"},
    ldflags=_kubernetes_ldflags(),
    replace=KUBERNETES.replace,
)

# Go programs of the test images the [Conformance] tests run
# (lab.conformance.images), from test/images of the same tag. The suite asks
# for agnhost 2.47, built upstream from a later tree; v1.29.15's agnhost says
# 2.45 and differs from v1.30.0-alpha.3's 2.47 only by the `stress`
# subcommand, which only e2e_node's eviction tests run.
AGNHOST_SOURCE_VERSION = "2.45"
KUBERNETES_TEST_IMAGES = GoBuild(
    name="kubernetes-test-images",
    version=KUBERNETES_VERSION,
    module="k8s.io/kubernetes",
    binaries={
        "agnhost": "k8s.io/kubernetes/test/images/agnhost",
        "nnp": "k8s.io/kubernetes/test/images/nonewprivs",
    },
    # what test/images/agnhost/Makefile sets; nnp has no such variable
    ldflags=f"-s -w -X main.Version={AGNHOST_SOURCE_VERSION}",
    replace=KUBERNETES.replace,
)

# The aggregator conformance test runs "the sample-apiserver code from 1.17
# compiled against 1.17" (image sample-apiserver:1.17.7). Upstream builds it
# by `go install .` in k8s.io/sample-apiserver at the tag; its go.mod's
# replaces are repeated here because a dependency's replaces are ignored.
SAMPLE_APISERVER_VERSION = "v0.17.7"
SAMPLE_APISERVER = GoBuild(
    name="sample-apiserver",
    version=SAMPLE_APISERVER_VERSION,
    module="k8s.io/sample-apiserver",
    binaries={"sample-apiserver": "k8s.io/sample-apiserver"},
    ldflags="-s -w",
    replace={
        "golang.org/x/sys": "v0.0.0-20190813064441-fde4db37ae7a",
        "golang.org/x/tools": "v0.0.0-20190821162956-65e3620a7ae7",
    }
    | {
        f"k8s.io/{name}": SAMPLE_APISERVER_VERSION
        for name in ("api", "apimachinery", "apiserver", "client-go", "code-generator", "component-base")
    },
)


# The version kubeadm v1.29.15 pulls (`kubeadm config images list`); a replace
# in etcd's root module keeps `go install` away, so it goes through a wrapper
# that pins its sibling modules to the same tag.
def etcd_build(version: str, commit: str) -> GoBuild:
    return GoBuild(
        name="etcd",
        version=version,
        module="go.etcd.io/etcd/v3",
        # etcd's main package lives in the server module (server/main.go)
        binaries={"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"},
        ldflags=f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={commit[:8]}",
        replace={
            f"go.etcd.io/etcd/{name}": version
            for name in (
                "api/v3",
                "client/pkg/v3",
                "client/v3",
                "etcdctl/v3",
                "etcdutl/v3",
                "pkg/v3",
                "raft/v3",
                "server/v3",
                "tests/v3",
            )
        }
        | {"go.etcd.io/etcd/client/v2": "v2.305" + version.removeprefix("v3.5")},
    )


ETCD_VERSION = "v3.5.16"
ETCD_IMAGE_TAG = ETCD_VERSION.lstrip("v") + "-0"
ETCD_COMMIT = "f20bbadd404b57c776d1e8876cefd1ac29b03fb5"
ETCD = etcd_build(ETCD_VERSION, ETCD_COMMIT)

# The proxy serves cri-tools only at v1.34.0 and v1.37.0 here; crictl talks to
# the CRI v1 API that kubelet 1.29 and containerd 1.6 speak, and kubeadm 1.29
# only needs `crictl` on PATH.
CRICTL_VERSION = "v1.34.0"
CRICTL = GoBuild(
    name="crictl",
    version=CRICTL_VERSION,
    module="sigs.k8s.io/cri-tools",
    binaries={"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
    ldflags=f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}",
)


def coredns_build(version: str, commit: str) -> GoBuild:
    return GoBuild(
        name="coredns",
        version=version,
        module="github.com/coredns/coredns",
        binaries={"coredns": "github.com/coredns/coredns"},
        ldflags=f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={commit[:7]}",
    )


COREDNS_VERSION = "v1.11.1"
COREDNS_COMMIT = "ae2bbc29be1aaae0b3ded5d188968a6c97bb3144"
COREDNS = coredns_build(COREDNS_VERSION, COREDNS_COMMIT)

# What the kubernetes-cni package ships (every Linux plugin of the release).
CNI_PLUGINS_VERSION = "v1.4.0"
CNI_PLUGIN_PACKAGES = {
    "ipam": ("dhcp", "host-local", "static"),
    "main": ("bridge", "dummy", "host-device", "ipvlan", "loopback", "macvlan", "ptp", "tap", "vlan"),
    "meta": ("bandwidth", "firewall", "portmap", "sbr", "tuning", "vrf"),
}
CNI_PLUGINS = GoBuild(
    name="cni-plugins",
    version=CNI_PLUGINS_VERSION,
    module="github.com/containernetworking/plugins",
    binaries={
        name: f"github.com/containernetworking/plugins/plugins/{kind}/{name}"
        for kind, names in CNI_PLUGIN_PACKAGES.items()
        for name in names
    },
    ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion="
    + CNI_PLUGINS_VERSION,
)


# CRI-O from its release tag (lab.mirror.distfiles: the proxy refuses the module), as
# upstream's Makefile builds bin/crio and bin/pinns: cgo for libseccomp, the
# vendored dependencies, the build tags its detection scripts pick on a Debian
# host without gpgme, btrfs or devicemapper headers. The version is a constant
# in internal/version; only the build date is an ldflag (the tag's commit date).
def crio_build(source: distfiles.Distfile, build_date: str) -> GoBuild:
    return GoBuild(
        name="cri-o",
        version=source.tag,
        module="github.com/cri-o/cri-o",
        binaries={"crio": "./cmd/crio"},
        tags=(
            "containers_image_openpgp",
            "containers_image_ostree_stub",
            "exclude_graphdriver_btrfs",
            "btrfs_noversion",
            "exclude_graphdriver_devicemapper",
            "seccomp",
            "selinux",
            "apparmor",
        ),
        ldflags=f"-s -w -X github.com/cri-o/cri-o/internal/version.buildDate={build_date}",
        cgo=True,
        source=source,
        mod="vendor",
        c_programs={"pinns": "pinns"},
    )


CRIO_VERSION = "v1.29.13"
CRIO_BUILD_DATE = "2025-02-03T10:08:33Z"
CRIO = crio_build(distfiles.CRIO_SOURCE, CRIO_BUILD_DATE)


# Calico from its release tag (lab.mirror.distfiles: the proxy refuses the monorepo's
# module). No vendor/: `go build` fetches just what the commands import, checked
# against the tree's go.sum (-mod=readonly). CGO off: upstream's cgo is for the
# BPF dataplane (libbpf) and BoringCrypto; iptables mode needs neither. The
# version ldflags are upstream's (node/Makefile; main.VERSION of cni-plugin and
# kube-controllers); the build date is the tag's commit date.
def calico_ldflags(source: distfiles.Distfile, build_date: str) -> str:
    version = source.tag
    return " ".join(
        [
            "-s",
            "-w",
            f"-X main.VERSION={version}",
            f"-X github.com/projectcalico/calico/node/pkg/lifecycle/startup.VERSION={version}",
            f"-X github.com/projectcalico/calico/node/buildinfo.GitVersion={version}",
            f"-X github.com/projectcalico/calico/node/buildinfo.BuildDate={build_date}",
            f"-X github.com/projectcalico/calico/node/buildinfo.GitRevision={source.commit}",
        ]
    )


def calico_build(source: distfiles.Distfile, build_date: str) -> GoBuild:
    return GoBuild(
        name="calico",
        version=source.tag,
        module="github.com/projectcalico/calico",
        # calico-ipam is a copy of `calico` (it picks its role from its file name)
        binaries={
            "calico-node": "./node/cmd/calico-node",
            "calico": "./cni-plugin/cmd/calico",
            "install": "./cni-plugin/cmd/install",
            "kube-controllers": "./kube-controllers/cmd/kube-controllers",
            "check-status": "./kube-controllers/cmd/check-status",
        },
        ldflags=calico_ldflags(source, build_date),
        source=source,
        mod="readonly",
    )


# calico-node -init runs mountns to mount the root cgroup2 for the BPF dataplane;
# it enters namespaces from a cgo constructor, so it alone needs cgo (glibc is in
# the node image). Standard library only: seconds to build.
def calico_mountns_build(source: distfiles.Distfile) -> GoBuild:
    return GoBuild(
        name="calico-mountns",
        version=source.tag,
        module="github.com/projectcalico/calico",
        binaries={"mountns": "./node/cmd/mountns"},
        ldflags="-s -w",
        cgo=True,
        source=source,
        mod="readonly",
    )


CALICO_VERSION = "v3.26.5"
CALICO_BUILD_DATE = "2024-08-29T16:23:48Z"
CALICO_LDFLAGS = calico_ldflags(distfiles.CALICO_SOURCE, CALICO_BUILD_DATE)
CALICO = calico_build(distfiles.CALICO_SOURCE, CALICO_BUILD_DATE)
CALICO_MOUNTNS = calico_mountns_build(distfiles.CALICO_SOURCE)

# What the mirror builds, in the order they are made.
MIRROR_BUILDS = (KUBERNETES, CNI_PLUGINS, CRICTL, ETCD, COREDNS, CRIO, CALICO, CALICO_MOUNTNS)


def minor(version: str) -> str:
    """v1.29.15 -> v1.29"""
    return "v" + ".".join(version.lstrip("v").split(".")[:2])


@dataclass(frozen=True)
class ReleaseSet:
    """One Kubernetes minor's pieces, as the mirror serves them side by side with
    other sets: the Kubernetes build, the CRI-O and Calico tested with it, and
    the etcd, CoreDNS and pause images its kubeadm pulls. The packaging tools
    (crictl, the CNI plugins) are the same in every set."""

    # the key of `python -m lab mirror --release NAME`: the Kubernetes minor, "1.29"
    name: str
    kubernetes: GoBuild
    kubernetes_commit: str
    crio: GoBuild
    calico: GoBuild
    calico_mountns: GoBuild
    # sha256 of upstream's manifests at the Calico tag (the tarball's files, byte for byte)
    calico_manifest_sha256: dict[str, str]
    etcd: GoBuild
    # the tag kubeadm names the etcd image by: <version>-0
    etcd_image_tag: str
    coredns: GoBuild
    pause_version: str
    crictl: GoBuild = CRICTL
    cni_plugins: GoBuild = CNI_PLUGINS
    # Depends of kubeadm and kubelet on kubernetes-cni (kubernetes/release's metadata.yaml for the minor)
    kubernetes_cni_dep: str = "kubernetes-cni (>= 1.2.0)"
    cri_tools_dep: str = "cri-tools (>= 1.28.0)"
    notes: tuple[str, ...] = field(default=())

    @property
    def kubernetes_version(self) -> str:
        return self.kubernetes.version

    @property
    def kubernetes_minor(self) -> str:
        return minor(self.kubernetes.version)

    @property
    def crio_version(self) -> str:
        return self.crio.version

    @property
    def crio_minor(self) -> str:
        return minor(self.crio.version)

    @property
    def calico_version(self) -> str:
        return self.calico.version

    @property
    def go_builds(self) -> tuple[GoBuild, ...]:
        """What the set builds, in the order they are made."""
        return (
            self.kubernetes,
            self.cni_plugins,
            self.crictl,
            self.etcd,
            self.coredns,
            self.crio,
            self.calico,
            self.calico_mountns,
        )

    @property
    def core_repo_path(self) -> str:
        """pkgs.k8s.io's path of the minor's repository, under the mirror's HTTP root."""
        return f"core:/stable:/{self.kubernetes_minor}/deb"

    @property
    def crio_repo_path(self) -> str:
        """download.opensuse.org's path of CRI-O's repository for the minor."""
        return f"repositories/isv:/cri-o:/stable:/{self.crio_minor}/deb"

    @property
    def calico_manifests_path(self) -> str:
        """raw.githubusercontent.com's path of Calico's manifests at the tag."""
        return f"projectcalico/calico/{self.calico_version}/manifests"

    def kubeadm_images(self) -> list[str]:
        """name:tag of what `kubeadm config images list --kubernetes-version VERSION` prints, without the registry."""
        version = self.kubernetes_version
        return [
            f"kube-apiserver:{version}",
            f"kube-controller-manager:{version}",
            f"kube-scheduler:{version}",
            f"kube-proxy:{version}",
            f"coredns:{self.coredns.version}",
            f"pause:{self.pause_version}",
            f"etcd:{self.etcd_image_tag}",
        ]

    def calico_images(self) -> list[str]:
        """name:tag of Calico's images, as its manifest names them without docker.io/."""
        return [f"calico/{name}:{self.calico_version}" for name in ("node", "cni", "kube-controllers")]


# 1.29: what `make mirror` builds and the cluster installs (the module-level
# names above are this set's).
DEFAULT = ReleaseSet(
    name="1.29",
    kubernetes=KUBERNETES,
    kubernetes_commit=KUBERNETES_COMMIT,
    crio=CRIO,
    calico=CALICO,
    calico_mountns=CALICO_MOUNTNS,
    calico_manifest_sha256={
        "calico-vxlan.yaml": "ef5c84d633d3eaae85746a8a54e288b89432547a2f1bcc2551572e77f71e1a6c",
        "calico.yaml": "2468a8c939658b959860b0e78c3d2f420c53bb08af7511f3d335e051f9db8b22",
    },
    etcd=ETCD,
    etcd_image_tag=ETCD_IMAGE_TAG,
    coredns=COREDNS,
    pause_version="3.9",
)

# 1.30: the upgrade target (issue 20), built only by `python -m lab mirror --release 1.30`.
# - Kubernetes v1.30.14: the proxy's .info of the tag carries no commit; the
#   commit and build date are what a v1.30.14 API server of upstream's release
#   reports on /version (gitCommit, buildDate). k8s.io/sample-apiserver is
#   refused at v0.30.9 and later: only e2e.test imports it, v0.30.8 is the
#   newest served.
# - etcd: kubeadm 1.30.14 names etcd 3.5.15-0, so that is built, from the
#   v3.5.15 tag (its commit from the proxy's origin record). A cluster upgraded
#   from 1.29 keeps its etcd 3.5.16: kubeadm does not downgrade etcd and says so
#   as a non-fatal issue.
# - CoreDNS v1.11.3 (commit from the proxy's origin record), pause 3.9 as 1.29's
#   (the same image: one tag in the registry).
# - CRI-O v1.30.14 and Calico v3.28.5 (tested with Kubernetes 1.27-1.30) from
#   their release tarballs; the build dates are the tags' commit dates.
KUBERNETES_1_30_VERSION = "v1.30.14"
KUBERNETES_1_30_COMMIT = "9e18483918821121abdf9aa82bc14d66df5d68cd"
KUBERNETES_1_30_BUILD_DATE = "2025-06-17T18:29:20Z"
SAMPLE_APISERVER_1_30_VERSION = "v0.30.8"
RELEASE_1_30 = ReleaseSet(
    name="1.30",
    kubernetes=kubernetes_build(
        KUBERNETES_1_30_VERSION,
        kubernetes_ldflags(KUBERNETES_1_30_VERSION, KUBERNETES_1_30_COMMIT, KUBERNETES_1_30_BUILD_DATE),
        kubernetes_replace(
            KUBERNETES_1_30_VERSION, KUBERNETES_STAGING, **{"sample-apiserver": SAMPLE_APISERVER_1_30_VERSION}
        ),
    ),
    kubernetes_commit=KUBERNETES_1_30_COMMIT,
    crio=crio_build(distfiles.CRIO_1_30_SOURCE, "2025-06-03T16:58:31Z"),
    calico=calico_build(distfiles.CALICO_3_28_SOURCE, "2025-06-11T23:29:11Z"),
    calico_mountns=calico_mountns_build(distfiles.CALICO_3_28_SOURCE),
    calico_manifest_sha256={
        "calico-vxlan.yaml": "034b15449b896732fd65e30ec109fb469fa97b78d0d8b6986dac478f7a960629",
        "calico.yaml": "206678e7adb2e931bb97385300c408490635616f371941d68468207d6e0f9713",
    },
    etcd=etcd_build("v3.5.15", "9a5533382d84999e4e79642e1ec0f8bfa9b70ba8"),
    etcd_image_tag="3.5.15-0",
    coredns=coredns_build("v1.11.3", "a7ed346585e30b99317d36e4d007b7b19a228ea5"),
    pause_version="3.9",
    # kubernetes/release's metadata.yaml for Kubernetes >= 1.30.0
    kubernetes_cni_dep="kubernetes-cni (>= 1.4.0)",
    cri_tools_dep="cri-tools (>= 1.30.0)",
)

# every set the mirror can serve, by name; DEFAULT's is what `make mirror` builds
RELEASES = {release.name: release for release in (DEFAULT, RELEASE_1_30)}


def release(name: str) -> ReleaseSet:
    """The release set called name ("1.29", "1.30"; a leading v and a patch are ignored)."""
    key = ".".join(name.lstrip("v").split(".")[:2])
    if key not in RELEASES:
        raise ValueError(f"no release set {name!r} in the mirror; known: {', '.join(RELEASES)}")
    return RELEASES[key]
