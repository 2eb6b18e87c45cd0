#!/usr/bin/env bash
# Mesh benchmark: what the Consul Connect built-in proxies cost. On a real
# 5-node cluster that mtlsctl brings up (internal/testinfra/testnet network
# namespaces on 198.18.80.0/24, real Consul 1.6.2 agents and proxies, real
# iptables), one 100 MB stream and 1,000 round trips of 100 bytes from a
# router node to a Cassandra node, through the mesh and directly between the
# same two namespaces, MTLSCTL_BENCH_RUNS times; every proxy's resident
# memory; the proxy count of examples/edge-13.yaml with an estimate of its
# memory. Writes a Markdown report (default docs/bench-mesh.md).
#
# Needs root (network namespaces, iptables) and builds Consul 1.6.2 once
# (scripts/build-consul.sh) when it is not cached. Takes under a minute on
# 2 cores once Consul is built.
#
# usage: scripts/bench-mesh.sh
# env:   MTLSCTL_BENCH_RUNS=3  MTLSCTL_BENCH_OUT=docs/bench-mesh.md
#        MTLSCTL_CONSUL_1_6_2=<path of a consul 1.6.2 binary>
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-mesh: needs root (it builds network namespaces with real Consul agents, proxies and iptables); run it as root or in CI" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg_bin in openssh-server:/usr/sbin/sshd iproute2:/usr/sbin/ip util-linux:/usr/bin/nsenter \
               util-linux:/usr/bin/setpriv iptables:/usr/sbin/iptables; do
  [ -x "${pkg_bin#*:}" ] || need+=("${pkg_bin%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-mesh: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

export MTLSCTL_CONSUL_1_6_2="${MTLSCTL_CONSUL_1_6_2:-$(scripts/build-consul.sh 1.6.2)}"

out="${MTLSCTL_BENCH_OUT:-docs/bench-mesh.md}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"
# The report goes to a temporary file first: a failed run keeps the last one.
tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT

echo "bench-mesh: load average $(cut -d' ' -f1-3 /proc/loadavg) (other jobs make the numbers noisier)" >&2

MTLSCTL_BENCH=1 MTLSCTL_BENCH_OUT="$tmp" \
  go test ./e2e -run '^TestBenchMesh$' -count=1 -v -timeout 10m

if [ ! -s "$tmp" ]; then
  echo "bench-mesh: no report was written (was the benchmark skipped? see the test output above)" >&2
  exit 1
fi
mv "$tmp" "$out"
echo
cat "$out"
