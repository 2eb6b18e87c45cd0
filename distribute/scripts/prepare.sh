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
