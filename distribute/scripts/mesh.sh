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
