package ca

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const lockChildEnv = "MTLSCTL_CA_TEST_LOCK_CHILD"

// TestMain lets the test binary act as a second mtlsctl process that takes
// the lock, says so, and holds it until its stdin closes or it is killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		s, err := Open(dir, OpenOptions{})
		if err == nil {
			_, err = s.Lock("child-op")
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockChild starts a child process holding the lock of s.
func lockChild(t *testing.T, s *State) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+s.Dir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // by its own pid; a no-op once it has exited
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("child: %q %v", line, err)
	}
	return cmd
}

func TestLockHeldByAnotherProcess(t *testing.T) {
	s := newState(t)
	child := lockChild(t, s)
	_, err := s.Lock("apply")
	var le *LockError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("error %v, want ErrLocked", err)
	}
	if le.Holder.PID != child.Process.Pid || le.Holder.Op != "child-op" || le.Holder.Since.IsZero() || le.Holder.Host == "" {
		t.Errorf("holder %+v, want pid %d op child-op", le.Holder, child.Process.Pid)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(child.Process.Pid)) || !strings.Contains(err.Error(), "child-op") {
		t.Errorf("error %q should name the pid and operation", err)
	}
	if err := s.ForceUnlock(); !errors.Is(err, ErrLocked) {
		t.Errorf("ForceUnlock of a live lock: %v, want ErrLocked", err)
	}

	// The child dies without unlocking: the kernel frees the flock but the
	// record stays, and the lock is not silently taken.
	child.Process.Kill()
	child.Wait()
	_, err = s.Lock("apply")
	if !errors.Is(err, ErrStaleLock) || !errors.As(err, &le) || !le.Stale {
		t.Fatalf("error %v, want ErrStaleLock", err)
	}
	for _, m := range []string{fmt.Sprint(child.Process.Pid), "child-op", "never released"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	if err := s.ForceUnlock(); err != nil {
		t.Fatal(err)
	}
	l, err := s.Lock("apply")
	if err != nil {
		t.Fatalf("after ForceUnlock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLock(t *testing.T) {
	s := newState(t)
	l, err := s.Lock("generate")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), lockFile)
	if got := mode(t, path); got != 0o600 {
		t.Errorf("lock file mode %04o, want 0600", got)
	}
	var h LockHolder
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &h); err != nil || h.PID != os.Getpid() || h.Op != "generate" || h.User == "" {
		t.Errorf("record %s: %v", data, err)
	}
	// flock(2) locks belong to the open file: a second open in the same
	// process conflicts too.
	if _, err := s.Lock("apply"); !errors.Is(err, ErrLocked) {
		t.Errorf("second Lock: %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Errorf("record left after Unlock: %s", data)
	}
	l2, err := s.Lock("apply")
	if err != nil {
		t.Fatalf("relock: %v", err)
	}
	l2.Unlock()
}

func TestStaleLockRecord(t *testing.T) {
	tests := []struct {
		name    string
		record  string
		running bool
	}{
		{"dead pid", `{"pid": 2147483646, "host": "HOST", "user": "ops", "op": "apply", "since": "2026-01-02T03:04:05Z"}`, false},
		{"pid alive but not holding", `{"pid": PID, "host": "HOST", "user": "ops", "op": "apply", "since": "2026-01-02T03:04:05Z"}`, true},
		{"garbage record", `{not json`, false},
	}
	host, _ := os.Hostname()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			rec := strings.NewReplacer("HOST", host, "PID", fmt.Sprint(os.Getpid())).Replace(tc.record)
			os.WriteFile(filepath.Join(s.Dir(), lockFile), []byte(rec), 0o600)
			_, err := s.Lock("generate")
			var le *LockError
			if !errors.Is(err, ErrStaleLock) || !errors.As(err, &le) {
				t.Fatalf("error %v, want ErrStaleLock", err)
			}
			if le.Running != tc.running {
				t.Errorf("Running %v, want %v", le.Running, tc.running)
			}
			if !strings.Contains(err.Error(), "never released") {
				t.Errorf("error %q should say the lock was never released", err)
			}
			if tc.name == "dead pid" && (!strings.Contains(err.Error(), "2147483646") || !strings.Contains(err.Error(), "2026-01-02T03:04:05Z")) {
				t.Errorf("error %q should name pid and time", err)
			}
			if err := s.ForceUnlock(); err != nil {
				t.Fatal(err)
			}
			l, err := s.Lock("generate")
			if err != nil {
				t.Fatal(err)
			}
			l.Unlock()
		})
	}
}
