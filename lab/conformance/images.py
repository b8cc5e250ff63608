"""The images the 1.29 [Conformance] tests run, built offline into the lab registry.

The suite names its images in test/utils/image/manifest.go (registry, name,
tag) and lets KUBE_TEST_REPO_LIST, a YAML file of registry keys, move each
registry elsewhere. Nothing of registry.k8s.io is reachable here, so each
image is rebuilt from sources that are: the Go programs from the pinned
Kubernetes tag through the module proxy (lab.mirror.builds), the rest from Debian
bookworm packages on a base imported from a debootstrap tree, laid out like
the upstream image where a test depends on its content (paths, ports,
default pages). They are pushed with lab.mirror.images' machinery under
e2e-test-images/ of the lab registry, where promoterE2eRegistry points. pause
and etcd are the ones kubeadm already pulls from the mirror (gcRegistry,
gcEtcdRegistry).

Which images: those the [Conformance] tests of test/conformance/testdata/
conformance.yaml create pods from, read from their sources (README,
"Conformance"). Images of tests outside that list are not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.mirror import builds
from lab.mirror.app_image import import_rootfs_image
from lab.mirror.commands import REGISTRY
from lab.mirror.gobuild import build
from lab.mirror.images import is_in_registry, kubernetes_source, push_images
from lab.mirror.imagespec import LOCAL_PREFIX, ImageSpec
from lab.nodes.rootfs import debootstrap
from lab.run import step

E2E_REPOSITORY = "e2e-test-images"
FILES = Path(__file__).resolve().parent / "test_images"

# One base for every Debian-based test image, so the nodes pull its layer
# once: minbase plus what any of them runs. agnhost upstream is Alpine with
# bind-tools, curl, netcat-openbsd, iproute2, iperf and bash (tests exec
# dig, nslookup, curl, wget, nc and ss in it); jessie-dnsutils is Debian with
# dnsutils; httpd and nginx are their servers; busybox-static and bash-static
# make the busybox image.
BASE_PACKAGES = [
    "apache2-bin",
    "bash-static",
    "bind9-dnsutils",
    "busybox-static",
    "ca-certificates",
    "curl",
    "iperf",
    "iproute2",
    "media-types",
    "netcat-openbsd",
    "nginx-light",
    "procps",
    "wget",
]


@dataclass(frozen=True)
class SuiteImage:
    """One image of the suite: where manifest.go names it and how it is built here."""

    registry_key: str  # KUBE_TEST_REPO_LIST key of its registry in manifest.go
    name: str  # name and tag as manifest.go has them
    tag: str
    how: str  # one line for docs/conformance.md

    @property
    def reference(self) -> str:
        """name:tag in the lab registry."""
        prefix = f"{E2E_REPOSITORY}/" if self.registry_key == PROMOTER else ""
        return f"{prefix}{self.name}:{self.tag}"

    @property
    def built_here(self) -> bool:
        return self.registry_key == PROMOTER


PROMOTER = "promoterE2eRegistry"
IMAGES = [
    SuiteImage(
        PROMOTER,
        "agnhost",
        "2.47",
        f"agnhost of Kubernetes {builds.KUBERNETES_VERSION} (test/images/agnhost, whose VERSION says "
        f"{builds.AGNHOST_SOURCE_VERSION}: 2.47 only adds `stress`, which no e2e.test test runs), "
        f"CoreDNS {builds.COREDNS_VERSION} at /coredns, Debian base with dig, nslookup, curl, wget, nc, ss",
    ),
    SuiteImage(
        PROMOTER,
        "busybox",
        "1.36.1-1",
        "Debian's busybox-static 1.35 on scratch, every applet in /bin; /bin/sh is Debian's bash-static, "
        "because 1.35's ash drops environment variables whose names are not identifiers (envFrom's `data-1`) "
        "and upstream's 1.36.1 passes them on",
    ),
    *(
        SuiteImage(
            PROMOTER,
            "httpd",
            tag,
            "Debian's apache2-bin laid out as docker library httpd: /usr/local/apache2, port 80, "
            "htdocs/index.html 'It works!', httpd-foreground",
        )
        for tag in ("2.4.38-4", "2.4.39-4")
    ),
    SuiteImage(
        PROMOTER,
        "nginx",
        "1.14-4",
        "Debian's nginx-light with docker library nginx's server: port 80, /usr/share/nginx/html 'Welcome to nginx!'",
    ),
    SuiteImage(PROMOTER, "jessie-dnsutils", "1.7", "Debian base: bookworm's dig, nslookup, getent (upstream: jessie)"),
    SuiteImage(
        PROMOTER,
        "nautilus",
        "1.7",
        "agnhost test-webserver serving test/images/nautilus/html (nautilus.jpg, data.json), as upstream",
    ),
    SuiteImage(
        PROMOTER,
        "nonewprivs",
        "1.3",
        f"nnp of Kubernetes {builds.KUBERNETES_VERSION} (test/images/nonewprivs), setuid root, Debian base",
    ),
    SuiteImage(
        PROMOTER,
        "sample-apiserver",
        "1.17.7",
        f"k8s.io/sample-apiserver {builds.SAMPLE_APISERVER_VERSION}, `go install .` at the tag as upstream builds it",
    ),
    SuiteImage("gcRegistry", "pause", "3.9", "the mirror's pause 3.9 (Kubernetes' pause.c, static)"),
    SuiteImage("gcEtcdRegistry", "etcd", builds.ETCD_IMAGE_TAG, f"the mirror's etcd {builds.ETCD_VERSION}"),
]


def _labels(name: str, tag: str) -> str:
    # also keeps two tags built the same way (httpd 2.4.38-4, 2.4.39-4)
    # distinct images, as upstream's are
    return f'LABEL io.k8s.e2e.image="{name}:{tag}" io.k8s.e2e.source="kubeadm-lab, not upstream"\n'


def _spec(name: str, tag: str, files: dict[str, Path], containerfile: str) -> ImageSpec:
    return ImageSpec(f"{E2E_REPOSITORY}/{name}", tag, files, containerfile + _labels(name, tag))


def _agnhost_containerfile(base: str) -> str:
    # test/images/agnhost/Dockerfile, on Debian: the binary and its
    # `agnhost-2` link (entrypoint tests), CoreDNS at /coredns (the DNS
    # nameserver test runs it), porter's certificate, /uploads (netexec),
    # the user and group a supplemental-groups test expects in the image.
    # /bin/sh is bash: the tests' `sh -c` scripts were written for Alpine's
    # ash, which accepts more than dash does.
    return (
        f"FROM {base}\n"
        "COPY agnhost coredns localhost.crt localhost.key /\n"
        "RUN ln -s agnhost /agnhost-2 && mkdir /uploads && ln -sf bash /bin/sh"
        " && groupadd -g 50000 group-defined-in-image"
        " && useradd -u 1000 -M -G group-defined-in-image user-defined-in-image\n"
        "EXPOSE 80 8080 8081 9376 5000\n"
        'ENTRYPOINT ["/agnhost"]\n'
        'CMD ["pause"]\n'
    )


def _httpd_containerfile(base: str) -> str:
    # docker library httpd: /usr/local/apache2 with bin/httpd on PATH,
    # htdocs/index.html "It works!" (StatefulSet tests move it away to break
    # the readiness probe and back), port 80, httpd-foreground, SIGWINCH stop.
    return (
        f"FROM {base}\n"
        "COPY httpd httpd-foreground /usr/local/apache2/bin/\n"
        "COPY httpd.conf /usr/local/apache2/conf/httpd.conf\n"
        "COPY index.html /usr/local/apache2/htdocs/index.html\n"
        "RUN mkdir -p /usr/local/apache2/logs\n"
        "ENV PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "WORKDIR /usr/local/apache2\n"
        "EXPOSE 80\n"
        "STOPSIGNAL SIGWINCH\n"
        'CMD ["httpd-foreground"]\n'
    )


def _nginx_containerfile(base: str) -> str:
    # docker library nginx: conf.d/default.conf on port 80 serving
    # /usr/share/nginx/html (Debian's nginx-common ships the same "Welcome to
    # nginx!" index.html there), logs to stdout/stderr, in the foreground.
    return (
        f"FROM {base}\n"
        "COPY default.conf /etc/nginx/conf.d/default.conf\n"
        "RUN rm -f /etc/nginx/sites-enabled/default"
        " && test -s /usr/share/nginx/html/index.html"
        " && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log\n"
        "EXPOSE 80\n"
        "STOPSIGNAL SIGTERM\n"
        'CMD ["nginx", "-g", "daemon off;"]\n'
    )


def _busybox_containerfile() -> str:
    # docker library busybox: one static binary with every applet linked in
    # /bin, a minimal /etc/passwd and /etc/group, nothing else. /bin/sh is a
    # static bash: Debian's busybox 1.35 ash drops environment variables
    # named like `data-1` before running a command, upstream's 1.36.1 keeps
    # them, and the Secret and ConfigMap envFrom tests print them with
    # `sh -c env`.
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY passwd group /etc/\n"
        'RUN ["/bin/busybox", "--install", "/bin"]\n'
        'RUN ["/bin/busybox", "rm", "/bin/sh"]\n'
        "COPY sh /bin/sh\n"
        'RUN ["/bin/mkdir", "-p", "-m", "1777", "/tmp"]\n'
        'RUN ["/bin/mkdir", "-p", "-m", "700", "/root"]\n'
        'RUN ["/bin/mkdir", "-p", "/home", "/var/spool/mail", "/var/www", "/usr/sbin", "/usr/bin"]\n'
        'CMD ["sh"]\n'
    )


def image_specs() -> dict[str, ImageSpec]:
    """How each image built here is made, by its name:tag (runs the Go builds and debootstrap)."""
    root = debootstrap("e2e-image-base", BASE_PACKAGES)
    base = import_rootfs_image(root, f"{LOCAL_PREFIX}/e2e-image-base:{root.name.rsplit('-', 1)[-1]}")
    programs = build(builds.KUBERNETES_TEST_IMAGES)
    sample_apiserver = build(builds.SAMPLE_APISERVER)
    coredns = build(builds.COREDNS)
    source = kubernetes_source() / "test" / "images"
    agnhost_files = {
        "agnhost": programs / "agnhost",
        "coredns": coredns / "coredns",
        "localhost.crt": source / "agnhost" / "porter" / "localhost.crt",
        "localhost.key": source / "agnhost" / "porter" / "localhost.key",
    }
    httpd_files = {name: FILES / "httpd" / name for name in ("httpd", "httpd-foreground", "httpd.conf", "index.html")}
    specs = [
        _spec("agnhost", "2.47", agnhost_files, _agnhost_containerfile(base)),
        _spec(
            "busybox",
            "1.36.1-1",
            {
                "busybox": root / "bin" / "busybox",
                "sh": root / "bin" / "bash-static",
                "passwd": FILES / "busybox" / "passwd",
                "group": FILES / "busybox" / "group",
            },
            _busybox_containerfile(),
        ),
        _spec("httpd", "2.4.38-4", httpd_files, _httpd_containerfile(base)),
        _spec("httpd", "2.4.39-4", httpd_files, _httpd_containerfile(base)),
        _spec("nginx", "1.14-4", {"default.conf": FILES / "nginx" / "default.conf"}, _nginx_containerfile(base)),
        _spec("jessie-dnsutils", "1.7", {}, f'FROM {base}\nCMD ["bash"]\n'),
        _spec(
            "nautilus",
            "1.7",
            {
                "agnhost": programs / "agnhost",
                "nautilus.jpg": source / "nautilus" / "html" / "nautilus.jpg",
                "data.json": source / "nautilus" / "html" / "data.json",
            },
            f'FROM {base}\nCOPY agnhost nautilus.jpg data.json /\nENTRYPOINT ["/agnhost"]\nCMD ["test-webserver"]\n',
        ),
        _spec(
            "nonewprivs",
            "1.3",
            {"nnp": programs / "nnp"},
            f'FROM {base}\nCOPY nnp /usr/local/bin/nnp\nRUN chmod u+s /usr/local/bin/nnp\nCMD ["nnp"]\n',
        ),
        _spec(
            "sample-apiserver",
            "1.17.7",
            {"sample-apiserver": sample_apiserver / "sample-apiserver"},
            f'FROM {base}\nCOPY sample-apiserver /sample-apiserver\nENTRYPOINT ["/sample-apiserver"]\n',
        ),
    ]
    return {spec.reference: spec for spec in specs}


def repo_list(registry: str = REGISTRY) -> dict[str, str]:
    """KUBE_TEST_REPO_LIST: the registries of IMAGES moved to the lab registry.

    The other keys keep upstream's values: their images (authenticated,
    private and invalid registries, Windows, storage drivers) are not used by
    [Conformance] tests, and a test that used one anyway fails naming the
    unreachable registry.
    """
    return {
        PROMOTER: f"{registry}/{E2E_REPOSITORY}",
        "gcRegistry": registry,
        "gcEtcdRegistry": registry,
    }


def pull_reference(image: SuiteImage, repos: dict[str, str]) -> str:
    """What e2e.test asks the nodes to pull, as manifest.go composes it: <registry>/<name>:<tag>."""
    return f"{repos[image.registry_key]}/{image.name}:{image.tag}"


def build_test_images() -> list[str]:
    """Build and push what is missing or stale; fail when the mirror lacks pause or etcd."""
    specs = image_specs()
    pushed = push_images([specs[image.reference] for image in IMAGES if image.built_here])
    with step("check the mirror's pause and etcd"):
        missing = [
            image.reference
            for image in IMAGES
            if not image.built_here and not is_in_registry(*image.reference.rsplit(":", 1))
        ]
        if missing:
            raise ValueError(f"the lab registry lacks {', '.join(missing)}: run `make mirror` first")
    return pushed
