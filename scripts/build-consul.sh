#!/usr/bin/env bash
# Builds a Consul agent binary from the Go module proxy and caches it, so tests
# can run real agents. Consul 1.6.2 is Apigee's pinned version; 1.13.9 is the
# newest MPL-licensed release that still builds here and is the reference for
# the `tls {}` schema. (1.16+ pulls in non-open-source modules the proxy refuses.)
#
# usage: scripts/build-consul.sh [VERSION...]   (default: 1.6.2 1.13.9)
# prints the path of each cached binary; env MTLSCTL_CONSUL_CACHE overrides
# the cache directory (default ~/.cache/mtlsctl). MTLSCTL_CONSUL_BUILDER names a
# command run as `BUILDER VERSION OUT` instead of the Go build (tests use it).
set -euo pipefail

cache="${MTLSCTL_CONSUL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtlsctl}"
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(1.6.2 1.13.9)

# consul_version BIN prints the first line of `BIN version`. The whole output is
# read before it is cut: piping into `head -1` under pipefail kills consul with
# SIGPIPE when head exits before consul writes its second line (exit 141).
consul_version() {
  local all
  all="$("$1" version 2>/dev/null)" || return 1
  printf '%s\n' "${all%%$'\n'*}"
}

go_build() {
  local v="$1" out="$2" work
  work="$(mktemp -d)"
  (
    trap 'rm -rf "$work"' EXIT
    cd "$work"
    # Consul 1.13 needs at least go 1.18 semantics in the module that builds it.
    printf 'module consulbuild\n\ngo 1.18\n' > go.mod
    export GOFLAGS=-mod=mod
    go get "github.com/hashicorp/consul@v$v" >&2
    # The version is stamped the way Consul's own Makefile does it.
    CGO_ENABLED=0 go build -trimpath -o "$out" \
      -ldflags "-X github.com/hashicorp/consul/version.GitCommit=mtlsctl -X github.com/hashicorp/consul/version.GitDescribe=v$v -X github.com/hashicorp/consul/version.Version=$v -X github.com/hashicorp/consul/version.VersionPrerelease=" \
      github.com/hashicorp/consul >&2
  )
}

for v in "${versions[@]}"; do
  out="$cache/consul-$v/consul"
  if [ -x "$out" ] && [ "$(consul_version "$out" || true)" = "Consul v$v" ]; then
    echo "$out"
    continue
  fi
  mkdir -p "$cache/consul-$v"
  rm -f "$out.tmp"
  if [ -n "${MTLSCTL_CONSUL_BUILDER:-}" ]; then
    "$MTLSCTL_CONSUL_BUILDER" "$v" "$out.tmp" >&2
  else
    go_build "$v" "$out.tmp"
  fi
  got="$(consul_version "$out.tmp" || true)"
  if [ "$got" != "Consul v$v" ]; then
    echo "build-consul.sh: the binary built for $v reports \"$got\", not \"Consul v$v\"; left at $out.tmp" >&2
    exit 1
  fi
  mv "$out.tmp" "$out"
  echo "$got" >&2
  echo "$out"
done
