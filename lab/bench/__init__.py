"""Benchmarks on the lab cluster: rolling updates and a worker outage under load.

- commands: `python -m lab bench-rollout`, its variants and reports/rollout.json;
- prober: the constant-rate HTTP prober and its classification of errors;
- rollout: one rolling update measured (prober, pods, phases) and its triggers;
- outage: a worker powered off under load;
- watchers: the poller of a release's pods;
- endpoints: kube-proxy's rules watched on every node (endpoint propagation);
- report: the CSVs, the plot and the printed summary;
- seed_chart/: the negative control's chart (the seed's configuration).
"""
