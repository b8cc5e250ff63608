"""Pinned Go builds from the module proxy, cached by name and version.

Three ways, chosen by the spec:
- no `replace` needed: `go install module/pkg@version` builds exactly the
  upstream module with its own go.sum;
- `replace` needed (Kubernetes pins its staging modules that way, and a
  dependency's replaces are ignored): a small wrapper module requires the
  upstream module and repeats the replaces;
- a source tarball (lab.mirror.distfiles: CRI-O, Calico, which the proxy refuses):
  `go build` inside the verified, unpacked tree with its own go.mod, from its
  vendor/ directory or with dependencies from the proxy.
Test binaries (`go test -c`, e.g. Kubernetes' e2e.test) are built the same
way, beside the binaries, from the same module graph and flags.
The result lives in CACHE/go/<name>-<version>/ with a stamp of the spec; a
matching stamp means nothing is rebuilt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.mirror.distfiles import Distfile, unpacked
from lab.paths import BIN, CACHE
from lab.run import log, run, step

GO_CACHE = CACHE / "go"
# Go's own module and build caches live in the lab cache too: a fresh HOME with
# the same LAB_CACHE (a new user, CI) then rebuilds nothing.
GO_MODULE_CACHE = GO_CACHE / "mod"
GO_BUILD_CACHE = GO_CACHE / "build-cache"


@dataclass(frozen=True)
class GoBuild:
    name: str
    version: str
    module: str
    # output binary name -> Go package path
    binaries: dict[str, str]
    tags: tuple[str, ...] = ()
    ldflags: str = ""
    cgo: bool = False
    # module path -> version, written into a wrapper go.mod
    replace: dict[str, str] = field(default_factory=dict)
    # modules whose checksums the proxy's checksum database does not serve;
    # their hashes are still recorded in the wrapper's go.sum
    nosumdb: tuple[str, ...] = ()
    # build inside this source tree (binaries map to ./relative packages)
    source: Distfile | None = None
    # go's -mod for the build: mod (a wrapper resolves freely), vendor, readonly
    mod: str = "mod"
    # static C programs of the source tree: output name -> directory whose
    # src/*.c are compiled as its Makefile does (CRI-O's pinns)
    c_programs: dict[str, str] = field(default_factory=dict)
    # output name -> Go package whose tests `go test -c` compiles into it
    test_binaries: dict[str, str] = field(default_factory=dict)

    @property
    def outdir(self) -> Path:
        return GO_CACHE / f"{self.name}-{self.version}"

    @property
    def needs_wrapper(self) -> bool:
        # `go install pkg@version` also asks the proxy for the module's version
        # list, which the proxy refuses for some modules; a wrapper module does
        # not. `go install` cannot compile tests either.
        return bool(self.replace or self.nosumdb or self.test_binaries)

    @property
    def outputs(self) -> list[str]:
        """Every file the build leaves in outdir."""
        return [*self.binaries, *self.test_binaries, *self.c_programs]

    def stamp(self) -> str:
        fields = asdict(self)
        # Unset, a field added later stays out of the stamp, so the builds
        # already in a (shared) cache stay current.
        if not fields["test_binaries"]:
            del fields["test_binaries"]
        return json.dumps(fields, sort_keys=True)


def default_binary_name(package: str) -> str:
    """The file name `go build` gives a main package (a /vN suffix is skipped)."""
    parts = package.split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def go_env(**extra: str) -> dict[str, str]:
    """The environment every go command of the lab runs with (caches in the lab cache)."""
    env = dict(os.environ, GOMODCACHE=str(GO_MODULE_CACHE), GOCACHE=str(GO_BUILD_CACHE))
    # nothing in HOME either: GOPATH (the checksum database's cache) and Go's
    # configuration (telemetry counters) in the lab cache
    env.update(GOPATH=str(GO_CACHE / "gopath"), XDG_CONFIG_HOME=str(GO_CACHE / "config"))
    # writable module files, so `make lab-clean` can remove the cache
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -modcacherw").strip()
    env.update(extra)
    return env


def _env(spec: GoBuild) -> dict[str, str]:
    env = go_env(CGO_ENABLED="1" if spec.cgo else "0")
    env["GOFLAGS"] = (env["GOFLAGS"] + f" -mod={spec.mod}").strip()
    if spec.nosumdb:
        env["GONOSUMDB"] = ",".join(spec.nosumdb)
    return env


def is_current(spec: GoBuild) -> bool:
    """Whether the cache holds every binary of spec, built from this very spec."""
    stamp = spec.outdir / ".spec.json"
    return (
        stamp.is_file() and stamp.read_text() == spec.stamp() and all((spec.outdir / b).is_file() for b in spec.outputs)
    )


def build(spec: GoBuild) -> Path:
    """Build (or reuse) the binaries of spec; return the directory holding them.

    A failed build leaves nothing behind: the binaries land in the cache only
    once all of them are made."""
    out = spec.outdir
    if is_current(spec):
        return out
    with step(f"go build {spec.name} {spec.version} ({', '.join(spec.outputs)})"):
        # a source tarball is verified before anything is made
        tree = unpacked(spec.source) if spec.source is not None else None
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _compile(spec, tmp, tree)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / ".spec.json").write_text(spec.stamp())
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def _rename_to_binary_names(spec: GoBuild, directory: Path) -> None:
    for binary, package in spec.binaries.items():
        if default_binary_name(package) != binary:
            (directory / default_binary_name(package)).rename(directory / binary)


def _compile(spec: GoBuild, tmp: Path, tree: Path | None) -> None:
    env = _env(spec)
    flags = ["-trimpath"]
    if spec.tags:
        flags += ["-tags", ",".join(spec.tags)]
    if spec.ldflags:
        flags += ["-ldflags", spec.ldflags]
    if tree is not None:
        log(f"  compiling {', '.join(spec.binaries)} in {tree}")
        run(["go", "build", *flags, "-o", f"{tmp}/", *spec.binaries.values()], cwd=tree, env=env)
        _rename_to_binary_names(spec, tmp)
        for program, directory in spec.c_programs.items():
            log(f"  compiling {program} (static C)")
            sources = sorted(str(c) for c in (tree / directory / "src").glob("*.c"))
            cflags = ["-std=c99", "-Os", "-Wall", "-Werror", "-Wextra", "-static", "-O3"]
            run(["gcc", *cflags, "-o", tmp / program, *sources])
            run(["strip", "-s", tmp / program])
    elif spec.needs_wrapper:
        src = GO_CACHE / "src" / f"{spec.name}-{spec.version}"
        src.mkdir(parents=True, exist_ok=True)
        lines = [f"module lab.local/build/{spec.name}", "", "go 1.22", ""]
        lines += [f"replace {m} => {m} {v}" for m, v in sorted(spec.replace.items())]
        (src / "go.mod").write_text("\n".join(lines) + "\n")
        run(["go", "get", f"{spec.module}@{spec.version}"], cwd=src, env=env)
        if spec.binaries:
            # One `go build` for all packages: they share compiled dependencies
            # and link in parallel. Binaries are named after their package.
            log(f"  compiling {', '.join(spec.binaries)}")
            run(["go", "build", *flags, "-o", f"{tmp}/", *spec.binaries.values()], cwd=src, env=env)
            _rename_to_binary_names(spec, tmp)
        for binary, package in spec.test_binaries.items():
            log(f"  compiling {binary} (go test -c {package})")
            run(["go", "test", "-c", *flags, "-o", tmp / binary, package], cwd=src, env=env)
    else:
        env["GOBIN"] = str(tmp)
        for binary, package in spec.binaries.items():
            log(f"  compiling {binary}")
            run(["go", "install", *flags, f"{package}@{spec.version}"], env=env)
            built = tmp / default_binary_name(package)
            if built.name != binary:
                built.rename(tmp / binary)
    missing = [binary for binary in spec.outputs if not (tmp / binary).is_file()]
    if missing:
        # e.g. a package that is not `main`: go build compiles it and writes nothing
        raise ValueError(f"go build wrote no {', '.join(missing)}")


def link_into_bin(directory: Path, names: list[str] | None = None) -> None:
    """Point CACHE/bin/<name> at the pinned builds (what PATH sees)."""
    BIN.mkdir(parents=True, exist_ok=True)
    for binary in names or [p.name for p in directory.iterdir() if p.is_file() and os.access(p, os.X_OK)]:
        link = BIN / binary
        target = directory / binary
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
