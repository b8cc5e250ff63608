"""Kubernetes' own [Conformance] suite on the lab cluster (`make conformance`).

- runner: `python -m lab conformance`: the builds, ginkgo's arguments, the run;
- report: e2e.test's JUnit XML read into reports/conformance.json and a summary;
- images: the images the tests run, rebuilt offline into the lab registry;
- test_images/: the files those images are built from.
"""
