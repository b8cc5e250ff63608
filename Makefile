# Entry points. The logic lives in the `lab` Python package and the playbooks;
# these targets only name it. Everything installs itself: `make test` and
# `make demo` work from a clean clone.
SHELL := /bin/bash
LAB_CACHE ?= $(HOME)/.cache/kubeadm-lab
export LAB_CACHE
export PATH := $(LAB_CACHE)/bin:$(CURDIR)/.venv/bin:$(PATH)
export HELM_PLUGINS := $(LAB_CACHE)/helm-plugins
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PY := $(CURDIR)/.venv/bin/python
LAB := $(PY) -m lab
NODES ?= 3

.PHONY: setup test lint demo lab-up lab-down lab-status lab-ssh lab-clean mirror image bench-rollout conformance lab-reboot report

setup:  ## Debian packages, .venv, pinned helm + helm-diff (idempotent, quick when warm)
	python3 -m lab setup

test: setup  ## every test: lint, app, chart, provisioning (moto), lab, cluster
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup  ## only the static checks
	$(PY) -m pytest -m static $(PYTEST_ARGS)

demo: setup  ## the whole mission on the local lab
	$(LAB) demo

lab-up: setup
	$(LAB) up --nodes $(NODES)

lab-down: setup
	$(LAB) down

lab-status: setup
	$(LAB) status

lab-ssh: setup  ## make lab-ssh NODE=lab-master
	$(LAB) ssh $(NODE)

lab-clean: setup
	$(LAB) clean

mirror: setup
	$(LAB) mirror

image: setup
	$(LAB) image

bench-rollout: setup  ## make bench-rollout ARGS='--worker-outage' (ARGS: python -m lab bench-rollout --help)
	$(LAB) bench-rollout $(ARGS)

# FOCUS and SKIP count only as variables on make's command line (`make
# conformance SKIP=regex`): an exported SKIP (pre-commit uses the name) must not
# narrow the run. An empty FOCUS keeps the default focus; an empty SKIP skips nothing.
CONFORMANCE_FILTERS :=
ifeq ($(origin FOCUS),command line)
ifneq ($(FOCUS),)
CONFORMANCE_FILTERS += --focus='$(subst ','\'',$(FOCUS))'
endif
endif
ifeq ($(origin SKIP),command line)
CONFORMANCE_FILTERS += --skip='$(subst ','\'',$(SKIP))'
endif

conformance: setup  ## upstream [Conformance] tests on the lab cluster (FOCUS=regex SKIP=regex narrow them; ARGS='--procs 4')
	$(LAB) conformance $(CONFORMANCE_FILTERS) $(ARGS)

lab-reboot: setup  ## make lab-reboot NODE=lab-worker-1
	$(LAB) reboot $(NODE)

report: setup  ## render reports/*.json into docs/measured.md
	$(LAB) report
