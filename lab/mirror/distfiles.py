"""Pinned upstream source tarballs that the Go module proxy does not serve.

CRI-O and Calico are refused by the proxy (403 for every version), so their
release tags come as `git archive` tarballs from a distfiles directory:
LAB_DISTFILES, by default ../shared/distfiles beside the checkout. Users with
internet make the same tarball from the tag (`git archive --prefix=NAME/ TAG |
gzip -9n`) and point LAB_DISTFILES at it. Each file's sha256 is pinned here;
a missing or altered file is refused before anything is unpacked, and an
unpacked tree only lands in the cache once it is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from lab.paths import CACHE, REPO

SOURCES_CACHE = CACHE / "src"


def distfiles_dir() -> Path:
    return Path(os.environ.get("LAB_DISTFILES", REPO.parent / "shared" / "distfiles")).expanduser()


@dataclass(frozen=True)
class Distfile:
    filename: str
    sha256: str
    # where it comes from: repository, tag, commit
    upstream: str
    tag: str
    commit: str
    # the tarball's top directory
    top: str

    @property
    def path(self) -> Path:
        return distfiles_dir() / self.filename


CRIO_SOURCE = Distfile(
    filename="cri-o-1.29.13.tar.gz",
    sha256="1254610d7c7d2b33822a1695304ed1bb3066dd18d617f64cfd13b62d1b0848cc",
    upstream="github.com/cri-o/cri-o",
    tag="v1.29.13",
    commit="99060581eb2755e17d814bd4508630045099047f",
    top="cri-o-1.29.13",
)

CALICO_SOURCE = Distfile(
    filename="calico-3.26.5.tar.gz",
    sha256="cb8f02769b757f050cd94825b763c2b43437f1c68312579913a81c5b16da364b",
    upstream="github.com/projectcalico/calico",
    tag="v3.26.5",
    commit="90bd9a5482a386973dd7e1b22b08b0b501014557",
    top="calico-3.26.5",
)

# The sources of the 1.30 release set (lab.mirror.builds.RELEASE_1_30), built
# only when asked for (`python -m lab mirror --release 1.30`).
CRIO_1_30_SOURCE = Distfile(
    filename="cri-o-1.30.14.tar.gz",
    sha256="4d20517b7d4e169bbd998d2bdb0a321324465c50fe05aa04e23ecfadf0902780",
    upstream="github.com/cri-o/cri-o",
    tag="v1.30.14",
    commit="0a197ae7193bed82f55ae3e16fdd69106ce45e3e",
    top="cri-o-1.30.14",
)

CALICO_3_28_SOURCE = Distfile(
    filename="calico-3.28.5.tar.gz",
    sha256="c8ac6911c78ba2bcd642c0949bafcf5404827bd4711e84543cf14d2f8a5b1fb7",
    upstream="github.com/projectcalico/calico",
    tag="v3.28.5",
    commit="1bf7ccd12971a007f5776e8edd992ced6317c187",
    top="calico-3.28.5",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified(distfile: Distfile) -> Path:
    """The tarball's path once its checksum matches the pin; a clear error otherwise."""
    path = distfile.path
    if not path.is_file():
        raise ValueError(
            f"{path} is missing: the {distfile.upstream} {distfile.tag} source tarball (sha256 {distfile.sha256}); "
            f"set LAB_DISTFILES to the directory that holds {distfile.filename}"
        )
    actual = sha256_of(path)
    if actual != distfile.sha256:
        raise ValueError(
            f"{path} has sha256 {actual}, expected {distfile.sha256} ({distfile.upstream} {distfile.tag}); "
            "refusing to build from it"
        )
    return path


def unpacked(distfile: Distfile) -> Path:
    """The verified tarball unpacked once into the cache (CACHE/src/<top>-<sha prefix>)."""
    target = SOURCES_CACHE / f"{distfile.top}-{distfile.sha256[:12]}"
    if (target / ".complete").is_file():
        return target
    tarball = verified(distfile)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(partial, filter="data")
        top = partial / distfile.top
        if not top.is_dir():
            raise ValueError(f"{tarball} has no top directory {distfile.top}/")
        shutil.rmtree(target, ignore_errors=True)
        top.rename(target)
        (target / ".complete").write_text(distfile.sha256 + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
