# mtlsctl's remote driver, run as `sh -c DRIVER` (with sudo -n when the
# cluster file asks for it). POSIX sh only. It reads a random token line,
# then steps, each framed on stdin as
#   TOKEN STEP name / the script's lines / TOKEN END
# runs each in a subshell (stdin /dev/null, so a step cannot eat the next
# one) and answers
#   the step's stdout / "\nTOKEN RC code" / "TOKEN E line" per stderr line / "TOKEN END"
# until "TOKEN BYE" or end of input. Steps see R (MTLSCTL_ROOT: empty on a
# real node) and run under umask 077.
set -u
R="${MTLSCTL_ROOT:-}"
umask 077
IFS= read -r T || exit 0
E=$(mktemp) || { printf '%s FAIL mktemp failed on the node\n' "$T"; exit 125; }
trap 'rm -f "$E"' EXIT
printf '%s READY\n' "$T"
while IFS= read -r h; do
  case $h in
  "$T STEP "*) ;;
  "$T BYE") break ;;
  *) printf '%s FAIL unexpected input\n' "$T"; exit 125 ;;
  esac
  b=
  while IFS= read -r l; do
    [ "$l" = "$T END" ] && break
    b="$b$l
"
  done
  ( eval "$b" ) </dev/null 2>"$E"
  rc=$?
  printf '\n%s RC %s\n' "$T" "$rc"
  while IFS= read -r l || [ -n "$l" ]; do printf '%s E %s\n' "$T" "$l"; done <"$E"
  printf '%s END\n' "$T"
done
exit 0
