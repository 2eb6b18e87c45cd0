#!/usr/bin/env bash
# Writes a synthetic cluster file with N nodes (for benchmarks): datacenters
# of up to 100 nodes, 3 ZooKeeper+Cassandra nodes (the Consul servers) in each,
# the rest alternating Router+Message Processor and Qpid/Postgres, with port
# ranges wide enough for the whole cluster. Addresses come from 198.18.0.0/15.
# usage: scripts/gen-cluster.sh N > cluster.yaml
set -euo pipefail
n="${1:?usage: gen-cluster.sh N}"
awk -v n="$n" 'BEGIN {
  print "# synthetic benchmark cluster: " n " nodes"
  print "cluster: bench-" n
  print "consul:\n  version: \"1.6.2\""
  print "ports:"
  print "  router: 20000-21999\n  message-processor: 22000-23999\n  qpid: 24000-24999\n  postgres: 25000-25999\n  egress: 26000-27999\n  openldap: 28000-28999"
  print "datacenters:"
  dcs = int((n + 99) / 100)
  for (d = 1; d <= dcs; d++) {
    print "  - name: dc-" d
    print "    nodes:"
    for (i = 1; i <= 100; i++) {
      k = (d - 1) * 100 + i
      if (k > n) break
      ip = k + 10
      printf "      - name: n%04d\n        address: 198.18.%d.%d\n", k, int(ip / 256), ip % 256
      if (i <= 3) c = "[zookeeper, cassandra]"
      else if (i % 10 == 4) c = "[qpid]"
      else if (i % 10 == 5) c = "[postgres]"
      else if (i % 10 == 6) c = "[management-server, openldap, ui]"
      else c = "[router, message-processor]"
      print "        components: " c
    }
  }
}'
