#!/usr/bin/env bash
# Builds a Consul agent binary from the Go module proxy and caches it, so tests
# can run real agents. Consul 1.6.2 is Apigee's pinned version; 1.13.9 is the
# newest MPL-licensed release that still builds here and is the reference for
# the `tls {}` schema. (1.16+ pulls in non-open-source modules the proxy refuses.)
#
# usage: scripts/build-consul.sh [VERSION...]   (default: 1.6.2 1.13.9)
# prints the path of each cached binary; env MTLSCTL_CONSUL_CACHE overrides
# the cache directory (default ~/.cache/mtlsctl).
set -euo pipefail

cache="${MTLSCTL_CONSUL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtlsctl}"
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(1.6.2 1.13.9)

for v in "${versions[@]}"; do
  out="$cache/consul-$v/consul"
  have="$([ -x "$out" ] && "$out" version 2>/dev/null || true)"
  if [[ "$have" == "Consul v$v"$'\n'* || "$have" == "Consul v$v" ]]; then
    echo "$out"
    continue
  fi
  mkdir -p "$cache/consul-$v"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    # Consul 1.13 needs at least go 1.18 semantics in the module that builds it.
    printf 'module consulbuild\n\ngo 1.18\n' > go.mod
    export GOFLAGS=-mod=mod
    go get "github.com/hashicorp/consul@v$v" >&2
    # The version is stamped the way Consul's own Makefile does it.
    CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
      -ldflags "-X github.com/hashicorp/consul/version.GitCommit=mtlsctl -X github.com/hashicorp/consul/version.GitDescribe=v$v -X github.com/hashicorp/consul/version.Version=$v -X github.com/hashicorp/consul/version.VersionPrerelease=" \
      github.com/hashicorp/consul >&2
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
  trap - EXIT
  "$out" version | head -1 >&2
  echo "$out"
done
