"""The local lab: cached tool builds, nspawn nodes, the offline mirror and benchmarks.

`python -m lab COMMAND` (lab.cli, behind the make targets) on top of four packages:
lab.nodes (the nspawn nodes), lab.mirror (the offline package and image mirror,
the pinned builds and tools), lab.bench (the benchmarks) and lab.conformance
(Kubernetes' conformance suite). Beside the CLI: bootstrap (`make setup`), demo
(`make demo`), cluster (the lab cluster as the controller sees it), paths, run
(commands and steps) and playbook (reading ansible-playbook's output).

Only the standard library is imported at module level, so `python3 -m lab setup`
can run before the project's virtualenv exists.
"""
