# preflight: reads what `mtlsctl preflight` judges, changing nothing. MODE
# "cheap" prints the node's clock first (DATE, so that the admin's round
# trip brackets it closely) and its listening sockets (SS lines, `ss -ltnup`;
# SSMISSING without ss). MODE "full" prints /etc/os-release (OS), each
# command of CMDS found on PATH (CMD), the iptables-services unit or an
# equivalent (IPTSVC), the consul binary's version (CONSUL), whether
# firewalld runs (FIREWALLD), the nearest existing parent of each of DIRS
# with its writability and free KiB (DIR), and one TCP probe of each
# address and port of REACH, all at once, bounded by TMO seconds (REACH:
# open, refused, timeout, or error and the shell's message). ROOTED is
# printed when R is set (a directory sandbox: its ports and firewall are
# the host's, not its own).
if [ -n "$R" ]; then printf 'ROOTED\n'; fi
if [ "$MODE" = cheap ]; then
  printf 'DATE %s\n' "$(date +%s.%N 2>/dev/null)"
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnup 2>/dev/null | sed 's/^/SS /'
  else
    printf 'SSMISSING\n'
  fi
  exit 0
fi
if [ -r "$R/etc/os-release" ]; then
  _os=$( . "$R/etc/os-release" 2>/dev/null; printf '%s\t%s\t%s' "${ID:-}" "${VERSION_ID:-}" "${PRETTY_NAME:-}" | tr -d '\n')
  printf 'OS %s\n' "$_os"
else
  printf 'OS \t\t\n'
fi
while IFS= read -r c; do
  [ -n "$c" ] || continue
  printf 'CMD %s\t%s\n' "$c" "$(command -v "$c" 2>/dev/null)"
done <<EOF_CMDS
$CMDS
EOF_CMDS
_svc=
for f in /usr/lib/systemd/system/iptables.service /lib/systemd/system/iptables.service \
  /etc/systemd/system/iptables.service "$UNITDIR/iptables.service" /etc/init.d/iptables; do
  if [ -e "$R$f" ]; then _svc="iptables.service ($f)"; break; fi
done
if [ -z "$_svc" ]; then
  if command -v netfilter-persistent >/dev/null 2>&1; then _svc="netfilter-persistent"
  elif [ -e "$R/usr/share/netfilter-persistent" ]; then _svc="netfilter-persistent"
  fi
fi
printf 'IPTSVC %s\n' "$_svc"
if [ -x "$R$CONSUL" ]; then
  printf 'CONSUL 1\t%s\n' "$("$R$CONSUL" version </dev/null 2>/dev/null | head -n 1 | tr -d '\t')"
else
  printf 'CONSUL 0\t\n'
fi
_fw=none
if [ -z "$R" ]; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active firewalld >/dev/null 2>&1; then _fw=active
  elif command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then _fw=active
  fi
fi
printf 'FIREWALLD %s\n' "$_fw"
while IFS= read -r d; do
  [ -n "$d" ] || continue
  p=$d
  while [ ! -e "$R$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done
  w=0
  if [ -d "$R$p" ] && [ -w "$R$p" ]; then w=1; fi
  printf 'DIR %s\t%s\t%s\t%s\n' "$d" "$p" "$w" "$(df -Pk "$R$p" 2>/dev/null | awk 'NR==2 {print $4}')"
done <<EOF_DIRS
$DIRS
EOF_DIRS
# Each probe writes its own file, so concurrent results never interleave.
_t=$(mktemp -d) || exit 1
_i=0
while IFS="$TAB" read -r a p; do
  [ -n "$a" ] || continue
  _i=$((_i + 1))
  (
    if command -v bash >/dev/null 2>&1; then
      _e=$(timeout "$TMO" bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$a" "$p" 2>&1 >/dev/null)
      rc=$?
    elif command -v nc >/dev/null 2>&1; then
      _e=$(timeout "$TMO" nc -z -w "$TMO" "$a" "$p" 2>&1 >/dev/null)
      rc=$?
      # nc -z says nothing about why it failed: only a timeout is told apart.
      [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && _e="Connection refused"
    else
      printf 'REACH %s\t%s\terror\tneither bash nor nc on the node\n' "$a" "$p"
      exit 0
    fi
    _e=$(printf '%s' "$_e" | tr '\t\n' '  ')
    case $rc in
    0) printf 'REACH %s\t%s\topen\t\n' "$a" "$p" ;;
    124) printf 'REACH %s\t%s\ttimeout\t\n' "$a" "$p" ;;
    *) case $_e in
       *"refused"*) printf 'REACH %s\t%s\trefused\t\n' "$a" "$p" ;;
       *) printf 'REACH %s\t%s\terror\t%s\n' "$a" "$p" "$_e" ;;
       esac ;;
    esac
  ) >"$_t/$_i" 2>/dev/null &
done <<EOF_REACH
$REACH
EOF_REACH
wait
cat "$_t"/* 2>/dev/null
rm -rf "$_t"
exit 0
