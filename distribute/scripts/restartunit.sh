# restartunit: restarts one unit (UNIT) while this run holds the node lock.
held || { echo "the node lock is not held by this run ($RUN); another admin may have forced it" >&2; exit "$EX_LOCKED"; }
systemctl restart "$UNIT" || { echo "systemctl restart $UNIT failed (see journalctl -u $UNIT on the node)" >&2; exit "$EX_MESH"; }
