# lifeboat.backup: `make demo` runs the embedded default; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COLL_LINK := build/collections/ansible_collections/lifeboat/backup
SANITY_DIR := build/sanity/ansible_collections/lifeboat/backup
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: help demo test deps-demo deps-test venv venv-demo collection sanity lint units integration pytest molecule clean

help:
	@echo "make demo   back up, verify and restore the demo tenants on localhost (no server needed)"
	@echo "make test   install what the suite needs and run all of it (as CI does)"

deps-demo:
	@scripts/install-deps.sh demo

deps-test:
	@scripts/install-deps.sh test

# Two stamps, one venv. `make demo` installs only what it runs (requirements-demo.txt:
# ansible-core and the engine's libraries); `make test` adds the test tools
# (requirements-dev.txt, which includes the demo's list) to the same venv, and
# its stamp counts for the demo too, so neither order installs anything twice.
$(BIN)/.installed-demo: requirements.txt requirements-demo.txt
	@if [ -f $(BIN)/.installed ] && [ $(BIN)/.installed -nt requirements.txt ] && \
	    [ $(BIN)/.installed -nt requirements-demo.txt ]; then touch $@; exit 0; fi; \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	echo "Installing the demo's Python requirements into $(VENV) (log: build/pip.log)"; \
	mkdir -p build; \
	$(BIN)/python -m pip install -q -r requirements-demo.txt >build/pip.log 2>&1 || { tail -30 build/pip.log; exit 1; }; \
	touch $@

$(BIN)/.installed: requirements.txt requirements-demo.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python requirements into $(VENV) (log: build/pip.log)"
	@mkdir -p build
	@$(BIN)/python -m pip install -q -r requirements-dev.txt >build/pip.log 2>&1 || { tail -30 build/pip.log; exit 1; }
	@touch $@ $(BIN)/.installed-demo

venv-demo: $(BIN)/.installed-demo

venv: $(BIN)/.installed

$(COLL_LINK):
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn ../../../.. $(COLL_LINK)

collection: $(COLL_LINK)

demo: deps-demo venv-demo collection
	$(BIN)/ansible-playbook -i inventories/local playbooks/demo.yml

test: deps-test venv collection
	@scripts/run-tests.sh

sanity: venv
	@scripts/sanity.sh

lint: venv collection
	$(BIN)/ansible-lint --profile production

pytest: venv collection
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Roles on systemd hosts in Podman (image built once, cached by its package list).
molecule: deps-test venv collection
	@scripts/molecule.sh

clean:
	rm -rf build .demo

# Benchmarks (issue 10): on demand, never part of `make test`. Writes benchmarks/results/*.json and docs/PERFORMANCE.md.
# Standard set (100 and 500 MB, ~30 min); then, merging into the same results:
#   make bench BENCH_ARGS='--only fleet'                             (200 small tenants, ~20 min)
#   make bench BENCH_ARGS='--sizes 2000 --only backup,jobs,verify'   (the 2 GB tenant, ~35 min)
BENCH_ARGS ?=
.PHONY: bench
bench: deps-test venv collection
	@$(BIN)/python -m pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
