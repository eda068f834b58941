# sidecar-init: the README's two commands are `make demo` and `make test`.
GO       ?= go
BIN      := bin/sidecar-init
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Pinned: `make lint` must give the same answer on every machine. Installed under a path
# that names the version, so a golangci-lint of another version already on the machine
# (in GOPATH/bin, or a GOBIN elsewhere) is never taken for it.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT_DIR := $(CURDIR)/bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)
GOLANGCI_LINT := $(GOLANGCI_LINT_DIR)/golangci-lint

.PHONY: build demo test test-go cc test-dockerlint lint docs shellcheck image integration integration-deps bench bench-deps bench-smoke chaos chaos-ci fuzz clean

## build: a static, stripped sidecar-init in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sidecar-init

## demo: a oneshot task and six small daemons; one crashes after 4 s, the rest run on; Ctrl-C stops them
## (`trap : INT`: Ctrl-C must not end the recipe shell before it prints the exit status)
demo: build
	@echo '--- sidecar-init demo: "backend" starts once the oneshot "setup" has finished, "ticker" once'
	@echo '--- "backend" is ready; lines are labelled NAME | ...;'
	@echo '--- "flaky" crashes after 4 s and the others keep running;'
	@echo '--- "phoenix" crashes every 6 s and is restarted with a growing backoff;'
	@echo '--- "frozen" stops answering its liveness probe after 5 s and is stopped 1 to 2 s later.'
	@echo '--- In another terminal: CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=/tmp/sidecar-init-demo.sock ./$(BIN) status'
	@echo '--- Press Ctrl-C to stop them all; the exit status is then the first crash'"'"'s (3).'
	trap : INT; ./$(BIN) --config examples/demo.toml; echo "--- sidecar-init exited with status $$?"

## test: the whole suite (race detector on; includes the docs staleness check)
test: test-go test-dockerlint shellcheck

test-go: cc
	$(GO) test -race -count=1 ./...

# go test -race needs cgo, so a C compiler. On a fresh Debian machine, as root, the first run
# installs Debian's gcc.
cc:
	@cc="$$($(GO) env CC)"; command -v "$$cc" >/dev/null && exit 0; \
	if [ "$$cc" = gcc ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "no C compiler (go test -race needs cgo): installing Debian's gcc" && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; \
	  exit; \
	fi; \
	echo "no C compiler $$cc (go test -race needs cgo): apt-get install gcc (Debian), then make test again"; exit 1

# BuildKit's Dockerfile linter lives in its own module so the main go.mod stays lean.
test-dockerlint:
	cd sidecars/dockerlint && $(GO) test -count=1 ./...

# On a fresh Debian machine, as root, the first run installs Debian's shellcheck.
shellcheck:
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "shellcheck is missing: installing Debian's package" && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; } || \
	  { echo "shellcheck is missing: apt-get install shellcheck (Debian), then make test again"; exit 1; }
	shellcheck sidecars/egress-entrypoint.sh

## integration: real daemons (mitmdump, git daemon + gitleaks) under sidecar-init as PID 1
## of a fresh PID namespace; needs root and `make integration-deps`
integration: cc
	$(GO) test -tags integration -race -count=1 -v ./sidecars/integration/

integration-deps:
	sidecars/integration/install-deps.sh

## bench: sidecar-init side by side with tini, dumb-init, catatonit, s6 and supervisord,
## each as PID 1 of a fresh PID namespace, interleaved; writes docs/benchmarks.md and the raw
## samples (root; after `make bench-deps`; about 10 minutes)
BENCH_DEBS := tini dumb-init catatonit s6 supervisor runit gcc libc6-dev
bench-deps:
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(BENCH_DEBS)

bench: build
	$(GO) run ./bench/cmd/initbench -sidecar-init $(BIN) -out docs

# A few repetitions, so the harness cannot rot (CI); the figures go to a temporary dir.
bench-smoke: build
	$(GO) run ./bench/cmd/initbench -quick -sidecar-init $(BIN) -out $$(mktemp -d)

## chaos: the fault-injection suite at full size, sidecar-init as PID 1 (root); writes
## docs/reliability.md
chaos: cc
	$(GO) test -tags chaos -race -count=1 -timeout 15m -run '^TestChaos$$' ./cmd/sidecar-init \
	  -args -chaos.size=full -chaos.report=$(CURDIR)/docs/reliability.md

## chaos-ci: the same scenarios at CI size (about a minute)
chaos-ci: cc
	$(GO) test -tags chaos -race -count=1 -timeout 5m -run '^TestChaos$$' ./cmd/sidecar-init -args -chaos.size=ci

## fuzz: every fuzz target for FUZZTIME each (the seed corpora also run in `make test`).
## A count (Nx), not a duration: with a duration, go1.26's fuzz coordinator can fail a
## target with a bare "context deadline exceeded" at the deadline (golang/go#75804, fixed
## in Go 1.27); a count has no deadline to race. 100000x is 3-10 s a target here;
## FuzzLookupUser writes two files per execution (about 500 a second), so it gets fewer.
FUZZTIME ?= 100000x
FUZZTIME_FILES ?= 5000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./cmd/sidecar-init/internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzSelect$$' -fuzztime $(FUZZTIME) ./cmd/sidecar-init/internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzLineOf$$' -fuzztime $(FUZZTIME) ./cmd/sidecar-init/internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseSignal$$' -fuzztime $(FUZZTIME) ./procs
	$(GO) test -run '^$$' -fuzz '^FuzzLookupUser$$' -fuzztime $(FUZZTIME_FILES) ./procs
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./cmd/sidecar-init/internal/control

## lint: gofmt, go vet and a pinned golangci-lint
lint: $(GOLANGCI_LINT)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run --build-tags integration ./...
	$(GOLANGCI_LINT) run --build-tags chaos ./cmd/sidecar-init/...
	cd sidecars/dockerlint && $(GO) vet ./... && $(GO) mod tidy -diff

$(GOLANGCI_LINT):
	GOBIN=$(GOLANGCI_LINT_DIR) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

## image: the sidecar bundle (needs a Docker engine with buildx, and the claude_bottle
## payload as the `bottle` build context: BOTTLE=path/to/context, layout in
## sidecars/bottle-context.md)
IMAGE  ?= claude-bottle-sidecars:$(VERSION)
BOTTLE ?= ../claude_bottle/sidecar-context
image:
	docker buildx build --build-context bottle=$(BOTTLE) --build-arg VERSION=$(VERSION) \
	  -f Dockerfile.sidecars -t $(IMAGE) .

## docs: regenerate docs/states.md from the transition tables
docs:
	$(GO) test ./fsm -run TestStatesDocIsCurrent -count=1 -update

clean:
	rm -rf bin
