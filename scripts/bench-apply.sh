#!/usr/bin/env bash
# Side-by-side distribution benchmark: `mtlsctl apply` against scp and
# `sftp -b` (one per node through xargs -P), parallel-scp (Debian's pssh) and
# Ansible's copy module (Debian's ansible), pushing the same rendered bundle
# to 20 and then 50 real sshd hosts (internal/testinfra/testnet network namespaces on
# 198.18.60.0/24), then apply and scp through a delaying proxy at 20 and
# 50 ms round trips. Writes a Markdown report (default docs/bench-apply.md).
#
# Needs root (network namespaces); installs pssh, ansible and what testnet
# needs when missing. Takes 10-20 minutes on 2 cores, mostly Ansible.
#
# usage: scripts/bench-apply.sh
# env:   MTLSCTL_BENCH_SIZES=20,50  MTLSCTL_BENCH_RUNS=3  MTLSCTL_BENCH_CONCURRENCY=20
#        MTLSCTL_BENCH_ANSIBLE_MAX=10m (skip an Ansible size predicted to take longer)
#        MTLSCTL_BENCH_LATENCY_NODES=5 (0 skips the latency runs)
#        MTLSCTL_BENCH_OUT=docs/bench-apply.md
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-apply: needs root (it builds network namespaces with a real sshd each); run it as root or in CI" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg_bin in openssh-server:/usr/sbin/sshd openssh-client:/usr/bin/scp \
               iproute2:/usr/sbin/ip util-linux:/usr/bin/nsenter findutils:/usr/bin/xargs \
               pssh:/usr/bin/parallel-scp ansible:/usr/bin/ansible-playbook; do
  [ -x "${pkg_bin#*:}" ] || need+=("${pkg_bin%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-apply: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

out="${MTLSCTL_BENCH_OUT:-docs/bench-apply.md}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"
# The report goes to a temporary file first: a failed run keeps the last one.
tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT

go build -o bin/mtlsctl ./cmd/mtlsctl
echo "bench-apply: load average $(cut -d' ' -f1-3 /proc/loadavg) (other jobs make the numbers noisier)" >&2

MTLSCTL_BENCH=1 MTLSCTL_BIN="$PWD/bin/mtlsctl" MTLSCTL_BENCH_OUT="$tmp" \
  go test ./e2e -run '^TestBenchApply$' -count=1 -v -timeout 60m

if [ ! -s "$tmp" ]; then
  echo "bench-apply: no report was written (was the benchmark skipped? see the test output above)" >&2
  exit 1
fi
mv "$tmp" "$out"
echo
cat "$out"
