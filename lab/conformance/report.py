"""What a conformance run did: e2e.test's JUnit XML (ginkgo v2) read into a
Report of Results, as reports/conformance.json and the summary printed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Result:
    name: str
    # passed | failed | skipped (selected, but skipped itself at run time);
    # selected in a dry run, which runs nothing
    state: str
    seconds: float
    message: str = ""


@dataclass
class Report:
    suite_succeeded: bool
    seconds: float
    focus: str
    skip: str
    # specs the focus/skip filters left out (ginkgo reports them as skipped)
    not_selected: int
    tests: list[Result] = field(default_factory=list)
    # the suite's own nodes ([SynchronizedBeforeSuite], ...) that failed: a
    # failed setup skips every test, which must not look like a clean run
    suite_failures: list[Result] = field(default_factory=list)
    dry_run: bool = False

    def names(self, state: str) -> list[str]:
        return [test.name for test in self.tests if test.state == state]

    @property
    def ok(self) -> bool:
        """Something ran and nothing failed."""
        ran = any(test.state == "passed" for test in self.tests)
        return ran and not self.names("failed") and not self.suite_failures and self.suite_succeeded

    def as_json(self) -> dict[str, object]:
        return {
            "passed": len(self.names("passed")),
            "failed": len(self.names("failed")),
            "skipped": len(self.names("skipped")),
            "not_selected": self.not_selected,
            "selected": len(self.names("selected")),
            "dry_run": self.dry_run,
            "suite_succeeded": self.suite_succeeded,
            "seconds": self.seconds,
            "focus": self.focus,
            "skip": self.skip,
            "tests": [asdict(test) for test in self.tests],
            "suite_failures": [asdict(test) for test in self.suite_failures],
        }


# ginkgo's SpecState names (the JUnit status attribute) that mean a failure
FAILED_STATES = {"failed", "panicked", "interrupted", "aborted", "timedout"}


def _message(case: ET.Element) -> str:
    for tag in ("failure", "error"):
        element = case.find(tag)
        if element is not None:
            # e2e.test leaves the message attribute empty and puts the
            # message, location and stack into the text
            return (element.text or element.get("message") or "").strip()
    return ""


def parse_junit(text: str, *, focus: str = "", skip: str = "", dry_run: bool = False) -> Report:
    """The report of one e2e.test run, from the JUnit XML ginkgo v2 wrote for it.

    A dry run reports what it would run as passed; here those are "selected"."""
    root = ET.fromstring(text)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if not suites:
        raise ValueError("JUnit XML without a testsuite")
    report = Report(suite_succeeded=True, seconds=0.0, focus=focus, skip=skip, not_selected=0, dry_run=dry_run)
    for suite in suites:
        report.seconds += float(suite.get("time", "0"))
        properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
        if properties.get("SuiteSucceeded") == "false":
            report.suite_succeeded = False
        for case in suite.findall("testcase"):
            raw_name = case.get("name", "")
            status = case.get("status", "")
            seconds = round(float(case.get("time", "0")), 3)
            if not raw_name.startswith("[It] "):
                # [SynchronizedBeforeSuite], [ReportAfterSuite], ...
                if status in FAILED_STATES:
                    report.suite_failures.append(Result(raw_name, "failed", seconds, _message(case)))
                continue
            name = raw_name.removeprefix("[It] ")
            if status == "passed":
                report.tests.append(Result(name, "selected" if dry_run else "passed", seconds))
            elif status in FAILED_STATES:
                report.tests.append(Result(name, "failed", seconds, _message(case)))
            elif status in ("skipped", "pending"):
                skipped = case.find("skipped")
                message = skipped.get("message", "") if skipped is not None else ""
                # "skipped - REASON" when the test skipped itself; plain
                # "skipped" (or "pending") when the filters left it out
                if message.startswith("skipped - "):
                    report.tests.append(Result(name, "skipped", seconds, message.removeprefix("skipped - ")))
                else:
                    report.not_selected += 1
            else:
                raise ValueError(f"unknown test status {status!r} of {name}")
    return report


def summary_lines(report: Report) -> list[str]:
    if report.dry_run:
        selected = report.names("selected")
        return [f"dry run: {len(selected)} selected, {report.not_selected} not selected", *(f"  {n}" for n in selected)]
    lines = [
        f"conformance: {len(report.names('passed'))} passed, {len(report.names('failed'))} failed, "
        f"{len(report.names('skipped'))} skipped, {report.not_selected} not selected, "
        f"{report.seconds / 60:.1f} min",
    ]
    for failure in report.suite_failures:
        lines.append(f"  SUITE FAILED {failure.name}: {failure.message.splitlines()[0] if failure.message else ''}")
    for test in report.tests:
        if test.state == "failed":
            first = test.message.splitlines()[0] if test.message else ""
            lines.append(f"  FAILED  {test.name} ({test.seconds:.0f}s): {first}")
    for test in report.tests:
        if test.state == "skipped":
            lines.append(f"  skipped {test.name}: {test.message}")
    slowest = sorted((t for t in report.tests if t.state == "passed"), key=lambda t: -t.seconds)[:5]
    if slowest:
        lines.append("  slowest passed: " + "; ".join(f"{t.name} {t.seconds:.0f}s" for t in slowest))
    if not report.tests:
        lines.append("  no test ran: the focus selected nothing, or the suite failed before the tests")
    return lines
