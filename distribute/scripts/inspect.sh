# inspect: reads, changing nothing, the state of the paths in PATHS and of
# the node state directory S (generation, manifest and the files it lists,
# lock). Prints F/K/X/N<TAB>path for each path (a regular file, a symbolic
# link, with K<TAB>path<TAB>target, something else, missing), then for the
# regular files, in the same order, their sha256 (after SUMS) and "mode
# owner group size" (after STAT), using one sha256sum and one stat for all
# files. A symbolic link is never followed: it is reported as one, not
# hashed, stat'ed or read through. With GOSSIP=1, JSON files holding
# "encrypt" also get E<TAB>path<TAB>sha256 of the key, hashed on the node
# (the key never leaves it). A B line counts the backup generations. UNITS
# (one per line) get U lines, and with FWIN/FWNAT set, W lines say whether
# those chains are jumped to.
one() {
  if [ -L "$R$1" ]; then
    # The link's own text (readlink reads no file): tabs and newlines
    # would break the line format, so such a target is not shown.
    _t=$(readlink -- "$R$1" 2>/dev/null) || _t=
    case $_t in *"$TAB"*|*"$NL"*) _t='?' ;; esac
    printf 'K\t%s\t%s\n' "$1" "$_t"
  elif [ -f "$R$1" ]; then printf 'F\t%s\n' "$1"; set_add "$R$1"
  elif [ -e "$R$1" ]; then printf 'X\t%s\n' "$1"
  else printf 'N\t%s\n' "$1"; fi
}
# The regular files are collected in $F (newline-separated), then become
# "$@" once: a function cannot set its caller's positional parameters.
F=
set_add() { F="$F$1$NL"; }
while IFS= read -r p; do [ -n "$p" ] && one "$p"; done <<EOF_PATHS
$PATHS
EOF_PATHS
# The node state files are read only when each is a regular file (not a
# symbolic link) of at most MAXSTATE bytes (one stat for all of them): a
# planted link is never read through, and a huge file never read at all.
# One that fails this is reported (Q<TAB>path<TAB>why) and taken as absent;
# apply replaces it.
set --
for n in generation manifest.json manifest.sha256; do
  f="$R$S/$n"
  if [ -L "$f" ]; then printf 'Q\t%s\tis a symbolic link\n' "$S/$n"
  elif [ -f "$f" ]; then set -- "$@" "$f"
  elif [ -e "$f" ]; then printf 'Q\t%s\tis not a regular file\n' "$S/$n"; fi
done
OK=$NL
if [ $# -gt 0 ] && sizes=$(stat -c '%s' -- "$@" 2>/dev/null); then
  for sz in $sizes; do
    if [ "$sz" -le "$MAXSTATE" ]; then OK="$OK$1$NL"; else printf 'Q\t%s\tis %s bytes, more than %s\n' "${1#"$R"}" "$sz" "$MAXSTATE"; fi
    shift
  done
fi
ok() { case $OK in *"$NL$1$NL"*) return 0 ;; esac; return 1; }
# The generation (one line) and the manifest (JSON, newlines dropped) are
# read with the shell's own read: no process per file.
if ok "$R$S/generation"; then g=; { read -r g <"$R$S/generation"; } 2>/dev/null; printf 'G\t%s\n' "$g"; fi
if ok "$R$S/manifest.json"; then
  j=; while IFS= read -r l || [ -n "$l" ]; do j="$j$l"; l=; done <"$R$S/manifest.json"; printf 'J\t%s\n' "$j"
fi
if ok "$R$S/manifest.sha256"; then
  while read -r sum p; do if [ -n "$p" ]; then one "$p"; fi; done <"$R$S/manifest.sha256"
fi
if [ -L "$R$S/lock" ]; then printf 'Q\t%s\tis a symbolic link\n' "$S/lock"
elif [ -d "$R$S/lock" ]; then printf 'L\t%s\n' "$(lockrec)"; fi
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
  if out=$(stat -c '%a %U %G %s' -- "$@" 2>/dev/null); then printf '%s\n' "$out"; else
    for f in "$@"; do stat -c '%a %U %G %s' -- "$f" 2>/dev/null || printf '? ? ? ?\n'; done
  fi
  printf 'END\n'
fi
if [ "$GOSSIP" = 1 ]; then
  for f in "$@"; do case "$f" in *.json)
    # At most MAXSTATE bytes of each: an agent config is far smaller.
    e=$(head -c "$MAXSTATE" -- "$f" 2>/dev/null | sed -n 's/.*"encrypt"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1)
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
