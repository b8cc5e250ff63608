"""The local lab: cached tool builds, nspawn nodes, the offline mirror and benchmarks.

Only the standard library is imported at module level, so `python3 -m lab setup`
can run before the project's virtualenv exists.
"""
