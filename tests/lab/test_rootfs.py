"""The Debian mirror debootstrap and the mirror's Debian subset use: LAB_DEBIAN_MIRROR,
else the one the host's own apt sources fetch bookworm main from, else deb.debian.org."""

from __future__ import annotations

from pathlib import Path

from lab.nodes.rootfs import DEFAULT_DEBIAN_MIRROR, debian_mirror, host_debian_mirrors

COMPANY = "http://apt.example.internal/debian"

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def apt_etc(tmp_path: Path, sources_list: str | None = None, **parts: str) -> Path:
    """An /etc/apt with sources.list and sources.list.d/<name> (name_list -> name.list)."""
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (etc / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        stem, _, suffix = name.rpartition("_")
        (etc / "sources.list.d" / f"{stem}.{suffix}").write_text(text)
    return etc


def mirror(etc: Path, environ: dict[str, str] | None = None) -> str:
    return debian_mirror("bookworm", apt_etc=etc, environ=environ or {})


def test_debian_host_with_deb822_sources(tmp_path: Path):
    etc = apt_etc(tmp_path, debian_sources=DEB822)
    assert mirror(etc) == "http://deb.debian.org/debian"
    assert host_debian_mirrors("bookworm-security", etc) == ["http://deb.debian.org/debian-security"]


def test_a_company_mirror_in_deb822(tmp_path: Path):
    sources = DEB822.replace("http://deb.debian.org/debian\n", f"{COMPANY}/\n")
    assert mirror(apt_etc(tmp_path, debian_sources=sources)) == COMPANY


def test_deb822_fields_are_case_insensitive_and_may_continue_on_the_next_line(tmp_path: Path):
    sources = f"types: deb deb-src\nuris:\n  {COMPANY}\nsuites: bookworm\ncomponents: main contrib\n"
    assert mirror(apt_etc(tmp_path, company_sources=sources)) == COMPANY


def test_one_line_sources_list_with_options(tmp_path: Path):
    sources_list = (
        "# a comment\n"
        f"deb-src {COMPANY}-src bookworm main\n"
        f"deb [arch=amd64 signed-by=/usr/share/keyrings/company.gpg] {COMPANY}/ bookworm main contrib\n"
    )
    assert mirror(apt_etc(tmp_path, sources_list)) == COMPANY


def test_options_with_spaces_inside_the_brackets(tmp_path: Path):
    assert mirror(apt_etc(tmp_path, f"deb [ arch=amd64 ] {COMPANY} bookworm main # why\n")) == COMPANY


def test_only_the_suite_itself_and_its_main_component(tmp_path: Path):
    sources_list = (
        "deb http://updates.example/debian bookworm-updates main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb http://contrib.example/debian bookworm contrib non-free\n"
        "deb http://trixie.example/debian trixie main\n"
        f"deb {COMPANY} bookworm main\n"
    )
    assert mirror(apt_etc(tmp_path, sources_list)) == COMPANY


def test_disabled_stanzas_and_schemes_debootstrap_cannot_fetch_are_passed_over(tmp_path: Path):
    disabled = "Enabled: no\nTypes: deb\nURIs: http://old.example/debian\nSuites: bookworm\nComponents: main\n"
    cdrom = "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\ndeb mirror+file:/etc/apt/mirrors.txt bookworm main\n"
    etc = apt_etc(tmp_path, cdrom, a_sources=disabled, b_sources=DEB822.replace("http://deb.debian.org", "https://x"))
    assert mirror(etc) == "https://x/debian"


def test_apt_order_sources_list_first_then_the_parts_by_name(tmp_path: Path):
    etc = apt_etc(
        tmp_path,
        f"deb {COMPANY} bookworm main\n",
        a_list="deb http://a.example/debian bookworm main\n",
        b_sources=DEB822,
    )
    assert host_debian_mirrors("bookworm", etc) == [COMPANY, "http://a.example/debian", "http://deb.debian.org/debian"]


def test_files_of_other_extensions_are_not_sources(tmp_path: Path):
    etc = apt_etc(tmp_path, company_disabled=f"deb {COMPANY} bookworm main\n")
    assert mirror(etc) == DEFAULT_DEBIAN_MIRROR


def test_the_setting_overrides_the_host(tmp_path: Path):
    etc = apt_etc(tmp_path, debian_sources=DEB822)
    assert mirror(etc, {"LAB_DEBIAN_MIRROR": f"{COMPANY}/"}) == COMPANY
    assert mirror(etc, {"LAB_DEBIAN_MIRROR": ""}) == "http://deb.debian.org/debian"


def test_deb_debian_org_when_nothing_names_a_mirror(tmp_path: Path):
    assert mirror(tmp_path / "no-such-dir") == DEFAULT_DEBIAN_MIRROR == "http://deb.debian.org/debian"
    assert mirror(apt_etc(tmp_path, "")) == DEFAULT_DEBIAN_MIRROR
