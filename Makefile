# rolecall — developer entry points.
#
#   make demo   build the release binary and run it against a local STS (moto)
#   make test   fmt, clippy, unit + integration tests, acceptance tests vs moto
#
# Any failing step fails the target (each recipe runs under bash -euo pipefail).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
CARGO  ?= cargo
VENV   := .venv
LOCKED := $(if $(wildcard Cargo.lock),--locked,)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: monitoring-check fuzz help test-deps venv sdk-deps go-driver sdk-tests sdk-lag-start sdk-lag-wait sdk-matrix build fmt-check house clippy unit-test acceptance validate-examples docs-check image-test test demo bench fleet clean

help:
	@echo "make demo       build rolecall and run it against a local STS (moto)"
	@echo "make test       fmt-check, clippy, cargo test, acceptance tests (what .ci/run runs)"
	@echo "make venv       create .venv with the pinned Python tools (requirements-test.txt)"
	@echo "make house      the house check: no import cycle or upward import, functions and files within their limits"
	@echo "make build      cargo build --release"
	@echo "make fleet      1,000 sidecars against a rate-limited fake STS; figures into docs/SCALE.md (not part of make test)"
	@echo "make clean      remove .venv and target/"
	@echo "make release    the release of Cargo.toml's version into target/dist/VERSION/ (docs/RELEASING.md; not part of make test)"

# ---------------------------------------------------------------- Python tools

venv: $(VENV)/.stamp

# Created once; re-run only when requirements-test.txt changes. Debian's python3
# ships venv without ensurepip unless python3-venv is installed: install it then.
$(VENV)/.stamp: requirements-test.txt
	@if ! [ -x $(VENV)/bin/python ] || ! $(VENV)/bin/python -m pip --version >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if ! $(PYTHON) -m venv $(VENV); then \
	    echo ">> '$(PYTHON) -m venv' failed (no ensurepip?): installing python3-venv"; \
	    rm -rf $(VENV); \
	    apt-get update && apt-get install -y python3-venv; \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	$(VENV)/bin/python -m pip install --quiet --requirement requirements-test.txt
	$(VENV)/bin/moto_server --help >/dev/null
	$(VENV)/bin/aws --version
	touch $@

# The JavaScript SDK for the SDK matrix, pinned by tests/sdk/node/package-lock.json,
# and the Go driver against Debian's AWS SDK for Go v2.
sdk-deps: tests/sdk/node/node_modules/.stamp go-driver

tests/sdk/node/node_modules/.stamp: tests/sdk/node/package-lock.json
	command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; }
	npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error
	touch $@

# tests/sdk/go/driver.go built offline in GOPATH mode against Debian's packages
# (golang-go, golang-github-aws-aws-sdk-go-v2-dev), installed when missing.
# Rebuilt on every run (0.2 s from the cache) so it always matches the
# installed SDK; tests/sdk_matrix.rs runs $(TARGET_DIR)/sdk-driver-go.
GO_SDK := /usr/share/gocode/src/github.com/aws/aws-sdk-go-v2
GO_ENV := GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOPROXY=off GOCACHE=$(TARGET_DIR)/go-cache

go-driver:
	command -v go >/dev/null && [ -d $(GO_SDK)/service/sts ] \
	  || { apt-get update && apt-get install -y golang-go golang-github-aws-aws-sdk-go-v2-dev; }
	mkdir -p $(TARGET_DIR)
	cd tests/sdk/go && $(GO_ENV) go build -o $(TARGET_DIR)/sdk-driver-go .

# ---------------------------------------------------------------- Rust

build:
	$(CARGO) build --release $(LOCKED)

fmt-check:
	$(CARGO) fmt --all -- --check

# The shape of src/ that docs/ARCHITECTURE.md ("Layers") promises: no import
# cycle among the modules, no import of a higher layer, no function over 80
# lines, no file over 400 production lines. The self-test first, so that a
# broken check cannot pass everything.
house:
	$(PYTHON) scripts/house.py --selftest
	$(PYTHON) scripts/house.py

clippy:
	$(CARGO) clippy --all-targets $(LOCKED) -- -D warnings
	$(CARGO) clippy --all-targets $(LOCKED) --no-default-features -- -D warnings

# Hermetic: tests that need the Python tools are #[ignore]d here. The TLS
# tests make their CA with the openssl command, and the proxy tests run
# squid (Debian's openssl and squid packages); the injected pod of
# inject_e2e runs in namespaces (util-linux's unshare, nsenter, setpriv and
# mount, iproute2's ip).
test-deps:
	command -v openssl >/dev/null && command -v squid >/dev/null \
	  || { apt-get update && apt-get install -y openssl squid; }
	missing=; for t in unshare nsenter setpriv mount chroot ip; do command -v $$t >/dev/null || missing=1; done; \
	  [ -z "$$missing" ] || { apt-get update && apt-get install -y util-linux mount coreutils iproute2; }

unit-test: test-deps
	$(CARGO) test $(LOCKED)

# The real binary against moto's STS, read by the AWS CLI and boto3; the
# injected pod started for real in namespaces (inject_e2e: needs root); the
# README's quick start run verbatim against moto and such a pod (quickstart).
acceptance: venv test-deps
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test acceptance -- --ignored --test-threads=1
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test inject_e2e -- --ignored --test-threads=1
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test cli -- --ignored --test-threads=1
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test check_pod_identity -- --ignored --test-threads=1
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test quickstart -- --ignored --test-threads=1

# The Kubernetes manifests against the Kubernetes schemas (offline), the
# CloudFormation template with cfn-lint, and `rolecall check` with each
# example's configuration against the trust policies in examples/iam.
validate-examples: venv
	$(CARGO) build $(LOCKED)
	VENV=$(VENV) ROLECALL_BIN=$(TARGET_DIR)/debug/rolecall ./scripts/validate-examples.sh

# Every snippet, flag, metric, label and link in README.md, docs/, examples/**/README.md
# and SECURITY.md against the debug binary's --help and a real /metrics scrape
# (tests/docs.rs writes it); the checker's self-test first (docs/DEVELOPMENT.md,
# "Documentation checks").
DOCS_FACTS := $(TARGET_DIR)/docs-facts
docs-check: venv
	$(VENV)/bin/python -c 'import kubernetes_validate' 2>/dev/null \
	  || $(VENV)/bin/python -m pip install --quiet $$(sed -n 's/^KV_PINS=(\(.*\))$$/\1/p' scripts/validate-examples.sh)
	$(CARGO) build $(LOCKED)
	ROLECALL_DOCS_FACTS=$(DOCS_FACTS) $(CARGO) test $(LOCKED) --test docs
	$(VENV)/bin/python scripts/check_docs.py --bin $(TARGET_DIR)/debug/rolecall --facts $(DOCS_FACTS) --selftest
	$(VENV)/bin/python scripts/check_docs.py --bin $(TARGET_DIR)/debug/rolecall --facts $(DOCS_FACTS)

# Builds both runtime images with buildah from static host builds, the sidecar
# (--no-default-features) and the webhook (the full build), checks their
# user, entrypoint, size and contents, and runs each from its root filesystem
# with chroot (containers cannot run on these machines).
image-test: test-deps
	./scripts/image-test.sh

# examples/monitoring: the structure of the PrometheusRule, PodMonitors and
# dashboard; promtool check rules (the alerts and the dashboard's queries)
# and promtool test rules (each alert fires on a bad series, stays quiet on a
# healthy one); every metric, label and value they name against real scrapes
# of the sidecar and the webhook (tests/monitoring.rs). promtool is Debian's
# prometheus package (its service is not started in a container).
monitoring-check: venv
	command -v promtool >/dev/null || { apt-get update && apt-get install -y prometheus; }
	$(VENV)/bin/python scripts/check_monitoring.py selftest
	$(VENV)/bin/python scripts/check_monitoring.py structure
	$(VENV)/bin/python scripts/check_monitoring.py promtool
	$(CARGO) test $(LOCKED) --test monitoring

# One long-lived client per SDK and mode across three refreshes, and the lag
# cells (lag_*: one-hour sessions, `rolecall refresh`, the time until the
# client signs with the new session, up to 17 minutes) (tests/sdk_matrix.rs);
# the README's table must show these results. `make test` runs the lag cells in
# the background instead (sdk-lag-start ... sdk-lag-wait) and the rest here
# with SDK_TESTS_ARGS="--skip lag_" SDK_CHECK=.
SDK_TESTS_ARGS ?=
SDK_CHECK ?= 1
sdk-tests: venv sdk-deps
	$(CARGO) build $(LOCKED) --examples
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test sdk_matrix -- --ignored --test-threads=25 $(SDK_TESTS_ARGS)
	if [ -n "$(SDK_CHECK)" ]; then $(PYTHON) scripts/sdk_matrix.py --check; fi

# The lag cells take up to 18 minutes of mostly idle waiting, so `make test`
# starts them first (sdk-lag-start: the test binary runs in the background,
# its output in $(SDK_LAG)/log, its exit status in $(SDK_LAG)/rc) and collects
# them last (sdk-lag-wait), while everything else runs.
SDK_LAG := $(TARGET_DIR)/sdk-lag
sdk-lag-start: venv sdk-deps
	$(CARGO) build $(LOCKED) --examples
	rm -rf $(SDK_LAG) && mkdir -p $(SDK_LAG)
	bin=$$($(CARGO) test $(LOCKED) --test sdk_matrix --no-run --message-format=json \
	  | $(PYTHON) -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "sdk_matrix"][0])'); \
	( rc=0; ROLECALL_VENV=$(CURDIR)/$(VENV) "$$bin" --ignored --test-threads=10 lag_ >$(SDK_LAG)/log 2>&1 || rc=$$?; \
	  echo $$rc >$(SDK_LAG)/rc ) </dev/null >/dev/null 2>&1 & echo $$! >$(SDK_LAG)/pid
	@echo ">> SDK matrix lag cells started in the background ($(SDK_LAG)/log)"

sdk-lag-wait:
	@started=$$(date +%s); \
	  while ! [ -s $(SDK_LAG)/rc ] && kill -0 "$$(cat $(SDK_LAG)/pid)" 2>/dev/null; do sleep 5; done; \
	  echo ">> waited $$(( $$(date +%s) - started )) s for the SDK matrix lag cells"; \
	  cat $(SDK_LAG)/log; \
	  [ -s $(SDK_LAG)/rc ] || { echo ">> the lag cells ended without a status (killed?)"; exit 1; }; \
	  exit "$$(cat $(SDK_LAG)/rc)"

# Re-runs the matrix and rewrites the README's table from its results.
sdk-matrix: venv sdk-deps
	$(CARGO) build $(LOCKED) --examples
	ROLECALL_VENV=$(CURDIR)/$(VENV) $(CARGO) test $(LOCKED) --test sdk_matrix -- --ignored --test-threads=25
	$(PYTHON) scripts/sdk_matrix.py --write

# libFuzzer on config parsing, token decoding and INI rendering, 10 s each
# (scripts/fuzz.sh 300 for a longer run).
fuzz:
	./scripts/fuzz.sh 10

# Run in this order; make stops at the first failure. The SDK matrix's lag
# cells run in the background from sdk-lag-start to sdk-lag-wait.
test:
	$(MAKE) --no-print-directory fmt-check
	$(MAKE) --no-print-directory house
	$(MAKE) --no-print-directory lint-workflows
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory sdk-lag-start
	$(MAKE) --no-print-directory unit-test
	$(MAKE) --no-print-directory acceptance
	$(MAKE) --no-print-directory sdk-tests SDK_TESTS_ARGS="--skip lag_" SDK_CHECK=
	$(MAKE) --no-print-directory validate-examples
	$(MAKE) --no-print-directory monitoring-check
	$(MAKE) --no-print-directory docs-check
	$(MAKE) --no-print-directory image-test
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory sdk-lag-wait
	$(PYTHON) scripts/sdk_matrix.py --check

demo: venv build
	ROLECALL_VENV=$(CURDIR)/$(VENV) ROLECALL_BIN=$(TARGET_DIR)/release/rolecall ./scripts/demo.sh

# The static release binary measured against the fake STS and moto, side by side with an
# AWS CLI loop and a boto3 refresher (docs/BENCHMARKS.md). ROWS="rss idle" selects rows.
bench:
	ROWS="$(ROWS)" ./scripts/bench.sh

# The fleet simulator (tests/fleet.rs, issue 14): the static release binary, N sidecars
# against a fake STS with an account-wide rate limit; writes target/fleet/results.md and
# docs/SCALE.md's measured section. ROLECALL_FLEET_N=200 ROLECALL_FLEET_SCENARIOS=a,b for a
# smaller run (scripts/fleet.sh lists the knobs).
fleet:
	./scripts/fleet.sh

clean:
	rm -rf $(VENV) target demo-out

.PHONY: release lint-workflows

# The release of Cargo.toml's version (docs/RELEASING.md): both images built and checked
# (scripts/image-test.sh) and tagged with the version, the static binaries taken from them,
# the images as OCI archives, CycloneDX SBOMs (cargo-cyclonedx), release notes from the
# CHANGELOG and SHA256SUMS, in target/dist/VERSION/. Two static release builds: not in make test.
release: test-deps
	./scripts/release.sh

# The CI workflows (.github/workflows) linted with jactionlint, pinned in requirements-test.txt;
# shellcheck (Debian's) checks their run: scripts. A few seconds.
lint-workflows: venv
	command -v shellcheck >/dev/null || { apt-get update && apt-get install -y shellcheck; }
	$(VENV)/bin/jactionlint --strict-exit .github/workflows/*.yml
