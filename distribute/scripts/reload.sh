# reload: runs the reload or restart command CMD (FALLBACK when a reload
# finds the agent stopped), then releases the lock if this run holds it.
reload_agent
