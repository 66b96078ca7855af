# Spengler: build, test, demo, benchmark.

GO        ?= go
BINARY    ?= spengler
VERSION   ?= $(shell cat VERSION 2>/dev/null || echo 0.0.0)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILDUSER ?= $(shell id -un 2>/dev/null || echo unknown)@$(shell hostname 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VPKG      := github.com/prometheus/common/version
LDFLAGS   := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) \
             -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildUser=$(BUILDUSER) \
             -X $(VPKG).BuildDate=$(BUILDDATE)
TEST_TIMEOUT ?= 15m
FUZZTIME     ?= 10s
# package:target of every fuzz target; make fuzz runs each for FUZZTIME
FUZZ_TARGETS := config:FuzzParse config:FuzzSecretsStayHidden collector:FuzzRedactor

.PHONY: all build test test-short fuzz demo bench lint style vet clean

all: lint test build

## build: the spengler binary, static, with version information
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) .

## test: provision the database servers the tests start, then run every test with -race
test:
	scripts/provision.sh postgres mariadb chromium prometheus
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

## test-short: the tests that need no database server
test-short:
	$(GO) test -race -short -count=1 ./...

## fuzz: a short run of every fuzz target (the seed corpora run in every go test)
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./$$pkg; \
	done

## demo: two local PostgreSQL servers with two-way logical replication, and Spengler on :8442
demo: build
	scripts/provision.sh postgres
	$(GO) run ./cmd/spengler-demo -spengler ./$(BINARY) -listen :8442

## bench: the Go benchmarks against real servers, then spengler-bench: PAIRS pairs over
## real PostgreSQL and MariaDB servers (healthy, hanging, broken; SOAK=10m adds a soak)
PAIRS ?= 1000
SOAK  ?= 0
bench: build
	scripts/provision.sh postgres mariadb
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 20m ./...
	$(GO) run ./cmd/spengler-bench -spengler ./$(BINARY) -pairs $(PAIRS) -soak $(SOAK)

lint: style vet

style:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -f $(BINARY)
