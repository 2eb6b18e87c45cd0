# mtlsctl step mesh
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
GONE='mtlsctl-proxy-old.service
'
UNLOAD=''
DELETES='/etc/systemd/system/mtlsctl-proxy-old.service
'
DAEMON_RELOAD='1'
LOAD='/var/lib/mtlsctl/firewall.sh'
UNITS='mtlsctl-proxy-zk-2181-198-18-0-11.service
mtlsctl-proxy-egress-198-18-0-11.service
'
ENABLE=''
PURGE='0'
KEEP='1'
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
# mesh: after the commit, brings the node's mesh to what the bundle says,
# in this order: stops and disables the proxy units mtlsctl installed that
# the bundle no longer has (GONE), unloads the firewall with the old
# script (UNLOAD: the mesh was turned off or the node uninstalled),
# deletes the files the bundle no longer has (DELETES), runs
# `systemctl daemon-reload` (DAEMON_RELOAD=1), loads the firewall (LOAD:
# the script to run with "load"), then enables and starts every unit in
# UNITS (start leaves a running unit alone; restarts of changed proxies
# are separate steps, one proxy of a class at a time across the cluster),
# after enabling the units in ENABLE (the firewall's boot-time unit).
# With PURGE=1 (uninstall) the node state directory goes last. Releases
# the lock unless KEEP=1. Prints MESHDONE when everything succeeded.
# A retry after the lock was released (the journal finishing an
# interrupted apply) takes it again, unless another run holds it.
if ! held; then
  if mkdir "$R$S/lock" 2>/dev/null; then printf '%s\n' "$RUN" >"$R$S/lock/run"
  else _lr=$(lockrec); echo "the node lock is held by another run (${_lr%%"$TAB"*}); another admin may be applying" >&2; exit "$EX_LOCKED"; fi
fi
fail() { echo "$1" >&2; release_unless_kept; exit "$EX_MESH"; }
release_unless_kept() { if [ "$KEEP" != 1 ]; then release; fi; }
set -f; IFS=$NL
gone=$(printf '%s' "$GONE")
units=$(printf '%s' "$UNITS")
enable=$(printf '%s' "$ENABLE")
IFS=" $TAB$NL"
if [ -n "$gone" ]; then
  # Each unit on its own: a unit whose file is already gone still stops.
  for u in $gone; do
    systemctl disable --now "$u" >/dev/null 2>&1 || systemctl stop "$u" >/dev/null 2>&1 || true
  done
fi
if [ -n "$UNLOAD" ] && [ -L "$R$UNLOAD" ]; then
  fail "the firewall script $UNLOAD is a symbolic link; refusing to run it as root (remove it, and mtlsctl's iptables chains by hand)"
fi
if [ -n "$UNLOAD" ] && [ -f "$R$UNLOAD" ]; then
  sh "$R$UNLOAD" unload || fail "cannot remove mtlsctl's firewall chains ($UNLOAD unload failed)"
fi
while IFS= read -r p; do
  [ -n "$p" ] || continue
  rm -f -- "$R$p" || fail "cannot delete $p"
done <<EOF_DELETES
$DELETES
EOF_DELETES
if [ "$DAEMON_RELOAD" = 1 ]; then
  systemctl daemon-reload || fail "systemctl daemon-reload failed"
fi
if [ -n "$LOAD" ]; then
  sh "$R$LOAD" load || fail "cannot load the firewall rules ($LOAD load failed)"
fi
if [ -n "$enable" ]; then
  systemctl enable $enable >/dev/null || fail "systemctl enable failed for: $(echo $enable)"
fi
if [ -n "$units" ]; then
  systemctl enable $units >/dev/null || fail "systemctl enable failed for: $(echo $units)"
  bad=
  for u in $units; do systemctl start "$u" || bad="$bad $u"; done
  [ -z "$bad" ] || fail "could not start:$bad (see journalctl -u on the node)"
fi
set +f
if [ "$PURGE" = 1 ]; then
  rm -rf -- "$R$S"
  printf 'MESHDONE\n'
  exit 0
fi
printf 'MESHDONE\n'
release_unless_kept
exit 0
