package distribute

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A node lock records who took it (scripts/prepare.sh writes LOCKINFO into
// lock/info). Whether its holder still runs can only be seen from the
// machine it ran on: the admin side, not the node. So the record also names
// the holder's process space (a hash of the kernel's boot id and the pid
// namespace: equal only for processes that see the same pids during the
// same boot) and the holder's start time in clock ticks since boot, which
// tells the holder from a later process that got its pid. Hashes, not the
// ids themselves, go to the nodes.

// holderState is what the admin side can tell about a lock's holder.
type holderState int

const (
	// holderUnknown: the lock has no usable record (being taken right
	// now, or damaged).
	holderUnknown holderState = iota
	// holderRunning: the holder runs in this machine's process space.
	holderRunning
	// holderGone: the holder ran in this machine's process space and has
	// exited (its pid is free or belongs to a later process).
	holderGone
	// holderElsewhere: another admin machine (or one whose process space
	// mtlsctl cannot identify): its processes cannot be seen from here.
	holderElsewhere
)

// procIdentity identifies this process's pid space; "" when /proc cannot
// tell (then every holder counts as elsewhere).
var procIdentity = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte("mtlsctl process space\x00" + strings.TrimSpace(string(boot)) + "\x00" + ns))
	return hex.EncodeToString(sum[:8])
})

// procStart returns the start time of process pid (clock ticks since boot,
// field 22 of /proc/PID/stat), or "" when there is no such process.
func procStart(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses: count fields after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// assess says what can be told about l's holder from this machine.
func (l *LockInfo) assess() (holderState, string) {
	if l.RunID == "" {
		return holderUnknown, "the lock has no holder record"
	}
	self := procIdentity()
	if self == "" || l.procSpace == "" || l.procSpace != self || l.PID <= 0 {
		return holderElsewhere, ""
	}
	switch now := procStart(l.PID); {
	case now == "":
		return holderGone, fmt.Sprintf("pid %d has exited", l.PID)
	case l.start != "" && now != l.start:
		return holderGone, fmt.Sprintf("pid %d has exited and was reused by another process", l.PID)
	}
	return holderRunning, ""
}

// Unlock says which node locks held by other runs an operation may take
// over (the --force-unlock flag). A lock whose holder still runs on this
// machine is never taken.
type Unlock struct {
	// Gone takes over a lock whose holder ran on this machine and has
	// exited (plain --force-unlock).
	Gone bool
	// Run also takes over the locks of this run, wherever it ran
	// (--force-unlock=RUN): the operator's confirmation, after checking
	// on the holder's machine, that the run is over.
	Run string
}

// Any reports whether u allows taking over any lock (the flag was given).
func (u Unlock) Any() bool { return u.Gone || u.Run != "" }

// decideUnlock returns nil when u allows taking over the lock l, or an
// error (matching ErrLocked) saying who holds it and what to do.
func decideUnlock(l *LockInfo, u Unlock, stateDir string) error {
	state, why := l.assess()
	who := l.holder()
	var msg string
	switch state {
	case holderUnknown:
		msg = fmt.Sprintf("%s (it is being taken at this moment, or its files were damaged): if no mtlsctl is working on this node, remove %s/%s on the node by hand",
			why, stateDir, lockDir)
	case holderRunning:
		msg = who + ", which is still running on this machine: wait for it to finish"
		if u.Gone || u.Run != "" {
			msg += "; --force-unlock never takes a lock from a running mtlsctl"
		}
	case holderGone:
		if u.Gone || u.Run == l.RunID {
			return nil
		}
		msg = fmt.Sprintf("%s; that run is over (%s): rerun with --force-unlock to take the lock over", who, why)
	default:
		if u.Run != "" && u.Run == l.RunID {
			return nil
		}
		msg = who
		switch {
		case u.Run != "":
			msg += fmt.Sprintf("; --force-unlock=%s names another run", u.Run)
		case u.Gone:
			msg += "; plain --force-unlock only takes over the locks of runs of this machine that are over"
		}
		msg += "; " + elsewhereAdvice(l)
	}
	return fmt.Errorf("%w: %s", ErrLocked, msg)
}

// elsewhereAdvice tells how to take over the lock of a run whose machine's
// processes mtlsctl cannot see.
func elsewhereAdvice(l *LockInfo) string {
	host := l.Host
	if host == "" {
		host = "the holder's machine"
	}
	check := "that the run is over"
	if l.PID > 0 {
		check = fmt.Sprintf("that pid %d is not an mtlsctl still running", l.PID)
	}
	why := fmt.Sprintf("mtlsctl cannot see the processes of %s", host)
	if l.procSpace == "" {
		why = "the lock does not say which process took it (an earlier mtlsctl took it), so mtlsctl cannot tell whether it still runs"
		check = "on " + host + " " + check
	} else {
		check = "there " + check
	}
	return fmt.Sprintf("%s: check %s, then rerun with --force-unlock=%s to take the lock over", why, check, l.RunID)
}
