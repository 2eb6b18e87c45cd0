# mtlsctl step preflight
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
S='/'
RUN=''
MODE='cheap'
CMDS=''
UNITDIR=''
CONSUL=''
DIRS=''
REACH=''
TMO='1'
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
