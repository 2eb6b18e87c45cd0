# mtlsctl: every target sets up what it needs on a fresh machine.
GO      ?= go
BIN     ?= bin/mtlsctl
PKGS    ?= ./...
# Real Consul agents for the tests (built once from the Go module proxy, cached).
CONSUL_VERSIONS ?= 1.6.2 1.13.9

.PHONY: all build test test-short consul demo bench bench-go bench-generate bench-apply bench-mesh fuzz vet fmt clean

all: build

# --version prints the VCS revision recorded by -buildvcs (even under a
# GOFLAGS=-buildvcs=false); a release sets the version itself:
#   make build LDFLAGS='-X github.com/mtlsctl/mtlsctl/cmd.Version=v1.2.3'
LDFLAGS ?=
build:
	$(GO) build -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mtlsctl

## demo: the whole bootstrap against a local sandbox cluster (no root, no network).
demo: build
	./$(BIN) demo

## consul: build and cache the real Consul agents the tests use.
consul:
	scripts/build-consul.sh $(CONSUL_VERSIONS)

## test: everything: unit tests, real consul validate, real sshd in network
## namespaces (the last skip cleanly when not root or when sshd is missing).
test: consul
	scripts/test.sh

test-short:
	$(GO) test -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l -w .

fuzz:
	$(GO) test ./inventory -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s
	$(GO) test ./inventory -run '^$$' -fuzz '^FuzzImportApigee$$' -fuzztime 30s

## bench: Go benchmarks plus the scripted side-by-side runs (see README).
bench: bench-go bench-generate bench-apply bench-mesh

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./ca ./consulcfg ./distribute

bench-generate: build consul
	scripts/bench-generate.sh

## bench-apply: mtlsctl apply vs scp, sftp -b, parallel-scp and Ansible on real
## sshd hosts, plus WAN latency through a delaying proxy (root; docs/bench-apply.md).
bench-apply: build
	scripts/bench-apply.sh

## bench-mesh: the Connect proxies' cost on a real 5-node mesh (stream and round
## trips, mesh vs direct; each proxy's memory; 13-node estimate), root;
## docs/bench-mesh.md. The script builds Consul 1.6.2 when it is not cached.
bench-mesh:
	scripts/bench-mesh.sh

clean:
	rm -rf bin
