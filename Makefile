# Every developer and tester command. `make` alone lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

CARGO ?= cargo

# Deploy-side tools live in a git-ignored venv (scripts/tools.sh); the targets that need
# them put it first on PATH (cargo-lambda runs zig as `python3 -m ziglang`).
TOOLS_VENV := .tools/venv
TOOLS_PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
STACK_NAME ?= payment-saga-dev

.PHONY: help setup fmt fmt-check clippy lint test test-unit test-contract asl-express sim build clean
.PHONY: start-local stop-all status demo logs-lambda logs-stepfunction measure-local
.PHONY: test-payment test-payment-small test-payment-large test-payment-fail test-payment-custom
.PHONY: test-refund test-e2e test-circuit-breaker test-curl-wallet-credit test-check-wallet-balance
.PHONY: tools validate-template test-api-contract build-all build-lambda sam-build deploy

help: ## List the targets
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then c='\033[36m'; r='\033[0m'; else c=''; r=''; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk -v c="$$c" -v r="$$r" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-27s%s %s\n", c, $$1, r, $$2}'

setup: ## Make the scripts executable and check the toolchain (rustfmt, clippy)
	@chmod +x scripts/*.sh .ci/run
	@$(CARGO) fmt --version >/dev/null && $(CARGO) clippy --version >/dev/null
	@echo "toolchain ok: $$($(CARGO) --version)"

build: ## Build the whole workspace (debug)
	$(CARGO) build --workspace --all-targets

fmt: ## Format all code
	$(CARGO) fmt --all

fmt-check: ## Fail if any code is not formatted
	$(CARGO) fmt --all -- --check

clippy: ## Lint with clippy, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: ## Project rules: a pure, float-free domain; DynamoDB only in shared::dynamo
	@./scripts/lint.sh

test: fmt-check clippy lint ## Everything: fmt check, clippy -D warnings, lint, all tests
	@./scripts/test.sh

test-unit: ## Fast unit tests only (no embedded DynamoDB)
	$(CARGO) test --workspace --lib --bins

test-contract: ## The store contract suite against the in-memory store and DynamoDB
	$(CARGO) test -p saga-tests --test store_contract --test ledger_properties -- --nocapture

asl-express: ## Write the EXPRESS saga definition again from the STANDARD one (payment-saga.express.asl.json)
	UPDATE_EXPRESS_ASL=1 $(CARGO) test -q -p saga-tests --test asl_consistency express

sim: ## Deterministic fault simulation of the saga: make sim [SEEDS=10000] [SEED=s] [FAULTS=all|a,b]
	@$(CARGO) run --profile sim -q -p sim -- $(if $(SEED),--seed $(SEED),--seeds $(or $(SEEDS),10000)) \
		--faults $(or $(FAULTS),all)

start-local: ## Start the local cloud (4566 AWS edge, 3001 API, 3000 gateway) and run a demo payment
	@./scripts/local.sh start
	@USER_ID=demo_user ./scripts/tester.sh pay 50 --fund

stop-all: ## Stop the local cloud and everything it started
	@./scripts/local.sh stop

status: ## Is the local cloud running, and where
	@./scripts/local.sh status

measure-local: ## Time to healthy, processes and RSS of a throwaway local cloud (PAYMENT_COUNT=3)
	@$(CARGO) build --workspace --bins
	@./scripts/measure-local.sh

demo: ## One demo payment (50 USD, demo_user) through the flow monitor
	@USER_ID=demo_user ./scripts/tester.sh pay 50 --fund

logs-lambda: ## Tail one function's log: make logs-lambda NAME=wallet-service
	@test -n "$(NAME)" || { echo "usage: make logs-lambda NAME=<function>"; exit 2; }
	@tail -n 100 .local/logs/$(NAME).log

logs-stepfunction: ## The recent saga executions with their histories (LIMIT=5)
	@./scripts/tester.sh executions

# --- Tester targets: each starts the local cloud when it is not running ------------------
# USER_ID (user_test_001), CURRENCY (USD), ORDER_ID, AMOUNT apply where they make sense.

test-payment: ## 50 USD through the flow monitor (tops the wallet up if short)
	@./scripts/tester.sh pay 50 --fund

test-payment-small: ## 10 USD through the flow monitor
	@./scripts/tester.sh pay 10 --fund

test-payment-large: ## 500 USD through the flow monitor
	@./scripts/tester.sh pay 500 --fund

test-payment-fail: ## 5000 USD → insufficient funds; passes because FAILED is the expected outcome
	@./scripts/tester.sh fail

test-payment-custom: ## Any of USER_ID= AMOUNT= CURRENCY= ORDER_ID= (no top-up: your wallet, your rules)
	@./scripts/tester.sh pay "$${AMOUNT:-100}"

test-refund: ## A 50 USD payment, then a refund (AMOUNT= for a partial one), then the payment
	@./scripts/tester.sh refund

reconcile: ## Settle what the sagas could not, now: the reconciler's report (DRY_RUN=1 changes nothing; SINCE=2h)
	@./scripts/tester.sh reconcile $(if $(DRY_RUN),--dry-run) $(if $(SINCE),--since "$(SINCE)")

test-reconcile: ## A payment left RECONCILIATION_REQUIRED with the gateway captured, then make reconcile completes it (~3 min)
	@./scripts/tester.sh reconcile-demo

test-e2e: ## The scenario suite against the local cloud, ending "N passed, M failed"
	@./scripts/tester.sh e2e

test-circuit-breaker: ## Breaker opens, payments fail fast + compensated, gateway calls frozen, recovery (~40 s)
	@./scripts/tester.sh breaker

test-curl-wallet-credit: ## curl: credit USER_ID's wallet with AMOUNT (1000) CURRENCY (USD)
	@./scripts/tester.sh credit

test-check-wallet-balance: ## curl: USER_ID's balances
	@./scripts/tester.sh balance

clean: stop-all ## Stop the local cloud, remove build output and local data
	$(CARGO) clean
	rm -rf .local

# --- AWS: template, artefacts, deploy (no Docker; docs/deploy.md) ---------------------

tools: ## Install cfn-lint, SAM CLI, cargo-lambda, zig, statelint (.tools/venv) + arm64 target; quick when present
	@./scripts/tools.sh

test-api-contract: ## schemathesis over api/openapi.yaml against a local cloud of its own (bounded; part of make test)
	@./scripts/api-contract.sh

validate-template: tools ## Offline: cfn-lint + sam validate --lint on template.yml, statelint on state-machine/*.asl.json
	@./scripts/validate-template.sh

build-all: tools ## Release arm64 builds of the five Lambdas into target/lambda/<name>/bootstrap, with sizes
	@./scripts/build-lambdas.sh

build-lambda: ## One Lambda: make build-lambda NAME=wallet-service
	@if [ -z "$(NAME)" ]; then \
		echo "error: NAME is required, e.g. make build-lambda NAME=wallet-service" >&2; \
		echo "       one of: invoice-processor wallet-service payments-adapter refund-service api-handler" >&2; \
		exit 2; \
	fi
	@./scripts/tools.sh
	@./scripts/build-lambdas.sh $(NAME)

sam-build: tools ## sam build (rust-cargolambda, no Docker) into .aws-sam/build
	@echo "==> sam build (cargo-lambda in each crate, venv first on PATH)"
	@start=$$(date +%s); \
	PATH="$(TOOLS_PATH)" SAM_CLI_TELEMETRY=0 sam build --build-in-source --template-file template.yml && \
	echo "==> sam build done in $$(( $$(date +%s) - start ))s: .aws-sam/build/template.yaml"

deploy: ## Print the deploy procedure (runs nothing: this workplace has no AWS account)
	@./scripts/deploy-help.sh "$(STACK_NAME)"

# --- Performance (issue 6; README "Performance") ----------------------------------------
# Release build, a local cloud of its own on 4576/3011/3010 (in memory), results in
# target/bench/. Sequential latency: make bench N=100 C=1. Figures: README "Performance".

.PHONY: bench bench-cold-start

bench: ## Load benchmark, floor, cold starts, cost per 1M payments: make bench N=2000 C=32 U=200 MODE=approve_all HOT=1
	@N="$(N)" C="$(C)" U="$(U)" MODE="$(MODE)" HOT="$(HOT)" COLD="$(COLD)" FLOOR="$(FLOOR)" ./scripts/bench.sh

bench-cold-start: ## Cold starts (median of COLD=10), peak RSS and binary sizes, after a short load for real events
	@N=50 C=4 U=10 FLOOR=0 WARMUP=8 COLD="$(COLD)" ./scripts/bench.sh
