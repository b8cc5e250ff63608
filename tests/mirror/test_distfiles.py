"""The pinned source tarballs (lab.mirror.distfiles): a missing or altered one is refused before
anything is unpacked or built, and nothing half-made is left in the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.mirror import builds, distfiles
from tests.conftest import VENV_BIN, run_tool

pytestmark = pytest.mark.mirror

SOURCE_BUILDS = [spec for spec in builds.MIRROR_BUILDS if spec.source is not None]


def build_in(cache: Path, sources: Path, spec_name: str):
    """Build one spec in a throwaway cache, the way `make mirror` would."""
    code = f"from lab.mirror import builds; from lab.mirror.gobuild import build; build(builds.{spec_name})"
    return run_tool(
        [VENV_BIN / "python", "-c", code],
        check=False,
        LAB_CACHE=str(cache),
        LAB_DISTFILES=str(sources),
    )


def spec_variable(spec) -> str:
    return next(name for name, value in vars(builds).items() if value is spec)


@pytest.mark.parametrize("spec", SOURCE_BUILDS, ids=lambda spec: spec.name)
def test_the_pinned_tarball_matches_its_checksum(spec):
    assert distfiles.verified(spec.source) == spec.source.path


@pytest.mark.parametrize("spec", SOURCE_BUILDS, ids=lambda spec: spec.name)
def test_an_altered_tarball_is_refused_and_nothing_is_left(spec, tmp_path):
    sources, cache = tmp_path / "distfiles", tmp_path / "cache"
    sources.mkdir()
    altered = sources / spec.source.filename
    shutil.copyfile(spec.source.path, altered)
    with altered.open("r+b") as file:  # one byte flipped in the middle
        file.seek(altered.stat().st_size // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0xFF]))
    result = build_in(cache, sources, spec_variable(spec))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert str(altered) in output and f"expected {spec.source.sha256}" in output, output[-2000:]
    assert distfiles.sha256_of(altered) in output
    left = [p for p in cache.rglob("*") if p.name.startswith((spec.source.top, f"{spec.name}-"))]
    assert left == [], left  # no unpacked tree, no build directory


@pytest.mark.parametrize("spec", SOURCE_BUILDS, ids=lambda spec: spec.name)
def test_a_missing_tarball_names_the_file_and_the_setting(spec, tmp_path):
    result = build_in(tmp_path / "cache", tmp_path / "empty", spec_variable(spec))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{tmp_path / 'empty' / spec.source.filename} is missing" in output, output[-2000:]
    assert "LAB_DISTFILES" in output and spec.source.tag in output
