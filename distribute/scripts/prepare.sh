# prepare: takes the node lock for RUN (or finds it already ours), then
# creates the missing target directories (DIRS) and an empty 0700 staging
# directory named STAGE in each. Prints CREATED<TAB>dir for directories it
# made, or LOCKED<TAB>run<TAB>info and exits EX_LOCKED when another run holds
# the lock. FORCE_RUN names a run whose lock the admin side judged may be
# taken over (--force-unlock): the lock is removed first, only while it
# still names that run.
#
# Before it writes anything it refuses (EX_UNSAFE_DIR, naming each directory)
# to work where a user other than root, or the user running the steps, could
# swap a directory entry: such a user could rename a fresh staging directory
# and put a symbolic link in its place between two steps, and the upload,
# chmod and chown that follow, run as root, would then write and hand over a
# file of the link's choosing (and a later rm would delete one). Every
# directory that resolving S and each of DIRS and CHECK (the directories of
# files the mesh step deletes) goes through (symbolic links followed one hop at a time, so that each
# link's own directory is checked too) must be owned by root or by this
# user and not writable by group or others; a sticky ancestor such as /tmp
# may be, when the entry taken in it is owned by root or by this user. A
# missing directory is created below, so its existing parent must be closed
# even when sticky.
me=$(id -u) || { echo "cannot read the user id on the node" >&2; exit "$EX_UNSAFE_DIR"; }
W=
# walk PATH adds to W one line per directory looked up while resolving PATH:
# "E<TAB>dir<TAB>entry<TAB>PATH" (entry taken in dir; dir may be sticky) or
# "C<TAB>dir<TAB>-<TAB>PATH" (dir must be closed: PATH itself, or the parent
# of its first missing component; read collapses empty tab fields).
walk() {
  _todo=${1#/} _cur= _hops=0
  while [ -n "$_todo" ]; do
    _c=${_todo%%/*}
    case $_todo in */*) _todo=${_todo#*/} ;; *) _todo= ;; esac
    case $_c in ''|.) continue ;; ..) _cur=${_cur%/*}; continue ;; esac
    _next=$_cur/$_c
    if [ -L "$R$_next" ]; then
      W="${W}E$TAB${_cur:-/}$TAB$_next$TAB$1$NL"
      _hops=$((_hops + 1))
      [ "$_hops" -le 40 ] || { echo "too many symbolic links under $1" >&2; exit "$EX_UNSAFE_DIR"; }
      _t=$(readlink -- "$R$_next") || { echo "cannot read the symbolic link $_next" >&2; exit "$EX_UNSAFE_DIR"; }
      case $_t in ''|*"$TAB"*|*"$NL"*) echo "the symbolic link $_next points to a name with a tab or a newline" >&2; exit "$EX_UNSAFE_DIR" ;; esac
      case $_t in /*) _cur= ;; esac
      _todo=$_t${_todo:+/$_todo}
    elif [ -e "$R$_next" ]; then
      W="${W}E$TAB${_cur:-/}$TAB$_next$TAB$1$NL"
      _cur=$_next
    else
      W="${W}C$TAB${_cur:-/}$TAB-$TAB$1$NL"
      return 0
    fi
  done
  W="${W}C$TAB${_cur:-/}$TAB-$TAB$1$NL"
}
walk "$S"
while IFS= read -r d; do [ -n "$d" ] && walk "$d"; done <<EOF_DIRS
$DIRS$CHECK
EOF_DIRS
# One stat for every directory and entry on the way (lstat: a link's own
# owner), then the verdicts in the same order (user names have no blanks).
set --
while IFS=$TAB read -r k d e p; do
  [ -n "$k" ] || continue
  set -- "$@" "$R$d"
  if [ "$k" = E ]; then set -- "$@" "$R$e"; fi
done <<EOF_W
$W
EOF_W
st=$(stat -c '%u %a %U' -- "$@") || { echo "cannot inspect the target directories" >&2; exit "$EX_UNSAFE_DIR"; }
set -f; set -- $st; set +f
bad=$NL
while IFS=$TAB read -r k d e p; do
  [ -n "$k" ] || continue
  u=$1 m=$2 un=$3; shift 3
  eu=$me
  if [ "$k" = E ]; then eu=$1; shift 3; fi
  why=
  if [ "$u" != 0 ] && [ "$u" != "$me" ]; then
    why="is owned by $un (uid $u)"
  elif [ $((0$m & 022)) -ne 0 ]; then
    if [ "$k" = E ] && [ $((0$m & 01000)) -ne 0 ] && { [ "$eu" = 0 ] || [ "$eu" = "$me" ]; }; then :; else why="is writable by group or others (mode $m)"; fi
  fi
  [ -n "$why" ] || continue
  case $bad in *"$NL$d$NL"*) continue ;; esac
  bad="$bad$d$NL"
  via=; [ "$d" = "$p" ] || via=" (on the way to $p)"
  echo "$d$via $why: another user could swap its entries for links that root would write through; make it owned by root and not writable by group or others (chown root $d; chmod go-w $d)" >&2
done <<EOF_W
$W
EOF_W
[ "$bad" = "$NL" ] || exit "$EX_UNSAFE_DIR"
{ [ -d "$R$S" ] || mkdir -p "$R$S"; } && chmod 700 "$R$S" || { echo "cannot create the node state directory $S" >&2; exit "$EX_STATEDIR"; }
if [ -n "$FORCE_RUN" ]; then
  _f=; { read -r _f <"$R$S/lock/run"; } 2>/dev/null
  if [ "$_f" = "$FORCE_RUN" ]; then rm -rf -- "$R$S/lock"; fi
fi
# The lock is written whole in a private directory and renamed into place
# (rename(2), which fails while another run's lock is there), so a second
# admin never reads a lock whose holder has not been written yet.
L="$R$S/.mtlsctl-lock-$RUN"
{ [ ! -e "$L" ] || rm -rf -- "$L"; } && mkdir -- "$L" && printf '%s\n' "$LOCKINFO" >"$L/info" && printf '%s\n' "$RUN" >"$L/run" || { echo "cannot write the lock" >&2; exit "$EX_LOCKWRITE"; }
# rename(2) would replace an empty directory: a lock left without its
# record (by an older mtlsctl) must be refused, not taken.
if [ -e "$R$S/lock" ] || ! mv -T -- "$L" "$R$S/lock" 2>/dev/null; then
  rm -rf -- "$L"
  if ! held; then
    printf 'LOCKED\t%s\n' "$(lockrec)"
    exit "$EX_LOCKED"
  fi
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
# Each was removed above, so one that exists now is this mkdir's own (made
# before another failed); never accept a symbolic link as one.
mkdir -m 700 -- "$@" 2>/dev/null || for d in "$@"; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then continue; fi
  mkdir -m 700 -- "$d" || { echo "cannot create the staging directory in $(dirname -- "${d#"$R"}")" >&2; exit "$EX_STAGEDIR"; }
done
exit 0
