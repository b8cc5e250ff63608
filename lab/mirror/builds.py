"""Pinned upstream builds for the offline mirror and the conformance suite
(see lab/mirror/gobuild.py for how).

One version per component, read by the mirror, the conformance command and
the roles' lab variables.
"""

from __future__ import annotations

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


def _kubernetes_ldflags() -> str:
    # What hack/lib/version.sh sets; kubeadm compares these versions.
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": KUBERNETES_COMMIT,
        "gitTreeState": "clean",
        "buildDate": KUBERNETES_BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


KUBERNETES = GoBuild(
    name="kubernetes",
    version=KUBERNETES_VERSION,
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
    ldflags=_kubernetes_ldflags(),
    replace={f"k8s.io/{name}": "v0" + KUBERNETES_VERSION.removeprefix("v1") for name in KUBERNETES_STAGING},
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
ETCD_VERSION = "v3.5.16"
ETCD_IMAGE_TAG = ETCD_VERSION.lstrip("v") + "-0"
ETCD_COMMIT = "f20bbadd404b57c776d1e8876cefd1ac29b03fb5"
ETCD = GoBuild(
    name="etcd",
    version=ETCD_VERSION,
    module="go.etcd.io/etcd/v3",
    # etcd's main package lives in the server module (server/main.go)
    binaries={"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"},
    ldflags=f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_COMMIT[:8]}",
    replace={
        f"go.etcd.io/etcd/{name}": ETCD_VERSION
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
    | {"go.etcd.io/etcd/client/v2": "v2.305" + ETCD_VERSION.removeprefix("v3.5")},
)

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

COREDNS_VERSION = "v1.11.1"
COREDNS_COMMIT = "ae2bbc29be1aaae0b3ded5d188968a6c97bb3144"
COREDNS = GoBuild(
    name="coredns",
    version=COREDNS_VERSION,
    module="github.com/coredns/coredns",
    binaries={"coredns": "github.com/coredns/coredns"},
    ldflags=f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={COREDNS_COMMIT[:7]}",
)

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
CRIO_VERSION = "v1.29.13"
CRIO_BUILD_DATE = "2025-02-03T10:08:33Z"
CRIO = GoBuild(
    name="cri-o",
    version=CRIO_VERSION,
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
    ldflags=f"-s -w -X github.com/cri-o/cri-o/internal/version.buildDate={CRIO_BUILD_DATE}",
    cgo=True,
    source=distfiles.CRIO_SOURCE,
    mod="vendor",
    c_programs={"pinns": "pinns"},
)

# Calico from its release tag (lab.mirror.distfiles: the proxy refuses the monorepo's
# module). No vendor/: `go build` fetches just what the commands import, checked
# against the tree's go.sum (-mod=readonly). CGO off: upstream's cgo is for the
# BPF dataplane (libbpf) and BoringCrypto; iptables mode needs neither. The
# version ldflags are upstream's (node/Makefile; main.VERSION of cni-plugin and
# kube-controllers); the build date is the tag's commit date.
CALICO_VERSION = "v3.26.5"
CALICO_BUILD_DATE = "2024-08-29T16:23:48Z"
CALICO_LDFLAGS = " ".join(
    [
        "-s",
        "-w",
        f"-X main.VERSION={CALICO_VERSION}",
        f"-X github.com/projectcalico/calico/node/pkg/lifecycle/startup.VERSION={CALICO_VERSION}",
        f"-X github.com/projectcalico/calico/node/buildinfo.GitVersion={CALICO_VERSION}",
        f"-X github.com/projectcalico/calico/node/buildinfo.BuildDate={CALICO_BUILD_DATE}",
        f"-X github.com/projectcalico/calico/node/buildinfo.GitRevision={distfiles.CALICO_SOURCE.commit}",
    ]
)
CALICO = GoBuild(
    name="calico",
    version=CALICO_VERSION,
    module="github.com/projectcalico/calico",
    # calico-ipam is a copy of `calico` (it picks its role from its file name)
    binaries={
        "calico-node": "./node/cmd/calico-node",
        "calico": "./cni-plugin/cmd/calico",
        "install": "./cni-plugin/cmd/install",
        "kube-controllers": "./kube-controllers/cmd/kube-controllers",
        "check-status": "./kube-controllers/cmd/check-status",
    },
    ldflags=CALICO_LDFLAGS,
    source=distfiles.CALICO_SOURCE,
    mod="readonly",
)
# calico-node -init runs mountns to mount the root cgroup2 for the BPF dataplane;
# it enters namespaces from a cgo constructor, so it alone needs cgo (glibc is in
# the node image). Standard library only: seconds to build.
CALICO_MOUNTNS = GoBuild(
    name="calico-mountns",
    version=CALICO_VERSION,
    module="github.com/projectcalico/calico",
    binaries={"mountns": "./node/cmd/mountns"},
    ldflags="-s -w",
    cgo=True,
    source=distfiles.CALICO_SOURCE,
    mod="readonly",
)

# What the mirror builds, in the order they are made.
MIRROR_BUILDS = (KUBERNETES, CNI_PLUGINS, CRICTL, ETCD, COREDNS, CRIO, CALICO, CALICO_MOUNTNS)
