# mtlsctl step cleanup
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
DIRS='/etc/consul.d
/etc/consul.d/tls
/var/lib/mtlsctl
'
STAGE='.mtlsctl-stage-0123456789abcdef'
UPLOAD='/home/ops/.mtlsctl-upload-0123456789abcdef'
CREATED='/etc/consul.d/tls
/etc/consul.d
'
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
# cleanup: removes everything staging made (the STAGE directories in DIRS,
# the sudo upload directory UPLOAD, the validation directory, a lock this
# run had not yet renamed into place, and the
# directories staging created, CREATED, deepest first, if still empty) and
# releases the lock if this run holds it. It never touches a target file.
while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$R$d/$STAGE"; done <<EOF_DIRS
$DIRS
EOF_DIRS
if [ -n "$UPLOAD" ]; then rm -rf -- "$R$UPLOAD"; fi
rm -rf -- "$R$S/.mtlsctl-validate-$RUN" "$R$S/.mtlsctl-lock-$RUN"
while IFS= read -r d; do if [ -n "$d" ]; then rmdir -- "$R$d" 2>/dev/null; fi; done <<EOF_CREATED
$CREATED
EOF_CREATED
release
exit 0
