"""Pinned upstream builds for the offline mirror (see lab/gobuild.py for how).

One version per component, read by the mirror and by the roles' lab variables.
"""

from __future__ import annotations

from lab.gobuild import GoBuild

KUBERNETES_VERSION = "v1.29.15"
# From the module proxy's origin record of the tag (go mod download -json).
KUBERNETES_COMMIT = "0d0f172cdf9fd42d6feee3467374b58d3e168df0"
KUBERNETES_BUILD_DATE = "2025-03-11T17:41:05Z"

# k8s.io/kubernetes replaces each staging module with ./staging/src/...; a
# dependency's replaces are ignored, so the wrapper pins the published copies.
KUBERNETES_STAGING = (
    "api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider"
    " cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api"
    " csi-translation-lib dynamic-resource-allocation endpointslice kms kube-aggregator"
    " kube-controller-manager kube-proxy kube-scheduler kubectl kubelet legacy-cloud-providers metrics"
    " mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
).split()


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
