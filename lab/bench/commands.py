"""`make bench-rollout`: rolling updates under load on the lab cluster, measured.

Each variant probes the app at a constant rate (lab.bench.prober): through the
lab's load balancer when it runs (--via nodeport: a worker's NodePort directly), from
15 s before the upgrade starts until 15 s after the last old pod is gone, while
a Pod watcher records when the old pods go. Variants, all in one run:

- project/new, project/keepalive: `ansible-playbook deploy.yml` with a new
  message, probed with a new connection per request and with keep-alive;
- control/new: the seed's configuration (lab/bench/seed_chart: Flask development
  server, probes on /version after 5 s, no preStop, default strategy) from the
  same image, rolled the same way with `helm upgrade --wait`, to show that the
  prober sees downtime when there is some;
- with --service-policies Cluster,Local: the project's variants once per Service
  externalTrafficPolicy (project-cluster/*, project-local/*), and the worker
  outage too, so the two are compared on the same cluster in one run;
- project/bad-release: deploy.yml with a release whose pods never become ready;
  it must fail, Helm must roll back, and only the old message may be served.

With --worker-outage (about 3 more minutes; it stops a node, so not by default), one more
measurement: a worker that runs one of the app's pods is powered off hard
while every path is probed at once (--outage-paths: the load balancer with new
connections and keep-alive; as controls, a worker that stays up and the dead
one, directly at their NodePort), until the app has its replicas ready on the
nodes that are up again; then the worker is started again.

Writes reports/rollout.json (per variant: requests, errors, error kinds,
rollout seconds, mixed-message seconds, ...), reports/rollout.png and one CSV
per variant with every request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lab.bench.outage import PATHS, measure_worker_outage, print_outage
from lab.bench.report import plot, print_summary, write_csv
from lab.bench.rollout import Rollout, deploy_playbook, helm_control_argv, measure, run_deploy
from lab.bench.watchers import PodWatcher
from lab.cluster import CONTROL, KUBECONFIG, PROJECT, get_message, worker_address
from lab.mirror.tools import tool_env
from lab.nodes import balancer
from lab.nodes.topology import Lab
from lab.paths import REPO, REPORTS
from lab.playbook import play_recap
from lab.run import StepFailed, log, run, step

# The project before the rollout-speed work (maxSurge 1, minReadySeconds 5,
# readiness every 2 s, every wait of the role on every run): what
# `make bench-rollout` compares the working tree with, in the same run.
BASELINE_REF = "fb930702dfdc4062c179a7db0da914e2980852a3"

# deploy.yml with an unchanged message takes a few seconds, and this machine is
# noisy: the median of a few runs, and the longest.
UNCHANGED_RUNS = 3


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A detached worktree of ref (its deploy.yml, roles and chart), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    run(["git", "-C", REPO, "worktree", "add", "--detach", "--force", path, ref], capture=True)
    try:
        yield path
    finally:
        run(["git", "-C", REPO, "worktree", "remove", "--force", path], check=False, capture=True)
        shutil.rmtree(path, ignore_errors=True)


def project_configurations(options: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """The project's configurations to measure: as the inventory sets it, or once per
    --service-policies entry (`project-local`, `project-cluster`), in the order given."""
    if not options.service_policies:
        return [("project", ())]
    return [
        (f"project-{policy.lower()}", ("-e", f"app_service_external_traffic_policy={policy}"))
        for policy in options.service_policies
    ]


def time_unchanged(
    message: str, tree: Path, extra: tuple[str, ...] = (), runs: int = UNCHANGED_RUNS
) -> dict[str, object]:
    """deploy.yml of tree, `runs` times, with the message the app serves already: seconds
    (each run, median, longest), changed tasks (the most any run reported)."""
    seconds, changed, exit_codes = [], [], []
    for _ in range(runs):
        started = time.monotonic()
        result = run_deploy(message, *extra, tree=tree, check=False)
        seconds.append(round(time.monotonic() - started, 2))
        changed.append(play_recap(result.stdout).get("localhost", {}).get("changed"))
        exit_codes.append(result.returncode)
    return {
        "seconds": statistics.median(seconds),
        "longest": max(seconds),
        "runs": seconds,
        "changed": max((c for c in changed if c is not None), default=None),
        "exit_code": max(exit_codes),
    }


def bench_rollout(options: argparse.Namespace) -> list[dict[str, object]]:
    kubeconfig = Path(options.kubeconfig)
    if not kubeconfig.is_file():
        raise StepFailed(f"no kubeconfig at {kubeconfig}: build the lab cluster first (make demo)")
    host = options.host or worker_address()
    # the project's rollouts through the balancer when asked and running; the control is never behind it
    balanced = balancer.endpoint(Lab.from_env()) if options.via == "balancer" else None
    app_host, app_port = balanced or (host, PROJECT.node_port)
    stamp = time.strftime("%H%M%S")
    measure_options = {
        "kubeconfig": kubeconfig,
        "rate": options.rate,
        "before": options.before,
        "after": options.after,
    }
    results: list[Rollout] = []

    current = get_message(app_host, app_port)
    if current is None:
        with step(f"deploy the app first (nothing answers at {app_host}:{app_port})"):
            run_deploy("hello-world")
        current = get_message(app_host, app_port)
        if current is None:
            raise StepFailed(f"http://{app_host}:{app_port}/version does not answer after deploy.yml")

    unchanged: dict[str, dict[str, object]] = {}
    with contextlib.ExitStack() as checkouts:
        # (name, tree, modes, extra deploy.yml arguments)
        configurations: list[tuple[str, Path, list[str], tuple[str, ...]]] = []
        if options.baseline and options.baseline_modes:
            baseline = checkouts.enter_context(checkout(options.baseline))
            configurations.append(("baseline", baseline, options.baseline_modes, ()))
        configurations += [(name, REPO, options.modes, extra) for name, extra in project_configurations(options)]
        for name, tree, modes, extra in configurations:
            if not modes:
                continue
            with step(f"{name}: settle on its configuration (an unmeasured deploy.yml with the same message)"):
                run_deploy(current, *extra, tree=tree)
            for mode in modes:
                new = f"hola {name} {mode} {stamp}"
                with step(f"{name}/{mode}: deploy.yml rolls {current!r} -> {new!r} under {options.rate:.0f} req/s"):
                    rollout = Rollout(f"{name}/{mode}", PROJECT, mode, current, new, expect_success=True)
                    trigger = lambda new=new, tree=tree, extra=extra: deploy_playbook(new, *extra, tree=tree)  # noqa: E731
                    results.append(measure(rollout, trigger, host=app_host, port=app_port, **measure_options))
                    if rollout.trigger_rc != 0:
                        raise StepFailed(f"deploy.yml failed:\n{rollout.trigger_output[-3000:]}")
                    current = new
            with step(f"{name}: deploy.yml with the message it serves already"):
                unchanged[name] = time_unchanged(current, tree, extra)

    if options.control:
        old, new = f"seed before {stamp}", f"seed after {stamp}"
        with step(f"control: install the seed configuration with message {old!r}"):
            run(helm_control_argv(kubeconfig, old, options.image, install=True), env=tool_env(), capture=True)
        for mode in options.control_modes:
            with step(f"control/{mode}: helm upgrade rolls {old!r} -> {new!r} under {options.rate:.0f} req/s"):
                rollout = Rollout(f"control/{mode}", CONTROL, mode, old, new, expect_success=True)
                argv = helm_control_argv(kubeconfig, new, options.image, install=False)
                trigger = lambda argv=argv: subprocess.Popen(  # noqa: E731
                    argv, env=tool_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                results.append(measure(rollout, trigger, host=host, **measure_options))
                if rollout.trigger_rc != 0:
                    raise StepFailed(f"helm upgrade of the control failed:\n{rollout.trigger_output[-3000:]}")
                old, new = new, old
        if not options.keep_control:
            with step("remove the control release and its namespace"):
                run(["helm", "uninstall", CONTROL.release, "--kubeconfig", kubeconfig, "-n", CONTROL.namespace,
                     "--wait"], env=tool_env(), capture=True)  # fmt: skip
                PodWatcher(kubeconfig, CONTROL).api.delete_namespace(CONTROL.namespace)

    if options.bad_release:
        bad = f"never ready {stamp}"
        with step(f"project/bad-release: deploy.yml with pods that never become ready ({options.bad_timeout})"):
            rollout = Rollout("project/bad-release", PROJECT, "new", current, bad, expect_success=False)
            extra = ("-e", "app_fail_readiness=true", "-e", f"app_helm_timeout={options.bad_timeout}")
            bad_trigger = lambda: deploy_playbook(bad, *extra)  # noqa: E731
            results.append(measure(rollout, bad_trigger, host=app_host, port=app_port, **measure_options))  # type: ignore[arg-type]
            if rollout.trigger_rc == 0:
                raise StepFailed("deploy.yml succeeded with pods that never become ready")
            after = get_message(app_host, app_port)
            if after != current:
                raise StepFailed(f"after the rollback /version answers {after!r}, not {current!r}")

    outage = None
    outages: dict[str, dict[str, object]] = {}
    outages_by_configuration: dict[str, dict[str, dict[str, object]]] = {}
    if options.worker_outage:
        # The last configuration measured is the one the cluster is left with, and the page's
        # headline (give the inventory's choice last: --service-policies Cluster,Local).
        for name, extra in project_configurations(options):
            # A rollout first: its new pods spread one per worker (the chart's topology spread
            # counts only the new ReplicaSet's), while a dead worker's replacement, and so a former
            # outage, leaves every pod on the survivor, where losing that one node loses them all.
            current = f"outage {name} {stamp}"
            with step(f"{name}: spread the pods over the workers (deploy.yml rolls to {current!r})"):
                run_deploy(current, *extra)
            with step(f"{name}: worker outage, a worker with an app pod powered off under {options.rate:.0f} req/s"):
                measured = measure_worker_outage(
                    kubeconfig=kubeconfig,
                    message=current,
                    rate=options.rate,
                    before=options.before,
                    after=options.after,
                    paths=options.outage_paths,
                )
                REPORTS.mkdir(exist_ok=True)
                suffix = "" if name == "project" else f"-{name}"
                for each in measured:
                    csv = f"rollout-worker-outage{suffix}-{each.path.replace('/', '-')}.csv"
                    write_csv(REPORTS / csv, each.samples, each.poweroff_at)
                outages_by_configuration[name] = {
                    each.path: {**each.report(), "configuration": name} for each in measured
                }
        outages = list(outages_by_configuration.values())[-1]
        # the page's table: what a user sees (through the balancer when there is one)
        outage = outages.get("balancer/new") or next(iter(outages.values()))

    REPORTS.mkdir(exist_ok=True)
    reports = [r.report() for r in results]
    for rollout in results:
        write_csv(REPORTS / f"rollout-{rollout.variant.replace('/', '-')}.csv", rollout.samples, rollout.upgrade_start)
    path = REPORTS / "rollout.json"
    # A run of only the outage keeps the rollout variants of the last run (and the other way round).
    document = json.loads(path.read_text()) if path.is_file() and not (reports and outage) else {}
    if reports:
        document.update(
            {
                "rate_per_s": options.rate,
                "seconds_before_upgrade": options.before,
                "seconds_after_old_pods_gone": options.after,
                "timeout_s": 2.0,
                "host": f"{app_host}:{app_port} ({'the load balancer' if balanced else 'NodePort on a worker'})",
                "variants": {r["variant"]: r for r in reports},
                "deploy_with_the_same_message": unchanged,
                # named only when its variants were measured
                "baseline": options.baseline if options.baseline and options.baseline_modes else None,
            }
        )
        plot(reports, REPORTS / "rollout.png")
    if outage:
        document["worker_outage"] = outage
        document["worker_outage_paths"] = outages
        document["worker_outage_by_configuration"] = outages_by_configuration
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    for name, measured_paths in outages_by_configuration.items():
        print(f"worker outage, {name}:")
        for each in measured_paths.values():
            print_outage(each)
    for name, figures in unchanged.items():
        print(
            f"deploy.yml with the same message, {name}: median {figures['seconds']} s of {figures['runs']},"
            f" changed={figures['changed']}"
        )
    return reports


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make bench-rollout", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    p.add_argument("--before", type=float, default=15.0, help="seconds probed before the upgrade starts")
    p.add_argument("--after", type=float, default=15.0, help="seconds probed after the old pods are gone")
    p.add_argument(
        "--modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=["new", "keepalive"],
        help="project variants (empty: none)",
    )
    p.add_argument(
        "--baseline",
        default=BASELINE_REF,
        help="git ref whose deploy.yml, roles and chart are measured first, for comparison (empty: none)",
    )
    p.add_argument(
        "--baseline-modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=["new", "keepalive"],
        help="baseline variants (empty: none)",
    )
    p.add_argument("--control-modes", type=lambda s: s.split(","), default=["new"], help="control variants")
    p.add_argument("--no-control", dest="control", action="store_false", help="skip the negative control")
    p.add_argument("--keep-control", action="store_true", help="leave the control release installed")
    p.add_argument("--no-bad-release", dest="bad_release", action="store_false", help="skip the rollback variant")
    p.add_argument("--bad-timeout", default="60s", help="helm --timeout for the bad release (default 60s)")
    p.add_argument(
        "--worker-outage",
        action="store_true",
        help="also power off a worker running an app pod and measure until the app is whole (about 3 min)",
    )
    p.add_argument(
        "--outage-paths",
        type=lambda s: [p for p in s.split(",") if p],
        default=list(PATHS),
        help=f"what the worker outage probes, at --rate each (default: all of {','.join(PATHS)}; "
        "balancer/* only when the lab runs its load balancer)",
    )
    p.add_argument(
        "--via",
        choices=["balancer", "nodeport"],
        default="balancer",
        help="rollouts probe the lab's load balancer (default, when it runs) or a worker's NodePort directly",
    )
    p.add_argument(
        "--service-policies",
        type=lambda s: [p for p in s.split(",") if p],
        default=[],
        help="measure the project once per Service externalTrafficPolicy given, e.g. Cluster,Local, in one run "
        "(deploy.yml -e app_service_external_traffic_policy=...; the last stays). Default: the inventory's choice",
    )
    p.add_argument("--host", help="with --via nodeport: whose NodePort is probed (default: the first worker)")
    p.add_argument("--kubeconfig", default=str(KUBECONFIG))
    p.add_argument("--image", default="10.77.0.1:5000/tiny-http-app:1.0.0", help="image of the control")
    return p


def bench_rollout_command(args: list[str]) -> int:
    options = parser().parse_args(args)
    reports = bench_rollout(options)
    if reports:
        print_summary(reports)
    log(f"wrote {REPORTS / 'rollout.json'}, {REPORTS / 'rollout.png'} and one CSV per variant in {REPORTS}")
    return 0
