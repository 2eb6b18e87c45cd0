package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Lock errors.
var (
	// ErrLocked means another live process holds the state lock.
	ErrLocked = errors.New("state directory is locked")
	// ErrStaleLock means the lock is free but records a holder that never
	// released it (it crashed or was killed): a human must confirm, with
	// --force-unlock, that nothing is still running.
	ErrStaleLock = errors.New("stale state lock")
)

// LockHolder is who holds (or held) the state lock, as recorded in the lock file.
type LockHolder struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	User  string    `json:"user"`
	Op    string    `json:"op"`
	Since time.Time `json:"since"`
}

func (h LockHolder) String() string {
	return fmt.Sprintf("pid %d (%s@%s) running %q since %s", h.PID, h.User, h.Host, h.Op, h.Since.Format(time.RFC3339))
}

// LockError reports a lock that cannot be taken; it matches ErrLocked or
// ErrStaleLock with errors.Is.
type LockError struct {
	Path   string
	Holder LockHolder
	Stale  bool
	// Running is set on a stale lock whose pid is alive on this host: the
	// pid was probably reused, but a human should check.
	Running bool
}

func (e *LockError) Error() string {
	if e.Stale {
		note := "the process crashed or was killed"
		if e.Running {
			note = fmt.Sprintf("pid %d is running now, but it does not hold the lock: check it is not mtlsctl", e.Holder.PID)
		}
		return fmt.Sprintf("%s: %s: it was taken by %s and never released (%s)",
			ErrStaleLock, e.Path, e.Holder, note)
	}
	return fmt.Sprintf("%s: %s is held by %s", ErrLocked, e.Path, e.Holder)
}

// Unwrap returns ErrLocked or ErrStaleLock.
func (e *LockError) Unwrap() error {
	if e.Stale {
		return ErrStaleLock
	}
	return ErrLocked
}

// Lock is a held state lock.
type Lock struct {
	f    *os.File
	path string
}

// Lock takes the state lock for operation op (e.g. "apply"): an exclusive
// flock(2) on the lock file, which the kernel releases if the process dies,
// plus a record of the holder written into the file. It never waits: a lock
// held by a live process gives a *LockError matching ErrLocked; a free lock
// whose file still names a holder (an earlier run crashed) gives one
// matching ErrStaleLock, and is not taken (see [State.ForceUnlock]).
func (s *State) Lock(op string) (*Lock, error) {
	l, rec, err := s.flock()
	if err != nil {
		return nil, err
	}
	if rec != nil {
		l.release()
		return nil, &LockError{Path: l.path, Holder: *rec, Stale: true, Running: pidRunning(*rec)}
	}
	h := LockHolder{PID: os.Getpid(), Op: op, Since: time.Now().UTC().Truncate(time.Second)}
	h.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	} else {
		h.User = strconv.Itoa(os.Getuid())
	}
	data, _ := json.Marshal(h)
	if err := l.setRecord(append(data, '\n')); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

// ForceUnlock clears a stale lock record (after a crash). It refuses, with
// ErrLocked, while a live process holds the lock.
func (s *State) ForceUnlock() error {
	l, _, err := s.flock()
	if err != nil {
		return err
	}
	return l.Unlock()
}

// Unlock clears the holder record and releases the lock. Calling it again
// is a no-op.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.setRecord(nil)
	if rerr := l.release(); err == nil {
		err = rerr
	}
	return err
}

// flock opens the lock file and takes the flock without waiting. It returns
// the recorded holder, if any, found once the flock is held.
func (s *State) flock() (*Lock, *LockHolder, error) {
	path := s.path(lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, secretMode)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &Lock{f: f, path: path}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		rec, _ := readRecord(f)
		f.Close()
		le := &LockError{Path: path}
		if rec != nil {
			le.Holder = *rec
		} else {
			// Taken an instant ago, record not yet written.
			le.Holder = LockHolder{Op: "unknown"}
		}
		return nil, nil, le
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	rec, err := readRecord(f)
	if err != nil {
		// An unreadable record is as good as a stale one: make a human look.
		rec = &LockHolder{Op: "unreadable lock record"}
	}
	return l, rec, nil
}

func readRecord(f *os.File) (*LockHolder, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	var h LockHolder
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

func (l *Lock) setRecord(data []byte) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("lock %s: %w", l.path, err)
	}
	if len(data) > 0 {
		if _, err := l.f.WriteAt(data, 0); err != nil {
			return fmt.Errorf("lock %s: %w", l.path, err)
		}
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("lock %s: %w", l.path, err)
	}
	return nil
}

func (l *Lock) release() error {
	// Closing the last descriptor releases the flock.
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}

// pidRunning reports whether h's pid is alive on this host.
func pidRunning(h LockHolder) bool {
	host, _ := os.Hostname()
	if h.PID <= 0 || h.Host != host {
		return false
	}
	err := unix.Kill(h.PID, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
