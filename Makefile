# Meldingen Hub — the two commands of the quick start, and a few more.
#   make run    start a local Kafka, the hub and a demo feed; print what went where; stop all
#   make test   install and run every test (a real Kafka broker included)
#   make bench  measure validation, routing and the hub on Kafka; writes docs/benchmarks.md
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install kafka-jars chromium run test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

kafka-jars: install
	$(BIN)/meldhub kafka jars

run: install kafka-jars
	$(BIN)/meldhub demo run

# The console's browser tests drive Debian's Chromium (no browser download); installed once.
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# pytest exits 5 when it collected no test: that is a failure here, never a green run.
test: install kafka-jars chromium
	@$(BIN)/python -m pytest -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Figures go to docs/benchmarks.md as ratios against baselines measured in the same run.
bench: install kafka-jars
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

clean:
	-$(BIN)/meldhub kafka down
	rm -rf .run .pytest_cache .hypothesis
