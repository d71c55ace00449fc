# Unico — run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build run test test-short lint fuzz bench bench-micro release clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build every binary into ./bin
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

run: build ## start hub, one edge agent and the store simulator (data in ./data)
	@./scripts/run.sh

test: ## go vet and the whole test suite with the race detector
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...

test-short: ## the suite without the slow integration tests
	$(GO) test -short ./...

lint: ## gofmt check, go vet, staticcheck
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$fmt" ]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

BENCH_SCALE ?= 1
bench: build ## end-to-end benchmark: hub + two edge agents + loadgen, one JSON line per scenario (BENCH_SCALE scales it)
	BENCH_SCALE=$(BENCH_SCALE) $(GO) run ./internal/benchrun -bin $(BIN)

CHAOS_SCALE ?= 1
.PHONY: chaos
chaos: build ## fault injection: hub + two edge agents under kills, outages, a full quota and a slow network; exits 1 on a lost or double-counted event (CHAOS_SCALE scales it)
	CHAOS_SCALE=$(CHAOS_SCALE) $(GO) run ./internal/chaos -bin $(BIN)

bench-micro: ## micro-benchmarks (go test -bench) of every package
	$(GO) test -run '^$$' -bench . -benchmem ./...

release: ## static binaries for linux/amd64, linux/arm64 and linux/arm (v7) in ./dist
	@mkdir -p dist
	@set -e; for p in amd64 arm64 arm; do \
	  for c in edge-agent hub; do \
	    [ -d cmd/$$c ] || continue; \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$p GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/$$c-linux-$$p$$( [ $$p = arm ] && echo v7 ) ./cmd/$$c; \
	  done; done; ls -l dist

clean: ## remove build output and the demo's data
	rm -rf $(BIN) dist data
