# mtlsctl step restartunit
EX_LOCKED=3
EX_STATEDIR=20
EX_LOCKWRITE=21
EX_MKDIR=22
EX_STAGEDIR=23
EX_UNSAFE_DIR=24
EX_COPY=30
EX_CHMOD=31
EX_CHOWN=32
EX_HASH=33
EX_STAGED_HASH=40
EX_STAGED_GONE=41
EX_BACKUP=42
EX_RENAME=43
EX_VALIDATE_SETUP=50
EX_INVALID=51
EX_MESH=60
S='/var/lib/mtlsctl'
RUN='0123456789abcdef'
UNIT='mtlsctl-proxy-zk-2181-198-18-0-11.service'
HOLD='198.18.0.11 10001 1'
# lib.sh: put before every step by stepScript, after the preamble that sets
# the step's variables (each quoted by transport.Quote) and the EX_* exit
# codes. R (MTLSCTL_ROOT, empty on a real node) prefixes every node path.
# Lists are newline-separated variables; fields within a line are separated
# by tabs (node paths hold neither: the bundle check refuses control
# characters).
TAB='	'
NL='
'
# held: this run holds the node lock (read with the shell's read: no process).
held() { _l=; { read -r _l <"$R$S/lock/run"; } 2>/dev/null; [ "$_l" = "$RUN" ]; }
# lockrec prints the node lock's record as "run<TAB>info" (info's lines
# joined by spaces), each read only from a regular file, never through a
# symbolic link, and at most 4 KiB of it: the record is shown to the
# admin, and a planted link or a huge file must not become what is shown.
lockrec() {
  _r= _i=
  if [ ! -L "$R$S/lock" ]; then
    if [ -f "$R$S/lock/run" ] && [ ! -L "$R$S/lock/run" ]; then _r=$(head -c 4096 -- "$R$S/lock/run" 2>/dev/null | head -n 1 | tr '\t' ' '); fi
    if [ -f "$R$S/lock/info" ] && [ ! -L "$R$S/lock/info" ]; then _i=$(head -c 4096 -- "$R$S/lock/info" 2>/dev/null | tr '\t\n' '  '); fi
  fi
  printf '%s\t%s\n' "$_r" "$_i"
}
# release: remove the node lock if this run holds it.
release() { if held; then rm -rf "$R$S/lock"; fi; }
# reload_agent runs CMD (when not empty); when it fails and FALLBACK is set,
# the agent may be stopped (a reload cannot start it), so FALLBACK (the
# restart command) runs and STARTED is printed. It then releases the lock,
# also after a failure (the files are committed; the journal retries), and
# ends the step with the commands' status. KEEP=1 keeps the lock for a
# step that follows (the mesh step).
reload_agent() {
  rc=0
  if [ -n "$CMD" ]; then
    sh -c "$CMD" </dev/null || rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$FALLBACK" ]; then
      echo "reload failed (exit $rc); starting the agent with: $FALLBACK" >&2
      rc=0
      sh -c "$FALLBACK" </dev/null || rc=$?
      if [ "$rc" -eq 0 ]; then printf 'STARTED\n'; fi
    fi
  fi
  if [ "$KEEP" != 1 ]; then release; fi
  exit "$rc"
}
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
