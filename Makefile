# The two commands: `make serve` and `make test`. Both do all set-up themselves.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
DEBS   := freediameterd libfreediameter-dev gcc libc6-dev faketime prometheus systemd
DATA   ?= data
RULES  ?= rules/demo

.PHONY: install serve test bench debs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

# Debian packages the tests drive: freeDiameterd as an independent peer, libfaketime,
# Prometheus and promtool (tests/integration/test_prometheus.py, tests/deploy/), and
# systemd-analyze (tests/deploy/test_systemd.py). The tests start their own Prometheus on a
# free port, so the service the prometheus package enables (where it can start) is no bother.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

install: $(VENV)/.installed debs

serve: $(VENV)/.installed
	$(VENV)/bin/ocs serve --data $(DATA) --rules $(RULES)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m loadtest.bench --out docs/benchmarks.md

clean:
	rm -rf $(VENV) $(DATA)
