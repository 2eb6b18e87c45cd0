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
