# restartunit: restarts one unit (UNIT) while this run holds the node lock.
# With HOLD ("ADDR PORT LISTENERS") the restart is hitless: a rule at the
# top of INPUT drops new connections' SYNs to ADDR:PORT (an ingress
# proxy's public address, or the loopback upstreams an egress proxy's nat
# rules lead to), so a client resends its SYN a second later instead of
# being refused; the rule goes once the new proxy has LISTENERS listeners
# on PORT, or after 10 s, and on any exit. Connections open through the
# old proxy when it stops are closed (the built-in proxy does not hand them
# over): the restart waits until none is established on PORT, up to 2 s,
# so short ones finish (a call through the mesh can take longer than a
# fixed pause on a loaded node); long-lived ones reconnect.
held || { echo "the node lock is not held by this run ($RUN); another admin may have forced it" >&2; exit "$EX_LOCKED"; }
set -f; set -- $HOLD; set +f
holding=
if [ $# -eq 3 ] && command -v iptables >/dev/null 2>&1; then
  hold() { iptables -w "$1" INPUT -p tcp -d "$2" --dport "$3" --syn -m comment --comment "mtlsctl-hold $UNIT" -j DROP; }
  # A hold left by a run that was cut off is removed first.
  k=0; while [ "$k" -lt 5 ] && hold -D "$1" "$2" 2>/dev/null; do k=$((k + 1)); done
  if hold -I "$1" "$2"; then
    holding=1
    trap 'hold -D "$1" "$2" 2>/dev/null' EXIT
    # Connections already open get up to 2 s to finish: the proxy closes
    # them when it stops.
    if command -v ss >/dev/null 2>&1; then
      i=0
      while [ "$i" -lt 20 ]; do
        n=$(ss -tn state established "sport = :$2" 2>/dev/null | tail -n +2 | wc -l)
        [ "$n" -eq 0 ] && break
        sleep 0.1
        i=$((i + 1))
      done
    else
      sleep 0.3
    fi
  fi
fi
systemctl restart "$UNIT" || { echo "systemctl restart $UNIT failed (see journalctl -u $UNIT on the node)" >&2; exit "$EX_MESH"; }
# The hold goes as soon as the new proxy listens (without a hold, as on a
# node without iptables, there is nothing to wait for).
if [ -n "$holding" ] && command -v ss >/dev/null 2>&1; then
  i=0
  while [ "$i" -lt 100 ]; do
    n=$(ss -ltn "sport = :$2" 2>/dev/null | tail -n +2 | wc -l)
    [ "$n" -ge "$3" ] && break
    sleep 0.1
    i=$((i + 1))
  done
fi
exit 0
