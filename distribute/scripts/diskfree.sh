# diskfree: prints the free KiB of the file system of each directory in
# DIRS, one line each, in order ("" when unknown).
while IFS= read -r d; do
  [ -n "$d" ] || continue
  printf '%s\n' "$(df -Pk "$R$d" 2>/dev/null | awk 'NR==2 {print $4}')"
done <<EOF_DIRS
$DIRS
EOF_DIRS
exit 0
