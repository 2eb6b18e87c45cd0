package testnet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// standIn is the systemctl stand-in written to a temp dir and driven on the
// host, outside any namespace.
type standIn struct {
	t      *testing.T
	script string
	svc    string // state root
	units  string // unit dir
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid (util-linux)")
	}
	dir := t.TempDir()
	s := &standIn{t: t, script: filepath.Join(dir, "systemctl"), svc: filepath.Join(dir, "services"), units: filepath.Join(dir, "units")}
	if err := os.MkdirAll(s.units, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.script, []byte(systemctlScript("n1", s.svc, s.units)), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-n", s.script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n systemctl: %v: %s", err, out)
	}
	return s
}

func (s *standIn) run(args ...string) (string, int) {
	s.t.Helper()
	out, err := exec.Command(s.script, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return string(out), 0
}

// want runs the stand-in and checks the exit code and that the output
// contains each of outs.
func (s *standIn) want(code int, args []string, outs ...string) string {
	s.t.Helper()
	out, got := s.run(args...)
	if got != code {
		s.t.Errorf("systemctl %s = exit %d, want %d; output:\n%s", strings.Join(args, " "), got, code, out)
	}
	for _, o := range outs {
		if !strings.Contains(out, o) {
			s.t.Errorf("systemctl %s output %q does not contain %q", strings.Join(args, " "), out, o)
		}
	}
	return out
}

func (s *standIn) unit(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.units, name+".service"), []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// pid returns the live PID recorded for unit, or 0.
func (s *standIn) pid(unit string) int {
	data, err := os.ReadFile(filepath.Join(s.svc, unit, "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 || !processAlive(pid) {
		return 0
	}
	return pid
}

func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

func args(s string) []string { return strings.Fields(s) }

// TestSystemctlUnitFiles drives the stand-in's unit-file support on the
// host: parsing, quoting, oneshot units, enablement, several units per call,
// error cases and the call log.
func TestSystemctlUnitFiles(t *testing.T) {
	t.Parallel()
	s := newStandIn(t)
	dir := filepath.Dir(s.script)
	argsOut := filepath.Join(dir, "args.out")
	prog := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(prog, []byte(`for a; do printf '[%s]\n' "$a"; done > "$OUT"
pwd >> "$OUT"
env | sort >> "$OUT"
exec sleep 300
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.unit("a", `[Unit]
Description=Unit A
After=network-online.target

# a comment
[Service]
ExecStart=/bin/sh `+prog+` "two words" 'single q' plain\ esc \
    continued
Environment="OUT=`+argsOut+`" B=b
WorkingDirectory=`+dir+`
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`)
	s.unit("b", "[Service]\nType=exec\nExecStart=/bin/sleep 300\nTimeoutStopSec=3s\n[Install]\nWantedBy=multi-user.target\n")
	t.Cleanup(func() { s.run("stop", "a", "b", "c") })

	t.Run("enable --now two units", func(t *testing.T) {
		s.want(1, args("is-enabled a b"), "disabled\ndisabled\n")
		s.want(3, args("is-active a b"), "inactive\ninactive\n")
		s.want(0, args("enable --now a.service b"))
		s.want(0, args("is-enabled a.service b"), "enabled\nenabled\n")
		s.want(0, args("is-active a b"), "active\nactive\n")
		if s.pid("a") == 0 || s.pid("b") == 0 {
			t.Fatalf("pids a=%d b=%d, want both running", s.pid("a"), s.pid("b"))
		}
		if got, _ := os.ReadFile(filepath.Join(s.svc, "b", "stop_ticks")); string(got) != "30\n" {
			t.Errorf("TimeoutStopSec=3s gave stop_ticks %q, want 30", got)
		}
	})

	t.Run("argv, environment and working directory", func(t *testing.T) {
		var out []byte
		waitFor(t, "args.out", func() bool {
			out, _ = os.ReadFile(argsOut)
			return strings.Contains(string(out), "PATH=")
		})
		got := string(out)
		for _, want := range []string{"[two words]\n[single q]\n[plain esc]\n[continued]\n" + dir + "\n", "\nB=b\n", "\nOUT=" + argsOut + "\n", "\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("program saw:\n%s\nwant it to contain %q", got, want)
			}
		}
		if strings.Contains(got, "GOPATH=") || strings.Contains(got, "HOME=") {
			t.Errorf("the environment is not clean:\n%s", got)
		}
	})

	t.Run("status and restart", func(t *testing.T) {
		a, b := s.pid("a"), s.pid("b")
		s.want(0, args("status a"), "Unit A", "active (running)", "Main PID: "+strconv.Itoa(a), "; enabled)")
		s.want(0, args("restart a b"))
		if na, nb := s.pid("a"), s.pid("b"); na == 0 || nb == 0 || na == a || nb == b {
			t.Errorf("restart a b: pids %d,%d -> %d,%d; want new live ones", a, b, na, nb)
		}
		if processAlive(a) || processAlive(b) {
			t.Error("old processes still alive after restart")
		}
		s.want(1, args("reload a"), "Job type reload is not applicable")
		s.want(0, args("try-restart a"))
	})

	t.Run("disable --now", func(t *testing.T) {
		b := s.pid("b")
		s.want(0, args("disable --now b"))
		s.want(1, args("is-enabled b"), "disabled")
		s.want(3, args("is-active b"), "inactive")
		if processAlive(b) {
			t.Errorf("pid %d alive after disable --now", b)
		}
		s.want(0, args("try-restart b"))
		s.want(3, args("is-active b"))
	})

	t.Run("deleted unit file still stops", func(t *testing.T) {
		a := s.pid("a")
		if err := os.Remove(filepath.Join(s.units, "a.service")); err != nil {
			t.Fatal(err)
		}
		s.want(0, args("is-active a"), "active")
		s.want(0, args("stop a"))
		if processAlive(a) {
			t.Errorf("pid %d alive after stop of a deleted unit", a)
		}
		s.want(0, args("disable a"))
		s.want(5, args("start a"), "Unit a.service not found")
		s.want(1, args("is-enabled a"), "No such file")
	})

	t.Run("oneshot", func(t *testing.T) {
		marker := filepath.Join(dir, "oneshot.out")
		s.unit("fw", `[Unit]
Description=firewall
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c "echo load >> `+marker+`"
ExecStart=-/bin/false
ExecStart=/bin/sh -c "echo second >> `+marker+`"
[Install]
WantedBy=multi-user.target
`)
		s.want(0, args("enable --now fw.service"))
		if got, _ := os.ReadFile(marker); string(got) != "load\nsecond\n" {
			t.Errorf("oneshot ran %q, want load, second", got)
		}
		s.want(0, args("is-active fw"), "active")
		s.want(0, args("status fw"), "active (exited)")
		s.want(0, args("start fw"))
		if got, _ := os.ReadFile(marker); string(got) != "load\nsecond\n" {
			t.Errorf("start of an active oneshot ran it again: %q", got)
		}
		s.want(0, args("restart fw"))
		if got, _ := os.ReadFile(marker); string(got) != "load\nsecond\nload\nsecond\n" {
			t.Errorf("restart of oneshot: %q", got)
		}
		s.want(0, args("stop fw"))
		s.want(3, args("is-active fw"), "inactive")

		s.unit("once", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
		s.want(0, args("start once"))
		s.want(3, args("is-active once"), "inactive")

		s.unit("bad", "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c \"echo broken; exit 3\"\n")
		s.want(1, args("start bad"), "control process exited with error code", "broken")
		s.want(3, args("is-active bad"), "failed")
		s.want(0, args("is-failed bad"), "failed")
		s.want(0, args("reset-failed bad"))
		s.want(3, args("is-active bad"), "inactive")
	})

	t.Run("static unit", func(t *testing.T) {
		s.unit("static", "[Service]\nExecStart=/bin/sleep 300\n")
		s.want(0, args("is-enabled static"), "static")
		s.want(0, args("enable static"), "no installation config")
	})

	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct{ unit, want string }{
			"forking":    {"[Service]\nType=forking\nExecStart=/bin/true\n", "Type=forking is not supported"},
			"relative":   {"[Service]\nExecStart=sleep 300\n", "absolute path"},
			"expansion":  {"[Service]\nExecStart=/bin/echo $HOME\n", "expansion"},
			"pre":        {"[Service]\nExecStartPre=/bin/true\nExecStart=/bin/sleep 1\n", "ExecStartPre= is not supported"},
			"two starts": {"[Service]\nExecStart=/bin/true\nExecStart=/bin/true\n", "more than one ExecStart="},
			"none":       {"[Service]\nUser=root\n", "no ExecStart="},
			"no user":    {"[Service]\nUser=no-such-user-tn\nExecStart=/bin/sleep 300\n", "no such user"},
			"quote":      {"[Service]\nExecStart=/bin/echo \"open\n", "unterminated quote"},
		} {
			s.unit("r-"+strings.ReplaceAll(name, " ", "-"), tc.unit)
			s.want(1, []string{"start", "r-" + strings.ReplaceAll(name, " ", "-")}, tc.want)
		}
	})

	t.Run("unknown units and names", func(t *testing.T) {
		s.want(5, args("start nosuch"), "Unit nosuch.service not found")
		s.want(5, args("restart nosuch"), "not found")
		s.want(5, args("stop nosuch"), "not loaded")
		s.want(3, args("is-active nosuch"), "inactive")
		s.want(1, args("is-enabled nosuch"), "No such file")
		s.want(4, args("status nosuch"), "could not be found")
		s.want(1, args("enable nosuch"), "does not exist")
		s.want(5, args("start multi-user.target"), "not found")
		s.want(1, []string{"start", "../x"}, "Invalid unit name")
		s.want(2, args("frobnicate a"), "usage")
	})

	t.Run("harness services keep their enablement", func(t *testing.T) {
		if err := writeService(s.svc, "svc", ServiceDef{Command: []string{"sleep", "300"}}); err != nil {
			t.Fatal(err)
		}
		// A unit file of the same name loses.
		s.unit("svc", "[Service]\nExecStart=/bin/false\n")
		s.want(0, args("is-enabled svc"), "enabled")
		s.want(0, args("disable svc"))
		s.want(1, args("is-enabled svc"), "disabled")
		s.want(0, args("enable --now svc.service"))
		s.want(0, args("is-enabled svc"), "enabled")
		s.want(0, args("is-active svc"), "active")
		pid := s.pid("svc")
		s.want(0, args("stop svc"))
		if processAlive(pid) {
			t.Errorf("svc pid %d alive after stop", pid)
		}
		// A process that dies on its own leaves the unit failed.
		s.want(0, args("start svc"))
		pid = s.pid("svc")
		syscall.Kill(pid, syscall.SIGKILL)
		waitFor(t, "svc to die", func() bool { return !processAlive(pid) })
		s.want(3, args("is-active svc"), "failed")
		s.want(0, args("start svc"))
		s.want(0, args("is-active svc"), "active")
		s.want(0, args("stop svc"))
	})

	t.Run("daemon-reload and call log", func(t *testing.T) {
		s.want(0, args("daemon-reload"))
		s.want(0, args("--no-pager daemon-reload"))
		data, _ := os.ReadFile(filepath.Join(s.svc, ".daemon-reloads"))
		if n := strings.Count(string(data), "\n"); n != 2 {
			t.Errorf("daemon-reload counter = %d, want 2", n)
		}
		calls, _ := os.ReadFile(filepath.Join(s.svc, ".calls"))
		if !strings.Contains(string(calls), "\nenable --now a.service b\n") || !strings.HasSuffix(string(calls), "\n--no-pager daemon-reload\n") {
			t.Errorf("call log:\n%s", calls)
		}
	})
}
