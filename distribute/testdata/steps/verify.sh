# mtlsctl step verify
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
UPLOAD='/home/ops/.mtlsctl-upload-0123456789abcdef'
COPIES='/home/ops/.mtlsctl-upload-0123456789abcdef/f0	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem	/etc/consul.d/tls/agent-key.pem
/home/ops/.mtlsctl-upload-0123456789abcdef/f1	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/ca.pem	/etc/consul.d/tls/ca.pem
/home/ops/.mtlsctl-upload-0123456789abcdef/f2	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json	/etc/consul.d/mtlsctl-agent.json
/home/ops/.mtlsctl-upload-0123456789abcdef/f3	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json	/etc/consul.d/it'\''s here.json
/home/ops/.mtlsctl-upload-0123456789abcdef/f4	/var/lib/mtlsctl/.mtlsctl-stage-0123456789abcdef/generation	/var/lib/mtlsctl/generation
'
MODES='0600	/var/lib/mtlsctl/.mtlsctl-stage-0123456789abcdef/generation
0640	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json
0644	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/ca.pem	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json
'
OWNERS='root:consul	/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem	/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json
'
SYNC='1'
STAGED='/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/agent-key.pem
/etc/consul.d/tls/.mtlsctl-stage-0123456789abcdef/ca.pem
/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json
/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json
/var/lib/mtlsctl/.mtlsctl-stage-0123456789abcdef/generation
'
CONFDIR='/etc/consul.d'
VFILES='/etc/consul.d/.mtlsctl-stage-0123456789abcdef/mtlsctl-agent.json
/etc/consul.d/.mtlsctl-stage-0123456789abcdef/it'\''s here.json
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
# verify: finishes staging after the upload and checks it. With sudo
# (UPLOAD set) it copies the uploads into the staging directories (COPIES:
# upload<TAB>staged<TAB>target lines). It sets modes (MODES: one line per
# mode, "mode<TAB>file..."; empty when the upload set them) and owners
# (OWNERS: "owner<TAB>file..."), one process per line, syncs the staged
# files (SYNC=1), and prints HASHES then the sha256 of every staged file
# (STAGED), in order. When VFILES lists staged Consul config files and the
# node has a consul binary, it then checks the configuration the node would
# load after the commit: the current *.json and *.hcl of CONFDIR with the
# staged ones over them, in a private directory under S, through
# `consul validate`. It prints NOCONSUL (nothing checked) or VALID, or exits
# EX_INVALID with consul's output on stderr.
#
# The staging directories were made empty by this run and only root (or
# this user) can change them, so a staged path that is not a new regular
# file is refused rather than written, chmodded or chowned through.
while IFS=$TAB read -r u st p; do
  [ -n "$u" ] || continue
  if [ -e "$R$st" ] || [ -L "$R$st" ]; then echo "the staged copy of $p already exists; refusing to write through it" >&2; exit "$EX_COPY"; fi
  cp "$R$u" "$R$st" || { echo "cannot copy the upload of $p into staging" >&2; exit "$EX_COPY"; }
done <<EOF_COPIES
$COPIES
EOF_COPIES
while IFS= read -r p; do
  if [ -n "$p" ] && { [ -L "$R$p" ] || [ ! -f "$R$p" ]; }; then echo "the staged copy $p is not a regular file; refusing to chmod or chown it" >&2; exit "$EX_CHMOD"; fi
done <<EOF_STAGED
$STAGED
EOF_STAGED
while IFS= read -r line; do
  [ -n "$line" ] || continue
  set -f; IFS=$TAB; set -- $line; IFS=" $TAB$NL"; set +f
  m=$1; shift
  for p; do shift; set -- "$@" "$R$p"; done
  chmod "$m" -- "$@" || exit "$EX_CHMOD"
done <<EOF_MODES
$MODES
EOF_MODES
while IFS= read -r line; do
  [ -n "$line" ] || continue
  set -f; IFS=$TAB; set -- $line; IFS=" $TAB$NL"; set +f
  o=$1; shift
  for p; do shift; set -- "$@" "$R$p"; done
  chown -h "$o" -- "$@" || { echo "cannot chown files to $o (files with an owner need root: set ssh.user root or ssh.sudo)" >&2; exit "$EX_CHOWN"; }
done <<EOF_OWNERS
$OWNERS
EOF_OWNERS
set --
while IFS= read -r p; do [ -n "$p" ] && set -- "$@" "$R$p"; done <<EOF_STAGED
$STAGED
EOF_STAGED
if [ "$SYNC" = 1 ]; then sync -- "$@" 2>/dev/null || sync; fi
printf 'HASHES\n'
sha256sum -- "$@" || exit "$EX_HASH"
if [ -n "$UPLOAD" ]; then rm -rf -- "$R$UPLOAD"; fi
[ -n "$VFILES" ] || exit 0
command -v consul >/dev/null 2>&1 || { printf 'NOCONSUL\n'; exit 0; }
V="$R$S/.mtlsctl-validate-$RUN"
rm -rf "$V" && mkdir -m 700 -p "$V" || { echo "cannot create $V" >&2; exit "$EX_VALIDATE_SETUP"; }
# One cp for the current files, one for the staged ones (they go in last,
# so they replace their current versions: a staged file keeps its target's
# base name).
set --
for f in "$R$CONFDIR"/*.json "$R$CONFDIR"/*.hcl; do if [ -f "$f" ]; then set -- "$@" "$f"; fi; done
if [ $# -gt 0 ]; then cp -p -- "$@" "$V/" || { rm -rf "$V"; echo "cannot copy the current configuration for validation" >&2; exit "$EX_VALIDATE_SETUP"; }; fi
set --
while IFS= read -r f; do [ -n "$f" ] && set -- "$@" "$R$f"; done <<EOF_VFILES
$VFILES
EOF_VFILES
cp -p -- "$@" "$V/" || { rm -rf "$V"; echo "cannot copy the staged configuration for validation" >&2; exit "$EX_VALIDATE_SETUP"; }
# Consul's own output names the file and the problem; it does not echo
# configuration values such as the gossip key.
out=$(consul validate "$V" 2>&1); rc=$?
rm -rf "$V"
if [ "$rc" -ne 0 ]; then printf '%s\n' "$out" >&2; exit "$EX_INVALID"; fi
printf 'VALID\n'
exit 0
