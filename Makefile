# The two commands: `make serve` and `make test`. Both do all set-up themselves.
SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
DEBS   := freediameterd libfreediameter-dev gcc libc6-dev faketime prometheus systemd postgresql-15
DATA   ?= data
RULES  ?= rules/demo
# pip-compile, in a virtual environment of its own (.venv-lock): `make lock`
PIP_TOOLS := pip-tools==7.6.2
# This machine's pip configuration names a local extra index with a directory for only some
# packages; pip warns about each one it lacks. Those lines say nothing about the project.
PIP_QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
# Kernel sources: a change to any of them invalidates numba's cache for its module
SOURCES := $(shell find ocs -name '*.py')

.PHONY: install compile serve test bench debs lock clean

# Exactly the lock, with the machine's own pip (its index, extra indexes and certificates),
# into a new .venv; then the project itself, editable, built by the locked setuptools.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@$(PYTHON) deploy/lock.py check
	@rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK) 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | $(PIP_QUIET)
	@$(PY) deploy/lock.py installed
	@touch $@

# Every numba kernel into the on-disk cache, one line per group: paid once, not at `ocs serve`
$(VENV)/.compiled: $(VENV)/.installed $(SOURCES)
	@$(VENV)/bin/ocs compile
	@touch $@

# Debian packages the tests drive: freeDiameterd as an independent peer, libfaketime,
# Prometheus and promtool (tests/integration/test_prometheus.py, tests/deploy/),
# systemd-analyze (tests/deploy/test_systemd.py), and PostgreSQL 15 for the cluster store
# (tests/cluster/ start a primary and a synchronous standby of their own, as user postgres). The tests start their own Prometheus on a
# free port, so the service the prometheus package enables (where it can start) is no bother.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

compile: $(VENV)/.compiled

install: $(VENV)/.compiled debs

serve: $(VENV)/.compiled
	$(VENV)/bin/ocs serve --data $(DATA) --rules $(RULES)

# The tests in as many workers as the machine has cores (pytest-xdist): most of them wait on
# servers they started, so two workers on two cores take about two thirds of one's time.
test: install
	$(PY) -m pytest -q -n auto --dist worksteal

# The load curves against the reference servers, then the cluster's takeover after kill -9,
# 100 times (reported in docs/cluster-takeover.md, not gated)
bench: install
	$(PY) -m loadtest.bench --out docs/benchmarks.md
	OCS_FAILOVER_KILLS=100 OCS_FAILOVER_REPORT=docs/cluster-takeover.md $(PY) -m pytest -q -p no:cacheprovider \
	  tests/cluster/test_failover.py

# Remake the lock from pyproject.toml: pins that still satisfy it are kept; UPGRADE=1 takes the
# newest releases the index has. Commit requirements.lock with the change that needed it.
lock:
	@[ -x .venv-lock/bin/pip-compile ] || { $(PYTHON) -m venv .venv-lock && \
	  .venv-lock/bin/pip install --quiet $(PIP_TOOLS) 2>&1 | $(PIP_QUIET); }
	@.venv-lock/bin/pip-compile --quiet $(if $(UPGRADE),--upgrade) --all-extras --all-build-deps \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  --no-emit-trusted-host --output-file $(LOCK) pyproject.toml 2>&1 | $(PIP_QUIET)
	@$(PYTHON) deploy/lock.py stamp

clean:
	rm -rf $(VENV) .venv-lock $(DATA)
