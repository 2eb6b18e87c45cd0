# mtlsctl step commit
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
B='/var/lib/mtlsctl/backup/aaaabbbbccccdddd'
BACKUP_DIR='backup'
KEEP_BACKUPS='3'
FILES='1111111111111111111111111111111111111111111111111111111111111111	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem	/etc/consul.d/tls/agent-key.pem
2222222222222222222222222222222222222222222222222222222222222222	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/ca.pem	/etc/consul.d/tls/ca.pem
3333333333333333333333333333333333333333333333333333333333333333	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json	/etc/consul.d/mtlsctl-agent.json
4444444444444444444444444444444444444444444444444444444444444444	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json	/etc/consul.d/it'\''s here.json
5555555555555555555555555555555555555555555555555555555555555555	/var/lib/mtlsctl/.mtlsctl-stage-0123456789abcdef/generation	/var/lib/mtlsctl/generation
'
BACKUPS='/etc/consul.d	/etc/consul.d/mtlsctl-agent.json	/etc/consul.d/it'\''s here.json
/etc/consul.d/tls	/etc/consul.d/tls/agent-key.pem	/etc/consul.d/tls/ca.pem
/var/lib/mtlsctl	/var/lib/mtlsctl/generation
'
MOVES='/etc/consul.d/tls	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/ca.pem
/etc/consul.d	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json
/var/lib/mtlsctl	/var/lib/mtlsctl/.mtlsctl-stage-0123456789abcdef/generation
'
DIRS='/etc/consul.d
/etc/consul.d/tls
/var/lib/mtlsctl
'
STAGE='.mtlsctl-stage-0123456789abcdef'
RELOAD='1'
CMD='systemctl reload consul'
FALLBACK='systemctl restart consul'
KEEP='0'
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
# commit: checks that every staged file (or, on a re-run, the target it was
# already renamed onto) holds the new content (FILES: sha256<TAB>staged<TAB>
# target lines, in commit order), backs up the current targets under B
# (BACKUPS: "dir<TAB>target..." lines; once per run), renames the staged
# files into place (MOVES: "dir<TAB>staged..." lines, one mv each, the
# generation file last), syncs the target directories (DIRS) and removes the
# staging directories (STAGE). Prints COMMITTED once the files are in place,
# then prunes the backups to the newest KEEP_BACKUPS generations and, with
# RELOAD=1, runs the reload (reload_agent). Running it twice is harmless.
held || { echo "the node lock is not held by this apply (run $RUN); another admin may have forced it" >&2; exit "$EX_LOCKED"; }
check() {
  if [ -f "$R$1" ]; then
    s=$(sha256sum <"$R$1") && s=${s%% *} || s=""
    [ "$s" = "$3" ] || { echo "staged copy of $2 has sha256 $s, want $3" >&2; exit "$EX_STAGED_HASH"; }
  else
    # Never hashed through a link: a link there is not the new file.
    s=
    if [ ! -L "$R$2" ]; then s=$(sha256sum <"$R$2" 2>/dev/null) && s=${s%% *} || s=""; fi
    [ "$s" = "$3" ] || { echo "staged copy of $2 is gone and $2 does not hold the new content" >&2; exit "$EX_STAGED_GONE"; }
  fi
}
# Fast path: every staged file still there with the right hash (one
# process); otherwise (a re-run after a partial commit) check file by file.
sums=
while IFS=$TAB read -r sum st p; do [ -n "$sum" ] && sums="$sums$sum  $R$st$NL"; done <<EOF_FILES
$FILES
EOF_FILES
fast=1
if ! printf '%s' "$sums" | sha256sum -c --status 2>/dev/null; then
  fast=0
  while IFS=$TAB read -r sum st p; do if [ -n "$sum" ]; then check "$st" "$p" "$sum"; fi; done <<EOF_FILES
$FILES
EOF_FILES
fi
# Back up the current targets, one cp per directory, all before any
# rename; the marker makes a re-run skip it (targets may be new by then).
# A symbolic link in a target's place is backed up as the link itself
# (cp -P): what it points to, perhaps a root-only file, is never copied.
if [ ! -e "$R$B/.complete-$RUN" ]; then
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    set -f; IFS=$TAB; set -- $line; IFS=" $TAB$NL"; set +f
    d=$1; shift
    mkdir -p -- "$R$B$d" || exit "$EX_BACKUP"
    for p; do shift; if [ -f "$R$p" ] || [ -L "$R$p" ]; then set -- "$@" "$R$p"; fi; done
    if [ $# -gt 0 ]; then cp -pP -- "$@" "$R$B$d/" || { echo "cannot back up the files of $d" >&2; exit "$EX_BACKUP"; }; fi
  done <<EOF_BACKUPS
$BACKUPS
EOF_BACKUPS
  # Backups are root's alone whatever the originals allowed (the manifest
  # copied with them records the modes), and each gets the next sequence
  # number, which orders the generations for pruning. chmod -R skips the
  # links it meets: a backed-up link's target keeps its mode.
  [ -d "$R$B" ] || mkdir -p -- "$R$B" || exit "$EX_BACKUP"
  chmod -R go-rwx -- "$R$B" || exit "$EX_BACKUP"
  seq=0
  for d in "$R$S/$BACKUP_DIR"/*; do
    n=; { read -r n <"$d/.seq"; } 2>/dev/null
    case $n in ''|*[!0-9]*) ;; *) [ "$n" -gt "$seq" ] && seq=$n ;; esac
  done
  printf '%s\n' "$((seq + 1))" >"$R$B/.seq" && : >"$R$B/.complete-$RUN" || exit "$EX_BACKUP"
fi
# rename(2) replaces a symbolic link in a target's place, never what it
# points to: mv into a directory renames onto DIR/name (lstat'ed, so a link
# to a directory there is replaced, not entered), and the one-by-one path
# says -T so that a target that is a link to a directory is not taken as
# the directory to move into.
if [ "$fast" = 1 ]; then
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    set -f; IFS=$TAB; set -- $line; IFS=" $TAB$NL"; set +f
    d=$1; shift
    for p; do shift; set -- "$@" "$R$p"; done
    mv -f -- "$@" "$R$d/" || { echo "cannot rename the staged files into $d" >&2; exit "$EX_RENAME"; }
  done <<EOF_MOVES
$MOVES
EOF_MOVES
else
  while IFS=$TAB read -r sum st p; do
    [ -n "$sum" ] || continue
    if [ -f "$R$st" ]; then mv -f -T -- "$R$st" "$R$p" || { echo "cannot rename the staged file onto $p" >&2; exit "$EX_RENAME"; }; fi
  done <<EOF_FILES
$FILES
EOF_FILES
fi
set --
while IFS= read -r d; do [ -n "$d" ] && set -- "$@" "$R$d"; done <<EOF_DIRS
$DIRS
EOF_DIRS
sync -- "$@" 2>/dev/null || sync
for d; do rm -rf -- "$d/$STAGE"; done
printf 'COMMITTED\n'
# Only now, with the new files in place, the backups beyond the newest
# KEEP_BACKUPS generations go (by sequence number; backups made before
# numbering count as the oldest). The newest is this run's own B, which a
# re-run of this step needs (.complete-$RUN), so it always stays. A failure
# here is reported and does not undo the commit. rm -rf never follows a
# link, and an entry that is not a real directory is left alone.
BD="$R$S/$BACKUP_DIR"
if [ -d "$BD" ] && [ ! -L "$BD" ]; then
  list=
  for d in "$BD"/*; do
    [ -d "$d" ] && [ ! -L "$d" ] || continue
    n=; { read -r n <"$d/.seq"; } 2>/dev/null
    case $n in ''|*[!0-9]*) n=0 ;; esac
    list="$list$n$TAB${d##*/}$NL"
  done
  printf '%s' "$list" | sort -t "$TAB" -k1,1nr -k2,2r | tail -n +"$((KEEP_BACKUPS + 1))" |
    while IFS=$TAB read -r n g; do
      [ -n "$g" ] && { rm -rf -- "$BD/$g" || echo "cannot remove the old backup $S/$BACKUP_DIR/$g" >&2; }
    done
fi
[ "$RELOAD" = 1 ] || exit 0
reload_agent
