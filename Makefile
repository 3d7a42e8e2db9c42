# Vigil — every developer and CI entry point. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VIGIL := $(VENV)/bin/vigil
# Pytest options for `make test`; CI runs exactly `make test`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: ## Create .venv and install Vigil with dev tools (apt packages too when root)
	@scripts/install.sh dev

.PHONY: install-runtime
install-runtime: ## Create .venv with only what `vigil up` needs
	@scripts/install.sh runtime

.PHONY: proto
proto: install ## Regenerate the committed protobuf/gRPC bindings from proto/
	@PY=$(PY) scripts/gen_proto.sh >/dev/null
	@echo "proto: bindings regenerated"

.PHONY: proto-check
proto-check: install ## Fail if the committed bindings are stale
	@scripts/check_proto.sh

.PHONY: lint
lint: install ## ruff + mypy (+ buf lint when available)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true
	$(VENV)/bin/mypy
	@scripts/buf_lint.sh

.PHONY: fmt
fmt: install ## Format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: install ## Lint, check generated code, then run every test (lab tests need root)
	@$(MAKE) --no-print-directory proto-check lint
	$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: install ## Unit and integration tests only (no network namespaces)
	$(VENV)/bin/pytest -m "not lab" $(PYTEST_ARGS)

.PHONY: demo
demo: install-runtime ## Run `vigil up` on the shipped lab capture: a scan, its breach and the action
	$(VIGIL) up --pcap tests/data/lab-scan.pcap --exit-when-done --fresh

.PHONY: bench
bench: ## Benchmarks -> bench/results.json and a table
	@scripts/install.sh bench
	$(PY) -m bench.run

.PHONY: lab-capture
lab-capture: install ## Re-record tests/data/lab-scan.pcap and dtls-openssl.pcap in network namespaces (root)
	$(PY) -m tests.lab.record tests/data/lab-scan.pcap
	$(PY) -m tests.lab.record_dtls tests/data/dtls-openssl.pcap

.PHONY: all
all: fmt lint test ## Format, lint and test

.PHONY: clean
clean: ## Remove caches and run state (keeps .venv)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench/*.pcap bench/work

.PHONY: eval
eval: install ## Recall, precision, time to detect, false positives: the lab scenarios after a 5-day baseline
	rm -rf var/eval && $(PY) -m tests.lab.compose var/eval --stage --days 5
	$(VIGIL) eval var/eval

.PHONY: eval-wild
eval-wild: install ## The same on public captures others recorded (../shared/corpus/wild), truths in tests/data/wild
	@test -d ../shared/corpus/wild || { echo "eval-wild: no wild corpus at ../shared/corpus/wild"; exit 1; }
	$(VIGIL) eval tests/data/wild

.PHONY: golden
golden: ## Print agreement with Zeek's reference logs per log type
	$(PY) -m tests.sensor.golden_report
