"""`make conformance`: Kubernetes' own 1.29 [Conformance] suite against the lab cluster.

Tests nobody here wrote, as an outside judge of the roles. Steps:
1. build e2e.test and ginkgo from the pinned Kubernetes tag
   (lab.mirror.builds.KUBERNETES_E2E, cached by version) and take kubectl from the mirror's build;
2. build the images the tests run and push them to the lab registry
   (lab.conformance.images); KUBE_TEST_REPO_LIST, the suite's own override,
   points their registries there;
3. run e2e.test through ginkgo as the upstream conformance image does
   (test/conformance/image/run_e2e.sh): --provider=local, --disable-log-dump,
   the lab's kubeconfig, --focus '\\[Conformance\\]' unless --focus narrows it,
   --skip (`make conformance FOCUS=regex SKIP=regex` passes them; the command
   reads no environment variable for them);
4. parse the JUnit XML e2e.test writes (reports/conformance/junit_01.xml) into
   reports/conformance.json and print a summary. The exit status is 1 when a
   selected test failed or none ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lab.conformance.report import parse_junit, summary_lines
from lab.mirror import builds
from lab.mirror.gobuild import build
from lab.paths import REPORTS
from lab.run import StepFailed, log, run, step

DEFAULT_FOCUS = r"\[Conformance\]"
REPORT_DIR = REPORTS / "conformance"
REPORT_JSON = REPORTS / "conformance.json"
# a dry run must not overwrite the reports of a real run
DRY_RUN_DIR = REPORTS / "conformance-dry-run"
DRY_RUN_JSON = REPORTS / "conformance-dry-run.json"
# e2e.test's own name for its JUnit report in --report-dir
JUNIT_NAME = "junit_01.xml"
# ginkgo's default of 1 h would stop a full run on 2 cores; upstream's runner sets 24 h
SUITE_TIMEOUT = "24h"

# Tests that cannot run on the lab (offline, nspawn nodes, ...): exact name
# (as the report prints it, without "[It] ") -> why. Skipped by default and
# listed in docs/conformance.md; a failure that points at the roles is fixed there,
# never added here.
LAB_SKIPS: dict[str, str] = {}


def skip_regex(skips: dict[str, str]) -> str:
    """A ginkgo --skip regex matching exactly the named tests."""
    return "|".join(re.escape(name) for name in sorted(skips))


def focus_regex(names: list[str]) -> str:
    """A ginkgo --focus regex matching the named tests (and names that contain one)."""
    return "|".join(re.escape(name) for name in names)


def effective_skip(skip: str | None, procs: int) -> str:
    """The --skip ginkgo gets: the given regex (None: LAB_SKIPS), plus [Serial] when tests run in parallel."""
    regex = skip if skip is not None else skip_regex(LAB_SKIPS)
    if procs > 1:
        # as upstream's runner does: a serial test must not share the cluster with others
        regex = "|".join(filter(None, [regex, r"\[Serial\]"]))
    return regex


# ------------------------------------------------------------------ running the suite


def ginkgo_argv(
    *,
    ginkgo: Path,
    e2e_test: Path,
    kubeconfig: Path,
    kubectl: Path,
    repo_root: Path,
    report_dir: Path,
    focus: str,
    skip: str,
    procs: int = 1,
    timeout: str = SUITE_TIMEOUT,
    dry_run: bool = False,
    verbose: bool = False,
) -> list[str]:
    """ginkgo and e2e.test flags as the upstream conformance image passes them (run_e2e.sh)."""
    argv = [str(ginkgo), f"--focus={focus}", f"--skip={skip}", "--no-color", f"--timeout={timeout}"]
    if procs > 1:
        argv.append(f"--procs={procs}")
    if dry_run:
        argv.append("--dry-run")
    if verbose:
        argv.append("-v")
    argv += [
        str(e2e_test),
        "--",
        f"--kubeconfig={kubeconfig}",
        "--provider=local",
        f"--report-dir={report_dir}",
        # there is no SSH-reachable log collection in this setup
        "--disable-log-dump",
        # e2e.test reads a few files (test data) from the source tree
        f"--repo-root={repo_root}",
        f"--kubectl-path={kubectl}",
    ]
    return argv


def _tee(argv: list[str], env: dict[str, str], log_file: Path) -> int:
    """Run argv (no shell), its output to the terminal and to log_file; return its exit status."""
    with (
        open(log_file, "wb") as out,
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process,
    ):
        assert process.stdout is not None
        # chunks, not lines: ginkgo prints one progress mark per test on a line of its own
        while chunk := process.stdout.read1(65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            out.write(chunk)
        return process.wait()


def parser() -> argparse.ArgumentParser:
    from lab.cluster import KUBECONFIG

    p = argparse.ArgumentParser(prog="make conformance", description=__doc__.splitlines()[0])
    p.add_argument(
        "--focus",
        default=DEFAULT_FOCUS,
        help=r"ginkgo --focus regex (make conformance FOCUS=...; default '\[Conformance\]')",
    )
    p.add_argument(
        "--skip",
        default=None,
        help="ginkgo --skip regex (make conformance SKIP=...; default: the tests the lab cannot run, LAB_SKIPS)",
    )
    p.add_argument("--kubeconfig", type=Path, default=KUBECONFIG, help=f"default {KUBECONFIG}")
    p.add_argument("--procs", type=int, default=1, help="ginkgo parallel processes; >1 also skips [Serial]")
    p.add_argument(
        "--timeout",
        default=SUITE_TIMEOUT,
        help=f"ginkgo --timeout (default {SUITE_TIMEOUT}): past it the running tests are interrupted and "
        "the report still written, with what ran",
    )
    p.add_argument("--dry-run", action="store_true", help="list what the filters select without running it")
    p.add_argument("--verbose", action="store_true", help="ginkgo -v: every test's name and log as it runs")
    p.add_argument("--build-only", action="store_true", help="build e2e.test, ginkgo and the images, run nothing")
    p.add_argument("--report-dir", type=Path, help=f"e2e.test's JUnit and log; default {REPORT_DIR} ({DRY_RUN_DIR})")
    p.add_argument("--report", type=Path, help=f"default {REPORT_JSON} ({DRY_RUN_JSON} for a dry run)")
    return p


def write_repo_list(path: Path) -> Path:
    from lab.conformance.images import repo_list

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(repo_list(), sort_keys=True, explicit_start=True))
    return path


def conformance_command(args: list[str]) -> int:
    from lab.conformance.images import build_test_images
    from lab.mirror.images import kubernetes_source

    options = parser().parse_args(args)
    # absolute: ginkgo runs e2e.test in the binary's directory
    report_path: Path = (options.report or (DRY_RUN_JSON if options.dry_run else REPORT_JSON)).resolve()
    report_dir: Path = (options.report_dir or (DRY_RUN_DIR if options.dry_run else REPORT_DIR)).resolve()
    kubeconfig: Path = options.kubeconfig.resolve()
    skip = effective_skip(options.skip, options.procs)
    suite = build(builds.KUBERNETES_E2E)
    kubectl = build(builds.KUBERNETES) / "kubectl"
    with step("check ginkgo's version"):
        version = run([suite / "ginkgo", "version"], capture=True).stdout.strip()
        if builds.GINKGO_VERSION.lstrip("v") not in version:
            raise ValueError(f"ginkgo says {version!r}, Kubernetes requires {builds.GINKGO_VERSION}")
    if not options.dry_run:
        build_test_images()
    if options.build_only:
        log(f"built {suite / 'e2e.test'}, {suite / 'ginkgo'} and the test images")
        return 0
    if not options.dry_run and not kubeconfig.is_file():
        raise StepFailed(f"no kubeconfig at {kubeconfig}: build the lab cluster first (make demo)")
    report_dir.mkdir(parents=True, exist_ok=True)
    junit = report_dir / JUNIT_NAME
    junit.unlink(missing_ok=True)  # never report an earlier run
    repo_list = write_repo_list(report_dir / "repo-list.yaml")
    argv = ginkgo_argv(
        ginkgo=suite / "ginkgo",
        e2e_test=suite / "e2e.test",
        kubeconfig=kubeconfig,
        kubectl=kubectl,
        repo_root=kubernetes_source(),
        report_dir=report_dir,
        focus=options.focus,
        skip=skip,
        procs=options.procs,
        timeout=options.timeout,
        dry_run=options.dry_run,
        verbose=options.verbose,
    )
    env = dict(os.environ, KUBE_TEST_REPO_LIST=str(repo_list), KUBECONFIG=str(kubeconfig))
    log(f"KUBE_TEST_REPO_LIST: {json.dumps(yaml.safe_load(repo_list.read_text()))}")
    log(f"running: KUBE_TEST_REPO_LIST={repo_list} {shlex.join(argv)}")
    started = time.monotonic()
    with step(f"e2e.test --focus {options.focus!r} --skip {skip!r}"):
        status = _tee(argv, env, report_dir / "e2e.log")
    log(f"ginkgo exited {status} after {(time.monotonic() - started) / 60:.1f} min")
    if not junit.is_file():
        raise StepFailed(f"e2e.test wrote no {junit} (exit status {status}): see {report_dir / 'e2e.log'}")
    with step(f"write {report_path}"):
        report = parse_junit(junit.read_text(), focus=options.focus, skip=skip, dry_run=options.dry_run)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    for line in summary_lines(report):
        print(line)
    log(f"wrote {report_path}, {junit} and {report_dir / 'e2e.log'}")
    if options.dry_run:
        return 0
    return 0 if report.ok else 1
