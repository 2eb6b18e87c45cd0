#!/usr/bin/env bash
# The test command behind `make test`: vet, then every package's tests with the
# cached Consul binaries. Tests needing root (network namespaces, real sshd)
# skip with a message when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${MTLSCTL_CONSUL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtlsctl}"
export MTLSCTL_CONSUL_1_6_2="${MTLSCTL_CONSUL_1_6_2:-$cache/consul-1.6.2/consul}"
export MTLSCTL_CONSUL_1_13_9="${MTLSCTL_CONSUL_1_13_9:-$cache/consul-1.13.9/consul}"

unformatted="$(gofmt -l . || true)"
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
# Packages run in parallel: each network-namespace test uses its own subnet
# and name prefix (internal/testinfra/testnet refuses a subnet already in use).
go test -count=1 -timeout 25m "$@" ./...
