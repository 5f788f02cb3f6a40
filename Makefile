# Every developer and tester command. `make` alone lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help setup fmt fmt-check clippy lint test test-unit test-contract build clean

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

clean: ## Remove build output and local data
	$(CARGO) clean
	rm -rf .local
