#!/usr/bin/env bash
# Side-by-side benchmark of the offline core: `mtlsctl generate` + `render`
# for a 20-node and a 1,000-node cluster, against the same number of
# certificates made by a loop of `consul tls cert create` (the way Apigee's
# docs make them). Prints a Markdown table (wall time, peak RSS).
# usage: scripts/bench-generate.sh [N...]   (default: 20 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(20 1000)
consul="${MTLSCTL_CONSUL_1_6_2:-$(scripts/build-consul.sh 1.6.2)}"
go build -o bin/mtlsctl ./cmd/mtlsctl
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

# run LABEL CMD...: wall seconds and peak RSS (MB) of one command via GNU time.
run() {
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  read -r secs kb <"$work/time"
  printf '%s %s %s\n' "$label" "$secs" "$((kb / 1024))"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(go version | cut -d' ' -f3); consul $("$consul" version | head -1 | cut -d' ' -f2)"
echo
echo "| nodes | mtlsctl generate | mtlsctl render | generate+render | peak RSS | consul tls cert create loop | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
  d="$work/$n"; mkdir -p "$d"
  scripts/gen-cluster.sh "$n" >"$d/cluster.yaml"
  read -r _ g_s g_mb < <(run gen bin/mtlsctl -i "$d/cluster.yaml" --state "$d/state" generate)
  read -r _ r_s r_mb < <(run render bin/mtlsctl -i "$d/cluster.yaml" --state "$d/state" render --out "$d/out")
  # Apigee's way: one `consul tls ca create`, then one process per certificate.
  mkdir -p "$d/consul" && cd "$d/consul"
  start=$(date +%s.%N)
  "$consul" tls ca create >/dev/null
  servers=$(grep -c 'zookeeper' "$d/cluster.yaml" || true)
  for ((i = 0; i < n; i++)); do
    if ((i < servers)); then "$consul" tls cert create -server -dc dc-1 >/dev/null 2>&1
    else "$consul" tls cert create -client -dc dc-1 >/dev/null 2>&1; fi
  done
  end=$(date +%s.%N)
  cd - >/dev/null
  c_s=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
  total=$(awk -v a="$g_s" -v b="$r_s" 'BEGIN { print a + b }')
  peak=$((g_mb > r_mb ? g_mb : r_mb))
  ratio=$(awk -v c="$c_s" -v t="$total" 'BEGIN { print c / (t + 0.001) }')
  printf '| %d | %.2f s | %.2f s | %.2f s | %d MB | %.1f s | %.0fx |\n' "$n" "$g_s" "$r_s" "$total" "$peak" "$c_s" "$ratio"
done
