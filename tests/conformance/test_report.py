"""reports/conformance.json from the JUnit XML e2e.test writes, and the command line it is run with.

The fixtures are real: JUnit written by ginkgo v2.13.0 (the version
Kubernetes v1.29.15 requires) with e2e.test's reporter configuration
(test/e2e/framework/internal/junit), for a small suite with the same kinds of
outcome (fixtures/README.md says how they were made).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.conformance.images import IMAGES, pull_reference, repo_list
from lab.conformance.report import parse_junit, summary_lines
from lab.conformance.runner import DEFAULT_FOCUS, effective_skip, focus_regex, ginkgo_argv, parser, skip_regex

FIXTURES = Path(__file__).parent / "fixtures"
PASSED = "[sig-network] DNS should provide DNS for the cluster [Conformance]"
FAILED = "[sig-network] DNS should provide DNS for services [Conformance]"
SKIPPED = "[sig-architecture] Conformance Tests should have at least two untainted nodes [Conformance]"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_a_mixed_run_lists_each_selected_test_with_its_outcome_duration_and_message():
    report = parse_junit(fixture("junit_mixed.xml"), focus=DEFAULT_FOCUS)
    assert report.names("passed") == [PASSED]
    assert report.names("failed") == [FAILED]
    assert report.names("skipped") == [SKIPPED]
    # the one test the focus left out is counted, not listed
    assert report.not_selected == 1
    tests = {test.name: test for test in report.tests}
    assert tests[PASSED].seconds >= 1.2  # it sleeps 1.2 s
    assert "DNS lookups of dns-test-service failed" in tests[FAILED].message
    assert tests[SKIPPED].message == "Requires at least 2 nodes (not 1)"
    assert not report.ok


def test_the_json_report_has_counts_and_every_test():
    data = parse_junit(fixture("junit_mixed.xml"), focus=DEFAULT_FOCUS, skip="").as_json()
    assert (data["passed"], data["failed"], data["skipped"], data["not_selected"]) == (1, 1, 1, 1)
    assert data["focus"] == DEFAULT_FOCUS
    assert {test["name"] for test in data["tests"]} == {PASSED, FAILED, SKIPPED}
    assert all({"name", "state", "seconds", "message"} <= set(test) for test in data["tests"])
    assert data["seconds"] > 0


def test_a_clean_run_is_ok():
    report = parse_junit(fixture("junit_passed.xml"))
    assert report.names("passed") == [PASSED]
    assert report.ok
    assert summary_lines(report)[0].startswith("conformance: 1 passed, 0 failed, 0 skipped, 3 not selected")


def test_a_failed_suite_setup_is_a_failure_even_though_no_test_failed():
    # e2e.test checks the cluster before any test; when that fails every test
    # is reported as skipped
    report = parse_junit(fixture("junit_setup_failed.xml"))
    assert report.names("failed") == []
    assert report.names("passed") == []
    assert [failure.name for failure in report.suite_failures] == ["[SynchronizedBeforeSuite]"]
    assert "no such file or directory" in report.suite_failures[0].message
    assert not report.ok
    assert any("SUITE FAILED [SynchronizedBeforeSuite]" in line for line in summary_lines(report))


def test_a_focus_that_selects_nothing_is_not_ok():
    report = parse_junit(fixture("junit_nothing_selected.xml"))
    assert report.tests == []
    assert report.not_selected == 4
    assert not report.ok
    assert "no test ran" in "\n".join(summary_lines(report))


def test_a_dry_run_selects_without_claiming_anything_passed():
    report = parse_junit(fixture("junit_dry_run.xml"), dry_run=True)
    assert sorted(report.names("selected")) == sorted([PASSED, FAILED, SKIPPED])
    assert report.names("passed") == []
    data = report.as_json()
    assert (data["selected"], data["passed"], data["dry_run"]) == (3, 0, True)
    assert summary_lines(report)[0] == "dry run: 3 selected, 1 not selected"


def test_the_summary_names_each_failure_with_its_first_line():
    lines = summary_lines(parse_junit(fixture("junit_mixed.xml")))
    failed = [line for line in lines if line.startswith("  FAILED")]
    assert len(failed) == 1
    assert FAILED in failed[0]
    assert "DNS lookups of dns-test-service failed" in failed[0]


def test_unknown_statuses_are_refused_rather_than_counted_as_passed():
    text = fixture("junit_passed.xml").replace('status="passed"', 'status="flaked"')
    with pytest.raises(ValueError, match="unknown test status"):
        parse_junit(text)


@pytest.mark.parametrize(
    "names",
    [
        [PASSED],
        [PASSED, FAILED],
        [
            "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http "
            "[NodeConformance] [Conformance]"
        ],
    ],
)
def test_focus_and_skip_regexes_match_exactly_the_named_tests(names: list[str]):
    others = [SKIPPED, "[sig-network] DNS should provide DNS for services", "DNS should provide DNS for the cluster"]
    for regex in (focus_regex(names), skip_regex(dict.fromkeys(names, "why"))):
        assert all(re.search(regex, name) for name in names)
        assert not any(re.search(regex, other) for other in others if other not in names)


def test_no_lab_skip_means_an_empty_skip_regex():
    # an empty --skip skips nothing; a regex like "()" would skip everything
    assert skip_regex({}) == ""


def test_parallel_runs_leave_serial_tests_out_and_keep_the_given_skip():
    assert effective_skip("", 1) == ""
    assert effective_skip(None, 1) == skip_regex({})  # LAB_SKIPS
    assert effective_skip("", 4) == r"\[Serial\]"
    parallel = effective_skip(r"\[Slow\]", 4)
    assert re.search(parallel, "[sig-apps] Daemon set [Serial] should rollback without unnecessary restarts")
    assert re.search(parallel, "[sig-apps] CronJob should schedule jobs [Slow]")
    assert not re.search(parallel, PASSED)


def test_e2e_test_gets_the_flags_of_upstreams_conformance_runner(tmp_path: Path):
    argv = ginkgo_argv(
        ginkgo=tmp_path / "ginkgo",
        e2e_test=tmp_path / "e2e.test",
        kubeconfig=tmp_path / "kubeconfig",
        kubectl=tmp_path / "kubectl",
        repo_root=tmp_path / "kubernetes",
        report_dir=tmp_path / "reports",
        focus=DEFAULT_FOCUS,
        skip="",
    )
    separator = argv.index("--")
    ginkgo_flags, e2e_flags = argv[1:separator], argv[separator + 1 :]
    assert argv[separator - 1] == str(tmp_path / "e2e.test")
    assert {f"--focus={DEFAULT_FOCUS}", "--skip=", "--timeout=24h", "--no-color"} <= set(ginkgo_flags)
    assert not any(flag.startswith("--procs") for flag in ginkgo_flags)  # serial, as certified runs
    assert {
        f"--kubeconfig={tmp_path / 'kubeconfig'}",
        "--provider=local",
        f"--report-dir={tmp_path / 'reports'}",
        "--disable-log-dump",
        f"--kubectl-path={tmp_path / 'kubectl'}",
    } <= set(e2e_flags)


def test_every_image_is_pulled_from_where_it_is_pushed():
    # what e2e.test composes from KUBE_TEST_REPO_LIST must be the lab
    # registry's name for what lab.conformance.images pushes
    repos = repo_list("10.77.0.1:5000")
    for image in IMAGES:
        assert pull_reference(image, repos) == f"10.77.0.1:5000/{image.reference}"
    assert len({image.reference for image in IMAGES}) == len(IMAGES)


def test_the_command_reads_focus_and_skip_from_its_flags_only(monkeypatch: pytest.MonkeyPatch):
    # an exported SKIP (pre-commit uses the name) must not narrow `make conformance`
    monkeypatch.setenv("FOCUS", "exported")
    monkeypatch.setenv("SKIP", "exported")
    options = parser().parse_args([])
    assert (options.focus, options.skip) == (DEFAULT_FOCUS, None)
    options = parser().parse_args(["--focus=a", "--skip=b"])
    assert (options.focus, options.skip) == ("a", "b")
