"""`make report`: render what the runs wrote in reports/*.json into docs/measured.md.

The benchmarks and the conformance run write their figures to reports/ (not
committed). This turns them into one generated page, so a new measurement is
one command, not a hand-edited README: reports/rollout.json (`make
bench-rollout`, with `worker_outage` after `ARGS=--worker-outage`),
reports/conformance.json (`make conformance`), reports/conformance-dry-run.json
(`make conformance ARGS=--dry-run`) and any other reports/*.json as a table of
its top-level figures. A report that is missing gets a line naming the command
that writes it; a key that is missing shows as a dash.

Standard library only: it reads JSON, so it runs without the cluster.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab.paths import REPO, REPORTS

OUTPUT = REPO / "docs" / "measured.md"
DASH = "-"

# Labels of the rollout phases (keys of lab.bench.rollout.Rollout.phases()), in the order they happen.
PHASE_LABELS: dict[str, str] = {
    "deployment_changed_at": "Deployment changed at (the command's work before it)",
    "new_pod_created_to_running": "new pod created -> its container runs",
    "new_pod_running_to_ready": "container runs -> ready",
    "last_new_pod_ready_at": "last new pod ready at",
    "first_old_pod_terminating_at": "first old pod terminating at",
    "old_pod_terminating_to_gone": "old pod terminating -> gone",
    "old_pod_terminating_to_exited": "of it: -> reported exited (preStop, drain, sandbox stop)",
    "old_pod_exited_to_gone": "of it: reported exited -> gone (volumes, deletion)",
    "old_pods_gone_at": "old pods gone at",
    "command_returned_at": "the command returned at",
    "endpoint_propagation": "endpoint propagation (deletion -> no node routes to it)",
    "longest_request": "longest request (drain)",
    "floor": "floor: created -> ready + propagation + drain",
    "rollout_from_deployment_change": "rollout from the Deployment change",
    "rollout_vs_floor": "rollout / floor",
}
# per-pod detail of a phase: in the JSON, too fine for the page
PHASE_DETAILS = {"endpoint_propagation_per_pod"}

# Labels of the worker-outage figures (keys of lab.bench.outage.WorkerOutage.report()).
OUTAGE_LABELS: dict[str, str] = {
    "measured_at": "measured at (UTC)",
    "stopped_node": "worker powered off",
    "probed_node": "worker probed",
    "replicas": "ready replicas before",
    "ready_pods_by_node": "ready pods by node before",
    "requests": "requests",
    "errors": "errors",
    "error_kinds": "error kinds",
    "seconds_with_errors": "seconds with errors",
    "first_error_at": "first error at (s after the poweroff)",
    "last_error_at": "last error at (s)",
    "node_not_ready_at": "node NotReady at (s)",
    "pod_on_stopped_node_unready_at": "its pod unready at (s)",
    "seconds_until_whole": "app whole again after (s)",
    "restarted_node_ready_after_s": "restarted worker Ready after (s)",
}


# ------------------------------------------------------------------ formatting


class Markdown(str):
    """Text already rendered for a table cell."""


def cell(value: Any) -> str:
    """One table cell: a dash for what is missing, pipes and newlines made harmless."""
    if isinstance(value, Markdown):
        return value
    if value is None or value in ("", {}, []):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {v}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def code(value: Any) -> Markdown:
    """A code span (regexes, refs), or a dash."""
    text = cell(value)
    return Markdown(DASH if text == DASH else f"`{text}`")


def table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def get(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def ratio(errors: Any, requests: Any) -> str:
    if errors is None and requests is None:
        return DASH
    return f"{cell(errors)} / {cell(requests)}"


def first_line(text: Any) -> str:
    return str(text).strip().splitlines()[0] if text and str(text).strip() else ""


# ------------------------------------------------------------------ rollout.json


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def rollout_section(data: dict[str, Any]) -> list[str]:
    variants = [v for v in (get(data, "variants") or {}).values() if isinstance(v, dict)]
    lines: list[str] = []
    if data.get("rate_per_s") is not None or data.get("host"):
        lines += [
            f"Probed at {cell(data.get('rate_per_s'))} requests/s on {cell(data.get('host'))}, from "
            f"{cell(data.get('seconds_before_upgrade'))} s before each upgrade until "
            f"{cell(data.get('seconds_after_old_pods_gone'))} s after the old pods were gone; "
            f"a request without an answer in {cell(data.get('timeout_s'))} s is an error."
            + (f" Baseline: {code(data.get('baseline'))}." if data.get("baseline") else ""),
            "",
        ]
    if variants:
        lines += table(
            [
                "variant",
                "errors / requests",
                "error kinds",
                "rollout s",
                "both messages s",
                "command returned s",
                "exit code",
                "latency p50 / p99 ms",
            ],
            (
                [
                    v.get("variant"),
                    ratio(v.get("errors"), v.get("requests")),
                    v.get("error_kinds"),
                    v.get("rollout_seconds"),
                    v.get("mixed_message_seconds"),
                    v.get("trigger_seconds"),
                    v.get("trigger_exit_code"),
                    f"{cell(get(v, 'latency_ms', 'p50'))} / {cell(get(v, 'latency_ms', 'p99'))}",
                ]
                for v in variants
            ),
        )
        lines.append("")
        by_configuration: dict[str, list[float]] = {}
        for v in variants:
            if v.get("expected_trigger_to_succeed") and isinstance(v.get("rollout_seconds"), int | float):
                by_configuration.setdefault(str(v.get("variant")).split("/")[0], []).append(v["rollout_seconds"])
        project, baseline = mean(by_configuration.get("project", [])), mean(by_configuration.get("baseline", []))
        if project is not None and baseline:
            lines += [
                f"Rollout, mean of the variants: project {project} s, baseline {baseline} s, "
                f"ratio {project / baseline:.2f}.",
                "",
            ]
    else:
        lines += ["No rollout variant in this report (a run of `--worker-outage` alone keeps none).", ""]

    phased = [v for v in variants if isinstance(v.get("phases"), dict) and v["phases"]]
    if phased:
        keys = [k for k in PHASE_LABELS if any(k in v["phases"] for v in phased)]
        keys += sorted({k for v in phased for k in v["phases"]} - set(PHASE_LABELS) - PHASE_DETAILS)
        lines += ["Where the seconds went (since the command started):", ""]
        lines += table(
            ["phase (s)", *(cell(v.get("variant")) for v in phased)],
            ([PHASE_LABELS.get(k, k), *(v["phases"].get(k) for v in phased)] for k in keys),
        )
        lines.append("")

    unchanged = get(data, "deploy_with_the_same_message")
    if isinstance(unchanged, dict) and unchanged:
        lines += ["`deploy.yml` with the message the app already serves (nothing rolls):", ""]
        lines += table(
            ["configuration", "median s", "longest s", "runs s", "changed", "exit code"],
            (
                [name, get(f, "seconds"), get(f, "longest"), get(f, "runs"), get(f, "changed"), get(f, "exit_code")]
                for name, f in unchanged.items()
            ),
        )
        lines.append("")

    outage = data.get("worker_outage")
    lines += ["### A worker powered off under load", ""]
    if isinstance(outage, dict):
        lines += table(["figure", "value"], ([label, outage.get(key)] for key, label in OUTAGE_LABELS.items()))
        if outage.get("whole_within_timeout") is False:
            lines += ["", f"The app was not whole again within {cell(outage.get('timeout_s'))} s."]
        configurations = data.get("worker_outage_by_configuration")
        if not (isinstance(configurations, dict) and len(configurations) > 1):
            configurations = {"": data.get("worker_outage_paths")}
        rows = [
            [f"{name} {path}".strip(), get(f, "probed_node"), get(f, "errors"), get(f, "requests"),
             get(f, "seconds_with_errors"), get(f, "first_error_at"), get(f, "last_error_at"),
             get(f, "node_not_ready_at"), get(f, "seconds_until_whole")]
            for name, paths in configurations.items() if isinstance(paths, dict)
            for path, f in paths.items() if isinstance(f, dict)
        ]  # fmt: skip
        if rows:
            lines += ["", "Every path probed at once (s after the poweroff):", ""]
            lines += table(
                ["path", "probed", "errors", "requests", "seconds with errors", "first error", "last error",
                 "NotReady", "whole again"],
                rows,
            )  # fmt: skip
    else:
        lines.append("Not measured in this report: `make bench-rollout ARGS=--worker-outage` adds it.")
    lines.append("")
    return lines


# ------------------------------------------------------------------ conformance.json


def conformance_section(data: dict[str, Any]) -> list[str]:
    tests = [t for t in data.get("tests") or [] if isinstance(t, dict)]
    seconds = data.get("seconds")
    minutes = round(seconds / 60, 1) if isinstance(seconds, int | float) else None
    if data.get("dry_run"):
        header = ["selected", "not selected", "focus", "skip"]
        row = [data.get("selected"), data.get("not_selected"), code(data.get("focus")), code(data.get("skip"))]
    else:
        header = ["passed", "failed", "skipped", "not selected", "minutes", "suite succeeded", "focus", "skip"]
        row = [
            data.get("passed"),
            data.get("failed"),
            data.get("skipped"),
            data.get("not_selected"),
            minutes,
            data.get("suite_succeeded"),
            code(data.get("focus")),
            code(data.get("skip")),
        ]
    lines = [*table(header, [row]), ""]
    failures = [t for t in data.get("suite_failures") or [] if isinstance(t, dict)]
    failed = [t for t in tests if t.get("state") == "failed"]
    if failures or failed:
        lines += ["Failed:", ""]
        lines += table(
            ["test", "s", "first line of the message"],
            ([t.get("name"), t.get("seconds"), first_line(t.get("message"))] for t in failures + failed),
        )
        lines.append("")
    skipped = [t for t in tests if t.get("state") == "skipped"]
    if skipped:
        lines += ["Skipped themselves:", ""]
        lines += table(["test", "reason"], ([t.get("name"), first_line(t.get("message"))] for t in skipped))
        lines.append("")
    passed = [t for t in tests if t.get("state") == "passed" and isinstance(t.get("seconds"), int | float)]
    if passed:
        lines += ["Slowest passed:", ""]
        slowest = sorted(passed, key=lambda t: -t["seconds"])[:5]
        lines += table(["test", "s"], ([t.get("name"), t.get("seconds")] for t in slowest))
        lines.append("")
    return lines


# ------------------------------------------------------------------ anything else


def generic_section(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return [f"A {type(data).__name__}, not an object: not rendered.", ""]
    rows = []
    for key, value in data.items():
        if isinstance(value, dict | list):
            rows.append([key, f"({len(value)} {'keys' if isinstance(value, dict) else 'items'})"])
        else:
            rows.append([key, value])
    return [*table(["key", "value"], rows), ""]


# ------------------------------------------------------------------ the page

Renderer = Callable[[dict[str, Any]], list[str]]

# file in reports/ -> (section title, the command that writes it, renderer)
KNOWN: dict[str, tuple[str, str, Renderer]] = {
    "rollout.json": ("Rolling updates under load", "make bench-rollout", rollout_section),
    "conformance.json": ("Kubernetes conformance", "make conformance", conformance_section),
    "conformance-dry-run.json": (
        "Conformance: what the filters select (dry run)",
        "make conformance ARGS=--dry-run",
        conformance_section,
    ),
}


def git_commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def written_at(path: Path) -> str:
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def render_page(reports: Path, *, date: str, commit: str) -> str:
    """docs/measured.md from the JSON files in reports (which may be missing)."""
    lines = [
        "# Measured",
        "",
        f"Generated by `make report` from reports/ on {date} at commit {commit}; do not edit: run the command "
        "named in each section, then `make report`. Each section holds one run, on the machine that ran it: "
        "compare figures of the same run, not across runs or machines.",
        "",
    ]
    present = sorted(reports.glob("*.json")) if reports.is_dir() else []
    for name, (title, command, renderer) in KNOWN.items():
        lines += [f"## {title}", ""]
        path = reports / name
        if not path.is_file():
            lines += [f"No `reports/{name}` yet: `{command}` writes it.", ""]
            continue
        lines += [f"From `reports/{name}`, written {written_at(path)} by `{command}`.", ""]
        lines += render_file(path, renderer)
    for path in present:
        if path.name in KNOWN:
            continue
        lines += [f"## reports/{path.name}", "", f"Written {written_at(path)}.", ""]
        lines += render_file(path, generic_section)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_file(path: Path, renderer: Renderer) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"Could not read it: {error}.", ""]
    if not isinstance(data, dict):
        return generic_section(data)
    return renderer(data)


def report_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reports", type=Path, default=REPORTS, help=f"directory of the JSON reports (default {REPORTS})"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"the page to write (default {OUTPUT})")
    options = parser.parse_args(args)
    date = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%d")
    page = render_page(options.reports, date=date, commit=git_commit())
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(page, encoding="utf-8")
    print(f"wrote {options.output}")
    return 0
