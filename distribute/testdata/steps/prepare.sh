# mtlsctl step prepare
EX_LOCKED=3
EX_STATEDIR=20
EX_LOCKWRITE=21
EX_MKDIR=22
EX_STAGEDIR=23
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
LOCKINFO='run=0123456789abcdef holder=alice@admin-1 pid=42 time=2026-01-02T03:04:05Z op=apply procspace=00112233aabbccdd start=123456'
FORCE_RUN='fedcba9876543210'
DIRS='/etc/consul.d
/etc/consul.d/tls
/var/lib/mtlsctl
'
STAGE='.mtlsctl-stage-0123456789abcdef'
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
# prepare: takes the node lock for RUN (or finds it already ours), then
# creates the missing target directories (DIRS) and an empty 0700 staging
# directory named STAGE in each. Prints CREATED<TAB>dir for directories it
# made, or LOCKED<TAB>run<TAB>info and exits EX_LOCKED when another run holds
# the lock. FORCE_RUN names a run whose lock the admin side judged may be
# taken over (--force-unlock): the lock is removed first, only while it
# still names that run.
{ [ -d "$R$S" ] || mkdir -p "$R$S"; } && chmod 700 "$R$S" || { echo "cannot create the node state directory $S" >&2; exit "$EX_STATEDIR"; }
if [ -n "$FORCE_RUN" ]; then
  _f=; { read -r _f <"$R$S/lock/run"; } 2>/dev/null
  if [ "$_f" = "$FORCE_RUN" ]; then rm -rf -- "$R$S/lock"; fi
fi
if mkdir "$R$S/lock" 2>/dev/null; then
  printf '%s\n' "$LOCKINFO" >"$R$S/lock/info" && printf '%s\n' "$RUN" >"$R$S/lock/run" || { echo "cannot write the lock" >&2; exit "$EX_LOCKWRITE"; }
elif ! held; then
  printf 'LOCKED\t%s\t%s\n' "$(cat "$R$S/lock/run" 2>/dev/null)" "$(tr '\n' ' ' <"$R$S/lock/info" 2>/dev/null)"
  exit "$EX_LOCKED"
fi
# Missing target directories are made with one mkdir and one chmod, the
# staging directories with one mkdir: process count, not directory count,
# is what costs on a busy node. A failure is retried per directory to name
# the one at fault.
set --
while IFS= read -r d; do
  [ -n "$d" ] || continue
  if [ ! -d "$R$d" ]; then set -- "$@" "$R$d"; printf 'CREATED\t%s\n' "$d"; fi
done <<EOF_DIRS
$DIRS
EOF_DIRS
if [ $# -gt 0 ]; then
  # Under umask 022: the steps run under 077, which would make missing
  # parents 0700 and keep a non-root agent out of, say, /opt/apigee/....
  ( umask 022; mkdir -p -- "$@" 2>/dev/null ) || for d in "$@"; do ( umask 022; mkdir -p -- "$d" ) || { echo "cannot create ${d#"$R"}" >&2; exit "$EX_MKDIR"; }; done
  chmod 755 -- "$@"
fi
set --
while IFS= read -r d; do
  [ -n "$d" ] || continue
  st="$R$d/$STAGE"
  if [ -e "$st" ] || [ -L "$st" ]; then rm -rf -- "$st"; fi
  set -- "$@" "$st"
done <<EOF_DIRS
$DIRS
EOF_DIRS
mkdir -m 700 -- "$@" 2>/dev/null || for d in "$@"; do
  [ -d "$d" ] || mkdir -m 700 -- "$d" || { echo "cannot create the staging directory in $(dirname -- "${d#"$R"}")" >&2; exit "$EX_STAGEDIR"; }
done
exit 0
