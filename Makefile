# Every developer and tester command. `make` alone lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

CARGO ?= cargo

# Deploy-side tools live in a git-ignored venv (scripts/tools.sh); the targets that need
# them put it first on PATH (cargo-lambda runs zig as `python3 -m ziglang`).
TOOLS_VENV := .tools/venv
TOOLS_PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
STACK_NAME ?= payment-saga-dev

.PHONY: help setup fmt fmt-check clippy lint test test-unit test-contract build clean
.PHONY: start-local stop-all status demo logs-lambda
.PHONY: tools validate-template build-all build-lambda sam-build deploy

help: ## List the targets
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then c='\033[36m'; r='\033[0m'; else c=''; r=''; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk -v c="$$c" -v r="$$r" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-22s%s %s\n", c, $$1, r, $$2}'

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

start-local: ## Start the local cloud (4566 AWS edge, 3001 API, 3000 gateway) and run a demo payment
	@./scripts/local.sh start
	@./scripts/local.sh demo

stop-all: ## Stop the local cloud and everything it started
	@./scripts/local.sh stop

status: ## Is the local cloud running, and where
	@./scripts/local.sh status

demo: ## One demo payment against the running local cloud
	@./scripts/local.sh demo

logs-lambda: ## Tail one function's log: make logs-lambda NAME=wallet-service
	@test -n "$(NAME)" || { echo "usage: make logs-lambda NAME=<function>"; exit 2; }
	@tail -n 100 .local/logs/$(NAME).log

clean: stop-all ## Stop the local cloud, remove build output and local data
	$(CARGO) clean
	rm -rf .local

# --- AWS: template, artefacts, deploy (no Docker; docs/deploy.md) ---------------------

tools: ## Install cfn-lint, SAM CLI, cargo-lambda, zig, statelint (.tools/venv) + arm64 target; quick when present
	@./scripts/tools.sh

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
