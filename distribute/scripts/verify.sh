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
