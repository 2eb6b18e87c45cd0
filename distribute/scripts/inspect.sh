# inspect: reads, changing nothing, the state of the paths in PATHS and of
# the node state directory S (generation, manifest and the files it lists,
# lock). Prints F/X/N<TAB>path for each path (a regular file, something
# else, missing), then for the regular files, in the same order, their
# sha256 (after SUMS) and "mode owner group" (after STAT), using one
# sha256sum and one stat for all files. With GOSSIP=1, JSON files holding
# "encrypt" also get E<TAB>path<TAB>sha256 of the key, hashed on the node
# (the key never leaves it). A B line counts the backup generations. UNITS
# (one per line) get U lines, and with FWIN/FWNAT set, W lines say whether
# those chains are jumped to.
one() {
  if [ -f "$R$1" ]; then printf 'F\t%s\n' "$1"; set_add "$R$1"
  elif [ -e "$R$1" ] || [ -L "$R$1" ]; then printf 'X\t%s\n' "$1"
  else printf 'N\t%s\n' "$1"; fi
}
# The regular files are collected in $F (newline-separated), then become
# "$@" once: a function cannot set its caller's positional parameters.
F=
set_add() { F="$F$1$NL"; }
while IFS= read -r p; do [ -n "$p" ] && one "$p"; done <<EOF_PATHS
$PATHS
EOF_PATHS
# The generation (one line) and the manifest (JSON, newlines dropped) are
# read with the shell's own read: no process per file.
if [ -f "$R$S/generation" ]; then g=; { read -r g <"$R$S/generation"; } 2>/dev/null; printf 'G\t%s\n' "$g"; fi
if [ -f "$R$S/manifest.json" ]; then
  j=; while IFS= read -r l || [ -n "$l" ]; do j="$j$l"; l=; done <"$R$S/manifest.json"; printf 'J\t%s\n' "$j"
fi
if [ -f "$R$S/manifest.sha256" ]; then
  while read -r sum p; do if [ -n "$p" ]; then one "$p"; fi; done <"$R$S/manifest.sha256"
fi
if [ -d "$R$S/lock" ]; then printf 'L\t%s\t%s\n' "$(cat "$R$S/lock/run" 2>/dev/null)" "$(tr '\n' ' ' <"$R$S/lock/info" 2>/dev/null)"; fi
# The number of backup generations the node holds (B<TAB>count).
nb=0
for d in "$R$S/backup"/*; do if [ -d "$d" ] && [ ! -L "$d" ]; then nb=$((nb + 1)); fi; done
printf 'B\t%s\n' "$nb"
set -f; IFS=$NL; set -- $F; IFS=" $TAB$NL"; set +f
if [ $# -gt 0 ]; then
  printf 'SUMS\n'
  if out=$(sha256sum -- "$@" 2>/dev/null); then printf '%s\n' "$out"; else
    for f in "$@"; do if s=$(sha256sum <"$f" 2>/dev/null); then printf '%s\n' "${s%% *}"; else printf -- '-\n'; fi; done
  fi
  printf 'STAT\n'
  if out=$(stat -L -c '%a %U %G' -- "$@" 2>/dev/null); then printf '%s\n' "$out"; else
    for f in "$@"; do stat -L -c '%a %U %G' -- "$f" 2>/dev/null || printf '? ? ?\n'; done
  fi
  printf 'END\n'
fi
if [ "$GOSSIP" = 1 ]; then
  for f in "$@"; do case "$f" in *.json)
    e=$(sed -n 's/.*"encrypt"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$f" 2>/dev/null | head -n 1)
    if [ -n "$e" ]; then
      # Same as fingerprint.Gossip: the hash of the decoded key bytes, or
      # of the text when it is not base64.
      if printf '%s' "$e" | base64 -d >/dev/null 2>&1; then h=$(printf '%s' "$e" | base64 -d | sha256sum | cut -c1-64)
      else h=$(printf '%s' "$e" | sha256sum | cut -c1-64); fi
      printf 'E\t%s\t%s\n' "${f#"$R"}" "$h"
    fi
    e="" ;;
  esac; done
fi
# The mesh's runtime state: each unit's activity (U<TAB>unit<TAB>state)
# and whether mtlsctl's chains are hooked in (W<TAB>filter|nat<TAB>1|0).
while IFS= read -r u; do
  [ -n "$u" ] || continue
  st=$(systemctl is-active "$u" 2>/dev/null); printf 'U\t%s\t%s\n' "$u" "${st:-unknown}"
done <<EOF_UNITS
$UNITS
EOF_UNITS
if [ -n "$FWIN" ]; then
  if iptables -w -C INPUT -j "$FWIN" 2>/dev/null; then printf 'W\tfilter\t1\n'; else printf 'W\tfilter\t0\n'; fi
  if iptables -w -t nat -C OUTPUT -j "$FWNAT" 2>/dev/null; then printf 'W\tnat\t1\n'; else printf 'W\tnat\t0\n'; fi
fi
exit 0
