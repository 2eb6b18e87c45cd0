package distribute

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// plantLock makes node hold a lock of run with the info text, as another
// run's prepare step would have left it.
func plantLock(t *testing.T, f *fixture, node, run, info string) {
	t.Helper()
	lock := f.servers[node].Path("/var/lib/mtlsctl/lock")
	if err := os.MkdirAll(lock, 0o700); err != nil {
		t.Fatal(err)
	}
	if run != "" {
		if err := os.WriteFile(filepath.Join(lock, "run"), []byte(run+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if info != "" {
		if err := os.WriteFile(filepath.Join(lock, "info"), []byte(info+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// lockRun is the run a sandbox node's lock names ("" when there is none).
func lockRun(f *fixture, node string) string {
	b, _ := os.ReadFile(f.servers[node].Path("/var/lib/mtlsctl/lock/run"))
	return strings.TrimSpace(string(b))
}

// exitedProcess starts a process, notes its start time and waits for it to
// exit: its pid and start time describe a holder that is gone.
func exitedProcess(t *testing.T) (int, string) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start := procStart(pid)
	cmd.Process.Kill()
	cmd.Wait()
	if start == "" {
		t.Skip("no /proc/PID/stat: the holder's liveness cannot be checked here")
	}
	return pid, start
}

func TestForceUnlock(t *testing.T) {
	if procIdentity() == "" {
		t.Skip("no /proc: every holder counts as another machine's")
	}
	host, _ := os.Hostname()
	now := time.Now()
	self, selfStart := os.Getpid(), procStart(os.Getpid())
	dead, deadStart := exitedProcess(t)
	const run = "0123456789abcdef"
	local := func(pid int, start string) string {
		return lockInfoText(run, "alice", host, pid, "apply", now, procIdentity(), start)
	}
	foreign := lockInfoText(run, "bob", "other-admin", 4242, "rotate", now, "ffffffffffffffff", "99")
	tests := []struct {
		name   string
		info   string
		run    string // the lock's run file ("" = none)
		unlock Unlock
		// taken: the apply takes the lock over; otherwise its error holds
		// every string in want.
		taken bool
		want  []string
	}{
		{"live local holder, no flag", local(self, selfStart), run, Unlock{}, false,
			[]string{"alice@" + host + " pid " + strconv.Itoa(self), "still running on this machine", "wait for it to finish"}},
		{"live local holder, --force-unlock", local(self, selfStart), run, Unlock{Gone: true}, false,
			[]string{"still running on this machine", "--force-unlock never takes a lock from a running mtlsctl"}},
		{"live local holder, --force-unlock=RUN", local(self, selfStart), run, Unlock{Gone: true, Run: run}, false,
			[]string{"still running on this machine", "never takes"}},
		{"exited local holder, no flag", local(dead, deadStart), run, Unlock{}, false,
			[]string{"pid " + strconv.Itoa(dead) + " has exited", "rerun with --force-unlock"}},
		{"exited local holder, --force-unlock", local(dead, deadStart), run, Unlock{Gone: true}, true, nil},
		{"pid reused by another process, --force-unlock", local(self, "1"), run, Unlock{Gone: true}, true, nil},
		{"other machine, --force-unlock", foreign, run, Unlock{Gone: true}, false,
			[]string{"bob@other-admin pid 4242", "rotate", "only takes over the locks of runs of this machine",
				"cannot see the processes of other-admin", "pid 4242", "--force-unlock=" + run}},
		{"other machine, another run id", foreign, run, Unlock{Gone: true, Run: "0badc0de"}, false,
			[]string{"--force-unlock=0badc0de names another run", "--force-unlock=" + run}},
		{"other machine, --force-unlock=RUN", foreign, run, Unlock{Gone: true, Run: run}, true, nil},
		{"lock from an older mtlsctl, --force-unlock", "run=" + run + " holder=carol@" + host + " pid=1 time=2020-01-01T00:00:00Z op=apply", run,
			Unlock{Gone: true}, false, []string{"--force-unlock=" + run}},
		{"no holder record, --force-unlock", "", "", Unlock{Gone: true, Run: run}, false,
			[]string{"no holder record", "remove /var/lib/mtlsctl/lock on the node by hand"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nodeSpec{name: "a"})
			plantLock(t, f, "a", tc.run, tc.info)
			b := f.bundles("")
			o := f.opts()
			o.ForceUnlock = tc.unlock
			_, err := f.apply(t, b, o)
			if tc.taken {
				if err != nil {
					t.Fatalf("apply: %v, want the lock taken over", err)
				}
				if f.readNode("a", "/etc/consul.d/consul.json") != string(b[0].Files[0].Content) {
					t.Error("the apply did not land")
				}
				if left := f.stagingLeft("a"); left != nil {
					t.Errorf("left behind %v", left)
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("apply: %v, want ErrLocked", err)
			}
			t.Logf("%v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if got := lockRun(f, "a"); got != tc.run {
				t.Errorf("the lock names run %q now, want %q: it was touched", got, tc.run)
			}
			if f.readNode("a", "/etc/consul.d/consul.json") != "" {
				t.Error("applied despite the lock")
			}
		})
	}
}

// The holder's start time, read from /proc, tells it from a later process
// with its pid.
func TestProcStart(t *testing.T) {
	if procStart(os.Getpid()) == "" {
		t.Skip("no /proc/PID/stat")
	}
	if a, b := procStart(os.Getpid()), procStart(os.Getpid()); a != b {
		t.Errorf("start time of this process changed: %s then %s", a, b)
	}
	if procStart(0) != "" || procStart(-1) != "" {
		t.Error("procStart of pid 0 or -1")
	}
}
